//! The one-transaction-per-request layer, driven by handlers of the test's own that write
//! and then fail in the ways production handlers could: a panic, a client that goes away.

use std::net::SocketAddr;
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::post;
use axum::{middleware, Router};
use secrecy::SecretString;
use serde_json::json;
use tenantguard::http::auth::{tenant_scope, Db, Member, Need};
use tenantguard::http::{router, AppState, HttpConfig};
use tenantguard::testing::TestDb;

async fn panics_after_a_write(_: Need<Member>, mut db: Db) -> StatusCode {
    db.execute("INSERT INTO projects (name) VALUES ('doomed')", &[])
        .await
        .unwrap();
    panic!("a handler bug after a write");
}

async fn slow_after_a_write(_: Need<Member>, mut db: Db) -> StatusCode {
    db.execute("INSERT INTO projects (name) VALUES ('abandoned')", &[])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(3)).await;
    StatusCode::CREATED
}

#[tokio::test]
async fn a_panic_or_a_vanished_client_rolls_the_write_back() {
    let db = TestDb::new().await;
    let state = AppState::new(
        db.app_pool(4).await,
        Some(db.admin_pool().await),
        HttpConfig {
            admin_token: Some(SecretString::from("t".repeat(20))),
            ..HttpConfig::default()
        },
    )
    .unwrap();
    let test_routes = Router::new()
        .route("/test/panic", post(panics_after_a_write))
        .route("/test/slow", post(slow_after_a_write))
        .route_layer(middleware::from_fn_with_state(state.clone(), tenant_scope))
        .layer(tower_http::catch_panic::CatchPanicLayer::new())
        .with_state(state.clone());
    let app = test_routes.merge(router(state));
    let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
        .await
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let admin = "t".repeat(20);
    let t = client
        .post(format!("{base}/admin/v1/tenants"))
        .bearer_auth(&admin)
        .json(&json!({ "name": "acme" }))
        .send()
        .await
        .unwrap()
        .json::<serde_json::Value>()
        .await
        .unwrap();
    let key = t["api_key"].as_str().unwrap().to_string();
    let count = || async {
        let r = client
            .get(format!("{base}/v1/projects"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<serde_json::Value>().await.unwrap()["items"]
            .as_array()
            .unwrap()
            .len()
    };
    // A panic after the INSERT: 500, and the row is gone.
    let r = client
        .post(format!("{base}/test/panic"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(
        count().await,
        0,
        "the panicking request's write was rolled back"
    );
    // The client gives up while the handler still runs: the write never commits.
    let gone = client
        .post(format!("{base}/test/slow"))
        .bearer_auth(&key)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(gone.is_err(), "the client timed out");
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        count().await,
        0,
        "the abandoned request's write was rolled back"
    );
    // The pool is healthy afterwards: the connections came back clean.
    for _ in 0..8 {
        let r = client
            .post(format!("{base}/v1/projects"))
            .bearer_auth(&key)
            .json(&json!({ "name": "fine" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
    }
    assert_eq!(count().await, 8);
}
