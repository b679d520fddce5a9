//! One test per broken-schema fixture: audit reports the planted weakness with the right
//! rule, object and (at least) severity.

use crate::support::*;

macro_rules! fixture {
    ($name:ident, $($rule:literal on $object:literal at $sev:ident),+) => {
        #[tokio::test]
        async fn $name() {
            let fx = Fixture::load(stringify!($name)).await;
            let findings = fx.audit().await;
            $(
                let f = expect(&findings, $rule, $object);
                assert!(f.severity >= Severity::$sev, "{} is {}, want at least {:?}", f.fingerprint, f.severity, Severity::$sev);
            )+
        }
    };
}

#[tokio::test]
async fn clean_prelude_has_no_high_findings() {
    let fx = Fixture::load("clean").await;
    let findings = fx.audit().await;
    assert!(
        findings.iter().all(|f| f.severity < Severity::High),
        "{}",
        dump(&findings)
    );
}

fixture!(rls_disabled, "TG001" on "public.leaky" at Critical);
fixture!(dormant_policies, "TG002" on "public.notes" at Critical);
fixture!(app_owns_table, "TG003" on "public.notes" at Critical);
fixture!(not_forced, "TG004" on "public.notes" at Low);
fixture!(command_without_policy, "TG005" on "public.memos command INSERT" at Low);
fixture!(child_without_tenant, "TG006" on "public.attachments" at Medium);
fixture!(unprotected_writable, "TG007" on "public.scratch" at Medium);
fixture!(permissive_true, "TG010" on "\"docs_all\" on public.docs" at Critical,
    "TG014" on "\"docs_all\" on public.docs" at High, "TG015" on "\"docs_all\" on public.docs" at High);
fixture!(or_widened, "TG011" on "\"notes_all\" on public.notes" at Critical);
fixture!(several_permissive, "TG012" on "\"notes_everyone\" on public.notes" at Critical);
fixture!(public_policy, "TG013" on "\"notes_all\" on public.notes" at Medium);
fixture!(insert_check_true, "TG014" on "\"notes_insert\" on public.notes" at High);
fixture!(update_check_moves, "TG015" on "\"notes_update\" on public.notes" at High);
fixture!(insert_without_check, "TG016" on "\"notes_insert\" on public.notes" at Info);
fixture!(null_share_write, "TG017" on "\"notes_all\" on public.notes" at High,
    "TG052" on "public.notes.tenant_id" at Medium);
fixture!(fail_open, "TG020" on "\"notes_all\" on public.notes" at High);
fixture!(fail_open_coalesce, "TG020" on "\"notes_all\" on public.notes" at High);
fixture!(one_argument, "TG021" on "\"notes_all\" on public.notes" at Low,
    "TG022" on "\"notes_all\" on public.notes" at Low);
fixture!(identity_key, "TG023" on "\"notes_all\" on public.notes" at Medium);
fixture!(writable_membership, "TG024" on "\"notes_members\" on public.notes" at High);
fixture!(session_scoped, "TG025" on "function public.set_tenant(t uuid)" at High);
fixture!(setting_default, "TG026" on "setting app.tenant_id for role" at High);
fixture!(app_superuser, "TG030" on "_root" at Critical);
fixture!(app_bypassrls, "TG031" on "role app_" at Critical);
fixture!(app_owns_policy_function, "TG032" on "function public.ctx_tenant()" at Critical);
fixture!(truncate_granted, "TG033" on "public.notes" at High);
fixture!(references_granted, "TG034" on "public.notes" at Low);
fixture!(trigger_granted, "TG035" on "public.notes" at High);
fixture!(predefined_role, "TG036" on "role pg_read_server_files" at High);
fixture!(default_privileges, "TG037" on "TRUNCATE" at Medium);
fixture!(owner_rights_view, "TG040" on "view public.all_notes" at Critical);
fixture!(matview, "TG041" on "materialized view public.note_counts" at Critical);
fixture!(definer_function, "TG042" on "function public.note_bodies()" at Critical,
    "TG043" on "function public.note_bodies()" at High);
