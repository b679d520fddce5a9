//! The OpenAPI document, built from the same declaration as the routes.
//!
//! Each resource module's `router()` is a utoipa-axum [`OpenApiRouter`] whose routes come
//! from `routes!(handler, …)`: the handler's `#[utoipa::path]` gives both the axum route and
//! its operation, so a route cannot exist undocumented, nor a documented path unrouted.
//! [`document`] then adds what every operation shares instead of repeating it on each
//! `#[utoipa::path]` (the answers of the auth, limit and body layers, `Location` and links on
//! a 201), and makes every error response `application/problem+json`.

use std::sync::OnceLock;

use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::link::LinkBuilder;
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{
    ContentBuilder, InfoBuilder, ObjectBuilder, OpenApi, Ref, RefOr, Response, ResponseBuilder,
    Type,
};
use utoipa::{Modify, PartialSchema, ToSchema};
use utoipa_axum::router::OpenApiRouter;

use super::error::{FieldError, Problem, PROBLEM_JSON};
use super::extract::pagination::{CURSOR_MAX_LEN, CURSOR_PATTERN};
use super::AppState;
use super::{
    admin, api_keys, audit_log, comments, documents, invoices, members, projects, tasks, webhooks,
};

/// The tenant API (`/v1`): every resource's routes, each with its operations.
pub(crate) fn tenant_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::default()
        .merge(projects::router())
        .merge(tasks::router())
        .merge(documents::router())
        .merge(comments::router())
        .merge(invoices::router())
        .merge(members::router())
        .merge(api_keys::router())
        .merge(webhooks::router())
        .merge(audit_log::router())
        .route_layer(SetLocationLayer)
}

/// The admin API (`/admin/v1`).
pub(crate) fn admin_routes() -> OpenApiRouter<AppState> {
    admin::router().route_layer(SetLocationLayer)
}

/// The whole API's OpenAPI document (what `/openapi.json` serves), built from the routers
/// of [`tenant_routes`] and [`admin_routes`]. The operational endpoints (`/healthz`,
/// `/readyz`, `/metrics`, `/openapi.json`) are not part of it.
pub fn document() -> OpenApi {
    let (_, mut doc) = tenant_routes().merge(admin_routes()).split_for_parts();
    doc.info = InfoBuilder::new()
        .title("tenantguard reference SaaS API")
        .version(env!("CARGO_PKG_VERSION"))
        .description(Some(
            "Tenant API (`/v1`, API key or JWT bearer) and admin API (`/admin/v1`, admin \
             token). Errors are RFC 9457 `application/problem+json`. Every operation's \
             `x-min-role` names the least tenant role that may call it \
             (viewer < member < admin < owner).",
        ))
        .build();
    doc.security = Some(vec![SecurityRequirement::new(
        "bearer",
        Vec::<String>::new(),
    )]);
    let components = doc.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
    );
    components
        .schemas
        .insert(Problem::name().into_owned(), Problem::schema());
    components
        .schemas
        .insert(FieldError::name().into_owned(), FieldError::schema());
    super::idempotency::OpenApiDoc.modify(&mut doc);
    Exact.modify(&mut doc);
    Keywords.modify(&mut doc);
    doc
}

/// Schema keywords a field attribute cannot say: a PATCH changes at least one field, and
/// each webhook event type is 1–100 characters without NUL (what the handlers check).
struct Keywords;

impl Modify for Keywords {
    fn modify(&self, openapi: &mut OpenApi) {
        use utoipa::openapi::schema::{ArrayItems, Schema};
        let Some(components) = openapi.components.as_mut() else {
            return;
        };
        for (name, schema) in components.schemas.iter_mut() {
            let RefOr::T(Schema::Object(obj)) = schema else {
                continue;
            };
            if name.ends_with("Patch") {
                obj.min_properties = Some(1);
            }
            if name == "NewWebhook" || name == "WebhookPatch" {
                if let Some(RefOr::T(Schema::Array(events))) = obj.properties.get_mut("event_types")
                {
                    events.items = ArrayItems::RefOrSchema(Box::new(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(100))
                            .pattern(Some("^[^\\u0000]*$"))
                            .into(),
                    ));
                }
            }
        }
    }
}

/// [`document`] as JSON (what `/openapi.json` serves), made once per process.
pub fn document_json() -> &'static str {
    static JSON: OnceLock<String> = OnceLock::new();
    JSON.get_or_init(|| {
        // Serializing a document of plain strings and maps cannot fail; an empty object
        // would show up at once in the tests.
        let mut v = serde_json::to_value(document()).unwrap_or_default();
        fix_link_keys(&mut v);
        exactly_one_parent(&mut v);
        serde_json::to_string(&v).unwrap_or_else(|_| "{}".into())
    })
}

