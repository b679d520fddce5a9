//! # tenantguard
//!
//! Makes cross-tenant data leaks structurally impossible for a multi-tenant SaaS on
//! PostgreSQL: the database itself returns only the current tenant's rows, whatever SQL the
//! application sends.
//!
//! | module | what it is |
//! |---|---|
//! | [`cluster`] | a private PostgreSQL run from the installed server binaries (dev, tests, benches) |
//! | [`policy`] | the declarative RLS policy engine: declare tenant tables, plan, apply, check drift |
//! | [`schema`] | the reference SaaS schema: migrations and its policy declaration |
//! | [`pool`] | the tenant-scoped pool: `TenantPool::begin(tenant) -> TenantTx`, and `AdminPool` |
//! | [`audit`] | reads any database's catalogs and reports every way tenant isolation can fail |
//! | [`probe`] | attacks any database inside rolled-back transactions to prove isolation holds |
//! | [`isolation`] | the isolation contract: tenancy model, predicate form, context carrier |
//! | [`outcome`] | the one outcome policy (verdicts, exit codes) every probe follows |
//! | [`http`] | the reference SaaS API server (`serve`, `dev`) |
//! | [`telemetry`] | logging set-up for `serve` and `dev` |
//! | [`seed`] | demo data for `dev` |
//! | [`cli`] | the `tenantguard` command, one module per subcommand |
//! | `testing` | test support (feature `testing`): a fresh migrated database per test |
#![warn(missing_docs)]

pub mod audit;
pub mod cli;
pub mod cluster;
pub mod http;
pub mod isolation;
pub mod outcome;
pub mod policy;
pub mod pool;
pub mod probe;
pub mod schema;
pub mod secrets;
pub mod seed;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;

pub use pool::{AdminPool, PoolError, PoolOptions, TenantId, TenantPool, TenantTx};

/// Renders an error with its chain of causes, one `: `-separated line (tokio-postgres puts
/// the server's message in the source of its error).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let msg = s.to_string();
        if !out.contains(&msg) {
            out.push_str(": ");
            out.push_str(&msg);
        }
        cur = s.source();
    }
    out
}
