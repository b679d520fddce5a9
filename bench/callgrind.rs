//! Server CPU per request, counted in instructions (issue #10). Run with
//! `bench/callgrind.sh`.
//!
//! Starts a throwaway private PostgreSQL, seeds it (BENCH_TENANTS tenants × BENCH_PROJECTS
//! projects, default 50 × 100), and starts the release `tenantguard serve` binary under
//! `valgrind --tool=callgrind --instr-atstart=no`, so nothing of its start-up is counted.
//! This process is the client: for each request kind it sends a warm-up, then switches
//! collection on (`callgrind_control -i on`), sends BENCH_REQUESTS requests (default 300)
//! one after another over one keep-alive connection (opened before the first warm-up), keys rotating across tenants, switches
//! collection off and dumps the counts of that kind alone (`callgrind_control -d`). Only
//! the server process is measured; PostgreSQL and this client run natively.
//!
//! Per kind it reports instructions (Ir) per request, calls into the allocator per
//! request (from callgrind's call counts: callgrind does not replace the allocator, so
//! every Rust allocation is a call into mimalloc, the binary's global allocator, and C
//! code's are calls into glibc's malloc), and the top functions by self and by inclusive
//! cost (`callgrind_annotate`). The measured requests go in chunks timed
//! between the server's batched `last_used_at` writes (every 10 s), so that background
//! work is not counted. Instruction counts repeat within a few percent between runs
//! (timer wake-ups are the noise); seconds here would move ±20%.
//!
//! Settings from the environment: BENCH_REQUESTS (300), BENCH_WARMUP (50), BENCH_TENANTS
//! (50), BENCH_PROJECTS (100), BENCH_TOP (25 functions per table), BENCH_KINDS (comma list,
//! default all), RUST_LOG for the server (default: unset, i.e. the production `info`),
//! BENCH_TOOL=strace (system calls per request instead of instructions: see [`syscalls`]).
//! Output: target/bench/callgrind/ (raw callgrind files, annotations, summary.md).

#[path = "common.rs"]
mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Context};
use common::{env, Tenant};

/// The request kinds, in the order they are measured.
const KINDS: [&str; 6] = [
    "list50",
    "list100",
    "get",
    "create",
    "not_found",
    "unauthorized",
];

struct Kind<'a> {
    name: &'a str,
    /// The i-th request: (method is POST?, path, key, expected status).
    build: Box<dyn Fn(usize) -> (bool, String, String, u16) + 'a>,
}

fn kinds(tenants: &[Tenant]) -> Vec<Kind<'_>> {
    let n = tenants.len();
    // A key with a real tenant part and a wrong secret: parsed, hashed, looked up (a miss,
    // never cached), 401.
    let wrong: Vec<String> = tenants
        .iter()
        .map(|t| format!("tgk_{}_{}", t.id.simple(), "x".repeat(32)))
        .collect();
    let wrong = std::sync::Arc::new(wrong);
    vec![
        Kind {
            name: "list50",
            build: Box::new(move |i| {
                (
                    false,
                    "/v1/projects".into(),
                    tenants[i % n].key.clone(),
                    200,
                )
            }),
        },
        Kind {
            name: "list100",
            build: Box::new(move |i| {
                (
                    false,
                    "/v1/projects?limit=100".into(),
                    tenants[i % n].key.clone(),
                    200,
                )
            }),
        },
        Kind {
            name: "get",
            build: Box::new(move |i| {
                let t = &tenants[i % n];
                let p = t.projects[(i / n) % t.projects.len()];
                (false, format!("/v1/projects/{p}"), t.key.clone(), 200)
            }),
        },
        Kind {
            name: "create",
            build: Box::new(move |i| {
                (true, "/v1/projects".into(), tenants[i % n].key.clone(), 201)
            }),
        },
        Kind {
            name: "not_found",
            build: Box::new(move |i| {
                // Another tenant's project: the same 404 as a missing one.
                let other = &tenants[(i + 1) % n];
                let p = other.projects[(i / n) % other.projects.len()];
                (
                    false,
                    format!("/v1/projects/{p}"),
                    tenants[i % n].key.clone(),
                    404,
                )
            }),
        },
        Kind {
            name: "unauthorized",
            build: {
                let wrong = wrong.clone();
                Box::new(move |i| (false, "/v1/projects".into(), wrong[i % n].clone(), 401))
            },
        },
    ]
}

