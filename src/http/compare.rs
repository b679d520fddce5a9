//! Bench-only baseline: the four benchmarked endpoints (list projects, get a project,
//! list a project's tasks, create a task) served by a role *without* RLS, with explicit
//! `WHERE tenant_id = $1` filters, each request one autocommitted statement. It is what
//! the RLS server is measured against; it is enabled only by the benchmark itself. It is
//! meant to be a fair opponent: it does the same per-request work as the real endpoints
//! (lists fetch one extra row and return `next_cursor`; a cached API key costs no database
//! work), only without RLS or a transaction. Cursors and other filters are not parsed.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use uuid::Uuid;

use super::auth::{Member, Need, Viewer};
use super::error::ApiError;
use super::extract::{Check, Json, Page, Path, Query, DEFAULT_LIMIT, MAX_LIMIT};
use super::projects::{self, Project};
use super::tasks::{self, NewTask, Task};
use super::AppState;
use crate::pool::PoolError;

/// The non-RLS pool of the baseline.
#[derive(Clone, Debug)]
pub struct ExplicitFilterPool(pub deadpool_postgres::Pool);

#[derive(Debug, Deserialize)]
pub(crate) struct Params {
    limit: Option<i64>,
    project_id: Option<Uuid>,
}

impl Params {
    fn limit(&self) -> Result<i64, ApiError> {
        let l = self.limit.unwrap_or(DEFAULT_LIMIT);
        if (1..=MAX_LIMIT).contains(&l) {
            Ok(l)
        } else {
            Err(ApiError::BadRequest("limit out of range".into()))
        }
    }
}

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/projects", get(list_projects))
        .route("/v1/projects/{id}", get(get_project))
        .route("/v1/tasks", get(list_tasks).post(create_task))
}

fn pool(state: &AppState) -> Result<&deadpool_postgres::Pool, ApiError> {
    state
        .config()
        .explicit_filter_pool
        .as_ref()
        .map(|p| &p.0)
        .ok_or_else(|| ApiError::Internal("compare mode without its pool".into()))
}

fn db(e: tokio_postgres::Error) -> ApiError {
    ApiError::from(PoolError::db("running a statement")(e))
}

async fn client(state: &AppState) -> Result<deadpool_postgres::Object, ApiError> {
    pool(state)?
        .get()
        .await
        .map_err(|e| ApiError::from(PoolError::from(e)))
}

async fn authenticate(
    state: &AppState,
    headers: &axum::http::HeaderMap,
) -> Result<super::auth::Principal, ApiError> {
    state
        .auth()
        .authenticate_explicit(headers, pool(state)?)
        .await
}

/// Authenticates like [`super::auth::tenant_scope`], but filters the key lookup by tenant
/// by hand, and opens no transaction.
pub(crate) async fn scope(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let principal = match authenticate(&state, req.headers()).await {
        Ok(p) => p,
        Err(e) => return e.into_response(),
    };
    req.extensions_mut().insert(super::auth::Scoped {
        principal,
        slot: None,
    });
    next.run(req).await
}

async fn list_projects(
    State(state): State<AppState>,
    Need(p, ..): Need<Viewer>,
    Query(q): Query<Params>,
) -> Result<Json<Page<Project>>, ApiError> {
    let limit = q.limit()?;
    let c = client(&state).await?;
    let sql = format!(
        "SELECT {} FROM projects WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        projects::COLS
    );
    let stmt = c.prepare_cached(&sql).await.map_err(db)?;
    let rows = c
        .query(&stmt, &[&p.tenant.as_uuid(), &(limit + 1)])
        .await
        .map_err(db)?;
    Ok(Json(Page::from_rows(
        &rows,
        limit,
        Project::from_row,
        Project::cursor,
    )))
}

async fn get_project(
    State(state): State<AppState>,
    Need(p, ..): Need<Viewer>,
    Path(id): Path<Uuid>,
) -> Result<Json<Project>, ApiError> {
    let c = client(&state).await?;
    let sql = format!(
        "SELECT {} FROM projects WHERE tenant_id = $1 AND id = $2",
        projects::COLS
    );
    let stmt = c.prepare_cached(&sql).await.map_err(db)?;
    let row = c
        .query_opt(&stmt, &[&p.tenant.as_uuid(), &id])
        .await
        .map_err(db)?
        .ok_or(ApiError::NotFound)?;
    Ok(Json(Project::from_row(&row)))
}

async fn list_tasks(
    State(state): State<AppState>,
    Need(p, ..): Need<Viewer>,
    Query(q): Query<Params>,
) -> Result<Json<Page<Task>>, ApiError> {
    let limit = q.limit()?;
    let project = q
        .project_id
        .ok_or_else(|| ApiError::BadRequest("compare mode needs project_id".into()))?;
    let c = client(&state).await?;
    let sql = format!(
        "SELECT {} FROM tasks WHERE tenant_id = $1 AND project_id = $2 \
         ORDER BY created_at DESC, id DESC LIMIT $3",
        tasks::COLS
    );
    let stmt = c.prepare_cached(&sql).await.map_err(db)?;
    let rows = c
        .query(&stmt, &[&p.tenant.as_uuid(), &project, &(limit + 1)])
        .await
        .map_err(db)?;
    Ok(Json(Page::from_rows(
        &rows,
        limit,
        Task::from_row,
        Task::cursor,
    )))
}

async fn create_task(
    State(state): State<AppState>,
    Need(p, ..): Need<Member>,
    Json(b): Json<NewTask>,
) -> Result<(StatusCode, Json<Task>), ApiError> {
    Check::new()
        .len("title", Some(&b.title), 1, 500)
        .len("description", b.description.as_deref(), 0, 10_000)
        .one_of("status", b.status.as_deref(), &tasks::STATUSES)
        .done()?;
    let c = client(&state).await?;
    // The same single statement as the RLS handler, with the tenant written by hand in
    // both inserts.
    let sql = format!(
        "WITH r AS (INSERT INTO tasks (tenant_id, project_id, title, description, status, assignee_id, due_date) \
                    VALUES ($1, $2, $3, $4, COALESCE($5, 'todo'), $6, $7) RETURNING {cols}), \
              a AS (INSERT INTO audit_log (tenant_id, actor, action, resource_type, resource_id, details) \
                    SELECT $1, $8::text, $9::text, $10::text, r.id, $11::jsonb FROM r) \
         SELECT {cols} FROM r",
        cols = tasks::COLS
    );
    let stmt = c.prepare_cached(&sql).await.map_err(db)?;
    let details = serde_json::json!({ "changed": ["project_id", "title", "description", "status", "assignee_id", "due_date"] });
    let row = c
        .query_one(
            &stmt,
            &[
                &p.tenant.as_uuid(),
                &b.project_id,
                &b.title,
                &b.description,
                &b.status,
                &b.assignee_id,
                &b.due_date,
                &p.actor,
                &"create",
                &"task",
                &details,
            ],
        )
        .await
        .map_err(db)?;
    Ok((StatusCode::CREATED, Json(Task::from_row(&row))))
}