fixture!(definer_trigger, "TG044" on "trigger \"notes_touch\" on public.notes" at High);
fixture!(trigger_copy, "TG045" on "trigger \"notes_archive\" on public.notes" at High);
fixture!(leakproof, "TG046" on "function public.noisy_eq(a text, b text)" at High);
fixture!(definer_default, "TG047" on "column public.notes.label" at High);
fixture!(mislabelled_volatility, "TG048" on "function public.session_tenant()" at Medium);
fixture!(fk_without_tenant, "TG050" on "\"replies_note_id_fkey\" on public.replies" at High);
fixture!(unique_without_tenant, "TG051" on "\"notes_body_key\" on public.notes" at Medium);
fixture!(unique_nullable_without_tenant, "TG051" on "\"notes_code_key\" on public.notes" at Medium);
fixture!(unprotected_partition, "TG053" on "public.events_all" at Critical);
fixture!(shared_sequence, "TG054" on "column public.notes.seq" at Low);
fixture!(no_tenant_index, "TG060" on "public.notes" at Low);
fixture!(volatile_policy_function, "TG061" on "\"notes_all\" on public.notes" at Medium,
    "TG062" on "\"notes_all\" on public.notes" at Low);

fixture!(server_file_functions, "TG038" on "function pg_read_file(text)" at High);
fixture!(matview_readable, "TG041" on "materialized view public.note_copies" at Critical);

#[tokio::test]
async fn the_admin_role_bypasses_rls() {
    // The reference admin role has BYPASSRLS: audited as "the app", that is critical.
    let db = TestDb::new().await;
    let config = AuditConfig {
        app_role: "tenantguard_admin".into(),
        ..AuditConfig::default()
    };
    let findings = audit(&db, &config).await;
    expect(&findings, "TG031", "role tenantguard_admin");
}
fixture!(set_role_policy, "TG010" on "\"notes_reports\" on public.notes (after SET ROLE app_" at Critical);
fixture!(partial_guard, "TG010" on "\"docs_all\" on public.docs" at Critical);

#[tokio::test]
async fn schema_flag_limits_the_audit() {
    let fx = Fixture::load("other_schema").await;
    let all = fx.audit().await;
    expect(&all, "TG001", "table legacy.notes");
    let config = AuditConfig {
        schemas: vec!["public".into()],
        ..fx.config()
    };
    let public = audit(&fx.db, &config).await;
    assert!(
        public.iter().all(|f| !f.object.contains("legacy.")),
        "{}",
        dump(&public)
    );
}

fixture!(fail_open_helper, "TG028" on "function public.current_tenant()" at High);
fixture!(definer_mints_context, "TG039" on "function public.login_as(t uuid, secret text)" at Critical);
fixture!(shared_parent_writable, "TG056" on "table public.plans" at High);
fixture!(default_dml_privileges, "TG055" on "(SELECT)" at Medium,
    "TG055" on "(INSERT)" at Medium);
fixture!(login_role_setting, "TG026" on "(which becomes the app)" at High);

/// A fixture whose definer code or view is provably guarded: `rule` is reported as info
/// (with the reason) and nothing is high.
macro_rules! guarded {
    ($name:ident, $rule:literal) => {
        #[tokio::test]
        async fn $name() {
            let fx = Fixture::load(stringify!($name)).await;
            let findings = fx.audit().await;
            let of_rule: Vec<&Finding> = findings.iter().filter(|f| f.rule == $rule).collect();
            assert!(
                !of_rule.is_empty(),
                "no {} at all:\n{}",
                $rule,
                dump(&findings)
            );
            assert!(
                of_rule.iter().all(|f| f.severity == Severity::Info),
                "{}",
                dump(&findings)
            );
            assert!(
                findings.iter().all(|f| f.severity < Severity::High),
                "{}",
                dump(&findings)
            );
        }
    };
}

guarded!(guarded_definer_functions, "TG042");
guarded!(enqueue_trigger, "TG044");
guarded!(filtering_view, "TG040");
guarded!(leakproof_zero_arg, "TG046");

