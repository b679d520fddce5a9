//! `tenantguard migrate`: apply (or `--check`) the reference schema, roles and policies.

use std::process::ExitCode;

use secrecy::ExposeSecret;

use super::{connect, RoleArgs};
use crate::policy::ident;
use crate::schema;

/// Arguments of `tenantguard migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Superuser (or owner-member with CREATEROLE) connection URL.
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: String,
    /// Change nothing: print every difference from the declaration and exit 1 if any.
    #[arg(long)]
    pub check: bool,
    /// The database is a Citus coordinator: the Citus form (policies without subquery,
    /// tables distributed and colocated by tenant, DDL as the connecting superuser, the app
    /// role's `citus.propagate_set_commands = 'local'`). Chosen by itself when the database
    /// has the citus extension.
    #[arg(long)]
    pub citus: bool,
    #[command(flatten)]
    pub roles: RoleArgs,
}

pub(crate) async fn run(args: MigrateArgs) -> anyhow::Result<ExitCode> {
    let set = args.roles.policy();
    set.validate()?;
    let mut client = connect(&args.database_url).await?;
    let citus = schema::citus::is_citus(&client).await?;
    if args.citus && !citus {
        anyhow::bail!(
            "--citus: this database has no citus extension (CREATE EXTENSION citus on the              coordinator and every worker, add the workers, then run again)"
        );
    }
    if citus && !args.citus {
        println!("the database has the citus extension: using the Citus form (--citus)");
    }
    if args.check {
        let diffs = if citus {
            schema::citus::check(&mut client, &set, &args.roles.provisioner_role).await?
        } else {
            schema::check_with(&mut client, &set, &args.roles.provisioner_role).await?
        };
        if diffs.is_empty() {
            println!("in sync: schema, roles, RLS, policies and grants match the declaration");
            return Ok(ExitCode::SUCCESS);
        }
        for d in &diffs {
            println!("differs: {d}");
        }
        println!(
            "{} difference(s); run `tenantguard migrate` to fix",
            diffs.len()
        );
        return Ok(ExitCode::from(1));
    }
    let report = if citus {
        schema::citus::migrate(&mut client, &set, &args.roles.provisioner_role).await?
    } else {
        schema::migrate_with(&mut client, &set, &args.roles.provisioner_role).await?
    };
    for m in &report.migrations {
        println!("applied migration {m}");
    }
    for c in &report.changes {
        println!("changed {c}");
    }
    // Passwords come from the environment or files, and are sent as SCRAM verifiers so
    // the plaintext never reaches the server's logs.
    for (var, role) in [
        ("TENANTGUARD_APP_PASSWORD", &args.roles.app_role),
        ("TENANTGUARD_ADMIN_PASSWORD", &args.roles.admin_role),
    ] {
        if let Some(secret) = crate::secrets::from_env(var)? {
            let verifier =
                postgres_protocol::password::scram_sha_256(secret.expose_secret().as_bytes());
            client
                .batch_execute(&format!(
                    "ALTER ROLE {} PASSWORD {}",
                    ident(role),
                    crate::policy::literal(&verifier)
                ))
                .await?;
            println!("set the password of {role} from {var}");
        }
    }
    if report.is_noop() {
        println!("nothing to do: the database already matches");
    }
    Ok(ExitCode::SUCCESS)
}
