//! Two small APIs in styles unlike the reference server, each with switchable planted
//! bugs, served on a random loopback port for the duration of a test.
//!
//! - [`intapi`]: integer ids, `{data: …}` envelopes, camelCase, `X-Api-Key`, numbered
//!   pages with `links.next`, OpenAPI 3.0 (JSON, `allOf`, `readOnly`, `nullable`, enums).
//! - [`nested`]: prefixed string ids, `/projects/{projectId}/notes/{noteId}`, PUT, bearer
//!   tokens, cursors in `next` links, OpenAPI 3.1 (YAML, `pattern`, `format: email`, `oneOf`).

// Handlers return an axum Response as their error; boxing it would only add noise here.
#![allow(clippy::result_large_err)]

use std::net::SocketAddr;

use axum::Router;

/// A bug to plant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bug {
    /// The read-one handler ignores the tenant.
    GetIgnoresTenant,
    /// The update handler (PATCH, or PUT on `nested`) ignores the tenant.
    WriteIgnoresTenant,
    /// The delete handler ignores the tenant.
    DeleteIgnoresTenant,
    /// The update applies to another tenant's row but answers 404.
    WriteApplies404,
    /// A child is accepted under (or referring to) another tenant's parent.
    ChildUnderForeignParent,
    /// The list filter by parent crosses tenants.
    ListFilterCrosses,
    /// Another tenant's row answers 403, a missing one 404.
    Oracle403,
    /// A `tenantId`/`org_id` in the create body is honoured.
    BodyTenantHonoured,
    /// A unique code is unique across all tenants (409 for another tenant's value).
    UniqueAcrossTenants,
}

/// Every bug.
pub const BUGS: [Bug; 9] = [
    Bug::GetIgnoresTenant,
    Bug::WriteIgnoresTenant,
    Bug::DeleteIgnoresTenant,
    Bug::WriteApplies404,
    Bug::ChildUnderForeignParent,
    Bug::ListFilterCrosses,
    Bug::Oracle403,
    Bug::BodyTenantHonoured,
    Bug::UniqueAcrossTenants,
];

/// A running test server.
pub struct Served {
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    pub async fn start(app: Router) -> Served {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Served {
            base: format!("http://{addr}"),
            stop: Some(tx),
            handle: Some(handle),
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            let _ = h.await;
        }
    }
}

pub mod intapi {
    //! Integer ids, `{data: …}` envelopes, numbered pages.

    use std::collections::{BTreeMap, HashMap};
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::{Json, Router};
    use serde_json::{json, Value};

    use super::Bug;

    pub const KEY_A: &str = "X-Api-Key: key-of-tenant-a";
    pub const KEY_B: &str = "X-Api-Key: key-of-tenant-b";

    #[derive(Default)]
    struct Db {
        next: i64,
        rows: BTreeMap<&'static str, BTreeMap<i64, Value>>,
    }

    #[derive(Clone)]
    struct S {
        bug: Option<Bug>,
        db: Arc<Mutex<Db>>,
    }

    fn tenant(h: &HeaderMap) -> Option<i64> {
        match h.get("x-api-key").and_then(|v| v.to_str().ok()) {
            Some("key-of-tenant-a") => Some(100),
            Some("key-of-tenant-b") => Some(200),
            _ => None,
        }
    }

    fn err(status: StatusCode, code: &str, message: String) -> Response {
        (
            status,
            Json(json!({ "error": { "code": code, "message": message } })),
        )
            .into_response()
    }

    fn unauthorized() -> Response {
        err(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or bad X-Api-Key".into(),
        )
    }

    fn not_found(kind: &str, id: i64) -> Response {
        err(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{kind} {id} not found"),
        )
    }

    pub fn app(bug: Option<Bug>) -> Router {
        app_limited(bug, 0)
    }

