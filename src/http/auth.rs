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
//! ([`super::limits`]), reads the body, opens the request's [`TenantTx`] (READ ONLY for
//! GET/HEAD), hands it to the handler through the [`Db`] extractor, and commits only if
//! the handler answered with a success status; an error, a panic or a dropped connection
//! rolls back.
//! Admin routes use [`admin_guard`] and a separate token: neither credential works on the
//! other's routes.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::{Duration, Instant};

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use rand::distributions::Alphanumeric;
use rand::Rng;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};
use uuid::Uuid;

use super::error::ApiError;
use super::limits::CredentialId;
use super::AppState;
use crate::pool::{TenantId, TenantPool, TenantTx};

/// A role inside a tenant, weakest first: each role can do what the ones before it can.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads.
    Viewer,
    /// Also writes projects, tasks, documents and comments.
    Member,
    /// Also manages members, API keys, webhooks and invoices, and reads the audit log.
    Admin,
    /// Everything, including granting the owner role.
    Owner,
}

impl Role {
    /// The name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Member => "member",
            Role::Admin => "admin",
            Role::Owner => "owner",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "viewer" => Role::Viewer,
            "member" => Role::Member,
            "admin" => Role::Admin,
            "owner" => Role::Owner,
            _ => return None,
        })
    }
}

/// Who is calling, established by [`tenant_scope`] from the credential alone.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The tenant: from the credential, never from the request's path, query or body.
    pub tenant: TenantId,
    /// The caller's role in that tenant.
    pub role: Role,
    /// How audit rows name the caller: `api_key:<id>` or `user:<sub>`.
    pub actor: String,
}

impl Principal {
    /// 403 unless the caller has at least `role`.
    pub fn require(&self, role: Role) -> Result<(), ApiError> {
        if self.role >= role {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this needs the {} role; the credential has {}",
                role.as_str(),
                self.role.as_str()
            )))
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        parts
            .extensions
            .get::<Principal>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("route is not behind tenant_scope".into()))
    }
}

/// A minimum role, as a type, for [`Need`].
pub trait MinRole: Send + Sync {
    /// The role.
    const ROLE: Role;
}
/// Marker: at least viewer.
#[derive(Debug)]
pub struct Viewer;
/// Marker: at least member.
#[derive(Debug)]
pub struct Member;
/// Marker: at least admin.
#[derive(Debug)]
pub struct Admin;
impl MinRole for Viewer {
    const ROLE: Role = Role::Viewer;
}
impl MinRole for Member {
    const ROLE: Role = Role::Member;
}
impl MinRole for Admin {
    const ROLE: Role = Role::Admin;
}

/// The caller, checked to have at least role `R` before the body is even read: a
/// handler's signature states who may call it.
#[derive(Debug)]
pub struct Need<R: MinRole>(pub Principal, pub PhantomData<R>);

impl<S: Send + Sync, R: MinRole> FromRequestParts<S> for Need<R> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let p = Principal::from_request_parts(parts, state).await?;
        p.require(R::ROLE)?;
        Ok(Need(p, PhantomData))
    }
}

/// Where the request's transaction waits for its handler.
#[derive(Clone)]
struct TxSlot(Arc<Mutex<Option<TenantTx>>>);

/// The request's tenant transaction. Handlers run plain SQL on it, with no tenant filter.
pub struct Db(OwnedMappedMutexGuard<Option<TenantTx>, TenantTx>);

impl std::ops::Deref for Db {
    type Target = TenantTx;
    fn deref(&self) -> &TenantTx {
        &self.0
    }
}
impl std::ops::DerefMut for Db {
    fn deref_mut(&mut self) -> &mut TenantTx {
        &mut self.0
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Db {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let slot = parts
            .extensions
            .get::<TxSlot>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("route is not behind tenant_scope".into()))?;
        // Held means a second `Db` of the same request (two in one handler, or one kept
        // by a layer): fail at once, a logged 500, instead of waiting for the request
        // timeout (the first is only released when the handler returns).
        let guard: OwnedMutexGuard<Option<TenantTx>> = slot.0.try_lock_owned().map_err(|_| {
            ApiError::Internal(
                "the request's transaction is already extracted (a second Db)".into(),
            )
        })?;
        OwnedMutexGuard::try_map(guard, Option::as_mut)
            .map(Db)
            .map_err(|_| ApiError::Internal("the request's transaction was already taken".into()))
    }
}

/// How JWTs are verified.
#[derive(Clone)]
pub enum JwtKey {
    /// A shared HS256 secret.
    Hs256(SecretString),
    /// An RS256 public key (PEM).
    Rs256Pem(Vec<u8>),
    /// An ES256 public key (PEM).
    Es256Pem(Vec<u8>),
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            JwtKey::Hs256(_) => "Hs256(<secret>)",
            JwtKey::Rs256Pem(_) => "Rs256Pem",
            JwtKey::Es256Pem(_) => "Es256Pem",
        })
    }
}

