//! Operational endpoints: `/healthz` (the process answers), `/readyz` (the database is
//! reachable and the app role is still safe), `/metrics` (Prometheus text) and
//! `/openapi.json` ([`super::openapi::document`], from the same declaration as the routes).

use std::sync::OnceLock;

use axum::extract::State;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::{problem, ApiError};
use super::AppState;

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

async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        super::openapi::document_json(),
    )
        .into_response()
}
