//! The command-line interface: one module per subcommand, each a thin layer over the
//! library. Exit codes: 0 success, 1 a finding or difference (`audit`, `probe`,
//! `migrate --check`), 2 a usage, configuration or connection error.

mod audit;
mod dev;
mod migrate;
mod probe;
mod probe_http;
mod probe_plans;
mod rls;
mod serve;

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::policy::Roles;

/// Structural tenant isolation for multi-tenant SaaS on PostgreSQL Row-Level Security.
#[derive(Debug, Parser)]
#[command(name = "tenantguard", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Debug, Subcommand)]
enum Commands {
    /// Run everything locally: a private PostgreSQL under ./.tenantguard, migrated and
    /// seeded with demo tenants, and the API server on 127.0.0.1:8080.
    Dev(dev::DevArgs),
    /// Run the API server against existing databases (production).
    Serve(serve::ServeArgs),
    /// Apply the reference schema, roles, grants and RLS policies (idempotent), or with
    /// --check report every difference and exit 1 if there is any.
    Migrate(migrate::MigrateArgs),
    /// Bring an existing database's tables under tenant RLS policies from a TOML file.
    Rls(rls::RlsArgs),
    /// Read the catalogs and report every way tenant isolation can fail.
    Audit(audit::AuditArgs),
    /// Attack the database (inside rolled-back transactions) to prove isolation holds;
    /// `probe http` attacks an API from outside, `probe plans` checks the workload's plans.
    Probe(probe::ProbeCommand),
}

/// Role and setting names shared by `dev`, `serve` and `migrate`.
#[derive(Debug, Clone, Args)]
pub struct RoleArgs {
    /// NOLOGIN role that owns every object.
    #[arg(
        long,
        env = "TENANTGUARD_OWNER_ROLE",
        default_value = "tenantguard_owner"
    )]
    pub owner_role: String,
    /// The application's role (subject to RLS).
    #[arg(long, env = "TENANTGUARD_APP_ROLE", default_value = "tenantguard_app")]
    pub app_role: String,
    /// The cross-tenant reporting role (BYPASSRLS, read-only).
    #[arg(
        long,
        env = "TENANTGUARD_ADMIN_ROLE",
        default_value = "tenantguard_admin"
    )]
    pub admin_role: String,
    /// The custom setting that carries the current tenant id.
    #[arg(
        long,
        env = "TENANTGUARD_TENANT_SETTING",
        default_value = "app.tenant_id"
    )]
    pub tenant_setting: String,
    /// NOLOGIN role that owns the tenant-provisioning function (BYPASSRLS, INSERT only).
    #[arg(
        long,
        env = "TENANTGUARD_PROVISIONER_ROLE",
        default_value = "tenantguard_provisioner"
    )]
    pub provisioner_role: String,
}

impl RoleArgs {
    /// The reference schema's policy declaration with these names.
    pub fn policy(&self) -> crate::policy::PolicySet {
        crate::schema::reference_policy(
            Roles {
                owner: Some(self.owner_role.clone()),
                app: self.app_role.clone(),
                admin: Some(self.admin_role.clone()),
            },
            &self.tenant_setting,
        )
    }
}

/// Entry point of the binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(2);
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Commands::Dev(a) => dev::run(a).await,
            Commands::Serve(a) => serve::run(a).await,
            Commands::Migrate(a) => migrate::run(a).await,
            Commands::Rls(a) => rls::run(a).await,
            Commands::Audit(a) => audit::run(a).await,
            Commands::Probe(a) => probe::dispatch(a).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", crate::error_chain(e.as_ref()));
            ExitCode::from(2)
        }
    }
}

/// Connects with a URL or key=value string and drives the connection in the background.
pub(crate) async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e| anyhow::anyhow!("invalid database URL: {e}"))?;
    let (client, conn) = config.connect(tokio_postgres::NoTls).await.map_err(|e| {
        anyhow::anyhow!("cannot connect to the database: {}", crate::error_chain(&e))
    })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::warn!(error = %e, "database connection ended");
        }
    });
    Ok(client)
}