    /// With `every` > 0, every `every`-th request answers 429 with `Retry-After: 1`.
    pub fn app_limited(bug: Option<Bug>, every: usize) -> Router {
        let s = S {
            bug,
            db: Arc::new(Mutex::new(Db {
                next: 1,
                ..Db::default()
            })),
        };
        let counter = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let limiter = move |req: axum::extract::Request, next: axum::middleware::Next| {
            let counter = counter.clone();
            async move {
                let n = counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                if every > 0 && n % every == 0 {
                    return (
                        StatusCode::TOO_MANY_REQUESTS,
                        [("retry-after", "1")],
                        "slow down",
                    )
                        .into_response();
                }
                next.run(req).await
            }
        };
        Router::new()
            .route("/openapi.json", get(|| async { Json(doc()) }))
            .route("/api/projects", get(list_projects).post(create_project))
            .route(
                "/api/projects/{id}",
                get(get_project).patch(patch_project).delete(delete_project),
            )
            .route("/api/tasks", get(list_tasks).post(create_task))
            .route(
                "/api/tasks/{id}",
                get(get_task).patch(patch_task).delete(delete_task),
            )
            .layer(axum::middleware::from_fn(limiter))
            .with_state(s)
    }

    fn page(rows: Vec<Value>, q: &HashMap<String, String>, path: &str) -> Response {
        let per: usize = q
            .get("per_page")
            .and_then(|v| v.parse().ok())
            .unwrap_or(2)
            .clamp(1, 100);
        let page: usize = q
            .get("page")
            .and_then(|v| v.parse().ok())
            .unwrap_or(1)
            .max(1);
        let total = rows.len();
        let items: Vec<Value> = rows.into_iter().skip((page - 1) * per).take(per).collect();
        let mut keep: Vec<String> = q
            .iter()
            .filter(|(k, _)| k.as_str() != "page")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        keep.sort();
        let next = (page * per < total).then(|| {
            keep.push(format!("page={}", page + 1));
            format!("{path}?{}", keep.join("&"))
        });
        Json(json!({ "data": items, "links": { "next": next }, "meta": { "total": total } }))
            .into_response()
    }

    async fn list_projects(
        State(s): State<S>,
        h: HeaderMap,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        let Some(t) = tenant(&h) else {
            return unauthorized();
        };
        let db = s.db.lock().expect("lock");
        let rows: Vec<Value> = db
            .rows
            .get("projects")
            .map(|m| m.values().filter(|r| r["tenantId"] == t).cloned().collect())
            .unwrap_or_default();
        let rows = match q.get("q") {
            Some(needle) => rows
                .into_iter()
                .filter(|r| {
                    r["name"]
                        .as_str()
                        .is_some_and(|n| n.contains(needle.as_str()))
                })
                .collect(),
            None => rows,
        };
        page(rows, &q, "/api/projects")
    }

