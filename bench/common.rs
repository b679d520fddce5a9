//! Shared by the process-level benchmarks (`bench/callgrind.rs`, `bench/seed_compare.rs`):
//! a throwaway private PostgreSQL, the reference schema seeded with N tenants × M projects
//! (one owner API key each), and the release `tenantguard serve` binary as a child process.
//! Not a test helper: the benchmarks only.

#![allow(dead_code)] // each benchmark uses a different part

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use tenantguard::cluster::{Cluster, ClusterOptions, Durability, SUPERUSER};
use tenantguard::pool::TenantId;
use uuid::Uuid;

/// The database the benchmarks create.
pub const DB: &str = "bench";

/// One seeded tenant.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: Uuid,
    pub name: String,
    pub key: String,
    /// Its projects' ids, newest first.
    pub projects: Vec<Uuid>,
}

/// Starts a throwaway cluster sized for a benchmark.
pub fn start_cluster() -> anyhow::Result<Cluster> {
    Ok(Cluster::start(&ClusterOptions {
        durability: Durability::Throwaway,
        max_connections: 200,
        settings: vec![("shared_buffers".into(), "256MB".into())],
        ..ClusterOptions::default()
    })?)
}

pub async fn connect(cfg: tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

/// Creates [`DB`], migrates it, and seeds `tenants` tenants with `projects` projects each
/// (distinct `created_at`, so the order is total) and one owner key each.
pub async fn seed(cluster: &Cluster, tenants: usize, projects: i32) -> anyhow::Result<Vec<Tenant>> {
    let admin = connect(cluster.config(SUPERUSER, "postgres")).await?;
    admin
        .batch_execute(&format!("CREATE DATABASE {DB}"))
        .await?;
    let mut su = connect(cluster.config(SUPERUSER, DB)).await?;
    tenantguard::schema::migrate(&mut su, &tenantguard::testing::policy()).await?;
    seed_rows(&su, tenants, projects).await
}

/// Seeds a migrated database (plain or Citus) through `su`, a superuser: `tenants` tenants
/// with `projects` projects each (distinct `created_at`, so the order is total) and one
/// owner key each.
pub async fn seed_rows(
    su: &tokio_postgres::Client,
    tenants: usize,
    projects: i32,
) -> anyhow::Result<Vec<Tenant>> {
    let ids: Vec<Uuid> = (0..tenants).map(|_| Uuid::now_v7()).collect();
    let names: Vec<String> = (0..tenants).map(|i| format!("tenant {i:03}")).collect();
    let keys: Vec<_> = ids
        .iter()
        .map(|id| tenantguard::http::auth::new_api_key(TenantId::from_uuid(*id)))
        .collect();
    let prefixes: Vec<&str> = keys.iter().map(|k| k.prefix.as_str()).collect();
    let hashes: Vec<&[u8]> = keys.iter().map(|k| &k.hash[..]).collect();
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
        "INSERT INTO projects (tenant_id, name, description, created_at, updated_at)
         SELECT t, 'Project ' || g, 'bench project ' || g,
                now() - g * interval '1 minute', now() - g * interval '1 minute'
         FROM unnest($1::uuid[]) AS t, generate_series(1, $2::int) g",
        &[&ids, &projects],
    )
    .await?;
    su.batch_execute("VACUUM ANALYZE").await?;
    let mut out = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let rows = su
            .query(
                "SELECT id FROM projects WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC",
                &[id],
            )
            .await?;
        out.push(Tenant {
            id: *id,
            name: names[i].clone(),
            key: keys[i].key.clone(),
            projects: rows.iter().map(|r| r.get(0)).collect(),
        });
    }
    Ok(out)
}

/// A free loopback port (bound and released: good enough for a benchmark).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The release server binary, built by cargo for this benchmark.
pub fn server_binary() -> &'static str {
    env!("CARGO_BIN_EXE_tenantguard")
}

