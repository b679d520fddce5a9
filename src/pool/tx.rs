//! [`TenantTx`]: the state machine of one tenant transaction (see the module docs of
//! [`crate::pool`] for the paths it takes).

use std::sync::Arc;

use deadpool_postgres::{Object, Pool};
use futures::FutureExt;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Row, SyncStep};

use super::carrier::{self, SET_TENANT, SET_TENANT_READ_ONLY};
use super::error::ExpectedRows;
use super::options::ContextCarrier;
use super::{PoolError, Settings, TenantId};

/// Where a [`TenantTx`] is. The connection lives inside the state that needs it, so "a
/// ROLLBACK is owed" and "a connection is held" cannot disagree.
// Not boxed: the TenantTx held the same Object inline before (as an Option), and a box
// would cost an allocation per transaction on the request path.
#[allow(clippy::large_enum_variant)]
enum State {
    /// No transaction block open and no connection held: nothing sent yet, or only
    /// one-Sync statements (each its own transaction, ended at its own Sync).
    Idle,
    /// A transaction block is open on this held connection: a ROLLBACK is owed unless
    /// it is committed.
    Open(Object),
    /// Committed or rolled back.
    Finished,
}

impl State {
    fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Open(_) => "open",
            State::Finished => "finished",
        }
    }
}

/// A transaction scoped to one tenant. Commit is explicit; dropping it (an error, a panic,
/// a cancelled request) rolls back.
///
/// It takes a connection from the pool at its first statement, not before. Once it has
/// opened a transaction block it holds that connection, and returns it only after `COMMIT`
/// or `ROLLBACK` has been queued on it, so the next user starts clean. A statement on a
/// one-Sync path (see the module docs) is its own transaction, ended at its Sync:
/// it borrows a connection for just that statement, as a plain autocommit query would, so
/// a request does not keep a connection from others while it parses, checks and
/// serializes.
pub struct TenantTx {
    pool: Pool,
    settings: Arc<Settings>,
    tenant: TenantId,
    /// The tenant id as text (hyphenated, lowercase ASCII): what the carrier sends.
    tenant_text: [u8; 36],
    read_only: bool,
    state: State,
}

impl std::fmt::Debug for TenantTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantTx")
            .field("tenant", &self.tenant)
            .field("read_only", &self.read_only)
            .field("state", &self.state.name())
            .finish()
    }
}

/// Queues a `ROLLBACK` on a borrowed connection when dropped armed: a one-Sync `SET LOCAL`
/// statement opens its own transaction block, which a server error (or a cancellation
/// mid-flight, whose outcome is unknown) can leave failed at its Sync. Declared after the
/// connection, so it is dropped first and the ROLLBACK is queued before the connection
/// goes back to the pool. Where the block was in fact closed, the server answers the
/// ROLLBACK with a warning and nothing else happens.
pub(crate) struct RollbackOnDrop<'a>(Option<&'a Object>);

impl<'a> RollbackOnDrop<'a> {
    /// Armed on `client` if `armed`.
    pub(crate) fn armed_if(armed: bool, client: &'a Object) -> Self {
        RollbackOnDrop(armed.then_some(client))
    }

    pub(crate) fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for RollbackOnDrop<'_> {
    fn drop(&mut self) {
        if let Some(client) = self.0 {
            // Drop cannot await; the first poll queues the message, which is all it takes.
            let _ = client.batch_execute("ROLLBACK").now_or_never();
        }
    }
}

impl TenantTx {
    pub(crate) fn new(
        pool: Pool,
        settings: Arc<Settings>,
        tenant: TenantId,
        read_only: bool,
    ) -> Self {
        // Formatted once into the TenantTx itself: no String allocated, no fmt machinery
        // per request.
        let mut tenant_text = [0u8; 36];
        tenant.as_uuid().hyphenated().encode_lower(&mut tenant_text);
        TenantTx {
            pool,
            settings,
            tenant,
            tenant_text,
            read_only,
            state: State::Idle,
        }
    }

    /// The tenant this transaction is scoped to.
    pub fn tenant(&self) -> TenantId {
        self.tenant
    }

    /// Whether this is a `READ ONLY` transaction.
    pub fn is_read_only(&self) -> bool {
        self.read_only
    }

    /// The tenant id as the carrier sends it.
    fn tenant_text(&self) -> &str {
        // Always ASCII (written by Uuid's encoder); "" cannot happen and would fail closed.
        std::str::from_utf8(&self.tenant_text).unwrap_or("")
    }

