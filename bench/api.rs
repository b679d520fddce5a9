//! HTTP benchmark of the reference API: RLS versus explicit `WHERE tenant_id = $1`.
//!
//! From nothing: starts a throwaway private PostgreSQL, migrates, seeds 400 tenants (one
//! with 30% of the rows; over a million tasks in all) with generate_series, starts two
//! servers in this process — the real one (app role under RLS) and the bench-only
//! baseline (a BYPASSRLS role, explicit tenant filters, one autocommitted statement per
//! request) — and drives each with `wrk` for list projects, get a project, list a
//! project's tasks, create a task, and a mix, at a few concurrencies. Then it removes the
//! big tenant and measures a small tenant's latency again.
//!
//! Run with `bench/run.sh` (installs wrk if needed). Settings, from the environment:
//! BENCH_TASKS (default 1050000), BENCH_TENANTS (400), BENCH_DURATION seconds per run
//! (10), BENCH_ROUNDS (3: each scenario runs that many times on each server, alternating
//! which goes first, and the medians are reported), BENCH_CONCURRENCY (comma-separated,
//! default "16,64"), BENCH_POOL (16), BENCH_SCENARIOS (default all five), BENCH_DB_ONLY
//! (stop after the database-level comparison).

#[path = "common.rs"]
mod common;

/// The servers under test run in this process: the `tenantguard` binary's allocator
/// (src/main.rs), so they measure what `serve` runs.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tenantguard::cluster::{Cluster, ClusterOptions, Durability, SUPERUSER};
use tenantguard::http::compare::ExplicitFilterPool;
use tenantguard::http::{AppState, Application, HttpConfig};
use tenantguard::pool::{PoolOptions, TenantId, TenantPool};
use uuid::Uuid;

const DB: &str = "bench";
const EXPLICIT_ROLE: &str = "tenantguard_bench_explicit";
const TASKS_PER_PROJECT: i64 = 100;

struct Opts {
    tasks: i64,
    tenants: usize,
    duration: u64,
    concurrency: Vec<u32>,
    pool: usize,
    rounds: usize,
    scenarios: Vec<String>,
}

fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