/// A comment is on exactly one of a task and a document (a `null` one counts as absent), as
/// the handler checks: with both set both branches match, and `oneOf` fails. Added to the
/// JSON because utoipa's `Object` has no `oneOf` of its own.
fn exactly_one_parent(doc: &mut serde_json::Value) {
    let branch =
        |f: &str| serde_json::json!({ "required": [f], "properties": { f: { "type": "string" } } });
    if let Some(c) = doc
        .pointer_mut("/components/schemas/NewComment")
        .and_then(|c| c.as_object_mut())
    {
        c.insert(
            "oneOf".into(),
            serde_json::json!([branch("task_id"), branch("document_id")]),
        );
    }
}

/// utoipa 5.5 serializes a Link's fields in snake case (`operation_id`, `request_body`),
/// which no client reads; OpenAPI spells them `operationId`, `operationRef`, `requestBody`.
fn fix_link_keys(doc: &mut serde_json::Value) {
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for op in paths
        .values_mut()
        .filter_map(|i| i.as_object_mut())
        .flat_map(|i| i.values_mut())
    {
        let Some(responses) = op.get_mut("responses").and_then(|r| r.as_object_mut()) else {
            continue;
        };
        for links in responses
            .values_mut()
            .filter_map(|r| r.get_mut("links").and_then(|l| l.as_object_mut()))
        {
            for link in links.values_mut().filter_map(|l| l.as_object_mut()) {
                for (from, to) in [
                    ("operation_id", "operationId"),
                    ("operation_ref", "operationRef"),
                    ("request_body", "requestBody"),
                ] {
                    if let Some(v) = link.remove(from) {
                        link.insert(to.into(), v);
                    }
                }
            }
        }
    }
}

/// Adds the answers the layers give on every operation, and `Location` and links on 201s;
/// makes every error `application/problem+json`.
struct Exact;

fn problem(description: &str) -> Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            PROBLEM_JSON,
            ContentBuilder::new()
                .schema(Some(Ref::from_schema_name("Problem")))
                .build(),
        )
        .build()
}

fn add(op: &mut Operation, status: &str, description: &str) {
    op.responses
        .responses
        .entry(status.into())
        .or_insert_with(|| problem(description).into());
}

fn ops(item: &mut utoipa::openapi::PathItem) -> Vec<(HttpMethod, &mut Operation)> {
    [
        (HttpMethod::Get, item.get.as_mut()),
        (HttpMethod::Post, item.post.as_mut()),
        (HttpMethod::Put, item.put.as_mut()),
        (HttpMethod::Patch, item.patch.as_mut()),
        (HttpMethod::Delete, item.delete.as_mut()),
    ]
    .into_iter()
    .filter_map(|(m, op)| op.map(|op| (m, op)))
    .collect()
}

/// The least role an operation needs (its `x-min-role`), if it is a tenant operation.
fn min_role(op: &Operation) -> Option<&str> {
    op.extensions.as_ref()?.get("x-min-role")?.as_str()
}

