//! `Idempotency-Key` on POST and PATCH: one write per key, the first answer on retry, 422
//! for another request under the same key, 409 while the first is in flight.

use crate::helpers::*;
use serde_json::{json, Value};

async fn post_keyed(app: &TestApp, path: &str, token: &str, key: &str, body: Value) -> Resp {
    app.raw(
        app.client
            .post(format!("{}{path}", app.base))
            .bearer_auth(token)
            .header("Idempotency-Key", key)
            .json(&body),
    )
    .await
}

async fn count(app: &TestApp, sql: &str) -> i64 {
    app.db()
        .superuser()
        .await
        .query_one(sql, &[])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn retried_post_with_the_same_key_writes_once_and_answers_the_same() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let body = json!({ "name": "once", "description": "d" });
    let first = post_keyed(&app, "/v1/projects", &t.key, "k-1", body.clone()).await;
    let created = first.ok(201).clone();
    assert!(first.headers.get("idempotent-replayed").is_none());
    for _ in 0..3 {
        let again = post_keyed(&app, "/v1/projects", &t.key, "k-1", body.clone()).await;
        assert_eq!(again.ok(201), &created, "the same answer, byte for byte");
        assert_eq!(again.headers["idempotent-replayed"], "true");
        assert!(again.content_type.starts_with("application/json"));
    }
    assert_eq!(
        count(&app, "SELECT count(*) FROM projects WHERE name = 'once'").await,
        1
    );
    // One create in the audit log, too: the replays wrote nothing.
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action = 'create' AND resource_type = 'project'"
        )
        .await,
        1
    );
    // Without a key, the same body is a new project (nothing changes for such requests).
    app.post("/v1/projects", &t.key, body).await.ok(201);
    assert_eq!(
        count(&app, "SELECT count(*) FROM projects WHERE name = 'once'").await,
        2
    );
    app.stop().await;
}

#[tokio::test]
async fn patch_with_a_key_is_replayed_and_another_body_is_422() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let p = app
        .post("/v1/projects", &t.key, json!({ "name": "p" }))
        .await;
    let id = p.ok(201)["id"].as_str().unwrap().to_string();
    let patch = |name: &str| {
        app.client
            .patch(format!("{}/v1/projects/{id}", app.base))
            .bearer_auth(&t.key)
            .header("Idempotency-Key", "patch-1")
            .json(&json!({ "name": name }))
    };
    let first = app.raw(patch("renamed")).await;
    let answer = first.ok(200).clone();
    let again = app.raw(patch("renamed")).await;
    assert_eq!(again.ok(200), &answer);
    let other = app.raw(patch("something else")).await;
    other.problem(422);
    assert_eq!(other.body["errors"][0]["field"], "Idempotency-Key");
    // The 422 changed nothing.
    let now = app.get(&format!("/v1/projects/{id}"), &t.key).await;
    assert_eq!(now.ok(200)["name"], "renamed");
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM audit_log WHERE action = 'update'"
        )
        .await,
        1
    );
    // Another path under the same key is another request: 422 as well.
    post_keyed(
        &app,
        "/v1/projects",
        &t.key,
        "patch-1",
        json!({ "name": "renamed" }),
    )
    .await
    .problem(422);
    app.stop().await;
}

#[tokio::test]
async fn client_errors_are_recorded_and_replayed() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let inv =
        json!({ "number": "INV-1", "customer_name": "c", "amount_minor": 1, "currency": "EUR" });
    app.post("/v1/invoices", &t.key, inv.clone()).await.ok(201);
    // A 409 from the database (duplicate number): recorded, and replayed on retry even
    // after the conflicting row is gone, so the retry cannot turn into a write.
    let first = post_keyed(&app, "/v1/invoices", &t.key, "dup", inv.clone()).await;
    first.problem(409);
    let su = app.db().superuser().await;
    su.batch_execute("DELETE FROM invoices").await.unwrap();
    let again = post_keyed(&app, "/v1/invoices", &t.key, "dup", inv.clone()).await;
    again.problem(409);
    assert_eq!(again.body, first.body);
    assert_eq!(again.headers["idempotent-replayed"], "true");
    assert_eq!(count(&app, "SELECT count(*) FROM invoices").await, 0);
    // A validation 422 from the handler: recorded as well.
    let bad = json!({ "name": "" });
    post_keyed(&app, "/v1/projects", &t.key, "bad", bad.clone())
        .await
        .problem(422);
    let r = post_keyed(&app, "/v1/projects", &t.key, "bad", bad).await;
    r.problem(422);
    assert_eq!(r.headers["idempotent-replayed"], "true");
    let (status, n): (i16, i64) = {
        let row = su
            .query_one(
                "SELECT min(status), count(*) FROM idempotency_keys WHERE idem_key IN ('dup', 'bad')",
                &[],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    assert_eq!((status, n), (409, 2));
    app.stop().await;
}

#[tokio::test]
async fn a_duplicate_while_the_first_is_in_flight_is_409() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    // Hold the first request inside its write: a superuser transaction locks the tenant
    // row that the project insert's foreign key check needs a share lock on.
    let mut su = app.db().superuser().await;
    let blocker = su.transaction().await.unwrap();
    blocker
        .batch_execute(&format!(
            "SELECT 1 FROM tenants WHERE id = '{}' FOR UPDATE",
            t.id
        ))
        .await
        .unwrap();
    let body = json!({ "name": "in flight" });
    let first = {
        let req = app
            .client
            .post(format!("{}/v1/projects", app.base))
            .bearer_auth(&t.key)
            .header("Idempotency-Key", "same")
            .json(&body);
        tokio::spawn(req.send())
    };
    // Wait until the first request is blocked on the lock.
    let watcher = app.db().superuser().await;
    for _ in 0..200 {
        let n: i64 = watcher
            .query_one(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO projects%'",
                &[],
            )
            .await
            .unwrap()
            .get(0);
        if n > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    let dup = post_keyed(&app, "/v1/projects", &t.key, "same", body.clone()).await;
    dup.problem(409);
    assert_eq!(dup.headers["retry-after"], "1");
    blocker.rollback().await.unwrap();
    let first = first.await.unwrap().unwrap();
    assert_eq!(first.status().as_u16(), 201);
    let first_body: Value = first.json().await.unwrap();
    // After the first finished, the retry gets its answer.
    let again = post_keyed(&app, "/v1/projects", &t.key, "same", body).await;
    assert_eq!(again.ok(201), &first_body);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM projects WHERE name = 'in flight'"
        )
        .await,
        1
    );
    app.stop().await;
}