impl Opts {
    fn from_env() -> Self {
        let list = |name: &str, default: &str| -> Vec<String> {
            std::env::var(name)
                .unwrap_or_else(|_| default.to_string())
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        };
        Self {
            tasks: env("BENCH_TASKS", 1_050_000),
            tenants: env("BENCH_TENANTS", 400usize).max(2),
            duration: env("BENCH_DURATION", 10),
            concurrency: list("BENCH_CONCURRENCY", "16,64")
                .iter()
                .filter_map(|c| c.parse().ok())
                .collect(),
            pool: env("BENCH_POOL", 16),
            rounds: env("BENCH_ROUNDS", 3usize).max(1),
            scenarios: list(
                "BENCH_SCENARIOS",
                "list_projects,get_project,list_tasks,create_task,mix",
            ),
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Measure {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: u64,
    /// CPU time per request of this process (the server under test; the other one idles),
    /// user and system apart.
    server_user_us: f64,
    server_sys_us: f64,
    /// CPU time per request of PostgreSQL (postmaster and backends), user and system.
    pg_user_us: f64,
    pg_sys_us: f64,
}

impl Measure {
    /// Each figure's median over the runs (errors summed): one noisy run of this shared
    /// machine moves nothing.
    fn median(runs: &[Measure]) -> Measure {
        let med = |f: fn(&Measure) -> f64| {
            let mut v: Vec<f64> = runs.iter().map(f).collect();
            v.sort_by(f64::total_cmp);
            v.get(v.len() / 2).copied().unwrap_or(0.0)
        };
        Measure {
            rps: med(|m| m.rps),
            p50_ms: med(|m| m.p50_ms),
            p99_ms: med(|m| m.p99_ms),
            errors: runs.iter().map(|m| m.errors).sum(),
            server_user_us: med(|m| m.server_user_us),
            server_sys_us: med(|m| m.server_sys_us),
            pg_user_us: med(|m| m.pg_user_us),
            pg_sys_us: med(|m| m.pg_sys_us),
        }
    }
}

fn main() -> anyhow::Result<()> {
    // `cargo bench` passes `--bench`; nothing else is taken from the command line.
    let opts = Opts::from_env();
    which("wrk").context("wrk is needed: run bench/run.sh, or apt-get install wrk")?;
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    eprintln!("starting a throwaway PostgreSQL …");
    let cluster = Cluster::start(&ClusterOptions {
        durability: Durability::Throwaway,
        max_connections: 200,
        settings: vec![
            ("shared_buffers".into(), "1GB".into()),
            ("work_mem".into(), "16MB".into()),
            ("maintenance_work_mem".into(), "512MB".into()),
        ],
        ..ClusterOptions::default()
    })?;
    let _ = POSTMASTER.set(cluster.pid());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&cluster, &opts, &out_dir));
    drop(rt);
    drop(cluster);
    result
}

fn which(bin: &str) -> anyhow::Result<()> {
    let ok = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {bin}"))
        .output()?
        .status
        .success();
    if ok {
        Ok(())
    } else {
        bail!("{bin} not found")
    }
}

async fn connect(cfg: tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

struct Seeded {
    big: TenantId,
    /// "<key> <project id>" lines: all tenants, and small tenants only.
    all_targets: PathBuf,
    small_targets: PathBuf,
}

async fn run(cluster: &Cluster, opts: &Opts, out: &Path) -> anyhow::Result<()> {
    let admin = connect(cluster.config(SUPERUSER, "postgres")).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .await?;
    let mut su = connect(cluster.config(SUPERUSER, DB)).await?;
    tenantguard::schema::migrate(&mut su, &tenantguard::testing::policy()).await?;
    let seeded = seed(&su, opts, out).await?;
    su.batch_execute(&format!(
        "CREATE ROLE {EXPLICIT_ROLE} LOGIN BYPASSRLS NOSUPERUSER;
         GRANT USAGE ON SCHEMA tenantguard TO {EXPLICIT_ROLE};
         GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA tenantguard TO {EXPLICIT_ROLE};
         GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {EXPLICIT_ROLE};"
    ))
    .await?;

    let db_level = db_level(cluster, opts, &seeded).await?;
    eprintln!("{db_level}");
    if std::env::var("BENCH_DB_ONLY").is_ok() {
        return Ok(());
    }

    let rls = start_server(cluster, opts, false).await?;
    let explicit = start_server(cluster, opts, true).await?;
    eprintln!("RLS server on {rls}, explicit-filter baseline on {explicit}");

    let mut rows = Vec::new();
    for scenario in &opts.scenarios {
        for &c in &opts.concurrency {
            for addr in [rls, explicit] {
                wrk(addr, scenario, &seeded.all_targets, c, 2).await?; // warm-up
            }
            let mut r = Vec::new();
            let mut e = Vec::new();
            for round in 0..opts.rounds {
                // Alternate which mode goes first so drift does not favour one.
                let order = if round % 2 == 0 {
                    [true, false]
                } else {
                    [false, true]
                };
                for is_rls in order {
                    let addr = if is_rls { rls } else { explicit };
                    let m = wrk(addr, scenario, &seeded.all_targets, c, opts.duration).await?;
                    if is_rls { &mut r } else { &mut e }.push(m);
                }
            }
            let (r, e) = (Measure::median(&r), Measure::median(&e));
            eprintln!(
                "{scenario} c={c}: rls {:.0} req/s, explicit {:.0} req/s (medians of {})",
                r.rps, e.rps, opts.rounds
            );
            rows.push((scenario.clone(), c, r, e));
        }
    }

    // A small tenant's latency with and without the big tenant's data.
    let c = opts.concurrency.first().copied().unwrap_or(16);
    let small = |n: usize| {
        let targets = seeded.small_targets.clone();
        async move {
            let mut all = Vec::new();
            for _ in 0..n {
                all.push(wrk(rls, "list_tasks", &targets, c, opts.duration).await?);
            }
            anyhow::Ok(Measure::median(&all))
        }
    };
    let with_big = small(opts.rounds).await?;
    eprintln!("removing the big tenant …");
    su.execute(
        "DELETE FROM tenants WHERE id = $1",
        &[&seeded.big.as_uuid()],
    )
    .await?;
    su.batch_execute("VACUUM ANALYZE").await?;
    wrk(rls, "list_tasks", &seeded.small_targets, c, 2).await?;
    let without_big = small(opts.rounds).await?;

    let mut table = String::new();
    table.push_str(&format!(
        "tenants {}, tasks {}, {} s per run, {} rounds alternating the two servers (medians shown), pool {} per server, wrk -t2 --latency\n\n",
        opts.tenants, opts.tasks, opts.duration, opts.rounds, opts.pool
    ));
    table.push_str("| scenario | conc | RLS req/s | RLS p50 | RLS p99 | explicit req/s | explicit p50 | explicit p99 | RLS/explicit | server CPU µs/req user/sys, RLS \\| explicit | PostgreSQL CPU µs/req user/sys, RLS \\| explicit |\n");
    table.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for (s, c, r, e) in &rows {
        let err = if r.errors + e.errors > 0 {
            format!(" (non-2xx: rls {}, explicit {})", r.errors, e.errors)
        } else {
            String::new()
        };
        table.push_str(&format!(
            "| {s} | {c} | {:.0} | {:.2} ms | {:.2} ms | {:.0} | {:.2} ms | {:.2} ms | {:.2}×{err} | {:.1}/{:.1} \\| {:.1}/{:.1} | {:.1}/{:.1} \\| {:.1}/{:.1} |\n",
            r.rps, r.p50_ms, r.p99_ms, e.rps, e.p50_ms, e.p99_ms, r.rps / e.rps.max(1e-9),
            r.server_user_us, r.server_sys_us, e.server_user_us, e.server_sys_us,
            r.pg_user_us, r.pg_sys_us, e.pg_user_us, e.pg_sys_us
        ));
    }
    table.push_str(&format!(
        "\nsmall tenants, list a project's tasks, c={c}: p99 {:.2} ms with the big tenant, {:.2} ms without ({:.2}×); p50 {:.2} / {:.2} ms\n",
        with_big.p99_ms,
        without_big.p99_ms,
        with_big.p99_ms / without_big.p99_ms.max(1e-9),
        with_big.p50_ms,
        without_big.p50_ms
    ));
    table.push_str(&format!("\n{db_level}"));
    print!("\n{table}");
    std::fs::write(out.join("api-results.md"), &table)?;
    eprintln!("written to {}", out.join("api-results.md").display());
    Ok(())
}

async fn seed(su: &tokio_postgres::Client, opts: &Opts, out: &Path) -> anyhow::Result<Seeded> {
    let started = Instant::now();
    let n = opts.tenants;
    let total_projects = (opts.tasks / TASKS_PER_PROJECT).max(n as i64);
    let big_projects = (total_projects * 3 / 10).max(1);
    let small_projects = ((total_projects - big_projects) / (n as i64 - 1)).max(1);
    let ids: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    let names: Vec<String> = (0..n).map(|i| format!("tenant {i:03}")).collect();
    let counts: Vec<i32> = (0..n)
        .map(|i| if i == 0 { big_projects } else { small_projects } as i32)
        .collect();
    let keys: Vec<_> = ids
        .iter()
        .map(|id| tenantguard::http::auth::new_api_key(TenantId::from_uuid(*id)))
        .collect();
    let prefixes: Vec<&str> = keys.iter().map(|k| k.prefix.as_str()).collect();
    let hashes: Vec<&[u8]> = keys.iter().map(|k| &k.hash[..]).collect();
    eprintln!(
        "seeding {n} tenants: {big_projects} projects for the big one, {small_projects} for each other, {TASKS_PER_PROJECT} tasks each …"
    );
    // Bulk load: skip FK triggers (the data is consistent by construction).
    su.batch_execute("SET session_replication_role = replica")
        .await?;
    su.execute(
        "INSERT INTO tenants (id, name) SELECT * FROM unnest($1::uuid[], $2::text[])",
        &[&ids, &names],
    )
    .await?;
    su.execute(
        "INSERT INTO api_keys (tenant_id, name, prefix, key_hash, role)
         SELECT t, 'bench', p, h, 'owner' FROM unnest($1::uuid[], $2::text[], $3::bytea[]) AS x(t, p, h)",
        &[&ids, &prefixes, &hashes],
    )
    .await?;
    su.execute(
        "INSERT INTO team_members (tenant_id, email, name, role)
         SELECT t, 'user' || g || '@example.com', 'User ' || g, 'member'
         FROM unnest($1::uuid[]) AS t, generate_series(1, 5) g",
        &[&ids],
    )
    .await?;
    su.execute(
        "INSERT INTO projects (tenant_id, name, description, created_at)
         SELECT t, 'Project ' || g, 'bench project', now() - g * interval '1 minute'
         FROM unnest($1::uuid[], $2::int[]) AS x(t, n), generate_series(1, x.n) g",
        &[&ids, &counts],
    )
    .await?;
    su.execute(
        "INSERT INTO tasks (tenant_id, project_id, title, status, created_at)
         SELECT p.tenant_id, p.id, 'Task ' || g,
                (ARRAY['todo', 'in_progress', 'done', 'cancelled'])[1 + g % 4],
                p.created_at + g * interval '1 second'
         FROM projects p, generate_series(1, $1::int) g",
        &[&(TASKS_PER_PROJECT as i32)],
    )
    .await?;
    su.batch_execute("RESET session_replication_role").await?;
    // On its own: VACUUM cannot run in the implicit transaction of a multi-statement batch.
    su.batch_execute("VACUUM ANALYZE").await?;
    let tasks: i64 = su
        .query_one("SELECT count(*) FROM tasks", &[])
        .await?
        .get(0);
    eprintln!(
        "seeded {tasks} tasks in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    // Five random projects per tenant as request targets.
    let rows = su
        .query(
            "SELECT tenant_id, id FROM (
                 SELECT tenant_id, id, row_number() OVER (PARTITION BY tenant_id ORDER BY random()) AS r
                 FROM projects) x WHERE r <= 5",
            &[],
        )
        .await?;
    let key_of = |t: Uuid| {
        ids.iter()
            .position(|i| *i == t)
            .map(|p| keys[p].key.clone())
    };
    let mut all = String::new();
    let mut small = String::new();
    for r in rows {
        let t: Uuid = r.get(0);
        let p: Uuid = r.get(1);
        let Some(k) = key_of(t) else { continue };
        let line = format!("{k} {p}\n");
        all.push_str(&line);
        if t != ids[0] {
            small.push_str(&line);
        }
    }
    let all_targets = out.join("targets-all.txt");
    let small_targets = out.join("targets-small.txt");
    std::fs::write(&all_targets, all)?;
    std::fs::write(&small_targets, small)?;
    Ok(Seeded {
        big: TenantId::from_uuid(ids[0]),
        all_targets,
        small_targets,
    })
}

/// The same comparison without HTTP: list a tenant's projects straight through the pools,
/// as one statement (explicit filter), the same inside a pipelined read-only transaction,
/// as a pipelined `TenantTx`, as a naive BEGIN / set_config / SELECT / COMMIT sequence
/// awaited one by one, and with BEGIN and `SET LOCAL` sent as one simple-query message
/// (a possible `TenantTx` change: one statement fewer to plan and execute).
async fn db_level(cluster: &Cluster, opts: &Opts, seeded: &Seeded) -> anyhow::Result<String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;
    let tenant_pool = TenantPool::connect(
        cluster.config("tenantguard_app", DB),
        PoolOptions {
            max_size: opts.pool,
            ..PoolOptions::default()
        },
    )
    .await?;
    let mgr = deadpool_postgres::Manager::from_config(
        cluster.config(EXPLICIT_ROLE, DB),
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let plain = deadpool_postgres::Pool::builder(mgr)
        .max_size(opts.pool)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?;
    let mgr2 = deadpool_postgres::Manager::from_config(
        cluster.config("tenantguard_app", DB),
        tokio_postgres::NoTls,
        deadpool_postgres::ManagerConfig {
            recycling_method: deadpool_postgres::RecyclingMethod::Fast,
        },
    );
    let app_plain = deadpool_postgres::Pool::builder(mgr2)
        .max_size(opts.pool)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .build()?;
    let text = std::fs::read_to_string(&seeded.all_targets)?;
    let tenants: Arc<Vec<TenantId>> = Arc::new(
        text.lines()
            .filter_map(|l| l.split(' ').next())
            .filter_map(|k| {
                k.strip_prefix("tgk_")?
                    .split('_')
                    .next()
                    .map(str::to_string)
            })
            .filter_map(|t| Uuid::try_parse(&t).ok().map(TenantId::from_uuid))
            .collect(),
    );
    let secs = opts.duration.min(5);
    let conc = opts.concurrency.first().copied().unwrap_or(16) as usize;
    let mut out = format!("database level (no HTTP), list 20 projects, c={conc}, {secs} s each:\n");
    let mut base = 0.0;
    for mode in [
        "explicit filter, one statement",
        "explicit filter, pipelined BEGIN READ ONLY … COMMIT",
        "RLS, pipelined TenantTx",
        "RLS, naive sequential",
        "RLS, BEGIN + SET LOCAL in one message (candidate TenantTx change)",
    ] {
        let count = Arc::new(AtomicU64::new(0));
        let stop = Instant::now() + Duration::from_secs(secs);
        let mut tasks = Vec::new();
        for w in 0..conc {
            let (tp, pp, ts, count) = (
                tenant_pool.clone(),
                plain.clone(),
                tenants.clone(),
                count.clone(),
            );
            let mode = mode.to_string();
            let ap = app_plain.clone();
            tasks.push(tokio::spawn(async move {
                let mut i = w;
                while Instant::now() < stop {
                    i = (i + 7) % ts.len();
                    let t = ts[i];
                    let limit = 20i64;
                    let r: anyhow::Result<()> = async {
                        if mode.contains("SET LOCAL") {
                            use futures::FutureExt;
                            let c = ap.get().await?;
                            let st = c.prepare_cached("SELECT id, name, description, created_at, updated_at FROM projects ORDER BY created_at DESC, id DESC LIMIT $1").await?;
                            // The tenant is a UUID we formatted: nothing to escape.
                            let begin = format!("BEGIN READ ONLY; SET LOCAL app.tenant_id = '{t}'");
                            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&limit];
                            let (a, b) = tokio::join!(c.batch_execute(&begin), c.query(&st, &params));
                            a?;
                            let rows = b?;
                            if rows.is_empty() {
                                anyhow::bail!("RLS returned nothing: the tenant was not set");
                            }
                            let commit = c.batch_execute("COMMIT");
                            let _ = commit.now_or_never();
                        } else if mode.starts_with("explicit filter, pipelined") {
                            use futures::FutureExt;
                            let c = pp.get().await?;
                            let st = c.prepare_cached("SELECT id, name, description, created_at, updated_at FROM projects WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2").await?;
                            let u = t.as_uuid();
                            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&u, &limit];
                            let (a, b) = tokio::join!(c.batch_execute("BEGIN READ ONLY"), c.query(&st, &params));
                            a?;
                            b?;
                            let commit = c.batch_execute("COMMIT");
                            let _ = commit.now_or_never();
                        } else if mode.starts_with("explicit") {
                            let c = pp.get().await?;
                            let st = c.prepare_cached("SELECT id, name, description, created_at, updated_at FROM projects WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2").await?;
                            c.query(&st, &[&t.as_uuid(), &limit]).await?;
                        } else if mode.contains("pipelined") {
                            let mut tx = tp.begin_read_only(t).await?;
                            tx.query("SELECT id, name, description, created_at, updated_at FROM projects ORDER BY created_at DESC, id DESC LIMIT $1", &[&limit]).await?;
                            tx.commit().await?;
                        } else {
                            let c = pp.get().await?;
                            c.batch_execute("BEGIN READ ONLY").await?;
                            let set = c.prepare_cached("SELECT set_config('app.tenant_id', $1, true)").await?;
                            c.query(&set, &[&t.to_string()]).await?;
                            let st = c.prepare_cached("SELECT id, name, description, created_at, updated_at FROM projects WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2").await?;
                            c.query(&st, &[&t.as_uuid(), &limit]).await?;
                            c.batch_execute("COMMIT").await?;
                        }
                        Ok(())
                    }
                    .await;
                    if r.is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }));
        }
        for t in tasks {
            t.await?;
        }
        let rate = count.load(Ordering::Relaxed) as f64 / secs as f64;
        if base == 0.0 {
            base = rate;
        }
        out.push_str(&format!("  {mode}: {rate:.0} /s ({:.2}×)\n", rate / base));
    }
    Ok(out)
}

async fn start_server(
    cluster: &Cluster,
    opts: &Opts,
    explicit: bool,
) -> anyhow::Result<SocketAddr> {
    let pool = TenantPool::connect(
        cluster.config("tenantguard_app", DB),
        PoolOptions {
            max_size: opts.pool,
            ..PoolOptions::default()
        },
    )
    .await?;
    let mut config = HttpConfig::default();
    if explicit {
        let mgr = deadpool_postgres::Manager::from_config(
            cluster.config(EXPLICIT_ROLE, DB),
            tokio_postgres::NoTls,
            deadpool_postgres::ManagerConfig {
                recycling_method: deadpool_postgres::RecyclingMethod::Fast,
            },
        );
        let p = deadpool_postgres::Pool::builder(mgr)
            .max_size(opts.pool)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()?;
        config.explicit_filter_pool = Some(ExplicitFilterPool(p));
    }
    let state = AppState::new(pool, None, config)?;
    let app = Application::bind(SocketAddr::from(([127, 0, 0, 1], 0)), state).await?;
    let addr = app.local_addr()?;
    tokio::spawn(app.run_until(std::future::pending()));
    Ok(addr)
}

async fn wrk(
    addr: SocketAddr,
    scenario: &str,
    targets: &Path,
    connections: u32,
    secs: u64,
) -> anyhow::Result<Measure> {
    let run = common::Wrk {
        addr,
        script: "scenario.lua",
        threads: 2,
        connections,
        secs,
        env: vec![
            ("SCENARIO", scenario.to_string()),
            ("TARGETS", targets.display().to_string()),
        ],
    }
    // The server under test runs in this process (the other one idles meanwhile).
    .run(
        common::ServerCpu::ThisProcess,
        POSTMASTER.get().copied().unwrap_or(0),
    )
    .await?;
    Ok(Measure {
        rps: run.rps,
        p50_ms: run.p50_ms,
        p99_ms: run.p99_ms,
        errors: run.errors,
        server_user_us: run.server_user_us,
        server_sys_us: run.server_sys_us,
        pg_user_us: run.pg_user_us,
        pg_sys_us: run.pg_sys_us,
    })
}

/// The postmaster whose CPU time (and its backends') the wrk runs count.
static POSTMASTER: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
