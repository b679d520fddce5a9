//! tenantguard against the seed's own stack, side by side (issue #10). Run with
//! `bench/seed-compare.sh`, which installs the seed's dependencies first.
//!
//! One throwaway PostgreSQL with two databases holding the same rows: `bench` (the
//! reference schema, served by the release `tenantguard serve`, RUST_LOG unset as in
//! production) and `seed` (the seed's tables and its setupRLS, served by the seed's
//! sketch made runnable: `bench/seed-node/server.mjs`, Hono + node-postgres, session-level
//! tenant setting, three round trips per request, no pagination). BENCH_TENANTS tenants ×
//! BENCH_PROJECTS projects (default 50 × 100), the same ids, names and times in both.
//!
//! wrk -t1 -c32 per run, keys rotating across tenants (`bench/wrk/seed.lua`), two
//! scenarios: list all of a tenant's projects (tenantguard `?limit=100`, the seed has no
//! pagination) and get one by id. BENCH_ROUNDS rounds (2) per scenario and server,
//! alternating which goes first, BENCH_DURATION seconds each (10). Reported: req/s and
//! p99 per round and their mean, and CPU µs per request (user/system) of each server and
//! of PostgreSQL.

#[path = "common.rs"]
mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context};
use common::env;
use tenantguard::cluster::SUPERUSER;
use uuid::Uuid;

#[derive(Debug, Clone, Copy, Default)]
struct Run {
    rps: f64,
    p99_ms: f64,
    errors: u64,
    server_user_us: f64,
    server_sys_us: f64,
    pg_user_us: f64,
    pg_sys_us: f64,
}

fn main() -> anyhow::Result<()> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let node_dir = root.join("bench/seed-node");
    if !node_dir.join("node_modules/hono").exists() {
        bail!("the seed's dependencies are missing: run bench/seed-compare.sh (npm ci in bench/seed-node)");
    }
    let out = root.join("target/bench/seed-compare");
    std::fs::create_dir_all(&out)?;
    eprintln!("starting a throwaway PostgreSQL …");
    let cluster = common::start_cluster()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let result = rt.block_on(run(&cluster, &node_dir, &out));
    drop(rt);
    drop(cluster);
    let table = result?;
    print!("\n{table}");
    std::fs::write(out.join("results.md"), &table)?;
    eprintln!("written to {}", out.join("results.md").display());
    Ok(())
}

