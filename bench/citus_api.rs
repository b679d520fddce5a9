//! The API on Citus (issue #13): list, get and create through `tenantguard serve`,
//! router-planned (the routing hint on, the default) against fanned out (the same server
//! with `TENANTGUARD_ROUTING_HINT=off`), req/s and latency percentiles, in one run. Run it
//! with `bench/citus-api.sh`.
//!
//! Starts a coordinator and two workers from the installed PostgreSQL binaries with
//! `shared_preload_libraries=citus` (the Citus test harness, tests/citus/support.rs:
//! one distributed database, 8 shards per table, `migrate --citus`), seeds BENCH_TENANTS
//! tenants × BENCH_PROJECTS projects (default 50 × 100) with one owner key each, and runs
//! two release servers with the `SET LOCAL` carrier on the coordinator, one per mode. Then,
//! per round (BENCH_ROUNDS, default 2) and request kind, each mode in turn: BENCH_CONCURRENCY
//! (default 8) client tasks in this process send requests for BENCH_DURATION seconds
//! (default 5), keys rotating across tenants; every request is timed. Bounded in time and
//! count (at most BENCH_MAX_REQUESTS per measurement, default 200,000), loopback only.
//!
//! Without Citus (the library does not load), it says so and exits 0.
//! Output: the table on stdout and in target/bench/citus-api-results.md.

#[path = "../tests/citus/support.rs"]
#[allow(dead_code)]
mod support;

#[path = "common.rs"]
mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use common::{env, Tenant};

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Get,
    Create,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::List => "list (50 of 100)",
            Kind::Get => "get by id",
            Kind::Create => "create",
        }
    }
}

#[derive(Default)]
struct Sample {
    latencies_us: Vec<u64>,
    errors: usize,
    seconds: f64,
}

impl Sample {
    fn merge(&mut self, other: Sample) {
        self.latencies_us.extend(other.latencies_us);
        self.errors += other.errors;
        self.seconds += other.seconds;
    }
    fn rps(&self) -> f64 {
        self.latencies_us.len() as f64 / self.seconds.max(1e-9)
    }
    fn pct(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() as f64 - 1.0) * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

async fn seed(c: &support::Citus, tenants: usize, projects: i32) -> anyhow::Result<Vec<Tenant>> {
    common::seed_rows(&c.superuser().await, tenants, projects).await
}

fn spawn_server(
    url: &str,
    addr: SocketAddr,
    hint: bool,
    log: &std::path::Path,
) -> anyhow::Result<std::process::Child> {
    let log = std::fs::File::create(log)?;
    std::process::Command::new(common::server_binary())
        .arg("serve")
        .env("TENANTGUARD_DATABASE_URL", url)
        .env("TENANTGUARD_LISTEN", addr.to_string())
        .env("TENANTGUARD_CONTEXT_CARRIER", "set-local")
        .env("TENANTGUARD_ROUTING_HINT", if hint { "on" } else { "off" })
        .env("TENANTGUARD_POOL_SIZE", "16")
        // The bench measures the database path, not the per-tenant limits.
        .env("TENANTGUARD_TENANT_RATE", "0")
        .env("TENANTGUARD_KEY_RATE", "0")
        .env("TENANTGUARD_TENANT_CONCURRENCY", "64")
        .env("TENANTGUARD_KEY_CONCURRENCY", "64")
        .env_remove("TENANTGUARD_ADMIN_TOKEN")
        .env_remove("TENANTGUARD_ADMIN_DATABASE_URL")
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting the server")
}

async fn measure(
    http: &reqwest::Client,
    base: &str,
    tenants: &Arc<Vec<Tenant>>,
    kind: Kind,
    concurrency: usize,
    duration: Duration,
    max: usize,
) -> Sample {
    let counter = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..concurrency {
        let http = http.clone();
        let base = base.to_string();
        let tenants = tenants.clone();
        let counter = counter.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = Sample::default();
            let mut i = w;
            while started.elapsed() < duration && counter.fetch_add(1, Ordering::Relaxed) < max {
                let t = &tenants[i % tenants.len()];
                let (req, want) = match kind {
                    Kind::List => (http.get(format!("{base}/v1/projects")), 200),
                    Kind::Get => (
                        http.get(format!(
                            "{base}/v1/projects/{}",
                            t.projects[(i / tenants.len()) % t.projects.len()]
                        )),
                        200,
                    ),
                    Kind::Create => (
                        http.post(format!("{base}/v1/projects"))
                            .json(&serde_json::json!({ "name": "bench" })),
                        201,
                    ),
                };
                let at = Instant::now();
                let ok = match req.bearer_auth(&t.key).send().await {
                    Ok(r) => r.status().as_u16() == want && r.bytes().await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    s.latencies_us.push(at.elapsed().as_micros() as u64);
                } else {
                    s.errors += 1;
                }
                i += concurrency;
            }
            s
        }));
    }
    let mut total = Sample::default();
    for t in tasks {
        if let Ok(s) = t.await {
            total.merge(s);
        }
    }
    total.seconds = started.elapsed().as_secs_f64();
    total
}

