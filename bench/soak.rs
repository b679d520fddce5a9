//! A bounded soak with faults (issue 8): `cargo bench --bench soak` (or `bench/soak.sh`).
//!
//! Everything is local (a private PostgreSQL on a unix socket, the server and pgbouncer on
//! 127.0.0.1) and bounded in count and time (`SOAK_OPS`, `SOAK_MAX_SECS`). It runs:
//!
//! 1. `SOAK_TENANTS` (50) tenants, `SOAK_WORKERS` (64) concurrent workers doing
//!    randomized creates, reads, lists, patches and deletes in random tenants, reads of
//!    other tenants' ids, and client-side cancellations (requests dropped after 1–30 ms),
//!    against the real `tenantguard serve` process. Meanwhile PostgreSQL is stopped with
//!    `pg_ctl stop -m immediate` twice (5 s and 15 s down) and the server is killed with
//!    SIGKILL once, each then restarted; the time until the API answers again is measured.
//!    Creates and patches carry an `Idempotency-Key` and are retried with it until they get
//!    a definite answer, so the ledger knows exactly what was acknowledged.
//! 2. The noisy-neighbour case: a victim tenant's latency quiet, then while another tenant
//!    holds slow bodies (Content-Length 100, 1 byte/s, a new key each so the key lookup is
//!    not cached) and sends bursts.
//! 3. The same workload and checks through a transaction-mode pgbouncer (Debian's
//!    /usr/sbin/pgbouncer), with an in-process server whose pool has the statement cache
//!    off (what pgbouncer before 1.21 needs).
//! 4. The ledger check, as the superuser: every acknowledged write is there with its
//!    values, every acknowledged delete is gone, no row exists that no acknowledged create
//!    explains (a double write), and no response carried another tenant's id.
//!
//! It prints a table (also written to `target/bench/soak.md`).

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rand::seq::SliceRandom;
use rand::Rng;
use serde_json::{json, Value};
use tenantguard::cluster::{Binaries, Cluster, ClusterOptions, Durability, SUPERUSER};
use tokio::io::AsyncWriteExt;
use uuid::Uuid;

const DB: &str = "soak";
const ADMIN_TOKEN: &str = "soak-admin-token-0123456789abcdef";

struct Opts {
    tenants: usize,
    workers: usize,
    ops: u64,
    bouncer_ops: u64,
    max_secs: u64,
}

impl Opts {
    fn from_env() -> Self {
        let n = |k: &str, d: u64| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(d)
        };
        Self {
            tenants: n("SOAK_TENANTS", 50) as usize,
            workers: n("SOAK_WORKERS", 64) as usize,
            ops: n("SOAK_OPS", 110_000),
            bouncer_ops: n("SOAK_BOUNCER_OPS", 20_000),
            max_secs: n("SOAK_MAX_SECS", 300),
        }
    }
}

// ---------------------------------------------------------------------------------------
// PostgreSQL, restarted by hand with pg_ctl (the Cluster starts it once and initdb's it).

struct Pg {
    bins: Binaries,
    data: PathBuf,
    socket: PathBuf,
    port: u16,
    log: PathBuf,
    /// Down intervals [stop, recovered] (seconds since the soak's start).
    down: Mutex<Vec<(f64, f64)>>,
}

impl Pg {
    fn pg_ctl(&self, args: &[&str]) -> anyhow::Result<()> {
        let mut cmd = Command::new(self.bins.program("pg_ctl"));
        cmd.arg("-D").arg(&self.data).args(args);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if nix::unistd::geteuid().is_root() {
            let u = nix::unistd::User::from_name("postgres")?.context("postgres user")?;
            cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
        }
        let st = cmd.status()?;
        if !st.success() {
            bail!("pg_ctl {args:?}: {st}");
        }
        Ok(())
    }

    fn stop_immediate(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["stop", "-m", "immediate", "-w"])
    }

    fn stop_fast(&self) -> anyhow::Result<()> {
        self.pg_ctl(&["stop", "-m", "fast", "-w"])
    }

    fn start(&self) -> anyhow::Result<()> {
        let opts = format!(
            "-k {} -p {} -c listen_addresses= -c unix_socket_permissions=0700 \
             -c max_connections=300 -c fsync=off",
            self.socket.display(),
            self.port
        );
        let log = self.log.display().to_string();
        self.pg_ctl(&["start", "-w", "-t", "120", "-l", &log, "-o", &opts])
    }

    fn config(&self, user: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host_path(&self.socket)
            .port(self.port)
            .user(user)
            .dbname(DB);
        c
    }
}

/// Stops our PostgreSQL if the soak ends early (a panic): the Cluster no longer can.
struct PgGuard(Arc<Pg>);

impl Drop for PgGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let _ = self.0.stop_immediate();
        }
    }
}

async fn connect(cfg: tokio_postgres::Config) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    Ok(client)
}

// ---------------------------------------------------------------------------------------
// The server under test: the real binary, so that it can be killed with SIGKILL.

struct Server {
    child: Option<Child>,
    env: Vec<(String, String)>,
    log: PathBuf,
}