#[tokio::test]
async fn bypassrls_counts_only_on_roles_the_app_can_set_role_to() {
    // PostgreSQL 16 gave each grant its own SET option: a BYPASSRLS role granted
    // WITH SET FALSE lends only inherited privileges (BYPASSRLS is never inherited), but
    // those include its ownership rights, so its views and functions can be redefined:
    // high, where a role the app can SET ROLE to is critical.
    let fx = Fixture::load("clean").await;
    let su = fx.db.superuser().await;
    let version: i32 = su
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .unwrap()
        .get(0);
    let bypasser = unique_name("bypasser");
    su.batch_execute(&format!("CREATE ROLE \"{bypasser}\" NOLOGIN BYPASSRLS"))
        .await
        .unwrap();
    let object = format!("role {bypasser}");
    if version >= 160000 {
        su.batch_execute(&format!(
            "GRANT \"{bypasser}\" TO \"{}\" WITH INHERIT TRUE, SET FALSE",
            fx.app
        ))
        .await
        .unwrap();
        let findings = fx.audit().await;
        let of_role: Vec<_> = findings
            .iter()
            .filter(|f| f.rule == "TG031" && f.object == object)
            .collect();
        assert!(
            !of_role.is_empty() && of_role.iter().all(|f| f.severity == Severity::High),
            "{}",
            dump(&findings)
        );
        su.batch_execute(&format!(
            "REVOKE \"{bypasser}\" FROM \"{}\"; GRANT \"{bypasser}\" TO \"{}\" WITH INHERIT FALSE, SET FALSE",
            fx.app, fx.app
        ))
        .await
        .unwrap();
        let findings = fx.audit().await;
        assert!(
            !findings
                .iter()
                .any(|f| f.rule == "TG031" && f.object == object),
            "a grant with neither INHERIT nor SET lends nothing: {}",
            dump(&findings)
        );
        su.batch_execute(&format!(
            "GRANT \"{bypasser}\" TO \"{}\" WITH SET TRUE",
            fx.app
        ))
        .await
        .unwrap();
    } else {
        su.batch_execute(&format!("GRANT \"{bypasser}\" TO \"{}\"", fx.app))
            .await
            .unwrap();
    }
    let findings = fx.audit().await;
    expect(&findings, "TG031", &object);
    assert!(
        findings
            .iter()
            .any(|f| f.rule == "TG031" && f.object == object && f.severity == Severity::Critical),
        "{}",
        dump(&findings)
    );
}

#[tokio::test]
async fn a_policy_the_model_cannot_express_is_not_judged() {
    let fx = Fixture::load("opaque_policy_function").await;
    let findings = fx.audit().await;
    let f = expect(&findings, "TG008", "table public.shared_docs");
    assert_eq!(f.severity, Severity::Info);
    assert!(f.why.contains("can_see"), "{}", f.why);
    assert!(
        !findings
            .iter()
            .any(|f| f.object.contains("shared_docs") && f.rule.starts_with("TG01")),
        "{}",
        dump(&findings)
    );
    let report = crate::probe::probe(&fx.db, &fx.config()).await;
    let c = report
        .cell("public.shared_docs", tenantguard::probe::Attack::ReadOther)
        .unwrap();
    assert_eq!(
        c.verdict,
        tenantguard::outcome::Verdict::Inconclusive,
        "{c:?}"
    );
    assert_eq!(report.status().code(), 3, "{}", report.text());
}

#[tokio::test]
async fn maintain_is_read_where_it_exists() {
    // MAINTAIN is a table privilege from PostgreSQL 17 on; before, reading it must not fail.
    let fx = Fixture::load("clean").await;
    let su = fx.db.superuser().await;
    let version: i32 = su
        .query_one("SELECT current_setting('server_version_num')::int", &[])
        .await
        .unwrap()
        .get(0);
    if version >= 170000 {
        su.batch_execute(&format!("GRANT MAINTAIN ON notes TO \"{}\"", fx.app))
            .await
            .unwrap();
        let f = expect(&fx.audit().await, "TG057", "table public.notes").clone();
        assert_eq!(f.severity, Severity::Low);
    } else {
        assert!(!fx.audit().await.iter().any(|f| f.rule == "TG057"));
    }
}

#[tokio::test]
async fn a_login_role_of_the_app_does_not_make_identity_keys_a_role_model() {
    // One pooled app role with a login role that SET ROLEs into it is the setting model;
    // `author = current_user` still isolates nothing.
    let fx = Fixture::load("identity_key").await;
    fx.db
        .superuser()
        .await
        .batch_execute(&format!(
            "CREATE ROLE \"{0}_login\" LOGIN IN ROLE \"{0}\"",
            fx.app
        ))
        .await
        .unwrap();
    let findings = fx.audit().await;
    expect(&findings, "TG023", "\"notes_all\" on public.notes");
    expect(&findings, "TG010", "\"notes_all\" on public.notes");
}
