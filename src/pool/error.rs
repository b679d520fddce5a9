//! What can go wrong in the pools, classified where it happens: an outage (the database
//! could not be reached, or the connection was lost), a statement the server refused (with
//! its SQLSTATE and fields), a row-count mismatch, or a programming error on this side.

use std::fmt;

/// Errors from the pools and tenant transactions.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The role would make RLS moot; the pool refuses to start.
    #[error("refusing to use role {role:?} for the {pool} pool: {}", reasons.join("; "))]
    UnsafeRole {
        /// Which pool: `app` or `admin`.
        pool: &'static str,
        /// The role connected as.
        role: String,
        /// Every reason found.
        reasons: Vec<String>,
    },
    /// The database could not be reached or the connection was lost: no connection within
    /// the pool's wait timeout, the pool closed, a connection that could not be made, or
    /// one that closed or failed in transport mid-request.
    #[error("database unavailable while {context}: {source}")]
    Unavailable {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Cause,
    },
    /// The server refused a statement: the SQLSTATE and fields are available through
    /// [`PoolError::code`], [`PoolError::constraint`] and [`PoolError::db_error`].
    #[error("database error while {context}: {source}")]
    Db {
        /// What was being done.
        context: String,
        /// The error (always one the server reported).
        #[source]
        source: tokio_postgres::Error,
    },
    /// A statement returned another number of rows than its caller expects
    /// ([`TenantTx::query_one`](super::TenantTx::query_one),
    /// [`TenantTx::query_opt`](super::TenantTx::query_opt)): a programming error.
    #[error("{statement}: expected {expected}, got {got} rows")]
    RowCount {
        /// How many rows were expected.
        expected: ExpectedRows,
        /// How many came.
        got: usize,
        /// The statement (code, not data).
        statement: String,
    },
    /// A programming or protocol error on this side: a parameter or column that does not
    /// convert, a parameter count mismatch, an unexpected message, a pool built wrongly.
    /// Not an outage: retrying will not help.
    #[error("internal error while {context}: {source}")]
    Internal {
        /// What was being done.
        context: String,
        /// Why.
        #[source]
        source: Cause,
    },
    /// The pool's settings cannot work with this database (for example the `set_config`
    /// context carrier on Citus, whose workers never see it); the pool refuses to start.
    #[error("the {pool} pool cannot work with this database: {reason}")]
    Unsupported {
        /// Which pool: `app` or `admin`.
        pool: &'static str,
        /// What is wrong and what to set instead.
        reason: String,
    },
    /// The transaction was already committed or rolled back.
    #[error("the tenant transaction is already finished")]
    Finished,
}

/// The typed source of [`PoolError::Unavailable`] and [`PoolError::Internal`].
#[derive(Debug, thiserror::Error)]
pub enum Cause {
    /// From tokio-postgres (a statement or a connection).
    #[error(transparent)]
    Postgres(tokio_postgres::Error),
    /// From the connection pool (a wait timeout, a closed pool, a failed connect).
    #[error(transparent)]
    Pool(deadpool_postgres::PoolError),
    /// From building the pool.
    #[error(transparent)]
    Build(deadpool_postgres::BuildError),
}

/// The row count a caller expected ([`PoolError::RowCount`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRows {
    /// Exactly one row.
    One,
    /// Zero or one row.
    AtMostOne,
}

impl fmt::Display for ExpectedRows {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExpectedRows::One => "exactly one row",
            ExpectedRows::AtMostOne => "at most one row",
        })
    }
}

impl PoolError {
    /// Classifies a tokio-postgres error of a statement: what the server refused is
    /// [`PoolError::Db`], a closed connection or a transport failure
    /// [`PoolError::Unavailable`], anything else (conversion, parameter count, protocol)
    /// [`PoolError::Internal`]. The context is converted only on error.
    pub(crate) fn db<C: Into<String>>(context: C) -> impl FnOnce(tokio_postgres::Error) -> Self {
        move |source| {
            let context = context.into();
            if source.as_db_error().is_some() {
                PoolError::Db { context, source }
            } else if source.is_closed() || source.is_io() {
                PoolError::Unavailable {
                    context,
                    source: Cause::Postgres(source),
                }
            } else {
                PoolError::Internal {
                    context,
                    source: Cause::Postgres(source),
                }
            }
        }
    }

    /// A statement that had to return a row returned none (an internal query's own
    /// invariant, such as a catalog check that always returns one row).
    pub(crate) fn missing_row(statement: impl Into<String>) -> Self {
        PoolError::RowCount {
            expected: ExpectedRows::One,
            got: 0,
            statement: statement.into(),
        }
    }

    /// The SQLSTATE of a database error, if this is one.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        self.db_error().map(|e| e.code())
    }

    /// The name of the constraint a database error names, if any.
    pub fn constraint(&self) -> Option<&str> {
        self.db_error().and_then(|e| e.constraint())
    }

    /// The error the server reported (SQLSTATE, message, table, constraint, …), if this
    /// is one.
    pub fn db_error(&self) -> Option<&tokio_postgres::error::DbError> {
        match self {
            PoolError::Db { source, .. } => source.as_db_error(),
            _ => None,
        }
    }

    /// Whether this means the database could not be reached or the connection was lost
    /// (pool wait timeout, closed pool, failed connect, closed connection, I/O): worth a
    /// retry later. Statement errors, row-count mismatches and programming errors are not.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, PoolError::Unavailable { .. })
    }
}

impl From<deadpool_postgres::PoolError> for PoolError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        use deadpool_postgres::PoolError as E;
        let context = "getting a connection".to_string();
        match e {
            // A hook or runtime problem is a bug here, not an outage.
            E::NoRuntimeSpecified | E::PostCreateHook(_) => PoolError::Internal {
                context,
                source: Cause::Pool(e),
            },
            // Waiting, creating or recycling timed out; the pool is closed; or a new
            // connection failed (refused, authentication, the server starting up or
            // full): no connection to be had.
            E::Timeout(_) | E::Closed | E::Backend(_) => PoolError::Unavailable {
                context,
                source: Cause::Pool(e),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_timeout_is_an_outage_a_row_count_is_not() {
        let timeout = PoolError::from(deadpool_postgres::PoolError::Timeout(
            deadpool_postgres::TimeoutType::Wait,
        ));
        assert!(timeout.is_unavailable(), "{timeout}");
        assert!(PoolError::from(deadpool_postgres::PoolError::Closed).is_unavailable());
        let rc = PoolError::RowCount {
            expected: ExpectedRows::AtMostOne,
            got: 2,
            statement: "SELECT 1".into(),
        };
        assert!(!rc.is_unavailable());
        assert_eq!(
            rc.to_string(),
            "SELECT 1: expected at most one row, got 2 rows"
        );
        assert!(rc.code().is_none() && rc.db_error().is_none());
        assert!(
            !PoolError::from(deadpool_postgres::PoolError::NoRuntimeSpecified).is_unavailable()
        );
    }
}
