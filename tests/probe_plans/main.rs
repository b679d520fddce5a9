//! `tenantguard probe plans` on a private cluster with pg_stat_statements loaded: the
//! reference schema's workload is clean; fixtures plant each plan problem; an unreadable
//! workload or an unplannable statement is inconclusive.

use std::sync::OnceLock;

use tenantguard::audit::Severity;
use tenantguard::cluster::{Cluster, ClusterOptions, Durability, SUPERUSER};
use tenantguard::outcome::RunStatus;
use tenantguard::probe::plans::{self, PlansConfig, PlansReport, Source};
use tokio_postgres::{Client, NoTls};

struct Server {
    cluster: Cluster,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
const TEMPLATE: &str = "plans_template";

fn server() -> &'static Server {
    let s = SERVER.get_or_init(|| {
        std::thread::spawn(|| {
            let cluster = Cluster::start(&ClusterOptions {
                durability: Durability::Throwaway,
                max_connections: 100,
                settings: vec![(
                    "shared_preload_libraries".into(),
                    "pg_stat_statements".into(),
                )],
                ..ClusterOptions::default()
            })
            .map_err(|e| e.to_string())?;
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            rt.block_on(async {
                let admin = connect_cfg(cluster.config(SUPERUSER, "postgres")).await;
                admin
                    .batch_execute(&format!("CREATE DATABASE {TEMPLATE}"))
                    .await
                    .map_err(|e| e.to_string())?;
                let mut c = connect_cfg(cluster.config(SUPERUSER, TEMPLATE)).await;
                tenantguard::schema::migrate(&mut c, &tenantguard::testing::policy())
                    .await
                    .map_err(|e| e.to_string())?;
                c.batch_execute("CREATE EXTENSION pg_stat_statements")
                    .await
                    .map_err(|e| e.to_string())?;
                Ok::<_, String>(())
            })?;
            Ok(Server { cluster })
        })
        .join()
        .unwrap_or_else(|_| Err("cluster start panicked".into()))
    });
    match s {
        Ok(s) => s,
        Err(e) => panic!("test cluster: {e}"),
    }
}

async fn connect_cfg(cfg: tokio_postgres::Config) -> Client {
    let (client, conn) = cfg.connect(NoTls).await.expect("connect");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    client
}

/// A fresh copy of the migrated reference schema (with pg_stat_statements); its name.
async fn fresh_db() -> String {
    let s = server();
    let name = tenantguard::testing::unique_name("plans");
    let admin = connect_cfg(s.cluster.config(SUPERUSER, "postgres")).await;
    admin
        .batch_execute(&format!("CREATE DATABASE {name} TEMPLATE {TEMPLATE}"))
        .await
        .expect("create database");
    name
}

async fn su(db: &str) -> Client {
    connect_cfg(server().cluster.config(SUPERUSER, db)).await
}

fn url(db: &str) -> String {
    server().cluster.url(SUPERUSER, db)
}

/// 200 tenants × 100 projects × 3 tasks, analyzed.
async fn seed_reference(c: &Client) {
    c.batch_execute(
        "INSERT INTO tenants (name) SELECT 't' || g FROM generate_series(1, 200) g;
         INSERT INTO projects (tenant_id, name) SELECT t.id, 'p' || g FROM tenants t, generate_series(1, 100) g;
         INSERT INTO tasks (tenant_id, project_id, title) SELECT p.tenant_id, p.id, 'x' FROM projects p, generate_series(1, 3);
         ANALYZE;",
    )
    .await
    .expect("seed");
}

fn config(source: Source) -> PlansConfig {
    PlansConfig {
        source,
        ..PlansConfig::default()
    }
}