/// `tenantguard serve` on `addr` against the seeded database, run through `wrapper` (e.g.
/// valgrind) when given. Logs go to `log`.
pub fn spawn_server(
    cluster: &Cluster,
    addr: SocketAddr,
    wrapper: &[String],
    extra_env: &[(&str, &str)],
    log: &Path,
) -> anyhow::Result<Child> {
    let (program, args): (&str, Vec<&str>) = match wrapper.split_first() {
        Some((p, rest)) => {
            let mut a: Vec<&str> = rest.iter().map(String::as_str).collect();
            a.push(server_binary());
            (p.as_str(), a)
        }
        None => (server_binary(), Vec::new()),
    };
    let log = std::fs::File::create(log)?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .arg("serve")
        .env(
            "TENANTGUARD_DATABASE_URL",
            cluster.url("tenantguard_app", DB),
        )
        .env("TENANTGUARD_LISTEN", addr.to_string())
        .env_remove("TENANTGUARD_ADMIN_TOKEN")
        .env_remove("TENANTGUARD_ADMIN_DATABASE_URL")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    cmd.spawn().context("starting the server")
}

/// Waits until `GET /healthz` answers 200 (or the child exits, or `timeout` passes).
pub async fn wait_ready(
    http: &reqwest::Client,
    addr: SocketAddr,
    child: &mut Child,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the server exited during start-up: {status}");
        }
        if let Ok(r) = http.get(format!("http://{addr}/healthz")).send().await {
            if r.status().is_success() {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!("the server was not ready within {timeout:?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Stops a child with SIGTERM (graceful shutdown), then SIGKILL after `grace`.
pub fn stop(child: &mut Child, grace: Duration) {
    // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A named setting from the environment, or `default`.
pub fn env<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU seconds (user, system) used so far by process `pid`, from /proc/<pid>/stat.
/// Hand-written because it is a few lines of /proc parsing for a benchmark.
pub fn proc_cpu(pid: u32) -> Option<(u32, f64, f64)> {
    proc_stat(pid).map(|s| (s.ppid, s.user, s.sys))
}

/// The fields of /proc/<pid>/stat the CPU accounting reads, in seconds.
struct Stat {
    ppid: u32,
    user: f64,
    sys: f64,
    /// CPU time of its children that have exited and been waited for.
    children_user: f64,
    children_sys: f64,
}

fn proc_stat(pid: u32) -> Option<Stat> {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: count fields after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let secs = |i: usize| -> Option<f64> { Some(f.get(i)?.parse::<f64>().ok()? / tick) };
    Some(Stat {
        ppid: f.get(1)?.parse().ok()?,
        user: secs(11)?,
        sys: secs(12)?,
        children_user: secs(13)?,
        children_sys: secs(14)?,
    })
}

/// CPU seconds (user, system) of `root` and its children (PostgreSQL: the postmaster and
/// its backends), including children that have exited since: a backend that ends during a
/// run (a client's pool closing idle connections) moves its time into the postmaster's
/// waited-for children's time instead of taking it out of the sum, which made the
/// difference of two readings negative.
pub fn tree_cpu(root: u32) -> (f64, f64) {
    let (mut user, mut sys) = (0.0, 0.0);
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
                continue;
            };
            let Some(s) = proc_stat(pid) else { continue };
            if pid == root {
                user += s.user + s.children_user;
                sys += s.sys + s.children_sys;
            } else if s.ppid == root {
                user += s.user;
                sys += s.sys;
            }
        }
    }
    (user, sys)
}

/// One `wrk` run as both HTTP benchmarks make it (`bench/api.rs`, `bench/seed_compare.rs`):
/// `wrk -t<threads> -c<connections> -d<secs>s --latency --timeout 10s -s bench/wrk/<script>`
/// with the script's settings in the environment.
pub struct Wrk<'a> {
    pub addr: SocketAddr,
    /// A script in `bench/wrk/`.
    pub script: &'a str,
    pub threads: u32,
    pub connections: u32,
    pub secs: u64,
    /// The script's settings (`SCENARIO`, `TARGETS`, …).
    pub env: Vec<(&'a str, String)>,
}

/// Whose CPU time a [`Wrk`] run counts as the server's.
#[derive(Debug, Clone, Copy)]
pub enum ServerCpu {
    /// A server process of its own.
    Pid(u32),
    /// This process (a server started in it).
    ThisProcess,
}

/// What a [`Wrk`] run measured: wrk's figures and the CPU time per request of the server
/// and of PostgreSQL (the postmaster and its backends) meanwhile, user and system apart.
#[derive(Debug, Clone, Copy, Default)]
pub struct WrkRun {
    pub rps: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// Non-2xx/3xx responses.
    pub errors: u64,
    pub server_user_us: f64,
    pub server_sys_us: f64,
    pub pg_user_us: f64,
    pub pg_sys_us: f64,
}

impl Wrk<'_> {
    /// Runs wrk (bounded: killed past its duration plus a minute) and reads its output.
    pub async fn run(&self, server: ServerCpu, postmaster: u32) -> anyhow::Result<WrkRun> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("bench/wrk")
            .join(self.script);
        let mut cmd = tokio::process::Command::new("wrk");
        cmd.arg(format!("-t{}", self.threads))
            .arg(format!("-c{}", self.connections))
            .arg(format!("-d{}s", self.secs))
            .arg("--latency")
            .arg("--timeout")
            .arg("10s")
            .arg("-s")
            .arg(&script)
            .arg(format!("http://{}", self.addr))
            .kill_on_drop(true);
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let cpu = || {
            let own = match server {
                ServerCpu::Pid(pid) => proc_cpu(pid).map(|(_, u, s)| (u, s)),
                ServerCpu::ThisProcess => proc_cpu(std::process::id()).map(|(_, u, s)| (u, s)),
            }
            .unwrap_or((0.0, 0.0));
            (own, tree_cpu(postmaster))
        };
        let before = cpu();
        let out = tokio::time::timeout(Duration::from_secs(self.secs + 60), cmd.output())
            .await
            .context("wrk hung")??;
        let after = cpu();
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        if !out.status.success() {
            bail!("wrk failed: {text}{}", String::from_utf8_lossy(&out.stderr));
        }
        let mut r = parse_wrk(&text).with_context(|| format!("unexpected wrk output:\n{text}"))?;
        let requests = text
            .lines()
            .find_map(|l| l.trim().split_once(" requests in "))
            .and_then(|(n, _)| n.trim().parse::<f64>().ok())
            .unwrap_or(r.rps * self.secs as f64)
            .max(1.0);
        let per = |a: f64, b: f64| (a - b) / requests * 1e6;
        r.server_user_us = per(after.0 .0, before.0 .0);
        r.server_sys_us = per(after.0 .1, before.0 .1);
        r.pg_user_us = per(after.1 .0, before.1 .0);
        r.pg_sys_us = per(after.1 .1, before.1 .1);
        Ok(r)
    }
}

/// wrk's requests per second, latency percentiles and error count.
fn parse_wrk(text: &str) -> Option<WrkRun> {
    let mut m = WrkRun::default();
    for line in text.lines() {
        let l = line.trim();
        if let Some(v) = l.strip_prefix("Requests/sec:") {
            m.rps = v.trim().parse().ok()?;
        } else if let Some(v) = l.strip_prefix("50%") {
            m.p50_ms = parse_ms(v)?;
        } else if let Some(v) = l.strip_prefix("99%") {
            m.p99_ms = parse_ms(v)?;
        } else if let Some(v) = l.strip_prefix("Non-2xx or 3xx responses:") {
            m.errors = v.trim().parse().ok()?;
        }
    }
    (m.rps > 0.0).then_some(m)
}

/// A wrk duration (`812.00us`, `3.5ms`, `1.2s`) in milliseconds.
pub fn parse_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 0.001)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1000.0)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|n| n * mult)
}