impl Modify for Exact {
    fn modify(&self, openapi: &mut OpenApi) {
        // The operationId of each path's GET, for the links from a create.
        let gets: Vec<(String, String)> = openapi
            .paths
            .paths
            .iter()
            .filter_map(|(p, item)| Some((p.clone(), item.get.as_ref()?.operation_id.clone()?)))
            .collect();
        let get_of = |path: &str| -> Option<&str> {
            gets.iter()
                .find(|(p, _)| p == path)
                .map(|(_, id)| id.as_str())
        };
        let mut links = Vec::new();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let tenant = path.starts_with("/v1/");
            let has_id = path.contains('{');
            for (method, op) in ops(item) {
                let body = op.request_body.is_some();
                let params = op.parameters.as_ref().is_some_and(|p| !p.is_empty());
                add(
                    op,
                    "401",
                    if tenant {
                        "no credential, or one that does not authenticate (an unknown, revoked or expired key or JWT)"
                    } else {
                        "no admin token, or a wrong one"
                    },
                );
                if min_role(op).is_some_and(|r| r != "viewer") {
                    add(
                        op,
                        "403",
                        "the credential's role is below this operation's `x-min-role`",
                    );
                }
                if has_id {
                    add(
                        op,
                        "404",
                        "no such resource in this tenant (another tenant's id looks the same)",
                    );
                }
                // The Idempotency-Key's characters, as `idempotency` checks them.
                for p in op.parameters.iter_mut().flatten() {
                    if p.name == "cursor" {
                        if let Some(RefOr::T(utoipa::openapi::schema::Schema::Object(o))) =
                            p.schema.as_mut()
                        {
                            // Exactly what `Cursor::decode` accepts: a cursor is opaque,
                            // but its syntax is not a secret, and every string that
                            // matches is a position the server pages from.
                            o.pattern = Some(CURSOR_PATTERN.into());
                            o.max_length = Some(CURSOR_MAX_LEN);
                            o.min_length = None;
                        }
                    }
                    if p.name == "Idempotency-Key" {
                        if let Some(RefOr::T(utoipa::openapi::schema::Schema::Object(o))) =
                            p.schema.as_mut()
                        {
                            o.pattern = Some("^[\\x21-\\x7e]+$".into());
                        }
                    }
                }
                let query = op.parameters.as_ref().is_some_and(|ps| {
                    ps.iter().any(|p| {
                        matches!(p.parameter_in, utoipa::openapi::path::ParameterIn::Query)
                    })
                });
                if query {
                    add(
                        op,
                        "422",
                        "a query parameter is out of its range, length or values",
                    );
                }
                if body || params {
                    add(
                        op,
                        "400",
                        "a malformed id, query parameter, cursor or JSON body",
                    );
                }
                if body {
                    add(
                        op,
                        "415",
                        "the body is not `Content-Type: application/json`",
                    );
                    add(
                        op,
                        "422",
                        "well-formed but invalid: `errors` lists each field",
                    );
                    add(op, "413", "the body (or its declared Content-Length) exceeds the body limit; answered before the body is read");
                    add(
                        op,
                        "408",
                        "the body did not arrive within the body-read timeout",
                    );
                }
                if tenant {
                    let r = op.responses.responses.entry("429".into()).or_insert_with(|| {
                        problem("the tenant or the credential is at its concurrency or rate limit (per server process)")
                            .into()
                    });
                    if let RefOr::T(r) = r {
                        r.headers.insert(
                            "Retry-After".into(),
                            HeaderBuilder::new()
                                .schema(
                                    ObjectBuilder::new()
                                        .schema_type(Type::Integer)
                                        .minimum(Some(0)),
                                )
                                .description(Some("seconds until a retry can succeed"))
                                .build(),
                        );
                    }
                }
                // hyper's own answers, problem+json through `wire::ProblemIo`.
                add(
                    op,
                    "414",
                    "the request target is longer than hyper's limit (64 KiB)",
                );
                add(op, "431", "the request's header section is larger than hyper's read buffer (about 400 KiB), or has more than 100 fields");
                add(op, "503", "the database is unreachable, the request took longer than the request timeout (rolled back), or the server is overloaded");
                // Every error, whoever declared it, is problem+json.
                for (status, r) in op.responses.responses.iter_mut() {
                    let RefOr::T(r) = r else { continue };
                    if status.starts_with('2') || status.starts_with('3') {
                        continue;
                    }
                    r.content.clear();
                    r.content.insert(
                        PROBLEM_JSON.into(),
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name("Problem")))
                            .build(),
                    );
                }
                if method == HttpMethod::Post {
                    if let Some(RefOr::T(created)) = op.responses.responses.get_mut("201") {
                        created.headers.insert(
                            "Location".into(),
                            HeaderBuilder::new()
                                .schema(ObjectBuilder::new().schema_type(Type::String).format(
                                    Some(utoipa::openapi::SchemaFormat::Custom(
                                        "uri-reference".into(),
                                    )),
                                ))
                                .description(Some("the created resource's URL"))
                                .build(),
                        );
                        links.push((path.clone(), location_of(path)));
                    }
                }
            }
        }
        // Links from each create to the get, update and delete of what it made: the id is
        // the 201 body's `id`.
        for (create_path, item_path) in links {
            let Some(item_path) = item_path else { continue };
            if create_path.starts_with("/admin/") != item_path.starts_with("/admin/") {
                // Another credential reads it (an admin-issued key, through /v1).
                continue;
            }
            if get_of(&item_path).is_none() {
                continue;
            }
            let targets: Vec<(String, String)> = openapi
                .paths
                .paths
                .get(&item_path)
                .map(|item| {
                    [
                        ("get", item.get.as_ref()),
                        ("update", item.patch.as_ref()),
                        ("delete", item.delete.as_ref()),
                    ]
                    .into_iter()
                    .filter_map(|(n, op)| Some((n.to_string(), op?.operation_id.clone()?)))
                    .collect()
                })
                .unwrap_or_default();
            let Some(op) = openapi
                .paths
                .paths
                .get_mut(&create_path)
                .and_then(|i| i.post.as_mut())
            else {
                continue;
            };
            if let Some(RefOr::T(created)) = op.responses.responses.get_mut("201") {
                for (name, target) in targets {
                    created.links.insert(
                        name,
                        LinkBuilder::new()
                            .operation_id(target)
                            .parameter("id", "$response.body#/id")
                            .build()
                            .into(),
                    );
                }
            }
        }
    }
}

