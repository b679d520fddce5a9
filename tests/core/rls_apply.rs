//! `tenantguard rls apply` on a database shaped like the seed's: the nine tables hold
//! rows, some have a nullable tenant column, some none at all. Every row is kept, and
//! afterwards the app role sees only the current tenant's rows (using the seed's own
//! setting name, `app.current_tenant_id`). Bad configurations change nothing.

use std::process::Command;

use crate::support::*;

/// The seed's nine tables: `tenant_id` exists (nullable, as after the seed's
/// "ADD COLUMN IF NOT EXISTS") on some, is missing on the others.
const SEED_SCHEMA: &str = "
CREATE TABLE tenants (id uuid PRIMARY KEY, name text NOT NULL);
CREATE TABLE projects (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id uuid, name text NOT NULL, description text, created_at timestamptz DEFAULT now());
CREATE TABLE tasks (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), project_id uuid NOT NULL REFERENCES projects(id), title text NOT NULL);
CREATE TABLE documents (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), project_id uuid NOT NULL REFERENCES projects(id), title text);
CREATE TABLE comments (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), task_id uuid NOT NULL REFERENCES tasks(id), body text);
CREATE TABLE invoices (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id uuid, number text);
CREATE TABLE team_members (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id uuid NOT NULL, email text);
CREATE TABLE api_keys (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), member_id uuid NOT NULL REFERENCES team_members(id), key_hash text);
CREATE TABLE webhooks (id uuid PRIMARY KEY DEFAULT gen_random_uuid(), tenant_id uuid, url text);
CREATE TABLE audit_log (id bigserial PRIMARY KEY, project_id uuid REFERENCES projects(id), action text);
";

fn seed_rows(t: &str, n: usize) -> String {
    let mut s = format!("INSERT INTO tenants VALUES ('{t}', 'tenant {t}');\n");
    for i in 0..n {
        let p = uuid::Uuid::new_v4();
        let task = uuid::Uuid::new_v4();
        let m = uuid::Uuid::new_v4();
        s.push_str(&format!(
            "INSERT INTO projects (id, tenant_id, name) VALUES ('{p}', '{t}', 'p{i}');
             INSERT INTO tasks (id, project_id, title) VALUES ('{task}', '{p}', 't{i}');
             INSERT INTO documents (project_id, title) VALUES ('{p}', 'd{i}');
             INSERT INTO comments (task_id, body) VALUES ('{task}', 'c{i}');
             INSERT INTO invoices (tenant_id, number) VALUES ('{t}', 'INV-{i}');
             INSERT INTO team_members (id, tenant_id, email) VALUES ('{m}', '{t}', 'm{i}@x');
             INSERT INTO api_keys (member_id, key_hash) VALUES ('{m}', 'h{i}');
             INSERT INTO webhooks (tenant_id, url) VALUES ('{t}', 'https://x/{i}');
             INSERT INTO audit_log (project_id, action) VALUES ('{p}', 'a{i}');\n"
        ));
    }
    s
}

const TABLES9: [&str; 9] = [
    "projects",
    "tasks",
    "documents",
    "comments",
    "invoices",
    "team_members",
    "api_keys",
    "webhooks",
    "audit_log",
];

fn config(app: &str, with_backfill: bool) -> String {
    let bf = |expr: &str| {
        if with_backfill {
            format!("backfill = \"{expr}\"\n")
        } else {
            String::new()
        }
    };
    format!(
        r#"tenant_setting = "app.current_tenant_id"
[roles]
app = "{app}"

[[table]]
name = "projects"
[[table]]
name = "tasks"
{tasks}
[[table]]
name = "documents"
{documents}
[[table]]
name = "comments"
{comments}
[[table]]
name = "invoices"
[[table]]
name = "team_members"
[[table]]
name = "api_keys"
{api_keys}
[[table]]
name = "webhooks"
[[table]]
name = "audit_log"
commands = ["select", "insert"]
{audit}
"#,
        tasks = bf("(SELECT p.tenant_id FROM projects p WHERE p.id = project_id)"),
        documents = bf("(SELECT p.tenant_id FROM projects p WHERE p.id = project_id)"),
        comments = bf("(SELECT t.tenant_id FROM tasks t WHERE t.id = task_id)"),
        api_keys = bf("(SELECT m.tenant_id FROM team_members m WHERE m.id = member_id)"),
        audit = bf("(SELECT p.tenant_id FROM projects p WHERE p.id = project_id)"),
    )
}

