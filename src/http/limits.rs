//! Fairness and slow-client limits.
//!
//! - **Concurrency**, per tenant and per credential: how many of its requests may be in
//!   flight at once. Past it a request is answered 429 with `Retry-After` at once (it
//!   does not queue), so a tenant at its limit holds at most that many of the pool's
//!   connections and the rest of the pool stays for the others.
//! - **Rate**, per tenant and per credential: requests per second, with a burst of one
//!   second's worth (GCRA, from the `governor` crate); past it 429 with `Retry-After`.
//! - **Body**: a declared `Content-Length` over the limit is answered 413 before any of
//!   the body is read; the body must then arrive whole within the body-read timeout
//!   (408 otherwise), and it is read only after authentication and the limits, and
//!   before the request's first statement, so no database connection waits on a client.
//!
//! All of these are per process: behind a load balancer with N servers a tenant gets up
//! to N times the limits.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DashMapStateStore;
use governor::{Quota, RateLimiter};

use super::error::ApiError;
use crate::pool::TenantId;

/// Identifies one credential for its limits: an API key's id, or a digest of a JWT's
/// tenant and subject.
pub type CredentialId = u128;

/// FxHash-style mixing for maps the request path touches on every request (the in-flight
/// map, the rate limiters' maps, recorded key use, the request metrics' handles) instead
/// of std's SipHash (governor's default): their keys are tenant ids and credential ids
/// that come from verified credentials (server-made UUIDs, an identity provider's signed
/// tenant, SHA-256 digests of JWT subjects) or declared route patterns, so no client can
/// pick colliding keys, and SipHash's DoS resistance would only cost time on every
/// request. Hand-written because it is ten lines and the alternatives are new crates.
#[derive(Default)]
pub(crate) struct IdHasher(u64);

impl std::hash::Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.0 = (self.0.rotate_left(5) ^ u64::from_le_bytes(word))
                .wrapping_mul(0x517c_c1b7_2722_0a95);
        }
    }
}

/// [`IdHasher`] as a map's hasher.
pub(crate) type IdHash = std::hash::BuildHasherDefault<IdHasher>;
type SlotMap = HashMap<Slot, u32, IdHash>;
/// A keyed GCRA limiter over verified ids (see [`IdHasher`]).
type KeyedLimiter<K> = RateLimiter<K, DashMapStateStore<K, IdHash>, DefaultClock>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Slot {
    Tenant(TenantId),
    Credential(CredentialId),
}

/// The limits of one server. One per [`AppState`](super::AppState).
pub struct Limits {
    tenant_max: u32,
    credential_max: u32,
    // Only in-flight requests have an entry, so it stays as small as the load. One lock
    // for both counts: a request takes it twice (admit, release) with two lookups each.
    in_flight: Mutex<SlotMap>,
    tenant_rate: Option<KeyedLimiter<TenantId>>,
    credential_rate: Option<KeyedLimiter<CredentialId>>,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits")
            .field("tenant_max", &self.tenant_max)
            .field("credential_max", &self.credential_max)
            .finish()
    }
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_sec: u32) -> Option<KeyedLimiter<K>> {
    NonZeroU32::new(per_sec).map(|n| {
        RateLimiter::dashmap_with_clock_and_hasher(
            Quota::per_second(n),
            DefaultClock::default(),
            IdHash::default(),
        )
    })
}

impl Limits {
    /// Concurrency limits (0: none) and rates per second (0: none).
    pub fn new(
        tenant_max: u32,
        credential_max: u32,
        tenant_rate: u32,
        credential_rate: u32,
    ) -> Self {
        Self {
            tenant_max: if tenant_max == 0 {
                u32::MAX
            } else {
                tenant_max
            },
            credential_max: if credential_max == 0 {
                u32::MAX
            } else {
                credential_max
            },
            in_flight: Mutex::new(SlotMap::default()),
            tenant_rate: limiter(tenant_rate),
            credential_rate: limiter(credential_rate),
        }
    }