#[derive(Debug, Default, Clone)]
struct Measured {
    kind: String,
    requests: usize,
    ir: u64,
    /// The background `last_used_at` writer's share (it runs every 10 s whatever the load,
    /// so under valgrind's slowness a run catches one or none).
    flusher: u64,
    allocs: u64,
    frees: u64,
    self_top: String,
    incl_top: String,
}

fn main() -> anyhow::Result<()> {
    let tools: &[&str] = if std::env::var("BENCH_TOOL").as_deref() == Ok("strace") {
        &["strace"]
    } else {
        &["valgrind", "callgrind_control", "callgrind_annotate"]
    };
    for tool in tools {
        which(tool)
            .with_context(|| format!("{tool} is needed: apt-get install valgrind strace"))?;
    }
    if let Ok(dir) = std::env::var("BENCH_REANNOTATE") {
        // Only summarize the dumps of an earlier run (kept elsewhere), with this build's
        // tables: BENCH_REANNOTATE=<dir> BENCH_REQUESTS=<its request count>.
        let results = reannotate(Path::new(&dir))?;
        print!("{}", summary(&results));
        return Ok(());
    }
    let out = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench/callgrind");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out)?;
    eprintln!("starting a throwaway PostgreSQL …");
    let cluster = common::start_cluster()?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    if std::env::var("BENCH_TOOL").as_deref() == Ok("strace") {
        let result = rt.block_on(syscalls(&cluster, &out));
        drop(rt);
        drop(cluster);
        let table = result?;
        print!("\n{table}");
        std::fs::write(out.join("syscalls.md"), &table)?;
        eprintln!("written to {}", out.join("syscalls.md").display());
        return Ok(());
    }
    let result = rt.block_on(run(&cluster, &out));
    drop(rt);
    drop(cluster);
    let results = result?;
    let summary = summary(&results);
    print!("\n{summary}");
    std::fs::write(out.join("summary.md"), &summary)?;
    eprintln!("written to {}", out.join("summary.md").display());
    Ok(())
}

fn reannotate(dir: &Path) -> anyhow::Result<Vec<Measured>> {
    let requests: usize = env("BENCH_REQUESTS", 300usize).max(1);
    let top: usize = env("BENCH_TOP", 25usize);
    let mut results = Vec::new();
    for kind in KINDS {
        let file = dir.join(format!("callgrind.{kind}.out"));
        if !file.exists() {
            continue;
        }
        let (ir, allocs, frees) = parse_counts(&file)?;
        results.push(Measured {
            kind: kind.to_string(),
            requests,
            ir,
            flusher: inclusive_of(&file, FLUSHER)?,
            allocs,
            frees,
            self_top: annotate(&file, false, top)?,
            incl_top: annotate(&file, true, top)?,
        });
    }
    Ok(results)
}

