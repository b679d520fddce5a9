//! The tenant-scoped pool.
//!
//! [`TenantPool`] is the only way the application reaches PostgreSQL as the app role, and
//! it hands out nothing but [`TenantTx`]: statements scoped to one tenant by
//! `set_config(<setting>, $1, true)`. The setting is transaction-local, so it dies with the
//! transaction whatever happens next — commit, rollback, an error, a panic, a cancelled
//! future — and a pooled connection can never carry one tenant's context to the next user,
//! behind a transaction-mode pooler too.
//!
//! There are two paths.
//!
//! **Read-only, statement cache on** ([`TenantPool::begin_read_only`], the default
//! options): no `BEGIN`, no `COMMIT`. Every statement is sent as
//! `SELECT set_config(<setting>, $1, true), set_config('transaction_read_only', 'on', true)`
//! plus the statement, both bound and executed under ONE protocol Sync
//! (`Client::query_after` of the vendored tokio-postgres, see
//! `vendor/tokio-postgres/PATCHES.md`). Everything up to a Sync is one implicit
//! transaction, so the tenant and read-only mode apply to that statement and end at its
//! Sync, on success, on error and if the future is dropped in flight (the server runs to
//! the Sync regardless, and the connection reads the replies before the next user's). There
//! is nothing to commit or roll back, so `commit`, `rollback` and drop send nothing. Each
//! statement is its own transaction with its own snapshot: the visibility of `READ
//! COMMITTED`, not one snapshot for the whole `TenantTx`. This is the request hot path, and
//! PostgreSQL's work per Sync is what it costs on a CPU-bound server.
//!
//! **A request's last write** ([`TenantTx::query_commit`]): the statement commits with
//! the transaction. When it is the only statement (statement cache on) it takes the same
//! one-Sync path with just the tenant's `set_config` as prelude; PostgreSQL commits the
//! implicit transaction at the Sync, or rolls it back if either statement failed. After
//! earlier statements it is sent together with `COMMIT`. Every mutation of the reference
//! API is one audited statement, so it costs one round trip and no `BEGIN`/`COMMIT`.
//!
//! On both one-Sync paths a statement borrows a pooled connection for its round trip
//! only, as an autocommit query would; a transaction takes and holds one only once it
//! opens a transaction block. So a request does not keep a connection from other requests
//! while it authenticates, validates or serializes.
//!
//! **Read-write, or without the statement cache**: a real transaction. `BEGIN [READ ONLY]`,
//! the `set_config` and the first statement are sent together (tokio-postgres pipelines
//! requests whose futures are polled together), so a request costs no more round trips than
//! the same queries without RLS. A read-only transaction's `COMMIT` (uncached mode) is sent
//! without waiting for its reply: it reaches the server ahead of whatever the connection's
//! next user sends, and nothing is lost if it failed. The uncached mode (pgbouncer before
//! 1.21) prepares statements inside the transaction, which the one-Sync path cannot do.
//!
//! [`AdminPool`] is a separate type for the cross-tenant reporting role.

mod pooler;
mod safety;
mod tenant_id;

use std::sync::Arc;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use futures::FutureExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::{NoTls, Row};

pub use pooler::StatementSupport;
pub use tenant_id::{InvalidTenantId, TenantId};

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
    /// No connection could be had (database down, pool exhausted past its timeout).
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A statement failed; the SQLSTATE is available through [`PoolError::code`].
    #[error("database error while {context}: {source}")]
    Db {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: tokio_postgres::Error,
    },
    /// The transaction was already committed or rolled back.
    #[error("the tenant transaction is already finished")]
    Finished,
}

impl PoolError {
    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| PoolError::Db { context, source }
    }

    /// The SQLSTATE of a database error, if this is one.
    pub fn code(&self) -> Option<&tokio_postgres::error::SqlState> {
        match self {
            PoolError::Db { source, .. } => source.code(),
            _ => None,
        }
    }

    /// The name of the constraint a database error names, if any.
    pub fn constraint(&self) -> Option<&str> {
        match self {
            PoolError::Db { source, .. } => source.as_db_error().and_then(|e| e.constraint()),
            _ => None,
        }
    }

    /// Whether this means the database could not be reached (as opposed to a statement
    /// that failed).
    pub fn is_unavailable(&self) -> bool {
        match self {
            PoolError::Unavailable(_) => true,
            PoolError::Db { source, .. } => source.is_closed() || source.code().is_none(),
            _ => false,
        }
    }
}

