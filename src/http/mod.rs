//! The reference SaaS API server.
//!
//! One module per resource (`projects`, `tasks`, …), each with a `router()` that
//! [`router`] merges. Tenant routes (`/v1`) run behind [`auth::tenant_scope`], which
//! authenticates, opens one [`TenantTx`](crate::TenantTx) per request and commits it only
//! on success; handlers take it through the [`auth::Db`] extractor and write SQL with no
//! tenant filter. Admin routes (`/admin/v1`) run behind [`auth::admin_guard`] and read
//! through the [`AdminPool`]. Every error is an [`error::ApiError`] rendered as
//! problem+json.
//!
//! [`Application`] binds, serves and shuts down gracefully; `serve`, `dev` and the tests
//! all start the server through it.

pub mod admin;
pub mod api_keys;
pub mod audit_log;
pub mod auth;
pub mod comments;
#[cfg(feature = "bench-baseline")]
pub mod compare;
pub mod documents;
pub mod error;
pub mod extract;
pub mod idempotency;
pub mod invoices;
pub mod json;
pub mod limits;
pub mod members;
mod observe;
pub mod openapi;
pub mod ops;
pub mod projects;
pub mod request_id;
pub mod tasks;
pub mod webhooks;
pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::DefaultBodyLimit;
use axum::http::{header, StatusCode};
use axum::middleware;
use axum::response::Response;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;
use tower::{ServiceBuilder, ServiceExt};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::pool::{AdminPool, TenantPool};
pub use auth::{AuthConfigError, JwtConfig, JwtKey, Role};

/// Server settings (the pools are passed separately).
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Largest request body, in bytes.
    pub body_limit: usize,
    /// Longest a request may take; past it the transaction is rolled back and the client
    /// gets a 503.
    pub request_timeout: Duration,
    /// Longest a client may take to send a request's headers (slow-loris); past it the
    /// connection is closed.
    pub header_read_timeout: Duration,
    /// Longest a client may take to send a request's whole body; past it 408. The body is
    /// read before the request's first statement, so this bounds what a slow client costs
    /// without holding any database connection.
    pub body_read_timeout: Duration,
    /// Most requests of one tenant in flight at once (past it 429); 0: half the app
    /// pool's size (at least 1), so one tenant cannot take the whole pool.
    pub tenant_concurrency: u32,
    /// Most requests of one credential (API key, or JWT subject) in flight at once; 0: half
    /// the tenant limit (at least 1).
    pub key_concurrency: u32,
    /// Requests per second of one tenant, with bursts of one second's worth (past it 429
    /// with `Retry-After`); 0: unlimited. Per process.
    pub tenant_rate: u32,
    /// Requests per second of one credential, likewise; 0: unlimited. Per process.
    pub key_rate: u32,
    /// Bearer token required by `/metrics`; `None` leaves it open (local use).
    pub metrics_token: Option<SecretString>,
    /// How long a verified API key is trusted without looking it up again (0 disables).
    pub key_cache_ttl: Duration,
    /// How often recorded API key use is written to `api_keys.last_used_at`.
    pub last_used_flush: Duration,
    /// The admin token (`/admin/v1`); `None` disables the admin API.
    pub admin_token: Option<SecretString>,
    /// JWT verification; `None` accepts API keys only.
    pub jwt: Option<JwtConfig>,
    /// How long the answer to a request with an `Idempotency-Key` is kept (see
    /// [`idempotency`]).
    pub idempotency_ttl: Duration,
    /// Whether resource statements carry the routing hint `tenant_id = $n` (default
    /// `true`; see [`extract::routing_hint`]). Off only to measure what it saves on a
    /// database sharded by tenant: isolation never depends on it.
    pub routing_hint: bool,
    /// Bench only (cargo feature `bench-baseline`, off by default, so a normal build has
    /// no way to the database but `TenantPool`): serve the benchmarked endpoints through
    /// this non-RLS pool with explicit tenant filters instead (see [`compare`]).
    #[cfg(feature = "bench-baseline")]
    pub explicit_filter_pool: Option<compare::ExplicitFilterPool>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: 2 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(15),
            tenant_concurrency: 0,
            key_concurrency: 0,
            tenant_rate: 1000,
            key_rate: 500,
            metrics_token: None,
            key_cache_ttl: Duration::from_secs(5),
            last_used_flush: Duration::from_secs(10),
            admin_token: None,
            jwt: None,
            idempotency_ttl: Duration::from_secs(24 * 60 * 60),
            routing_hint: true,
            #[cfg(feature = "bench-baseline")]
            explicit_filter_pool: None,
        }
    }
}

struct Inner {
    pool: TenantPool,
    admin: Option<AdminPool>,
    auth: auth::Authenticator,
    limits: limits::Limits,
    /// Set when prepared statements were found lost between transactions (the start-up
    /// probe or SQLSTATE 26000 at run time) while the statement cache is on.
    statements_lost: AtomicBool,
    metrics_token_hash: Option<[u8; 32]>,
    config: HttpConfig,
    metrics: PrometheusHandle,
    http_metrics: observe::HttpMetrics,
    started: Instant,
}

