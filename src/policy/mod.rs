//! The declarative policy engine.
//!
//! Tenant tables are declared once ([`PolicySet`]: in Rust for the reference schema, in
//! TOML for someone else's database). [`plan`] reads the live catalogs and lists every
//! [`Change`] needed to make the database match the declaration: roles and their
//! attributes, the `tenantguard.current_tenant_id()` function, the tenant column (added and
//! backfilled if missing), ENABLE and FORCE ROW LEVEL SECURITY, one policy per command for
//! the app role, and exact grants. [`apply`] runs the plan in one transaction, so a
//! drifted policy is replaced atomically and a second run finds nothing to do;
//! [`check`] reports the plan without changing anything.
//!
//! Policies are compared by what PostgreSQL stores (the deparsed expression, command,
//! roles, permissive flag), never by name: a hand-edited policy that kept its name is
//! still drift.

mod model;
mod plan;

pub use model::{ident, literal, Command, PolicySet, Roles, TenantTable, FUNCTION_SCHEMA};
pub use plan::{apply, apply_prelude, check, plan, plan_prelude, Change};
pub(crate) use plan::{refuse_blocking, role_drift, RoleDrift, RoleSpec};

/// Errors from planning or applying policies.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The declaration is invalid.
    #[error("invalid policy configuration: {0}")]
    Config(String),
    /// The database is not in a state the declaration can be applied to; nothing was changed.
    #[error("cannot apply policies: {0}")]
    Precondition(String),
    /// A database error.
    #[error("database error while {context}: {source}")]
    Db {
        /// What was being done.
        context: String,
        /// The error, with its SQLSTATE.
        #[source]
        source: tokio_postgres::Error,
    },
}

impl PolicyError {
    pub(crate) fn db(context: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> Self {
        let context = context.into();
        move |source| PolicyError::Db { context, source }
    }
}
