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
///
/// The fields are kept as the request has them and formatted only when a line is written
/// in the span ([`crate::telemetry`]): made as `Empty` here, then filled in.
pub(super) fn request_span(req: &Request) -> tracing::Span {
    let span = tracing::info_span!(
        "request",
        method = tracing::field::Empty,
        path = tracing::field::Empty,
        request_id = tracing::field::Empty
    );
    if !span.is_disabled() {
        crate::telemetry::record_request_fields(
            &span,
            crate::telemetry::RequestFields {
                method: req.method().clone(),
                uri: req.uri().clone(),
                request_id: req.headers().get("x-request-id").cloned(),
            },
        );
    }
    span
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;
    use crate::telemetry::{log_filter, subscriber};

    /// The log lines, as written.
    #[derive(Clone, Default)]
    struct Lines(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0
                .lock()
                .map_err(|_| std::io::ErrorKind::Other)?
                .extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Lines {
        type Writer = Lines;
        fn make_writer(&'a self) -> Lines {
            self.clone()
        }
    }

    impl Lines {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().expect("not poisoned").clone()).expect("UTF-8")
        }
    }

    fn request(id: Option<&str>) -> Request {
        let mut b = axum::http::Request::builder()
            .method("PATCH")
            .uri("/v1/projects/7f0c?x=1");
        if let Some(id) = id {
            b = b.header("x-request-id", id);
        }
        b.body(axum::body::Body::empty()).expect("a request")
    }

    /// What is logged inside a request span, the span made by `make`.
    fn logged(json: bool, ansi: bool, make: impl Fn() -> tracing::Span) -> String {
        let lines = Lines::default();
        let sub = subscriber(log_filter(None), json, ansi, lines.clone(), true);
        tracing::subscriber::with_default(sub, || {
            let span = make();
            let _in = span.enter();
            tracing::debug!("not written, and no fields rendered for it");
            tracing::info!(n = 1, "first line");
            let child = tracing::info_span!("child", k = 2);
            let _c = child.enter();
            tracing::warn!("in a child span");
        });
        lines.text()
    }

    /// The span as it was made before its fields were deferred: formatted when made.
    fn eager(req: &Request) -> tracing::Span {
        let id = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        tracing::info_span!("request", method = %req.method(), path = %req.uri().path(), request_id = %id)
    }

    #[test]
    fn deferred_request_fields_log_exactly_as_eager_ones() {
        for json in [false, true] {
            for ansi in [false, true] {
                for id in [Some("req-1"), None] {
                    let req = request(id);
                    let deferred = logged(json, ansi, || request_span(&req));
                    let before = logged(json, ansi, || eager(&req));
                    assert_eq!(deferred, before, "json {json}, ansi {ansi}, id {id:?}");
                    assert_eq!(deferred.lines().count(), 2, "{deferred}");
                }
            }
        }
        let req = request(Some("req-1"));
        let plain = logged(false, false, || request_span(&req));
        for line in plain.lines() {
            assert!(
                line.contains("request{method=PATCH path=/v1/projects/7f0c request_id=req-1}"),
                "{line}"
            );
        }
        let json = logged(true, false, || request_span(&req));
        for line in json.lines() {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            assert_eq!(
                v["spans"][0],
                serde_json::json!({"name": "request", "method": "PATCH", "path": "/v1/projects/7f0c", "request_id": "req-1"}),
                "{line}"
            );
        }
    }

    #[test]
    fn another_subscriber_gets_the_fields_at_once() {
        // Without the deferring layer (a subscriber someone else set up), the fields are
        // recorded into the span when it is made, as before.
        let lines = Lines::default();
        let sub = tracing_subscriber::fmt()
            .with_writer(lines.clone())
            .with_ansi(false)
            .without_time()
            .finish();
        let req = request(Some("req-2"));
        tracing::subscriber::with_default(sub, || {
            let span = request_span(&req);
            let _in = span.enter();
            tracing::info!("a line");
        });
        let text = lines.text();
        assert!(
            text.contains("request{method=PATCH path=/v1/projects/7f0c request_id=req-2}"),
            "{text}"
        );
    }
}