impl Server {
    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(env!("CARGO_BIN_EXE_tenantguard"))
            .arg("serve")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting tenantguard serve")?;
        self.child = Some(child);
        Ok(())
    }

    fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn interrupt(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(c.id() as i32),
                nix::sys::signal::Signal::SIGINT,
            );
            let _ = c.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

// ---------------------------------------------------------------------------------------
// The ledger.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Kind {
    Project,
    Task,
    Document,
}

impl Kind {
    fn path(self) -> &'static str {
        match self {
            Kind::Project => "/v1/projects",
            Kind::Task => "/v1/tasks",
            Kind::Document => "/v1/documents",
        }
    }
    fn table(self) -> &'static str {
        match self {
            Kind::Project => "projects",
            Kind::Task => "tasks",
            Kind::Document => "documents",
        }
    }
    /// The field the ledger tracks.
    fn field(self) -> &'static str {
        match self {
            Kind::Project => "name",
            _ => "title",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    tenant: usize,
    kind: Kind,
    id: Uuid,
    value: String,
    deleted: bool,
}

#[derive(Default)]
struct Stats {
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    cancelled: u64,
    leaks: u64,
    leak_examples: Vec<String>,
    wrong_values: u64,
    status_500: Vec<String>,
    /// Times (s since start) of 503 answers.
    t503: Vec<f64>,
    unresolved: u64,
    latencies_ms: Vec<f64>,
    conflicts_409_in_flight: u64,
    replays: u64,
}

struct Shared {
    start: Instant,
    base: Mutex<String>,
    keys: Vec<String>,
    /// id → tenant of everything acknowledged (for leak checks).
    owner: Mutex<HashMap<Uuid, usize>>,
    /// Some ids per tenant, for "other tenant's id" reads.
    sample: Mutex<Vec<Vec<(Kind, Uuid)>>>,
    stats: Mutex<Stats>,
    ops: AtomicU64,
    /// Operations finished.
    done: AtomicU64,
    /// Keep going past the op count (while faults are still to come).
    hold: AtomicBool,
    stop: AtomicBool,
    client: reqwest::Client,
}

impl Shared {
    fn now(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }

    fn base(&self) -> String {
        self.base.lock().map(|b| b.clone()).unwrap_or_default()
    }

    fn record_status(&self, status: u16, body: &str, took: Duration) {
        let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        *s.statuses.entry(status).or_default() += 1;
        s.latencies_ms.push(took.as_secs_f64() * 1000.0);
        if status == 503 {
            let t = self.now();
            s.t503.push(t);
        }
        if status >= 500 && status != 503 && s.status_500.len() < 10 {
            s.status_500.push(format!("{status}: {body}"));
        } else if status >= 500 && status != 503 {
            s.status_500.push(String::new());
        }
    }

    /// Counts ids in `v` that belong to a tenant other than `tenant`.
    fn scan(&self, tenant: usize, v: &Value, what: &str) {
        let mut ids = Vec::new();
        collect_ids(v, &mut ids);
        if ids.is_empty() {
            return;
        }
        let owner = self.owner.lock().unwrap_or_else(|e| e.into_inner());
        for id in ids {
            if let Some(&t) = owner.get(&id) {
                if t != tenant {
                    let mut s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
                    s.leaks += 1;
                    if s.leak_examples.len() < 5 {
                        s.leak_examples
                            .push(format!("{what}: tenant {tenant} saw {id} of {t}"));
                    }
                }
            }
        }
    }
}

