//! The tenant-scoped pool.
//!
//! [`TenantPool`] is the only way the application reaches PostgreSQL as the app role, and
//! it hands out nothing but [`TenantTx`]: statements scoped to one tenant by
//! `set_config(<setting>, $1, true)` (or `SET LOCAL`, see *The context carrier* below).
//! The setting is transaction-local, so it dies with the
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
//! (`Client::query_in_sync` of the vendored tokio-postgres, see
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
//! the `set_config` and the first statement are sent together (with the statement cache
//! under one Sync; without it as requests tokio-postgres pipelines because their futures
//! are polled together), so a request costs no more round trips than the same queries
//! without RLS. A read-only transaction's `COMMIT` (uncached mode) is sent
//! without waiting for its reply: it reaches the server ahead of whatever the connection's
//! next user sends, and nothing is lost if it failed. The uncached mode (pgbouncer before
//! 1.21) prepares statements inside the transaction, which the one-Sync path cannot do.
//!
//! **The context carrier** ([`PoolOptions::context_carrier`]). All of the above is the
//! default, `set_config`. With [`ContextCarrier::SetLocal`] (Citus, whose workers see only
//! a `SET LOCAL` made inside an explicit transaction block) the same paths keep their round
//! trips, with a transaction block in place of the implicit one: a one-Sync statement is
//! sent as `BEGIN [READ ONLY]; SET LOCAL <setting> = '<tenant>'; <statement>; COMMIT`
//! under one Sync (the server skips to the Sync on an error and leaves the block failed,
//! so a ROLLBACK is queued then, and if the future is dropped in flight); a real
//! transaction opens with `BEGIN [READ ONLY]; SET LOCAL …` and its first statement. The
//! `SET` carries the tenant as a literal of a parsed [`TenantId`], as the unnamed
//! statement: nothing is prepared per tenant. On plain PostgreSQL it costs more per
//! request than `set_config` (`cargo bench --bench pool`), so it is not the default; a
//! pool with `set_config` refuses to start on a database with the `citus` extension.
//!
//! [`AdminPool`] is a separate type for the cross-tenant reporting role.
//!
//! Layout: `error` ([`PoolError`]), `options` ([`PoolOptions`]), `carrier` (the carrier's
//! statements and start-up check), `tx` (the [`TenantTx`] state machine), `admin`
//! ([`AdminPool`]), `safety` (the start-up role checks), `pooler` (prepared statements
//! behind a pooler), `tenant_id`.

mod admin;
mod carrier;
mod error;
mod options;
mod pooler;
mod safety;
mod tenant_id;
mod tx;

use std::sync::Arc;

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::{NoTls, Row};

pub use admin::AdminPool;
pub use error::{Cause, ExpectedRows, PoolError};
pub use options::{ContextCarrier, PoolOptions};
pub use pooler::StatementSupport;
pub use tenant_id::{InvalidTenantId, TenantId};
pub use tx::TenantTx;

/// What every [`TenantTx`] of a pool needs from it, shared.
#[derive(Debug)]
pub(crate) struct Settings {
    setting: Box<str>,
    tenant_column: Box<str>,
    cache: bool,
    carrier: ContextCarrier,
    /// `SET LOCAL <setting> = '` (see [`carrier::set_local_prefix`]).
    set_local_prefix: Box<str>,
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
        .map_err(|e| PoolError::Internal {
            context: "building the pool".into(),
            source: error::Cause::Build(e),
        })
}

/// The application's pool. Every connection it lends is inside a [`TenantTx`].
#[derive(Clone)]
pub struct TenantPool {
    pool: Pool,
    settings: Arc<Settings>,
}

impl std::fmt::Debug for TenantPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantPool")
            .field("status", &self.pool.status())
            .field("setting", &self.settings.setting)
            .field("carrier", &self.settings.carrier)
            .finish()
    }
}