/// JWT settings.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The verification key and algorithm.
    pub key: JwtKey,
    /// Clock skew allowed on `exp`, `nbf` and `iat`, in seconds.
    pub leeway_secs: u64,
    /// Required `iss`, if any.
    pub issuer: Option<String>,
    /// Required `aud`, if any.
    pub audience: Option<String>,
}

/// A JWT or key configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("invalid JWT configuration: {0}")]
pub struct AuthConfigError(String);

#[derive(Debug, Deserialize)]
struct Claims {
    sub: String,
    tenant_id: Uuid,
    role: String,
    /// Issued at (seconds since the epoch); checked against the clock with the leeway.
    #[serde(default)]
    iat: Option<f64>,
}

#[derive(Clone, Copy)]
struct CachedKey {
    expires: Instant,
    tenant: TenantId,
    key_id: Uuid,
    role: Role,
}

/// Resolves credentials. One per server.
pub struct Authenticator {
    jwt: Option<(jsonwebtoken::DecodingKey, jsonwebtoken::Validation)>,
    admin_token_hash: Option<[u8; 32]>,
    cache_ttl: Duration,
    cache: StdMutex<HashMap<[u8; 32], CachedKey>>,
    last_used: StdMutex<HashMap<TenantId, HashMap<Uuid, DateTime<Utc>>>>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("jwt", &self.jwt.is_some())
            .field("admin", &self.admin_token_hash.is_some())
            .finish()
    }
}

/// Most cached keys; past this the cache is emptied (it refills from hot keys).
const CACHE_MAX: usize = 100_000;

/// The prefix of every tenant API key.
pub const KEY_PREFIX: &str = "tgk_";

/// A freshly made API key: the secret (shown once) and what is stored.
#[derive(Debug)]
pub struct NewKey {
    /// The full key, to show once.
    pub key: String,
    /// Short display prefix (not enough to use the key).
    pub prefix: String,
    /// sha256 of the full key: what the database keeps.
    pub hash: [u8; 32],
}

/// Makes a new key for `tenant`: 32 base62 characters (about 190 random bits).
pub fn new_api_key(tenant: TenantId) -> NewKey {
    let secret: String = rand::rngs::OsRng
        .sample_iter(&Alphanumeric)
        .take(32)
        .map(char::from)
        .collect();
    let key = format!("{KEY_PREFIX}{}_{secret}", tenant.as_uuid().simple());
    let prefix = format!("{KEY_PREFIX}{}", &secret[..8]);
    let hash = Sha256::digest(key.as_bytes()).into();
    NewKey { key, prefix, hash }
}

/// The tenant a key claims to belong to (unverified until its hash is found there).
fn key_tenant(key: &str) -> Option<TenantId> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (tenant, secret) = rest.split_once('_')?;
    if tenant.len() != 32 || secret.len() < 16 || secret.len() > 128 {
        return None;
    }
    Uuid::try_parse(tenant).ok().map(TenantId::from_uuid)
}

