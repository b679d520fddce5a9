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

use std::io::IsTerminal;

use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// The default filter when `RUST_LOG` is unset or invalid.
const DEFAULT_FILTER: &str = "info";

type BoxedFilter = Box<dyn Layer<Registry> + Send + Sync>;

/// Sets up logging once: JSON lines when `json`, else human-readable; filtered by
/// `RUST_LOG` (default `info`). Logs go to stderr, so what a command prints for people
/// (dev's keys and curl lines) stays alone on stdout. A second call does nothing.
pub fn init_tracing(json: bool) {
    let filter = log_filter(std::env::var("RUST_LOG").ok().as_deref());
    let ansi = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        registry.with(fmt.json().flatten_event(true)).try_init()
    } else {
        registry.with(fmt).try_init()
    };
}

/// The filter for `RUST_LOG` (see the module docs): `EnvFilter`'s syntax and meaning,
/// applied as [`Targets`] when every directive is static.
fn log_filter(rust_log: Option<&str>) -> BoxedFilter {
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