    /// `SET LOCAL <setting> = '<tenant>'`: the tenant is a parsed UUID, so the literal
    /// cannot carry anything else.
    fn set_local_sql(&self) -> String {
        let prefix = &self.settings.set_local_prefix;
        let mut sql = String::with_capacity(prefix.len() + 37);
        sql.push_str(prefix);
        sql.push_str(self.tenant_text());
        sql.push('\'');
        sql
    }

    /// Whether statements go on the one-Sync read path (see the module docs).
    fn one_sync(&self) -> bool {
        self.read_only && self.settings.cache
    }

    /// Runs a statement and returns its rows. Statements are prepared once per connection
    /// (or, without the statement cache, inside this transaction).
    pub async fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PoolError> {
        match &self.state {
            State::Finished => Err(PoolError::Finished),
            // Stays Idle: the context ends at this request's Sync, nothing is owed.
            State::Idle if self.one_sync() => self.query_one_sync(sql, params).await,
            State::Idle => self.open_with(sql, params).await,
            State::Open(client) => {
                let stmt = statement(client, self.settings.cache, sql).await?;
                client
                    .query(&stmt, params)
                    .await
                    .map_err(PoolError::db("running a statement"))
            }
        }
    }

    /// Opens the transaction block with the first statement: `BEGIN [READ ONLY]`, the
    /// carrier and the statement in one round trip.
    async fn open_with(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PoolError> {
        let client = self.pool.get().await?;
        let begin = carrier::begin(self.read_only);
        let carrier = self.settings.carrier;
        if self.settings.cache {
            // Prepared before anything transactional is sent, so a statement that fails
            // to prepare leaves no transaction behind (the connection just goes back).
            let stmt = client
                .prepare_cached(sql)
                .await
                .map_err(PoolError::db("preparing a statement"))?;
            let begin = client
                .prepare_cached(begin)
                .await
                .map_err(PoolError::db("preparing BEGIN"))?;
            let set = match carrier {
                ContextCarrier::SetConfigLocal => Some(
                    client
                        .prepare_cached(SET_TENANT)
                        .await
                        .map_err(PoolError::db("preparing set_config"))?,
                ),
                ContextCarrier::SetLocal => None,
            };
            // From here on a ROLLBACK is owed, even if this future is dropped mid-flight.
            self.state = State::Open(client);
            let State::Open(client) = &self.state else {
                return Err(PoolError::Finished);
            };
            let tenant_text = self.tenant_text();
            let set_params: [&(dyn ToSql + Sync); 2] = [&&*self.settings.setting, &tenant_text];
            let set_local;
            let context = match &set {
                Some(set) => SyncStep::Prepared(set, &set_params),
                None => {
                    set_local = self.set_local_sql();
                    SyncStep::Unnamed(&set_local)
                }
            };
            // One Sync; the block stays open after it (failed, if a statement failed).
            return client
                .query_in_sync(
                    &[SyncStep::Prepared(&begin, &[]), context],
                    &stmt,
                    params,
                    &[],
                )
                .await
                .map_err(PoolError::db("running a statement"));
        }
        // Uncached: statements are prepared inside the transaction (a pooler may move the
        // next transaction to another server connection). futures' try_join polls in
        // order, so the requests leave in this order, and their executions after their
        // Parse replies, still in this order.
        self.state = State::Open(client);
        let State::Open(client) = &self.state else {
            return Err(PoolError::Finished);
        };
        match carrier {
            ContextCarrier::SetConfigLocal => {
                let tenant_text = self.tenant_text();
                let set_params: [&(dyn ToSql + Sync); 2] = [&&*self.settings.setting, &tenant_text];
                let (_, _, rows) = futures::try_join!(
                    async {
                        client
                            .batch_execute(begin)
                            .await
                            .map_err(PoolError::db("beginning the transaction"))
                    },
                    async {
                        client
                            .query(SET_TENANT, &set_params)
                            .await
                            .map_err(PoolError::db("setting the tenant"))
                    },
                    async {
                        client
                            .query(sql, params)
                            .await
                            .map_err(PoolError::db("running a statement"))
                    },
                )?;
                Ok(rows)
            }
            ContextCarrier::SetLocal => {
                // One simple Query: BEGIN opens the block, so the SET LOCAL is inside it.
                let prelude = format!("{begin}; {}", self.set_local_sql());
                let (_, rows) = futures::try_join!(
                    async {
                        client
                            .batch_execute(&prelude)
                            .await
                            .map_err(PoolError::db("beginning the transaction"))
                    },
                    async {
                        client
                            .query(sql, params)
                            .await
                            .map_err(PoolError::db("running a statement"))
                    },
                )?;
                Ok(rows)
            }
        }
    }

    /// `sql` as its own transaction under one Sync, on a connection borrowed for it:
    /// with `set_config`, the prelude (`SET_TENANT` or `SET_TENANT_READ_ONLY`) and `sql`,
    /// an implicit transaction the server commits at the Sync if both succeeded and rolls
    /// back otherwise; with `SET LOCAL`, `BEGIN [READ ONLY]; SET LOCAL …; sql; COMMIT`.
    async fn query_one_sync(
        &self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PoolError> {
        // Returned to the pool when this function ends (or its future is dropped).
        let client = self.pool.get().await?;
        let stmt = client
            .prepare_cached(sql)
            .await
            .map_err(PoolError::db("preparing a statement"))?;
        match self.settings.carrier {
            ContextCarrier::SetConfigLocal => {
                let prelude = if self.read_only {
                    SET_TENANT_READ_ONLY
                } else {
                    SET_TENANT
                };
                let set = client
                    .prepare_cached(prelude)
                    .await
                    .map_err(PoolError::db("preparing set_config"))?;
                let tenant_text = self.tenant_text();
                let set_params: [&(dyn ToSql + Sync); 2] = [&&*self.settings.setting, &tenant_text];
                client
                    .query_in_sync(&[SyncStep::Prepared(&set, &set_params)], &stmt, params, &[])
                    .await
                    .map_err(PoolError::db("running a statement"))
            }
            ContextCarrier::SetLocal => {
                let begin = client
                    .prepare_cached(carrier::begin(self.read_only))
                    .await
                    .map_err(PoolError::db("preparing BEGIN"))?;
                let commit = client
                    .prepare_cached("COMMIT")
                    .await
                    .map_err(PoolError::db("preparing COMMIT"))?;
                let set_local = self.set_local_sql();
                // Armed from the send on; no await point lies between here and it.
                let guard = RollbackOnDrop::armed_if(true, &client);
                let result = client
                    .query_in_sync(
                        &[
                            SyncStep::Prepared(&begin, &[]),
                            SyncStep::Unnamed(&set_local),
                        ],
                        &stmt,
                        params,
                        &[SyncStep::Prepared(&commit, &[])],
                    )
                    .await;
                // A server error left the block failed: the ROLLBACK is owed. Anything
                // else either committed or never reached the server (or lost the
                // connection, which ends the block with it).
                if !matches!(&result, Err(e) if e.as_db_error().is_some()) {
                    guard.disarm();
                }
                result.map_err(PoolError::db("running a statement"))
            }
        }
    }

    /// Runs `sql` as the transaction's last statement and commits with it: the
    /// transaction's statements take effect together if all of them succeed, and none
    /// does otherwise. Afterwards the transaction is finished, as after
    /// [`commit`](Self::commit) (which then sends nothing) — call it only when nothing
    /// that follows may still fail and want a rollback.
    ///
    /// This is the cheap way to make a single-statement write (an audited mutation):
    /// with the statement cache on and nothing sent yet, the context and the statement
    /// travel under one protocol Sync — with `set_config`, as one implicit transaction
    /// that PostgreSQL commits at the Sync, or rolls back if either failed; with `SET
    /// LOCAL`, between `BEGIN` and `COMMIT` — one round trip. After earlier statements
    /// the statement and `COMMIT` are sent together (a `COMMIT` after a failed statement
    /// rolls back). Without the statement cache it is [`query`](Self::query) followed by
    /// [`commit`](Self::commit). If the future is dropped in flight the outcome is that
    /// of any commit whose reply was lost: the server finishes it either way, and the
    /// connection is clean for its next user.
    pub async fn query_commit(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, PoolError> {
        match (&self.state, self.settings.cache) {
            (State::Finished, _) => Err(PoolError::Finished),
            (State::Idle, true) => {
                // No transaction block is left open by this, so nothing is owed even if
                // this future is dropped (a SET LOCAL block cleans up after itself).
                self.state = State::Finished;
                self.query_one_sync(sql, params).await
            }
            // Uncached statements are prepared in their own round trip first, so COMMIT
            // cannot be sent with them: it would overtake the statement.
            (State::Idle | State::Open(_), false) => {
                let rows = self.query(sql, params).await?;
                self.finish_commit().await?;
                Ok(rows)
            }
            (State::Open(client), true) => {
                let stmt = client
                    .prepare_cached(sql)
                    .await
                    .map_err(PoolError::db("preparing a statement"))?;
                // Both requests leave on the first poll, statement first. The state stays
                // Open until both replies are in, so a drop before that still queues a
                // ROLLBACK (a harmless no-op warning if the COMMIT got there first). Both
                // replies are awaited even when the statement fails (`join`, not
                // `try_join`): its COMMIT then ends the failed transaction as a rollback,
                // and nothing is owed, so no ROLLBACK follows it (which the server would
                // answer with a "no transaction in progress" warning).
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
                // Both replies are in: the transaction is over either way (a failed
                // COMMIT ends it too, or the connection is gone), and the connection goes
                // back to serve others even if the finished TenantTx lives on.
                self.state = State::Finished;
                let rows = rows?;
                committed?;
                Ok(rows)
            }
        }
    }

    /// Runs a statement expected to return exactly one row; any other count is a
    /// [`PoolError::RowCount`].
    pub async fn query_one(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, PoolError> {
        let mut rows = self.query(sql, params).await?;
        match rows.len() {
            1 => Ok(rows.swap_remove(0)),
            got => Err(PoolError::RowCount {
                expected: ExpectedRows::One,
                got,
                statement: sql.into(),
            }),
        }
    }

    /// Runs a statement expected to return at most one row; more is a
    /// [`PoolError::RowCount`], as in tokio-postgres.
    pub async fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, PoolError> {
        let mut rows = self.query(sql, params).await?;
        match rows.len() {
            0 => Ok(None),
            1 => Ok(rows.pop()),
            got => Err(PoolError::RowCount {
                expected: ExpectedRows::AtMostOne,
                got,
                statement: sql.into(),
            }),
        }
    }

    /// Runs a statement and returns the number of rows it affected (or returned).
    pub async fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, PoolError> {
        match &self.state {
            State::Finished => Err(PoolError::Finished),
            // The first statement carries the context, as does every statement on the
            // one-Sync read path.
            State::Idle => self.query(sql, params).await.map(|r| r.len() as u64),
            State::Open(client) => {
                let stmt = statement(client, self.settings.cache, sql).await?;
                client
                    .execute(&stmt, params)
                    .await
                    .map_err(PoolError::db("running a statement"))
            }
        }
    }

    /// Commits. On the one-Sync read path there is nothing to commit and nothing is sent;
    /// for another read-only transaction the reply is not awaited (see the module docs).
    pub async fn commit(mut self) -> Result<(), PoolError> {
        self.finish_commit().await
    }

    /// Commits at once where nothing needs waiting for (a read-only transaction, whose
    /// `COMMIT` is queued and not waited for, or one that never opened a block): `None`
    /// means [`Self::commit`] must be awaited. Lets the request path box the awaiting
    /// commit future only for writes (see `http::auth::scope`).
    pub(crate) fn try_commit_now(&mut self) -> Option<Result<(), PoolError>> {
        if self.read_only || !matches!(self.state, State::Open(_)) {
            self.finish_commit().now_or_never()
        } else {
            None
        }
    }

    async fn finish_commit(&mut self) -> Result<(), PoolError> {
        // Taken, so the connection goes back to the pool when this returns (after COMMIT
        // is queued on it), even if the finished TenantTx lives on.
        let State::Open(client) = std::mem::replace(&mut self.state, State::Finished) else {
            return Ok(());
        };
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
        let State::Open(client) = std::mem::replace(&mut self.state, State::Finished) else {
            return Ok(());
        };
        client
            .batch_execute("ROLLBACK")
            .await
            .map_err(PoolError::db("rolling back"))
    }
}

impl Drop for TenantTx {
    fn drop(&mut self) {
        if let State::Open(client) = &self.state {
            // Queue ROLLBACK before the connection goes back to the pool. Drop cannot
            // await; the first poll sends the message, which is all that is needed.
            let _ = client.batch_execute("ROLLBACK").now_or_never();
        }
    }
}

/// `sql`'s statement on an open connection: from the connection's statement cache, or,
/// without it, prepared for this one use, which is what tokio-postgres does itself for a
/// `&str` statement (same messages on the wire; a failure reads as the statement's own).
async fn statement(
    client: &Object,
    cache: bool,
    sql: &str,
) -> Result<tokio_postgres::Statement, PoolError> {
    if cache {
        client
            .prepare_cached(sql)
            .await
            .map_err(PoolError::db("preparing a statement"))
    } else {
        client
            .prepare(sql)
            .await
            .map_err(PoolError::db("running a statement"))
    }
}