async fn run(db: &str, config: &PlansConfig) -> PlansReport {
    let mut c = su(db).await;
    plans::probe_plans(&mut c, config)
        .await
        .expect("probe plans")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reference_workload_from_pg_stat_statements_is_clean() {
    let db = fresh_db().await;
    let s = su(&db).await;
    seed_reference(&s).await;
    let row = s
        .query_one("SELECT tenant_id, id FROM projects LIMIT 1", &[])
        .await
        .expect("row");
    let (tenant, project): (uuid::Uuid, uuid::Uuid) = (row.get(0), row.get(1));
    // The workload, as the app runs it: bound parameters, tenant context per transaction.
    let mut app = connect_cfg(server().cluster.config("tenantguard_app", &db)).await;
    for _ in 0..3 {
        let tx = app.transaction().await.expect("tx");
        tx.execute(
            "SELECT set_config('app.tenant_id', $1, true)",
            &[&tenant.to_string()],
        )
        .await
        .expect("ctx");
        tx.query(
            "SELECT id, name FROM projects ORDER BY created_at DESC, id DESC LIMIT $1",
            &[&50i64],
        )
        .await
        .expect("list");
        tx.query("SELECT id, name FROM projects WHERE id = $1", &[&project])
            .await
            .expect("get");
        tx.query("SELECT id, title FROM tasks WHERE project_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2", &[&project, &50i64]).await.expect("tasks");
        tx.execute(
            "UPDATE projects SET name = $1 WHERE id = $2",
            &[&"renamed", &project],
        )
        .await
        .expect("update");
        tx.rollback().await.expect("rollback");
    }
    let report = run(
        &db,
        &config(Source::Stats {
            top: 50,
            by_time: false,
        }),
    )
    .await;
    let text = report.text(Severity::Medium);
    assert!(report.findings.is_empty(), "{text}");
    assert!(report.planned() >= 8, "{text}"); // 4+ statements × 2 tenants
    assert_eq!(report.tenants.len(), 2, "{text}");
    assert_eq!(report.status(Severity::Info), RunStatus::Clean, "{text}");
    assert!(
        report
            .statements
            .iter()
            .any(|s| s.query.contains("FROM tasks WHERE project_id = $1")),
        "{text}"
    );
}

/// Three tenant tables, each with one plan problem, 20,000 rows over 50 tenants.
async fn plant(c: &Client) {
    c.batch_execute(
        "CREATE SCHEMA fx;
         CREATE TABLE fx.docs (tenant_id uuid NOT NULL, id bigint PRIMARY KEY, body text NOT NULL);
         CREATE TABLE fx.notes (tenant_id uuid NOT NULL, id bigint NOT NULL, title text NOT NULL);
         CREATE UNIQUE INDEX notes_id_idx ON fx.notes (id);
         CREATE TABLE fx.items (tenant_id uuid NOT NULL, id bigint NOT NULL, name text NOT NULL, PRIMARY KEY (tenant_id, id));
         CREATE INDEX items_lower_name_idx ON fx.items (lower(name));
         CREATE TEMP TABLE ts AS SELECT gen_random_uuid() AS t, g FROM generate_series(0, 49) g;
         INSERT INTO fx.docs SELECT (SELECT t FROM ts WHERE g = i % 50), i, 'body ' || i FROM generate_series(1, 20000) i;
         INSERT INTO fx.notes SELECT (SELECT t FROM ts WHERE g = i % 50), i, 'note ' || i FROM generate_series(1, 20000) i;
         INSERT INTO fx.items SELECT (SELECT t FROM ts WHERE g = i % 50), i, 'Item ' || i FROM generate_series(1, 20000) i;
         DO $$ DECLARE t text; BEGIN
           FOREACH t IN ARRAY ARRAY['docs', 'notes', 'items'] LOOP
             EXECUTE format('ALTER TABLE fx.%I ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY', t);
             EXECUTE format('CREATE POLICY tenant ON fx.%I TO tenantguard_app USING (tenant_id = (SELECT tenantguard.current_tenant_id()))', t);
             EXECUTE format('GRANT SELECT ON fx.%I TO tenantguard_app', t);
           END LOOP; END $$;
         GRANT USAGE ON SCHEMA fx TO tenantguard_app;
         ANALYZE;",
    )
    .await
    .expect("plant");
}

const PLANTED: &str = "SELECT * FROM fx.docs WHERE body = $1;
SELECT * FROM fx.notes WHERE id = $1;
SELECT * FROM fx.items WHERE lower(name) = $1;
SELECT * FROM fx.items WHERE id = 7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_planted_plan_problem_is_found() {
    let db = fresh_db().await;
    let s = su(&db).await;
    plant(&s).await;
    let report = run(
        &db,
        &config(Source::Given(plans::split_statements(PLANTED))),
    )
    .await;
    let text = report.text(Severity::Medium);
    let has = |rule: &str, rel: &str| {
        report
            .findings
            .iter()
            .any(|f| f.rule == rule && f.relation == rel)
    };
    assert!(has("TGP001", "fx.docs"), "{text}");
    assert!(has("TGP002", "fx.notes"), "{text}");
    assert!(has("TGP003", "fx.items"), "{text}");
    let f = report
        .findings
        .iter()
        .find(|f| f.rule == "TGP003")
        .expect("TGP003");
    assert!(
        f.why.contains("items_lower_name_idx") && f.why.contains("lower()"),
        "{}",
        f.why
    );
    // The well-indexed statement is no finding.
    assert!(
        !report
            .findings
            .iter()
            .any(|f| f.statement.contains("id = 7")),
        "{text}"
    );
    assert_eq!(report.findings.len(), 3, "{text}");
    assert_eq!(report.status(Severity::Medium), RunStatus::Findings);
    // --fail-on above every finding: not a failure, and nothing inconclusive: clean.
    assert_eq!(report.status(Severity::Critical), RunStatus::Clean);
    // Nothing was left behind: no prepared statement on the connection, no change.
    let n: i64 = s
        .query_one("SELECT count(*) FROM fx.items", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(n, 20000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreadable_workload_and_unplannable_statements_are_inconclusive() {
    let db = fresh_db().await;
    let s = su(&db).await;
    seed_reference(&s).await;
    let report = run(
        &db,
        &config(Source::Given(vec![
            "SELECT * FROM no_such_table WHERE id = $1".into(),
            "SELECT id FROM projects WHERE id = $1".into(),
        ])),
    )
    .await;
    assert_eq!(
        report.status(Severity::Medium),
        RunStatus::Inconclusive,
        "{}",
        report.text(Severity::Medium)
    );
    assert_eq!(report.status(Severity::Medium).code(), 3);
    assert!(
        report.unplanned()[0].2.contains("no_such_table"),
        "{:?}",
        report.unplanned()
    );
    s.batch_execute("DROP EXTENSION pg_stat_statements")
        .await
        .expect("drop");
    let report = run(
        &db,
        &config(Source::Stats {
            top: 10,
            by_time: true,
        }),
    )
    .await;
    assert_eq!(report.status(Severity::Medium), RunStatus::Inconclusive);
    assert!(
        report.inconclusive[0].contains("not installed"),
        "{:?}",
        report.inconclusive
    );
    assert_eq!(report.planned(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_json_is_valid_and_exit_codes_follow_the_policy() {
    let db = fresh_db().await;
    let s = su(&db).await;
    plant(&s).await;
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("queries.sql");
    std::fs::write(&file, PLANTED).expect("write");
    let bin = env!("CARGO_BIN_EXE_tenantguard");
    let u = url(&db);
    let f = file.display().to_string();
    let out = tokio::task::spawn_blocking(move || {
        let run = |format: &str| {
            std::process::Command::new(bin)
                .args([
                    "probe",
                    "plans",
                    "--database-url",
                    &u,
                    "--queries",
                    &f,
                    "--format",
                    format,
                ])
                .output()
                .expect("run")
        };
        (run("json"), run("sarif"))
    })
    .await
    .expect("join");
    let (json_out, sarif_out) = out;
    assert_eq!(
        json_out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&json_out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&json_out.stdout).expect("json");
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("schemas/probe-plans.schema.json")).expect("schema");
    let v = jsonschema::validator_for(&schema).expect("compile");
    let errors: Vec<String> = v
        .iter_errors(&doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(doc["exit_code"], 1);
    let sarif: serde_json::Value = serde_json::from_slice(&sarif_out.stdout).expect("sarif");
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../audit/schemas/sarif-github.schema.json"))
            .expect("sarif schema");
    assert!(
        jsonschema::validator_for(&schema)
            .expect("compile")
            .is_valid(&sarif),
        "{sarif}"
    );
    assert_eq!(
        sarif["runs"][0]["results"].as_array().map(Vec::len),
        Some(3)
    );
}
