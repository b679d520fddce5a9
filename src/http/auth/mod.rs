//! Authentication and the one-tenant-transaction-per-request layer.
//!
//! Tenant credentials are API keys (`tgk_<tenant as 32 hex>_<secret>`) and JWTs from an
//! identity provider. An API key names its tenant, so it is looked up *inside that
//! tenant's RLS scope*, as a read-only statement of its own under one Sync (its own
//! implicit transaction, the connection borrowed for that round trip only): no query ever
//! reads another tenant's keys, a forged tenant part simply finds nothing, and no
//! connection waits for the request's body. A 5-second in-memory cache skips the lookup
//! for hot keys; revoking through this server evicts at once, elsewhere within the TTL.
//! `last_used_at` is kept in memory and written in batches by [`Authenticator::flush_last_used`].
//!
//! [`tenant_scope`] then applies the tenant's and the credential's limits
//! ([`super::limits`]), reads the body, opens the request's [`TenantTx`](crate::TenantTx)
//! (READ ONLY for GET/HEAD), hands it to the handler through the [`Db`] extractor, and
//! commits only if the handler answered with a success status; an error, a panic or a
//! dropped connection rolls back.
//! Admin routes use [`admin_guard`] and a separate token: neither credential works on the
//! other's routes.
//!
//! One file per job: `principal` (roles, the caller, the role-checking extractor), `keys`
//! (the key format, new keys, the bearer header), `jwt`, `cache` (verified keys),
//! `last_used` (batched use records), `authenticator` (resolving a credential), `scope`
//! (the tenant and admin layers and the [`Db`] extractor).

mod authenticator;
mod cache;
mod jwt;
mod keys;
mod last_used;
mod principal;
mod scope;

pub use authenticator::Authenticator;
pub use jwt::{AuthConfigError, JwtConfig, JwtKey};
pub use keys::{new_api_key, NewKey, KEY_PREFIX};
pub use principal::{Admin, Member, MinRole, Need, Principal, Role, Viewer};
pub(crate) use scope::Scoped;
pub use scope::{admin_guard, tenant_scope, Db, TenantScope, TenantScopeLayer};