fn apply(url: &str, cfg: &str) -> (i32, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tenantguard.toml");
    std::fs::write(&path, cfg).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_tenantguard"))
        .args(["rls", "apply", "--config"])
        .arg(&path)
        .args(["--database-url", url])
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

async fn counts(su: &tokio_postgres::Client) -> Vec<i64> {
    let mut v = Vec::new();
    for t in TABLES9 {
        v.push(
            su.query_one(&format!("SELECT count(*) FROM {t}"), &[])
                .await
                .unwrap()
                .get(0),
        );
    }
    v
}

#[tokio::test]
async fn rls_apply_on_a_seed_shaped_database_keeps_rows_and_isolates() {
    let db = TestDb::empty().await;
    let su = db.superuser().await;
    let (a, b) = (uuid::Uuid::new_v4(), uuid::Uuid::new_v4());
    su.batch_execute(SEED_SCHEMA).await.unwrap();
    su.batch_execute(&seed_rows(&a.to_string(), 3))
        .await
        .unwrap();
    su.batch_execute(&seed_rows(&b.to_string(), 5))
        .await
        .unwrap();
    // A row the seed's filters would have missed: a project with no tenant yet is fine
    // for the nullable column only if backfilled; here every project has one.
    let before = counts(&su).await;
    let app = unique_name("seed_app");
    let url = db.superuser_url();

    // Without backfill expressions it stops before changing anything.
    let (code, out) = apply(&url, &config(&app, false));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("has no column \"tenant_id\" and no `backfill`"),
        "{out}"
    );
    let rls_on: i64 = su
        .query_one("SELECT count(*) FROM pg_class WHERE relrowsecurity", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rls_on, 0, "nothing was changed");

    let (code, out) = apply(&url, &config(&app, true));
    assert_eq!(code, 0, "{out}");
    assert_eq!(counts(&su).await, before, "no row lost");

    // Applying again changes nothing.
    let (code, out) = apply(&url, &config(&app, true));
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 change(s)"), "{out}");

    // The app role sees only the current tenant's rows, with the seed's setting name.
    let mut client = db.connect_as(&app).await;
    for (tenant, n) in [(a, 3i64), (b, 5i64)] {
        let tx = client.transaction().await.unwrap();
        tx.execute(
            "SELECT set_config('app.current_tenant_id', $1, true)",
            &[&tenant.to_string()],
        )
        .await
        .unwrap();
        for t in TABLES9 {
            let row = tx
                .query_one(
                    &format!("SELECT count(*), count(*) FILTER (WHERE tenant_id <> $1) FROM {t}"),
                    &[&tenant],
                )
                .await
                .unwrap();
            assert_eq!(row.get::<_, i64>(0), n, "{t} for {tenant}");
            assert_eq!(row.get::<_, i64>(1), 0, "{t}: foreign rows");
        }
        tx.rollback().await.unwrap();
    }
    // And nothing without a tenant.
    for t in TABLES9 {
        let n: i64 = client
            .query_one(&format!("SELECT count(*) FROM {t}"), &[])
            .await
            .unwrap()
            .get(0);
        assert_eq!(n, 0, "{t} without a tenant");
    }
}

#[tokio::test]
async fn a_backfill_that_leaves_rows_without_a_tenant_changes_nothing() {
    let db = TestDb::empty().await;
    let su = db.superuser().await;
    su.batch_execute(SEED_SCHEMA).await.unwrap();
    let a = uuid::Uuid::new_v4().to_string();
    su.batch_execute(&seed_rows(&a, 2)).await.unwrap();
    // An orphan: a project whose tenant is unknown, so its task cannot be backfilled.
    su.batch_execute(
        "INSERT INTO projects (id, name) VALUES ('00000000-0000-0000-0000-000000000001', 'orphan');
         INSERT INTO tasks (project_id, title) VALUES ('00000000-0000-0000-0000-000000000001', 'lost?');",
    )
    .await
    .unwrap();
    let app = unique_name("seed_app");
    let (code, out) = apply(&db.superuser_url(), &config(&app, true));
    assert_eq!(code, 2, "{out}");
    assert!(
        out.contains("without a tenant; nothing was changed")
            || out.contains("contains null values"),
        "{out}"
    );
    let has_col: i64 = su
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_name = 'tasks' AND column_name = 'tenant_id'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(has_col, 0, "the transaction was rolled back");
    let role: i64 = su
        .query_one("SELECT count(*) FROM pg_roles WHERE rolname = $1", &[&app])
        .await
        .unwrap()
        .get(0);
    assert_eq!(role, 0, "not even the role was created");
}

#[tokio::test]
async fn rls_apply_rejects_a_bad_config_file() {
    let (code, out) = apply(
        "postgresql://x@127.0.0.1:1/x",
        "[roles]\napp = 'a'\n[[table]]\nnme = 't'\n",
    );
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("unknown field"), "{out}");
}

#[tokio::test]
async fn an_app_role_with_extra_attributes_is_reported_and_restored() {
    let db = TestDb::empty().await;
    let su = db.superuser().await;
    let app = unique_name("attr_app");
    su.batch_execute(&format!(
        "CREATE TABLE notes (tenant_id uuid NOT NULL, id int PRIMARY KEY, body text);
         CREATE ROLE {app} LOGIN CREATEDB;"
    ))
    .await
    .unwrap();
    let cfg = format!("[roles]\napp = \"{app}\"\n[[table]]\nname = \"notes\"\n");
    let url = db.superuser_url();
    let (code, out) = apply(&url, &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(
        out.contains(&format!("role {app}: attributes differ"))
            && out.contains("createdb=true")
            && out.contains("want LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB"),
        "{out}"
    );
    let createdb: bool = su
        .query_one(
            "SELECT rolcreatedb FROM pg_roles WHERE rolname = $1",
            &[&app],
        )
        .await
        .unwrap()
        .get(0);
    assert!(!createdb, "CREATEDB was revoked");
    let (code, out) = apply(&url, &cfg);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("0 change(s)"), "{out}");
}