fn collect_ids(v: &Value, out: &mut Vec<Uuid>) {
    match v {
        Value::String(s) if s.len() == 36 => {
            if let Ok(u) = Uuid::parse_str(s) {
                out.push(u);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect_ids(x, out)),
        Value::Object(m) => m.values().for_each(|x| collect_ids(x, out)),
        _ => {}
    }
}

enum Outcome {
    Answer(u16, Value),
    Failed,
}

/// Sends until a definite answer (not a transport error, 503 or in-flight 409), for up
/// to 90 s. `cancel_first`: the first attempt is dropped after a few milliseconds.
async fn definite(
    sh: &Shared,
    method: reqwest::Method,
    path: &str,
    key: &str,
    idem: Option<&str>,
    body: Option<&Value>,
    cancel_first: bool,
) -> Outcome {
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut first = true;
    loop {
        if Instant::now() > deadline {
            sh.stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .unresolved += 1;
            return Outcome::Failed;
        }
        let mut req = sh
            .client
            .request(method.clone(), format!("{}{path}", sh.base()))
            .bearer_auth(key);
        if let Some(k) = idem {
            req = req.header("Idempotency-Key", k);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let cancel = first && cancel_first;
        first = false;
        let t0 = Instant::now();
        let timeout = if cancel {
            Duration::from_millis(rand::thread_rng().gen_range(1..30))
        } else {
            Duration::from_secs(35)
        };
        match tokio::time::timeout(timeout, req.send()).await {
            Err(_) => {
                sh.stats.lock().unwrap_or_else(|e| e.into_inner()).cancelled += 1;
                continue;
            }
            Ok(Err(_)) => {
                sh.stats
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .transport_errors += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
                continue;
            }
            Ok(Ok(res)) => {
                let status = res.status().as_u16();
                let replayed = res.headers().contains_key("idempotent-replayed");
                let text = match res.text().await {
                    Ok(t) => t,
                    Err(_) => {
                        sh.stats
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .transport_errors += 1;
                        continue;
                    }
                };
                sh.record_status(status, &text, t0.elapsed());
                if replayed {
                    sh.stats.lock().unwrap_or_else(|e| e.into_inner()).replays += 1;
                }
                if status == 503 || status == 429 {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                }
                if status == 409 && text.contains("still in progress") {
                    sh.stats
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .conflicts_409_in_flight += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
                let v = serde_json::from_str(&text).unwrap_or(Value::Null);
                return Outcome::Answer(status, v);
            }
        }
    }
}

async fn worker(sh: Arc<Shared>, me: usize, limit: u64) -> Vec<Entry> {
    let mut mine: Vec<Entry> = Vec::new();
    let tenants = sh.keys.len();
    while !sh.stop.load(Ordering::Relaxed)
        && (sh.ops.fetch_add(1, Ordering::Relaxed) < limit || sh.hold.load(Ordering::Relaxed))
    {
        sh.done.fetch_add(1, Ordering::Relaxed);
        let (tenant, roll, cancel, other) = {
            let mut r = rand::thread_rng();
            (
                r.gen_range(0..tenants),
                r.gen_range(0..100u32),
                r.gen_bool(0.03),
                r.gen_range(0..tenants),
            )
        };
        let key = sh.keys[tenant].clone();
        let own: Vec<usize> = mine
            .iter()
            .enumerate()
            .filter(|(_, e)| e.tenant == tenant && !e.deleted)
            .map(|(i, _)| i)
            .collect();
        let project = own
            .iter()
            .copied()
            .filter(|&i| mine[i].kind == Kind::Project)
            .collect::<Vec<_>>()
            .choose(&mut rand::thread_rng())
            .copied();
        let pick = own.choose(&mut rand::thread_rng()).copied();
        let token = Uuid::new_v4().simple().to_string();
        match roll {
            // Creates (with an idempotency key, retried until definite).
            0..=29 => {
                let (kind, body) = match (roll % 3, project) {
                    (1, Some(p)) => (
                        Kind::Task,
                        json!({ "project_id": mine[p].id, "title": format!("t{token}") }),
                    ),
                    (2, Some(p)) => (
                        Kind::Document,
                        json!({ "project_id": mine[p].id, "title": format!("d{token}"), "body": "x" }),
                    ),
                    _ => (Kind::Project, json!({ "name": format!("p{token}") })),
                };
                let idem = format!("w{me}-{token}");
                match definite(
                    &sh,
                    reqwest::Method::POST,
                    kind.path(),
                    &key,
                    Some(&idem),
                    Some(&body),
                    cancel,
                )
                .await
                {
                    Outcome::Answer(201, v) => {
                        let Some(id) = v["id"].as_str().and_then(|s| Uuid::parse_str(s).ok())
                        else {
                            continue;
                        };
                        let value = v[kind.field()].as_str().unwrap_or_default().to_string();
                        if value != body[kind.field()].as_str().unwrap_or_default() {
                            sh.stats
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .wrong_values += 1;
                        }
                        sh.owner
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .insert(id, tenant);
                        if let Ok(mut s) = sh.sample.lock() {
                            if s[tenant].len() < 200 {
                                s[tenant].push((kind, id));
                            }
                        }
                        mine.push(Entry {
                            tenant,
                            kind,
                            id,
                            value,
                            deleted: false,
                        });
                    }
                    Outcome::Answer(_, v) => sh.scan(tenant, &v, "create"),
                    Outcome::Failed => {}
                }
            }
            // Reads of own rows, checked against the ledger.
            30..=54 => {
                let Some(i) = pick else { continue };
                let e = mine[i].clone();
                if let Outcome::Answer(status, v) = definite(
                    &sh,
                    reqwest::Method::GET,
                    &format!("{}/{}", e.kind.path(), e.id),
                    &key,
                    None,
                    None,
                    cancel,
                )
                .await
                {
                    sh.scan(tenant, &v, "get own");
                    if status != 200 || v[e.kind.field()].as_str() != Some(e.value.as_str()) {
                        sh.stats
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .wrong_values += 1;
                    }
                }
            }
            // Reads of another tenant's ids: must be 404.
            55..=66 => {
                let target = sh
                    .sample
                    .lock()
                    .ok()
                    .and_then(|s| s[other].choose(&mut rand::thread_rng()).copied());
                let Some((kind, id)) = target else { continue };
                if other == tenant {
                    continue;
                }
                if let Outcome::Answer(status, v) = definite(
                    &sh,
                    reqwest::Method::GET,
                    &format!("{}/{id}", kind.path()),
                    &key,
                    None,
                    None,
                    cancel,
                )
                .await
                {
                    sh.scan(tenant, &v, "get other");
                    if status != 404 {
                        let mut s = sh.stats.lock().unwrap_or_else(|e| e.into_inner());
                        s.leaks += 1;
                        s.leak_examples
                            .push(format!("tenant {tenant} read {id} of {other}: {status}"));
                    }
                }
            }
            // Lists: every id must be the tenant's own.
            67..=76 => {
                let path = if roll % 2 == 0 {
                    "/v1/projects?limit=20".to_string()
                } else {
                    "/v1/tasks?limit=20".to_string()
                };
                if let Outcome::Answer(_, v) =
                    definite(&sh, reqwest::Method::GET, &path, &key, None, None, cancel).await
                {
                    sh.scan(tenant, &v, "list");
                }
            }
            // Patches (with an idempotency key).
            77..=89 => {
                let Some(i) = pick else { continue };
                let e = mine[i].clone();
                let value = format!("u{token}");
                let mut m = serde_json::Map::new();
                m.insert(e.kind.field().into(), Value::String(value.clone()));
                let body = Value::Object(m);
                let idem = format!("w{me}-{token}");
                match definite(
                    &sh,
                    reqwest::Method::PATCH,
                    &format!("{}/{}", e.kind.path(), e.id),
                    &key,
                    Some(&idem),
                    Some(&body),
                    cancel,
                )
                .await
                {
                    Outcome::Answer(200, v) => {
                        sh.scan(tenant, &v, "patch");
                        mine[i].value = value;
                    }
                    Outcome::Answer(_, v) => {
                        sh.scan(tenant, &v, "patch");
                        sh.stats
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .wrong_values += 1;
                    }
                    Outcome::Failed => {
                        // Unknown: the row holds one of the two values; the check allows both.
                        mine[i].value = format!("{}|{value}", mine[i].value);
                    }
                }
            }
            // Deletes of tasks and documents (204, or 404 when a lost first attempt did it).
            _ => {
                let Some(i) = own
                    .iter()
                    .copied()
                    .filter(|&i| mine[i].kind != Kind::Project)
                    .collect::<Vec<_>>()
                    .choose(&mut rand::thread_rng())
                    .copied()
                else {
                    continue;
                };
                let e = mine[i].clone();
                if let Outcome::Answer(status, _) = definite(
                    &sh,
                    reqwest::Method::DELETE,
                    &format!("{}/{}", e.kind.path(), e.id),
                    &key,
                    None,
                    None,
                    cancel,
                )
                .await
                {
                    if status == 204 || status == 404 {
                        mine[i].deleted = true;
                    }
                }
            }
        }
    }
    mine
}

async fn wait_ok(client: &reqwest::Client, url: &str, key: Option<&str>, max: Duration) -> bool {
    let deadline = Instant::now() + max;
    while Instant::now() < deadline {
        let mut req = client.get(url).timeout(Duration::from_secs(2));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Ok(r) = req.send().await {
            if r.status().is_success() {
                return true;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

struct Faults {
    /// (what, down for, recovery seconds).
    events: Vec<(String, f64, f64)>,
    /// Server-down windows (s since start).
    server_down: Vec<(f64, f64)>,
    rss: Vec<(String, u64)>,
}

async fn fault_schedule(
    sh: Arc<Shared>,
    pg: Arc<Pg>,
    server: Arc<tokio::sync::Mutex<Server>>,
) -> anyhow::Result<Faults> {
    let mut f = Faults {
        events: Vec::new(),
        server_down: Vec::new(),
        rss: Vec::new(),
    };
    let probe = format!("{}/v1/projects?limit=1", sh.base());
    let key = sh.keys[0].clone();
    let client = reqwest::Client::new();
    tokio::time::sleep(Duration::from_secs(5)).await;
    f.rss.push((
        "server 1, start (after warm-up)".into(),
        rss_kib(server.lock().await.pid()),
    ));
    for (at, what, down) in [
        (25.0, "PostgreSQL stop -m immediate", 5.0),
        (60.0, "server kill -9", 0.0),
        (95.0, "PostgreSQL stop -m immediate", 15.0),
    ] {
        while sh.now() < at && !sh.stop.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let t0 = sh.now();
        if what.starts_with("PostgreSQL") {
            let p = pg.clone();
            tokio::task::spawn_blocking(move || p.stop_immediate()).await??;
            tokio::time::sleep(Duration::from_secs_f64(down)).await;
            let p = pg.clone();
            tokio::task::spawn_blocking(move || p.start()).await??;
            let up = sh.now();
            let ok = wait_ok(&client, &probe, Some(&key), Duration::from_secs(60)).await;
            let rec = sh.now();
            pg.down
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((t0, rec));
            f.events.push((
                format!("{what} ({down:.0} s down)"),
                up - t0,
                if ok { rec - up } else { f64::NAN },
            ));
        } else {
            let mut s = server.lock().await;
            f.rss
                .push(("server 1, before kill -9".into(), rss_kib(s.pid())));
            s.kill9();
            s.spawn()?;
            drop(s);
            let ok = wait_ok(&client, &probe, Some(&key), Duration::from_secs(60)).await;
            let rec = sh.now();
            f.server_down.push((t0, rec));
            f.events
                .push((what.to_string(), 0.0, if ok { rec - t0 } else { f64::NAN }));
        }
    }
    Ok(f)
}

fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i.min(v.len() - 1)]
}

/// The victim's point reads for `secs`: (p50, p99, requests, non-2xx).
async fn victim(base: &str, key: &str, id: Uuid, secs: u64) -> (f64, f64, usize, usize) {
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(secs);
    let lat = Arc::new(Mutex::new(Vec::new()));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, lat, errors) = (client.clone(), lat.clone(), errors.clone());
        let url = format!("{base}/v1/projects/{id}");
        let key = key.to_string();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let ok = matches!(
                    client.get(&url).bearer_auth(&key).timeout(Duration::from_secs(30)).send().await,
                    Ok(r) if r.status().is_success()
                );
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                if let Ok(mut l) = lat.lock() {
                    l.push(t0.elapsed().as_secs_f64() * 1000.0);
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let mut l = lat.lock().map(|l| l.clone()).unwrap_or_default();
    let n = l.len();
    (
        percentile(&mut l, 0.5),
        percentile(&mut l, 0.99),
        n,
        errors.load(Ordering::Relaxed) as usize,
    )
}

/// One tenant's slow bodies (a fresh key each, so the key lookup is not cached) and
/// bursts of creates, until `stop`.
async fn noisy(addr: SocketAddr, keys: Vec<String>, burst_key: String, stop: Arc<AtomicBool>) {
    let mut tasks = Vec::new();
    for key in keys {
        let stop = stop.clone();
        tasks.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let Ok(mut s) = tokio::net::TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    continue;
                };
                let head = format!(
                    "POST /v1/projects HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {key}\r\n\
                     Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{"
                );
                if s.write_all(head.as_bytes()).await.is_err() {
                    continue;
                }
                // One byte a second, until the server gives up on it or the phase ends.
                for _ in 0..98 {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    if s.write_all(b" ").await.is_err() {
                        break;
                    }
                }
            }
        }));
    }
    let client = reqwest::Client::new();
    let base = format!("http://{addr}");
    while !stop.load(Ordering::Relaxed) {
        let mut burst = Vec::new();
        for i in 0..100 {
            let (c, b, k) = (client.clone(), base.clone(), burst_key.clone());
            burst.push(tokio::spawn(async move {
                let _ = c
                    .post(format!("{b}/v1/projects"))
                    .bearer_auth(k)
                    .json(&json!({ "name": format!("burst {i}") }))
                    .timeout(Duration::from_secs(30))
                    .send()
                    .await;
            }));
        }
        for b in burst {
            let _ = b.await;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for t in tasks {
        t.abort();
    }
}

struct Bouncer(Child, PathBuf);

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let _ = std::fs::remove_dir_all(&self.1);
    }
}

