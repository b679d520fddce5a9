//! `audit` and `probe plans` on Citus: no false finding on the database `migrate --citus`
//! made, the Citus rules (TG080–TG084) on one that breaks each, and TGP004 for a tenant
//! query that goes to every shard.

use tenantguard::audit::{AuditConfig, Finding};
use tenantguard::probe::plans::{probe_plans, PlansConfig, Source};

use crate::support::*;

fn rules(findings: &[Finding]) -> Vec<String> {
    findings
        .iter()
        .map(|f| format!("{} {}", f.rule, f.object))
        .collect()
}

#[tokio::test]
async fn audit_of_the_migrated_citus_database_has_no_citus_finding_and_no_false_tg062() {
    let Some(c) =
        citus("audit_of_the_migrated_citus_database_has_no_citus_finding_and_no_false_tg062")
    else {
        return;
    };
    let mut su = c.superuser().await;
    let found = tenantguard::audit::audit(&mut su, &AuditConfig::default())
        .await
        .expect("audit");
    let seen = rules(&found);
    // The inline predicate is the one Citus accepts: proposing (SELECT fn()) is wrong there.
    assert!(!seen.iter().any(|r| r.starts_with("TG062")), "{seen:#?}");
    assert!(!seen.iter().any(|r| r.starts_with("TG08")), "{seen:#?}");
}

#[tokio::test]
async fn audit_reports_what_breaks_on_citus() {
    let Some(c) = citus("audit_reports_what_breaks_on_citus") else {
        return;
    };
    let (_, cfg) = c.own_database("tg_citus_audit").await;
    let mut db = connect(&cfg).await.expect("own database");
    db.batch_execute(
        "CREATE ROLE diag_app LOGIN;
         CREATE FUNCTION cur() RETURNS uuid LANGUAGE sql STABLE
           AS $$ SELECT NULLIF(current_setting('app.tenant_id', true), '')::uuid $$;
         CREATE FUNCTION set_tenant(t uuid) RETURNS void LANGUAGE sql
           AS $$ SELECT set_config('app.tenant_id', t::text, true) $$;
         CREATE TABLE accounts (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id));
         CREATE TABLE other (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id));
         CREATE TABLE by_id (tenant_id uuid NOT NULL, id int PRIMARY KEY);
         CREATE TABLE shared (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id));
         CREATE TABLE left_local (tenant_id uuid NOT NULL, id int, PRIMARY KEY (tenant_id, id));",
    )
    .await
    .expect("schema");
    for q in [
        "SELECT create_distributed_table('accounts', 'tenant_id')",
        "SELECT create_distributed_table('other', 'tenant_id', colocate_with => 'none')",
        "SELECT create_distributed_table('by_id', 'id')",
        "SELECT create_reference_table('shared')",
    ] {
        db.batch_execute(q)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}"));
    }
    db.batch_execute(
        "DO $$ DECLARE t text; BEGIN
           FOREACH t IN ARRAY ARRAY['accounts', 'other', 'by_id', 'shared', 'left_local'] LOOP
             EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
             EXECUTE format('CREATE POLICY p ON %I USING (tenant_id = cur()) WITH CHECK (tenant_id = cur())', t);
             EXECUTE format('GRANT SELECT, INSERT ON %I TO diag_app', t);
           END LOOP; END $$",
    )
    .await
    .expect("policies");
    let config = AuditConfig {
        app_role: "diag_app".into(),
        ..AuditConfig::default()
    };
    let seen = rules(
        &tenantguard::audit::audit(&mut db, &config)
            .await
            .expect("audit"),
    );
    for want in [
        "TG080 function public.set_tenant(t uuid)",
        "TG081 role diag_app",
        "TG082 table public.left_local",
        "TG083 table public.by_id",
        "TG083 table public.other",
        "TG084 table public.shared",
    ] {
        assert!(seen.iter().any(|r| r == want), "{want} missing: {seen:#?}");
    }
    // The first group (accounts) is the one the others are told to join.
    assert!(
        !seen.iter().any(|r| r == "TG083 table public.accounts"),
        "{seen:#?}"
    );
    // TG062's (SELECT fn()) fix is refused on Citus tables, allowed on the local one.
    let tg062: Vec<_> = seen.iter().filter(|r| r.starts_with("TG062")).collect();
    assert_eq!(
        tg062,
        ["TG062 policy \"p\" on public.left_local"],
        "{seen:#?}"
    );
    db.batch_execute("ALTER ROLE diag_app SET citus.propagate_set_commands = 'local'")
        .await
        .expect("role default");
    let seen = rules(
        &tenantguard::audit::audit(&mut db, &config)
            .await
            .expect("audit"),
    );
    assert!(!seen.iter().any(|r| r.starts_with("TG081")), "{seen:#?}");
}

#[tokio::test]
async fn probe_plans_reports_a_tenant_query_sent_to_every_shard() {
    let Some(c) = citus("probe_plans_reports_a_tenant_query_sent_to_every_shard") else {
        return;
    };
    let mut su = c.superuser().await;
    let a = tenant(&su).await;
    let fanned = "SELECT id, name FROM projects ORDER BY created_at DESC LIMIT 50";
    let routed = "SELECT id, name FROM projects WHERE tenant_id = $1 AND id = $2";
    let config = PlansConfig {
        tenants: vec![a.id.to_string()],
        source: Source::Given(vec![fanned.into(), routed.into()]),
        min_rows: 1e12,
        ..PlansConfig::default()
    };
    let report = probe_plans(&mut su, &config).await.expect("probe plans");
    let fan: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.rule == "TGP004")
        .collect();
    assert_eq!(fan.len(), 1, "{:#?}", report.findings);
    assert_eq!(fan[0].statement, fanned);
    assert!(
        fan[0].why.contains(&format!("{SHARD_COUNT} tasks")),
        "{}",
        fan[0].why
    );
    assert_eq!(fan[0].relation, "public.projects");
    // Planned with the tenant bound: one task, decided (not inconclusive).
    assert!(report.inconclusive.is_empty(), "{:#?}", report.inconclusive);
    let shard_plan = report.statements[0].plans[0].plan.join("\n");
    assert!(shard_plan.contains("Citus tasks="), "{shard_plan}");
}