async fn run(cluster: &tenantguard::cluster::Cluster, out: &Path) -> anyhow::Result<Vec<Measured>> {
    let requests: usize = env("BENCH_REQUESTS", 300usize).max(1);
    let warmup: usize = env("BENCH_WARMUP", 50usize);
    let top: usize = env("BENCH_TOP", 25usize);
    let tenants = common::seed(
        cluster,
        env("BENCH_TENANTS", 50usize).max(2),
        env("BENCH_PROJECTS", 100i32).max(2),
    )
    .await?;
    eprintln!("seeded {} tenants", tenants.len());
    let wanted: Vec<String> = std::env::var("BENCH_KINDS")
        .unwrap_or_else(|_| KINDS.join(","))
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();

    let addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()?));
    let wrapper: Vec<String> = [
        "valgrind",
        "--tool=callgrind",
        // Instrumentation, not just collection, off until `callgrind_control -i on`:
        // collection switched off by --collect-atstart=no cannot be switched on from
        // outside (callgrind_control toggles instrumentation only), and uninstrumented
        // start-up runs at near native speed.
        "--instr-atstart=no",
        "--compress-strings=no",
        "--compress-pos=no",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([format!(
        "--callgrind-out-file={}/callgrind.out",
        out.display()
    )])
    .collect();
    let mut child = measured_server(cluster, addr, &wrapper, out)?;
    let pid = child.id();
    let http = ready_client()?;
    let result = async {
        common::wait_ready(&http, addr, &mut child, Duration::from_secs(300)).await?;
        eprintln!("server under callgrind on {addr} (pid {pid})");
        let su = common::connect(cluster.config(
            tenantguard::cluster::SUPERUSER,
            common::DB,
        ))
        .await?;
        let mut conn = Conn::open(addr).await?;
        let all = kinds(&tenants);
        // Warm up every kind first: statements prepared on the connections, caches filled.
        for k in &all {
            send(&mut conn, k, 0, warmup.max(tenants.len())).await?;
        }
        let mut results = Vec::new();
        for (idx, k) in all.iter().enumerate() {
            if !wanted.iter().any(|w| w == k.name) {
                continue;
            }
            control(pid, &["-z"])?;
            // In chunks that each start just after the server's batched last_used_at
            // write (every 10 s) and end well before the next, so that write is never
            // counted: under valgrind a run catches one or none, and its statements'
            // work in the connection tasks is not separable from the requests'.
            let mut sent = 0;
            let mut chunk = 10usize.min(requests);
            while sent < requests {
                wait_for_flush(&su).await?;
                let n = chunk.min(requests - sent);
                let started = std::time::Instant::now();
                control(pid, &["-i", "on"])?;
                send(&mut conn, k, 1000 * (idx + 1) + sent, n).await?;
                control(pid, &["-i", "off"])?;
                sent += n;
                // Aim at about 5 s of instrumented requests per chunk.
                let per = started.elapsed().as_secs_f64() / n as f64;
                chunk = ((5.0 / per.max(1e-6)) as usize).clamp(1, 2000);
            }
            control(pid, &["-d", k.name])?;
            let file = latest_dump(out)?;
            let named = out.join(format!("callgrind.{}.out", k.name));
            std::fs::rename(&file, &named)?;
            let (ir, allocs, frees) = parse_counts(&named)?;
            let flusher = inclusive_of(&named, FLUSHER)?;
            let m = Measured {
                kind: k.name.to_string(),
                requests,
                ir,
                flusher,
                allocs,
                frees,
                self_top: annotate(&named, false, top)?,
                incl_top: annotate(&named, true, top)?,
            };
            eprintln!(
                "{}: {:.0} instructions/request (without the last_used writer), {:.1} allocations/request",
                k.name,
                (ir - flusher.min(ir)) as f64 / requests as f64,
                allocs as f64 / requests as f64
            );
            std::fs::write(
                out.join(format!("{}.annotate.txt", k.name)),
                format!("self:\n{}\ninclusive:\n{}", m.self_top, m.incl_top),
            )?;
            results.push(m);
        }
        anyhow::Ok(results)
    }
    .await;
    common::stop(&mut child, Duration::from_secs(30));
    result
}

/// One keep-alive HTTP/1.1 connection, written and read by hand. Hand-written because
/// the measurement needs exactly one connection for the whole run: a pooled client
/// (reqwest) opens a new one now and then when the previous one is not back in its pool
/// yet, and a new connection costs the server far more than a request (axum rebuilds the
/// router's service per connection), which would be counted as request cost.
struct Conn {
    stream: tokio::io::BufReader<tokio::net::TcpStream>,
    host: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> anyhow::Result<Self> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Self {
            stream: tokio::io::BufReader::new(stream),
            host: addr.to_string(),
        })
    }

    /// Sends one request and reads the whole response; returns its status.
    async fn request(
        &mut self,
        method: &str,
        path: &str,
        key: &str,
        body: Option<&str>,
    ) -> anyhow::Result<u16> {
        use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\nauthorization: Bearer {key}\r\n",
            self.host
        );
        if let Some(b) = body {
            req.push_str(&format!(
                "content-type: application/json\r\ncontent-length: {}\r\n\r\n{b}",
                b.len()
            ));
        } else {
            req.push_str("\r\n");
        }
        self.stream.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .with_context(|| format!("bad status line {line:?}"))?;
        let mut length = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("connection closed mid-response");
            }
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            let lower = l.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            } else if lower.starts_with("transfer-encoding:") {
                bail!("chunked responses are not handled by this client");
            } else if lower == "connection: close" {
                bail!("the server closed the connection");
            }
        }
        let mut body = vec![0u8; length.context("response without content-length")?];
        self.stream.read_exact(&mut body).await?;
        Ok(status)
    }
}

