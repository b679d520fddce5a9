//! `/v1/audit-log`: read-only. Every mutation elsewhere writes a row here in its own
//! transaction; the app role has SELECT and INSERT only, so rows cannot be changed or
//! removed through the API or the database. Admins read.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{Admin, Db, Need};
use super::error::{ApiError, Problem};
use super::extract::{get_json_by_id, record, Check, ListQuery, Page, PageParams, Path, Query};
use super::AppState;

record! {
table = "audit_log", resource = "audit_log", time = occurred_at;
/// One audit row.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Id.
    pub id: Uuid,
    /// Who: `api_key:<id>`, `user:<sub>` or `admin`.
    pub actor: String,
    /// `create`, `update`, `delete`, `revoke`, …
    pub action: String,
    /// e.g. `project`.
    pub resource_type: String,
    /// The resource's id.
    pub resource_id: Option<Uuid>,
    /// When.
    pub occurred_at: DateTime<Utc>,
    /// Changed fields and other details.
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}
}

/// Filters of `GET /v1/audit-log`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct AuditFilter {
    /// Only this resource type.
    #[param(min_length = 1, max_length = 100, pattern = "^[^\\u0000]*$")]
    pub resource_type: Option<String>,
    /// Only this resource.
    pub resource_id: Option<Uuid>,
    /// Only this actor.
    #[param(min_length = 1, max_length = 300, pattern = "^[^\\u0000]*$")]
    pub actor: Option<String>,
    /// Page size.
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<i64>,
    /// Cursor.
    pub cursor: Option<String>,
}

/// The routes and their OpenAPI operations, from one declaration: each handler's
/// `#[utoipa::path]` gives both its route and its document entry.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list))
        .routes(routes!(get_one))
}

/// Lists audit rows, newest first.
#[utoipa::path(get, path = "/v1/audit-log", tag = "audit-log", operation_id = "audit_log_list", extensions(("x-min-role" = json!("admin"))), params(AuditFilter),
    responses((status = 200, body = Page<AuditEntry>), (status = 403, body = Problem)))]
pub(crate) async fn list(
    _: Need<Admin>,
    mut db: Db,
    Query(f): Query<AuditFilter>,
) -> Result<super::json::JsonBytes, ApiError> {
    Check::new()
        .len("resource_type", f.resource_type.as_deref(), 1, 100)
        .len("actor", f.actor.as_deref(), 1, 300)
        .done()?;
    let page = PageParams {
        limit: f.limit,
        cursor: f.cursor,
    };
    let mut q = ListQuery::new();
    q.eq("resource_type", f.resource_type)
        .eq("resource_id", f.resource_id)
        .eq("actor", f.actor);
    q.run_json::<AuditEntry>(&mut db, &page).await
}

/// Gets one audit row.
#[utoipa::path(get, path = "/v1/audit-log/{id}", tag = "audit-log", operation_id = "audit_log_get", extensions(("x-min-role" = json!("admin"))), params(("id" = Uuid, Path)),
    responses((status = 200, body = AuditEntry), (status = 404, body = Problem)))]
pub(crate) async fn get_one(
    _: Need<Admin>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<super::json::JsonBytes, ApiError> {
    get_json_by_id::<AuditEntry>(&mut db, id).await
}
