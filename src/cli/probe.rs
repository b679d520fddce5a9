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
    // closes and the server aborts the open transaction. What the probe had committed (on
    // Citus: its synthetic rows) is deleted on a new connection.
    let leftovers = crate::probe::Leftovers::default();
    let report = tokio::select! {
        r = crate::probe::probe_with(&mut client, &config, &leftovers) => r?,
        _ = tokio::signal::ctrl_c() => {
            drop(client);
            if leftovers.is_empty() {
                anyhow::bail!("interrupted: the probe transaction was rolled back");
            }
            let fresh = super::connect(&args.database_url).await?;
            let failed = leftovers.clean(&fresh).await;
            if failed.is_empty() {
                anyhow::bail!("interrupted: the probe transaction was rolled back and its committed synthetic rows deleted");
            }
            anyhow::bail!(
                "interrupted: the probe transaction was rolled back, but some committed synthetic rows could not be deleted:\n{}",
                failed.join("\n")
            );
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
///
/// Parsed by hand rather than derived: the derive's `Option<ProbeArgs>` flatten decides
/// "present" by `ProbeArgs`'s argument group, and clap leaves that group empty when the
/// struct itself flattens another (`TenancyArgs`), so the bare form would never parse.
#[derive(Debug)]
pub struct ProbeCommand {
    mode: ProbeMode,
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

impl clap::FromArgMatches for ProbeCommand {
    fn from_arg_matches(m: &clap::ArgMatches) -> Result<Self, clap::Error> {
        Self::from_arg_matches_mut(&mut m.clone())
    }

    fn from_arg_matches_mut(m: &mut clap::ArgMatches) -> Result<Self, clap::Error> {
        let mode = if m.subcommand_name().is_some() {
            <ProbeMode as clap::FromArgMatches>::from_arg_matches_mut(m)?
        } else {
            ProbeMode::Db(<ProbeArgs as clap::FromArgMatches>::from_arg_matches_mut(
                m,
            )?)
        };
        Ok(Self { mode })
    }

    fn update_from_arg_matches(&mut self, m: &clap::ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(m)?;
        Ok(())
    }
}

impl clap::Args for ProbeCommand {
    fn augment_args(cmd: clap::Command) -> clap::Command {
        let cmd = <ProbeArgs as clap::Args>::augment_args(cmd);
        <ProbeMode as clap::Subcommand>::augment_subcommands(cmd)
            .args_conflicts_with_subcommands(true)
            .subcommand_negates_reqs(true)
    }

    fn augment_args_for_update(cmd: clap::Command) -> clap::Command {
        Self::augment_args(cmd)
    }
}

pub(crate) async fn dispatch(cmd: ProbeCommand) -> anyhow::Result<ExitCode> {
    match cmd.mode {
        ProbeMode::Db(a) => run(a).await,
        ProbeMode::Http(a) => super::probe_http::run(a).await,
        ProbeMode::Plans(a) => super::probe_plans::run(a).await,
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::ProbeMode;
    use crate::cli::{Cli, Commands};

    fn mode(args: &[&str]) -> Result<ProbeMode, clap::Error> {
        let cli = Cli::try_parse_from(args)?;
        match cli.command {
            Commands::Probe(p) => Ok(p.mode),
            other => panic!("not a probe: {other:?}"),
        }
    }

    #[test]
    fn the_bare_probe_and_probe_db_are_the_database_probe() {
        let base = ["tenantguard", "probe", "--database-url", "postgresql://x/y"];
        let bare = mode(&[&base[..], &["--app-role", "app", "--tenancy", "role"]].concat());
        assert!(matches!(bare, Ok(ProbeMode::Db(a)) if a.app_role == "app"));
        let db = mode(&[
            "tenantguard",
            "probe",
            "db",
            "--database-url",
            "postgresql://x/y",
            "--app-role",
            "app",
        ]);
        assert!(matches!(db, Ok(ProbeMode::Db(_))));
        // The bare form still requires its flags, with clap's own message.
        let missing = mode(&base).expect_err("--app-role is required");
        assert!(missing.to_string().contains("--app-role"), "{missing}");
    }

    #[test]
    fn modes_do_not_take_the_database_probes_flags() {
        assert!(matches!(
            mode(&[
                "tenantguard",
                "probe",
                "plans",
                "--database-url",
                "postgresql://x/y"
            ]),
            Ok(ProbeMode::Plans(_))
        ));
        assert!(mode(&["tenantguard", "probe", "--app-role", "app", "plans"]).is_err());
    }
}
