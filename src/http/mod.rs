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
#[doc(hidden)]
pub mod compare;
pub mod documents;
pub mod error;
pub mod extract;
pub mod invoices;
pub mod json;
pub mod members;
pub mod ops;
pub mod projects;
pub mod request_id;
pub mod tasks;
pub mod webhooks;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{header, StatusCode};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use secrecy::SecretString;
use tower::ServiceBuilder;
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
    /// How long a verified API key is trusted without looking it up again (0 disables).
    pub key_cache_ttl: Duration,
    /// How often recorded API key use is written to `api_keys.last_used_at`.
    pub last_used_flush: Duration,
    /// The admin token (`/admin/v1`); `None` disables the admin API.
    pub admin_token: Option<SecretString>,
    /// JWT verification; `None` accepts API keys only.
    pub jwt: Option<JwtConfig>,
    /// Bench only: serve the benchmarked endpoints through this non-RLS pool with explicit
    /// tenant filters instead (see [`compare`]).
    #[doc(hidden)]
    pub explicit_filter_pool: Option<compare::ExplicitFilterPool>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            body_limit: 2 * 1024 * 1024,
            request_timeout: Duration::from_secs(30),
            key_cache_ttl: Duration::from_secs(5),
            last_used_flush: Duration::from_secs(10),
            admin_token: None,
            jwt: None,
            explicit_filter_pool: None,
        }
    }
}

struct Inner {
    pool: TenantPool,
    admin: Option<AdminPool>,
    auth: auth::Authenticator,
    config: HttpConfig,
    metrics: PrometheusHandle,
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
        Ok(Self(Arc::new(Inner {
            pool,
            admin,
            auth,
            config,
            metrics: ops::metrics_handle(),
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
}

/// The whole API: `/v1` (tenant), `/admin/v1` (admin), and the operational endpoints.
pub fn router(state: AppState) -> Router {
    let tenant = if state.config().explicit_filter_pool.is_some() {
        compare::router().route_layer(middleware::from_fn_with_state(
            state.clone(),
            compare::scope,
        ))
    } else {
        tenant_router(&state)
    };
    let admin = admin::router().route_layer(middleware::from_fn_with_state(
        state.clone(),
        auth::admin_guard,
    ));
    let config = state.config().clone();
    let routed = Router::new()
        .merge(tenant)
        .merge(admin)
        .merge(ops::router())
        .fallback(not_found)
        .layer(middleware::from_fn(track))
        .layer(DefaultBodyLimit::max(config.body_limit))
        .with_state(state);
    // The cross-cutting layers wrap the routed service once, as the fallback of an
    // otherwise empty router, instead of through `Router::layer`, which wraps every route
    // (and the fallback) separately: each `Router::layer` boxes each route once more, and
    // a request clones its route's nested boxes on the way in (in the callgrind profile
    // of a GET, `BoxCloneSyncService::clone_box` was 29 of its 113 allocations). The
    // layers and their order are unchanged; `track` stays inside the router, where the
    // matched route is known.
    let layered = ServiceBuilder::new()
        // Outermost, so it also rewrites what the layers below produce themselves.
        .layer(middleware::map_response(error::ensure_problem))
        // The layers below change the body type (TraceLayer wraps it); one axum body, as
        // `Router::layer` made of every layer's response before.
        .map_response(|res: http::Response<_>| res.map(axum::body::Body::new))
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION]))
        .layer(SetRequestIdLayer::x_request_id(
            request_id::MakeRequestUuidV4,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let id = req
                    .headers()
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
            }),
        )
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(CatchPanicLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            config.request_timeout,
        ))
        .service(routed);
    Router::new().fallback_service(layered)
}

fn tenant_router(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(projects::router())
        .merge(tasks::router())
        .merge(documents::router())
        .merge(comments::router())
        .merge(invoices::router())
        .merge(members::router())
        .merge(api_keys::router())
        .merge(webhooks::router())
        .merge(audit_log::router())
        .route_layer(middleware::from_fn_with_state(
            state.clone(),
            auth::tenant_scope,
        ))
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

/// Counts requests and their latency per route for `/metrics`.
async fn track(req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|m| m.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let method = req.method().as_str().to_owned();
    let res = next.run(req).await;
    let status = res.status().as_u16().to_string();
    metrics::counter!("http_requests_total", "method" => method.clone(), "route" => route.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route)
        .record(start.elapsed().as_secs_f64());
    res
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
    /// Binds `addr` (port 0 picks a free port).
    pub async fn bind(addr: SocketAddr, state: AppState) -> std::io::Result<Self> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(Self { listener, state })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then lets in-flight requests finish and writes
    /// the last recorded API key use.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let state = self.state.clone();
        let flusher = {
            let state = state.clone();
            tokio::spawn(async move {
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
                }
            })
        };
        let app = router(state.clone());
        let result = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown)
            .await;
        flusher.abort();
        state.auth().flush_last_used(state.pool()).await;
        result
    }
}

/// Sets up logging once: JSON lines when `json`, else human-readable; filtered by
/// `RUST_LOG` (default `info`). Logs go to stderr, so what a command prints for people
/// (dev's keys and curl lines) stays alone on stdout.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
