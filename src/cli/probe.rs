//! `tenantguard probe`: a thin layer over [`crate::probe`].

use std::process::ExitCode;

use crate::audit::AuditConfig;

/// Output format of `probe`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProbeFormat {
    /// The matrix as text, with evidence.
    Text,
    /// JSON (`format: tenantguard-probe`).
    Json,
}

/// Arguments of `tenantguard probe`.
#[derive(Debug, clap::Args)]
pub struct ProbeArgs {
    /// A privileged connection (superuser, or a BYPASSRLS member of the app role). Every
    /// change happens in a transaction that is rolled back.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// The role the application connects as; the attacks run as this role.
    #[arg(long)]
    pub app_role: String,
    /// The column that carries the tenant id.
    #[arg(long, default_value = "tenant_id")]
    pub tenant_column: String,
    /// The custom setting that carries the current tenant id.
    #[arg(long, default_value = "app.tenant_id")]
    pub tenant_setting: String,
    /// Probe only this schema (repeatable); default: every non-system schema.
    #[arg(long = "schema")]
    pub schemas: Vec<String>,
    /// The tenancy model (the probe sets up its callers the way it does).
    #[command(flatten)]
    pub tenancy: super::audit::TenancyArgs,
    /// Output format.
    #[arg(long, value_enum, default_value = "text")]
    pub format: ProbeFormat,
}

pub(crate) async fn run(args: ProbeArgs) -> anyhow::Result<ExitCode> {
    let tenancy = args
        .tenancy
        .model(&args.tenant_column, &args.tenant_setting)?;
    let config = AuditConfig {
        app_role: args.app_role,
        tenant_column: args.tenant_column,
        tenant_setting: args.tenant_setting,
        schemas: args.schemas,
        tenancy,
    };
    let mut client = super::connect(&args.database_url).await?;
    // On Ctrl-C the probe future (and with it the client) is dropped: the connection
    // closes and the server aborts the open transaction, so nothing is left behind.
    let report = tokio::select! {
        r = crate::probe::probe(&mut client, &config) => r?,
        _ = tokio::signal::ctrl_c() => {
            anyhow::bail!("interrupted: the probe transaction was rolled back");
        }
    };
    let out = match args.format {
        ProbeFormat::Text => report.text(),
        ProbeFormat::Json => serde_json::to_string_pretty(&report.json())? + "\n",
    };
    print!("{out}");
    // The one outcome policy: 0 clean, 1 a finding (or the database changed), 3 nothing
    // found but something could not be attacked (or nothing applied at all).
    Ok(report.status().exit_code())
}

/// `tenantguard probe [db|http|plans]`: the bare form is the database probe.
#[derive(Debug, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ProbeCommand {
    #[command(subcommand)]
    mode: Option<ProbeMode>,
    #[command(flatten)]
    db: Option<ProbeArgs>,
}

#[derive(Debug, clap::Subcommand)]
enum ProbeMode {
    /// Attack the database (inside rolled-back transactions); also the bare `probe`.
    Db(ProbeArgs),
    /// Attack a REST API from outside, as two tenants, from its OpenAPI document.
    Http(super::probe_http::ProbeHttpArgs),
    /// EXPLAIN the real workload's statements under tenant context.
    Plans(super::probe_plans::ProbePlansArgs),
}

pub(crate) async fn dispatch(cmd: ProbeCommand) -> anyhow::Result<ExitCode> {
    match (cmd.mode, cmd.db) {
        (Some(ProbeMode::Db(a)), _) | (None, Some(a)) => run(a).await,
        (Some(ProbeMode::Http(a)), _) => super::probe_http::run(a).await,
        (Some(ProbeMode::Plans(a)), _) => super::probe_plans::run(a).await,
        (None, None) => {
            anyhow::bail!("probe: give the database probe's flags, or a mode: db, http, plans")
        }
    }
}