impl Authenticator {
    /// Builds the authenticator.
    pub fn new(
        jwt: Option<&JwtConfig>,
        admin_token: Option<&SecretString>,
        cache_ttl: Duration,
    ) -> Result<Self, AuthConfigError> {
        use jsonwebtoken::{Algorithm, DecodingKey, Validation};
        let jwt = match jwt {
            None => None,
            Some(cfg) => {
                let err = |e: jsonwebtoken::errors::Error| AuthConfigError(e.to_string());
                let (key, alg) = match &cfg.key {
                    JwtKey::Hs256(s) => (
                        DecodingKey::from_secret(s.expose_secret().as_bytes()),
                        Algorithm::HS256,
                    ),
                    JwtKey::Rs256Pem(p) => {
                        (DecodingKey::from_rsa_pem(p).map_err(err)?, Algorithm::RS256)
                    }
                    JwtKey::Es256Pem(p) => {
                        (DecodingKey::from_ec_pem(p).map_err(err)?, Algorithm::ES256)
                    }
                };
                let mut v = Validation::new(alg);
                // One leeway for exp, nbf and iat.
                v.leeway = cfg.leeway_secs;
                v.validate_nbf = true;
                v.set_required_spec_claims(&["exp", "sub"]);
                if let Some(i) = &cfg.issuer {
                    v.set_issuer(&[i]);
                }
                match &cfg.audience {
                    Some(a) => v.set_audience(&[a]),
                    None => v.validate_aud = false,
                }
                Some((key, v))
            }
        };
        Ok(Self {
            jwt,
            admin_token_hash: admin_token
                .map(|t| Sha256::digest(t.expose_secret().as_bytes()).into()),
            cache_ttl,
            cache: StdMutex::new(HashMap::new()),
            last_used: StdMutex::new(HashMap::new()),
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
    async fn authenticate(
        &self,
        headers: &HeaderMap,
        pool: &TenantPool,
    ) -> Result<(Principal, CredentialId), ApiError> {
        let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
        if token.starts_with(KEY_PREFIX) {
            let tenant = key_tenant(token).ok_or(ApiError::Unauthorized)?;
            let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
            let (key_id, role) = match self.cache_get(&hash) {
                Some(c) if c.tenant == tenant => (c.key_id, c.role),
                _ => {
                    let (key_id, role) = Self::lookup_key(pool, tenant, &hash)
                        .await?
                        .ok_or(ApiError::Unauthorized)?;
                    self.cache_put(hash, tenant, key_id, role);
                    (key_id, role)
                }
            };
            self.touch(tenant, key_id);
            let principal = Principal {
                tenant,
                role,
                actor: format!("api_key:{key_id}"),
            };
            return Ok((principal, key_id.as_u128()));
        }
        let (key, validation) = self.jwt.as_ref().ok_or(ApiError::Unauthorized)?;
        let data = jsonwebtoken::decode::<Claims>(token, key, validation)
            .map_err(|_| ApiError::Unauthorized)?;
        // jsonwebtoken checks exp and nbf (with the leeway) but not iat: a token issued in
        // the future is a clock or issuer fault, refused like an early nbf.
        if let Some(iat) = data.claims.iat {
            let now = jsonwebtoken::get_current_timestamp() as f64;
            if !iat.is_finite() || iat > now + validation.leeway as f64 {
                return Err(ApiError::Unauthorized);
            }
        }
        let role = Role::parse(&data.claims.role).ok_or(ApiError::Unauthorized)?;
        if data.claims.sub.is_empty() || data.claims.sub.len() > 256 {
            return Err(ApiError::Unauthorized);
        }
        let tenant = TenantId::from_uuid(data.claims.tenant_id);
        // The subject's limits are its own within its tenant.
        let mut digest = Sha256::new();
        digest.update(tenant.as_uuid().as_bytes());
        digest.update(data.claims.sub.as_bytes());
        let digest: [u8; 32] = digest.finalize().into();
        let mut credential = [0u8; 16];
        credential.copy_from_slice(&digest[..16]);
        Ok((
            Principal {
                tenant,
                role,
                actor: format!("user:{}", data.claims.sub),
            },
            u128::from_be_bytes(credential),
        ))
    }

    /// Finds an active key by its hash inside its tenant's RLS scope, as its own implicit
    /// transaction under one Sync: the connection is borrowed for that round trip only.
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
                    "SELECT id, role FROM api_keys WHERE key_hash = $1 AND revoked_at IS NULL",
                    &[&&hash[..]],
                )
                .await?;
            return Ok(
                row.and_then(|r| Role::parse(r.get::<_, &str>(1)).map(|role| (r.get(0), role)))
            );
        }
        let sql = format!(
            "SELECT id, role FROM api_keys WHERE key_hash = {}::bytea AND revoked_at IS NULL",
            crate::policy::literal(&format!("\\x{}", hex::encode(hash)))
        );
        let rows = pool.simple_read_once(tenant, &sql).await?;
        Ok(rows.first().and_then(|r| {
            let id = Uuid::try_parse(r.get(0)?).ok()?;
            Some((id, Role::parse(r.get(1)?)?))
        }))
    }

    /// The bench-only baseline's authentication (see [`super::compare`]): API keys only,
    /// looked up with an explicit tenant filter on a connection without RLS, checked out
    /// only when the key is not cached.
    pub(crate) async fn authenticate_explicit(
        &self,
        headers: &HeaderMap,
        pool: &deadpool_postgres::Pool,
    ) -> Result<Principal, ApiError> {
        let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
        let tenant = key_tenant(token).ok_or(ApiError::Unauthorized)?;
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let (key_id, role) = match self.cache_get(&hash) {
            Some(c) if c.tenant == tenant => (c.key_id, c.role),
            _ => {
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
                self.cache_put(hash, tenant, key_id, role);
                (key_id, role)
            }
        };
        self.touch(tenant, key_id);
        Ok(Principal {
            tenant,
            role,
            actor: format!("api_key:{key_id}"),
        })
    }

    fn cache_get(&self, hash: &[u8; 32]) -> Option<CachedKey> {
        let cache = self.cache.lock().ok()?;
        cache
            .get(hash)
            .copied()
            .filter(|c| c.expires > Instant::now())
    }

