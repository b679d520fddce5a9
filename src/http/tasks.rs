//! `/v1/tasks`: tasks of projects, filterable by project, status and assignee. Viewers
//! read, members write.

use axum::http::StatusCode;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

use super::auth::{Db, Member, Need, Viewer};
use super::error::{ApiError, Problem};
use super::extract::{
    delete_cascading, get_json_by_id, not_null, nullable, record, Cascade, Check, Insert, Json,
    ListQuery, Page, PageParams, Patch, Path, Query,
};
use super::AppState;

#[cfg(feature = "bench-baseline")] // the bench's explicit-filter baseline
pub(crate) const COLS: &str = Task::COLUMNS;
/// The statuses a task can have.
pub const STATUSES: [&str; 4] = ["todo", "in_progress", "done", "cancelled"];

/// A task's status: the OpenAPI schema of [`STATUSES`] (the document's test checks they agree).
#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // Only its schema is used.
enum TaskStatus {
    Todo,
    InProgress,
    Done,
    Cancelled,
}

record! {
table = "tasks", resource = "task", time = created_at;
/// A task.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Task {
    /// Id.
    pub id: Uuid,
    /// The project it belongs to.
    pub project_id: Uuid,
    /// Title, 1–500 characters.
    pub title: String,
    /// Optional description.
    pub description: Option<String>,
    /// `todo`, `in_progress`, `done` or `cancelled`.
    pub status: String,
    /// The member it is assigned to.
    pub assignee_id: Option<Uuid>,
    /// Due date.
    pub due_date: Option<NaiveDate>,
    /// Creation time.
    #[serde(serialize_with = "super::json::timestamp")]
    pub created_at: DateTime<Utc>,
    /// Last change.
    #[serde(serialize_with = "super::json::timestamp")]
    pub updated_at: DateTime<Utc>,
}
}

/// Body of `POST /v1/tasks`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTask {
    /// The project (must exist in this tenant).
    pub project_id: Uuid,
    /// Title.
    #[schema(min_length = 1, max_length = 500, pattern = "^[^\\u0000]*$")]
    pub title: String,
    /// Description.
    #[serde(default)]
    #[schema(min_length = 0, max_length = 10000, pattern = "^[^\\u0000]*$")]
    pub description: Option<String>,
    /// Status (default `todo`).
    #[serde(default)]
    #[schema(value_type = Option<TaskStatus>)]
    pub status: Option<String>,
    /// Assignee (a member of this tenant).
    #[serde(default)]
    pub assignee_id: Option<Uuid>,
    /// Due date (`YYYY-MM-DD`).
    #[serde(default)]
    pub due_date: Option<NaiveDate>,
}

/// Body of `PATCH /v1/tasks/{id}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskPatch {
    /// New title.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(
        nullable = false,
        min_length = 1,
        max_length = 500,
        pattern = "^[^\\u0000]*$"
    )]
    pub title: Option<String>,
    /// New description (`null` clears).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<String>)]
    #[schema(min_length = 0, max_length = 10000, pattern = "^[^\\u0000]*$")]
    pub description: Option<Option<String>>,
    /// New status.
    #[serde(default, deserialize_with = "not_null")]
    #[schema(nullable = false, value_type = Option<TaskStatus>)]
    pub status: Option<String>,
    /// New assignee (`null` unassigns).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Uuid>)]
    pub assignee_id: Option<Option<Uuid>>,
    /// New due date (`null` clears).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<NaiveDate>)]
    pub due_date: Option<Option<NaiveDate>>,
}

/// Filters of `GET /v1/tasks`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct TaskFilter {
    /// Only this project's tasks.
    pub project_id: Option<Uuid>,
    /// Only tasks with this status.
    #[param(value_type = TaskStatus, required = false)]
    pub status: Option<String>,
    /// Only tasks assigned to this member.
    pub assignee_id: Option<Uuid>,
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

/// Lists tasks, newest first.
#[utoipa::path(get, path = "/v1/tasks", tag = "tasks", operation_id = "tasks_list", extensions(("x-min-role" = json!("viewer"))), params(TaskFilter),
    responses((status = 200, body = Page<Task>), (status = 400, body = Problem)))]