impl From<deadpool_postgres::PoolError> for PoolError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        PoolError::Unavailable(e.to_string())
    }
}

/// Settings shared by both pools.
#[derive(Debug, Clone)]
pub struct PoolOptions {
    /// Most connections held at once.
    pub max_size: usize,
    /// How long `begin` waits for a free connection before failing as unavailable.
    pub wait_timeout: Duration,
    /// The custom setting that carries the tenant id (must match the policies).
    pub tenant_setting: String,
    /// The tenant column (for the start-up ownership check).
    pub tenant_column: String,
    /// Cache prepared statements per connection (the default). Turn it off behind a
    /// transaction-mode pooler without prepared-statement support (pgbouncer before 1.21,
    /// or with `max_prepared_statements = 0`): statements are then prepared and closed
    /// inside each transaction, at the cost of one extra round trip per statement.
    pub statement_cache: bool,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 16,
            wait_timeout: Duration::from_secs(5),
            tenant_setting: "app.tenant_id".into(),
            tenant_column: "tenant_id".into(),
            statement_cache: true,
        }
    }
}

fn build(config: tokio_postgres::Config, opts: &PoolOptions) -> Result<Pool, PoolError> {
    let mgr = Manager::from_config(
        config,
        NoTls,
        ManagerConfig {
            // Verified, never reset: a tenant context cannot survive its transaction, so
            // there is nothing to scrub between users.
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(mgr)
        .max_size(opts.max_size)
        .runtime(deadpool_postgres::Runtime::Tokio1)
        .wait_timeout(Some(opts.wait_timeout))
        .create_timeout(Some(opts.wait_timeout))
        .build()
        .map_err(|e| PoolError::Unavailable(e.to_string()))
}

/// The application's pool. Every connection it lends is inside a [`TenantTx`].
#[derive(Clone)]
pub struct TenantPool {
    pool: Pool,
    setting: Arc<str>,
    tenant_column: Arc<str>,
    cache: bool,
}

impl std::fmt::Debug for TenantPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantPool")
            .field("status", &self.pool.status())
            .field("setting", &self.setting)
            .finish()
    }
}

impl TenantPool {
    /// Builds the pool and checks, on one real connection, that the role is safe for it:
    /// not superuser, not BYPASSRLS, owning no tenant table, directly or through any role
    /// it is a member of. Refuses with [`PoolError::UnsafeRole`] otherwise.
    pub async fn connect(
        config: tokio_postgres::Config,
        opts: PoolOptions,
    ) -> Result<Self, PoolError> {
        let pool = Self {
            pool: build(config, &opts)?,
            setting: opts.tenant_setting.into(),
            tenant_column: opts.tenant_column.into(),
            cache: opts.statement_cache,
        };
        pool.check_role().await?;
        Ok(pool)
    }

    /// Runs the start-up role check again (for readiness probes).
    pub async fn check_role(&self) -> Result<(), PoolError> {
        let client = self.pool.get().await?;
        let (role, reasons) = safety::app_role_problems(&client, &self.tenant_column).await?;
        if reasons.is_empty() {
            Ok(())
        } else {
            Err(PoolError::UnsafeRole {
                pool: "app",
                role,
                reasons,
            })
        }
    }

    /// Starts a read-write transaction for `tenant`. Nothing is sent, and no connection is
    /// taken, until the first statement, which travels with `BEGIN` and the `set_config`
    /// (or, through [`TenantTx::query_commit`], with just the `set_config`).
    pub async fn begin(&self, tenant: TenantId) -> Result<TenantTx, PoolError> {
        self.begin_with(tenant, false).await
    }

    /// Starts a read-only [`TenantTx`] for `tenant`. With the statement cache on (the
    /// default), each statement runs in its own implicit transaction under one Sync, read-only
    /// and scoped to the tenant, and there is no `BEGIN` or `COMMIT`; without it, a
    /// `READ ONLY` transaction whose commit is not waited for (see the module docs).
    pub async fn begin_read_only(&self, tenant: TenantId) -> Result<TenantTx, PoolError> {
        self.begin_with(tenant, true).await
    }

