//! What protocol pipelining could buy the per-request tenant transaction, measured with
//! `pgbench` (it has libpq's pipeline mode; tokio-postgres 0.7 ends every request with its
//! own Sync, so this cannot be measured through it).
//!
//! `cargo bench --bench pipeline` (env: BENCH_SECONDS, default 8; BENCH_CLIENTS, default 16).
//! Starts its own throwaway PostgreSQL with the reference schema, 400 tenants × 25 projects,
//! and runs one point read per transaction, as ratios against the explicit filter:
//!
//! - `explicit`: one statement as a BYPASSRLS role, `WHERE tenant_id = … AND id = …`.
//! - `rls-sync-each`: BEGIN; set_config; SELECT; COMMIT — a Sync after each (what a driver
//!   without pipeline mode sends, even when the round trips are pipelined).
//! - `rls-one-sync`: the same four statements under one Sync.
//! - `rls-implicit`: set_config and SELECT under one Sync and no BEGIN/COMMIT: PostgreSQL
//!   runs messages up to a Sync as one implicit transaction, so the `is_local` setting
//!   applies to the SELECT and dies at the Sync.
//!
//! Before timing, it checks the semantics the last variant relies on: with set_config in
//! the same Sync group the row is visible; without it, the same SELECT sees nothing.

use std::path::Path;
use std::process::Command;

use tenantguard::cluster::{Binaries, Cluster, ClusterOptions, Durability, SUPERUSER};
use tokio_postgres::NoTls;

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(8);
    let clients: u32 = std::env::var("BENCH_CLIENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(16);
    let bins = Binaries::locate().expect("PostgreSQL binaries");
    let pgbench = bins.program("pgbench");
    assert!(pgbench.is_file(), "pgbench not found next to postgres");
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
    let scripts = [
        (
            "explicit",
            "tenantguard_admin",
            select(&format!("tenant_id = '{tenant}' AND id = '{project}'")),
        ),
        (
            "rls-sync-each",
            "tenantguard_app",
            format!(
                "BEGIN READ ONLY;\n{set}{}COMMIT;\n",
                select(&format!("id = '{project}'"))
            ),
        ),
        (
            "rls-one-sync",
            "tenantguard_app",
            format!(
                "\\startpipeline\nBEGIN READ ONLY;\n{set}{}COMMIT;\n\\endpipeline\n",
                select(&format!("id = '{project}'"))
            ),
        ),
        (
            "rls-implicit",
            "tenantguard_app",
            format!(
                "\\startpipeline\n{set}{}\\endpipeline\n",
                select(&format!("id = '{project}'"))
            ),
        ),
    ];

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
    println!("pgbench -M prepared -c {clients} -j 2 -T {seconds}; one point read per transaction");
    println!("{:<16} {:>10} {:>8}", "variant", "tps", "ratio");
    let mut base = None;
    for (name, user, body) in &scripts {
        let tps = run(
            &pgbench,
            &cluster,
            dir.path(),
            name,
            user,
            body,
            &["-T", &secs, "-c", &c, "-j", "2"],
        )
        .unwrap_or_else(|| panic!("{name} failed"));
        let b = *base.get_or_insert(tps);
        println!("{name:<16} {tps:>10.0} {:>7.2}x", tps / b);
    }
}

/// Runs one pgbench script; the tps, or `None` if any client aborted.
fn run(
    pgbench: &Path,
    cluster: &Cluster,
    dir: &Path,
    name: &str,
    user: &str,
    body: &str,
    args: &[&str],
) -> Option<f64> {
    let file = dir.join(format!("{name}.sql"));
    std::fs::write(&file, body).expect("write script");
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
    text.lines()
        .find(|l| l.starts_with("tps"))
        .and_then(|l| l.split_whitespace().nth(2))
        .and_then(|v| v.parse().ok())
}