/// The path of what a POST to `path` creates, `{id}` its id (as in the 201's `Location`).
pub(crate) fn location_of(path: &str) -> Option<String> {
    if path.starts_with("/admin/v1/tenants/") && path.ends_with("/api-keys") {
        // An admin-issued key is the tenant's key: it is read and revoked through /v1.
        return Some("/v1/api-keys/{id}".into());
    }
    Some(format!("{path}/{{id}}"))
}

/// Sets `Location` on a 201 to the created resource's URL (see [`location_of`]), read from
/// the body's `id`. One layer for every create rather than a header in each handler; the
/// body is a small JSON object already in memory.
///
/// A tower layer rather than `axum::middleware::from_fn`, which clones the boxed route,
/// boxes it again and boxes a future on every request, and copied every request's path:
/// here a GET passes straight through, and only a POST keeps its path (and boxes the
/// reading of a 201's body).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SetLocationLayer;

impl<S> tower::Layer<S> for SetLocationLayer {
    type Service = SetLocation<S>;

    fn layer(&self, inner: S) -> SetLocation<S> {
        SetLocation { inner }
    }
}

/// The service of [`SetLocationLayer`].
#[derive(Debug, Clone)]
pub(crate) struct SetLocation<S> {
    inner: S,
}

impl<S> tower::Service<axum::extract::Request> for SetLocation<S>
where
    S: tower::Service<axum::extract::Request, Response = axum::response::Response>,
{
    type Response = axum::response::Response;
    type Error = S::Error;
    type Future = SetLocationFuture<S::Future>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: axum::extract::Request) -> Self::Future {
        let path = (req.method() == axum::http::Method::POST).then(|| req.uri().path().to_owned());
        SetLocationFuture::Inner {
            inner: self.inner.call(req),
            path,
        }
    }
}

