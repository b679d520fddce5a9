//! Every resource: list, get, create, patch and delete through the API.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn every_resource_lists_gets_patches_and_deletes() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let ids = populate(&app, &t.key, "acme").await;
    let patches = [
        (
            "/v1/projects",
            json!({ "name": "renamed", "description": "d" }),
        ),
        ("/v1/members", json!({ "name": "Bob", "role": "admin" })),
        (
            "/v1/tasks",
            json!({ "status": "done", "assignee_id": null, "due_date": "2030-01-31" }),
        ),
        ("/v1/documents", json!({ "body": "new body" })),
        ("/v1/comments", json!({ "body": "edited" })),
        (
            "/v1/invoices",
            json!({ "status": "issued", "issued_on": "2030-01-01" }),
        ),
        ("/v1/webhooks", json!({ "active": false })),
    ];
    for (path, id) in &ids {
        let list = app.get(path, &t.key).await;
        let items = list.ok(200)["items"].as_array().unwrap().clone();
        assert!(items.iter().any(|i| i["id"] == *id), "{path} lists {id}");
        let one = app.get(&format!("{path}/{id}"), &t.key).await;
        assert_eq!(one.ok(200)["id"], *id);
        assert!(
            one.body.get("tenant_id").is_none(),
            "no tenant ids leak into bodies"
        );
    }
    for (path, body) in patches {
        let id = &ids.iter().find(|(p, _)| *p == path).unwrap().1;
        let r = app
            .patch(&format!("{path}/{id}"), &t.key, body.clone())
            .await;
        let got = r.ok(200);
        for (k, v) in body.as_object().unwrap() {
            assert_eq!(&got[k], v, "{path}: {k}");
        }
    }
    // Keys never come back with their secret after creation.
    let keys = app.get("/v1/api-keys", &t.key).await;
    for k in keys.ok(200)["items"].as_array().unwrap() {
        assert!(k.get("api_key").is_none() && k.get("key_hash").is_none());
    }
    let hooks = app.get("/v1/webhooks", &t.key).await;
    assert!(hooks.ok(200)["items"][0].get("signing_secret").is_none());
    // Delete children before parents; each delete is 204, then the id is gone.
    for path in [
        "/v1/comments",
        "/v1/documents",
        "/v1/tasks",
        "/v1/projects",
        "/v1/invoices",
        "/v1/webhooks",
        "/v1/members",
    ] {
        let id = &ids.iter().find(|(p, _)| *p == path).unwrap().1;
        app.delete(&format!("{path}/{id}"), &t.key).await.ok(204);
        app.get(&format!("{path}/{id}"), &t.key).await.problem(404);
        app.delete(&format!("{path}/{id}"), &t.key)
            .await
            .problem(404);
    }
    let key_id = &ids.iter().find(|(p, _)| *p == "/v1/api-keys").unwrap().1;
    app.delete(&format!("/v1/api-keys/{key_id}"), &t.key)
        .await
        .ok(204);
    // A revoked key is 404 like any resource after its DELETE, still listed with its
    // `revoked_at`.
    app.get(&format!("/v1/api-keys/{key_id}"), &t.key)
        .await
        .problem(404);
    let list = app.get("/v1/api-keys?limit=200", &t.key).await;
    let listed = list.ok(200)["items"]
        .as_array()
        .and_then(|ks| ks.iter().find(|k| k["id"] == key_id.as_str()).cloned())
        .expect("the revoked key is still listed");
    assert!(listed["revoked_at"].is_string());
    app.stop().await;
}

#[tokio::test]
async fn lists_paginate_with_opaque_cursors_and_filter() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let p1 = app
        .post("/v1/projects", &t.key, json!({ "name": "p1" }))
        .await
        .ok(201)["id"]
        .clone();
    let p2 = app
        .post("/v1/projects", &t.key, json!({ "name": "p2" }))
        .await
        .ok(201)["id"]
        .clone();
    for i in 0..5 {
        let status = if i % 2 == 0 { "todo" } else { "done" };
        app.post(
            "/v1/tasks",
            &t.key,
            json!({ "project_id": p1, "title": format!("t{i}"), "status": status }),
        )
        .await
        .ok(201);
    }
    app.post(
        "/v1/tasks",
        &t.key,
        json!({ "project_id": p2, "title": "other" }),
    )
    .await
    .ok(201);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/tasks?project_id={}&limit=2", p1.as_str().unwrap());
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = app.get(&path, &t.key).await;
        let body = page.ok(200).clone();
        for i in body["items"].as_array().unwrap() {
            assert_eq!(i["project_id"], p1);
            seen.push(i["title"].as_str().unwrap().to_string());
        }
        match body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(
        seen,
        vec!["t4", "t3", "t2", "t1", "t0"],
        "newest first, no gaps or repeats"
    );
    let todo = app.get("/v1/tasks?status=todo", &t.key).await;
    assert_eq!(todo.ok(200)["items"].as_array().unwrap().len(), 4);
    let all = app.get("/v1/tasks?limit=200", &t.key).await;
    assert_eq!(all.ok(200)["items"].as_array().unwrap().len(), 6);
    app.stop().await;
}