fn main() -> anyhow::Result<()> {
    // The harness skips unless this is set; the bench script is the opt-in.
    if std::env::var("TENANTGUARD_TEST_CITUS").is_err() {
        std::env::set_var("TENANTGUARD_TEST_CITUS", "1");
    }
    let Some(c) = support::citus("bench citus-api") else {
        println!("citus-api bench: skipped (Citus is not available here; see above)");
        return Ok(());
    };
    let tenants_n = env("BENCH_TENANTS", 50usize);
    let projects = env("BENCH_PROJECTS", 100i32);
    let concurrency = env("BENCH_CONCURRENCY", 8usize);
    let duration = Duration::from_secs(env("BENCH_DURATION", 5u64));
    let rounds = env("BENCH_ROUNDS", 2usize);
    let max = env("BENCH_MAX_REQUESTS", 200_000usize);
    let out_dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out_dir)?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async move {
        let tenants = Arc::new(seed(c, tenants_n, projects).await?);
        let prefix = format!("postgresql://{}@", tenantguard::cluster::SUPERUSER);
        let Some(rest) = c.coordinator_url.strip_prefix(&prefix) else {
            bail!("unexpected coordinator URL");
        };
        let url = format!("postgresql://tenantguard_app@{rest}");
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()?;
        let mut servers = Vec::new();
        for hint in [true, false] {
            let addr: SocketAddr = ([127, 0, 0, 1], common::free_port()?).into();
            let log = out_dir.join(format!("citus-api-server-{}.log", if hint { "routed" } else { "fanned" }));
            let mut child = spawn_server(&url, addr, hint, &log)?;
            common::wait_ready(&http, addr, &mut child, Duration::from_secs(30)).await?;
            servers.push((hint, format!("http://{addr}"), child));
        }
        let kinds = [Kind::List, Kind::Get, Kind::Create];
        // [kind][mode]
        let mut results: Vec<[Sample; 2]> = kinds.iter().map(|_| Default::default()).collect();
        for (k, kind) in kinds.iter().enumerate() {
            for (_, base, _) in &servers {
                // Warm-up: connections, prepared statements, the key cache.
                measure(&http, base, &tenants, *kind, concurrency, Duration::from_millis(500), max).await;
            }
            for round in 0..rounds {
                // Alternate which mode goes first, so drift on a shared machine falls on both.
                let order: [usize; 2] = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for m in order {
                    let s = measure(&http, &servers[m].1, &tenants, *kind, concurrency, duration, max).await;
                    eprintln!(
                        "{} {} round {round}: {} requests, {} errors",
                        kind.name(),
                        if m == 0 { "routed" } else { "fanned out" },
                        s.latencies_us.len(),
                        s.errors
                    );
                    results[k][m].merge(s);
                }
            }
        }
        for (_, _, child) in &mut servers {
            common::stop(child, Duration::from_secs(10));
        }
        let mut table = String::from(
            "| request | mode | req/s | p50 ms | p99 ms | errors | routed/fanned req/s | fanned/routed p99 |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for (k, kind) in kinds.iter().enumerate() {
            let [r, f] = &mut results[k];
            let (rr, fr) = (r.rps(), f.rps());
            let (r99, f99) = (r.pct(0.99), f.pct(0.99));
            let (r50, f50) = (r.pct(0.5), f.pct(0.5));
            table.push_str(&format!(
                "| {} | routed (hint on) | {rr:.0} | {r50:.2} | {r99:.2} | {} | {:.1}× | {:.1}× |\n",
                kind.name(),
                r.errors,
                rr / fr.max(1e-9),
                f99 / r99
            ));
            table.push_str(&format!(
                "| {} | fanned out (hint off) | {fr:.0} | {f50:.2} | {f99:.2} | {} | | |\n",
                kind.name(),
                f.errors
            ));
        }
        let header = format!(
            "Citus 1+2 nodes ({} shards per table), {tenants_n} tenants × {projects} projects, \
             {concurrency} client tasks, {rounds} rounds × {} s per mode and kind, one 2-core machine \
             running the three nodes, the server and the client.\n\n",
            support::SHARD_COUNT,
            duration.as_secs()
        );
        let md = format!("{header}{table}");
        println!("\n{md}");
        std::fs::write(out_dir.join("citus-api-results.md"), &md)?;
        Ok(())
    })
}