    async fn list_tasks(
        State(s): State<S>,
        h: HeaderMap,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        let Some(t) = tenant(&h) else {
            return unauthorized();
        };
        let db = s.db.lock().expect("lock");
        let filter: Option<i64> = match q.get("projectId") {
            Some(v) => match v.parse() {
                Ok(n) => Some(n),
                Err(_) => {
                    return err(
                        StatusCode::BAD_REQUEST,
                        "bad_request",
                        "projectId must be an integer".into(),
                    )
                }
            },
            None => None,
        };
        let crosses = s.bug == Some(Bug::ListFilterCrosses) && filter.is_some();
        let rows: Vec<Value> = db
            .rows
            .get("tasks")
            .map(|m| {
                m.values()
                    .filter(|r| crosses || r["tenantId"] == t)
                    .filter(|r| filter.is_none_or(|p| r["projectId"] == p))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        page(rows, &q, "/api/tasks")
    }

    fn validate_task(s: &S, db: &Db, t: i64, b: &Value, partial: bool) -> Result<(), Response> {
        if (!partial || b.get("title").is_some())
            && !b["title"]
                .as_str()
                .is_some_and(|x| !x.is_empty() && x.len() <= 200)
        {
            return Err(err(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "title is required".into(),
            ));
        }
        if !partial || b.get("projectId").is_some() {
            let Some(p) = b["projectId"].as_i64() else {
                return Err(err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    "projectId must be an integer".into(),
                ));
            };
            let ok = db
                .rows
                .get("projects")
                .and_then(|m| m.get(&p))
                .is_some_and(|row| {
                    row["tenantId"] == t || s.bug == Some(Bug::ChildUnderForeignParent)
                });
            if !ok {
                return Err(err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    format!("projectId {p} does not exist"),
                ));
            }
        }
        if let Some(pr) = b.get("priority").filter(|v| !v.is_null()) {
            if !pr.as_i64().is_some_and(|x| (1..=5).contains(&x)) {
                return Err(err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    "priority must be 1 to 5".into(),
                ));
            }
        }
        Ok(())
    }

    fn insert(s: &S, db: &mut Db, kind: &'static str, t: i64, b: &Value, fields: &[&str]) -> Value {
        let id = db.next;
        db.next += 1;
        let owner = match (s.bug, b.get("tenantId").and_then(Value::as_i64)) {
            (Some(Bug::BodyTenantHonoured), Some(x)) => x,
            _ => t,
        };
        let mut row = json!({ "id": id, "tenantId": owner });
        for f in fields {
            if let Some(v) = b.get(*f) {
                row[*f] = v.clone();
            }
        }
        db.rows.entry(kind).or_default().insert(id, row.clone());
        row
    }

    async fn create_project(State(s): State<S>, h: HeaderMap, Json(b): Json<Value>) -> Response {
        let Some(t) = tenant(&h) else {
            return unauthorized();
        };
        if !b["name"]
            .as_str()
            .is_some_and(|x| !x.is_empty() && x.len() <= 80)
        {
            return err(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "name is required".into(),
            );
        }
        if let Some(st) = b.get("status") {
            if !matches!(st.as_str(), Some("active" | "archived")) {
                return err(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    "status must be active or archived".into(),
                );
            }
        }
        let mut db = s.db.lock().expect("lock");
        let row = insert(&s, &mut db, "projects", t, &b, &["name", "status"]);
        (StatusCode::CREATED, Json(json!({ "data": row }))).into_response()
    }

    async fn create_task(State(s): State<S>, h: HeaderMap, Json(b): Json<Value>) -> Response {
        let Some(t) = tenant(&h) else {
            return unauthorized();
        };
        // The document says POST /tasks takes an Idempotency-Key; this API insists.
        if h.get("idempotency-key").is_none() {
            return err(
                StatusCode::BAD_REQUEST,
                "bad_request",
                "Idempotency-Key is required".into(),
            );
        }
        let mut db = s.db.lock().expect("lock");
        if let Err(e) = validate_task(&s, &db, t, &b, false) {
            return e;
        }
        let row = insert(
            &s,
            &mut db,
            "tasks",
            t,
            &b,
            &["title", "projectId", "priority", "description"],
        );
        (StatusCode::CREATED, Json(json!({ "data": row }))).into_response()
    }

    /// The row, if the caller may see it; else the answer (the bugs decide which).
    fn visible(
        s: &S,
        db: &Db,
        kind: &'static str,
        id: i64,
        t: i64,
        planted: bool,
    ) -> Result<Value, Response> {
        let singular = &kind[..kind.len() - 1];
        let Some(row) = db.rows.get(kind).and_then(|m| m.get(&id)) else {
            return Err(not_found(singular, id));
        };
        if row["tenantId"] == t || planted {
            return Ok(row.clone());
        }
        if s.bug == Some(Bug::Oracle403) && kind == "tasks" {
            return Err(err(
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("{singular} {id} belongs to another account"),
            ));
        }
        Err(not_found(singular, id))
    }

    async fn get_project(State(s): State<S>, h: HeaderMap, Path(id): Path<i64>) -> Response {
        let Some(t) = tenant(&h) else {
            return unauthorized();
        };
        let db = s.db.lock().expect("lock");
        match visible(&s, &db, "projects", id, t, false) {
            Ok(row) => Json(json!({ "data": row })).into_response(),
            Err(e) => e,
        }
    }

    async fn get_task(State(s): State<S>, h: HeaderMap, Path(id): Path<i64>) -> Response {
        let Some(t) = tenant(&h) else {
            return unauthorized();
        };
        let db = s.db.lock().expect("lock");
        match visible(
            &s,
            &db,
            "tasks",
            id,
            t,
            s.bug == Some(Bug::GetIgnoresTenant),
        ) {
            Ok(row) => Json(json!({ "data": row })).into_response(),
            Err(e) => e,
        }
    }

    async fn patch_project(
        State(s): State<S>,
        h: HeaderMap,
        Path(id): Path<i64>,
        Json(b): Json<Value>,
    ) -> Response {
        let Some(t) = tenant(&h) else {
            return unauthorized();
        };
        let mut db = s.db.lock().expect("lock");
        if let Err(e) = visible(&s, &db, "projects", id, t, false) {
            return e;
        }
        let row = db
            .rows
            .entry("projects")
            .or_default()
            .entry(id)
            .or_insert(Value::Null);
        for f in ["name", "status"] {
            if let Some(v) = b.get(f) {
                row[f] = v.clone();
            }
        }
        Json(json!({ "data": row.clone() })).into_response()
    }

    async fn patch_task(
        State(s): State<S>,
        h: HeaderMap,
        Path(id): Path<i64>,
        Json(b): Json<Value>,
    ) -> Response {
        let Some(t) = tenant(&h) else {
            return unauthorized();
        };
        let mut db = s.db.lock().expect("lock");
        let planted = matches!(s.bug, Some(Bug::WriteIgnoresTenant | Bug::WriteApplies404));
        let row = match visible(&s, &db, "tasks", id, t, planted) {
            Ok(r) => r,
            Err(e) => return e,
        };
        if let Err(e) = validate_task(&s, &db, t, &b, true) {
            return e;
        }
        let foreign = row["tenantId"] != t;
        let row = db
            .rows
            .entry("tasks")
            .or_default()
            .entry(id)
            .or_insert(Value::Null);
        for f in ["title", "projectId", "priority", "description"] {
            if let Some(v) = b.get(f) {
                row[f] = v.clone();
            }
        }
        if foreign && s.bug == Some(Bug::WriteApplies404) {
            return not_found("task", id);
        }
        Json(json!({ "data": row.clone() })).into_response()
    }

    async fn delete_project(State(s): State<S>, h: HeaderMap, Path(id): Path<i64>) -> Response {
        let Some(t) = tenant(&h) else {
            return unauthorized();
        };
        let mut db = s.db.lock().expect("lock");
        if let Err(e) = visible(&s, &db, "projects", id, t, false) {
            return e;
        }
        db.rows.entry("projects").or_default().remove(&id);
        StatusCode::NO_CONTENT.into_response()
    }

    async fn delete_task(State(s): State<S>, h: HeaderMap, Path(id): Path<i64>) -> Response {
        let Some(t) = tenant(&h) else {
            return unauthorized();
        };
        let mut db = s.db.lock().expect("lock");
        if let Err(e) = visible(
            &s,
            &db,
            "tasks",
            id,
            t,
            s.bug == Some(Bug::DeleteIgnoresTenant),
        ) {
            return e;
        }
        db.rows.entry("tasks").or_default().remove(&id);
        StatusCode::NO_CONTENT.into_response()
    }

    fn doc() -> Value {
        let page_params = json!([
            { "name": "page", "in": "query", "schema": { "type": "integer", "minimum": 1 } },
            { "name": "per_page", "in": "query", "schema": { "type": "integer", "minimum": 1, "maximum": 100 } }
        ]);
        let id_param = json!([{ "name": "id", "in": "path", "required": true, "schema": { "type": "integer" } }]);
        let body = |r: &str| json!({ "required": true, "content": { "application/json": { "schema": { "$ref": format!("#/components/schemas/{r}") } } } });
        let one = |r: &str| json!({ "description": "ok", "content": { "application/json": { "schema": { "type": "object", "properties": { "data": { "$ref": format!("#/components/schemas/{r}") } } } } } });
        let mut tasks_list_params = page_params.as_array().cloned().unwrap_or_default();
        tasks_list_params.push(json!({ "name": "projectId", "in": "query", "description": "Only this project's tasks.", "schema": { "type": "integer" } }));
        let mut projects_list_params = page_params.as_array().cloned().unwrap_or_default();
        projects_list_params.push(json!({ "name": "q", "in": "query", "description": "Search in names.", "schema": { "type": "string" } }));
        json!({
            "openapi": "3.0.3",
            "info": { "title": "intapi", "version": "1" },
            "servers": [{ "url": "/api" }],
            "components": {
                "securitySchemes": { "key": { "type": "apiKey", "in": "header", "name": "X-Api-Key" } },
                "parameters": { "IdempotencyKey": { "name": "Idempotency-Key", "in": "header", "required": true, "schema": { "type": "string" } } },
                "schemas": {
                    "Meta": { "type": "object", "properties": {
                        "id": { "type": "integer", "readOnly": true },
                        "tenantId": { "type": "integer", "readOnly": true } } },
                    "ProjectInput": { "type": "object", "required": ["name"], "properties": {
                        "name": { "type": "string", "minLength": 1, "maxLength": 80 },
                        "status": { "type": "string", "enum": ["active", "archived"] } } },
                    "Project": { "allOf": [{ "$ref": "#/components/schemas/Meta" }, { "$ref": "#/components/schemas/ProjectInput" }] },
                    "TaskInput": { "type": "object", "required": ["title", "projectId"], "properties": {
                        "title": { "type": "string", "maxLength": 200 },
                        "projectId": { "type": "integer", "description": "The project." },
                        "priority": { "type": "integer", "minimum": 1, "maximum": 5 },
                        "description": { "type": "string", "nullable": true } } },
                    "TaskPatch": { "type": "object", "properties": {
                        "title": { "type": "string", "maxLength": 200 },
                        "projectId": { "type": "integer" },
                        "priority": { "type": "integer", "minimum": 1, "maximum": 5 } } },
                    "Task": { "allOf": [{ "$ref": "#/components/schemas/Meta" }, { "$ref": "#/components/schemas/TaskInput" }] }
                }
            },
            "security": [{ "key": [] }],
            "paths": {
                "/projects": {
                    "get": { "parameters": projects_list_params, "responses": { "200": { "description": "ok" } } },
                    "post": { "requestBody": body("ProjectInput"), "responses": { "201": one("Project") } }
                },
                "/projects/{id}": {
                    "parameters": id_param,
                    "get": { "responses": { "200": one("Project"), "404": { "description": "missing" } } },
                    "patch": { "requestBody": body("ProjectInput"), "responses": { "200": one("Project") } },
                    "delete": { "responses": { "204": { "description": "gone" } } }
                },
                "/tasks": {
                    "get": { "parameters": tasks_list_params, "responses": { "200": { "description": "ok" } } },
                    "post": {
                        "parameters": [{ "$ref": "#/components/parameters/IdempotencyKey" }],
                        "requestBody": body("TaskInput"), "responses": { "201": one("Task") } }
                },
                "/tasks/{id}": {
                    "parameters": id_param,
                    "get": { "responses": { "200": one("Task") } },
                    "patch": { "requestBody": body("TaskPatch"), "responses": { "200": one("Task") } },
                    "delete": { "responses": { "204": { "description": "gone" } } }
                }
            }
        })
    }
}

