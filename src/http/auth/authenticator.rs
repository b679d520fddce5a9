//! [`Authenticator`]: resolves a request's credential (an API key, a JWT, the admin token)
//! to who is calling.

use std::time::Duration;

use axum::http::HeaderMap;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use uuid::Uuid;

use super::cache::KeyCache;
use super::jwt::{AuthConfigError, JwtConfig, JwtVerifier};
use super::keys::{bearer, key_tenant, KEY_PREFIX};
use super::last_used::LastUsed;
use super::principal::{Principal, Role};
use crate::http::error::ApiError;
use crate::http::limits::CredentialId;
use crate::pool::{TenantId, TenantPool};

/// Resolves credentials. One per server.
pub struct Authenticator {
    jwt: Option<JwtVerifier>,
    admin_token_hash: Option<[u8; 32]>,
    cache: KeyCache,
    last_used: LastUsed,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("jwt", &self.jwt.is_some())
            .field("admin", &self.admin_token_hash.is_some())
            .finish()
    }
}

impl Authenticator {
    /// Builds the authenticator.
    pub fn new(
        jwt: Option<&JwtConfig>,
        admin_token: Option<&SecretString>,
        cache_ttl: Duration,
    ) -> Result<Self, AuthConfigError> {
        Ok(Self {
            jwt: jwt.map(JwtVerifier::new).transpose()?,
            admin_token_hash: admin_token
                .map(|t| Sha256::digest(t.expose_secret().as_bytes()).into()),
            cache: KeyCache::new(cache_ttl),
            last_used: LastUsed::default(),
        })
    }

    /// Whether `headers` carry the admin token (compared in constant time, through hashes
    /// so the length does not leak either).
    pub fn is_admin(&self, headers: &HeaderMap) -> bool {
        let (Some(want), Some(given)) = (&self.admin_token_hash, bearer(headers)) else {
            return false;
        };
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        bool::from(want.ct_eq(&given))
    }

    /// Resolves the credential: who is calling, and the credential's identity for its
    /// limits. An API key that is not cached is looked up as a statement of its own that
    /// gives its connection back at once (see [`Self::lookup_key`]); nothing else touches
    /// the database, so no connection is held while the request's body is still coming.
    pub(super) async fn authenticate(
        &self,
        headers: &HeaderMap,
        pool: &TenantPool,
    ) -> Result<(Principal, CredentialId), ApiError> {
        let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
        if !token.starts_with(KEY_PREFIX) {
            let jwt = self.jwt.as_ref().ok_or(ApiError::Unauthorized)?;
            return jwt.verify(token);
        }
        let tenant = key_tenant(token).ok_or(ApiError::Unauthorized)?;
        let (key_id, role, actor) = match self.cache.get(token) {
            // The tenant is part of the key, so an exact hit is always this tenant's;
            // checked anyway, as the old digest-keyed cache did.
            Some(hit) if hit.tenant == tenant => (hit.key_id, hit.role, hit.actor),
            _ => {
                let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                // Boxed: the lookup's statement future is large and would otherwise be
                // inline in every request's future (moved by memcpy into its box per
                // request); only a cache miss, a round trip anyway, allocates.
                let (key_id, role) = Box::pin(Self::lookup_key(pool, tenant, &hash))
                    .await?
                    .ok_or(ApiError::Unauthorized)?;
                self.cache.put(token, tenant, key_id, role);
                (key_id, role, super::cache::actor(key_id))
            }
        };
        self.last_used.touch(tenant, key_id);
        let principal = Principal {
            tenant,
            role,
            actor,
        };
        Ok((principal, key_id.as_u128()))
    }

