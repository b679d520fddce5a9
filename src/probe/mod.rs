//! `tenantguard probe`: proves isolation by attacking, safely.
//!
//! First the [`connection`] checks (what a pooled connection carries between
//! transactions, including the schema's own context helpers). Then everything happens in
//! one transaction that is always rolled back (also on error; on Ctrl-C or a lost
//! connection the server aborts it), with one savepoint per attack so a failed attack does
//! not stop the others. Connected as a privileged user (a superuser, or a role that
//! bypasses RLS and is a member of the app role), the probe [`synth`]esizes one row per
//! tenant table for each of two synthetic tenants (and their users), parents first, then
//! [`attacks`] each table as the app's caller under the table's tenancy model
//! ([`crate::isolation`]): the tenant setting, a JWT claims document of the right shape, a
//! member row in the membership table, or a per-tenant role. Every cell is judged by the
//! one outcome policy ([`crate::outcome`]), with a control per attack. The [`snapshot`]
//! taken before and after proves nothing was left behind, and the per-tenant roles the
//! probe created are checked to be gone.

pub mod attacks;
pub mod connection;
pub mod http;
pub mod plans;
pub mod report;
pub mod snapshot;
pub mod synth;

use tokio_postgres::Client;

use crate::audit::{catalog, AuditConfig, AuditError, Model};

pub use attacks::{Attack, Cell};
pub use report::ProbeReport;

/// Errors that stop the probe as a whole (attacks that fail are cells, not errors).
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// Reading the catalogs failed or the configuration does not fit the database.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// The probe's own statements failed.
    #[error("database error while {context}: {source}")]
    Db {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The connecting user cannot act as the app role.
    #[error("{0}")]
    Privilege(String),
}

pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ProbeError {
    let context = context.into();
    move |source| ProbeError::Db { context, source }
}

/// Runs the probe. The client must be a privileged user; it is left with no open
/// transaction.
pub async fn probe(client: &mut Client, config: &AuditConfig) -> Result<ProbeReport, ProbeError> {
    let before = snapshot::take(client, &config.app_role, &config.schemas).await?;
    let can_set = client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = $1)
                    AND pg_has_role(current_user, (SELECT oid FROM pg_roles WHERE rolname = $1), 'MEMBER')",
            &[&config.app_role],
        )
        .await
        .map_err(db("checking the connecting user"))?;
    if !can_set.get::<_, bool>(0) {
        return Err(ProbeError::Privilege(format!(
            "the connecting user cannot SET ROLE {:?} (it must exist, and the user must be a superuser or a member of it)",
            config.app_role
        )));
    }
    // The model, from a consistent read of the catalogs.
    let model = {
        let tx = client
            .build_transaction()
            .read_only(true)
            .start()
            .await
            .map_err(db("starting a read-only transaction"))?;
        let cat = catalog::load(&tx, config).await?;
        tx.rollback().await.map_err(db("rolling back"))?;
        Model::build(cat, config)
    };
    // Connection checks first: nothing the probe sets may hide what the database does.
    let connection = connection::check(client, &model).await?;
    let out = {
        let tx = client
            .transaction()
            .await
            .map_err(db("starting the probe transaction"))?;
        // Never wait long for a live table's locks, never run away.
        tx.batch_execute("SET LOCAL lock_timeout = '5s'; SET LOCAL statement_timeout = '60s'")
            .await
            .map_err(db("setting timeouts"))?;
        let result = attacks::run_all(&tx, &model).await;
        // Always roll back, whatever happened.
        let rolled = tx.rollback().await.map_err(db("rolling back"));
        let out = result?;
        rolled?;
        out
    };
    let after = snapshot::take(client, &config.app_role, &config.schemas).await?;
    let mut differences = before.diff(&after);
    // Roles are cluster-wide: the per-tenant roles must be gone with the rollback.
    if !out.created_roles.is_empty() {
        let left: Vec<String> = client
            .query(
                "SELECT rolname::text FROM pg_roles WHERE rolname = ANY($1) ORDER BY 1",
                &[&out.created_roles],
            )
            .await
            .map_err(db("checking the probe's roles are gone"))?
            .iter()
            .map(|r| r.get(0))
            .collect();
        for r in left {
            differences.push(format!("role {r}: created by the probe and still there"));
        }
    }
    Ok(ProbeReport {
        config: config.clone(),
        tenancy: model.detection.statement(),
        tables: out.tables,
        connection,
        attempts: out.notes,
        created_roles: out.created_roles,
        differences,
    })
}
