//! The role matrix: every route enforces its minimum role, and no one grants more than they have.

use crate::helpers::*;
use serde_json::{json, Value};

/// Makes a create body; the argument makes unique values (invoice numbers, emails).
type BodyFn = Box<dyn Fn(usize) -> Value>;

const ROLES: [&str; 4] = ["viewer", "member", "admin", "owner"];

fn rank(r: &str) -> usize {
    ROLES.iter().position(|x| *x == r).unwrap()
}

#[tokio::test]
async fn every_route_enforces_its_minimum_role() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let ids = populate(&app, &t.key, "acme").await;
    let id = |p: &str| ids.iter().find(|(x, _)| *x == p).unwrap().1.clone();
    let mut keys = Vec::new();
    for r in ROLES {
        keys.push((
            r,
            if r == "owner" {
                t.key.clone()
            } else {
                app.key(&t.key, r).await
            },
        ));
    }
    let project = id("/v1/projects");
    let task = id("/v1/tasks");
    let n = std::sync::atomic::AtomicUsize::new(0);
    let next = || n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // (method, path, body, minimum role). Deletes come last, children first.
    let mut routes: Vec<(&str, String, Option<Value>, &str)> = Vec::new();
    for (path, read, write) in [
        ("/v1/projects", "viewer", "member"),
        ("/v1/tasks", "viewer", "member"),
        ("/v1/documents", "viewer", "member"),
        ("/v1/comments", "viewer", "member"),
        ("/v1/invoices", "viewer", "admin"),
        ("/v1/members", "viewer", "admin"),
        ("/v1/webhooks", "admin", "admin"),
        ("/v1/api-keys", "admin", "admin"),
        ("/v1/audit-log", "admin", "admin"),
    ] {
        routes.push(("GET", path.to_string(), None, read));
        let one = if path == "/v1/audit-log" {
            let a = app.get("/v1/audit-log", &t.key).await;
            a.ok(200)["items"][0]["id"].as_str().unwrap().to_string()
        } else {
            id(path)
        };
        routes.push(("GET", format!("{path}/{one}"), None, read));
        let _ = write;
    }
    let creates: Vec<(&str, BodyFn, &str)> = vec![
        (
            "/v1/projects",
            Box::new(|_| json!({ "name": "p" })),
            "member",
        ),
        (
            "/v1/tasks",
            Box::new(move |_| json!({ "project_id": project, "title": "t" })),
            "member",
        ),
        (
            "/v1/documents",
            Box::new({
                let p = id("/v1/projects");
                move |_| json!({ "project_id": p, "title": "d" })
            }),
            "member",
        ),
        (
            "/v1/comments",
            Box::new(move |_| json!({ "task_id": task, "body": "c" })),
            "member",
        ),
        (
            "/v1/invoices",
            Box::new(
                |i| json!({ "number": format!("N{i}"), "customer_name": "c", "amount_minor": 1, "currency": "USD" }),
            ),
            "admin",
        ),
        (
            "/v1/members",
            Box::new(|i| json!({ "email": format!("x{i}@e.example"), "role": "viewer" })),
            "admin",
        ),
        (
            "/v1/webhooks",
            Box::new(|_| json!({ "url": "https://e.example/h", "event_types": ["a"] })),
            "admin",
        ),
        (
            "/v1/api-keys",
            Box::new(|_| json!({ "name": "k", "role": "viewer" })),
            "admin",
        ),
    ];
    for (path, body, min) in &creates {
        for (role, key) in &keys {
            let r = app.post(path, key, body(next())).await;
            if rank(role) < rank(min) {
                r.problem(403);
            } else {
                assert_eq!(r.status, 201, "{role} POST {path}: {}", r.body);
            }
        }
    }
    for (path, body, min) in [
        ("/v1/projects", json!({ "name": "x" }), "member"),
        ("/v1/tasks", json!({ "title": "x" }), "member"),
        ("/v1/documents", json!({ "title": "x" }), "member"),
        ("/v1/comments", json!({ "body": "x" }), "member"),
        ("/v1/invoices", json!({ "customer_name": "x" }), "admin"),
        ("/v1/members", json!({ "name": "x" }), "admin"),
        ("/v1/webhooks", json!({ "active": true }), "admin"),
    ] {
        routes.push(("PATCH", format!("{path}/{}", id(path)), Some(body), min));
    }
    for (path, min) in [
        ("/v1/comments", "member"),
        ("/v1/documents", "member"),
        ("/v1/tasks", "member"),
        ("/v1/projects", "member"),
        ("/v1/invoices", "admin"),
        ("/v1/webhooks", "admin"),
        ("/v1/members", "admin"),
        ("/v1/api-keys", "admin"),
    ] {
        routes.push(("DELETE", format!("{path}/{}", id(path)), None, min));
    }
    for (method, path, body, min) in &routes {
        for (role, key) in &keys {
            let r = app.send(method, path, Some(key), body.clone()).await;
            if rank(role) < rank(min) {
                r.problem(403);
            } else {
                assert!(
                    r.status == 200 || r.status == 204 || r.status == 404,
                    "{role} {method} {path}: {} {}",
                    r.status,
                    r.body
                );
            }
        }
    }
    app.stop().await;
}

#[tokio::test]
async fn no_one_grants_more_than_they_have() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let admin = app.key(&t.key, "admin").await;
    app.post(
        "/v1/api-keys",
        &admin,
        json!({ "name": "k", "role": "owner" }),
    )
    .await
    .problem(403);
    app.post(
        "/v1/members",
        &admin,
        json!({ "email": "o@x.example", "role": "owner" }),
    )
    .await
    .problem(403);
    let owner = app
        .post(
            "/v1/members",
            &t.key,
            json!({ "email": "o@x.example", "role": "owner" }),
        )
        .await;
    let oid = owner.ok(201)["id"].as_str().unwrap().to_string();
    app.patch(
        &format!("/v1/members/{oid}"),
        &admin,
        json!({ "role": "viewer" }),
    )
    .await
    .problem(403);
    app.delete(&format!("/v1/members/{oid}"), &admin)
        .await
        .problem(403);
    app.delete(&format!("/v1/members/{oid}"), &t.key)
        .await
        .ok(204);
    app.stop().await;
}
