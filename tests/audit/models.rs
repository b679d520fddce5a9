//! Every tenancy model, clean and with planted weaknesses: the audit judges each table by
//! its model (no false alarms on the clean schema, the planted weakness found), and the
//! probe sets up callers the way the model does (its matrix on the clean schema is blocked
//! with passing controls and exits 0; on the planted one the weakness is LEAKED).

use tenantguard::outcome::{RunStatus, Verdict};
use tenantguard::probe::{Attack, ProbeReport};

use crate::probe::probe;
use crate::support::*;

async fn load(name: &str, variant: Option<&str>, tenant_column: &str) -> (Fixture, AuditConfig) {
    let fx = Fixture::load_variant(name, variant).await;
    let config = AuditConfig {
        tenant_column: tenant_column.into(),
        ..fx.config()
    };
    (fx, config)
}

/// The clean matrix: no finding, nothing inconclusive, every blocked cell with its
/// control, and at least `attacked` tables really attacked.
fn assert_clean(report: &ProbeReport, attacked: usize) {
    let text = report.text();
    assert_eq!(report.status(), RunStatus::Clean, "{text}");
    assert!(report.tables_attacked() >= attacked, "{text}");
    for t in &report.tables {
        for (a, c) in &t.cells {
            assert!(
                matches!(c.verdict, Verdict::Blocked | Verdict::NotApplicable),
                "{} {a:?}: {c:?}\n{text}",
                t.table
            );
            if c.verdict == Verdict::Blocked {
                assert!(c.control.is_some(), "{} {a:?}: {c:?}", t.table);
            }
        }
    }
    assert!(report.unchanged(), "{text}");
}

fn assert_leaked(report: &ProbeReport, table: &str, attacks: &[Attack]) {
    for a in attacks {
        let c = report.cell(table, *a);
        assert!(
            c.is_some_and(|c| c.leaked()),
            "{table} {a:?} is {c:?}\n{}",
            report.text()
        );
    }
    assert_eq!(report.status(), RunStatus::Findings);
    assert!(report.unchanged(), "{}", report.text());
}

fn assert_no_high(findings: &[Finding]) {
    assert!(
        findings.iter().all(|f| f.severity < Severity::High),
        "{}",
        dump(findings)
    );
}

#[tokio::test]
async fn supabase_clean() {
    let (fx, config) = load("standalone_supabase", None, "org_id").await;
    let run = {
        let mut su = fx.db.superuser().await;
        tenantguard::audit::run(&mut su, &config).await.unwrap()
    };
    assert_no_high(&run.findings);
    let statement = run.detection.statement();
    assert!(statement.contains("membership"), "{statement}");
    assert!(statement.contains("per-user rows: user_id"), "{statement}");
    let report = probe(&fx.db, &config).await;
    assert_clean(&report, 3);
    assert_eq!(
        report
            .cell("public.projects", Attack::ReadOther)
            .map(|c| c.label()),
        Some("blocked")
    );
}

#[tokio::test]
async fn supabase_leaky() {
    let (fx, config) = load("standalone_supabase", Some("leaky"), "org_id").await;
    let findings = audit(&fx.db, &config).await;
    expect(&findings, "TG012", "\"profiles_public\" on public.profiles");
    expect(&findings, "TG027", "public.members");
    let report = probe(&fx.db, &config).await;
    assert_leaked(&report, "public.profiles", &[Attack::ReadOther]);
    assert_leaked(&report, "public.members", &[Attack::InsertOther]);
}

#[tokio::test]
async fn postgrest_clean() {
    let (fx, config) = load("standalone_postgrest", None, "tenant_id").await;
    assert_no_high(&audit(&fx.db, &config).await);
    let report = probe(&fx.db, &config).await;
    assert_clean(&report, 2);
    assert!(
        report.tenancy.contains("request.jwt.claims"),
        "{}",
        report.tenancy
    );
}

#[tokio::test]
async fn postgrest_leaky() {
    let (fx, config) = load("standalone_postgrest", Some("leaky"), "tenant_id").await;
    let findings = audit(&fx.db, &config).await;
    expect(&findings, "TG020", "\"todos_all\" on public.todos");
    let report = probe(&fx.db, &config).await;
    assert_leaked(
        &report,
        "public.todos",
        &[Attack::ReadUnset, Attack::ReadEmpty],
    );
}

