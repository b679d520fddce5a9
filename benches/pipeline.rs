//! What protocol pipelining could buy the per-request tenant transaction, and where the
//! cost of tenant context goes, measured with `pgbench` (it has libpq's pipeline mode;
//! tokio-postgres 0.7 ends every request with its own Sync, so this cannot be measured
//! through it).
//!
//! `cargo bench --bench pipeline` (env: BENCH_SECONDS per run, default 5; BENCH_CLIENTS,
//! default 16; BENCH_ROUNDS, default 3: every variant runs that many times, interleaved,
//! and the median is reported). Starts its own throwaway PostgreSQL with the reference
//! schema, 400 tenants × 25 projects, and runs one point read per transaction, as ratios
//! against the explicit filter:
//!
//! - `explicit`: one statement as a BYPASSRLS role, `WHERE tenant_id = … AND id = …`.
//! - `explicit-pipe`: the same inside `\startpipeline … \endpipeline` (the framing of the
//!   variants below, which need it to share one Sync).
//! - `explicit+select1`: plus a `SELECT 1` under the same Sync: what a second Bind/Execute
//!   costs by itself.
//! - `explicit+set_config`: plus `SELECT set_config('app.tenant_id', …, true)` instead:
//!   a second statement that also sets a transaction-local setting (which PostgreSQL 15
//!   undoes at commit by visiting every setting it has).
//! - `rls-implicit`: what a read-only `TenantTx` sends: set_config and the SELECT without
//!   a tenant filter, as the app role under RLS, under one Sync and no BEGIN/COMMIT.
//!   PostgreSQL runs messages up to a Sync as one implicit transaction, so the `is_local`
//!   setting applies to the SELECT and dies at the Sync.
//! - `rls-tenanttx-read`: the same with `transaction_read_only` set in the same statement,
//!   as `TenantPool::begin_read_only` sends it.
//! - `rls-one-sync`: BEGIN; set_config; SELECT; COMMIT under one Sync.
//! - `rls-sync-each`: the same four with a Sync after each (what a driver without pipeline
//!   mode sends, even when the round trips are pipelined).
//!
//! Before timing, it checks the semantics `rls-implicit` relies on: with set_config in the
//! same Sync group the row is visible; without it, the same SELECT sees nothing.
//!
//! BENCH_VARIANTS (comma-separated names) runs only those (and `explicit`).
//!
//! Each row also gives the server's CPU time per transaction (postmaster and backends, from
//! /proc), which compares across PostgreSQL versions run on the same machine. PG_BIN picks
//! the server; PGBENCH the client (default: next to postgres, else Debian's newest), since
//! server-only builds have none. `bench/versions.sh` runs this on several versions,
//! interleaved.

use std::path::{Path, PathBuf};
use std::process::Command;

