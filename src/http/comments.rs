//! `/v1/comments`: comments on a task or a document (exactly one). Viewers read, members
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
    delete, get_json_by_id, not_null, record, Check, Insert, Json, ListQuery, Page, PageParams,
    Patch, Path, Query,
};
use super::AppState;

record! {
table = "comments", resource = "comment", time = created_at;
/// A comment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Comment {
    /// Id.
    pub id: Uuid,
    /// The task commented on (or null).
    pub task_id: Option<Uuid>,
    /// The document commented on (or null).
    pub document_id: Option<Uuid>,
    /// The member who wrote it.
    pub author_id: Option<Uuid>,
    /// Text, 1–20,000 characters.
    pub body: String,
    /// Creation time.
    pub created_at: DateTime<Utc>,
    /// Last change.
    pub updated_at: DateTime<Utc>,
}
}

/// Body of `POST /v1/comments`: exactly one of `task_id` and `document_id`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewComment {
    /// The task.
    #[serde(default)]
    pub task_id: Option<Uuid>,
    /// The document.
    #[serde(default)]
    pub document_id: Option<Uuid>,
    /// The author (a member).
    #[serde(default)]
    pub author_id: Option<Uuid>,
    /// Text.
    #[schema(min_length = 1, max_length = 20000, pattern = "^[^\\u0000]*$")]
    pub body: String,
}

/// Body of `PATCH /v1/comments/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CommentPatch {
    /// New text.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 20000,
        pattern = "^[^\\u0000]*$"
    )]
    pub body: Option<String>,
}

/// Filters of `GET /v1/comments`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct CommentFilter {
    /// Only comments on this task.
    pub task_id: Option<Uuid>,
    /// Only comments on this document.
    pub document_id: Option<Uuid>,
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

/// Lists comments, newest first.
#[utoipa::path(get, path = "/v1/comments", tag = "comments", operation_id = "comments_list", extensions(("x-min-role" = json!("viewer"))), params(CommentFilter),
    responses((status = 200, body = Page<Comment>), (status = 400, body = Problem)))]
pub(crate) async fn list(
    _: Need<Viewer>,
    mut db: Db,
    Query(f): Query<CommentFilter>,
) -> Result<super::json::JsonBytes, ApiError> {
    let page = PageParams {
        limit: f.limit,
        cursor: f.cursor,
    };
    let mut q = ListQuery::new();
    q.eq("task_id", f.task_id).eq("document_id", f.document_id);
    q.run_json::<Comment>(&mut db, &page).await
}

/// Creates a comment.
#[utoipa::path(post, path = "/v1/comments", tag = "comments", operation_id = "comments_create", extensions(("x-min-role" = json!("member"))), request_body = NewComment,
    responses((status = 201, body = Comment), (status = 422, body = Problem)))]
pub(crate) async fn create(
    Need(p, ..): Need<Member>,
    db: Db,
    Json(b): Json<NewComment>,
) -> Result<(StatusCode, Json<Comment>), ApiError> {
    Check::new()
        .len("body", Some(&b.body), 1, 20_000)
        .that(
            b.task_id.is_some() != b.document_id.is_some(),
            "task_id",
            "give exactly one of task_id and document_id",
        )
        .done()?;
    let mut insert = Insert::new();
    insert
        .set("task_id", b.task_id)
        .set("document_id", b.document_id)
        .set("author_id", b.author_id)
        .set("body", b.body);
    Ok((StatusCode::CREATED, Json(insert.run(db, &p.actor).await?)))
}

/// Gets one comment.
#[utoipa::path(get, path = "/v1/comments/{id}", tag = "comments", operation_id = "comments_get", extensions(("x-min-role" = json!("viewer"))), params(("id" = Uuid, Path)),
    responses((status = 200, body = Comment), (status = 404, body = Problem)))]
pub(crate) async fn get_one(
    _: Need<Viewer>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<super::json::JsonBytes, ApiError> {
    get_json_by_id::<Comment>(&mut db, id).await
}

/// Changes a comment's text.
#[utoipa::path(patch, path = "/v1/comments/{id}", tag = "comments", operation_id = "comments_update", extensions(("x-min-role" = json!("member"))), params(("id" = Uuid, Path)),
    request_body = CommentPatch,
    responses((status = 200, body = Comment), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update(
    Need(p, ..): Need<Member>,
    db: Db,
    Path(id): Path<Uuid>,
    Json(b): Json<CommentPatch>,
) -> Result<Json<Comment>, ApiError> {
    Check::new()
        .len("body", b.body.as_deref(), 1, 20_000)
        .done()?;
    let mut patch = Patch::new(id);
    patch.set("body", b.body);
    Ok(Json(patch.run(db, &p.actor).await?))
}

/// Deletes a comment.
#[utoipa::path(delete, path = "/v1/comments/{id}", tag = "comments", operation_id = "comments_delete", extensions(("x-min-role" = json!("member"))), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn remove(
    Need(p, ..): Need<Member>,
    db: Db,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    delete::<Comment>(db, id, &p.actor).await
}