#[tokio::test]
async fn role_per_tenant_clean() {
    let (fx, config) = load("standalone_role_per_tenant", None, "tenant_id").await;
    let findings = audit(&fx.db, &config).await;
    assert_no_high(&findings);
    assert!(
        !findings.iter().any(|f| f.rule == "TG023"),
        "{}",
        dump(&findings)
    );
    let report = probe(&fx.db, &config).await;
    assert_clean(&report, 1);
    assert_eq!(report.created_roles.len(), 2, "{}", report.text());
    // Roles are cluster-wide: the probe's are gone.
    let su = fx.db.superuser().await;
    let left: i64 = su
        .query_one(
            "SELECT count(*) FROM pg_roles WHERE rolname = ANY($1)",
            &[&report.created_roles],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(left, 0);
}

#[tokio::test]
async fn role_per_tenant_leaky() {
    let (fx, config) = load("standalone_role_per_tenant", Some("leaky"), "tenant_id").await;
    let findings = audit(&fx.db, &config).await;
    expect(&findings, "TG012", "\"docs_everyone\" on public.docs");
    let report = probe(&fx.db, &config).await;
    assert_leaked(&report, "public.docs", &[Attack::ReadOther]);
}

#[tokio::test]
async fn membership_clean() {
    let (fx, config) = load("standalone_membership", None, "org_id").await;
    assert_no_high(&audit(&fx.db, &config).await);
    let report = probe(&fx.db, &config).await;
    assert_clean(&report, 2);
}

#[tokio::test]
async fn membership_leaky() {
    let (fx, config) = load("standalone_membership", Some("leaky"), "org_id").await;
    let findings = audit(&fx.db, &config).await;
    expect(&findings, "TG027", "public.memberships");
    let report = probe(&fx.db, &config).await;
    assert_leaked(&report, "public.memberships", &[Attack::InsertOther]);
}

#[tokio::test]
async fn per_user_clean() {
    let (fx, config) = load("standalone_per_user", None, "tenant_id").await;
    assert_no_high(&audit(&fx.db, &config).await);
    let report = probe(&fx.db, &config).await;
    assert_clean(&report, 1);
    assert_eq!(report.tables[0].model, "owner");
}

#[tokio::test]
async fn per_user_leaky() {
    let (fx, config) = load("standalone_per_user", Some("leaky"), "tenant_id").await;
    let findings = audit(&fx.db, &config).await;
    expect(&findings, "TG014", "\"notes_own\" on public.notes");
    expect(&findings, "TG015", "\"notes_own\" on public.notes");
    let report = probe(&fx.db, &config).await;
    assert_leaked(
        &report,
        "public.notes",
        &[Attack::InsertOther, Attack::MoveToOther],
    );
}

#[tokio::test]
async fn supabase_with_helpers_and_nested_claims_clean() {
    let (fx, config) = load("standalone_supabase_helpers", None, "org_id").await;
    let run = {
        let mut su = fx.db.superuser().await;
        tenantguard::audit::run(&mut su, &config).await.unwrap()
    };
    assert_no_high(&run.findings);
    let statement = run.detection.statement();
    assert!(statement.contains("app_metadata.org_id"), "{statement}");
    let f = expect(
        &run.findings,
        "TG042",
        "function public.is_member_of(_org uuid)",
    );
    assert_eq!(f.severity, Severity::Info, "{}", f.why);
    let report = probe(&fx.db, &config).await;
    assert_clean(&report, 4);
}

#[tokio::test]
async fn aws_pooled_sample_is_the_setting_model_of_its_own_name() {
    // No flags beyond the app role: the setting's name is detected, not assumed.
    let (fx, config) = load("standalone_aws_pooled", None, "tenant_id").await;
    let findings = audit(&fx.db, &config).await;
    assert_no_high(&findings);
    expect(
        &findings,
        "TG021",
        "\"tenant_user_isolation_policy\" on public.tenant_user",
    );
    let report = probe(&fx.db, &config).await;
    assert!(
        report.tenancy.contains("setting app.current_tenant"),
        "{}",
        report.tenancy
    );
    assert_clean(&report, 2);
}

#[tokio::test]
async fn fixes_are_written_in_the_tables_model() {
    let (fx, config) = load("standalone_postgrest", Some("leaky"), "tenant_id").await;
    let f = expect(&audit(&fx.db, &config).await, "TG020", "public.todos").clone();
    assert!(
        f.fix.contains("request.jwt.claims") && f.fix.contains("'tenant_id'"),
        "{}",
        f.fix
    );
    let (fx, config) = load("standalone_role_per_tenant", Some("leaky"), "tenant_id").await;
    let f = expect(&audit(&fx.db, &config).await, "TG012", "public.docs").clone();
    assert!(f.fix.contains("current_user"), "{}", f.fix);
}