/// BENCH_TOOL=strace: the same requests to the server running natively, with `strace -f -c`
/// attached to all its threads for each kind's measured requests only; reports system calls
/// per request, in all and by call. System time per request (bench/run.sh) is mostly these.
async fn syscalls(cluster: &tenantguard::cluster::Cluster, out: &Path) -> anyhow::Result<String> {
    let requests: usize = env("BENCH_REQUESTS", 300usize).max(1);
    let warmup: usize = env("BENCH_WARMUP", 50usize);
    let tenants = common::seed(
        cluster,
        env("BENCH_TENANTS", 50usize).max(2),
        env("BENCH_PROJECTS", 100i32).max(2),
    )
    .await?;
    let wanted: Vec<String> = std::env::var("BENCH_KINDS")
        .unwrap_or_else(|_| KINDS.join(","))
        .split(',')
        .map(|s| s.trim().to_string())
        .collect();
    let addr = SocketAddr::from(([127, 0, 0, 1], common::free_port()?));
    let mut child = measured_server(cluster, addr, &[], out)?;
    let pid = child.id();
    let http = ready_client()?;
    let result = async {
        common::wait_ready(&http, addr, &mut child, Duration::from_secs(60)).await?;
        let su = common::connect(cluster.config(
            tenantguard::cluster::SUPERUSER,
            common::DB,
        ))
        .await?;
        let mut conn = Conn::open(addr).await?;
        let all = kinds(&tenants);
        for k in &all {
            send(&mut conn, k, 0, warmup.max(tenants.len())).await?;
        }
        let mut table = format!(
            "System calls per request ({requests} requests per kind, one keep-alive connection, \
             strace -f -c on the server's threads):\n\n| request | all | by call |\n|---|---:|---|\n"
        );
        for (idx, k) in all.iter().enumerate() {
            if !wanted.iter().any(|w| w == k.name) {
                continue;
            }
            wait_for_flush(&su).await?;
            let file = out.join(format!("strace.{}.txt", k.name));
            let mut strace = tokio::process::Command::new("strace")
                .args(["-f", "-c", "-qq", "-o"])
                .arg(&file)
                .arg("-p")
                .arg(pid.to_string())
                .kill_on_drop(true)
                .spawn()?;
            // strace has no "attached" signal: give it time to attach every thread.
            tokio::time::sleep(Duration::from_secs(1)).await;
            send(&mut conn, k, 1000 * (idx + 1), requests).await?;
            if let Some(spid) = strace.id() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(spid as i32),
                    nix::sys::signal::Signal::SIGINT,
                );
            }
            tokio::time::timeout(Duration::from_secs(30), strace.wait())
                .await
                .context("strace did not stop")??;
            let text = std::fs::read_to_string(&file)?;
            let (total, by) = parse_strace(&text);
            let n = requests as f64;
            let by: Vec<String> = by
                .iter()
                .filter(|(c, _)| *c as f64 / n >= 0.05)
                .map(|(c, name)| format!("{name} {:.2}", *c as f64 / n))
                .collect();
            eprintln!("{}: {:.2} system calls/request", k.name, total as f64 / n);
            table.push_str(&format!(
                "| {} | {:.2} | {} |\n",
                k.name,
                total as f64 / n,
                by.join(", ")
            ));
        }
        anyhow::Ok(table)
    }
    .await;
    common::stop(&mut child, Duration::from_secs(30));
    result
}

