//! The pools' settings.

use std::time::Duration;

pub use crate::isolation::ContextCarrier;

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
    /// How the tenant context reaches the database (app pool only).
    /// [`ContextCarrier::SetConfigLocal`] (the default) binds it to `set_config(…, true)`,
    /// without `BEGIN`/`COMMIT` on the one-Sync paths; [`ContextCarrier::SetLocal`] sends
    /// `BEGIN [READ ONLY]; SET LOCAL <setting> = '<tenant>'; <statement>; COMMIT` under one
    /// Sync instead, the only form Citus propagates to its workers. The pool refuses
    /// `SetConfigLocal` on a database with the `citus` extension.
    pub context_carrier: ContextCarrier,
}

impl Default for PoolOptions {
    fn default() -> Self {
        Self {
            max_size: 16,
            wait_timeout: Duration::from_secs(5),
            tenant_setting: "app.tenant_id".into(),
            tenant_column: "tenant_id".into(),
            statement_cache: true,
            context_carrier: ContextCarrier::SetConfigLocal,
        }
    }
}
