//! Benchmarks of `probe http` and `probe plans` (run: `cargo bench --bench probe`).
//!
//! - `probe http` against the reference server (two fresh tenants per round, no rate
//!   limit): requests sent and wall time for the full matrix, BENCH_ROUNDS rounds (3).
//! - `probe plans` on 1,000 normalized statements (`$n` placeholders) over 200 tenant
//!   tables with RLS, planned for two tenants: wall time, BENCH_PLAN_ROUNDS rounds (3).
//!
//! Uses the test support's throwaway PostgreSQL. Figures are medians of the rounds; the
//! machine is shared, so read them as orders of magnitude.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use secrecy::SecretString;
use tenantguard::http::{AppState, Application, HttpConfig};
use tenantguard::probe::http::{self, Credentials, HttpProbeConfig, Limits};
use tenantguard::probe::plans::{self, PlansConfig, Source};
use tenantguard::testing::TestDb;

const ADMIN_TOKEN: &str = "bench-probe-admin-token-0123456789";

fn rounds(var: &str) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn bench_http() -> anyhow::Result<()> {
    let db = TestDb::new().await;
    let state = AppState::new(
        db.app_pool(8).await,
        Some(db.admin_pool().await),
        HttpConfig {
            admin_token: Some(SecretString::from(ADMIN_TOKEN.to_string())),
            ..HttpConfig::default()
        },
    )?;
    let app = Application::bind(SocketAddr::from(([127, 0, 0, 1], 0)), state).await?;
    let base = format!("http://{}", app.local_addr()?);
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    let token = SecretString::from(ADMIN_TOKEN.to_string());
    let mut times = Vec::new();
    let mut requests = Vec::new();
    for round in 0..rounds("BENCH_ROUNDS") {
        let a = http::provision(&base, &token, &format!("bench A {round}")).await?;
        let b = http::provision(&base, &token, &format!("bench B {round}")).await?;
        let placeholder = Credentials::parse("X-Placeholder: 1", "placeholder")?;
        let mut cfg = HttpProbeConfig::new(&base, placeholder.clone(), placeholder);
        cfg.tenant_a = a.credentials;
        cfg.tenant_b = b.credentials;
        cfg.tenant_a_id = Some(a.id);
        cfg.tenant_b_id = Some(b.id);
        cfg.limits = Limits {
            max_requests: 10_000,
            rate: 0.0,
            timeout: Duration::from_secs(30),
            allow_writes: false,
        };
        let started = Instant::now();
        let report = http::probe_http(&cfg).await?;
        let secs = started.elapsed().as_secs_f64();
        let t = report.tally();
        println!(
            "probe http round {round}: {} requests, {secs:.2} s, {:.0} requests/s, {} cells attacked, {} findings, status {:?}",
            report.requests,
            report.requests as f64 / secs,
            t.attacked(),
            t.findings(),
            report.status()
        );
        times.push(secs);
        requests.push(report.requests as f64);
    }
    println!(
        "probe http (reference server, full matrix): median {} requests, median {:.2} s",
        median(requests),
        median(times)
    );
    let _ = tx.send(());
    let _ = server.await;
    Ok(())
}

async fn bench_plans() -> anyhow::Result<()> {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let mut setup =
        String::from("CREATE SCHEMA bp; GRANT USAGE ON SCHEMA bp TO tenantguard_app;\n");
    setup.push_str(
        "CREATE TEMP TABLE ts AS SELECT gen_random_uuid() AS t, g FROM generate_series(0, 19) g;\n",
    );
    for i in 0..200 {
        setup.push_str(&format!(
            "CREATE TABLE bp.t{i:03} (tenant_id uuid NOT NULL, id bigint NOT NULL, parent_id bigint, name text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (tenant_id, id));
             CREATE INDEX ON bp.t{i:03} (tenant_id, parent_id);
             CREATE INDEX ON bp.t{i:03} (tenant_id, created_at);
             INSERT INTO bp.t{i:03} (tenant_id, id, parent_id, name) SELECT (SELECT t FROM ts WHERE g = n % 20), n, n / 10, 'n' || n FROM generate_series(1, 500) n;
             ALTER TABLE bp.t{i:03} ENABLE ROW LEVEL SECURITY, FORCE ROW LEVEL SECURITY;
             CREATE POLICY tenant ON bp.t{i:03} TO tenantguard_app USING (tenant_id = (SELECT tenantguard.current_tenant_id()));
             GRANT SELECT, UPDATE ON bp.t{i:03} TO tenantguard_app;\n"
        ));
    }
    setup.push_str("ANALYZE;");
    su.batch_execute(&setup).await?;
    let mut statements = Vec::new();
    for i in 0..200 {
        let j = (i + 1) % 200;
        statements.push(format!("SELECT * FROM bp.t{i:03} WHERE id = $1"));
        statements.push(format!(
            "SELECT * FROM bp.t{i:03} WHERE parent_id = $1 ORDER BY created_at DESC LIMIT $2"
        ));
        statements.push(format!("SELECT count(*) FROM bp.t{i:03} WHERE name = $1"));
        statements.push(format!("UPDATE bp.t{i:03} SET name = $1 WHERE id = $2"));
        statements.push(format!("SELECT a.id FROM bp.t{i:03} a JOIN bp.t{j:03} b ON b.tenant_id = a.tenant_id AND b.parent_id = a.id WHERE a.id = $1"));
    }
    let config = PlansConfig {
        source: Source::Given(statements),
        ..PlansConfig::default()
    };
    let mut times = Vec::new();
    for round in 0..rounds("BENCH_PLAN_ROUNDS") {
        let mut client = db.superuser().await;
        let started = Instant::now();
        let report = plans::probe_plans(&mut client, &config).await?;
        let secs = started.elapsed().as_secs_f64();
        println!(
            "probe plans round {round}: {} statements, {} plans for {} tenants, {} findings, {} not planned, {secs:.2} s ({:.0} plans/s)",
            report.statements.len(),
            report.planned(),
            report.tenants.len(),
            report.findings.len(),
            report.unplanned().len(),
            report.planned() as f64 / secs
        );
        times.push(secs);
    }
    println!(
        "probe plans (1,000 normalized statements over 200 tables, 2 tenants): median {:.2} s",
        median(times)
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        bench_http().await?;
        bench_plans().await
    })
}
