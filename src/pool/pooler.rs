//! Whether prepared statements survive between transactions on a pooled connection.
//!
//! Behind a transaction-mode pooler that does not track prepared statements (pgbouncer
//! before 1.21, or with `max_prepared_statements = 0`), a statement prepared in one
//! transaction may be executed on another server connection in the next, which fails with
//! SQLSTATE 26000 (`prepared statement "sN" does not exist`). The statement cache
//! ([`PoolOptions::statement_cache`](super::PoolOptions)) must then be off.

use std::time::Duration;

use super::{PoolError, TenantPool};

/// What [`TenantPool::probe_statement_support`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatementSupport {
    /// A statement prepared in one transaction ran in the next, while another connection
    /// of this pool held a transaction open (or the pool has one connection only).
    Kept,
    /// The statement was gone in the next transaction (SQLSTATE 26000): a
    /// transaction-mode pooler hands out server connections per transaction and does
    /// not carry prepared statements over.
    Lost,
}

/// How long the probe waits for its statement while the other connection holds its
/// transaction (a pooler with a single server connection makes it wait for that one).
const HOLD: Duration = Duration::from_millis(500);

impl TenantPool {
    /// Finds out whether prepared statements survive between transactions here.
    ///
    /// It prepares a named statement on one pooled connection (its own transaction),
    /// opens a transaction on a second pooled connection (a transaction-mode pooler
    /// usually hands it the server connection just used, as pgbouncer reuses the most
    /// recent one), and then executes the statement on the first. Directly on
    /// PostgreSQL each pooled connection is its own backend and the statement runs; behind
    /// a pooler that does not carry statements over it runs on another server connection
    /// and fails with 26000. It sets no tenant and touches no table.
    ///
    /// A pooler that serves both through the same server connection makes the statement
    /// wait for the other transaction, which the probe ends after a short hold: that
    /// reads as [`StatementSupport::Kept`], since the statement did run, and SQLSTATE 26000
    /// at run time remains the backstop.
    pub async fn probe_statement_support(&self) -> Result<StatementSupport, PoolError> {
        let a = self.pool.get().await?;
        let stmt = a
            .prepare("SELECT 1")
            .await
            .map_err(PoolError::db("probing prepared statements"))?;
        // A pool of one cannot hold a second connection: nothing to compare.
        let b = if self.pool.status().max_size >= 2 {
            Some(self.pool.get().await?)
        } else {
            None
        };
        if let Some(b) = &b {
            b.batch_execute("BEGIN")
                .await
                .map_err(PoolError::db("probing prepared statements"))?;
        }
        let run = a.query(&stmt, &[]);
        tokio::pin!(run);
        let mut open = b.is_some();
        let result = tokio::select! {
            r = &mut run => r,
            _ = tokio::time::sleep(HOLD) => {
                if let Some(b) = &b {
                    let _ = b.batch_execute("COMMIT").await;
                    open = false;
                }
                run.await
            }
        };
        if let (Some(b), true) = (&b, open) {
            let _ = b.batch_execute("COMMIT").await;
        }
        match result {
            Ok(_) => Ok(StatementSupport::Kept),
            Err(e)
                if e.code()
                    == Some(&tokio_postgres::error::SqlState::INVALID_SQL_STATEMENT_NAME) =>
            {
                Ok(StatementSupport::Lost)
            }
            Err(e) => Err(PoolError::db("probing prepared statements")(e)),
        }
    }
}
