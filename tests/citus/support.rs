//! The Citus harness: three private clusters (coordinator + two workers) on unix sockets,
//! one distributed database, the reference schema migrated with `--citus`.

use std::sync::{Mutex, OnceLock};

use tenantguard::cluster::{Cluster, ClusterOptions, Durability, SUPERUSER};
use tenantguard::policy::{PolicySet, Roles};
use tenantguard::schema;
use tokio_postgres::{Client, Config, NoTls, SimpleQueryMessage};
use uuid::Uuid;

/// The run's distributed database (on every node).
pub const DB: &str = "tg_citus";

/// Shards per distributed table: fewer than Citus's 32 so that distributing eleven tables
/// stays quick on a loaded machine; more than one per worker, so fan-out is visible.
pub const SHARD_COUNT: u32 = 8;

/// A running coordinator with two workers.
pub struct Citus {
    /// The coordinator as the superuser, database [`DB`].
    pub coordinator: Config,
    /// `postgresql://` URL of the same, for the CLI.
    pub coordinator_url: String,
    /// The workers as the superuser, database [`DB`].
    pub workers: Vec<Config>,
    /// Per node (coordinator first): the superuser on `postgres`, socket directory, port.
    nodes: Vec<(Config, String, u16)>,
}

/// Creates database `name` on every node with the citus extension, and registers the
/// coordinator and the workers in it (Citus metadata is per database).
async fn distributed_database(nodes: &[(Config, String, u16)], name: &str) -> Result<(), String> {
    for (admin_cfg, _, _) in nodes {
        let admin = connect(admin_cfg).await?;
        sql(&admin, &format!("CREATE DATABASE {name}")).await?;
        let mut cfg = admin_cfg.clone();
        cfg.dbname(name);
        let db = connect(&cfg).await?;
        sql(&db, "CREATE EXTENSION citus").await?;
    }
    let mut cfg = nodes[0].0.clone();
    cfg.dbname(name);
    let coord = connect(&cfg).await?;
    sql(
        &coord,
        &format!(
            "SELECT citus_set_coordinator_host('{}', {})",
            nodes[0].1, nodes[0].2
        ),
    )
    .await?;
    for (_, sock, port) in &nodes[1..] {
        sql(&coord, &format!("SELECT citus_add_node('{sock}', {port})")).await?;
    }
    Ok(())
}

/// Why the harness is not there: Citus missing (skip) or a broken set-up (fail).
enum Unavailable {
    Skip(String),
    Fail(String),
}

static CITUS: OnceLock<Result<Citus, Unavailable>> = OnceLock::new();
static CLUSTERS: Mutex<Vec<Cluster>> = Mutex::new(Vec::new());

extern "C" fn stop_clusters() {
    if let Ok(mut guard) = CLUSTERS.lock() {
        guard.clear();
    }
}

/// The reference declaration the database is migrated with.
pub fn policy() -> PolicySet {
    schema::reference_policy(Roles::default(), "app.tenant_id")
}

/// The Citus cluster, or `None` (after printing why) when these tests do not run here.
pub fn citus(test: &str) -> Option<&'static Citus> {
    if std::env::var("TENANTGUARD_TEST_CITUS").as_deref() != Ok("1") {
        eprintln!(
            "{test}: skipped: set TENANTGUARD_TEST_CITUS=1 (with Citus installed for the \
             PostgreSQL the tests use) to run the Citus tests"
        );
        return None;
    }
    let c = CITUS.get_or_init(|| {
        std::thread::spawn(init).join().unwrap_or_else(|_| {
            Err(Unavailable::Fail(
                "Citus harness initialisation panicked".into(),
            ))
        })
    });
    match c {
        Ok(c) => Some(c),
        Err(Unavailable::Skip(e)) => {
            eprintln!("{test}: skipped: Citus is not available: {e}");
            None
        }
        // Citus loads but the harness could not set it up: that is a failure, not a skip.
        Err(Unavailable::Fail(e)) => panic!("Citus harness: {e}"),
    }
}

fn start_node() -> Result<Cluster, String> {
    Cluster::start(&ClusterOptions {
        durability: Durability::Throwaway,
        max_connections: 300,
        settings: vec![
            ("shared_preload_libraries".into(), "citus".into()),
            // Multi-shard writes commit with two-phase commit on the workers.
            ("max_prepared_transactions".into(), "200".into()),
            // Node-to-node traffic here is unix sockets with trust (mode 0700, owned by the
            // server user): no TLS.
            ("citus.node_conninfo".into(), "sslmode=disable".into()),
            ("citus.shard_count".into(), SHARD_COUNT.to_string()),
        ],
        ..ClusterOptions::default()
    })
    .map_err(|e| {
        let msg = e.to_string();
        if msg.contains("citus") {
            format!("shared_preload_libraries=citus does not load: {msg}")
        } else {
            msg
        }
    })
}

