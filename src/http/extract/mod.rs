//! Request-side helpers shared by the resource modules, one job per file:
//!
//! - here: the extractors, whose rejections are problem+json;
//! - [`record`]: a resource's row type declared once ([`record!`]: columns, `GET`,
//!   `from_row`);
//! - [`pagination`]: keyset cursors and the list query;
//! - [`write`]: the audited INSERT / PATCH / DELETE builders and [`Db::finish`], the
//!   request's last statement;
//! - [`validation`]: per-field 422 checks.
//!
//! Everything is re-exported here, so a resource module imports from one place.
//!
//! [`Db::finish`]: crate::http::auth::Db::finish

use axum::extract::{FromRequest, FromRequestParts};
use serde::Serialize;
use tokio_postgres::types::ToSql;

use super::error::ApiError;

pub mod pagination;
pub mod record;
pub mod validation;
pub mod write;

pub use pagination::{Cursor, ListQuery, Page, PageParams, DEFAULT_LIMIT, MAX_LIMIT};
pub(crate) use record::record;
pub use record::{get_by_id, get_json_by_id, get_row_by_id, row_json, Record, Table};
pub use validation::{integer, not_null, nullable, some_integer, Check};
pub use write::{audited, delete, delete_cascading, Cascade, Insert, Patch, CASCADE_IDS};

/// `axum::Json` with problem+json rejections (400 syntax, 415, 413, 422 types/unknown fields).
#[derive(Debug, FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct Json<T>(pub T);

impl<T: Serialize> axum::response::IntoResponse for Json<T> {
    fn into_response(self) -> axum::response::Response {
        super::json::response(&self.0)
    }
}

/// `axum::extract::Path` with a 400 problem for malformed ids.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct Path<T>(pub T);

/// `axum::extract::Query` with a 400 problem for malformed parameters.
#[derive(Debug, FromRequestParts)]
#[from_request(via(axum::extract::Query), rejection(ApiError))]
pub struct Query<T>(pub T);

/// A boxed SQL parameter (lists and writes build their parameters at run time).
pub type Param = Box<dyn ToSql + Sync + Send>;

tokio::task_local! {
    static ROUTING_HINT: bool;
}

/// Whether the builders here add the routing hint, `tenant_id = $n` bound from the
/// transaction's own tenant, to every statement they make (on unless the server was
/// started with `TENANTGUARD_ROUTING_HINT=off`; on outside [`with_routing_hint`]).
///
/// The hint is never the security boundary: row-level security is, and a statement
/// without the hint still sees only its tenant's rows. It exists for a database sharded
/// by `tenant_id` (Citus), whose planner sends a statement to one shard only when it
/// names the distribution key's value; RLS alone fans every statement out to every
/// shard. Forgetting it costs latency, not isolation. On plain PostgreSQL it is one more
/// equality on the leading key column of the `(tenant_id, …)` indexes.
pub fn routing_hint() -> bool {
    ROUTING_HINT.try_with(|on| *on).unwrap_or(true)
}

/// `f` (a request's handling) with the routing hint on or off (see [`routing_hint`]);
/// off is what the benchmark's fanned-out run measures. A task-local, so two servers in
/// one process keep their own setting.
///
/// A plain function returning tokio's wrapper, not an `async fn`: an `async fn` would hold
/// its argument and the future it awaits side by side, and the request's whole future is
/// copied into the box of the layer above it on every request (callgrind, per get:
/// memcpy 16.7k of 80.5k instructions with an `async fn` in a branch, 5.7k of 70.2k with
/// this).
pub fn with_routing_hint<F: std::future::Future>(
    on: bool,
    f: F,
) -> tokio::task::futures::TaskLocalFuture<bool, F> {
    ROUTING_HINT.scope(on, f)
}