pin_project_lite::pin_project! {
    /// The future of [`SetLocation`]: the route's response, then (a POST's 201 only) its
    /// body read and the header set.
    #[project = SetLocationProj]
    pub(crate) enum SetLocationFuture<F> {
        Inner { #[pin] inner: F, path: Option<String> },
        Created { created: futures::future::BoxFuture<'static, axum::response::Response> },
    }
}

impl<F, E> std::future::Future for SetLocationFuture<F>
where
    F: std::future::Future<Output = Result<axum::response::Response, E>>,
{
    type Output = Result<axum::response::Response, E>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        use std::task::{ready, Poll};
        loop {
            match self.as_mut().project() {
                SetLocationProj::Inner { inner, path } => {
                    let res = ready!(inner.poll(cx))?;
                    let Some(path) = path
                        .take()
                        .filter(|_| res.status() == axum::http::StatusCode::CREATED)
                    else {
                        return Poll::Ready(Ok(res));
                    };
                    let created = Box::pin(with_location(path, res));
                    self.set(SetLocationFuture::Created { created });
                }
                SetLocationProj::Created { created } => {
                    return Poll::Ready(Ok(ready!(created.as_mut().poll(cx))));
                }
            }
        }
    }
}

/// `res` (a 201 to a POST to `path`) with its `Location` header, read from the body's `id`.
async fn with_location(path: String, res: axum::response::Response) -> axum::response::Response {
    use axum::http::{header, HeaderValue};
    let (mut parts, body) = res.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return axum::response::Response::from_parts(parts, axum::body::Body::empty());
    };
    #[derive(serde::Deserialize)]
    struct Created {
        id: uuid::Uuid,
    }
    if let Ok(c) = serde_json::from_slice::<Created>(&bytes) {
        let url = location_of(&path).map(|p| p.replace("{id}", &c.id.to_string()));
        if let Some(v) = url.and_then(|u| HeaderValue::from_str(&u).ok()) {
            parts.headers.insert(header::LOCATION, v);
        }
    }
    axum::response::Response::from_parts(parts, axum::body::Body::from(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc() -> serde_json::Value {
        serde_json::from_str(document_json()).expect("the document is JSON")
    }

    fn operations(doc: &serde_json::Value) -> Vec<(String, String, serde_json::Value)> {
        let mut out = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, op) in item.as_object().expect("a path item") {
                out.push((path.clone(), method.clone(), op.clone()));
            }
        }
        out
    }

    #[test]
    fn operation_ids_are_unique_and_name_the_resource() {
        let doc = doc();
        // For reading the document without a server.
        if let Some(out) = std::env::var_os("TENANTGUARD_OPENAPI_OUT") {
            let _ = std::fs::write(out, serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        let mut ids: Vec<String> = operations(&doc)
            .iter()
            .map(|(p, m, op)| {
                op["operationId"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{m} {p} has no operationId"))
                    .to_owned()
            })
            .collect();
        let n = ids.len();
        assert!(n >= 46, "{n} operations");
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), n, "operationIds repeat: {ids:?}");
        for (p, _, op) in operations(&doc) {
            let id = op["operationId"].as_str().unwrap_or_default();
            let tag = op["tags"][0].as_str().unwrap_or_default().replace('-', "_");
            assert!(id.starts_with(&format!("{tag}_")), "{p}: {id} vs tag {tag}");
        }
    }

    #[test]
    fn every_error_is_problem_json_and_every_success_is_not() {
        let doc = doc();
        for (p, m, op) in operations(&doc) {
            for (status, r) in op["responses"].as_object().expect("responses") {
                let content = r["content"].as_object();
                if status.starts_with('4') || status.starts_with('5') {
                    let c = content.unwrap_or_else(|| panic!("{m} {p} {status}: no content"));
                    assert_eq!(c.len(), 1, "{m} {p} {status}: {c:?}");
                    assert_eq!(
                        c[PROBLEM_JSON]["schema"]["$ref"], "#/components/schemas/Problem",
                        "{m} {p} {status}"
                    );
                } else if let Some(c) = content {
                    assert!(!c.contains_key(PROBLEM_JSON), "{m} {p} {status}");
                }
            }
            let has = |s: &str| op["responses"].get(s).is_some();
            assert!(
                has("401") && has("503") && has("414") && has("431"),
                "{m} {p}"
            );
            if p.starts_with("/v1/") {
                assert!(has("429"), "{m} {p}");
                let role = op["x-min-role"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{m} {p}: x-min-role"));
                assert_eq!(has("403"), role != "viewer", "{m} {p}");
            }
            if op.get("requestBody").is_some() {
                for s in ["400", "408", "413", "415", "422"] {
                    assert!(has(s), "{m} {p} {s}");
                }
            }
            if p.contains('{') {
                assert!(has("404"), "{m} {p}");
            }
        }
        assert!(doc["components"]["schemas"]["Problem"].is_object());
        let post = &doc["paths"]["/v1/projects"]["post"]["parameters"];
        let key = post
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["name"] == "Idempotency-Key"))
            .expect("the header is documented");
        assert_eq!(key["schema"]["pattern"], "^[\\x21-\\x7e]+$");
    }

    #[test]
    fn status_enums_are_the_handlers_lists() {
        let doc = doc();
        let s = &doc["components"]["schemas"];
        assert_eq!(
            s["TaskStatus"]["enum"],
            serde_json::json!(super::super::tasks::STATUSES)
        );
        assert_eq!(
            s["InvoiceStatus"]["enum"],
            serde_json::json!(super::super::invoices::STATUSES)
        );
    }

    #[test]
    fn creates_have_location_and_links_to_what_they_made() {
        let doc = doc();
        let mut creates = 0;
        for (p, m, op) in operations(&doc) {
            let Some(created) = op["responses"].get("201") else {
                continue;
            };
            creates += 1;
            assert_eq!(m, "post", "{p}");
            assert!(created["headers"]["Location"].is_object(), "{p}");
            if p.starts_with("/admin/v1/tenants/") {
                continue;
            }
            let get = &created["links"]["get"];
            let target = get["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{p}: no link"));
            assert_eq!(get["parameters"]["id"], "$response.body#/id", "{p}");
            let item = &doc["paths"][format!("{p}/{{id}}")];
            assert_eq!(item["get"]["operationId"], target, "{p}");
        }
        assert_eq!(creates, 10, "8 tenant creates, 2 admin");
    }
}