/// Shared state of every handler: cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl std::fmt::Debug for AppState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppState")
            .field("pool", &self.0.pool)
            .finish()
    }
}

impl AppState {
    /// Builds the state. `admin` may be `None` (the admin API then answers 503).
    pub fn new(
        pool: TenantPool,
        admin: Option<AdminPool>,
        config: HttpConfig,
    ) -> Result<Self, AuthConfigError> {
        let auth = auth::Authenticator::new(
            config.jwt.as_ref(),
            config.admin_token.as_ref(),
            config.key_cache_ttl,
        )?;
        let tenant_max = match config.tenant_concurrency {
            0 => (pool.status().max_size / 2).max(1) as u32,
            n => n,
        };
        let key_max = match config.key_concurrency {
            0 => (tenant_max / 2).max(1),
            n => n,
        };
        let limits = limits::Limits::new(tenant_max, key_max, config.tenant_rate, config.key_rate);
        let metrics_token_hash = config.metrics_token.as_ref().map(|t| {
            use sha2::Digest;
            sha2::Sha256::digest(secrecy::ExposeSecret::expose_secret(t).as_bytes()).into()
        });
        Ok(Self(Arc::new(Inner {
            pool,
            admin,
            auth,
            limits,
            statements_lost: AtomicBool::new(false),
            metrics_token_hash,
            config,
            metrics: ops::metrics_handle(),
            http_metrics: observe::HttpMetrics::default(),
            started: Instant::now(),
        })))
    }

    /// The tenant pool.
    pub fn pool(&self) -> &TenantPool {
        &self.0.pool
    }

    /// The admin pool, if configured.
    pub fn admin_pool(&self) -> Option<&AdminPool> {
        self.0.admin.as_ref()
    }

    /// The credential resolver.
    pub fn auth(&self) -> &auth::Authenticator {
        &self.0.auth
    }

    /// The settings.
    pub fn config(&self) -> &HttpConfig {
        &self.0.config
    }

    /// The per-tenant and per-credential limits.
    pub fn limits(&self) -> &limits::Limits {
        &self.0.limits
    }

    /// Whether prepared statements were found lost between transactions (see
    /// [`TenantPool::probe_statement_support`]); `/readyz` then answers 503 with the fix.
    pub fn statements_lost(&self) -> bool {
        self.0.statements_lost.load(Ordering::Relaxed)
    }

    /// Probes the app pool for prepared-statement support (only meaningful with the
    /// statement cache on) and records the result for `/readyz`; logs the fix when the
    /// statements are lost. [`Application::bind`] calls it, so `serve`, `dev` and the
    /// tests all do.
    pub async fn probe_pooler(&self) {
        if !self.pool().statement_cache() {
            return;
        }
        match self.pool().probe_statement_support().await {
            Ok(crate::pool::StatementSupport::Kept) => {}
            Ok(crate::pool::StatementSupport::Lost) => {
                self.0.statements_lost.store(true, Ordering::Relaxed);
                tracing::error!(
                    "prepared statements do not survive between transactions: {}",
                    error::STATEMENTS_LOST_FIX
                );
            }
            Err(e) => {
                tracing::warn!(error = %crate::error_chain(&e), "could not probe the pooler for prepared-statement support")
            }
        }
    }

    fn note_statements_lost(&self, res: &Response) {
        if res
            .extensions()
            .get::<error::StatementsLostMarker>()
            .is_some()
        {
            self.0.statements_lost.store(true, Ordering::Relaxed);
        }
    }
}

/// The whole API: `/v1` (tenant), `/admin/v1` (admin), and the operational endpoints.
pub fn router(state: AppState) -> Router {
    Router::new().fallback_service(service(state))
}

/// [`router`]'s service itself, as [`Application`] serves it: every request of a
/// connection goes straight into the layers, without the empty outer router's lookup and
/// the clone of its boxed fallback per request.
fn service(
    state: AppState,
) -> impl tower::Service<
    axum::extract::Request,
    Response = Response,
    Error = std::convert::Infallible,
    Future: Send + 'static,