/// `strace -c`'s table: the total calls and (calls, name) per system call, most first.
/// The total is the sum of the rows (its own row's columns differ between versions).
fn parse_strace(text: &str) -> (u64, Vec<(u64, String)>) {
    let mut by = Vec::new();
    for line in text.lines() {
        // "% time  seconds  usecs/call  calls  [errors]  syscall"
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 5 || f[0].parse::<f64>().is_err() {
            continue;
        }
        let (Some(name), Some(calls)) = (f.last(), f.get(3).and_then(|v| v.parse::<u64>().ok()))
        else {
            continue;
        };
        if *name != "total" {
            by.push((calls, name.to_string()));
        }
    }
    by.sort_by_key(|b| std::cmp::Reverse(b.0));
    (by.iter().map(|b| b.0).sum(), by)
}

/// Waits until the server has just written its batched API key use (the newest
/// `last_used_at` changes), or 12 s (a flush with nothing pending writes nothing).
async fn wait_for_flush(su: &tokio_postgres::Client) -> anyhow::Result<()> {
    const NEWEST: &str = "SELECT coalesce(max(last_used_at)::text, '') FROM api_keys";
    let before: String = su.query_one(NEWEST, &[]).await?.get(0);
    let deadline = std::time::Instant::now() + Duration::from_secs(12);
    while std::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now: String = su.query_one(NEWEST, &[]).await?.get(0);
        if now != before {
            // Let the write's replies and the pool's return settle.
            tokio::time::sleep(Duration::from_millis(200)).await;
            return Ok(());
        }
    }
    Ok(())
}