fn start_pgbouncer(pg: &Pg, port: u16, dir: &Path) -> anyhow::Result<Bouncer> {
    let bin = ["/usr/sbin/pgbouncer", "/usr/bin/pgbouncer"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .context("pgbouncer is not installed (apt-get install pgbouncer)")?;
    std::fs::create_dir_all(dir)?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777))?;
    let users = dir.join("users.txt");
    std::fs::write(&users, "\"tenantguard_app\" \"\"\n")?;
    let ini = dir.join("pgbouncer.ini");
    std::fs::write(
        &ini,
        format!(
            "[databases]\nsoak = host={} port={} dbname={DB}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {}\npool_mode = transaction\n\
             default_pool_size = 16\nmax_client_conn = 500\n\
             server_reset_query =\nlogfile = {}\n",
            pg.socket.display(),
            pg.port,
            users.display(),
            dir.join("pgbouncer.log").display()
        ),
    )?;
    let mut cmd = Command::new(bin);
    cmd.arg(&ini).stdout(Stdio::null()).stderr(Stdio::null());
    if nix::unistd::geteuid().is_root() {
        let u = nix::unistd::User::from_name("postgres")?.context("postgres user")?;
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
    let child = cmd.spawn()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            bail!("pgbouncer did not start");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(Bouncer(child, dir.to_path_buf()))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

async fn run_load(sh: &Arc<Shared>, workers: usize, limit: u64) -> Vec<Entry> {
    let mut handles = Vec::new();
    for me in 0..workers {
        handles.push(tokio::spawn(worker(sh.clone(), me, limit)));
    }
    let mut all = Vec::new();
    for h in handles {
        if let Ok(v) = h.await {
            all.extend(v);
        }
    }
    all
}

fn main() -> anyhow::Result<()> {
    let opts = Opts::from_env();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(run(opts))
}

async fn run(opts: Opts) -> anyhow::Result<()> {
    let wall = Instant::now();
    let out_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&out_dir)?;
    let base_dir = tempfile::Builder::new()
        .prefix("tg-soak-")
        .tempdir_in("/tmp")?;
    eprintln!("soak: PostgreSQL under {}", base_dir.path().display());
    let cluster = {
        let dir = base_dir.path().join("pg");
        tokio::task::spawn_blocking(move || {
            Cluster::start(&ClusterOptions {
                base_dir: Some(dir),
                durability: Durability::Durable,
                max_connections: 300,
                settings: vec![("fsync".into(), "off".into())],
                ..ClusterOptions::default()
            })
        })
        .await??
    };
    let su = connect(cluster.config(SUPERUSER, "postgres")).await?;
    su.batch_execute(&format!("CREATE DATABASE {DB}")).await?;
    let mut su = connect(cluster.config(SUPERUSER, DB)).await?;
    tenantguard::schema::migrate(&mut su, &tenantguard::testing::policy()).await?;
    drop(su);
    let pg = Arc::new(Pg {
        bins: Binaries::locate()?,
        data: cluster.data_dir().to_path_buf(),
        socket: cluster.socket_dir().to_path_buf(),
        port: cluster.port(),
        log: base_dir.path().join("pg").join("postgres.log"),
        down: Mutex::new(Vec::new()),
    });
    // From here on PostgreSQL is ours to stop and start: take it over from the Cluster
    // (which would otherwise stop it on drop, by pid, and not restart it).
    let cluster_guard = cluster;
    let _stop_on_panic = PgGuard(pg.clone());
    {
        let p = pg.clone();
        tokio::task::spawn_blocking(move || p.stop_fast()).await??;
        let p = pg.clone();
        tokio::task::spawn_blocking(move || p.start()).await??;
    }
    let result = soak(&opts, &pg, base_dir.path(), &out_dir, wall).await;
    {
        let p = pg.clone();
        let _ = tokio::task::spawn_blocking(move || p.stop_fast()).await;
    }
    tokio::task::spawn_blocking(move || drop(cluster_guard)).await?;
    result
}

