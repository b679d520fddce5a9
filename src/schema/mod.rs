//! The reference SaaS schema: versioned migrations plus its declaration for the policy
//! engine, and `migrate` / `migrate --check`.
//!
//! Migrations (`migrations/V*__*.sql`, run by refinery, checksummed, forward-only) create
//! tables, keys and indexes. Everything that names a role or the tenant setting (roles,
//! RLS, policies, grants, column defaults) comes from [`reference_policy`] through the
//! policy engine, so those names stay configurable.

use tokio_postgres::Client;

use crate::policy::{self, Change, Command, PolicyError, PolicySet, Roles, TenantTable};

pub mod citus;
pub mod provisioning;

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Name of the table where refinery records applied migrations.
pub const HISTORY_TABLE: &str = "tenantguard_schema_history";

/// The tenant tables: the seed's nine, in dependency order, and `idempotency_keys`
/// (the API server's record of answers to requests with an `Idempotency-Key`).
pub const TENANT_TABLES: [&str; 10] = [
    "team_members",
    "projects",
    "tasks",
    "documents",
    "comments",
    "invoices",
    "api_keys",
    "webhooks",
    "audit_log",
    "idempotency_keys",
];

/// Errors from migrating the reference schema.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A migration failed or an applied migration's checksum differs from the code's.
    #[error("migration failed: {0}")]
    Migration(#[from] refinery::Error),
    /// Applying roles, grants or policies failed.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A database error outside the above.
    #[error("database error while {context}: {source}")]
    Db {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: tokio_postgres::Error,
    },
}

fn db(context: &str) -> impl FnOnce(tokio_postgres::Error) -> SchemaError + '_ {
    move |source| SchemaError::Db {
        context: context.to_string(),
        source,
    }
}

/// The reference schema's declaration: the tenant tables with all four commands,
/// except `audit_log` (append-only: SELECT and INSERT) and `tenants` (the app may read its
/// own tenant row, keyed by `id`).
pub fn reference_policy(roles: Roles, tenant_setting: &str) -> PolicySet {
    let mut tables = vec![TenantTable::new("tenants")
        .tenant_column("id")
        .no_default()
        .commands(&[Command::Select])];
    for t in TENANT_TABLES {
        let table = TenantTable::new(t);
        tables.push(if t == "audit_log" {
            table.commands(&[Command::Select, Command::Insert])
        } else {
            table
        });
    }
    PolicySet {
        roles,
        tenant_setting: tenant_setting.into(),
        tenant_column: "tenant_id".into(),
        tables,
        predicate_form: Default::default(),
    }
}

/// What `migrate` did.
#[derive(Debug, Default)]
pub struct MigrateReport {
    /// Migrations applied in this run, as `V<n>__<name>`.
    pub migrations: Vec<String>,
    /// Role, function, RLS, policy and grant changes made in this run.
    pub changes: Vec<Change>,
}

impl MigrateReport {
    /// Whether the run changed nothing.
    pub fn is_noop(&self) -> bool {
        self.migrations.is_empty() && self.changes.is_empty()
    }
}

/// Brings a database to the reference schema: roles and the tenant function, pending
/// migrations (run as the owner role, so it owns every object), then RLS, policies and
/// grants, and last the tenant-provisioning function and its role ([`provisioning`]).
/// `client` must connect as a superuser or a role that can create roles and is a member of
/// the owner role. Idempotent.
pub async fn migrate(client: &mut Client, set: &PolicySet) -> Result<MigrateReport, SchemaError> {
    migrate_with(client, set, provisioning::DEFAULT_PROVISIONER).await
}

/// The owner role the reference schema's objects belong to.
pub(crate) fn owner_role(set: &PolicySet) -> Result<String, SchemaError> {
    set.roles.owner.clone().ok_or_else(|| {
        PolicyError::Config("the reference schema needs an owner role".into()).into()
    })
}