impl TenantPool {
    /// Builds the pool and checks, on one real connection, that the role is safe for it:
    /// not superuser, not BYPASSRLS, owning no tenant table, directly or through any role
    /// it is a member of. Refuses with [`PoolError::UnsafeRole`] otherwise, and with
    /// [`PoolError::Unsupported`] if the context carrier cannot work here: `set_config` on
    /// a database with the `citus` extension, or `SET LOCAL` there without
    /// `citus.propagate_set_commands = 'local'` for the role.
    pub async fn connect(
        config: tokio_postgres::Config,
        opts: PoolOptions,
    ) -> Result<Self, PoolError> {
        let pool = Self {
            pool: build(config, &opts)?,
            settings: Arc::new(Settings {
                set_local_prefix: carrier::set_local_prefix(&opts.tenant_setting).into(),
                setting: opts.tenant_setting.into(),
                tenant_column: opts.tenant_column.into(),
                cache: opts.statement_cache,
                carrier: opts.context_carrier,
            }),
        };
        pool.check_role().await?;
        pool.check_carrier().await?;
        Ok(pool)
    }

    /// Refuses a context carrier that cannot reach the data on this database (Citus).
    async fn check_carrier(&self) -> Result<(), PoolError> {
        let client = self.pool.get().await?;
        let (citus, role) = carrier::citus_state(&client).await?;
        match carrier::carrier_problem(self.settings.carrier, &citus, &role, &self.settings.setting)
        {
            None => Ok(()),
            Some(reason) => Err(PoolError::Unsupported {
                pool: "app",
                reason,
            }),
        }
    }

    /// How this pool carries the tenant context ([`PoolOptions::context_carrier`]).
    pub fn context_carrier(&self) -> ContextCarrier {
        self.settings.carrier
    }

    /// Runs the start-up role check again (for readiness probes).
    pub async fn check_role(&self) -> Result<(), PoolError> {
        let client = self.pool.get().await?;
        let (role, reasons) =
            safety::app_role_problems(&client, &self.settings.tenant_column).await?;
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
        Ok(TenantTx::new(
            self.pool.clone(),
            self.settings.clone(),
            tenant,
            read_only,
        ))
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
                .ok_or_else(|| PoolError::missing_row("inspecting an idle connection"))
        };
        let row = first(
            client
                .query_typed(
                    "SELECT pg_backend_pid(), current_setting($1, true)",
                    &[(&&*self.settings.setting, tokio_postgres::types::Type::TEXT)],
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
        self.settings.cache
    }

    /// Runs `sql` for `tenant` as one read-only transaction over the simple query
    /// protocol, in one Query message: `SELECT set_config(<setting>, <tenant>, true),
    /// set_config('transaction_read_only', 'on', true); <sql>`, which PostgreSQL runs as a
    /// single implicit transaction ended when the message is done (with `SET LOCAL`:
    /// `BEGIN READ ONLY; SET LOCAL <setting> = '<tenant>'; <sql>; COMMIT`, and a ROLLBACK
    /// queued after it if it failed). One round trip, no prepared statement (so it works
    /// behind any transaction-mode pooler), and the connection goes back to the pool at
    /// once with nothing owed. Returns the rows of `sql` only, as text.
    ///
    /// It takes no parameters: `sql` must be built from trusted text only, with every
    /// value quoted by [`crate::policy::literal`].
    pub(crate) async fn simple_read_once(
        &self,
        tenant: TenantId,
        sql: &str,
    ) -> Result<Vec<tokio_postgres::SimpleQueryRow>, PoolError> {
        let client = self.pool.get().await?;
        let setting = &self.settings.setting;
        let (text, prelude_rows) = match self.settings.carrier {
            ContextCarrier::SetConfigLocal => (
                format!(
                    "SELECT set_config({}, {}, true), set_config('transaction_read_only', 'on', true); {sql}",
                    crate::policy::literal(setting),
                    crate::policy::literal(&tenant.to_string()),
                ),
                true,
            ),
            ContextCarrier::SetLocal => (
                format!(
                    "BEGIN READ ONLY; {}{tenant}'; {sql}; COMMIT",
                    self.settings.set_local_prefix
                ),
                false,
            ),
        };
        let guard = tx::RollbackOnDrop::armed_if(
            self.settings.carrier == ContextCarrier::SetLocal,
            &client,
        );
        let result = client.simple_query(&text).await;
        if !matches!(&result, Err(e) if e.as_db_error().is_some()) {
            guard.disarm();
        }
        let messages = result.map_err(PoolError::db("running a statement"))?;
        // With set_config the prelude's row comes first, ended by its CommandComplete;
        // BEGIN, SET and COMMIT return no rows.
        let mut prelude_done = !prelude_rows;
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
