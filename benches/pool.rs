//! Database-level cost of tenant scoping: throughput and latency of one point read per
//! request, in one run, as ratios against a plain single statement with an explicit
//! `WHERE tenant_id = $1` filter (the pre-RLS application).
//!
//! `cargo bench --bench pool` (env: BENCH_SECONDS per scenario, default 5;
//! BENCH_CONCURRENCY, default "1,8"). Starts its own throwaway PostgreSQL.
//!
//! Scenarios, each a request = read one project of one tenant:
//! - `explicit-filter`: one prepared statement as a BYPASSRLS role with the filter written out.
//! - `naive-rls`: BEGIN; set_config; SELECT; COMMIT — each awaited (four round trips).
//! - `tenanttx-read`: `TenantPool::begin_read_only` → query → commit (set_config and the
//!   SELECT bound under one Sync, no BEGIN/COMMIT: one round trip, one implicit transaction).
//! - `tenanttx-write`: `TenantPool::begin` → query → commit awaited (two round trips).
//! - `tenanttx-query-commit`: `TenantPool::begin` → `query_commit` (the path of a request
//!   whose one statement is a write: set_config and the statement under one Sync, committed
//!   there; one round trip).
//! - `…-set-local`: the three `tenanttx` scenarios with the `SET LOCAL` context carrier
//!   (Citus's: `BEGIN [READ ONLY]; SET LOCAL …; SELECT; COMMIT` under one Sync for read and
//!   query-commit). After each concurrency level, the ratio of each to its `set_config`
//!   twin is printed.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tenantguard::cluster::{Cluster, ClusterOptions, Durability, SUPERUSER};
use tenantguard::pool::ContextCarrier;
use tenantguard::{PoolOptions, TenantPool};
use tokio_postgres::NoTls;
use uuid::Uuid;

const Q_EXPLICIT: &str =
    "SELECT id, name, description, created_at FROM projects WHERE tenant_id = $1 AND id = $2";
const Q_RLS: &str = "SELECT id, name, description, created_at FROM projects WHERE id = $1";

#[derive(Clone, Copy, Debug, PartialEq)]
enum Scenario {
    Explicit,
    Naive,
    TxRead(ContextCarrier),
    TxWrite(ContextCarrier),
    TxCommit(ContextCarrier),
}

const SC: ContextCarrier = ContextCarrier::SetConfigLocal;
const SL: ContextCarrier = ContextCarrier::SetLocal;

impl Scenario {
    fn name(self) -> &'static str {
        match self {
            Scenario::Explicit => "explicit-filter",
            Scenario::Naive => "naive-rls",
            Scenario::TxRead(SC) => "tenanttx-read",
            Scenario::TxWrite(SC) => "tenanttx-write",
            Scenario::TxCommit(SC) => "tenanttx-query-commit",
            Scenario::TxRead(_) => "tenanttx-read-set-local",
            Scenario::TxWrite(_) => "tenanttx-write-set-local",
            Scenario::TxCommit(_) => "tenanttx-query-commit-set-local",
        }
    }
}

struct Result {
    ops: f64,
    p50: Duration,
    p99: Duration,
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let concurrency: Vec<usize> = std::env::var("BENCH_CONCURRENCY")
        .unwrap_or_else(|_| "1,8".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let cluster = Cluster::start(&ClusterOptions {
        durability: Durability::Throwaway,
        max_connections: 200,
        ..ClusterOptions::default()
    })
    .expect("start PostgreSQL");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(&cluster, Duration::from_secs(seconds), &concurrency));
}

