//! The request transaction's rules held by types and by failing fast (issue #9 item 5):
//! a second `Db` in one request is a logged 500 at once, not a wait for the request
//! timeout. (That the audited statement is the last is a move: `Db::finish` takes the
//! `Db`, so a statement after it does not compile.)

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::routing::get;
use axum::Router;
use tenantguard::http::auth::{tenant_scope, Db};
use tenantguard::http::{AppState, HttpConfig};
use tower::ServiceExt;

use crate::helpers::*;

async fn one(mut db: Db) -> StatusCode {
    match db.query("SELECT count(*) FROM projects", &[]).await {
        Ok(_) => StatusCode::OK,
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

async fn two(_first: Db, _second: Db) -> StatusCode {
    StatusCode::OK
}

#[tokio::test]
async fn a_second_db_in_one_request_fails_at_once() {
    let app = spawn_app().await;
    let t = app.tenant("twice").await;
    // The tenant layer alone, with no request timeout above it: before this rule the
    // second extraction waited for the first to be released, which never happens while
    // the handler that holds it waits.
    let state =
        AppState::new(app.db().app_pool(2).await, None, HttpConfig::default()).expect("state");
    let router = Router::new()
        .route("/v1/one", get(one))
        .route("/v1/two", get(two))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            tenant_scope,
        ))
        .with_state(state);
    let call = |path: &str| {
        Request::get(path)
            .header("authorization", format!("Bearer {}", t.key))
            .body(Body::empty())
            .unwrap()
    };
    let ok = router.clone().oneshot(call("/v1/one")).await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK, "the control: one Db works");
    // A bound on a hang, not a speed check: a wait would last forever here.
    let res = tokio::time::timeout(Duration::from_secs(60), router.oneshot(call("/v1/two")))
        .await
        .expect("a second Db must fail at once, not wait")
        .unwrap();
    assert_eq!(res.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let ct = res.headers().get("content-type").unwrap().to_str().unwrap();
    assert!(ct.starts_with("application/problem+json"), "{ct}");
    app.stop().await;
}
