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
//!
//! On a Citus coordinator one transaction cannot hold it all: Citus refuses a placement
//! that one user wrote in a transaction to any other user of it (25001), so the privileged
//! user's rows and the app's attacks cannot share one. There the synthetic rows are
//! committed in a transaction of their own first (identified by their key, since
//! `tableoid`/`ctid` are a shard's, and read back without casts in `RETURNING`), the
//! attacks run as the app in a second one that is rolled back, and the rows are deleted
//! afterwards, also when the attacks failed ([`Leftovers`]; the CLI does it on Ctrl-C too).
//! The snapshot after the clean-up proves the database is as it was.

pub mod attacks;
pub mod connection;
pub mod http;
pub mod plans;
pub mod report;
pub mod snapshot;
pub mod synth;

use std::sync::{Arc, Mutex};

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

/// What the probe committed and has not removed yet (on Citus: the synthetic rows, as the
/// statements that delete them, children first). Empty once the probe's clean-up ran; a
/// caller whose probe was interrupted runs [`Leftovers::clean`] on a new connection.
#[derive(Debug, Clone, Default)]
pub struct Leftovers(Arc<Mutex<Vec<String>>>);

impl Leftovers {
    fn set(&self, statements: Vec<String>) {
        if let Ok(mut g) = self.0.lock() {
            *g = statements;
        }
    }

    fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut g| std::mem::take(&mut *g))
            .unwrap_or_default()
    }

    /// Whether nothing is left to remove.
    pub fn is_empty(&self) -> bool {
        self.0.lock().map(|g| g.is_empty()).unwrap_or(true)
    }

    /// Deletes what is left (in one transaction; if that fails, statement by statement)
    /// and returns what could not be deleted, with the error. `client` must have no open
    /// transaction.
    pub async fn clean(&self, client: &Client) -> Vec<String> {
        let statements = self.take();
        if statements.is_empty() {
            return Vec::new();
        }
        let mut whole = client.batch_execute("BEGIN").await;
        for s in &statements {
            if whole.is_ok() {
                whole = client.batch_execute(s).await;
            }
        }
        if whole.is_ok() {
            whole = client.batch_execute("COMMIT").await;
        }
        if whole.is_ok() {
            return Vec::new();
        }
        let _ = client.batch_execute("ROLLBACK").await;
        let mut failed = Vec::new();
        for s in statements {
            if let Err(e) = client.batch_execute(&s).await {
                failed.push(format!("{s}: {}", crate::error_chain(&e)));
            }
        }
        failed
    }
}

/// Sets the probe transaction's timeouts: never wait long for a live table's locks, never
/// run away. One statement per message (Citus forwards a multi-statement `SET` whole).
async fn timeouts(tx: &tokio_postgres::Transaction<'_>) -> Result<(), ProbeError> {
    for s in [
        "SET LOCAL lock_timeout = '5s'",
        "SET LOCAL statement_timeout = '60s'",
    ] {
        tx.batch_execute(s).await.map_err(db("setting timeouts"))?;
    }
    Ok(())
}

/// On Citus: commits the synthetic rows, attacks in a transaction that is rolled back,
/// then deletes the rows, whatever the attacks did (see the module docs).
async fn on_citus(
    client: &mut Client,
    model: &Model,
    leftovers: &Leftovers,
) -> Result<attacks::RunOutput, ProbeError> {
    let seeded = {
        let tx = client
            .transaction()
            .await
            .map_err(db("starting the seeding transaction"))?;
        timeouts(&tx).await?;
        // On error the transaction is dropped, so rolled back: nothing was committed.
        let seeded = attacks::seed(&tx, model, synth::RowIdentity::Key).await?;
        // Recorded before the commit: dropped while committing, the rows may be there.
        leftovers.set(seeded.cleanup(model));
        if let Err(e) = tx.commit().await {
            // A failed commit is a rollback: nothing to delete.
            leftovers.take();
            return Err(db("committing the synthetic rows")(e));
        }
        seeded
    };
    let result = async {
        let tx = client
            .transaction()
            .await
            .map_err(db("starting the probe transaction"))?;
        timeouts(&tx).await?;
        let result = attacks::attack(&tx, model, seeded).await;
        let rolled = tx.rollback().await.map_err(db("rolling back"));
        let out = result?;
        rolled?;
        Ok::<_, ProbeError>(out)
    }
    .await;
    let failed = leftovers.clean(client).await;
    let mut out = result?;
    for f in failed {
        out.notes.push(format!(
            "could not delete a synthetic row after the attacks: {f}"
        ));
    }
    Ok(out)
}

/// Runs the probe. The client must be a privileged user; it is left with no open
/// transaction.
pub async fn probe(client: &mut Client, config: &AuditConfig) -> Result<ProbeReport, ProbeError> {
    probe_with(client, config, &Leftovers::default()).await
}

/// [`probe`], recording in `leftovers` what it committed until it has removed it (on
/// Citus), so that a caller that drops the probe midway can remove it.
pub async fn probe_with(
    client: &mut Client,
    config: &AuditConfig,
    leftovers: &Leftovers,
) -> Result<ProbeReport, ProbeError> {
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
    let out = if model.catalog.citus.is_some() {
        on_citus(client, &model, leftovers).await?
    } else {
        let tx = client
            .transaction()
            .await
            .map_err(db("starting the probe transaction"))?;
        timeouts(&tx).await?;
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