use tenantguard::cluster::{Binaries, Cluster, ClusterOptions, Durability, SUPERUSER};
use tokio_postgres::NoTls;

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let clients: u32 = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let bins = Binaries::locate().expect("PostgreSQL binaries");
    // Server builds without client programs (the npm packages CI uses for 16–18) have no
    // pgbench: PGBENCH names one, else a Debian one is used (any pgbench 14+ speaks the
    // protocol and pipeline mode of every newer server).
    let pgbench = std::env::var_os("PGBENCH")
        .map(PathBuf::from)
        .or_else(|| Some(bins.program("pgbench")).filter(|p| p.is_file()))
        .or_else(|| {
            let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
                .ok()?
                .flatten()
                .map(|e| e.path().join("bin/pgbench"))
                .filter(|p| p.is_file())
                .collect();
            found.sort();
            found.pop()
        })
        .expect("pgbench not found: set PGBENCH, or install PostgreSQL's client programs");
    assert!(pgbench.is_file(), "{} is not a file", pgbench.display());
    let cluster = Cluster::start(&ClusterOptions {
        durability: Durability::Throwaway,
        ..ClusterOptions::default()
    })
    .expect("start PostgreSQL");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (tenant, project) = rt.block_on(async {
        let (mut su, conn) = cluster
            .config(SUPERUSER, "postgres")
            .connect(NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        tenantguard::schema::migrate(&mut su, &tenantguard::testing::policy())
            .await
            .expect("migrate");
        su.batch_execute(
            "INSERT INTO tenants (name) SELECT 't' || g FROM generate_series(1, 400) g;
             INSERT INTO projects (tenant_id, name)
               SELECT t.id, 'p' || g FROM tenants t, generate_series(1, 25) g;
             ANALYZE;",
        )
        .await
        .expect("seed");
        let row = su
            .query_one(
                "SELECT tenant_id::text, id::text FROM projects ORDER BY id LIMIT 1",
                &[],
            )
            .await
            .expect("target");
        (row.get::<_, String>(0), row.get::<_, String>(1))
    });

    let dir = tempfile::tempdir().expect("tempdir");
    let select = |filter: &str| {
        format!("SELECT id, name, description, created_at FROM projects WHERE {filter};\n")
    };
    let set = format!("SELECT set_config('app.tenant_id', '{tenant}', true);\n");
    let set_ro = format!(
        "SELECT set_config('app.tenant_id', '{tenant}', true), set_config('transaction_read_only', 'on', true);\n"
    );
    let explicit_select = select(&format!("tenant_id = '{tenant}' AND id = '{project}'"));
    let rls_select = select(&format!("id = '{project}'"));
    let pipe = |body: String| format!("\\startpipeline\n{body}\\endpipeline\n");
    let scripts = [
        ("explicit", "tenantguard_admin", explicit_select.clone()),
        (
            "explicit-pipe",
            "tenantguard_admin",
            pipe(explicit_select.clone()),
        ),
        (
            "explicit+select1",
            "tenantguard_admin",
            pipe(format!("SELECT 1;\n{explicit_select}")),
        ),
        (
            "explicit+set_config",
            "tenantguard_admin",
            pipe(format!("{set}{explicit_select}")),
        ),
        (
            "rls-implicit",
            "tenantguard_app",
            pipe(format!("{set}{rls_select}")),
        ),
        (
            // Exactly what `TenantPool::begin_read_only` sends: also read-only.
            "rls-tenanttx-read",
            "tenantguard_app",
            pipe(format!("{set_ro}{rls_select}")),
        ),
        (
            "rls-one-sync",
            "tenantguard_app",
            pipe(format!("BEGIN READ ONLY;\n{set}{rls_select}COMMIT;\n")),
        ),
        (
            "rls-sync-each",
            "tenantguard_app",
            format!("BEGIN READ ONLY;\n{set}{rls_select}COMMIT;\n"),
        ),
    ];
    // BENCH_VARIANTS=explicit,rls-implicit runs a subset (for profiling one variant);
    // `explicit` always runs first: it is the base of the ratios.
    let only: Option<Vec<String>> = std::env::var("BENCH_VARIANTS")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    let scripts: Vec<_> = scripts
        .into_iter()
        .filter(|(name, _, _)| {
            *name == "explicit" || only.as_ref().is_none_or(|o| o.iter().any(|n| n == name))
        })
        .collect();

    // The semantics `rls-implicit` relies on: 1/count(*) fails when the row is invisible.
    let probe = |with_set: bool| {
        let body = format!(
            "\\startpipeline\n{}SELECT 1/count(*) FROM projects WHERE id = '{project}';\n\\endpipeline\n",
            if with_set { set.as_str() } else { "SELECT 1;\n" }
        );
        run(
            &pgbench,
            &cluster,
            dir.path(),
            "probe",
            "tenantguard_app",
            &body,
            &["-t", "20", "-c", "1"],
        )
    };
    assert!(
        probe(true).is_some(),
        "with set_config in the Sync group the row must be visible"
    );
    assert!(
        probe(false).is_none(),
        "without set_config the row must be invisible"
    );
    println!("checked: set_config(…, true) and the SELECT share one implicit transaction per Sync; without it the row is invisible");

    let secs = seconds.to_string();
    let c = clients.to_string();
    println!(
        "PostgreSQL {} from {}, {}",
        rt.block_on(server_version(&cluster)),
        bins.dir().display(),
        pgbench.display()
    );
    println!(
        "pgbench -M prepared -c {clients} -j 1 -T {seconds}, {rounds} interleaved rounds (median); one point read per transaction"
    );
    let mut tps: Vec<Vec<(f64, f64)>> = vec![Vec::new(); scripts.len()];
    for _ in 0..rounds {
        for ((name, user, body), runs) in scripts.iter().zip(&mut tps) {
            let t = run(
                &pgbench,
                &cluster,
                dir.path(),
                name,
                user,
                body,
                &["-T", &secs, "-c", &c, "-j", "1"],
            )
            .unwrap_or_else(|| panic!("{name} failed"));
            runs.push(t);
        }
    }
    let median = |runs: &[(f64, f64)], f: fn(&(f64, f64)) -> f64| {
        let mut v: Vec<f64> = runs.iter().map(f).collect();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let base = median(&tps[0], |r| r.0);
    println!(
        "{:<20} {:>10} {:>8} {:>12}   runs",
        "variant", "tps", "ratio", "server µs/tx"
    );
    for ((name, _, _), runs) in scripts.iter().zip(&tps) {
        let m = median(runs, |r| r.0);
        let all: Vec<String> = runs.iter().map(|t| format!("{:.0}", t.0)).collect();
        println!(
            "{name:<20} {m:>10.0} {:>7.2}x {:>12.1}   {}",
            m / base,
            median(runs, |r| r.1),
            all.join(" ")
        );
    }
}

/// CPU seconds (user + system) of the postmaster, its reaped children and its live ones
/// (the backends), from /proc: the server's side of a run. Hand-written: a dozen lines of
/// /proc parsing for a benchmark.
fn server_cpu_seconds(postmaster: u32) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    // Fields after the command name's closing parenthesis: ppid is 1, utime 11, stime 12,
    // cutime 13, cstime 14.
    let stat = |pid: &str| -> Option<(u32, Vec<f64>)> {
        let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let f: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
        let ticks = (11..=14)
            .map(|i| f.get(i).and_then(|v| v.parse::<f64>().ok()))
            .collect::<Option<Vec<f64>>>()?;
        Some((f.get(1)?.parse().ok()?, ticks))
    };
    let mut total = stat(&postmaster.to_string())
        .map(|(_, t)| t.iter().sum::<f64>())
        .unwrap_or(0.0);
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        if let Some((ppid, t)) = stat(pid) {
            if ppid == postmaster {
                total += t[0] + t[1];
            }
        }
    }
    total / tick
}

