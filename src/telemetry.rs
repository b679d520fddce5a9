//! Logging set-up for the commands that serve (`serve`, `dev`).
//!
//! Two choices here are about cost on the request path, not about what is logged:
//!
//! - **The filter.** `RUST_LOG` is parsed as `EnvFilter` syntax, as before. When it has
//!   only static directives (`info`, `tenantguard=debug,hyper=warn`: no `[span{field}]`
//!   parts, which is every setting this project documents), it is applied as a
//!   [`Targets`] filter, which matches the same directives the same way but keeps no
//!   per-span state: `EnvFilter` takes a read lock and a hash lookup on every span enter,
//!   exit and close, in case a dynamic directive cares about that span (the request span
//!   is entered on every poll of the request's future). With dynamic directives it stays
//!   an `EnvFilter`.
//! - **Colours** only when stderr is a terminal (and `NO_COLOR` is unset), instead of
//!   always: log files and collectors got ANSI escapes in every line before, and the
//!   request span's fields are formatted, with their escapes, when the span is made.
//! - **The request span's fields, formatted when a line is written.** `fmt::Layer` formats
//!   a span's fields into a `String` when the span is made, whether or not a line is ever
//!   written in it; for the request span (method, path, request id) that was ≈ 3k
//!   instructions and five allocations per request in the callgrind profile, for lines that
//!   at the default level are never written. `DeferRequestFields`, placed before the
//!   `fmt` layer, keeps the request's method, URI and id as they are (reference-counted
//!   clones, no formatting) and has the `fmt` layer's own formatter render them into the
//!   span's fields just before the first line inside the span is written (or a field is
//!   recorded into it): every line carries the same fields, in the same form, as before.

use std::io::IsTerminal;

use tracing::field::{display, Value};
use tracing::span::{Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::format::{DefaultFields, JsonFields};
use tracing_subscriber::fmt::{FormatFields, FormattedFields, MakeWriter};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The default filter when `RUST_LOG` is unset or invalid.
const DEFAULT_FILTER: &str = "info";

pub(crate) type BoxedFilter = Box<dyn Layer<Registry> + Send + Sync>;

/// Sets up logging once: JSON lines when `json`, else human-readable; filtered by
/// `RUST_LOG` (default `info`). Logs go to stderr, so what a command prints for people
/// (dev's keys and curl lines) stays alone on stdout. A second call does nothing.
pub fn init_tracing(json: bool) {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let _ = subscriber(filter, json, ansi, std::io::stderr, false).try_init();
}

/// The whole subscriber of [`init_tracing`], writing to `writer` (tests: a buffer, without
/// timestamps).
pub(crate) fn subscriber<W>(
    filter: BoxedFilter,
    json: bool,
    ansi: bool,
    writer: W,
    without_time: bool,
) -> Box<dyn Subscriber + Send + Sync>
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    // A macro, not a value: each arm's layer is typed for its own subscriber stack.
    macro_rules! fmt {
        () => {
            tracing_subscriber::fmt::layer()
                .with_writer(writer)
                .with_ansi(ansi)
        };
    }
    let registry = tracing_subscriber::registry().with(filter);
    match (json, without_time) {
        (true, false) => Box::new(
            registry
                .with(DeferRequestFields(JsonFields::new()))
                .with(fmt!().json().flatten_event(true)),
        ),
        (true, true) => Box::new(
            registry
                .with(DeferRequestFields(JsonFields::new()))
                .with(fmt!().json().flatten_event(true).without_time()),
        ),
        (false, false) => Box::new(
            registry
                .with(DeferRequestFields(DefaultFields::new()))
                .with(fmt!()),
        ),
        (false, true) => Box::new(
            registry
                .with(DeferRequestFields(DefaultFields::new()))
                .with(fmt!().without_time()),
        ),
    }
}