    async fn begin_with(&self, tenant: TenantId, read_only: bool) -> Result<TenantTx, PoolError> {
        Ok(TenantTx {
            pool: self.pool.clone(),
            client: None,
            tenant,
            tenant_text: {
                // The tenant as set_config's text, formatted once into the TenantTx itself:
                // no String allocated, no fmt machinery per request.
                let mut buf = [0u8; 36];
                tenant.as_uuid().hyphenated().encode_lower(&mut buf);
                buf
            },
            setting: self.setting.clone(),
            read_only,
            cache: self.cache,
            state: State::Pending,
        })
    }

    /// Checks out a connection and, without setting any tenant, reports what a statement on
    /// it would see: the backend, the tenant setting (NULL or `''` when clean) and, if a
    /// table is named, how many of its rows are visible (0 when policies fail closed).
    /// A diagnostic for tests and readiness checks; it runs only this fixed query.
    pub async fn inspect_idle(&self, table: Option<&str>) -> Result<IdleState, PoolError> {
        let client = self.pool.get().await?;
        // query_typed sends one unnamed statement: valid behind a transaction-mode pooler.
        let first = |rows: Vec<Row>| {
            rows.into_iter()
                .next()
                .ok_or_else(|| PoolError::Unavailable("inspection returned no row".into()))
        };
        let row = first(
            client
                .query_typed(
                    "SELECT pg_backend_pid(), current_setting($1, true)",
                    &[(&&*self.setting, tokio_postgres::types::Type::TEXT)],
                )
                .await
                .map_err(PoolError::db("inspecting an idle connection"))?,
        )?;
        let visible_rows = match table {
            Some(t) => Some(
                first(
                    client
                        .query_typed(
                            &format!("SELECT count(*) FROM {}", crate::policy::ident(t)),
                            &[],
                        )
                        .await
                        .map_err(PoolError::db("counting visible rows"))?,
                )?
                .get(0),
            ),
            None => None,
        };
        Ok(IdleState {
            backend_pid: row.get(0),
            tenant_setting: row.get(1),
            visible_rows,
        })
    }

    /// Pool occupancy, for metrics.
    pub fn status(&self) -> deadpool_postgres::Status {
        self.pool.status()
    }

    /// Whether prepared statements are cached per connection
    /// ([`PoolOptions::statement_cache`]).
    pub fn statement_cache(&self) -> bool {
        self.cache
    }

    /// Runs `sql` for `tenant` as one read-only implicit transaction over the simple query
    /// protocol: `SELECT set_config(<setting>, <tenant>, true),
    /// set_config('transaction_read_only', 'on', true); <sql>` in one Query message, which
    /// PostgreSQL runs as a single implicit transaction ended when the message is done.
    /// One round trip, no prepared statement (so it works behind any transaction-mode
    /// pooler), and the connection goes back to the pool at once with nothing owed.
    /// Returns the rows of `sql` only, as text.
    ///
    /// It takes no parameters: `sql` must be built from trusted text only, with every
    /// value quoted by [`crate::policy::literal`].
    pub(crate) async fn simple_read_once(
        &self,
        tenant: TenantId,
        sql: &str,
    ) -> Result<Vec<tokio_postgres::SimpleQueryRow>, PoolError> {
        let client = self.pool.get().await?;
        let text = format!(
            "SELECT set_config({}, {}, true), set_config('transaction_read_only', 'on', true); {sql}",
            crate::policy::literal(&self.setting),
            crate::policy::literal(&tenant.to_string()),
        );
        let messages = client
            .simple_query(&text)
            .await
            .map_err(PoolError::db("running a statement"))?;
        // The prelude's row comes first, ended by its CommandComplete.
        let mut prelude_done = false;
        Ok(messages
            .into_iter()
            .filter_map(|m| match m {
                tokio_postgres::SimpleQueryMessage::CommandComplete(_) => {
                    prelude_done = true;
                    None
                }
                tokio_postgres::SimpleQueryMessage::Row(r) if prelude_done => Some(r),
                _ => None,
            })
            .collect())
    }
}

/// What an idle pooled connection sees with no tenant set ([`TenantPool::inspect_idle`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdleState {
    /// `pg_backend_pid()` of the connection.
    pub backend_pid: i32,
    /// The tenant setting: `None` (never set) or `Some("")` (reset) when clean.
    pub tenant_setting: Option<String>,
    /// Rows of the named table visible without a tenant.
    pub visible_rows: Option<i64>,
}