async fn run(
    cluster: &tenantguard::cluster::Cluster,
    node_dir: &Path,
    out: &Path,
) -> anyhow::Result<String> {
    let secs: u64 = env("BENCH_DURATION", 10u64).max(1);
    let rounds: usize = env("BENCH_ROUNDS", 2usize).max(1);
    let conns: u32 = env("BENCH_CONNECTIONS", 32u32).max(1);
    let tenants = common::seed(
        cluster,
        env("BENCH_TENANTS", 50usize).max(2),
        env("BENCH_PROJECTS", 100i32).max(2),
    )
    .await?;
    let per_tenant = tenants[0].projects.len();

    // The seed's database: its schema and policies, then the same rows.
    let admin = common::connect(cluster.config(SUPERUSER, "postgres")).await?;
    admin.batch_execute("CREATE DATABASE seed").await?;
    let seed_db = common::connect(cluster.config(SUPERUSER, "seed")).await?;
    seed_db
        .batch_execute(include_str!("seed-node/schema.sql"))
        .await
        .context("the seed's schema")?;
    let ours = common::connect(cluster.config(SUPERUSER, common::DB)).await?;
    let rows = ours.query("SELECT id, name FROM tenants", &[]).await?;
    let (tids, tnames): (Vec<Uuid>, Vec<String>) = rows
        .iter()
        .map(|r| (r.get::<_, Uuid>(0), r.get::<_, String>(1)))
        .unzip();
    seed_db
        .execute(
            "INSERT INTO tenants SELECT * FROM unnest($1::uuid[], $2::text[])",
            &[&tids, &tnames],
        )
        .await?;
    seed_db
        .batch_execute("SET session_replication_role = replica")
        .await?;
    let rows = ours
        .query(
            "SELECT id, tenant_id, name, description, created_at FROM projects",
            &[],
        )
        .await?;
    let ids: Vec<Uuid> = rows.iter().map(|r| r.get(0)).collect();
    let tenant_ids: Vec<Uuid> = rows.iter().map(|r| r.get(1)).collect();
    let names: Vec<String> = rows.iter().map(|r| r.get(2)).collect();
    let descs: Vec<Option<String>> = rows.iter().map(|r| r.get(3)).collect();
    let times: Vec<chrono::DateTime<chrono::Utc>> = rows.iter().map(|r| r.get(4)).collect();
    seed_db
        .execute(
            "INSERT INTO projects (id, tenant_id, name, description, created_at)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::timestamptz[])",
            &[&ids, &tenant_ids, &names, &descs, &times],
        )
        .await?;
    seed_db
        .batch_execute("RESET session_replication_role")
        .await?;
    // On its own: VACUUM cannot run in the implicit transaction of a multi-statement batch.
    seed_db.batch_execute("VACUUM ANALYZE").await?;

    // Keys and targets: one line per (tenant, project), tenants in turn.
    let mut keys = String::new();
    for t in &tenants {
        keys.push_str(&format!("{} {}\n", t.key, t.id));
    }
    let mut targets = String::new();
    for j in 0..per_tenant {
        for t in &tenants {
            targets.push_str(&format!("{} {}\n", t.key, t.projects[j % t.projects.len()]));
        }
    }
    let keys_file = out.join("seed-keys.txt");
    let targets_file = out.join("targets.txt");
    std::fs::write(&keys_file, keys)?;
    std::fs::write(&targets_file, targets)?;

    let tg_addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()?));
    let seed_addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()?));
    let mut tg = common::spawn_server(cluster, tg_addr, &[], &[], &out.join("tenantguard.log"))?;
    let mut seed = spawn_seed(
        cluster,
        node_dir,
        seed_addr,
        &keys_file,
        &out.join("seed.log"),
    )?;
    let result = async {
        let http = reqwest::Client::new();
        common::wait_ready(&http, tg_addr, &mut tg, Duration::from_secs(60)).await?;
        common::wait_ready(&http, seed_addr, &mut seed, Duration::from_secs(60)).await?;
        check_same_rows(&http, tg_addr, seed_addr, &tenants[1]).await?;
        let servers = [("tenantguard", tg_addr, tg.id()), ("seed", seed_addr, seed.id())];
        let mut table = format!(
            "{} tenants × {per_tenant} projects, wrk -t1 -c{conns} -d{secs}s, {rounds} rounds alternating (round order in the columns), keys rotating across tenants; CPU µs per request as user/system\n\n",
            tenants.len()
        );
        table.push_str("| scenario | server | req/s per round | req/s mean | p99 per round | p99 mean | server CPU µs/req | PostgreSQL CPU µs/req |\n|---|---|---:|---:|---:|---:|---:|---:|\n");
        let mut ratios = String::new();
        for scenario in ["list", "get"] {
            for (_, addr, _) in servers {
                wrk(addr, scenario, &targets_file, conns, 2, None, cluster.pid()).await?; // warm-up
            }
            let mut runs: [Vec<Run>; 2] = [Vec::new(), Vec::new()];
            for round in 0..rounds {
                let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
                for s in order {
                    let (_, addr, pid) = servers[s];
                    let r = wrk(addr, scenario, &targets_file, conns, secs, Some(pid), cluster.pid())
                        .await?;
                    eprintln!(
                        "{scenario} {}: {:.0} req/s, p99 {:.2} ms",
                        servers[s].0, r.rps, r.p99_ms
                    );
                    runs[s].push(r);
                }
            }
            let mean = |v: &[Run], f: fn(&Run) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
            for (s, (name, ..)) in servers.iter().enumerate() {
                let v = &runs[s];
                let err: u64 = v.iter().map(|r| r.errors).sum();
                let err = if err > 0 { format!(" ({err} non-2xx)") } else { String::new() };
                table.push_str(&format!(
                    "| {} | {name}{err} | {} | {:.0} | {} | {:.2} ms | {:.1} / {:.1} | {:.1} / {:.1} |\n",
                    if scenario == "list" { "list all projects" } else { "get by id" },
                    v.iter().map(|r| format!("{:.0}", r.rps)).collect::<Vec<_>>().join(", "),
                    mean(v, |r| r.rps),
                    v.iter().map(|r| format!("{:.2} ms", r.p99_ms)).collect::<Vec<_>>().join(", "),
                    mean(v, |r| r.p99_ms),
                    mean(v, |r| r.server_user_us),
                    mean(v, |r| r.server_sys_us),
                    mean(v, |r| r.pg_user_us),
                    mean(v, |r| r.pg_sys_us),
                ));
            }
            ratios.push_str(&format!(
                "{scenario}: tenantguard/seed req/s {:.2}×, p99 {:.2}×\n",
                mean(&runs[0], |r| r.rps) / mean(&runs[1], |r| r.rps).max(1e-9),
                mean(&runs[0], |r| r.p99_ms) / mean(&runs[1], |r| r.p99_ms).max(1e-9),
            ));
        }
        table.push('\n');
        table.push_str(&ratios);
        anyhow::Ok(table)
    }
    .await;
    common::stop(&mut tg, Duration::from_secs(20));
    common::stop(&mut seed, Duration::from_secs(5));
    result
}