pub mod nested {
    //! Nested routes, PUT, string ids, cursors.

    use std::collections::HashMap;
    use std::sync::{Arc, Mutex};

    use axum::extract::{Path, Query, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::{IntoResponse, Response};
    use axum::routing::get;
    use axum::{Json, Router};
    use rand::Rng;
    use serde_json::{json, Value};

    use super::Bug;

    pub const TOKEN_A: &str = "Authorization: Bearer token-of-org-a";
    pub const TOKEN_B: &str = "Authorization: Bearer token-of-org-b";

    #[derive(Default)]
    struct Db {
        projects: Vec<Value>,
        notes: Vec<Value>,
    }

    #[derive(Clone)]
    struct S {
        bug: Option<Bug>,
        db: Arc<Mutex<Db>>,
    }

    fn org(h: &HeaderMap) -> Option<&'static str> {
        match h.get("authorization").and_then(|v| v.to_str().ok()) {
            Some("Bearer token-of-org-a") => Some("org_a1"),
            Some("Bearer token-of-org-b") => Some("org_b2"),
            _ => None,
        }
    }

    fn new_id(prefix: &str) -> String {
        let mut rng = rand::thread_rng();
        let tail: String = (0..10)
            .map(|_| char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[rng.gen_range(0..36)]))
            .collect();
        format!("{prefix}_{tail}")
    }

    fn problem(status: StatusCode) -> Response {
        (
            status,
            Json(json!({ "message": status.canonical_reason().unwrap_or("error") })),
        )
            .into_response()
    }

    pub fn app(bug: Option<Bug>) -> Router {
        let s = S {
            bug,
            db: Arc::new(Mutex::new(Db::default())),
        };
        Router::new()
            .route("/openapi.yaml", get(|| async { DOC }))
            .route("/projects", get(list_projects).post(create_project))
            .route(
                "/projects/{pid}",
                get(get_project).put(put_project).delete(delete_project),
            )
            .route("/projects/{pid}/notes", get(list_notes).post(create_note))
            .route(
                "/projects/{pid}/notes/{nid}",
                get(get_note).put(put_note).delete(delete_note),
            )
            .with_state(s)
    }

    fn paged(rows: Vec<Value>, q: &HashMap<String, String>, path: &str) -> Response {
        let limit: usize = q
            .get("limit")
            .and_then(|v| v.parse().ok())
            .unwrap_or(2)
            .clamp(1, 50);
        let offset: usize = q
            .get("cursor")
            .and_then(|c| c.strip_prefix("off"))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let total = rows.len();
        let items: Vec<Value> = rows.into_iter().skip(offset).take(limit).collect();
        let next = (offset + limit < total)
            .then(|| format!("{path}?limit={limit}&cursor=off{}", offset + limit));
        Json(json!({ "items": items, "next": next })).into_response()
    }

    fn valid_project(b: &Value) -> bool {
        let code_ok = b["code"].as_str().is_some_and(|c| {
            let c: Vec<char> = c.chars().collect();
            c.len() == 7
                && c[..3].iter().all(|x| x.is_ascii_uppercase())
                && c[3] == '-'
                && c[4..].iter().all(|x| x.is_ascii_digit())
        });
        let email_ok = b
            .get("ownerEmail")
            .is_none_or(|e| e.as_str().is_some_and(|e| e.contains('@')));
        b["name"].as_str().is_some_and(|n| !n.is_empty()) && code_ok && email_ok
    }

    async fn list_projects(
        State(s): State<S>,
        h: HeaderMap,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        let Some(o) = org(&h) else {
            return problem(StatusCode::UNAUTHORIZED);
        };
        let db = s.db.lock().expect("lock");
        let rows = db
            .projects
            .iter()
            .filter(|p| p["org_id"] == o)
            .cloned()
            .collect();
        paged(rows, &q, "/projects")
    }

    async fn create_project(State(s): State<S>, h: HeaderMap, Json(b): Json<Value>) -> Response {
        let Some(o) = org(&h) else {
            return problem(StatusCode::UNAUTHORIZED);
        };
        if !valid_project(&b) {
            return problem(StatusCode::UNPROCESSABLE_ENTITY);
        }
        let mut db = s.db.lock().expect("lock");
        let owner = match (s.bug, b["org_id"].as_str()) {
            (Some(Bug::BodyTenantHonoured), Some(x)) => x.to_string(),
            _ => o.to_string(),
        };
        let clash = db.projects.iter().any(|p| {
            p["code"] == b["code"]
                && (p["org_id"] == owner.as_str() || s.bug == Some(Bug::UniqueAcrossTenants))
        });
        if clash {
            return problem(StatusCode::CONFLICT);
        }
        let row = json!({ "projectId": new_id("prj"), "org_id": owner, "name": b["name"], "code": b["code"], "ownerEmail": b.get("ownerEmail").cloned().unwrap_or(Value::Null) });
        db.projects.push(row.clone());
        (StatusCode::CREATED, Json(row)).into_response()
    }

    fn own_project<'a>(db: &'a mut Db, o: &str, pid: &str) -> Option<&'a mut Value> {
        db.projects
            .iter_mut()
            .find(|p| p["projectId"] == pid && p["org_id"] == o)
    }

    async fn get_project(State(s): State<S>, h: HeaderMap, Path(pid): Path<String>) -> Response {
        let Some(o) = org(&h) else {
            return problem(StatusCode::UNAUTHORIZED);
        };
        let mut db = s.db.lock().expect("lock");
        match own_project(&mut db, o, &pid) {
            Some(p) => Json(p.clone()).into_response(),
            None => problem(StatusCode::NOT_FOUND),
        }
    }

    async fn put_project(
        State(s): State<S>,
        h: HeaderMap,
        Path(pid): Path<String>,
        Json(b): Json<Value>,
    ) -> Response {
        let Some(o) = org(&h) else {
            return problem(StatusCode::UNAUTHORIZED);
        };
        if !valid_project(&b) {
            return problem(StatusCode::UNPROCESSABLE_ENTITY);
        }
        let mut db = s.db.lock().expect("lock");
        match own_project(&mut db, o, &pid) {
            Some(p) => {
                p["name"] = b["name"].clone();
                p["code"] = b["code"].clone();
                p["ownerEmail"] = b.get("ownerEmail").cloned().unwrap_or(Value::Null);
                Json(p.clone()).into_response()
            }
            None => problem(StatusCode::NOT_FOUND),
        }
    }

    async fn delete_project(State(s): State<S>, h: HeaderMap, Path(pid): Path<String>) -> Response {
        let Some(o) = org(&h) else {
            return problem(StatusCode::UNAUTHORIZED);
        };
        let mut db = s.db.lock().expect("lock");
        if own_project(&mut db, o, &pid).is_none() {
            return problem(StatusCode::NOT_FOUND);
        }
        db.projects.retain(|p| p["projectId"] != pid.as_str());
        db.notes.retain(|n| n["projectId"] != pid.as_str());
        StatusCode::NO_CONTENT.into_response()
    }

    async fn list_notes(
        State(s): State<S>,
        h: HeaderMap,
        Path(pid): Path<String>,
        Query(q): Query<HashMap<String, String>>,
    ) -> Response {
        let Some(o) = org(&h) else {
            return problem(StatusCode::UNAUTHORIZED);
        };
        let mut db = s.db.lock().expect("lock");
        let crosses = s.bug == Some(Bug::ListFilterCrosses);
        if !crosses && own_project(&mut db, o, &pid).is_none() {
            return problem(StatusCode::NOT_FOUND);
        }
        let rows = db
            .notes
            .iter()
            .filter(|n| n["projectId"] == pid.as_str() && (crosses || n["org_id"] == o))
            .cloned()
            .collect();
        paged(rows, &q, &format!("/projects/{pid}/notes"))
    }

    async fn create_note(
        State(s): State<S>,
        h: HeaderMap,
        Path(pid): Path<String>,
        Json(b): Json<Value>,
    ) -> Response {
        let Some(o) = org(&h) else {
            return problem(StatusCode::UNAUTHORIZED);
        };
        if !b["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty() && t.chars().count() <= 200)
        {
            return problem(StatusCode::UNPROCESSABLE_ENTITY);
        }
        let mut db = s.db.lock().expect("lock");
        let parent_ok = if s.bug == Some(Bug::ChildUnderForeignParent) {
            db.projects.iter().any(|p| p["projectId"] == pid.as_str())
        } else {
            own_project(&mut db, o, &pid).is_some()
        };
        if !parent_ok {
            return problem(StatusCode::NOT_FOUND);
        }
        let row = json!({ "noteId": new_id("nte"), "projectId": pid, "org_id": o, "text": b["text"], "pinned": b.get("pinned").cloned().unwrap_or(Value::Bool(false)) });
        db.notes.push(row.clone());
        (StatusCode::CREATED, Json(row)).into_response()
    }

    /// The note's index if the caller may act on it; else the answer.
    fn note(
        s: &S,
        db: &Db,
        o: &str,
        pid: &str,
        nid: &str,
        planted: bool,
    ) -> Result<usize, Response> {
        let Some(i) = db.notes.iter().position(|n| n["noteId"] == nid) else {
            return Err(problem(StatusCode::NOT_FOUND));
        };
        if planted {
            return Ok(i);
        }
        let n = &db.notes[i];
        if n["org_id"] == o && n["projectId"] == pid {
            return Ok(i);
        }
        if s.bug == Some(Bug::Oracle403) && n["org_id"] != o {
            return Err(problem(StatusCode::FORBIDDEN));
        }
        Err(problem(StatusCode::NOT_FOUND))
    }

    async fn get_note(
        State(s): State<S>,
        h: HeaderMap,
        Path((pid, nid)): Path<(String, String)>,
    ) -> Response {
        let Some(o) = org(&h) else {
            return problem(StatusCode::UNAUTHORIZED);
        };
        let db = s.db.lock().expect("lock");
        match note(&s, &db, o, &pid, &nid, s.bug == Some(Bug::GetIgnoresTenant)) {
            Ok(i) => Json(db.notes[i].clone()).into_response(),
            Err(e) => e,
        }
    }

    async fn put_note(
        State(s): State<S>,
        h: HeaderMap,
        Path((pid, nid)): Path<(String, String)>,
        Json(b): Json<Value>,
    ) -> Response {
        let Some(o) = org(&h) else {
            return problem(StatusCode::UNAUTHORIZED);
        };
        if !b["text"]
            .as_str()
            .is_some_and(|t| !t.is_empty() && t.chars().count() <= 200)
        {
            return problem(StatusCode::UNPROCESSABLE_ENTITY);
        }
        let mut db = s.db.lock().expect("lock");
        let planted = matches!(s.bug, Some(Bug::WriteIgnoresTenant | Bug::WriteApplies404));
        let i = match note(&s, &db, o, &pid, &nid, planted) {
            Ok(i) => i,
            Err(e) => return e,
        };
        let foreign = db.notes[i]["org_id"] != o;
        db.notes[i]["text"] = b["text"].clone();
        db.notes[i]["pinned"] = b.get("pinned").cloned().unwrap_or(Value::Bool(false));
        if foreign && s.bug == Some(Bug::WriteApplies404) {
            return problem(StatusCode::NOT_FOUND);
        }
        Json(db.notes[i].clone()).into_response()
    }

    async fn delete_note(
        State(s): State<S>,
        h: HeaderMap,
        Path((pid, nid)): Path<(String, String)>,
    ) -> Response {
        let Some(o) = org(&h) else {
            return problem(StatusCode::UNAUTHORIZED);
        };
        let mut db = s.db.lock().expect("lock");
        let i = match note(
            &s,
            &db,
            o,
            &pid,
            &nid,
            s.bug == Some(Bug::DeleteIgnoresTenant),
        ) {
            Ok(i) => i,
            Err(e) => return e,
        };
        db.notes.remove(i);
        StatusCode::NO_CONTENT.into_response()
    }

    const DOC: &str = r##"openapi: 3.1.0
info:
  title: nested notes
  version: "2"
components:
  securitySchemes:
    bearer: { type: http, scheme: bearer }
  parameters:
    ProjectId: { name: projectId, in: path, required: true, schema: { type: string, pattern: "^prj_[a-z0-9]{10}$" } }
    NoteId: { name: noteId, in: path, required: true, schema: { type: string } }
    Limit: { name: limit, in: query, schema: { type: integer, minimum: 1, maximum: 50 } }
    Cursor: { name: cursor, in: query, schema: { type: string } }
  schemas:
    ProjectInput:
      type: object
      required: [name, code]
      properties:
        name: { type: string, minLength: 1, maxLength: 120 }
        code: { type: string, pattern: "^[A-Z]{3}-[0-9]{3}$", description: "Unique per organisation." }
        ownerEmail: { type: string, format: email }
    Project:
      allOf:
        - $ref: "#/components/schemas/ProjectInput"
        - type: object
          properties:
            projectId: { type: string, readOnly: true }
            org_id: { type: string, readOnly: true }
    NoteInput:
      type: object
      required: [text]
      properties:
        text: { type: string, maxLength: 200 }
        pinned: { type: boolean }
        color:
          oneOf:
            - type: "null"
            - { type: string, enum: [red, green] }
security:
  - bearer: []
paths:
  /projects:
    get:
      parameters: [{ $ref: "#/components/parameters/Limit" }, { $ref: "#/components/parameters/Cursor" }]
      responses: { "200": { description: ok } }
    post:
      requestBody: { content: { application/json: { schema: { $ref: "#/components/schemas/ProjectInput" } } } }
      responses: { "201": { description: created } }
  /projects/{projectId}:
    parameters: [{ $ref: "#/components/parameters/ProjectId" }]
    get: { responses: { "200": { description: ok } } }
    put:
      requestBody: { content: { application/json: { schema: { $ref: "#/components/schemas/ProjectInput" } } } }
      responses: { "200": { description: ok } }
    delete: { responses: { "204": { description: gone } } }
  /projects/{projectId}/notes:
    parameters: [{ $ref: "#/components/parameters/ProjectId" }]
    get:
      parameters: [{ $ref: "#/components/parameters/Limit" }, { $ref: "#/components/parameters/Cursor" }]
      responses: { "200": { description: ok } }
    post:
      requestBody: { content: { application/json: { schema: { $ref: "#/components/schemas/NoteInput" } } } }
      responses: { "201": { description: created } }
  /projects/{projectId}/notes/{noteId}:
    parameters: [{ $ref: "#/components/parameters/ProjectId" }, { $ref: "#/components/parameters/NoteId" }]
    get: { responses: { "200": { description: ok } } }
    put:
      requestBody: { content: { application/json: { schema: { $ref: "#/components/schemas/NoteInput" } } } }
      responses: { "200": { description: ok } }
    delete: { responses: { "204": { description: gone } } }
"##;
}