impl IdleState {
    /// Whether no tenant context is in effect.
    pub fn is_clean(&self) -> bool {
        self.tenant_setting.as_deref().unwrap_or("").is_empty()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No transaction block open: nothing sent yet, or only one-Sync reads (each ended at
    /// its own Sync).
    Pending,
    /// `BEGIN` has been sent.
    Open,
    /// Committed or rolled back.
    Finished,
}

/// A transaction scoped to one tenant. Commit is explicit; dropping it (an error, a panic,
/// a cancelled request) rolls back.
///
/// It takes a connection from the pool at its first statement, not before. Once it has
/// opened a transaction block it holds that connection, and returns it only after `COMMIT`
/// or `ROLLBACK` has been queued on it, so the next user starts clean. A statement on a
/// one-Sync path (see the module docs) is its own implicit transaction, ended at its Sync:
/// it borrows a connection for just that statement, as a plain autocommit query would, so
/// a request does not keep a connection from others while it parses, checks and
/// serializes.
pub struct TenantTx {
    pool: Pool,
    /// The connection of the open transaction block (`State::Open`, or `Pending` when an
    /// uncached statement is being prepared inside it).
    client: Option<Object>,
    tenant: TenantId,
    /// The tenant id as text (hyphenated, lowercase ASCII): what `set_config` receives.
    tenant_text: [u8; 36],
    setting: Arc<str>,
    read_only: bool,
    cache: bool,
    state: State,
}

impl std::fmt::Debug for TenantTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTx")
            .field("tenant", &self.tenant)
            .field("read_only", &self.read_only)
            .field("state", &self.state)
            .finish()
    }
}

const SET_TENANT: &str = "SELECT set_config($1, $2, true)";
/// The prelude of a statement on the one-Sync read path: tenant and read-only mode, both
/// local to the implicit transaction that ends at the Sync.
const SET_TENANT_READ_ONLY: &str =
    "SELECT set_config($1, $2, true), set_config('transaction_read_only', 'on', true)";

impl TenantTx {
    /// The tenant this transaction is scoped to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// Whether this is a `READ ONLY` transaction.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The tenant id as `set_config` receives it.
    fn tenant_text(&self) -> &str {
        // Always ASCII (written by Uuid's encoder); "" cannot happen and would fail closed.
        std::str::from_utf8(&self.tenant_text).unwrap_or("")
    }

    /// Whether statements go on the one-Sync read path (see the module docs).
    fn one_sync(&self) -> bool {
        self.read_only && self.cache
    }

    fn check_live(&self) -> Result<(), PoolError> {
        match self.state {
            State::Finished => Err(PoolError::Finished),
            State::Pending | State::Open => Ok(()),
        }
    }

    /// Takes a connection from the pool to hold, if none is held yet.
    async fn hold(&mut self) -> Result<(), PoolError> {
        self.check_live()?;
        if self.client.is_none() {
            self.client = Some(self.pool.get().await?);
        }
        Ok(())
    }

    /// The held connection (after [`hold`](Self::hold)).
    fn client(&self) -> Result<&Object, PoolError> {
        self.check_live()?;
        self.client.as_ref().ok_or(PoolError::Finished)
    }

    /// Runs a statement and returns its rows. Statements are prepared once per connection
    /// (or, without the statement cache, inside this transaction).
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PoolError> {
        self.check_live()?;
        if self.one_sync() {
            // State stays Pending: the context ends at this request's Sync, nothing is owed.
            return self.query_one_sync(SET_TENANT_READ_ONLY, sql, params).await;
        }
        self.hold().await?;
        let client = self.client()?;
        // Cached statements are prepared before anything transactional is sent, so a
        // statement that fails to prepare leaves no transaction behind.
        let cached = match self.cache {
            true => Some((
                client
                    .prepare_cached(sql)
                    .await
                    .map_err(PoolError::db("preparing a statement"))?,
                client
                    .prepare_cached(SET_TENANT)
                    .await
                    .map_err(PoolError::db("preparing set_config"))?,
            )),
            false => None,
        };
        if self.state == State::Open {
            let result = match &cached {
                Some((stmt, _)) => client.query(stmt, params).await,
                None => client.query(sql, params).await,
            };
            return result.map_err(PoolError::db("running a statement"));
        }
        let begin = if self.read_only {
            "BEGIN READ ONLY"
        } else {
            "BEGIN"
        };
        // From here on a ROLLBACK is owed, even if this future is dropped mid-flight.
        self.state = State::Open;
        let client = self.client.as_ref().ok_or(PoolError::Finished)?;
        let tenant_text = self.tenant_text();
        let set_params: [&(dyn ToSql + Sync); 2] = [&&*self.setting, &tenant_text];
        // futures' try_join polls in order, so the requests leave in this order: BEGIN,
        // set_config, the statement (and, uncached, their executions after their Parse
        // replies, still in this order). One round trip when cached.
        let (_, _, rows) = futures::try_join!(
            async {
                client
                    .batch_execute(begin)
                    .await
                    .map_err(PoolError::db("beginning the transaction"))
            },
            async {
                match &cached {
                    Some((_, set)) => client.query(set, &set_params).await,
                    None => client.query(SET_TENANT, &set_params).await,
                }
                .map_err(PoolError::db("setting the tenant"))
            },
            async {
                match &cached {
                    Some((stmt, _)) => client.query(stmt, params).await,
                    None => client.query(sql, params).await,
                }
                .map_err(PoolError::db("running a statement"))
            },
        )?;
        Ok(rows)
    }

