//! The tenant layer ([`tenant_scope`]: one tenant transaction per request, handed to
//! the handler as [`Db`]) and the admin layer ([`admin_guard`]).

use std::sync::Arc;

use axum::extract::{FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::{Mutex, OwnedMappedMutexGuard, OwnedMutexGuard};

use crate::http::error::ApiError;
use crate::http::AppState;
use crate::pool::TenantTx;

/// Where the request's transaction waits for its handler.
#[derive(Clone)]
pub(crate) struct TxSlot(Arc<Mutex<Option<TenantTx>>>);

/// What the tenant layer hands the request's extractors, as ONE request extension: the
/// caller and (behind [`tenant_scope`]) the transaction's slot. One insert instead of
/// two: the first insert allocates the extension map, each one hashes and boxes its
/// value (≈ 380 instructions each in a GET's profile).
#[derive(Clone)]
pub(crate) struct Scoped {
    /// Who is calling.
    pub(crate) principal: crate::http::auth::Principal,
    /// The request's transaction; `None` on a route that opens none (the bench's
    /// explicit-filter baseline).
    pub(crate) slot: Option<TxSlot>,
}

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
            .get::<Scoped>()
            .and_then(|s| s.slot.clone())
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

/// The tenant layer, in this order: authenticate (an uncached API key costs one
/// statement that gives its connection back at once), apply the tenant's and the
/// credential's limits (429), read the whole body within the body-read timeout (408, 413),
/// and only then open the request's transaction and run the handler; commit if it
/// answered with a success status, roll back otherwise. So no database connection is
/// ever held while the client is still sending.
///
/// This is the `axum::middleware::from_fn_with_state` form (for a router of your own);
/// the API's router uses [`TenantScopeLayer`], the same steps as a tower layer.
pub async fn tenant_scope(State(state): State<AppState>, req: Request, next: Next) -> Response {
    scoped(state, req, |req| next.run(req)).await
}

/// [`tenant_scope`] as a tower layer (`Router::route_layer(TenantScopeLayer::new(state))`):
/// the same steps, without what each `from_fn` layer costs per request (a clone of its
/// boxed inner service boxed again as `Next`, and `Next`'s own call).
#[derive(Clone)]
pub struct TenantScopeLayer {
    state: AppState,
}

impl TenantScopeLayer {
    /// The layer for the API's state.
    pub fn new(state: AppState) -> Self {
        TenantScopeLayer { state }
    }
}

impl<S> tower::Layer<S> for TenantScopeLayer {
    type Service = TenantScope<S>;
    fn layer(&self, inner: S) -> TenantScope<S> {
        TenantScope {
            inner,
            state: self.state.clone(),
        }
    }
}

/// The service [`TenantScopeLayer`] makes: [`tenant_scope`]'s steps around `S`.
#[derive(Clone)]
pub struct TenantScope<S> {
    inner: S,
    state: AppState,
}

impl<S> tower::Service<Request> for TenantScope<S>
where
    S: tower::Service<Request, Response = Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Response, std::convert::Infallible>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        // tower's rule: the service that was polled ready is the one called, so it goes
        // into the future and its clone stays here.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let state = self.state.clone();
        Box::pin(async move {
            let run = move |req| {
                let called = tower::Service::call(&mut inner, req);
                async move {
                    match called.await {
                        Ok(r) => r,
                        Err(never) => match never {},
                    }
                }
            };
            Ok(scoped(state, req, run).await)
        })
    }
}

/// The tenant layer's steps (see [`tenant_scope`]), with the rest of the stack as `inner`.
///
/// Every rarely taken path that awaits a statement is boxed where it is taken (the key
/// lookup on a cache miss, the idempotency path, a write's `COMMIT`, a body read): this
/// future is boxed per request, and moving it into its box copies all of it, so its size
/// is paid on every request (a GET's profile had ≈ 11.7k instructions of memcpy there).
async fn scoped<F, Fut>(state: AppState, req: Request, inner: F) -> Response
where
    F: FnOnce(Request) -> Fut,
    Fut: std::future::Future<Output = Response>,
{
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
    let mut req = match crate::http::limits::read_body(
        req,
        config.body_limit,
        config.body_read_timeout,
    )
    .await
    {
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
    req.extensions_mut().insert(Scoped {
        principal,
        slot: Some(slot.clone()),
    });
    // The idempotency layer runs here, inside the scope (it needs the principal and the
    // transaction), as a call rather than a route layer of its own: each layer boxes a
    // future per request.
    let handled = crate::http::idempotency::handle(state.clone(), req, inner);
    let response = if config.routing_hint {
        handled.await
    } else {
        // Boxed: the off path (a benchmark's) must not grow every request's future.
        Box::pin(crate::http::extract::with_routing_hint(false, handled)).await
    };
    // The handler has returned, so its guard is gone and the lock is free: no waiting.
    let tx = match slot.0.try_lock() {
        Ok(mut held) => held.take(),
        // Only a `Db` kept beyond the handler (by a spawned task) holds it; wait for it.
        Err(_) => Box::pin(slot.0.lock()).await.take(),
    };
    let Some(mut tx) = tx else {
        return response;
    };
    let status = response.status();
    if status.is_success() || status.is_redirection() {
        let committed = match tx.try_commit_now() {
            Some(done) => done,
            None => Box::pin(tx.commit()).await,
        };
        match committed {
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
    let req = match crate::http::limits::read_body(req, config.body_limit, config.body_read_timeout)
        .await
    {
        Ok(r) => r,
        Err(e) => return e.into_response(),
    };
    let response = next.run(req).await;
    tracing::info!(target: "tenantguard::admin", %method, %path, status = response.status().as_u16(), "admin call");
    response
}