fn spawn_seed(
    cluster: &tenantguard::cluster::Cluster,
    dir: &Path,
    addr: SocketAddr,
    keys: &Path,
    log: &Path,
) -> anyhow::Result<Child> {
    let log = std::fs::File::create(log)?;
    Command::new("node")
        .arg("server.mjs")
        .current_dir(dir)
        .env("PGHOST", cluster.socket_dir())
        .env("PGPORT", cluster.port().to_string())
        .env("PGDATABASE", "seed")
        .env("PORT", addr.port().to_string())
        .env("KEYS_FILE", keys)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("starting node (is it installed?)")
}

/// Both servers return the tenant's full list and the same project: the comparison is on
/// equal rows.
async fn check_same_rows(
    http: &reqwest::Client,
    tg: SocketAddr,
    seed: SocketAddr,
    t: &common::Tenant,
) -> anyhow::Result<()> {
    let get = |url: String| {
        let key = t.key.clone();
        async move {
            let r = http.get(url).bearer_auth(key).send().await?;
            if !r.status().is_success() {
                bail!("status {}", r.status());
            }
            anyhow::Ok(r.json::<serde_json::Value>().await?)
        }
    };
    let n = t.projects.len();
    let ours = get(format!("http://{tg}/v1/projects?limit={n}")).await?;
    let theirs = get(format!("http://{seed}/v1/projects")).await?;
    let ids = |v: &serde_json::Value, field: &str| -> Vec<String> {
        v[field]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p["id"].as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let (a, b) = (ids(&ours, "items"), ids(&theirs, "projects"));
    if a.len() != n || a != b {
        bail!(
            "the two servers list different rows ({} vs {})",
            a.len(),
            b.len()
        );
    }
    let p = t.projects[0];
    let one = get(format!("http://{tg}/v1/projects/{p}")).await?;
    let other = get(format!("http://{seed}/v1/projects/{p}")).await?;
    if one["name"] != other["project"]["name"] {
        bail!("the two servers return different projects");
    }
    Ok(())
}

async fn wrk(
    addr: SocketAddr,
    scenario: &str,
    targets: &Path,
    conns: u32,
    secs: u64,
    server_pid: Option<u32>,
    postmaster: u32,
) -> anyhow::Result<Run> {
    // tenantguard pages; the seed returns everything. Both give all 100 rows.
    let list_path = if server_is_tenantguard(addr).await {
        "/v1/projects?limit=100"
    } else {
        "/v1/projects"
    };
    let wrk = common::Wrk {
        addr,
        script: "seed.lua",
        threads: 1,
        connections: conns,
        secs,
        env: vec![
            ("SCENARIO", scenario.to_string()),
            ("TARGETS", targets.display().to_string()),
            ("LIST_PATH", list_path.to_string()),
        ],
    };
    // A warm-up has no server pid: its CPU columns are not read.
    let server = common::ServerCpu::Pid(server_pid.unwrap_or(0));
    let r = wrk.run(server, postmaster).await?;
    Ok(Run {
        rps: r.rps,
        p99_ms: r.p99_ms,
        errors: r.errors,
        server_user_us: r.server_user_us,
        server_sys_us: r.server_sys_us,
        pg_user_us: r.pg_user_us,
        pg_sys_us: r.pg_sys_us,
    })
}

/// tenantguard serves `/openapi.json`; the seed does not.
async fn server_is_tenantguard(addr: SocketAddr) -> bool {
    match reqwest::get(format!("http://{addr}/openapi.json")).await {
        Ok(r) => r.status().is_success(),
        Err(_) => false,
    }
}