/// Sends `count` requests of `kind` one after another, checking each status.
async fn send(conn: &mut Conn, kind: &Kind<'_>, offset: usize, count: usize) -> anyhow::Result<()> {
    for i in 0..count {
        let (post, path, key, want) = (kind.build)(offset + i);
        let body = format!(
            r#"{{"name":"bench {}","description":"made by the callgrind bench"}}"#,
            offset + i
        );
        let status = if post {
            conn.request("POST", &path, &key, Some(&body)).await?
        } else {
            conn.request("GET", &path, &key, None).await?
        };
        if status != want {
            bail!(
                "{} request {i}: status {status}, expected {want}",
                kind.name
            );
        }
    }
    Ok(())
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

fn control(pid: u32, args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("callgrind_control")
        .args(args)
        .arg(pid.to_string())
        .output()?;
    if !out.status.success() {
        bail!(
            "callgrind_control {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

/// The newest dump file (`callgrind.out.<n>`) in `dir`.
fn latest_dump(dir: &Path) -> anyhow::Result<PathBuf> {
    let mut best: Option<(u32, PathBuf)> = None;
    for e in std::fs::read_dir(dir)? {
        let p = e?.path();
        let Some(name) = p.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        if let Some(n) = name
            .strip_prefix("callgrind.out.")
            .and_then(|s| s.parse::<u32>().ok())
        {
            if best.as_ref().is_none_or(|(b, _)| n > *b) {
                best = Some((n, p.clone()));
            }
        }
    }
    best.map(|(_, p)| p).context("callgrind wrote no dump")
}

/// Total instructions (the `summary:` line) and the calls into the allocator, from a
/// callgrind file written with uncompressed names: every `calls=` line follows the
/// `cfn=` line that names its callee.
fn parse_counts(file: &Path) -> anyhow::Result<(u64, u64, u64)> {
    let text = std::fs::read_to_string(file)?;
    let mut ir = None;
    let mut callee = String::new();
    let mut calls: BTreeMap<String, u64> = BTreeMap::new();
    for line in text.lines() {
        // A dump's `summary:` can be 0 (written before the counts); `totals:` at the end
        // holds them. The larger of the two is the total.
        if let Some(v) = line
            .strip_prefix("summary:")
            .or_else(|| line.strip_prefix("totals:"))
        {
            let n: u64 = v
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            ir = Some(ir.unwrap_or(0).max(n));
        } else if let Some(v) = line.strip_prefix("cfn=") {
            callee = v.trim().to_string();
        } else if let Some(v) = line.strip_prefix("calls=") {
            let n: u64 = v
                .split_whitespace()
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            *calls.entry(callee.clone()).or_default() += n;
        }
    }
    let sum = |names: &[&str]| {
        names
            .iter()
            .map(|n| calls.get(*n).copied().unwrap_or(0))
            .sum()
    };
    // glibc's entry points, and mimalloc's as the binary's global allocator calls them
    // (src/main.rs; C code in the process may still call glibc's).
    let allocs = sum(&[
        "malloc",
        "calloc",
        "realloc",
        "posix_memalign",
        "aligned_alloc",
        "memalign",
        "mi_malloc_aligned",
        "mi_zalloc_aligned",
        "mi_realloc_aligned",
    ]);
    let frees = sum(&["free", "mi_free"]);
    Ok((
        ir.context("no summary line in the callgrind file")?,
        allocs,
        frees,
    ))
}

/// The server's background `last_used_at` writer, a named async fn so that its frame is
/// its own: it used to be a closure in `Application::run_until`, whose connection tasks
/// are closures of the same name, so "the writer's" inclusive cost was most of the
/// requests' own.
const FLUSHER: &str = "http::last_used_writer::{{closure}}";

/// Frames left out of the inclusive table (see [`annotate`]).
const WRAPPERS: &[&str] = &[
    "<axum::util::MapIntoResponseFuture",
    "<axum::routing::route::RouteFuture",
    "<tower::util::oneshot",
    "<futures_util::future::future::map",
    "<core::future::poll_fn",
    "tokio::runtime::",
    "<hyper_util::",
    "hyper::proto::h1::dispatch",
    "axum::serve::handle_connection",
    "<core::pin::Pin",
    "<tower::util::map_response",
    "<tower::util::map_future",
    "<futures_util::future::",
];

/// The largest inclusive cost of a function whose name ends with `suffix` (0 if none).
fn inclusive_of(file: &Path, suffix: &str) -> anyhow::Result<u64> {
    let out = Command::new("callgrind_annotate")
        .stderr(std::process::Stdio::null())
        .arg("--inclusive=yes")
        .arg("--threshold=100")
        .arg("--auto=no")
        .arg(file)
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter(|l| {
            l.split(" [")
                .next()
                .unwrap_or(l)
                .trim_end()
                .ends_with(suffix)
        })
        .filter_map(|l| {
            l.split_whitespace()
                .next()?
                .replace(',', "")
                .parse::<u64>()
                .ok()
        })
        .max()
        .unwrap_or(0))
}

/// The top `n` functions of a dump, by self or inclusive instructions.
fn annotate(file: &Path, inclusive: bool, n: usize) -> anyhow::Result<String> {
    let out = Command::new("callgrind_annotate")
        .stderr(std::process::Stdio::null())
        .arg(format!(
            "--inclusive={}",
            if inclusive { "yes" } else { "no" }
        ))
        .arg("--threshold=100")
        .arg("--auto=no")
        .arg(file)
        .output()?;
    if !out.status.success() {
        bail!(
            "callgrind_annotate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let total: f64 = text
        .lines()
        .find(|l| l.contains("PROGRAM TOTALS"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|c| c.replace(',', "").parse().ok())
        .unwrap_or(0.0);
    // The function table follows the line "Ir  file:function" and its dashes.
    let mut lines = text.lines().skip_while(|l| !l.contains("file:function"));
    let _ = lines.next();
    // A function appears once per source file its inlined code came from: self costs are
    // summed over those, inclusive costs taken once (the largest).
    let mut costs: Vec<(u64, String)> = Vec::new();
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for l in lines {
        let l = l.trim();
        if l.starts_with("--") {
            continue;
        }
        // The table ends at its first blank line (annotated sources may follow).
        if l.is_empty() {
            if costs.is_empty() {
                continue;
            }
            break;
        }
        let short = shorten(l);
        let mut parts = short.splitn(3, ' ');
        let count: u64 = parts
            .next()
            .unwrap_or("")
            .replace(',', "")
            .parse()
            .unwrap_or(0);
        let func = parts.nth(1).unwrap_or("").to_string();
        // Inclusive costs: the runtime, hyper and the tower/axum future adapters wrap
        // everything and say nothing.
        if inclusive && (WRAPPERS.iter().any(|w| func.starts_with(w)) || func.ends_with("'2")) {
            continue;
        }
        match index.get(&func) {
            Some(&i) if !inclusive => costs[i].0 += count,
            Some(_) => {}
            None => {
                index.insert(func.clone(), costs.len());
                costs.push((count, func));
            }
        }
    }
    costs.sort_by_key(|c| std::cmp::Reverse(c.0));
    Ok(costs
        .iter()
        .take(n)
        .map(|(c, f)| {
            let pct = if total > 0.0 {
                *c as f64 / total * 100.0
            } else {
                0.0
            };
            format!("{c} {pct:.2}% {f}")
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// `<count> (<pct>)  <file>:<function> [<object>]` as `<count> <pct> <function>`: the
/// file path and object are dropped.
fn shorten(line: &str) -> String {
    let (count, rest) = line.split_once(' ').unwrap_or((line, ""));
    let rest = rest.trim();
    let (pct, rest) = match rest.strip_prefix('(').and_then(|r| r.split_once(')')) {
        Some((p, r)) => (p.trim(), r.trim()),
        None => ("", rest),
    };
    let rest = rest.split(" [").next().unwrap_or(rest);
    // The file part ends at the first ':' that is not part of a Rust path ("::").
    let bytes = rest.as_bytes();
    let mut cut = 0;
    for i in 0..bytes.len() {
        if bytes[i] == b':' && bytes.get(i + 1) != Some(&b':') && (i == 0 || bytes[i - 1] != b':') {
            cut = i + 1;
            break;
        }
    }
    format!("{count} {pct} {}", truncate(&rest[cut..], 150))
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(n).collect::<String>())
    }
}

fn summary(results: &[Measured]) -> String {
    let mut s = String::new();
    s.push_str("| request | instructions/request | last_used writer (excluded) | allocations/request | frees/request |\n|---|---:|---:|---:|---:|\n");
    for m in results {
        let n = m.requests as f64;
        s.push_str(&format!(
            "| {} | {:.0} | {:.0} | {:.1} | {:.1} |\n",
            m.kind,
            (m.ir - m.flusher.min(m.ir)) as f64 / n,
            m.flusher as f64 / n,
            m.allocs as f64 / n,
            m.frees as f64 / n
        ));
    }
    for m in results {
        let n = m.requests as f64;
        let per = |block: &str| {
            block
                .lines()
                .map(|l| {
                    let mut parts = l.splitn(3, ' ');
                    let c: f64 = parts
                        .next()
                        .unwrap_or("")
                        .replace(',', "")
                        .parse()
                        .unwrap_or(0.0);
                    let pct = parts.next().unwrap_or("");
                    let f = parts.next().unwrap_or("");
                    format!("{:>9.0} {pct:>7}  {f}", c / n)
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        s.push_str(&format!(
            "\n### {} ({} requests): instructions per request, top functions\n\nself:\n```\n{}\n```\ninclusive:\n```\n{}\n```\n",
            m.kind,
            m.requests,
            per(&m.self_top),
            per(&m.incl_top)
        ));
    }
    s
}

/// The server as both measurements run it, under `wrapper` (valgrind, or nothing).
fn measured_server(
    cluster: &tenantguard::cluster::Cluster,
    addr: SocketAddr,
    wrapper: &[String],
    out: &Path,
) -> anyhow::Result<std::process::Child> {
    // The key cache outlives the run, so every kind measures the cached path (the 401's
    // wrong keys are never cached): with the default 5 s, valgrind's slowness would turn
    // a few lookups per 5 s into a share of requests that production never sees.
    common::spawn_server(
        cluster,
        addr,
        wrapper,
        &[
            ("TENANTGUARD_KEY_CACHE_SECS", "3600"),
            // One keep-alive connection waits between chunks (see the measuring loop): past the
            // header-read timeout the server would close it. The rate limits stay on (their
            // cost is part of a request's) but far above what the client sends.
            ("TENANTGUARD_HEADER_READ_TIMEOUT_SECS", "3600"),
            ("TENANTGUARD_TENANT_RATE", "1000000"),
            ("TENANTGUARD_KEY_RATE", "1000000"),
        ],
        &out.join("server.log"),
    )
}

/// The client that waits for the server to be ready (the measured requests use their own).
fn ready_client() -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()?)
}
