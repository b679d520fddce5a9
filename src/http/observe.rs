//! What every request leaves behind besides its answer: its tracing span (the fields every
//! log line of the request carries) and its metrics (`/metrics`).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{ready, Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;

use super::limits::IdHash;
use super::AppState;

/// The request's span: method, path and request id on every log line made inside it.
pub(super) fn request_span(req: &Request) -> tracing::Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
}

/// The method as a metrics label: the standard ones by name, any other token (every
/// token is a valid method) as `other`, so clients cannot add series.
fn method_label(m: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *m {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        Method::TRACE => "TRACE",
        Method::CONNECT => "CONNECT",
        _ => "other",
    }
}

/// Counts requests and their latency per route for `/metrics`. Every label is bounded:
/// the route is a declared pattern (or `unmatched`), the method one of nine names or
/// `other`, the status a three-digit code; no label names a tenant. Also notes a
/// response that says prepared statements were lost (`/readyz`).
///
/// A tower layer with its own future rather than `axum::middleware::from_fn`: axum's
/// version clones the boxed route and boxes both the rest of the stack and the future on
/// every request (three allocations per request in the callgrind profile).
#[derive(Clone)]
pub(super) struct TrackLayer(pub(super) AppState);

impl<S> tower::Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            state: self.0.clone(),
        }
    }
}

/// The service of [`TrackLayer`].
#[derive(Clone)]
pub(super) struct Track<S> {
    inner: S,
    state: AppState,
}

impl<S> tower::Service<Request> for Track<S>
where
    S: tower::Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let start = Instant::now();
        // An Arc clone: the pattern is read after the request is gone.
        let route = req.extensions().get::<MatchedPath>().cloned();
        let method = method_label(req.method());
        Tracked {
            inner: self.inner.call(req),
            state: self.state.clone(),
            start,
            route,
            method,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`Track`]: records when the response is ready.
    pub(super) struct Tracked<F> {
        #[pin]
        inner: F,
        state: AppState,
        start: Instant,
        route: Option<MatchedPath>,
        method: &'static str,
    }
}

impl<F, E> Future for Tracked<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let out = ready!(this.inner.poll(cx));
        if let Ok(res) = &out {
            this.state.note_statements_lost(res);
            this.state.0.http_metrics.record(
                this.route.as_ref().map_or("unmatched", MatchedPath::as_str),
                this.method,
                res.status().as_u16(),
                this.start.elapsed().as_secs_f64(),
            );
        }
        Poll::Ready(out)
    }
}

/// The request metrics' handles, made once per (route, method, status) and reused:
/// `metrics::counter!` with labels builds and hashes an owned label set, and the recorder
/// looks it up, on every call (in the callgrind profile, five allocations and a registry
/// lookup per request). The map is bounded like the labels (declared route patterns, ten
/// method names, the statuses this server answers with).
#[derive(Default)]
pub(super) struct HttpMetrics {
    // The keys are declared route patterns, method names and statuses, never a client's
    // text, so the fast IdHash serves.
    routes: std::sync::Mutex<HashMap<String, HashMap<&'static str, RouteMethod, IdHash>, IdHash>>,
}

struct RouteMethod {
    duration: metrics::Histogram,
    requests: HashMap<u16, metrics::Counter, IdHash>,
}

impl HttpMetrics {
    fn record(&self, route: &str, method: &'static str, status: u16, secs: f64) {
        let Ok(mut routes) = self.routes.lock() else {
            return;
        };
        if !routes.contains_key(route) {
            routes.insert(route.to_owned(), HashMap::default());
        }
        let Some(by_method) = routes.get_mut(route) else {
            return;
        };
        let m = by_method.entry(method).or_insert_with(|| RouteMethod {
            duration: metrics::histogram!("http_request_duration_seconds", "method" => method, "route" => route.to_owned()),
            requests: HashMap::default(),
        });
        m.requests
            .entry(status)
            .or_insert_with(|| {
                metrics::counter!("http_requests_total", "method" => method, "route" => route.to_owned(), "status" => status.to_string())
            })
            .increment(1);
        m.duration.record(secs);
    }
}
