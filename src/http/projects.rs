//! `/v1/projects`: the seed's first resource. Viewers read, members write.

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{Db, Member, Need, Viewer};
use super::error::ApiError;
use super::extract::{
    delete_cascading, get_json_by_id, not_null, nullable, record, Cascade, Check, Insert, Json,
    ListQuery, Page, PageParams, Patch, Path, Query,
};
use super::AppState;

#[cfg(feature = "bench-baseline")] // the bench's explicit-filter baseline
pub(crate) const COLS: &str = Project::COLUMNS;

record! {
table = "projects", resource = "project", time = created_at;
/// A project.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Project {
    /// Id (UUIDv7).
    pub id: Uuid,
    /// Name, 1–255 characters.
    pub name: String,
    /// Optional description, up to 10,000 characters.
    pub description: Option<String>,
    /// Creation time.
    #[serde(serialize_with = "super::json::timestamp")]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(serialize_with = "super::json::timestamp")]
    pub updated_at: DateTime<Utc>,
}
}

/// Body of `POST /v1/projects`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewProject {
    /// Name, 1–255 characters.
    #[schema(min_length = 1, max_length = 255, pattern = "^[^\\u0000]*$")]
    pub name: String,
    /// Optional description.
    #[serde(default)]
    #[schema(min_length = 0, max_length = 10000, pattern = "^[^\\u0000]*$")]
    pub description: Option<String>,
}

/// Body of `PATCH /v1/projects/{id}`: only the fields sent change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectPatch {
    /// New name.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 255,
        pattern = "^[^\\u0000]*$"
    )]
    pub name: Option<String>,
    /// New description (`null` clears it).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    #[schema(min_length = 0, max_length = 10000, pattern = "^[^\\u0000]*$")]
    pub description: Option<Option<String>>,
}

fn check(name: Option<&str>, description: Option<&str>) -> Result<(), ApiError> {
    Check::new()
        .len("name", name, 1, 255)
        .len("description", description, 0, 10_000)
        .done()
}

/// The routes and their OpenAPI operations, from one declaration: each handler's
/// `#[utoipa::path]` gives both its route and its document entry.
pub(crate) fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list, create))
        .routes(routes!(get_one, update, remove))
}

/// Lists projects, newest first.
#[utoipa::path(get, path = "/v1/projects", tag = "projects", operation_id = "projects_list", extensions(("x-min-role" = json!("viewer"))), params(PageParams),
    responses((status = 200, body = Page<Project>), (status = 400, body = super::error::Problem)))]
pub(crate) async fn list(
    _: Need<Viewer>,
    mut db: Db,
    Query(page): Query<PageParams>,
) -> Result<super::json::JsonBytes, ApiError> {
    ListQuery::new().run_json::<Project>(&mut db, &page).await
}

/// Creates a project.
#[utoipa::path(post, path = "/v1/projects", tag = "projects", operation_id = "projects_create", extensions(("x-min-role" = json!("member"))), request_body = NewProject,
    responses((status = 201, body = Project), (status = 422, body = super::error::Problem)))]
pub(crate) async fn create(
    Need(p, ..): Need<Member>,
    db: Db,
    Json(body): Json<NewProject>,
) -> Result<(StatusCode, Json<Project>), ApiError> {
    check(Some(&body.name), body.description.as_deref())?;
    let mut insert = Insert::new();
    insert
        .set("name", body.name)
        .set("description", body.description);
    Ok((StatusCode::CREATED, Json(insert.run(db, &p.actor).await?)))
}

/// Gets one project.
#[utoipa::path(get, path = "/v1/projects/{id}", tag = "projects", operation_id = "projects_get", extensions(("x-min-role" = json!("viewer"))), params(("id" = Uuid, Path)),
    responses((status = 200, body = Project), (status = 404, body = super::error::Problem)))]
pub(crate) async fn get_one(
    _: Need<Viewer>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<super::json::JsonBytes, ApiError> {
    get_json_by_id::<Project>(&mut db, id).await
}

/// Changes a project.
#[utoipa::path(patch, path = "/v1/projects/{id}", tag = "projects", operation_id = "projects_update", extensions(("x-min-role" = json!("member"))), params(("id" = Uuid, Path)),
    request_body = ProjectPatch,
    responses((status = 200, body = Project), (status = 404, body = super::error::Problem), (status = 422, body = super::error::Problem)))]
pub(crate) async fn update(
    Need(p, ..): Need<Member>,
    db: Db,
    Path(id): Path<Uuid>,
    Json(body): Json<ProjectPatch>,
) -> Result<Json<Project>, ApiError> {
    check(
        body.name.as_deref(),
        body.description.as_ref().and_then(|d| d.as_deref()),
    )?;
    let mut patch = Patch::new(id);
    patch
        .set("name", body.name)
        .set("description", body.description);
    Ok(Json(patch.run(db, &p.actor).await?))
}

/// Deletes a project with its tasks, documents and comments; its audit row lists them
/// (`details.cascade`: count and ids per table).
#[utoipa::path(delete, path = "/v1/projects/{id}", tag = "projects", operation_id = "projects_delete", extensions(("x-min-role" = json!("member"))), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = super::error::Problem)))]
pub(crate) async fn remove(
    Need(p, ..): Need<Member>,
    db: Db,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    delete_cascading::<Project>(
        db,
        id,
        &p.actor,
        Cascade {
            lock: Some(
                // The project first (that holds off new tasks and documents), then its
                // tasks and documents (new comments); one row back, not one per child.
                "SELECT 1 FROM (SELECT count(*) AS n FROM ( \
                   SELECT 1 FROM (SELECT 1 FROM projects WHERE id = $1 AND tenant_id = $2 FOR UPDATE) p \
                   UNION ALL SELECT 1 FROM (SELECT 1 FROM tasks WHERE project_id = $1 AND tenant_id = $2 FOR UPDATE) t \
                   UNION ALL SELECT 1 FROM (SELECT 1 FROM documents WHERE project_id = $1 AND tenant_id = $2 FOR UPDATE) d \
                 ) u) c WHERE c.n > 0",
            ),
            dependents: &[
                ("tasks", "SELECT id FROM tasks WHERE project_id = $1 AND tenant_id = $2"),
                ("documents", "SELECT id FROM documents WHERE project_id = $1 AND tenant_id = $2"),
                (
                    "comments",
                    "SELECT id FROM comments WHERE tenant_id = $2 AND (task_id IN (SELECT id FROM c_tasks) \
                     OR document_id IN (SELECT id FROM c_documents))",
                ),
            ],
        },
    )
    .await
}
