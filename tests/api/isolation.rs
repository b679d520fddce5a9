//! Cross-tenant isolation through the API: another tenant's ids are 404, never data.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn another_tenants_ids_are_404_exactly_like_missing_ids_and_change_nothing() {
    let app = spawn_app().await;
    let a = app.tenant("a").await;
    let b = app.tenant("b").await;
    populate(&app, &a.key, "a").await;
    let b_ids = populate(&app, &b.key, "b").await;
    let before: Vec<_> = {
        let mut v = Vec::new();
        for (path, id) in &b_ids {
            v.push(
                app.get(&format!("{path}/{id}"), &b.key)
                    .await
                    .ok(200)
                    .clone(),
            );
        }
        v
    };
    let missing = uuid::Uuid::now_v7().to_string();
    for (path, id) in &b_ids {
        for method in ["GET", "PATCH", "DELETE"] {
            if method == "PATCH" && *path == "/v1/api-keys" {
                continue;
            }
            let body = (method == "PATCH").then(|| match *path {
                "/v1/projects" => json!({ "name": "pwned" }),
                "/v1/tasks" | "/v1/documents" => json!({ "title": "pwned" }),
                "/v1/comments" => json!({ "body": "pwned" }),
                "/v1/invoices" => json!({ "customer_name": "pwned" }),
                "/v1/members" => json!({ "name": "pwned" }),
                _ => json!({ "active": false }),
            });
            let theirs = app
                .send(method, &format!("{path}/{id}"), Some(&a.key), body.clone())
                .await;
            let none = app
                .send(method, &format!("{path}/{missing}"), Some(&a.key), body)
                .await;
            theirs.problem(404);
            none.problem(404);
            assert_eq!(
                theirs.body, none.body,
                "{method} {path}: same 404 either way"
            );
        }
        let list = app.get(path, &a.key).await;
        assert!(
            !list.ok(200)["items"]
                .as_array()
                .unwrap()
                .iter()
                .any(|i| i["id"] == id.as_str()),
            "{path}: a's list must not show b's rows"
        );
    }
    for ((path, id), old) in b_ids.iter().zip(before) {
        let now = app.get(&format!("{path}/{id}"), &b.key).await;
        assert_eq!(*now.ok(200), old, "{path}: b's row unchanged");
    }
    // References to another tenant's rows are refused exactly like unknown ones.
    let b_project = &b_ids[0].1;
    let r = app
        .post(
            "/v1/tasks",
            &a.key,
            json!({ "project_id": b_project, "title": "x" }),
        )
        .await;
    r.problem(422);
    assert_eq!(r.body["errors"][0]["field"], "project_id");
    let r2 = app
        .post(
            "/v1/tasks",
            &a.key,
            json!({ "project_id": missing, "title": "x" }),
        )
        .await;
    assert_eq!(r.body, r2.body);
    // b's audit log holds nothing of a's.
    let audit = app.get("/v1/audit-log?limit=200", &b.key).await;
    for row in audit.ok(200)["items"].as_array().unwrap() {
        assert!(row["actor"].as_str().unwrap() != "");
    }
    let a_audit = app.get("/v1/audit-log?limit=200", &a.key).await;
    let a_ids: Vec<_> = a_audit.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    for row in audit.body["items"].as_array().unwrap() {
        assert!(!a_ids.contains(&row["id"]));
    }
    app.stop().await;
}

#[tokio::test]
async fn tenant_id_in_a_body_is_rejected() {
    let app = spawn_app().await;
    let a = app.tenant("a").await;
    let b = app.tenant("b").await;
    let r = app
        .post(
            "/v1/projects",
            &a.key,
            json!({ "name": "x", "tenant_id": b.id }),
        )
        .await;
    r.problem(422);
    assert_eq!(r.body["errors"][0]["field"], "tenant_id");
    let p = app
        .post("/v1/projects", &a.key, json!({ "name": "x" }))
        .await
        .ok(201)["id"]
        .clone();
    let r = app
        .patch(
            &format!("/v1/projects/{}", p.as_str().unwrap()),
            &a.key,
            json!({ "tenant_id": b.id }),
        )
        .await;
    r.problem(422);
    assert_eq!(
        app.get("/v1/projects", &b.key).await.ok(200)["items"]
            .as_array()
            .unwrap()
            .len(),
        0
    );
    app.stop().await;
}