async fn soak(
    opts: &Opts,
    pg: &Arc<Pg>,
    dir: &Path,
    out_dir: &Path,
    wall: Instant,
) -> anyhow::Result<()> {
    let url = |user: &str| format!("postgresql://{user}@{}:{}/{DB}", pct(&pg.socket), pg.port);
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let server = Arc::new(tokio::sync::Mutex::new(Server {
        child: None,
        env: vec![
            ("TENANTGUARD_DATABASE_URL".into(), url("tenantguard_app")),
            (
                "TENANTGUARD_ADMIN_DATABASE_URL".into(),
                url("tenantguard_admin"),
            ),
            ("TENANTGUARD_ADMIN_TOKEN".into(), ADMIN_TOKEN.into()),
            ("TENANTGUARD_LISTEN".into(), addr.to_string()),
            ("RUST_LOG".into(), "warn".into()),
        ],
        log: dir.join("server.log"),
    }));
    server.lock().await.spawn()?;
    let base = format!("http://{addr}");
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    if !wait_ok(
        &client,
        &format!("{base}/healthz"),
        None,
        Duration::from_secs(30),
    )
    .await
    {
        bail!(
            "the server did not come up; see {}",
            dir.join("server.log").display()
        );
    }
    eprintln!("soak: provisioning {} tenants", opts.tenants);
    let mut keys = Vec::new();
    for i in 0..opts.tenants {
        let r: Value = client
            .post(format!("{base}/admin/v1/tenants"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({ "name": format!("soak tenant {i}") }))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        keys.push(r["api_key"].as_str().context("api_key")?.to_string());
    }
    let sh = Arc::new(Shared {
        start: Instant::now(),
        base: Mutex::new(base.clone()),
        keys: keys.clone(),
        owner: Mutex::new(HashMap::new()),
        sample: Mutex::new(vec![Vec::new(); opts.tenants]),
        stats: Mutex::new(Stats::default()),
        ops: AtomicU64::new(0),
        done: AtomicU64::new(0),
        hold: AtomicBool::new(true),
        stop: AtomicBool::new(false),
        client: client.clone(),
    });

    // Phase 1: the direct server under load, with faults.
    eprintln!(
        "soak: phase 1, {} ops at c={} with faults (max {} s)",
        opts.ops, opts.workers, opts.max_secs
    );
    let faults = tokio::spawn(fault_schedule(sh.clone(), pg.clone(), server.clone()));
    let stopper = {
        let sh = sh.clone();
        let max = opts.max_secs;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(max)).await;
            sh.stop.store(true, Ordering::Relaxed);
        })
    };
    let t_load = Instant::now();
    // Keep the load going until the faults are done, even past the op count.
    let load = {
        let sh = sh.clone();
        let (w, n) = (opts.workers, opts.ops);
        tokio::spawn(async move { run_load(&sh, w, n).await })
    };
    let faults = faults.await;
    sh.hold.store(false, Ordering::Relaxed);
    let mut faults = faults??;
    let mut ledger = load.await?;
    let load_secs = t_load.elapsed().as_secs_f64();
    let phase1_ops = sh.done.load(Ordering::Relaxed);
    stopper.abort();
    faults.rss.push((
        "server 2, end of phase 1".into(),
        rss_kib(server.lock().await.pid()),
    ));

    // Phase 2: noisy neighbour.
    eprintln!("soak: phase 2, noisy neighbour");
    let victim_key = keys[0].clone();
    let victim_id = ledger
        .iter()
        .find(|e| e.tenant == 0 && e.kind == Kind::Project && !e.deleted)
        .map(|e| e.id)
        .context("the victim has a project")?;
    let mut noisy_keys = Vec::new();
    for i in 0..60 {
        let r: Value = client
            .post(format!("{base}/v1/api-keys"))
            .bearer_auth(&keys[1])
            .json(&json!({ "name": format!("noisy {i}"), "role": "member" }))
            .send()
            .await?
            .json()
            .await?;
        noisy_keys.push(r["api_key"].as_str().unwrap_or_default().to_string());
    }
    // Past the key cache TTL (5 s), so the slow requests' key lookups are not cached.
    tokio::time::sleep(Duration::from_secs(6)).await;
    let quiet = victim(&base, &victim_key, victim_id, 15).await;
    let stop_noise = Arc::new(AtomicBool::new(false));
    let noise = tokio::spawn(noisy(addr, noisy_keys, keys[1].clone(), stop_noise.clone()));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let loud = victim(&base, &victim_key, victim_id, 20).await;
    stop_noise.store(true, Ordering::Relaxed);
    let _ = noise.await;
    faults.rss.push((
        "server 2, after the noisy phase".into(),
        rss_kib(server.lock().await.pid()),
    ));

    // Phase 3: through a transaction-mode pgbouncer, statement cache off.
    eprintln!("soak: phase 3, {} ops through pgbouncer", opts.bouncer_ops);
    let bport = free_port()?;
    let bouncer = start_pgbouncer(pg, bport, &dir.join("pgbouncer"))?;
    let version = Command::new("/usr/sbin/pgbouncer")
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default();
    let mut bcfg = tokio_postgres::Config::new();
    bcfg.host("127.0.0.1")
        .port(bport)
        .user("tenantguard_app")
        .dbname("soak");
    let pool = tenantguard::TenantPool::connect(
        bcfg,
        tenantguard::PoolOptions {
            max_size: 32,
            statement_cache: false,
            ..tenantguard::PoolOptions::default()
        },
    )
    .await
    .context("pool through pgbouncer")?;
    let state =
        tenantguard::http::AppState::new(pool, None, tenantguard::http::HttpConfig::default())?;
    let app = tenantguard::http::Application::bind(([127, 0, 0, 1], 0).into(), state).await?;
    let baddr = app.local_addr()?;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let bserver = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let before_bouncer = {
        let s = sh.stats.lock().unwrap_or_else(|e| e.into_inner());
        (s.statuses.clone(), s.leaks, s.status_500.len())
    };
    if let Ok(mut b) = sh.base.lock() {
        *b = format!("http://{baddr}");
    }
    sh.ops.store(0, Ordering::Relaxed);
    sh.done.store(0, Ordering::Relaxed);
    sh.stop.store(false, Ordering::Relaxed);
    let t_b = Instant::now();
    let bl = run_load(&sh, opts.workers, opts.bouncer_ops).await;
    let bouncer_secs = t_b.elapsed().as_secs_f64();
    let bouncer_ops = sh.done.load(Ordering::Relaxed);
    ledger.extend(bl);
    let _ = tx.send(());
    let _ = bserver.await;
    drop(bouncer);
    let after_bouncer = {
        let s = sh.stats.lock().unwrap_or_else(|e| e.into_inner());
        (s.statuses.clone(), s.leaks, s.status_500.len())
    };
    let b500 = after_bouncer.2 - before_bouncer.2;
    let bleaks = after_bouncer.1 - before_bouncer.1;
    let bstatus: BTreeMap<u16, u64> = after_bouncer
        .0
        .iter()
        .map(|(k, v)| (*k, v - before_bouncer.0.get(k).copied().unwrap_or(0)))
        .filter(|(_, v)| *v > 0)
        .collect();

    // Phase 4: the ledger against the database.
    eprintln!(
        "soak: phase 4, checking the ledger ({} entries)",
        ledger.len()
    );
    let su = connect(pg.config(SUPERUSER)).await?;
    let tenant_ids: Vec<Uuid> = keys
        .iter()
        .map(|k| Uuid::parse_str(&k[4..36]).unwrap_or_default())
        .collect();
    let (mut present, mut missing, mut wrong, mut wrong_tenant, mut resurrected, mut gone) =
        (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let mut by_table: BTreeMap<Kind, Vec<&Entry>> = BTreeMap::new();
    for e in &ledger {
        by_table.entry(e.kind).or_default().push(e);
    }
    let mut unexplained = 0i64;
    for (kind, entries) in &by_table {
        let rows = su
            .query(
                &format!(
                    "SELECT id, tenant_id, {} FROM {}",
                    kind.field(),
                    kind.table()
                ),
                &[],
            )
            .await?;
        let db: HashMap<Uuid, (Uuid, String)> = rows
            .iter()
            .map(|r| (r.get(0), (r.get(1), r.get(2))))
            .collect();
        for e in entries {
            match db.get(&e.id) {
                Some((t, v)) if e.deleted => {
                    let _ = (t, v);
                    resurrected += 1;
                }
                None if e.deleted => gone += 1,
                None => missing += 1,
                Some((t, v)) => {
                    if *t != tenant_ids[e.tenant] {
                        wrong_tenant += 1;
                    }
                    if e.value.split('|').any(|x| x == v) {
                        present += 1;
                    } else {
                        wrong += 1;
                    }
                }
            }
        }
        // Rows no acknowledged create explains (the noisy phase's bursts and the soak's
        // tenant-1 burst projects aside): a double write.
        let known: std::collections::HashSet<Uuid> = entries.iter().map(|e| e.id).collect();
        unexplained += rows
            .iter()
            .filter(|r| {
                let id: Uuid = r.get(0);
                let name: String = r.get(2);
                !known.contains(&id) && !name.starts_with("burst ")
            })
            .count() as i64;
    }
    let stats = std::mem::take(&mut *sh.stats.lock().unwrap_or_else(|e| e.into_inner()));
    let down = pg.down.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let in_window =
        |t: f64, w: &[(f64, f64)], slack: f64| w.iter().any(|(a, b)| t >= *a && t <= *b + slack);
    let outside: usize = stats
        .t503
        .iter()
        .filter(|t| !in_window(**t, &down, 1.0))
        .count();
    let outside_all: usize = stats
        .t503
        .iter()
        .filter(|t| !in_window(**t, &down, 1.0) && !in_window(**t, &faults.server_down, 1.0))
        .count();
    let n500 = stats.status_500.len();
    let mut lat = stats.latencies_ms.clone();
    let total_requests: u64 = stats.statuses.values().sum();

    let mut t = String::new();
    let mut row = |k: &str, v: String| t.push_str(&format!("| {k} | {v} |\n"));
    row(
        "tenants / workers",
        format!("{} / {}", opts.tenants, opts.workers),
    );
    row(
        "operations (phase 1 direct, phase 3 pgbouncer)",
        format!(
            "{phase1_ops} in {load_secs:.0} s, {bouncer_ops} in {bouncer_secs:.0} s ({total_requests} HTTP requests incl. retries)"
        ),
    );
    row(
        "statuses",
        stats
            .statuses
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    row(
        "client cancellations / transport errors",
        format!("{} / {}", stats.cancelled, stats.transport_errors),
    );
    row(
        "idempotent replays / in-flight 409s",
        format!("{} / {}", stats.replays, stats.conflicts_409_in_flight),
    );
    row(
        "responses with another tenant's data",
        format!("{} {:?}", stats.leaks, stats.leak_examples),
    );
    row(
        "500s (any 5xx but 503)",
        format!(
            "{n500} {:?}",
            stats.status_500.iter().take(3).collect::<Vec<_>>()
        ),
    );
    row(
        "503s: total / outside DB-down windows / outside DB and server restarts",
        format!("{} / {outside} / {outside_all}", stats.t503.len()),
    );
    row(
        "ledger: acknowledged rows present with their values",
        format!("{present} (wrong value {wrong}, wrong tenant {wrong_tenant}, missing {missing})"),
    );
    row(
        "ledger: acknowledged deletes gone",
        format!("{gone} (still there: {resurrected})"),
    );
    row(
        "rows no acknowledged create explains (double writes)",
        unexplained.to_string(),
    );
    row(
        "requests that never got a definite answer (90 s)",
        stats.unresolved.to_string(),
    );
    row(
        "wrong values read back (own rows)",
        stats.wrong_values.to_string(),
    );
    for (what, down_s, rec) in &faults.events {
        row(
            &format!("recovery after {what}"),
            format!("{rec:.1} s after restart (stop→restart {down_s:.1} s)"),
        );
    }
    for (what, kib) in &faults.rss {
        row(
            &format!("RSS {what}"),
            format!("{:.1} MiB", *kib as f64 / 1024.0),
        );
    }
    row(
        "latency p50 / p99, all phase 1+3 requests",
        format!(
            "{:.1} / {:.1} ms",
            percentile(&mut lat, 0.5),
            percentile(&mut lat, 0.99)
        ),
    );
    row(
        "noisy neighbour: victim p50 / p99 quiet",
        format!(
            "{:.1} / {:.1} ms ({} requests, {} failed)",
            quiet.0, quiet.1, quiet.2, quiet.3
        ),
    );
    row(
        "noisy neighbour: victim p50 / p99 with 60 slow bodies + bursts",
        format!(
            "{:.1} / {:.1} ms ({} requests, {} failed); p99 ratio {:.2}x (target <= 2x)",
            loud.0,
            loud.1,
            loud.2,
            loud.3,
            loud.1 / quiet.1
        ),
    );
    row(
        &format!("pgbouncer ({version}, transaction mode, cache off)"),
        format!(
            "leaks {bleaks}, 500s {b500}, statuses {}",
            bstatus
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    row(
        "wall time",
        format!("{:.0} s", wall.elapsed().as_secs_f64()),
    );
    let table = format!("| check | result |\n|---|---|\n{t}");
    println!("{table}");
    std::fs::write(out_dir.join("soak.md"), &table)?;
    server.lock().await.interrupt();
    Ok(())
}

fn pct(p: &Path) -> String {
    let mut out = String::new();
    for b in p.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(*b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