    fn cache_put(&self, hash: [u8; 32], tenant: TenantId, key_id: Uuid, role: Role) {
        if self.cache_ttl.is_zero() {
            return;
        }
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= CACHE_MAX {
                cache.clear();
            }
            cache.insert(
                hash,
                CachedKey {
                    expires: Instant::now() + self.cache_ttl,
                    tenant,
                    key_id,
                    role,
                },
            );
        }
    }

    /// Forgets a key at once (called when it is revoked here).
    pub fn evict_key(&self, key_id: Uuid) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|_, c| c.key_id != key_id);
        }
    }

    fn touch(&self, tenant: TenantId, key_id: Uuid) {
        if let Ok(mut m) = self.last_used.lock() {
            m.entry(tenant).or_default().insert(key_id, Utc::now());
        }
    }

    /// Writes the recorded last-used times, one transaction per tenant. Returns how many
    /// keys were updated.
    pub async fn flush_last_used(&self, pool: &TenantPool) -> usize {
        let pending = match self.last_used.lock() {
            Ok(mut m) => std::mem::take(&mut *m),
            Err(_) => return 0,
        };
        let mut n = 0;
        for (tenant, keys) in pending {
            let (ids, times): (Vec<Uuid>, Vec<DateTime<Utc>>) = keys.into_iter().unzip();
            let result = async {
                let mut tx = pool.begin(tenant).await?;
                let updated = tx
                    .execute(
                        "UPDATE api_keys k SET last_used_at = v.t
                         FROM unnest($1::uuid[], $2::timestamptz[]) AS v(id, t)
                         WHERE k.id = v.id AND (k.last_used_at IS NULL OR k.last_used_at < v.t)",
                        &[&ids, &times],
                    )
                    .await?;
                tx.commit().await?;
                Ok::<_, crate::pool::PoolError>(updated)
            }
            .await;
            match result {
                Ok(u) => n += u as usize,
                Err(e) => {
                    tracing::warn!(%tenant, error = %crate::error_chain(&e), "could not record API key use")
                }
            }
        }
        n
    }
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    let v = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = v.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let token = token.trim();
    (!token.is_empty() && token.len() <= 8192).then_some(token)
}

/// The tenant layer, in this order: authenticate (an uncached API key costs one
/// statement that gives its connection back at once), apply the tenant's and the
/// credential's limits (429), read the whole body within the body-read timeout (408, 413),
/// and only then open the request's transaction and run the handler; commit if it
/// answered with a success status, roll back otherwise. So no database connection is
/// ever held while the client is still sending.
pub async fn tenant_scope(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let read_only = matches!(*req.method(), Method::GET | Method::HEAD);
    let (principal, credential) = match state.auth().authenticate(req.headers(), state.pool()).await
    {
        Ok(x) => x,
        Err(e) => return e.into_response(),
    };
    let _permit = match state.limits().admit(principal.tenant, credential) {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    let config = state.config();
    let mut req =
        match super::limits::read_body(req, config.body_limit, config.body_read_timeout).await {
            Ok(r) => r,
            Err(e) => return e.into_response(),
        };
    // Takes no connection: the first statement does.
    let tx = match if read_only {
        state.pool().begin_read_only(principal.tenant).await
    } else {
        state.pool().begin(principal.tenant).await
    } {
        Ok(tx) => tx,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let slot = TxSlot(Arc::new(Mutex::new(Some(tx))));
    req.extensions_mut().insert(slot.clone());
    req.extensions_mut().insert(principal);
    let response = next.run(req).await;
    // The handler has returned, so its guard is gone and the lock is free.
    let tx = slot.0.lock().await.take();
    let Some(tx) = tx else {
        return response;
    };
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        match tx.commit().await {
            Ok(()) => response,
            Err(e) => ApiError::from(e).into_response(),
        }
    } else {
        // Dropping queues ROLLBACK on the connection before it returns to the pool.
        drop(tx);
        response
    }
}

/// The admin layer: only the admin token passes, and every call is logged.
pub async fn admin_guard(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    if !state.auth().is_admin(req.headers()) {
        tracing::warn!(target: "tenantguard::admin", %method, %path, "admin call refused");
        return ApiError::Unauthorized.into_response();
    }
    // As on tenant routes: the whole body first, then the handler's statements.
    let config = state.config();
    let req = match super::limits::read_body(req, config.body_limit, config.body_read_timeout).await
    {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let response = next.run(req).await;
    tracing::info!(target: "tenantguard::admin", %method, %path, status = response.status().as_u16(), "admin call");
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_their_tenant() {
        let t = TenantId::from_uuid(Uuid::now_v7());
        let k = new_api_key(t);
        assert_eq!(key_tenant(&k.key), Some(t));
        assert!(k.key.len() > 60);
        assert!(key_tenant("tgk_nothex_abcdefghijklmnopqrstuvwxyz").is_none());
        assert!(key_tenant("tgk_").is_none());
    }
}
