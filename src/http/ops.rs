//! Operational endpoints: `/healthz` (the process answers), `/readyz` (the database is
//! reachable and the app role is still safe), `/metrics` (Prometheus text) and
//! `/openapi.json` (generated from the handlers' annotations).

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;

use super::error::{problem, ApiError};
use super::idempotency::OpenApiDoc as IdempotencyDoc;
use super::AppState;
use super::{
    admin, api_keys, audit_log, comments, documents, invoices, members, projects, tasks, webhooks,
};

pub(crate) fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .route("/openapi.json", get(openapi_json))
}

/// The process-wide Prometheus recorder (installed once; every server in the process
/// shares it).
pub(crate) fn metrics_handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(&[
                    0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                ])
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; ours then renders empty.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
}

async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

async fn readyz(State(state): State<AppState>) -> Response {
    if state.statements_lost() {
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(format!(
                "prepared statements are lost between transactions: {}",
                super::error::STATEMENTS_LOST_FIX
            )),
            Vec::new(),
        );
    }
    if let Err(e) = state.pool().check_role().await {
        tracing::warn!(error = %crate::error_chain(&e), "not ready: app pool");
        return problem(
            StatusCode::SERVICE_UNAVAILABLE,
            Some(if e.is_unavailable() {
                "database unreachable".into()
            } else {
                "the app role is unsafe or the check failed".into()
            }),
            Vec::new(),
        );
    }
    if let Some(admin) = state.admin_pool() {
        let ok = match admin.get().await {
            Ok(c) => c.simple_query("SELECT 1").await.is_ok(),
            Err(_) => false,
        };
        if !ok {
            return problem(
                StatusCode::SERVICE_UNAVAILABLE,
                Some("admin database unreachable".into()),
                Vec::new(),
            );
        }
    }
    axum::Json(serde_json::json!({ "status": "ready" })).into_response()
}

async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> Response {
    if let Some(want) = &state.0.metrics_token_hash {
        // Compared through hashes in constant time, like the admin token.
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, t)| -> [u8; 32] { Sha256::digest(t.trim().as_bytes()).into() });
        if !given.is_some_and(|g| bool::from(want.ct_eq(&g))) {
            return ApiError::Unauthorized.into_response();
        }
    }
    let s = state.pool().status();
    metrics::gauge!("tenantguard_pool_connections").set(s.size as f64);
    metrics::gauge!("tenantguard_pool_available").set(s.available as f64);
    metrics::gauge!("tenantguard_pool_waiting").set(s.waiting as f64);
    metrics::gauge!("tenantguard_uptime_seconds").set(state.0.started.elapsed().as_secs_f64());
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.0.metrics.render(),
    )
        .into_response()
}

async fn openapi_json() -> Result<Response, ApiError> {
    let json = ApiDoc::openapi()
        .to_json()
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], json).into_response())
}

/// The answers every route can give whatever its handler does: the limits of
/// [`super::limits`] (429 on authenticated routes, 408 and 413 on routes that take a
/// body), added to each operation of the document.
struct LimitResponses;

impl utoipa::Modify for LimitResponses {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::HttpMethod;
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |desc: &str, retry_after: bool| {
            let mut b = ResponseBuilder::new().description(desc).content(
                super::error::PROBLEM_JSON,
                ContentBuilder::new()
                    .schema(Some(Ref::from_schema_name("Problem")))
                    .build(),
            );
            if retry_after {
                b = b.header(
                    "Retry-After",
                    utoipa::openapi::HeaderBuilder::new()
                        .schema(
                            utoipa::openapi::ObjectBuilder::new()
                                .schema_type(utoipa::openapi::schema::Type::Integer),
                        )
                        .description(Some("seconds until a retry can succeed"))
                        .build(),
                );
            }
            b.build()
        };
        for (path, item) in openapi.paths.paths.iter_mut() {
            let tenant = path.starts_with("/v1/");
            let ops = [
                (HttpMethod::Get, &mut item.get),
                (HttpMethod::Post, &mut item.post),
                (HttpMethod::Patch, &mut item.patch),
                (HttpMethod::Put, &mut item.put),
                (HttpMethod::Delete, &mut item.delete),
            ];
            for (method, op) in ops {
                let Some(op) = op.as_mut() else { continue };
                let responses = &mut op.responses.responses;
                if tenant {
                    responses.entry("429".into()).or_insert_with(|| {
                        problem(
                            "the tenant or the credential is at its concurrency or rate limit (per server process)",
                            true,
                        )
                        .into()
                    });
                }
                if matches!(
                    method,
                    HttpMethod::Post | HttpMethod::Patch | HttpMethod::Put
                ) {
                    responses.entry("413".into()).or_insert_with(|| {
                        problem(
                            "the body (or its declared Content-Length) exceeds the body limit; answered before the body is read",
                            false,
                        )
                        .into()
                    });
                    responses.entry("408".into()).or_insert_with(|| {
                        problem(
                            "the body did not arrive within the body-read timeout",
                            false,
                        )
                        .into()
                    });
                }
            }
        }
    }
}

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The OpenAPI document of the whole API, built from the handlers' `#[utoipa::path]`.
#[derive(OpenApi)]
#[openapi(
    info(title = "tenantguard reference SaaS API", description = "Tenant API (`/v1`, API key or JWT bearer) and admin API (`/admin/v1`, admin token). Errors are RFC 9457 problem+json."),
    security(("bearer" = [])),
    modifiers(&BearerAuth, &LimitResponses, &IdempotencyDoc),
    paths(
        projects::list, projects::create, projects::get_one, projects::update, projects::remove,
        tasks::list, tasks::create, tasks::get_one, tasks::update, tasks::remove,
        documents::list, documents::create, documents::get_one, documents::update, documents::remove,
        comments::list, comments::create, comments::get_one, comments::update, comments::remove,
        invoices::list, invoices::create, invoices::get_one, invoices::update, invoices::remove,
        members::list, members::create, members::get_one, members::update, members::remove,
        api_keys::list, api_keys::create, api_keys::get_one, api_keys::revoke,
        webhooks::list, webhooks::create, webhooks::get_one, webhooks::update, webhooks::remove,
        audit_log::list, audit_log::get_one,
        admin::list_tenants, admin::create_tenant, admin::get_tenant, admin::issue_api_key, admin::project_stats,
    )
)]
pub struct ApiDoc;