    /// Finds an active key by its hash inside its tenant's RLS scope, as its own implicit
    /// transaction under one Sync: the connection is borrowed for that round trip only.
    /// The statement names the key's tenant (parsed from the key, the same tenant whose
    /// context it runs in) as well: on a database sharded by tenant (Citus) that sends
    /// it to the tenant's shard instead of every shard; RLS bounds it either way. Always
    /// on, whatever the routing-hint setting: it costs nothing and the key cache hides it.
    /// With the statement cache on it is the one-Sync read path of
    /// [`TenantPool::begin_read_only`]; without it (a pooler that cannot keep prepared
    /// statements), the same statement over the simple query protocol, with the hash as a
    /// quoted literal of our own making.
    async fn lookup_key(
        pool: &TenantPool,
        tenant: TenantId,
        hash: &[u8; 32],
    ) -> Result<Option<(Uuid, Role)>, ApiError> {
        if pool.statement_cache() {
            let mut tx = pool.begin_read_only(tenant).await?;
            let row = tx
                .query_opt(
                    "SELECT id, role FROM api_keys \
                     WHERE tenant_id = $1 AND key_hash = $2 AND revoked_at IS NULL",
                    &[&tenant.as_uuid(), &&hash[..]],
                )
                .await?;
            return Ok(
                row.and_then(|r| Role::parse(r.get::<_, &str>(1)).map(|role| (r.get(0), role)))
            );
        }
        let sql = format!(
            "SELECT id, role FROM api_keys \
             WHERE tenant_id = '{}' AND key_hash = {}::bytea AND revoked_at IS NULL",
            tenant.as_uuid().hyphenated(),
            crate::policy::literal(&format!("\\x{}", hex::encode(hash)))
        );
        let rows = pool.simple_read_once(tenant, &sql).await?;
        Ok(rows.first().and_then(|r| {
            let id = Uuid::try_parse(r.get(0)?).ok()?;
            Some((id, Role::parse(r.get(1)?)?))
        }))
    }

    /// The bench-only baseline's authentication (see [`crate::http::compare`]): API keys
    /// only, looked up with an explicit tenant filter on a connection without RLS, checked
    /// out only when the key is not cached.
    #[cfg(feature = "bench-baseline")]
    pub(crate) async fn authenticate_explicit(
        &self,
        headers: &HeaderMap,
        pool: &deadpool_postgres::Pool,
    ) -> Result<Principal, ApiError> {
        let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
        let tenant = key_tenant(token).ok_or(ApiError::Unauthorized)?;
        let (key_id, role, actor) = match self.cache.get(token) {
            Some(hit) if hit.tenant == tenant => (hit.key_id, hit.role, hit.actor),
            _ => {
                let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
                let client = pool
                    .get()
                    .await
                    .map_err(|e| ApiError::from(crate::pool::PoolError::from(e)))?;
                let stmt = client
                    .prepare_cached(
                        "SELECT id, role FROM api_keys WHERE tenant_id = $1 AND key_hash = $2 AND revoked_at IS NULL",
                    )
                    .await
                    .map_err(|e| ApiError::from(crate::pool::PoolError::db("looking up a key")(e)))?;
                let row = client
                    .query_opt(&stmt, &[&tenant.as_uuid(), &&hash[..]])
                    .await
                    .map_err(|e| ApiError::from(crate::pool::PoolError::db("looking up a key")(e)))?
                    .ok_or(ApiError::Unauthorized)?;
                let key_id: Uuid = row.get(0);
                let role = Role::parse(row.get::<_, &str>(1)).ok_or(ApiError::Unauthorized)?;
                self.cache.put(token, tenant, key_id, role);
                (key_id, role, super::cache::actor(key_id))
            }
        };
        self.last_used.touch(tenant, key_id);
        Ok(Principal {
            tenant,
            role,
            actor,
        })
    }

    /// Forgets a key at once (called when it is revoked here).
    pub fn evict_key(&self, key_id: Uuid) {
        self.cache.evict(key_id);
    }

    /// Writes the recorded last-used times, one transaction per tenant. Returns how many
    /// keys were updated.
    pub async fn flush_last_used(&self, pool: &TenantPool) -> usize {
        self.last_used.flush(pool).await
    }
}