/// [`migrate`] with a chosen name for the tenant provisioner role (see [`provisioning`]).
pub async fn migrate_with(
    client: &mut Client,
    set: &PolicySet,
    provisioner: &str,
) -> Result<MigrateReport, SchemaError> {
    let owner = owner_role(set)?;
    let mut report = MigrateReport::default();

    let tx = client
        .transaction()
        .await
        .map_err(db("starting a transaction"))?;
    report.changes = policy::apply_prelude(&tx, set).await?;
    // PostgreSQL 15 grants no CREATE on `public` to PUBLIC; the owner needs it to migrate.
    let has_create: bool = tx
        .query_one(
            "SELECT has_schema_privilege($1, 'public', 'CREATE')",
            &[&owner],
        )
        .await
        .map_err(db("reading schema privileges"))?
        .get(0);
    if !has_create {
        let sql = format!(
            "GRANT USAGE, CREATE ON SCHEMA public TO {}",
            policy::ident(&owner)
        );
        tx.batch_execute(&sql)
            .await
            .map_err(db("granting CREATE on schema public"))?;
        report.changes.push(Change {
            object: "schema public".into(),
            difference: format!("{owner} lacks CREATE"),
            sql: vec![sql],
        });
    }
    tx.commit().await.map_err(db("committing the prelude"))?;

    client
        .batch_execute(&format!("SET ROLE {}", policy::ident(&owner)))
        .await
        .map_err(db("switching to the owner role"))?;
    let result = run_migrations(client).await;
    client
        .batch_execute("RESET ROLE")
        .await
        .map_err(db("leaving the owner role"))?;
    report.migrations = result?;

    report.changes.extend(policy::apply(client, set).await?);

    let tx = client
        .transaction()
        .await
        .map_err(db("starting a transaction"))?;
    report.changes.extend(
        provisioning::apply(&tx, set, provisioner)
            .await
            .map_err(db("applying the provisioning function"))?,
    );
    tx.commit()
        .await
        .map_err(db("committing the provisioning function"))?;
    Ok(report)
}

/// Lists every difference between the database and the reference schema without
/// changing anything: pending migrations, then policy-engine drift, then drift of the
/// tenant-provisioning function and its role.
pub async fn check(client: &mut Client, set: &PolicySet) -> Result<Vec<String>, SchemaError> {
    check_with(client, set, provisioning::DEFAULT_PROVISIONER).await
}

/// [`check`] with a chosen name for the tenant provisioner role.
pub async fn check_with(
    client: &mut Client,
    set: &PolicySet,
    provisioner: &str,
) -> Result<Vec<String>, SchemaError> {
    let mut out = pending_migrations(client).await?;
    if !out.is_empty() {
        out.push(
            "(tables, RLS, policies and grants are checked once migrations are applied)".into(),
        );
        return Ok(out);
    }
    out.extend(
        policy::check(client, set)
            .await?
            .into_iter()
            .map(|c| c.to_string()),
    );
    let tx = client
        .transaction()
        .await
        .map_err(db("starting a transaction"))?;
    out.extend(
        provisioning::plan(&tx, set, provisioner)
            .await
            .map_err(db("checking the provisioning function"))?
            .into_iter()
            .map(|c| c.to_string()),
    );
    tx.rollback().await.map_err(db("rolling back"))?;
    Ok(out)
}

/// Runs the pending migrations on `client` as whoever it is connected as (the caller sets
/// the role) and returns them as `V<n>__<name>`.
async fn run_migrations(client: &mut Client) -> Result<Vec<String>, SchemaError> {
    let mut runner = embedded::migrations::runner()
        .set_abort_divergent(true)
        .set_abort_missing(true);
    runner.set_migration_table_name(HISTORY_TABLE);
    let applied = runner.run_async(client).await?;
    Ok(applied
        .applied_migrations()
        .iter()
        .map(|m| m.to_string())
        .collect())
}

/// Pending or altered migrations, one line each (empty: all applied as the code has them).
async fn pending_migrations(client: &mut Client) -> Result<Vec<String>, SchemaError> {
    let mut runner = embedded::migrations::runner();
    runner.set_migration_table_name(HISTORY_TABLE);
    let history_exists: bool = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&format!("public.{HISTORY_TABLE}")],
        )
        .await
        .map_err(db("looking for the migration history"))?
        .get(0);
    let applied = if history_exists {
        runner.get_applied_migrations_async(client).await?
    } else {
        Vec::new()
    };
    let mut out = Vec::new();
    for m in runner.get_migrations() {
        match applied.iter().find(|a| a.version() == m.version()) {
            None => out.push(format!("migration {m}: not applied")),
            Some(a) if a.checksum() != m.checksum() => out.push(format!(
                "migration {m}: applied with checksum {} but the code has {}",
                a.checksum(),
                m.checksum()
            )),
            Some(_) => {}
        }
    }
    Ok(out)
}
