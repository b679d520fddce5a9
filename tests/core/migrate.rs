//! `migrate` is idempotent; `migrate --check` reports drift (compared by expression, not
//! name) and `migrate` restores it in one transaction.

use std::process::Command;

use tenantguard::schema;

use crate::support::*;

fn cli(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_tenantguard"))
        .args(args)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run tenantguard");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[tokio::test]
async fn migrate_twice_changes_nothing() {
    let db = TestDb::new().await;
    let mut su = db.superuser().await;
    let report = schema::migrate(&mut su, &tenantguard::testing::policy())
        .await
        .unwrap();
    assert!(report.is_noop(), "second migrate changed: {report:?}");
    let url = db.superuser_url();
    let (code, out) = cli(&["migrate", "--database-url", &url]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("nothing to do"), "{out}");
    let (code, out) = cli(&["migrate", "--check", "--database-url", &url]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("in sync"), "{out}");
}

#[tokio::test]
async fn check_reports_drift_and_migrate_restores_it() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let url = db.superuser_url();
    // Hand edits, each a real way isolation erodes. The first keeps the policy's name.
    su.batch_execute(
        "ALTER POLICY tenantguard_select ON projects USING (true);
         ALTER TABLE tasks NO FORCE ROW LEVEL SECURITY;
         ALTER TABLE documents DISABLE ROW LEVEL SECURITY;
         CREATE POLICY sneaky ON invoices FOR SELECT USING (true);
         DROP POLICY tenantguard_insert ON comments;
         GRANT TRUNCATE ON webhooks TO tenantguard_app;
         GRANT DELETE ON audit_log TO tenantguard_app;
         GRANT SELECT ON api_keys TO PUBLIC;
         CREATE OR REPLACE FUNCTION tenantguard.current_tenant_id() RETURNS uuid
           LANGUAGE sql STABLE AS $$ SELECT current_setting('app.tenant_id')::uuid $$;",
    )
    .await
    .unwrap();
    let (code, out) = cli(&["migrate", "--check", "--database-url", &url]);
    assert_eq!(code, 1, "{out}");
    for needle in [
        "table public.projects: policy \"tenantguard_select\"",
        "table public.tasks: row level security is not forced",
        "table public.documents: row level security is disabled",
        "table public.invoices: policy \"sneaky\"",
        "table public.comments: no matching INSERT policy",
        "table public.webhooks: tenantguard_app has",
        "table public.audit_log: tenantguard_app has",
        "table public.api_keys: public has",
        "function tenantguard.current_tenant_id(): definition differs",
    ] {
        assert!(out.contains(needle), "missing {needle:?} in:\n{out}");
    }

    let (code, out) = cli(&["migrate", "--database-url", &url]);
    assert_eq!(code, 0, "{out}");
    let (code, out) = cli(&["migrate", "--check", "--database-url", &url]);
    assert_eq!(code, 0, "after migrate:\n{out}");

    // Restored for real: the widened SELECT no longer leaks, FORCE and RLS are back.
    let a = graph(&su, "a").await;
    let _b = graph(&su, "b").await;
    let pool = db.app_pool(1).await;
    let mut tx = pool.begin(a.tenant_id()).await.unwrap();
    for t in ["projects", "invoices", "tasks", "documents"] {
        let n = tx
            .query(&format!("SELECT * FROM {t}"), &[])
            .await
            .unwrap()
            .len();
        assert_eq!(n, 1, "{t} isolated again");
    }
    let row = su
        .query_one(
            "SELECT relforcerowsecurity FROM pg_class WHERE oid = 'tasks'::regclass",
            &[],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0));
}

#[tokio::test]
async fn check_on_an_empty_database_lists_pending_migrations() {
    let db = TestDb::empty().await;
    let (code, out) = cli(&["migrate", "--check", "--database-url", &db.superuser_url()]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("V1__reference_schema: not applied"), "{out}");
}

#[tokio::test]
async fn bad_input_gets_a_clear_error() {
    let (code, out) = cli(&["migrate", "--database-url", "not a url"]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("invalid database URL"), "{out}");
    let (code, out) = cli(&[
        "migrate",
        "--database-url",
        "postgresql://nobody@127.0.0.1:1/x",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("cannot connect"), "{out}");
    let (code, out) = cli(&[
        "migrate",
        "--tenant-setting",
        "nodot",
        "--database-url",
        "x",
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("tenant_setting"), "{out}");
}

#[tokio::test]
async fn check_reports_a_dropped_table_and_migrate_refuses_without_changing_anything() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    su.batch_execute("DROP TABLE webhooks; ALTER TABLE projects DISABLE ROW LEVEL SECURITY;")
        .await
        .unwrap();
    let url = db.superuser_url();
    let (code, out) = cli(&["migrate", "--check", "--database-url", &url]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("table public.webhooks: does not exist"),
        "{out}"
    );
    assert!(
        out.contains("table public.projects: row level security is disabled"),
        "{out}"
    );
    let (code, out) = cli(&["migrate", "--database-url", &url]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("nothing was changed"), "{out}");
    let rls: bool = su
        .query_one(
            "SELECT relrowsecurity FROM pg_class WHERE oid = 'projects'::regclass",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!rls, "the refused run changed nothing");
}

/// Role attributes are drift too: a managed role given CREATEDB or LOGIN is reported and
/// restored. Unique role names, since roles are shared by every test database.
#[tokio::test]
async fn role_attribute_drift_is_reported_and_restored() {
    let db = TestDb::new().await;
    let mut su = db.superuser().await;
    let set = tenantguard::testing::policy();
    let provisioner = unique_name("prov");
    schema::migrate_with(&mut su, &set, &provisioner)
        .await
        .unwrap();
    assert!(schema::check_with(&mut su, &set, &provisioner)
        .await
        .unwrap()
        .is_empty());
    su.batch_execute(&format!("ALTER ROLE {provisioner} LOGIN CREATEDB"))
        .await
        .unwrap();
    let diffs = schema::check_with(&mut su, &set, &provisioner)
        .await
        .unwrap()
        .join("\n");
    assert!(
        diffs.contains(&format!("role {provisioner} attributes differ"))
            && diffs.contains("login=true, createdb=true"),
        "{diffs}"
    );
    schema::migrate_with(&mut su, &set, &provisioner)
        .await
        .unwrap();
    let after = schema::check_with(&mut su, &set, &provisioner)
        .await
        .unwrap();
    assert!(after.is_empty(), "{after:?}");
    let row = su
        .query_one(
            "SELECT rolcanlogin, rolcreatedb, rolbypassrls FROM pg_roles WHERE rolname = $1",
            &[&provisioner],
        )
        .await
        .unwrap();
    assert_eq!(
        (
            row.get::<_, bool>(0),
            row.get::<_, bool>(1),
            row.get::<_, bool>(2)
        ),
        (false, false, true)
    );
}