fn init() -> Result<Citus, Unavailable> {
    let mut nodes = Vec::new();
    for _ in 0..3 {
        nodes.push(start_node().map_err(Unavailable::Skip)?);
    }
    init_nodes(nodes).map_err(Unavailable::Fail)
}

fn init_nodes(nodes: Vec<Cluster>) -> Result<Citus, String> {
    let configs: Vec<(Config, Config, String, u16)> = nodes
        .iter()
        .map(|n| {
            (
                n.config(SUPERUSER, "postgres"),
                n.config(SUPERUSER, DB),
                n.socket_dir().display().to_string(),
                n.port(),
            )
        })
        .collect();
    let coordinator_url = nodes[0].url(SUPERUSER, DB);
    *CLUSTERS.lock().map_err(|e| e.to_string())? = nodes;
    // SAFETY: registering a plain extern "C" fn with no captured state.
    unsafe {
        libc::atexit(stop_clusters);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    rt.block_on(async {
        for (admin_cfg, _, sock, _) in &configs {
            let admin = connect(admin_cfg).await?;
            sql(
                &admin,
                &format!("ALTER SYSTEM SET citus.local_hostname = '{sock}'"),
            )
            .await?;
            sql(&admin, "SELECT pg_reload_conf()").await?;
        }
        let nodes: Vec<(Config, String, u16)> = configs
            .iter()
            .map(|(a, _, sock, port)| (a.clone(), sock.clone(), *port))
            .collect();
        distributed_database(&nodes, DB).await?;
        let coord = connect(&configs[0].1).await?;
        let version: String = coord
            .query_one("SELECT citus_version()", &[])
            .await
            .map_err(|e| format!("citus_version(): {e}"))?
            .get(0);
        let mut coord = coord;
        let started = std::time::Instant::now();
        schema::citus::migrate(&mut coord, &policy(), "tenantguard_provisioner")
            .await
            .map_err(|e| format!("migrate --citus: {}", tenantguard::error_chain(&e)))?;
        eprintln!(
            "tenantguard citus tests: {version}; coordinator + 2 workers; migrate --citus took {:.1} s",
            started.elapsed().as_secs_f64()
        );
        Ok::<_, String>(Citus {
            coordinator: configs[0].1.clone(),
            coordinator_url,
            workers: configs[1..].iter().map(|c| c.1.clone()).collect(),
            nodes,
        })
    })
}

async fn sql(c: &Client, q: &str) -> Result<(), String> {
    c.batch_execute(q)
        .await
        .map_err(|e| format!("`{q}`: {}", tenantguard::error_chain(&e)))
}

/// Connects with `cfg`.
pub async fn connect(cfg: &Config) -> Result<Client, String> {
    let (client, conn) = cfg
        .connect(NoTls)
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

impl Citus {
    /// The coordinator as the superuser.
    pub async fn superuser(&self) -> Client {
        connect(&self.coordinator).await.expect("coordinator")
    }

    /// The coordinator as `role`.
    pub async fn as_role(&self, role: &str) -> Client {
        let mut c = self.coordinator.clone();
        c.user(role);
        connect(&c).await.expect("coordinator as role")
    }

    /// A new distributed database of a test's own (coordinator and both workers), for
    /// tests that change database-wide objects; returns its coordinator URL and config.
    pub async fn own_database(&self, name: &str) -> (String, Config) {
        distributed_database(&self.nodes, name)
            .await
            .unwrap_or_else(|e| panic!("database {name}: {e}"));
        let mut cfg = self.coordinator.clone();
        cfg.dbname(name);
        let url = self
            .coordinator_url
            .replace(&format!("/{DB}"), &format!("/{name}"));
        (url, cfg)
    }

    /// Worker `i` as the superuser.
    pub async fn worker(&self, i: usize) -> Client {
        connect(&self.workers[i]).await.expect("worker")
    }
}

/// One tenant's rows in every table (inserted by the superuser), with their ids.
#[derive(Debug, Clone, Copy)]
pub struct Tenant {
    pub id: Uuid,
    pub member: Uuid,
    pub project: Uuid,
    pub task: Uuid,
    pub document: Uuid,
    pub comment: Uuid,
}

/// A `uuid` literal (the ids are parsed UUIDs, so this cannot inject).
pub fn lit(u: Uuid) -> String {
    format!("'{u}'")
}

/// Makes a tenant with one row in each table; the task is assigned to the member and the
/// comment (on the task) is authored by it.
pub async fn tenant(su: &Client) -> Tenant {
    let t = Tenant {
        id: Uuid::now_v7(),
        member: Uuid::now_v7(),
        project: Uuid::now_v7(),
        task: Uuid::now_v7(),
        document: Uuid::now_v7(),
        comment: Uuid::now_v7(),
    };
    let (id, m, p, k, d, c) = (
        lit(t.id),
        lit(t.member),
        lit(t.project),
        lit(t.task),
        lit(t.document),
        lit(t.comment),
    );
    let short = &t.id.simple().to_string()[..12];
    let stmts = [
        format!("INSERT INTO tenants (id, name) VALUES ({id}, 't {short}')"),
        format!("INSERT INTO team_members (tenant_id, id, email, role) VALUES ({id}, {m}, 'm{short}@example.com', 'owner')"),
        format!("INSERT INTO projects (tenant_id, id, name) VALUES ({id}, {p}, 'p')"),
        format!("INSERT INTO tasks (tenant_id, id, project_id, title, assignee_id) VALUES ({id}, {k}, {p}, 'k', {m})"),
        format!("INSERT INTO documents (tenant_id, id, project_id, title) VALUES ({id}, {d}, {p}, 'd')"),
        format!("INSERT INTO comments (tenant_id, id, task_id, author_id, body) VALUES ({id}, {c}, {k}, {m}, 'c')"),
        format!("INSERT INTO invoices (tenant_id, number, customer_name, amount_minor, currency) VALUES ({id}, 'INV-1', 'x', 100, 'EUR')"),
        format!("INSERT INTO api_keys (tenant_id, name, prefix, key_hash, role) VALUES ({id}, 'k', 'tgk_{short}', decode(repeat('ab', 32), 'hex'), 'owner')"),
        format!("INSERT INTO webhooks (tenant_id, url, event_types, signing_secret) VALUES ({id}, 'https://example.com/h', ARRAY['task.created'], repeat('s', 16))"),
        format!("INSERT INTO audit_log (tenant_id, actor, action, resource_type) VALUES ({id}, 'test', 'seed', 'tenant')"),
        format!("INSERT INTO idempotency_keys (tenant_id, credential, idem_key, request_hash, status, body, expires_at) VALUES ({id}, 'user:x', 'k1', decode(repeat('cd', 32), 'hex'), 201, ''::bytea, now() + interval '1 day')"),
    ];
    for s in &stmts {
        su.batch_execute(s)
            .await
            .unwrap_or_else(|e| panic!("{s}: {}", tenantguard::error_chain(&e)));
    }
    t
}

/// The outcome of one batch: every row it returned, and the largest command-tag row count
/// (BEGIN, SET and COMMIT count 0, so for one statement in a transaction it is that
/// statement's), or the error.
pub type Outcome = Result<(Vec<Vec<Option<String>>>, u64), String>;

/// Runs the `;`-separated statements of `sql` one Query message each, stopping at the
/// first error (then rolling back, so the connection is usable again).
///
/// Not one multi-statement Query message: Citus 13.2 propagates a `SET LOCAL` to the
/// workers by sending the *whole query string* it came in, so `BEGIN; SET LOCAL …; SELECT
/// …; COMMIT` as one simple-protocol string runs the SELECT again on every worker (which
/// fails there: "cannot execute a distributed query from a query on a shard"). One
/// statement per message (or the extended protocol, which the pool uses) is what works.
/// None of the statements here has a `;` inside a literal.
pub async fn run(c: &Client, sql: &str) -> Outcome {
    let mut rows = Vec::new();
    let mut count = 0;
    for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        match c.simple_query(stmt).await {
            Ok(msgs) => {
                for m in msgs {
                    match m {
                        SimpleQueryMessage::Row(r) => {
                            rows.push((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
                        }
                        SimpleQueryMessage::CommandComplete(n) => count = count.max(n),
                        _ => {}
                    }
                }
            }
            Err(e) => {
                let msg = tenantguard::error_chain(&e);
                c.batch_execute("ROLLBACK")
                    .await
                    .expect("rollback after error");
                return Err(msg);
            }
        }
    }
    Ok((rows, count))
}

/// `BEGIN; SET LOCAL app.tenant_id = '<tenant>'; <body>; COMMIT` in one Sync.
pub fn in_tenant(tenant: &str, body: &str) -> String {
    format!("BEGIN; SET LOCAL app.tenant_id = '{tenant}'; {body}; COMMIT")
}

/// The first column of the first row of a successful outcome.
pub fn scalar(o: &Outcome) -> String {
    match o {
        Ok((rows, _)) => rows
            .iter()
            .rev()
            .find_map(|r| r.first().cloned().flatten())
            .unwrap_or_default(),
        Err(e) => panic!("expected rows, got error: {e}"),
    }
}

/// The `Task Count` of a Citus EXPLAIN (one line per element), if it shows one.
pub fn task_count(plan: &[String]) -> Option<u32> {
    plan.iter().find_map(|l| {
        l.trim()
            .strip_prefix("Task Count: ")
            .and_then(|n| n.trim().parse().ok())
    })
}