async fn run(cluster: &Cluster, dur: Duration, concurrency: &[usize]) {
    let (mut su, conn) = cluster
        .config(SUPERUSER, "postgres")
        .connect(NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    let set = tenantguard::testing::policy();
    tenantguard::schema::migrate(&mut su, &set)
        .await
        .expect("migrate");
    su.batch_execute(
        "INSERT INTO tenants (name) SELECT 'tenant ' || g FROM generate_series(1, 400) g;
         INSERT INTO projects (tenant_id, name, description)
           SELECT t.id, 'project ' || g, 'a project' FROM tenants t, generate_series(1, 25) g;
         ANALYZE;",
    )
    .await
    .expect("seed");
    let targets: Arc<Vec<(Uuid, Uuid)>> = Arc::new(
        su.query("SELECT tenant_id, id FROM projects ORDER BY random()", &[])
            .await
            .expect("targets")
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect(),
    );
    println!(
        "PostgreSQL {}; {} projects over 400 tenants; {}s per scenario",
        su.query_one("SHOW server_version", &[])
            .await
            .unwrap()
            .get::<_, String>(0),
        targets.len(),
        dur.as_secs()
    );
    println!(
        "{:<6} {:<32} {:>10} {:>9} {:>9} {:>9}",
        "conc", "scenario", "req/s", "p50 µs", "p99 µs", "ratio"
    );
    for &c in concurrency {
        let mut base = None;
        let mut by_name = Vec::new();
        for s in [
            Scenario::Explicit,
            Scenario::Naive,
            Scenario::TxRead(SC),
            Scenario::TxRead(SL),
            Scenario::TxWrite(SC),
            Scenario::TxWrite(SL),
            Scenario::TxCommit(SC),
            Scenario::TxCommit(SL),
        ] {
            let r = scenario(cluster, s, c, dur, targets.clone()).await;
            let ratio = base.map(|b: f64| r.ops / b).unwrap_or(1.0);
            if s == Scenario::Explicit {
                base = Some(r.ops);
            }
            println!(
                "{:<6} {:<32} {:>10.0} {:>9} {:>9} {:>8.2}x",
                c,
                s.name(),
                r.ops,
                r.p50.as_micros(),
                r.p99.as_micros(),
                ratio
            );
            by_name.push((s, r.ops));
        }
        for (s, ops) in &by_name {
            let twin = match s {
                Scenario::TxRead(SL) => Scenario::TxRead(SC),
                Scenario::TxWrite(SL) => Scenario::TxWrite(SC),
                Scenario::TxCommit(SL) => Scenario::TxCommit(SC),
                _ => continue,
            };
            if let Some((_, t)) = by_name.iter().find(|(n, _)| *n == twin) {
                println!(
                    "{:<6} {:<32} set-local / set-config req/s: {:.2}x",
                    c,
                    s.name(),
                    ops / t
                );
            }
        }
    }
}

async fn scenario(
    cluster: &Cluster,
    s: Scenario,
    c: usize,
    dur: Duration,
    targets: Arc<Vec<(Uuid, Uuid)>>,
) -> Result {
    let pool = match s {
        Scenario::TxRead(carrier) | Scenario::TxWrite(carrier) | Scenario::TxCommit(carrier) => {
            Some(
                TenantPool::connect(
                    cluster.config("tenantguard_app", "postgres"),
                    PoolOptions {
                        max_size: c,
                        context_carrier: carrier,
                        ..PoolOptions::default()
                    },
                )
                .await
                .expect("pool"),
            )
        }
        _ => None,
    };
    let deadline = Instant::now() + dur;
    let mut workers = Vec::new();
    for w in 0..c {
        let targets = targets.clone();
        let pool = pool.clone();
        let role = if s == Scenario::Explicit {
            "tenantguard_admin"
        } else {
            "tenantguard_app"
        };
        let cfg = cluster.config(role, "postgres");
        workers.push(tokio::spawn(async move {
            let (client, conn) = cfg.connect(NoTls).await.expect("connect");
            tokio::spawn(conn);
            let explicit = client.prepare(Q_EXPLICIT).await.expect("prepare");
            let rls = client.prepare(Q_RLS).await.expect("prepare");
            let set = client
                .prepare("SELECT set_config('app.tenant_id', $1, true)")
                .await
                .expect("prepare");
            let mut lat = Vec::with_capacity(100_000);
            let mut i = w * 7919;
            while Instant::now() < deadline {
                let (tenant, project) = targets[i % targets.len()];
                i += 1;
                let t0 = Instant::now();
                let rows = match s {
                    Scenario::Explicit => client
                        .query(&explicit, &[&tenant, &project])
                        .await
                        .expect("query"),
                    Scenario::Naive => {
                        client.batch_execute("BEGIN").await.expect("begin");
                        client
                            .query(&set, &[&tenant.to_string()])
                            .await
                            .expect("set");
                        let rows = client.query(&rls, &[&project]).await.expect("query");
                        client.batch_execute("COMMIT").await.expect("commit");
                        rows
                    }
                    Scenario::TxCommit(_) => {
                        let pool = pool.as_ref().expect("pool");
                        let mut tx = pool.begin(tenant.into()).await.expect("begin");
                        tx.query_commit(Q_RLS, &[&project])
                            .await
                            .expect("query_commit")
                    }
                    Scenario::TxRead(_) | Scenario::TxWrite(_) => {
                        let pool = pool.as_ref().expect("pool");
                        let mut tx = if matches!(s, Scenario::TxRead(_)) {
                            pool.begin_read_only(tenant.into()).await
                        } else {
                            pool.begin(tenant.into()).await
                        }
                        .expect("begin");
                        let rows = tx.query(Q_RLS, &[&project]).await.expect("query");
                        tx.commit().await.expect("commit");
                        rows
                    }
                };
                assert_eq!(rows.len(), 1, "{}: the project is visible", s.name());
                lat.push(t0.elapsed());
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    Result {
        ops: all.len() as f64 / dur.as_secs_f64(),
        p50: pct(0.50),
        p99: pct(0.99),
    }
}