/// What a request span's fields are made of, kept unformatted until a line needs them
/// (see the module docs). The clones are reference counts: the URI and the header value
/// share the request's bytes.
pub(crate) struct RequestFields {
    /// The request's method.
    pub(crate) method: http::Method,
    /// The request's URI (its path is logged).
    pub(crate) uri: http::Uri,
    /// The request's `x-request-id`, if it has a valid one.
    pub(crate) request_id: Option<http::HeaderValue>,
}

impl RequestFields {
    /// Calls `f` with the values of a span with the fields `method`, `path` and
    /// `request_id` (see `http::observe::request_span`), displayed as `%` would; does
    /// nothing for a span without them.
    fn with_values(
        &self,
        fields: &tracing::field::FieldSet,
        f: impl FnOnce(&tracing::field::ValueSet<'_>),
    ) {
        let (Some(m), Some(p), Some(r)) = (
            fields.field("method"),
            fields.field("path"),
            fields.field("request_id"),
        ) else {
            return;
        };
        let method = display(self.method.as_str());
        let path = display(self.uri.path());
        let id = display(
            self.request_id
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .unwrap_or(""),
        );
        let values: [(&tracing::field::Field, Option<&dyn Value>); 3] =
            [(&m, Some(&method)), (&p, Some(&path)), (&r, Some(&id))];
        f(&fields.value_set(&values));
    }
}

/// Makes `span` (made with `method`, `path` and `request_id` as `Empty` fields) carry
/// `fields`: kept as they are when the subscriber has [`DeferRequestFields`], recorded into
/// the span at once otherwise (any other subscriber gets the same fields as before).
pub(crate) fn record_request_fields(span: &tracing::Span, fields: RequestFields) {
    if span.is_disabled() {
        return;
    }
    let fields = match span.with_subscriber(|(id, dispatch)| defer(id, dispatch, fields)) {
        Some(None) => return,
        Some(Some(f)) => f,
        // No subscriber: nothing to record into.
        None => return,
    };
    if let Some(meta) = span.metadata() {
        fields.with_values(meta.fields(), |values| {
            span.record_all(values);
        });
    }
}

/// Stores `fields` in the span's extensions if the dispatcher defers them; gives them back
/// otherwise.
fn defer(id: &Id, dispatch: &tracing::Dispatch, fields: RequestFields) -> Option<RequestFields> {
    let deferred = dispatch
        .downcast_ref::<DeferRequestFields<DefaultFields>>()
        .is_some()
        || dispatch
            .downcast_ref::<DeferRequestFields<JsonFields>>()
            .is_some();
    if !deferred {
        return Some(fields);
    }
    let Some(registry) = dispatch.downcast_ref::<Registry>() else {
        return Some(fields);
    };
    let Some(span) = registry.span(id) else {
        return Some(fields);
    };
    span.extensions_mut().insert(fields);
    None
}

/// The layer that renders a request span's [`RequestFields`] when they are first needed
/// (see the module docs). It must come before the `fmt` layer whose field formatter `N`
/// it uses, so that it runs first.
pub(crate) struct DeferRequestFields<N>(N);

impl<N> DeferRequestFields<N>
where
    N: for<'w> FormatFields<'w> + 'static,
{
    /// Renders the kept fields of the span `id` into the `fmt` layer's formatted fields
    /// (once: the kept values are removed).
    fn render<S>(&self, id: &Id, ctx: &Context<'_, S>)
    where
        S: Subscriber + for<'a> LookupSpan<'a>,
    {
        let Some(span) = ctx.span(id) else {
            return;
        };
        let mut ext = span.extensions_mut();
        let Some(fields) = ext.remove::<RequestFields>() else {
            return;
        };
        let meta = span.metadata();
        // The `fmt` layer made this (empty, with its colour settings) when the span was
        // made; rendered through its own formatter, exactly as if recorded then.
        if let Some(formatted) = ext.get_mut::<FormattedFields<N>>() {
            fields.with_values(meta.fields(), |values| {
                let _ = self.0.add_fields(formatted, &Record::new(values));
            });
        }
    }
}

impl<S, N> Layer<S> for DeferRequestFields<N>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'w> FormatFields<'w> + Send + Sync + 'static,
{
    fn on_record(&self, id: &Id, _: &Record<'_>, ctx: Context<'_, S>) {
        // Before the fmt layer appends the new values: the kept ones come first, as
        // they would have.
        self.render(id, &ctx);
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let Some(scope) = ctx.event_scope(event) else {
            return;
        };
        for span in scope {
            if span.extensions().get::<RequestFields>().is_some() {
                self.render(&span.id(), &ctx);
            }
        }
    }
}

/// The filter for `RUST_LOG` (see the module docs): `EnvFilter`'s syntax and meaning,
/// applied as [`Targets`] when every directive is static.
pub(crate) fn log_filter(rust_log: Option<&str>) -> BoxedFilter {
    let text = rust_log
        .filter(|s| EnvFilter::builder().parse(s).is_ok())
        .unwrap_or(DEFAULT_FILTER);
    if is_static(text) {
        if let Ok(targets) = text.parse::<Targets>() {
            return Box::new(targets);
        }
    }
    Box::new(EnvFilter::builder().parse_lossy(text))
}

/// Whether a filter string has no span or field directives (`target[span{field=v}]=lvl`).
fn is_static(text: &str) -> bool {
    !text.contains(['[', '{'])
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing::Level;
    use tracing_subscriber::layer::SubscriberExt;

    /// Whether an event of `level` from `target` passes `filter`, through a real
    /// subscriber stack.
    fn passes(filter: BoxedFilter, target_debug_in_tenantguard: bool, level: Level) -> bool {
        let hits = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        struct Count(std::sync::Arc<std::sync::atomic::AtomicUsize>);
        impl<S: tracing::Subscriber> Layer<S> for Count {
            fn on_event(
                &self,
                _: &tracing::Event<'_>,
                _: tracing_subscriber::layer::Context<'_, S>,
            ) {
                self.0.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }
        let subscriber = tracing_subscriber::registry()
            .with(filter)
            .with(Count(hits.clone()));
        tracing::subscriber::with_default(subscriber, || {
            if target_debug_in_tenantguard {
                match level {
                    Level::DEBUG => tracing::debug!(target: "tenantguard::http", "x"),
                    _ => tracing::info!(target: "tenantguard::http", "x"),
                }
            } else {
                match level {
                    Level::DEBUG => tracing::debug!(target: "hyper::proto", "x"),
                    _ => tracing::info!(target: "hyper::proto", "x"),
                }
            }
        });
        hits.load(std::sync::atomic::Ordering::Relaxed) == 1
    }

    #[test]
    fn static_settings_filter_as_env_filter_does() {
        // The default: info and up, everywhere.
        assert!(passes(log_filter(None), true, Level::INFO));
        assert!(!passes(log_filter(None), true, Level::DEBUG));
        // Per target: the longest matching target wins.
        let f = || log_filter(Some("warn,tenantguard=debug"));
        assert!(passes(f(), true, Level::DEBUG));
        assert!(!passes(f(), false, Level::INFO));
        // An invalid setting falls back to the default, as before.
        assert!(passes(log_filter(Some("=nonsense=[")), true, Level::INFO));
        assert!(!passes(log_filter(Some("=nonsense=[")), true, Level::DEBUG));
        assert!(!passes(log_filter(Some("off")), true, Level::INFO));
    }

    #[test]
    fn span_directives_keep_env_filter() {
        assert!(is_static("info,tenantguard::http=debug"));
        assert!(!is_static("tenantguard[request{path=/v1}]=debug"));
        // Still parsed and applied: outside the span, only the default level.
        let f = || log_filter(Some("info,tenantguard[request]=debug"));
        assert!(passes(f(), true, Level::INFO));
        assert!(!passes(f(), true, Level::DEBUG));
    }
}