    /// The prelude (`SET_TENANT` or `SET_TENANT_READ_ONLY`) and `sql`, bound and executed
    /// under one Sync: one implicit transaction that the server ends at the Sync,
    /// committing if both succeeded and rolling back otherwise.
    async fn query_one_sync(
        &self,
        prelude: &str,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PoolError> {
        // A held connection if there is one; otherwise one borrowed for this statement
        // (returned when this function ends, with nothing owed on it).
        let borrowed;
        let client = match &self.client {
            Some(c) => c,
            None => {
                borrowed = self.pool.get().await?;
                &borrowed
            }
        };
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(PoolError::db("preparing a statement"))?;
        let set = client
            .prepare_cached(prelude)
            .await
            .map_err(PoolError::db("preparing set_config"))?;
        let tenant_text = self.tenant_text();
        let set_params: [&(dyn ToSql + Sync); 2] = [&&*self.setting, &tenant_text];
        client
            .query_after(&set, &set_params, &stmt, params)
            .await
            .map_err(PoolError::db("running a statement"))
    }

    /// Runs `sql` as the transaction's last statement and commits with it: the
    /// transaction's statements take effect together if all of them succeed, and none
    /// does otherwise. Afterwards the transaction is finished, as after
    /// [`commit`](Self::commit) (which then sends nothing) — call it only when nothing
    /// that follows may still fail and want a rollback.
    ///
    /// This is the cheap way to make a single-statement write (an audited mutation):
    /// with the statement cache on and nothing sent yet, the `set_config` and the statement
    /// travel under one protocol Sync, as one implicit transaction that PostgreSQL commits
    /// at the Sync, or rolls back if either failed — no `BEGIN`, no `COMMIT`, one round
    /// trip. After earlier statements the statement and `COMMIT` are sent together (a
    /// `COMMIT` after a failed statement rolls back). Without the statement cache it is
    /// [`query`](Self::query) followed by [`commit`](Self::commit). If the future is
    /// dropped in flight the outcome is that of any commit whose reply was lost: the
    /// server finishes it either way, and the connection is clean for its next user.
    pub async fn query_commit(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PoolError> {
        self.check_live()?;
        if self.state == State::Pending && self.cache {
            let prelude = if self.read_only {
                SET_TENANT_READ_ONLY
            } else {
                SET_TENANT
            };
            // No transaction block is ever opened, so nothing is owed even if this future
            // is dropped: the server ends the implicit transaction at the Sync.
            self.state = State::Finished;
            return self.query_one_sync(prelude, sql, params).await;
        }
        if self.state == State::Pending || !self.cache {
            // Uncached statements are prepared in their own round trip first, so COMMIT
            // cannot be sent with them: it would overtake the statement.
            let rows = self.query(sql, params).await?;
            self.finish_commit().await?;
            return Ok(rows);
        }
        let client = self.client()?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(PoolError::db("preparing a statement"))?;
        // Both requests leave on the first poll, statement first. The state stays Open
        // until both replies are in, so a drop before that still queues a ROLLBACK (a
        // harmless no-op warning if the COMMIT got there first). Both replies are awaited
        // even when the statement fails (`join`, not `try_join`): its COMMIT then ends the
        // failed transaction as a rollback, and nothing is owed, so the drop sends no
        // ROLLBACK after it (which the server would answer with a "no transaction in
        // progress" warning).
        let (rows, committed) = futures::join!(
            async {
                client
                    .query(&stmt, params)
                    .await
                    .map_err(PoolError::db("running a statement"))
            },
            async {
                client
                    .batch_execute("COMMIT")
                    .await
                    .map_err(PoolError::db("committing"))
            },
        );
        // Both replies are in: the transaction is over either way (a failed COMMIT ends it
        // too, or the connection is gone), and the connection can serve others even if the
        // finished TenantTx lives on.
        self.state = State::Finished;
        self.client = None;
        let rows = rows?;
        committed?;
        Ok(rows)
    }

    /// Runs a statement expected to return exactly one row.
    pub async fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PoolError> {
        let mut rows = self.query(sql, params).await?;
        match rows.len() {
            1 => Ok(rows.remove(0)),
            n => Err(PoolError::Unavailable(format!(
                "expected one row, got {n} (statement: {sql})"
            ))),
        }
    }

    /// Runs a statement expected to return at most one row.
    pub async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PoolError> {
        let mut rows = self.query(sql, params).await?;
        Ok(if rows.is_empty() {
            None
        } else {
            Some(rows.swap_remove(0))
        })
    }

    /// Runs a statement and returns the number of rows it affected (or returned).
    pub async fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PoolError> {
        // The first statement carries the prelude, as does every statement on the one-Sync
        // read path; uncached statements go through one path.
        if self.state == State::Pending || !self.cache {
            if self.state == State::Open {
                return self
                    .client()?
                    .execute(sql, params)
                    .await
                    .map_err(PoolError::db("running a statement"));
            }
            return self.query(sql, params).await.map(|r| r.len() as u64);
        }
        let client = self.client()?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(PoolError::db("preparing a statement"))?;
        client
            .execute(&stmt, params)
            .await
            .map_err(PoolError::db("running a statement"))
    }

    /// Commits. On the one-Sync read path there is nothing to commit and nothing is sent;
    /// for another read-only transaction the reply is not awaited (see the module docs).
    pub async fn commit(mut self) -> Result<(), PoolError> {
        self.finish_commit().await
    }

    async fn finish_commit(&mut self) -> Result<(), PoolError> {
        let state = std::mem::replace(&mut self.state, State::Finished);
        // Taken, so the connection goes back to the pool when this returns (after COMMIT
        // is queued on it), even if the finished TenantTx lives on.
        let Some(client) = self.client.take() else {
            return Ok(());
        };
        if state != State::Open {
            return Ok(());
        }
        if self.read_only {
            // The first poll queues the message; the connection keeps order, so the next
            // user of this connection is behind it.
            let _ = client.batch_execute("COMMIT").now_or_never();
            return Ok(());
        }
        client
            .batch_execute("COMMIT")
            .await
            .map_err(PoolError::db("committing"))
    }

    /// Rolls back and waits for the server to confirm.
    pub async fn rollback(mut self) -> Result<(), PoolError> {
        let state = std::mem::replace(&mut self.state, State::Finished);
        if state != State::Open {
            return Ok(());
        }
        let client = self.client.as_ref().ok_or(PoolError::Finished)?;
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(PoolError::db("rolling back"))
    }
}

impl Drop for TenantTx {
    fn drop(&mut self) {
        if self.state == State::Open {
            if let Some(client) = &self.client {
                // Queue ROLLBACK before the connection goes back to the pool. Drop cannot
                // await; the first poll sends the message, which is all that is needed.
                let _ = client.batch_execute("ROLLBACK").now_or_never();
            }
        }
    }
}

/// The cross-tenant reporting pool: a BYPASSRLS, non-superuser, read-only role. Never
/// reachable from tenant routes.
#[derive(Clone)]
pub struct AdminPool {
    pool: Pool,
}

impl std::fmt::Debug for AdminPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminPool")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl AdminPool {
    /// Builds the pool and refuses a role that is (or can become) superuser, lacks
    /// BYPASSRLS, or can write any table.
    pub async fn connect(
        config: tokio_postgres::Config,
        opts: PoolOptions,
    ) -> Result<Self, PoolError> {
        let pool = Self {
            pool: build(config, &opts)?,
        };
        let client = pool.pool.get().await?;
        let (role, reasons) = safety::admin_role_problems(&client).await?;
        if !reasons.is_empty() {
            return Err(PoolError::UnsafeRole {
                pool: "admin",
                role,
                reasons,
            });
        }
        Ok(pool)
    }

    /// A connection for reports. Each statement runs in its own implicit transaction.
    pub async fn get(&self) -> Result<Object, PoolError> {
        Ok(self.pool.get().await?)
    }
}
