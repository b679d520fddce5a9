//! `/v1/documents`: documents of projects, filterable by project. Viewers read, members
//! write.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{Db, Member, Need, Viewer};
use super::error::{ApiError, Problem};
use super::extract::{
    delete_cascading, get_json_by_id, not_null, record, Cascade, Check, Insert, Json, ListQuery,
    Page, PageParams, Patch, Path, Query,
};
use super::AppState;

record! {
table = "documents", resource = "document", time = created_at;
/// A document.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Document {
    /// Id.
    pub id: Uuid,
    /// The project it belongs to.
    pub project_id: Uuid,
    /// Title, 1–500 characters.
    pub title: String,
    /// Body, up to 1,000,000 characters.
    pub body: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}
}

/// Body of `POST /v1/documents`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDocument {
    /// The project.
    pub project_id: Uuid,
    /// Title.
    #[schema(min_length = 1, max_length = 500, pattern = "^[^\\u0000]*$")]
    pub title: String,
    /// Body.
    #[serde(default)]
    #[schema(min_length = 0, max_length = 1000000, pattern = "^[^\\u0000]*$")]
    pub body: String,
}

/// Body of `PATCH /v1/documents/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DocumentPatch {
    /// New title.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\u0000]*$"
    )]
    pub title: Option<String>,
    /// New body.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(
        nullable = false,
        min_length = 0,
        max_length = 1000000,
        pattern = "^[^\\u0000]*$"
    )]
    pub body: Option<String>,
}

/// Filters of `GET /v1/documents`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct DocumentFilter {
    /// Only this project's documents.
    pub project_id: Option<Uuid>,
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
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, remove))
}

/// Lists documents, newest first.
#[utoipa::path(get, path = "/v1/documents", tag = "documents", operation_id = "documents_list", extensions(("x-min-role" = json!("viewer"))), params(DocumentFilter),
    responses((status = 200, body = Page<Document>), (status = 400, body = Problem)))]
pub(crate) async fn list(
    _: Need<Viewer>,
    mut db: Db,
    Query(f): Query<DocumentFilter>,
) -> Result<super::json::JsonBytes, ApiError> {
    let page = PageParams {
        limit: f.limit,
        cursor: f.cursor,
    };
    let mut q = ListQuery::new();
    q.eq("project_id", f.project_id);
    q.run_json::<Document>(&mut db, &page).await
}

/// Creates a document.
#[utoipa::path(post, path = "/v1/documents", tag = "documents", operation_id = "documents_create", extensions(("x-min-role" = json!("member"))), request_body = NewDocument,
    responses((status = 201, body = Document), (status = 422, body = Problem)))]
pub(crate) async fn create(
    Need(p, ..): Need<Member>,
    db: Db,
    Json(b): Json<NewDocument>,
) -> Result<(StatusCode, Json<Document>), ApiError> {
    Check::new()
        .len("title", Some(&b.title), 1, 500)
        .len("body", Some(&b.body), 0, 1_000_000)
        .done()?;
    let mut insert = Insert::new();
    insert
        .set("project_id", b.project_id)
        .set("title", b.title)
        .set("body", b.body);
    Ok((StatusCode::CREATED, Json(insert.run(db, &p.actor).await?)))
}

/// Gets one document.
#[utoipa::path(get, path = "/v1/documents/{id}", tag = "documents", operation_id = "documents_get", extensions(("x-min-role" = json!("viewer"))), params(("id" = Uuid, Path)),
    responses((status = 200, body = Document), (status = 404, body = Problem)))]
pub(crate) async fn get_one(
    _: Need<Viewer>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<super::json::JsonBytes, ApiError> {
    get_json_by_id::<Document>(&mut db, id).await
}

/// Changes a document.
#[utoipa::path(patch, path = "/v1/documents/{id}", tag = "documents", operation_id = "documents_update", extensions(("x-min-role" = json!("member"))), params(("id" = Uuid, Path)),
    request_body = DocumentPatch,
    responses((status = 200, body = Document), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update(
    Need(p, ..): Need<Member>,
    db: Db,
    Path(id): Path<Uuid>,
    Json(b): Json<DocumentPatch>,
) -> Result<Json<Document>, ApiError> {
    Check::new()
        .len("title", b.title.as_deref(), 1, 500)
        .len("body", b.body.as_deref(), 0, 1_000_000)
        .done()?;
    let mut patch = Patch::new(id);
    patch.set("title", b.title).set("body", b.body);
    Ok(Json(patch.run(db, &p.actor).await?))
}

/// Deletes a document and its comments; its audit row lists them (`details.cascade`).
#[utoipa::path(delete, path = "/v1/documents/{id}", tag = "documents", operation_id = "documents_delete", extensions(("x-min-role" = json!("member"))), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn remove(
    Need(p, ..): Need<Member>,
    db: Db,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    delete_cascading::<Document>(
        db,
        id,
        &p.actor,
        Cascade {
            lock: Some("SELECT 1 FROM documents WHERE id = $1 AND tenant_id = $2 FOR UPDATE"),
            dependents: &[(
                "comments",
                "SELECT id FROM comments WHERE document_id = $1 AND tenant_id = $2",
            )],
        },
    )
    .await
}
