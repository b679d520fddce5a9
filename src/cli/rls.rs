//! `tenantguard rls apply`: bring someone else's tables under tenant RLS from a TOML file.

use std::path::PathBuf;
use std::process::ExitCode;

use super::connect;
use crate::policy::{self, PolicySet};

/// Arguments of `tenantguard rls`.
#[derive(Debug, clap::Args)]
pub struct RlsArgs {
    #[command(subcommand)]
    command: RlsCommand,
}

#[derive(Debug, clap::Subcommand)]
enum RlsCommand {
    /// Apply the declared policies in one transaction (adding and backfilling missing
    /// tenant columns); with --check only print what would change.
    Apply {
        /// The declaration (see README: "Bringing an existing database under RLS").
        #[arg(long, default_value = "tenantguard.toml")]
        config: PathBuf,
        /// Connection URL of a role that owns the tables or is superuser.
        #[arg(long, env = "DATABASE_URL")]
        database_url: String,
        /// Change nothing; exit 1 if anything would change.
        #[arg(long)]
        check: bool,
    },
}

pub(crate) async fn run(args: RlsArgs) -> anyhow::Result<ExitCode> {
    let RlsCommand::Apply {
        config,
        database_url,
        check,
    } = args.command;
    let text = std::fs::read_to_string(&config)
        .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", config.display()))?;
    let set =
        PolicySet::from_toml(&text).map_err(|e| anyhow::anyhow!("{}: {e}", config.display()))?;
    let mut client = connect(&database_url).await?;
    // On Citus: the policy form Citus accepts, and the checks that matter there.
    let citus = crate::schema::citus::is_citus(&client).await?;
    let set = if citus {
        println!("the database has the citus extension: policies without subquery (Citus form)");
        let (set, notes) =
            crate::schema::citus::without_defaults_on_distributed(&client, &set).await?;
        for n in notes {
            println!("note: {n}");
        }
        crate::schema::citus::citus_policy(&set)
    } else {
        set
    };
    if check {
        let mut changes = policy::check(&mut client, &set).await?;
        if citus {
            changes.extend(crate::schema::citus::rls_check(&mut client, &set).await?);
        }
        for c in &changes {
            if c.sql.is_empty() {
                println!("cannot apply {c}");
            } else {
                println!("would change {c}");
            }
        }
        if changes.is_empty() {
            println!("in sync");
            return Ok(ExitCode::SUCCESS);
        }
        return Ok(ExitCode::from(1));
    }
    let mut changes = policy::apply(&mut client, &set).await?;
    if citus {
        let (applied, left) = crate::schema::citus::rls_apply(&mut client, &set).await?;
        changes.extend(applied);
        for c in &left {
            println!("not changed (distribute it yourself) {c}");
        }
    }
    for c in &changes {
        println!("changed {c}");
    }
    println!(
        "{} change(s) applied; {} table(s) under tenant RLS",
        changes.len(),
        set.tables.len()
    );
    Ok(ExitCode::SUCCESS)
}