> + Clone
       + Send
       + Sync
       + 'static {
    #[cfg(feature = "bench-baseline")]
    let tenant = if state.config().explicit_filter_pool.is_some() {
        compare::router().route_layer(middleware::from_fn_with_state(
            state.clone(),
            compare::scope,
        ))
    } else {
        tenant_router(&state)
    };
    #[cfg(not(feature = "bench-baseline"))]
    let tenant = tenant_router(&state);
    let admin = openapi::admin_routes().route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::admin_guard,
    ));
    let config = state.config().clone();
    let routed = Router::new()
        .merge(tenant)
        .merge(admin)
        .merge(ops::router())
        .fallback(not_found)
        .layer(observe::TrackLayer(state.clone()))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(state);
    let body_limit = config.body_limit;
    // The cross-cutting layers wrap the routed service once, as the fallback of an
    // otherwise empty router, instead of through `Router::layer`, which wraps every route
    // (and the fallback) separately: each `Router::layer` boxes each route once more, and
    // a request clones its route's nested boxes on the way in (in the callgrind profile
    // of a GET, `BoxCloneSyncService::clone_box` was 29 of its 113 allocations). The
    // layers and their order are unchanged; `track` stays inside the router, where the
    // matched route is known.
    ServiceBuilder::new()
        // Outermost, so it also rewrites what the layers below produce themselves. A plain
        // function through tower's `map_response`: axum's boxes a future per request.
        .map_response(error::ensure_problem_now)
        // The layers below change the body type (TraceLayer wraps it); one axum body, as
        // `Router::layer` made of every layer's response before.
        .map_response(|res: http::Response<_>| res.map(axum::body::Body::new))
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
        ]))
        .layer(SetRequestIdLayer::x_request_id(
            request_id::MakeRequestUuidV4,
        ))
        .layer(TraceLayer::new_for_http().make_span_with(observe::request_span))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        // Innermost: a declared length over the limit is 413 before the router runs.
        .layer(limits::RefuseOversizeLayer::new(body_limit))
        .service(routed)
}

fn tenant_router(state: &AppState) -> Router<AppState> {
    Router::from(openapi::tenant_routes())
        // The idempotency layer runs inside the tenant layer, called by it (see there).
        .route_layer(auth::TenantScopeLayer::new(state.clone()))
}

/// Unknown routes: a 404 whose detail differs from a missing resource's, so a client (and
/// the OpenAPI test) can tell a wrong URL from an absent id.
async fn not_found() -> Response {
    error::problem(
        StatusCode::NOT_FOUND,
        Some("no such route".into()),
        Vec::new(),
    )
}

/// Writes the recorded API key use every [`HttpConfig::last_used_flush`] and forgets idle
/// limiter entries. A named function (not a closure in [`Application::run_until`]) so
/// that profiles, and `bench/callgrind.rs`, can tell its cost from the connections'.
async fn last_used_writer(state: AppState) {
    let mut tick = tokio::time::interval(
        state
            .config()
            .last_used_flush
            .max(Duration::from_millis(100)),
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        state.auth().flush_last_used(state.pool()).await;
        state.limits().forget_idle();
    }
}

/// A bound server, ready to run.
pub struct Application {
    listener: tokio::net::TcpListener,
    state: AppState,
}

impl std::fmt::Debug for Application {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Application")
            .field("addr", &self.listener.local_addr().ok())
            .finish()
    }
}

impl Application {
    /// Binds `addr` (port 0 picks a free port), and probes the app pool for
    /// prepared-statement support ([`AppState::probe_pooler`]) so `/readyz` knows from the
    /// first request on.
    pub async fn bind(addr: SocketAddr, state: AppState) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        state.probe_pooler().await;
        Ok(Self { listener, state })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish and writes
    /// the last recorded API key use.
    ///
    /// HTTP/1.1 through hyper directly rather than `axum::serve`, which has no way to set
    /// a header-read timeout: a client must send its headers within
    /// [`HttpConfig::header_read_timeout`] or the connection is closed.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let flusher = tokio::spawn(last_used_writer(state.clone()));
        let app = service(state.clone());
        let mut http = hyper::server::conn::http1::Builder::new();
        http.timer(hyper_util::rt::TokioTimer::new())
            .header_read_timeout(state.config().header_read_timeout);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, as axum::serve does.
                        tracing::debug!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
                _ = &mut shutdown => break,
            };
            let _ = stream.set_nodelay(true);
            let service = hyper_util::service::TowerToHyperService::new(app.clone().map_request(
                |req: axum::http::Request<hyper::body::Incoming>| req.map(axum::body::Body::new),
            ));
            // hyper's own 400/414/431 heads become problem+json (see `wire`).
            let io = hyper_util::rt::TokioIo::new(wire::ProblemIo::new(stream));
            let conn = http.serve_connection(io, service);
            let conn = graceful.watch(conn);
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            });
        }
        drop(self.listener);
        graceful.shutdown().await;
        flusher.abort();
        state.auth().flush_last_used(state.pool()).await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    /// A normal build has no switch that serves tenant data past RLS: the bench's
    /// explicit-filter pool exists only with the `bench-baseline` feature, which nothing
    /// turns on by default (`HttpConfig`'s `Debug` lists every field it has).
    #[cfg(not(feature = "bench-baseline"))]
    #[test]
    fn the_bench_baseline_is_not_in_a_normal_build() {
        let config = format!("{:?}", super::HttpConfig::default());
        assert!(config.contains("idempotency_ttl"), "{config}");
        assert!(!config.contains("explicit_filter_pool"), "{config}");
    }
}