    /// Admits a request of `tenant` made with `credential`, or says which limit it hit and
    /// when to retry. The permit frees the concurrency slots when dropped.
    pub fn admit(
        &self,
        tenant: TenantId,
        credential: CredentialId,
    ) -> Result<Permit<'_>, ApiError> {
        {
            let mut map = self.in_flight.lock().map_err(|_| ApiError::Unavailable)?;
            let t = map.get(&Slot::Tenant(tenant)).copied().unwrap_or(0);
            if t >= self.tenant_max {
                return Err(refused("tenant concurrency", 1));
            }
            let c = map.get(&Slot::Credential(credential)).copied().unwrap_or(0);
            if c >= self.credential_max {
                return Err(refused("credential concurrency", 1));
            }
            map.insert(Slot::Tenant(tenant), t + 1);
            map.insert(Slot::Credential(credential), c + 1);
        }
        let permit = Permit {
            limits: self,
            tenant,
            credential,
        };
        // Checked after the slots so a request refused for concurrency spends no token;
        // a refusal here drops the permit, which frees the slots again.
        if let Some(l) = &self.tenant_rate {
            if let Err(not_until) = l.check_key(&tenant) {
                return Err(refused("tenant rate", wait_secs(l.clock(), not_until)));
            }
        }
        if let Some(l) = &self.credential_rate {
            if let Err(not_until) = l.check_key(&credential) {
                return Err(refused("credential rate", wait_secs(l.clock(), not_until)));
            }
        }
        Ok(permit)
    }

    fn release(&self, tenant: TenantId, credential: CredentialId) {
        if let Ok(mut map) = self.in_flight.lock() {
            for slot in [Slot::Tenant(tenant), Slot::Credential(credential)] {
                if let Some(n) = map.get_mut(&slot) {
                    *n -= 1;
                    if *n == 0 {
                        map.remove(&slot);
                    }
                }
            }
        }
    }

    /// Forgets the rate state of tenants and credentials that are back to a full burst,
    /// so the limiters hold only recently active keys (called periodically).
    pub fn forget_idle(&self) {
        if let Some(l) = &self.tenant_rate {
            l.retain_recent();
            l.shrink_to_fit();
        }
        if let Some(l) = &self.credential_rate {
            l.retain_recent();
            l.shrink_to_fit();
        }
    }

    /// How many requests of `tenant` are in flight (admitted and not yet answered).
    pub fn tenant_in_flight(&self, tenant: TenantId) -> u32 {
        self.in_flight
            .lock()
            .ok()
            .and_then(|m| m.get(&Slot::Tenant(tenant)).copied())
            .unwrap_or(0)
    }

    /// How many tenants and credentials have requests in flight (for tests and metrics).
    pub fn in_flight_slots(&self) -> usize {
        self.in_flight.lock().map(|m| m.len()).unwrap_or(0)
    }
}

fn wait_secs<C: Clock>(clock: &C, not_until: governor::NotUntil<C::Instant>) -> u64 {
    let wait = not_until.wait_time_from(clock.now());
    // Rounded up: a client that waits this long finds a token.
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

fn refused(what: &'static str, retry_after_secs: u64) -> ApiError {
    metrics::counter!("tenantguard_limited_total", "limit" => what).increment(1);
    ApiError::TooManyRequests {
        what,
        retry_after_secs: retry_after_secs.max(1),
    }
}

/// A request's concurrency slots; dropping it frees them.
pub struct Permit<'a> {
    limits: &'a Limits,
    tenant: TenantId,
    credential: CredentialId,
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.limits.release(self.tenant, self.credential);
    }
}

/// The declared length, if the request has one that parses.
fn declared_length(req: &Request) -> Option<u64> {
    req.headers()
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .parse()
        .ok()
}

/// Layer on every route: a declared `Content-Length` over `limit` is answered 413 before
/// any of the body is read (the connection is then closed).
///
/// A tower layer rather than `axum::middleware::from_fn`, which boxes the rest of the
/// stack and the future of every request it sees (two allocations per request in the
/// callgrind profile, for a check that needs neither).
#[derive(Debug, Clone, Copy)]
pub struct RefuseOversizeLayer {
    limit: u64,
}

impl RefuseOversizeLayer {
    /// Refuses declared bodies over `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit as u64,
        }
    }
}

impl<S> tower::Layer<S> for RefuseOversizeLayer {
    type Service = RefuseOversize<S>;

    fn layer(&self, inner: S) -> RefuseOversize<S> {
        RefuseOversize {
            inner,
            limit: self.limit,
        }
    }
}

/// The service of [`RefuseOversizeLayer`].
#[derive(Debug, Clone)]
pub struct RefuseOversize<S> {
    inner: S,
    limit: u64,
}

impl<S> tower::Service<Request> for RefuseOversize<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        futures::future::Either<std::future::Ready<Result<Response, S::Error>>, S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if declared_length(&req).is_some_and(|n| n > self.limit) {
            return futures::future::Either::Left(std::future::ready(Ok(
                ApiError::PayloadTooLarge.into_response(),
            )));
        }
        futures::future::Either::Right(self.inner.call(req))
    }
}

/// Reads the whole body within `timeout` (408 otherwise) and at most `limit` bytes (413),
/// and puts it back into the request, so what follows never waits on the client.
/// A request that declares no body (GET, or a length of 0) is passed on untouched.
pub async fn read_body(req: Request, limit: usize, timeout: Duration) -> Result<Request, ApiError> {
    let no_body = match declared_length(&req) {
        Some(n) => n == 0,
        None => !req.headers().contains_key(header::TRANSFER_ENCODING),
    };
    if no_body {
        return Ok(req);
    }
    // Boxed: the read's future (timer and collector) would otherwise be inline in every
    // request's future, which is moved into its box per request; a body is read once.
    Box::pin(read_whole_body(req, limit, timeout)).await
}

async fn read_whole_body(
    req: Request,
    limit: usize,
    timeout: Duration,
) -> Result<Request, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = match tokio::time::timeout(timeout, axum::body::to_bytes(body, limit)).await {
        Err(_) => return Err(ApiError::RequestTimeout),
        Ok(Err(e)) => {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            return Err(if too_large {
                ApiError::PayloadTooLarge
            } else {
                ApiError::BadRequest("the request body could not be read".into())
            });
        }
        Ok(Ok(b)) => b,
    };
    Ok(Request::from_parts(parts, Body::from(bytes)))
}
