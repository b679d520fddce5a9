//! `tenantguard dev`: everything locally, from nothing. Starts the private PostgreSQL kept
//! under `./.tenantguard/` (reused across runs), migrates, seeds three demo tenants once,
//! prints their API keys, an admin token and curl lines, and serves until Ctrl-C; then
//! lets in-flight requests finish and stops PostgreSQL cleanly.
//!
//! The demo keys are stored in `.tenantguard/dev.json` (mode 0600) so later runs can print
//! them again; the database keeps only their hashes, as in production.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use super::serve::{connect_pools, shutdown_signal, LogFormat, ServerArgs};
use super::RoleArgs;
use crate::cluster::{Cluster, ClusterOptions, Durability, SUPERUSER};
use crate::http::{AppState, Application};
use crate::seed::DemoTenant;

/// The database `dev` creates in its cluster.
const DATABASE: &str = "tenantguard";

/// Arguments of `tenantguard dev`.
#[derive(Debug, clap::Args)]
#[command(after_help = super::serve::SECRETS_HELP)]
pub struct DevArgs {
    /// Where the private PostgreSQL and the demo keys live.
    #[arg(long, env = "TENANTGUARD_DEV_DIR", default_value = ".tenantguard")]
    pub dir: PathBuf,
    #[command(flatten)]
    pub server: ServerArgs,
    #[command(flatten)]
    pub roles: RoleArgs,
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct DevState {
    admin_token: Option<String>,
    tenants: Vec<DemoTenant>,
}

fn state_path(dir: &Path) -> PathBuf {
    dir.join("dev.json")
}

fn load_state(dir: &Path) -> anyhow::Result<DevState> {
    match std::fs::read(state_path(dir)) {
        Ok(bytes) => serde_json::from_slice(&bytes).context("reading .tenantguard/dev.json"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(DevState::default()),
        Err(e) => Err(e).context("reading .tenantguard/dev.json"),
    }
}

fn save_state(dir: &Path, state: &DevState) -> anyhow::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = state_path(dir);
    let tmp = path.with_extension("json.tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("writing {}", tmp.display()))?;
    f.write_all(&serde_json::to_vec_pretty(state)?)?;
    f.sync_all()?;
    std::fs::rename(&tmp, &path)?;
    Ok(())
}

pub(crate) async fn run(args: DevArgs) -> anyhow::Result<ExitCode> {
    crate::telemetry::init_tracing(args.server.log_format == LogFormat::Json);
    let set = args.roles.policy();
    set.validate()?;
    std::fs::create_dir_all(&args.dir)
        .with_context(|| format!("creating {}", args.dir.display()))?;

    eprintln!("starting PostgreSQL under {} …", args.dir.display());
    let dir = args.dir.clone();
    let cluster = tokio::task::spawn_blocking(move || {
        Cluster::start(&ClusterOptions {
            base_dir: Some(dir),
            durability: Durability::Durable,
            ..ClusterOptions::default()
        })
    })
    .await??;

    let result = serve(&args, &set, &cluster).await;
    // Pools are gone by now; stop PostgreSQL cleanly (fast shutdown writes a checkpoint).
    tokio::task::spawn_blocking(move || drop(cluster)).await?;
    eprintln!("PostgreSQL stopped");
    result
}

async fn serve(
    args: &DevArgs,
    set: &crate::policy::PolicySet,
    cluster: &Cluster,
) -> anyhow::Result<ExitCode> {
    let admin_client = super::connect(&cluster.url(SUPERUSER, "postgres")).await?;
    let exists = admin_client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = $1", &[&DATABASE])
        .await?
        .is_some();
    if !exists {
        admin_client
            .batch_execute(&format!(
                "CREATE DATABASE {}",
                crate::policy::ident(DATABASE)
            ))
            .await?;
    }
    drop(admin_client);
    let mut su = super::connect(&cluster.url(SUPERUSER, DATABASE)).await?;
    let report = crate::schema::migrate_with(&mut su, set, &args.roles.provisioner_role).await?;
    for m in &report.migrations {
        eprintln!("applied migration {m}");
    }
    let tenant_count: i64 = su
        .query_one("SELECT count(*) FROM tenants", &[])
        .await?
        .get(0);
    drop(su);

    let mut dev = load_state(&args.dir)?;
    let admin_token: SecretString = match crate::secrets::from_env("TENANTGUARD_ADMIN_TOKEN")? {
        Some(t) => t,
        None => {
            let t = dev.admin_token.clone().unwrap_or_else(|| {
                let mut b = [0u8; 24];
                rand::rngs::OsRng.fill_bytes(&mut b);
                format!("tga_{}", hex::encode(b))
            });
            dev.admin_token = Some(t.clone());
            SecretString::from(t)
        }
    };
    let mut config = args.server.http_config()?;
    config.admin_token = Some(admin_token.clone());

    let (pool, admin) = connect_pools(
        cluster.config(&args.roles.app_role, DATABASE),
        Some(cluster.config(&args.roles.admin_role, DATABASE)),
        &args.server,
        &args.roles.tenant_setting,
    )
    .await?;
    if tenant_count == 0 {
        let admin = admin.as_ref().context("the admin pool is needed to seed")?;
        dev.tenants = crate::seed::seed_demo(admin, &pool).await?;
        eprintln!("seeded {} demo tenants", dev.tenants.len());
    } else if dev.tenants.is_empty() {
        eprintln!(
            "note: the database has tenants but {} is missing, so their keys cannot be shown; \
             delete {} to start over",
            state_path(&args.dir).display(),
            args.dir.display()
        );
    }
    save_state(&args.dir, &dev)?;

    let state = AppState::new(pool, admin, config)?;
    let app = Application::bind(args.server.listen, state)
        .await
        .with_context(|| format!("binding {}", args.server.listen))?;
    let addr = app.local_addr()?;
    print_banner(&addr.to_string(), &dev.tenants, admin_token.expose_secret());
    app.run_until(shutdown_signal()).await?;
    Ok(ExitCode::SUCCESS)
}

fn print_banner(addr: &str, tenants: &[DemoTenant], admin_token: &str) {
    let base = format!("http://{addr}");
    let mut out = String::new();
    out.push_str("\ntenantguard dev is running.\n\n");
    for t in tenants {
        out.push_str(&format!(
            "tenant {} ({})\n  API key: {}\n",
            t.name, t.id, t.api_key
        ));
    }
    out.push_str(&format!("admin token: {admin_token}\n\ntry:\n"));
    if let Some(t) = tenants.first() {
        out.push_str(&format!(
            "  curl -s -H 'Authorization: Bearer {}' {base}/v1/projects\n",
            t.api_key
        ));
        out.push_str(&format!(
            "  curl -s -H 'Authorization: Bearer {}' '{base}/v1/tasks?status=todo&limit=5'\n",
            t.api_key
        ));
        out.push_str(&format!(
            "  curl -s -X POST -H 'Authorization: Bearer {}' -H 'Content-Type: application/json' -d '{{\"name\":\"From curl\"}}' {base}/v1/projects\n",
            t.api_key
        ));
    }
    out.push_str(&format!(
        "  curl -s -H 'Authorization: Bearer {admin_token}' {base}/admin/v1/stats/projects\n"
    ));
    out.push_str(&format!(
        "  curl -s {base}/openapi.json\n\nready: {base} (Ctrl-C to stop)\n"
    ));
    print!("{out}");
    let _ = std::io::stdout().flush();
}