#[tokio::test]
async fn keys_are_scoped_per_tenant_and_credential() {
    let app = spawn_app().await;
    let a = app.tenant("a").await;
    let b = app.tenant("b").await;
    let body = json!({ "name": "shared key" });
    let ra = post_keyed(&app, "/v1/projects", &a.key, "k", body.clone()).await;
    let pa = ra.ok(201)["id"].clone();
    // Tenant B reusing A's key value is an independent request: its own project, not A's
    // answer (which would leak A's id) and not a 422.
    let rb = post_keyed(&app, "/v1/projects", &b.key, "k", body.clone()).await;
    let pb = rb.ok(201)["id"].clone();
    assert_ne!(pa, pb);
    assert!(rb.headers.get("idempotent-replayed").is_none());
    assert_eq!(
        app.get("/v1/projects", &b.key).await.ok(200)["items"][0]["id"],
        pb
    );
    // Another credential of tenant A: also independent.
    let member = app.key(&a.key, "member").await;
    let rm = post_keyed(&app, "/v1/projects", &member, "k", body.clone()).await;
    assert_ne!(rm.ok(201)["id"], pa);
    assert_eq!(
        count(
            &app,
            "SELECT count(*) FROM projects WHERE name = 'shared key'"
        )
        .await,
        3
    );
    app.stop().await;
}

#[tokio::test]
async fn expired_records_are_not_served_and_get_purged() {
    let app = spawn_app_with(|c| c.idempotency_ttl = std::time::Duration::from_secs(1)).await;
    let t = app.tenant("acme").await;
    let body = json!({ "name": "short-lived" });
    post_keyed(&app, "/v1/projects", &t.key, "old", body.clone())
        .await
        .ok(201);
    let su = app.db().superuser().await;
    su.batch_execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 minute'")
        .await
        .unwrap();
    // Expired: the same key is a new request.
    let r = post_keyed(&app, "/v1/projects", &t.key, "old", body.clone()).await;
    r.ok(201);
    assert!(r.headers.get("idempotent-replayed").is_none());
    su.batch_execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 minute'")
        .await
        .unwrap();
    // Another keyed write of the tenant deletes the expired record.
    post_keyed(&app, "/v1/projects", &t.key, "new", body)
        .await
        .ok(201);
    let left: Vec<String> = su
        .query("SELECT idem_key FROM idempotency_keys", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(left, vec!["new".to_string()]);
    app.stop().await;
}

#[tokio::test]
async fn api_key_secrets_are_never_stored_or_replayed() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let body = json!({ "name": "ci", "role": "member" });
    let first = post_keyed(&app, "/v1/api-keys", &t.key, "key-1", body.clone()).await;
    let secret = first.ok(201)["api_key"].as_str().unwrap().to_string();
    assert!(secret.starts_with("tgk_"));
    let again = post_keyed(&app, "/v1/api-keys", &t.key, "key-1", body).await;
    assert_eq!(again.ok(201)["id"], first.body["id"]);
    assert_eq!(again.body["api_key"], "");
    let su = app.db().superuser().await;
    let stored: i64 = su
        .query_one(
            "SELECT count(*) FROM idempotency_keys WHERE position(convert_to($1, 'UTF8') IN body) > 0",
            &[&secret],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(stored, 0);
    app.stop().await;
}

#[tokio::test]
async fn bad_keys_are_400_and_the_header_is_documented() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let long = "x".repeat(256);
    post_keyed(&app, "/v1/projects", &t.key, &long, json!({ "name": "x" }))
        .await
        .problem(400);
    post_keyed(
        &app,
        "/v1/projects",
        &t.key,
        "has space",
        json!({ "name": "x" }),
    )
    .await
    .problem(400);
    let doc = app.send("GET", "/openapi.json", None, None).await;
    let doc = doc.ok(200);
    for (path, method) in [
        ("/v1/projects", "post"),
        ("/v1/projects/{id}", "patch"),
        ("/v1/api-keys", "post"),
    ] {
        let op = &doc["paths"][path][method];
        assert!(
            op["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "Idempotency-Key" && p["in"] == "header"),
            "{method} {path}"
        );
        assert!(op["responses"]["409"].is_object(), "{method} {path}");
        assert!(op["responses"]["422"].is_object(), "{method} {path}");
    }
    assert!(doc["paths"]["/v1/projects"]["get"]["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["name"] != "Idempotency-Key"));
    app.stop().await;
}
