//! `tenantguard probe`: proves isolation by attacking, safely.
//!
//! Everything happens in one transaction that is always rolled back (also on error; on
//! Ctrl-C or a lost connection the server aborts it), with one savepoint per attack so a
//! failed attack does not stop the others. Connected as a privileged user (a superuser,
//! or a role that bypasses RLS and is a member of the app role), the probe
//! [`synth`]esizes one row per tenant table for each of two synthetic tenants, parents
//! first, then [`attacks`] each table as the app role inside tenant A's context. The
//! [`snapshot`] taken before and after proves nothing was left behind.

pub mod attacks;
pub mod http;
pub mod plans;
pub mod report;
pub mod snapshot;
pub mod synth;

use serde::Serialize;
use tokio_postgres::Client;

use crate::audit::{catalog, AuditConfig, AuditError, Model};

pub use attacks::Attack;
pub use report::ProbeReport;

/// What one attack on one table showed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "snake_case")]
pub enum Outcome {
    /// The database stopped it (with what stopped it).
    Blocked(String),
    /// It worked: the evidence.
    Leaked(String),
    /// It could not be tried here (with the reason).
    NotApplicable(String),
}

impl Outcome {
    /// `blocked`, `LEAKED` or `n/a`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Blocked(_) => "blocked",
            Outcome::Leaked(_) => "LEAKED",
            Outcome::NotApplicable(_) => "n/a",
        }
    }

    /// Whether this is a leak.
    pub fn leaked(&self) -> bool {
        matches!(self, Outcome::Leaked(_))
    }
}

/// Errors that stop the probe as a whole (attacks that fail are outcomes, not errors).
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
    let (tables, attempts) = {
        let tx = client
            .transaction()
            .await
            .map_err(db("starting the probe transaction"))?;
        // Never wait long for a live table's locks, never run away.
        tx.batch_execute("SET LOCAL lock_timeout = '5s'; SET LOCAL statement_timeout = '60s'")
            .await
            .map_err(db("setting timeouts"))?;
        let cat = catalog::load(&tx, config).await?;
        let model = Model::build(cat, config);
        let result = attacks::run_all(&tx, &model).await;
        // Always roll back, whatever happened.
        let rolled = tx.rollback().await.map_err(db("rolling back"));
        let out = result?;
        rolled?;
        out
    };
    let connection = attacks::connection_check(client, config).await?;
    let after = snapshot::take(client, &config.app_role, &config.schemas).await?;
    Ok(ProbeReport {
        config: config.clone(),
        tables,
        connection,
        attempts,
        differences: before.diff(&after),
    })
}