pub(crate) async fn list(
    _: Need<Viewer>,
    mut db: Db,
    Query(f): Query<TaskFilter>,
) -> Result<super::json::JsonBytes, ApiError> {
    Check::new()
        .one_of("status", f.status.as_deref(), &STATUSES)
        .done()?;
    let page = PageParams {
        limit: f.limit,
        cursor: f.cursor,
    };
    let mut q = ListQuery::new();
    q.eq("project_id", f.project_id)
        .eq("status", f.status)
        .eq("assignee_id", f.assignee_id);
    q.run_json::<Task>(&mut db, &page).await
}

/// Creates a task.
#[utoipa::path(post, path = "/v1/tasks", tag = "tasks", operation_id = "tasks_create", extensions(("x-min-role" = json!("member"))), request_body = NewTask,
    responses((status = 201, body = Task), (status = 422, body = Problem)))]
pub(crate) async fn create(
    Need(p, ..): Need<Member>,
    db: Db,
    Json(b): Json<NewTask>,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    Check::new()
        .len("title", Some(&b.title), 1, 500)
        .len("description", b.description.as_deref(), 0, 10_000)
        .one_of("status", b.status.as_deref(), &STATUSES)
        .done()?;
    let mut insert = Insert::new();
    insert
        .set("project_id", b.project_id)
        .set("title", b.title)
        .set("description", b.description)
        .set_or("status", b.status, "'todo'")
        .set("assignee_id", b.assignee_id)
        .set("due_date", b.due_date);
    Ok((StatusCode::CREATED, Json(insert.run(db, &p.actor).await?)))
}

/// Gets one task.
#[utoipa::path(get, path = "/v1/tasks/{id}", tag = "tasks", operation_id = "tasks_get", extensions(("x-min-role" = json!("viewer"))), params(("id" = Uuid, Path)),
    responses((status = 200, body = Task), (status = 404, body = Problem)))]
pub(crate) async fn get_one(
    _: Need<Viewer>,
    mut db: Db,
    Path(id): Path<Uuid>,
) -> Result<super::json::JsonBytes, ApiError> {
    get_json_by_id::<Task>(&mut db, id).await
}

/// Changes a task.
#[utoipa::path(patch, path = "/v1/tasks/{id}", tag = "tasks", operation_id = "tasks_update", extensions(("x-min-role" = json!("member"))), params(("id" = Uuid, Path)),
    request_body = TaskPatch,
    responses((status = 200, body = Task), (status = 404, body = Problem), (status = 422, body = Problem)))]
pub(crate) async fn update(
    Need(p, ..): Need<Member>,
    db: Db,
    Path(id): Path<Uuid>,
    Json(b): Json<TaskPatch>,
) -> Result<Json<Task>, ApiError> {
    Check::new()
        .len("title", b.title.as_deref(), 1, 500)
        .len(
            "description",
            b.description.as_ref().and_then(|d| d.as_deref()),
            0,
            10_000,
        )
        .one_of("status", b.status.as_deref(), &STATUSES)
        .done()?;
    let mut patch = Patch::new(id);
    patch
        .set("title", b.title)
        .set("description", b.description)
        .set("status", b.status)
        .set("assignee_id", b.assignee_id)
        .set("due_date", b.due_date);
    Ok(Json(patch.run(db, &p.actor).await?))
}

/// Deletes a task and its comments; its audit row lists them (`details.cascade`).
#[utoipa::path(delete, path = "/v1/tasks/{id}", tag = "tasks", operation_id = "tasks_delete", extensions(("x-min-role" = json!("member"))), params(("id" = Uuid, Path)),
    responses((status = 204), (status = 404, body = Problem)))]
pub(crate) async fn remove(
    Need(p, ..): Need<Member>,
    db: Db,
    Path(id): Path<Uuid>,
) -> Result<StatusCode, ApiError> {
    delete_cascading::<Task>(
        db,
        id,
        &p.actor,
        Cascade {
            lock: Some("SELECT 1 FROM tasks WHERE id = $1 AND tenant_id = $2 FOR UPDATE"),
            dependents: &[(
                "comments",
                "SELECT id FROM comments WHERE task_id = $1 AND tenant_id = $2",
            )],
        },
    )
    .await
}