/// Runs one pgbench script; the tps and the server's CPU µs per transaction, or `None` if
/// any client aborted.
fn run(
    pgbench: &Path,
    cluster: &Cluster,
    dir: &Path,
    name: &str,
    user: &str,
    body: &str,
    args: &[&str],
) -> Option<(f64, f64)> {
    let file = dir.join(format!("{name}.sql"));
    std::fs::write(&file, body).expect("write script");
    let before = server_cpu_seconds(cluster.pid());
    let out = Command::new(pgbench)
        .args(["-n", "-M", "prepared", "-h"])
        .arg(cluster.socket_dir())
        .args(["-p", &cluster.port().to_string(), "-U", user, "-f"])
        .arg(&file)
        .args(args)
        .arg("postgres")
        .output()
        .expect("run pgbench");
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() || err.contains("aborted") {
        return None;
    }
    // The backends exit after pgbench disconnects; give the postmaster a moment to reap them.
    std::thread::sleep(std::time::Duration::from_millis(200));
    let cpu = server_cpu_seconds(cluster.pid()) - before;
    let tx: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("number of transactions actually processed:"))
        .and_then(|v| v.split('/').next())
        .and_then(|v| v.trim().parse().ok())?;
    let tps = text
        .lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())?;
    Some((tps, cpu / tx.max(1.0) * 1e6))
}

/// The server's version string, for the report (runs on several versions).
async fn server_version(cluster: &Cluster) -> String {
    let (su, conn) = cluster
        .config(SUPERUSER, "postgres")
        .connect(NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    su.query_one("SHOW server_version", &[])
        .await
        .expect("server_version")
        .get(0)
}
