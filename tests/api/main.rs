//! HTTP tests of the reference API: the real server on a random port, a fresh real
//! PostgreSQL database per test, requests over HTTP only.

mod data_safety;
mod dev_restart;
mod helpers;
mod idempotency;
mod key_cache;
mod pgbouncer;
mod rollback_noise;
mod service;

mod resources {
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
        let revoked = app.get(&format!("/v1/api-keys/{key_id}"), &t.key).await;
        assert!(revoked.ok(200)["revoked_at"].is_string());
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
}

mod isolation {
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
}

mod roles {
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
}

mod input {
    use crate::helpers::*;
    use serde_json::json;

    /// Odd values in every string field of every create: always a 2xx or a 4xx
    /// problem, never a 500.
    #[tokio::test]
    async fn odd_strings_never_cause_a_500() {
        let app = spawn_app().await;
        let t = app.tenant("acme").await;
        let k = &t.key;
        let ids = populate(&app, k, "acme").await;
        let (project, task) = (ids[0].1.clone(), ids[2].1.clone());
        let odd = [
            "nul\0byte".to_string(),
            "\0".to_string(),
            "🦀".repeat(300),
            "'; DROP TABLE projects; --".to_string(),
            "\u{202e}rtl".to_string(),
            " ".to_string(),
            "x".repeat(70_000),
        ];
        for (i, v) in odd.iter().enumerate() {
            let bodies = [
                ("/v1/projects", json!({ "name": v, "description": v })),
                (
                    "/v1/tasks",
                    json!({ "project_id": project, "title": v, "description": v, "status": v }),
                ),
                (
                    "/v1/documents",
                    json!({ "project_id": project, "title": v, "body": v }),
                ),
                ("/v1/comments", json!({ "task_id": task, "body": v })),
                (
                    "/v1/invoices",
                    json!({ "number": format!("{v}{i}"), "customer_name": v, "amount_minor": i64::MAX, "currency": v }),
                ),
                (
                    "/v1/members",
                    json!({ "email": format!("{v}@{v}"), "name": v, "role": "viewer" }),
                ),
                (
                    "/v1/webhooks",
                    json!({ "url": format!("https://{v}"), "event_types": [v] }),
                ),
                ("/v1/api-keys", json!({ "name": v, "role": "viewer" })),
            ];
            for (path, body) in bodies {
                let r = app.post(path, k, body).await;
                let shown: String = v.chars().take(20).collect();
                assert!(
                    r.status < 500,
                    "{path} with {shown:?}: {} {}",
                    r.status,
                    r.body
                );
                if r.status >= 400 {
                    r.problem(r.status);
                }
            }
            let short: String = v.chars().take(100).collect();
            let q = app
                .get(&format!("/v1/audit-log?actor={}", urlencode(&short)), k)
                .await;
            assert!(q.status < 500, "{}", q.body);
        }
        // NUL bytes written as JSON escapes, which serde turns into real NULs.
        for path in ["/v1/projects", "/v1/api-keys"] {
            let raw = app
                .raw(
                    app.client
                        .post(format!("{}{path}", app.base))
                        .bearer_auth(k)
                        .header("content-type", "application/json")
                        .body(r#"{"name": "a\u0000b", "role": "viewer"}"#),
                )
                .await;
            raw.problem(422);
        }
        for q in [
            "/v1/tasks?status=%00",
            "/v1/audit-log?actor=%00",
            "/v1/audit-log?resource_type=a%00b",
        ] {
            let r = app.get(q, k).await;
            assert!(r.status == 400 || r.status == 422, "{q}: {}", r.status);
        }
        app.stop().await;
    }

    fn urlencode(s: &str) -> String {
        s.bytes().map(|b| format!("%{b:02X}")).collect()
    }

    #[tokio::test]
    async fn bad_input_gets_the_right_problem() {
        let app = spawn_app().await;
        let t = app.tenant("acme").await;
        let k = &t.key;
        let ids = populate(&app, k, "acme").await;
        let project = &ids[0].1;
        // Malformed ids, cursors and limits: 400.
        for path in [
            "/v1/projects/not-a-uuid",
            "/v1/tasks/123",
            "/v1/projects?cursor=garbage!",
            "/v1/projects?cursor=MTIzLm5vdGF1dWlk",
            "/v1/projects?limit=0",
            "/v1/projects?limit=201",
            "/v1/projects?limit=abc",
            "/v1/tasks?project_id=nope",
            "/v1/tasks?status=sleeping",
            "/v1/audit-log/xyz",
        ] {
            let r = app.get(path, k).await;
            assert!(r.status == 400 || r.status == 422, "{path}: {}", r.status);
            r.problem(r.status);
        }
        // Malformed JSON: 400. Wrong content type: 415.
        let raw = app
            .raw(
                app.client
                    .post(format!("{}/v1/projects", app.base))
                    .bearer_auth(k)
                    .header("content-type", "application/json")
                    .body("{\"name\": "),
            )
            .await;
        raw.problem(400);
        let raw = app
            .raw(
                app.client
                    .post(format!("{}/v1/projects", app.base))
                    .bearer_auth(k)
                    .header("content-type", "text/plain")
                    .body("{\"name\": \"x\"}"),
            )
            .await;
        raw.problem(415);
        // Too large: 413 (limit is 256 KiB in tests).
        let huge = "x".repeat(300 * 1024);
        app.post(
            "/v1/documents",
            k,
            json!({ "project_id": project, "title": "t", "body": huge }),
        )
        .await
        .problem(413);
        // Wrong types, missing fields, unknown fields, out-of-range values: 422 with the field.
        let cases = [
            ("/v1/projects", json!({ "name": 5 }), "name"),
            ("/v1/projects", json!({}), "name"),
            ("/v1/projects", json!({ "name": "" }), "name"),
            ("/v1/projects", json!({ "name": "n".repeat(256) }), "name"),
            (
                "/v1/projects",
                json!({ "name": "ok", "owner": "me" }),
                "owner",
            ),
            (
                "/v1/tasks",
                json!({ "project_id": project, "title": "t", "status": "nope" }),
                "status",
            ),
            (
                "/v1/tasks",
                json!({ "project_id": "zzz", "title": "t" }),
                "project_id",
            ),
            (
                "/v1/tasks",
                json!({ "project_id": project, "title": "t", "due_date": "tomorrow" }),
                "due_date",
            ),
            (
                "/v1/documents",
                json!({ "project_id": project, "title": "t".repeat(501) }),
                "title",
            ),
            ("/v1/comments", json!({ "body": "no parent" }), "task_id"),
            (
                "/v1/comments",
                json!({ "task_id": ids[2].1, "body": "" }),
                "body",
            ),
            (
                "/v1/invoices",
                json!({ "number": "1", "customer_name": "c", "amount_minor": -1, "currency": "EUR" }),
                "amount_minor",
            ),
            (
                "/v1/invoices",
                json!({ "number": "1", "customer_name": "c", "amount_minor": 1, "currency": "euro" }),
                "currency",
            ),
            (
                "/v1/invoices",
                json!({ "number": "1", "customer_name": "c", "amount_minor": "1", "currency": "EUR" }),
                "amount_minor",
            ),
            (
                "/v1/invoices",
                json!({ "number": "2", "customer_name": "c", "amount_minor": 1, "currency": "EUR", "issued_on": "2030-02-01", "due_on": "2030-01-01" }),
                "due_on",
            ),
            (
                "/v1/members",
                json!({ "email": "not-an-email", "role": "member" }),
                "email",
            ),
            (
                "/v1/members",
                json!({ "email": "a@b.example", "role": "god" }),
                "role",
            ),
            (
                "/v1/webhooks",
                json!({ "url": "ftp://x", "event_types": ["a"] }),
                "url",
            ),
            (
                "/v1/webhooks",
                json!({ "url": "https://x.example", "event_types": [] }),
                "event_types",
            ),
            (
                "/v1/api-keys",
                json!({ "name": "", "role": "viewer" }),
                "name",
            ),
        ];
        for (path, body, field) in cases {
            let r = app.post(path, k, body.clone()).await;
            r.problem(422);
            let fields: Vec<_> = r.body["errors"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_string())
                .collect();
            assert!(
                fields.iter().any(|f| f.contains(field)),
                "{path} {body}: want {field}, got {fields:?}"
            );
        }
        // A PATCH with nothing to change, or a wrong type.
        app.patch(&format!("/v1/projects/{project}"), k, json!({}))
            .await
            .problem(422);
        app.patch(&format!("/v1/projects/{project}"), k, json!({ "name": [] }))
            .await
            .problem(422);
        // Conflicts: 409.
        app.post("/v1/invoices", k, json!({ "number": "acme-1", "customer_name": "c", "amount_minor": 1, "currency": "EUR" })).await.problem(409);
        app.post(
            "/v1/members",
            k,
            json!({ "email": "M@acme.example", "role": "member" }),
        )
        .await
        .problem(409);
        // Unknown routes and methods are problems too.
        let r = app.get("/v1/nothing-here", k).await;
        r.problem(404);
        assert_eq!(r.body["detail"], "no such route");
        app.send("PUT", "/v1/projects", Some(k), Some(json!({})))
            .await
            .problem(405);
        app.stop().await;
    }
}

mod auth {
    use crate::helpers::*;
    use serde_json::json;

    fn jwt(claims: serde_json::Value, secret: &str) -> String {
        jsonwebtoken::encode(
            &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn credentials_are_checked_and_revocation_is_immediate() {
        let app = spawn_app().await;
        let a = app.tenant("a").await;
        let b = app.tenant("b").await;
        app.send("GET", "/v1/projects", None, None)
            .await
            .problem(401);
        for bad in ["garbage", "tgk_", "tgk_zz_zz", &format!("{}x", a.key)] {
            app.get("/v1/projects", bad).await.problem(401);
        }
        // a's secret with b's tenant: looked up in b's scope, found nothing.
        let secret = a.key.rsplit('_').next().unwrap();
        let forged = format!("tgk_{}_{secret}", b.id.replace('-', ""));
        app.get("/v1/projects", &forged).await.problem(401);
        // Revocation takes effect at once.
        let k = app
            .post(
                "/v1/api-keys",
                &a.key,
                json!({ "name": "temp", "role": "member" }),
            )
            .await;
        let (kid, key) = (
            k.ok(201)["id"].as_str().unwrap().to_string(),
            k.body["api_key"].as_str().unwrap().to_string(),
        );
        app.get("/v1/projects", &key).await.ok(200);
        app.get("/v1/projects", &key).await.ok(200);
        app.delete(&format!("/v1/api-keys/{kid}"), &a.key)
            .await
            .ok(204);
        app.get("/v1/projects", &key).await.problem(401);
        // last_used_at is recorded (flushed in the background, no write per request).
        tokio::time::sleep(std::time::Duration::from_millis(600)).await;
        let meta = app.get(&format!("/v1/api-keys/{kid}"), &a.key).await;
        assert!(meta.ok(200)["last_used_at"].is_string(), "{}", meta.body);
        app.stop().await;
    }

    #[tokio::test]
    async fn a_key_revoked_on_another_server_stops_working_within_the_cache_ttl() {
        let ttl = std::time::Duration::from_secs(1);
        let app = spawn_app_with(|c| c.key_cache_ttl = ttl).await;
        let replica = spawn_replica(&app, |c| c.key_cache_ttl = ttl).await;
        let a = app.tenant("a").await;
        let k = app
            .post(
                "/v1/api-keys",
                &a.key,
                json!({ "name": "t", "role": "viewer" }),
            )
            .await;
        let (kid, key) = (
            k.ok(201)["id"].as_str().unwrap().to_string(),
            k.body["api_key"].as_str().unwrap().to_string(),
        );
        replica.get("/v1/projects", &key).await.ok(200); // now cached on the replica
        app.delete(&format!("/v1/api-keys/{kid}"), &a.key)
            .await
            .ok(204);
        let revoked_at = std::time::Instant::now();
        loop {
            let r = replica.get("/v1/projects", &key).await;
            if r.status == 401 {
                break;
            }
            assert_eq!(r.status, 200);
            assert!(
                revoked_at.elapsed() < ttl * 3,
                "still accepted after the TTL"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        replica.stop().await;
        app.stop().await;
    }

    #[tokio::test]
    async fn jwts_carry_tenant_and_role_and_are_validated() {
        let app = spawn_app().await;
        let a = app.tenant("a").await;
        let exp = chrono::Utc::now().timestamp() + 600;
        let good = jwt(
            json!({ "sub": "u1", "tenant_id": a.id, "role": "member", "exp": exp }),
            JWT_SECRET,
        );
        let p = app
            .post("/v1/projects", &good, json!({ "name": "by jwt" }))
            .await;
        let pid = p.ok(201)["id"].as_str().unwrap().to_string();
        let viewer = jwt(
            json!({ "sub": "u2", "tenant_id": a.id, "role": "viewer", "exp": exp }),
            JWT_SECRET,
        );
        app.get(&format!("/v1/projects/{pid}"), &viewer)
            .await
            .ok(200);
        app.post("/v1/projects", &viewer, json!({ "name": "no" }))
            .await
            .problem(403);
        // A well-signed token for a tenant that does not exist reads nothing, writes nothing.
        let ghost = jwt(
            json!({ "sub": "g", "tenant_id": uuid::Uuid::now_v7(), "role": "owner", "exp": exp }),
            JWT_SECRET,
        );
        assert_eq!(
            app.get("/v1/projects", &ghost).await.ok(200)["items"],
            json!([])
        );
        app.post("/v1/projects", &ghost, json!({ "name": "x" }))
            .await
            .problem(403);
        app.post(
            "/v1/members",
            &ghost,
            json!({ "email": "g@x.example", "role": "viewer" }),
        )
        .await
        .problem(403);
        let audit = app
            .get(&format!("/v1/audit-log?resource_id={pid}"), &a.key)
            .await;
        assert_eq!(audit.ok(200)["items"][0]["actor"], "user:u1");
        for bad in [
            jwt(
                json!({ "sub": "u1", "tenant_id": a.id, "role": "member", "exp": exp - 3600 }),
                JWT_SECRET,
            ),
            jwt(
                json!({ "sub": "u1", "tenant_id": a.id, "role": "member", "exp": exp }),
                "wrong-secret-wrong-secret",
            ),
            jwt(
                json!({ "sub": "u1", "role": "member", "exp": exp }),
                JWT_SECRET,
            ),
            jwt(
                json!({ "sub": "u1", "tenant_id": "nope", "role": "member", "exp": exp }),
                JWT_SECRET,
            ),
            jwt(
                json!({ "sub": "u1", "tenant_id": a.id, "role": "superuser", "exp": exp }),
                JWT_SECRET,
            ),
            jwt(
                json!({ "sub": "u1", "tenant_id": a.id, "role": "member" }),
                JWT_SECRET,
            ),
        ] {
            app.get("/v1/projects", &bad).await.problem(401);
        }
        app.stop().await;
    }

    #[tokio::test]
    async fn rs256_and_es256_public_keys_verify_jwts() {
        use jsonwebtoken::{Algorithm, EncodingKey, Header};
        use tenantguard::http::{JwtConfig, JwtKey};
        // Test-only key pairs (tests/api/keys), made with openssl.
        let cases = [
            (
                Algorithm::RS256,
                JwtKey::Rs256Pem(include_bytes!("keys/rs256-public.pem").to_vec()),
                EncodingKey::from_rsa_pem(include_bytes!("keys/rs256-private.pem")).unwrap(),
            ),
            (
                Algorithm::ES256,
                JwtKey::Es256Pem(include_bytes!("keys/es256-public.pem").to_vec()),
                EncodingKey::from_ec_pem(include_bytes!("keys/es256-private.pem")).unwrap(),
            ),
        ];
        for (alg, public, private) in cases {
            let app = spawn_app_with(|c| {
                c.jwt = Some(JwtConfig {
                    key: public,
                    leeway_secs: 5,
                    issuer: Some("https://idp.example".into()),
                    audience: None,
                })
            })
            .await;
            let a = app.tenant("a").await;
            let exp = chrono::Utc::now().timestamp() + 600;
            let claims = json!({ "sub": "u", "tenant_id": a.id, "role": "viewer", "exp": exp, "iss": "https://idp.example" });
            let good = jsonwebtoken::encode(&Header::new(alg), &claims, &private).unwrap();
            app.get("/v1/projects", &good).await.ok(200);
            let mut wrong_iss = claims.clone();
            wrong_iss["iss"] = json!("https://evil.example");
            let bad = jsonwebtoken::encode(&Header::new(alg), &wrong_iss, &private).unwrap();
            app.get("/v1/projects", &bad).await.problem(401);
            // An HS256 token "signed" with the public key (algorithm confusion) is refused.
            let confused = jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(include_bytes!("keys/rs256-public.pem")),
            )
            .unwrap();
            app.get("/v1/projects", &confused).await.problem(401);
            app.stop().await;
        }
    }

    #[tokio::test]
    async fn admin_and_tenant_credentials_never_cross() {
        let app = spawn_app().await;
        let a = app.tenant("a").await;
        app.get("/v1/projects", ADMIN_TOKEN).await.problem(401);
        app.get("/admin/v1/tenants", &a.key).await.problem(401);
        app.send("GET", "/admin/v1/tenants", None, None)
            .await
            .problem(401);
        app.get("/admin/v1/tenants", "not-the-token")
            .await
            .problem(401);
        app.post("/admin/v1/tenants", &a.key, json!({ "name": "evil" }))
            .await
            .problem(401);
        app.stop().await;
    }
}

mod audit {
    use crate::helpers::*;
    use serde_json::json;

    #[tokio::test]
    async fn every_mutation_writes_an_audit_row_and_failed_ones_none() {
        let app = spawn_app().await;
        let t = app.tenant("acme").await;
        let ids = populate(&app, &t.key, "acme").await;
        let (pid, kid) = (&ids[0].1, &ids[7].1);
        app.patch(
            &format!("/v1/projects/{pid}"),
            &t.key,
            json!({ "name": "renamed" }),
        )
        .await
        .ok(200);
        app.delete(&format!("/v1/api-keys/{kid}"), &t.key)
            .await
            .ok(204);
        app.delete(&format!("/v1/projects/{pid}"), &t.key)
            .await
            .ok(204);
        // A failing request rolls back, audit row included.
        app.post("/v1/invoices", &t.key, json!({ "number": "acme-1", "customer_name": "c", "amount_minor": 1, "currency": "EUR" })).await.problem(409);
        let log = app.get("/v1/audit-log?limit=200", &t.key).await;
        let rows = log.ok(200)["items"].as_array().unwrap().clone();
        let owner_key_actor = rows.iter().find(|r| r["action"] == "create").unwrap()["actor"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(owner_key_actor.starts_with("api_key:"));
        for (path, id) in &ids {
            let kind = match *path {
                "/v1/projects" => "project",
                "/v1/members" => "member",
                "/v1/tasks" => "task",
                "/v1/documents" => "document",
                "/v1/comments" => "comment",
                "/v1/invoices" => "invoice",
                "/v1/webhooks" => "webhook",
                _ => "api_key",
            };
            assert!(
                rows.iter().any(|r| r["action"] == "create"
                    && r["resource_type"] == kind
                    && r["resource_id"] == id.as_str()),
                "create of {kind} audited"
            );
        }
        let upd = rows.iter().find(|r| r["action"] == "update").unwrap();
        assert_eq!(upd["resource_id"], pid.as_str());
        assert_eq!(upd["details"]["changed"], json!(["name"]));
        assert!(rows
            .iter()
            .any(|r| r["action"] == "delete" && r["resource_id"] == pid.as_str()));
        assert!(rows
            .iter()
            .any(|r| r["action"] == "revoke" && r["resource_id"] == kid.as_str()));
        assert!(rows
            .iter()
            .any(|r| r["action"] == "provision" && r["resource_type"] == "tenant"));
        let invoice_creates = rows
            .iter()
            .filter(|r| r["resource_type"] == "invoice")
            .count();
        assert_eq!(
            invoice_creates, 1,
            "the rolled-back invoice left no audit row"
        );
        // The audit log is read-only over HTTP.
        let any = rows[0]["id"].as_str().unwrap();
        app.delete(&format!("/v1/audit-log/{any}"), &t.key)
            .await
            .problem(405);
        app.patch(
            &format!("/v1/audit-log/{any}"),
            &t.key,
            json!({ "action": "x" }),
        )
        .await
        .problem(405);
        app.stop().await;
    }
}

mod admin {
    use crate::helpers::*;
    use serde_json::json;

    #[tokio::test]
    async fn admin_reports_and_provisions_tenants() {
        let app = spawn_app().await;
        let a = app.tenant("alpha").await;
        let b = app.tenant("beta").await;
        populate(&app, &a.key, "a").await;
        app.post("/v1/projects", &a.key, json!({ "name": "second" }))
            .await
            .ok(201);
        let list = app.get("/admin/v1/tenants?limit=1", ADMIN_TOKEN).await;
        assert_eq!(list.ok(200)["items"].as_array().unwrap().len(), 1);
        let next = list.body["next_cursor"].as_str().unwrap().to_string();
        let page2 = app
            .get(
                &format!("/admin/v1/tenants?limit=1&cursor={next}"),
                ADMIN_TOKEN,
            )
            .await;
        assert_eq!(page2.ok(200)["items"].as_array().unwrap().len(), 1);
        assert_ne!(page2.body["items"][0]["id"], list.body["items"][0]["id"]);
        let detail = app
            .get(&format!("/admin/v1/tenants/{}", a.id), ADMIN_TOKEN)
            .await;
        let d = detail.ok(200);
        assert_eq!(d["name"], "alpha");
        assert_eq!(d["usage"]["projects"], 2);
        assert_eq!(d["usage"]["tasks"], 1);
        assert_eq!(d["usage"]["active_api_keys"], 2);
        app.get(
            &format!("/admin/v1/tenants/{}", uuid::Uuid::now_v7()),
            ADMIN_TOKEN,
        )
        .await
        .problem(404);
        app.get("/admin/v1/tenants/xyz", ADMIN_TOKEN)
            .await
            .problem(400);
        let stats = app.get("/admin/v1/stats/projects", ADMIN_TOKEN).await;
        let rows = stats.ok(200)["tenants"].as_array().unwrap().clone();
        let ra = rows
            .iter()
            .find(|r| r["tenant_id"] == a.id.as_str())
            .unwrap();
        let rb = rows
            .iter()
            .find(|r| r["tenant_id"] == b.id.as_str())
            .unwrap();
        assert_eq!(ra["project_count"], 2);
        assert_eq!(rb["project_count"], 0);
        assert!(ra["last_activity"].is_string());
        // Provisioning: bad bodies are 422, the new owner key works at once, in its tenant only.
        app.post("/admin/v1/tenants", ADMIN_TOKEN, json!({ "name": "" }))
            .await
            .problem(422);
        app.post(
            "/admin/v1/tenants",
            ADMIN_TOKEN,
            json!({ "name": "x", "id": a.id }),
        )
        .await
        .problem(422);
        let c = app
            .post(
                "/admin/v1/tenants",
                ADMIN_TOKEN,
                json!({ "name": "gamma", "owner_email": "Boss@Gamma.example" }),
            )
            .await;
        let key = c.ok(201)["api_key"].as_str().unwrap().to_string();
        let members = app.get("/v1/members", &key).await;
        assert_eq!(members.ok(200)["items"][0]["email"], "boss@gamma.example");
        assert_eq!(members.body["items"][0]["role"], "owner");
        assert_eq!(
            app.get("/v1/projects", &key).await.ok(200)["items"]
                .as_array()
                .unwrap()
                .len(),
            0
        );
        app.stop().await;
    }
}

mod ops {
    use crate::helpers::*;
    use serde_json::json;

    #[tokio::test]
    async fn health_ready_metrics_and_openapi() {
        let app = spawn_app().await;
        let t = app.tenant("acme").await;
        app.send("GET", "/healthz", None, None).await.ok(200);
        let ready = app.send("GET", "/readyz", None, None).await;
        assert_eq!(ready.ok(200)["status"], "ready");
        app.get("/v1/projects", &t.key).await.ok(200);
        let m = app.send("GET", "/metrics", None, None).await;
        let text = m.body.as_str().unwrap_or_default().to_string();
        assert!(text.contains("http_requests_total"), "{text}");
        assert!(text.contains("route=\"/v1/projects\""), "{text}");
        assert!(m.headers.get("x-request-id").is_some());
        // The counter behind a (route, method, status) really counts on later requests
        // (its handle is made once and reused).
        let count = |text: &str| -> f64 {
            text.lines()
                .filter(|l| {
                    l.starts_with("http_requests_total{")
                        && l.contains("method=\"GET\"")
                        && l.contains("route=\"/v1/projects\"")
                        && l.contains("status=\"200\"")
                })
                .filter_map(|l| l.rsplit(" ").next()?.parse::<f64>().ok())
                .sum()
        };
        let before = count(&text);
        assert!(before >= 1.0, "{text}");
        app.get("/v1/projects", &t.key).await.ok(200);
        app.get("/v1/projects", &t.key).await.ok(200);
        let again = app.send("GET", "/metrics", None, None).await;
        let after = count(again.body.as_str().unwrap_or_default());
        assert!(after >= before + 2.0, "{before} -> {after}");
        // The OpenAPI document lists exactly the routes the server has.
        let doc = app.send("GET", "/openapi.json", None, None).await;
        let paths = doc.ok(200)["paths"].as_object().unwrap().clone();
        assert!(paths.len() >= 18, "{}", paths.len());
        let any_id = uuid::Uuid::now_v7().to_string();
        for (path, ops) in &paths {
            let concrete = path.replace("{id}", &any_id);
            let token = if path.starts_with("/admin") {
                ADMIN_TOKEN.to_string()
            } else {
                t.key.clone()
            };
            for method in ops.as_object().unwrap().keys() {
                let body = matches!(method.as_str(), "post" | "patch").then(|| json!({}));
                let r = app
                    .send(&method.to_uppercase(), &concrete, Some(&token), body)
                    .await;
                assert!(
                    r.status != 405,
                    "{method} {path} is documented but not routed"
                );
                if r.status == 404 {
                    assert_eq!(
                        r.body["detail"], "not found",
                        "{method} {path} is documented but not routed"
                    );
                }
            }
        }
        app.stop().await;
    }

    /// The other direction: every route the tenant and admin routers declare (read from
    /// their source, since an axum Router cannot list its routes) is in the OpenAPI
    /// document with the same methods. The operational endpoints (`ops.rs`) and the
    /// bench-only baseline (`compare.rs`) are not part of the API document.
    #[tokio::test]
    async fn every_route_is_documented() {
        let app = spawn_app().await;
        let doc = app.send("GET", "/openapi.json", None, None).await;
        let paths = doc.ok(200)["paths"].as_object().unwrap().clone();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http");
        let mut routes = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let file = entry.unwrap().path();
            let name = file.file_name().unwrap().to_string_lossy().to_string();
            // Folders (auth/) declare no routes.
            if !file.is_file() || matches!(name.as_str(), "ops.rs" | "compare.rs") {
                continue;
            }
            let src = std::fs::read_to_string(&file).unwrap();
            for (path, methods) in declared_routes(&src) {
                routes += 1;
                let documented = paths
                    .get(&path)
                    .unwrap_or_else(|| panic!("{name}: {path} is routed but not documented"));
                let mut want: Vec<&str> = documented
                    .as_object()
                    .unwrap()
                    .keys()
                    .map(String::as_str)
                    .collect();
                want.sort_unstable();
                let mut got: Vec<&str> = methods.iter().map(String::as_str).collect();
                got.sort_unstable();
                assert_eq!(got, want, "{name}: methods of {path}");
            }
        }
        assert_eq!(
            routes,
            paths.len(),
            "every documented path is declared once"
        );
        app.stop().await;
    }

    /// `(path, methods)` of each `.route("<path>", get(..).post(..))` call in `src`.
    fn declared_routes(src: &str) -> Vec<(String, Vec<String>)> {
        let mut out = Vec::new();
        let mut rest = src;
        while let Some(at) = rest.find(".route(") {
            let call = &rest[at + ".route(".len()..];
            // The call's arguments: up to the parenthesis that closes `.route(`.
            let mut depth = 1;
            let end = call
                .char_indices()
                .find_map(|(i, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    (depth == 0).then_some(i)
                })
                .expect("balanced .route(");
            let args = &call[..end];
            let path = args.split('"').nth(1).expect("a path literal").to_string();
            let methods = ["get", "post", "put", "patch", "delete"]
                .iter()
                .filter(|m| {
                    args.match_indices(&format!("{m}(")).any(|(i, _)| {
                        i == 0
                            || !args.as_bytes()[i - 1].is_ascii_alphanumeric()
                                && args.as_bytes()[i - 1] != b'_'
                    })
                })
                .map(|m| m.to_string())
                .collect();
            out.push((path, methods));
            rest = &call[end..];
        }
        out
    }
}

mod dev {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    fn free_port() -> u16 {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }

    /// Runs `tenantguard dev` in `dir` until it prints `ready:`; returns the child and the
    /// curl lines it printed.
    fn start(dir: &std::path::Path, port: u16) -> (std::process::Child, Vec<String>, Vec<String>) {
        let mut child = Command::new(env!("CARGO_BIN_EXE_tenantguard"))
            .arg("dev")
            .current_dir(dir)
            .env("TENANTGUARD_LISTEN", format!("127.0.0.1:{port}"))
            .env_remove("TENANTGUARD_ADMIN_TOKEN")
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(120);
        let (mut curls, mut keys) = (Vec::new(), Vec::new());
        loop {
            let line = rx
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .expect("dev printed ready");
            if let Some(c) = line.trim().strip_prefix("curl ") {
                curls.push(format!("curl --fail-with-body {c}"));
            }
            if let Some(k) = line.trim().strip_prefix("API key: ") {
                keys.push(k.to_string());
            }
            if line.starts_with("ready:") {
                break;
            }
        }
        (child, curls, keys)
    }

    fn stop(mut child: std::process::Child) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id() as i32),
            nix::sys::signal::Signal::SIGINT,
        )
        .unwrap();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                assert!(status.success(), "dev exited with {status}");
                return;
            }
            assert!(Instant::now() < deadline, "dev did not stop");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    #[test]
    fn dev_starts_from_nothing_and_its_curl_lines_work() {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let (child, curls, keys) = start(dir.path(), port);
        assert_eq!(keys.len(), 3, "three demo tenants");
        assert!(curls.len() >= 4, "{curls:?}");
        for c in &curls {
            let out = Command::new("sh").arg("-c").arg(c).output().unwrap();
            assert!(
                out.status.success(),
                "{c}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let out = Command::new("sh")
            .arg("-c")
            .arg(&curls[0])
            .output()
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(body["items"].as_array().unwrap().len() >= 3, "{body}");
        stop(child);
        // Second run: same cluster, no re-seed, the same keys still work.
        let (child, curls2, keys2) = start(dir.path(), port);
        assert_eq!(keys, keys2);
        let out = Command::new("sh")
            .arg("-c")
            .arg(&curls2[0])
            .output()
            .unwrap();
        let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(
            body["items"].as_array().unwrap().len() >= 4,
            "the project created by curl persisted: {body}"
        );
        stop(child);
    }
}

mod resilience {
    use crate::helpers::*;
    use serde_json::json;

    #[tokio::test]
    async fn database_outage_is_a_503_and_the_server_recovers() {
        let app = spawn_app().await;
        let t = app.tenant("acme").await;
        app.get("/v1/projects", &t.key).await.ok(200);
        let su = crate::helpers::superuser_elsewhere(app.db()).await;
        let name = app.db().name().to_string();
        su.batch_execute(&format!(
            "ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS false"
        ))
        .await
        .unwrap();
        su.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND pid <> pg_backend_pid()",
            &[&name],
        )
        .await
        .unwrap();
        // Every pooled connection is gone and no new one can be made.
        let mut saw_503 = false;
        for _ in 0..20 {
            let r = app.get("/v1/projects", &t.key).await;
            if r.status == 503 {
                r.problem(503);
                saw_503 = true;
                break;
            }
            assert!(
                r.status == 200 || r.status == 503,
                "{} {}",
                r.status,
                r.body
            );
        }
        assert!(saw_503, "an unreachable database must give 503");
        app.send("GET", "/readyz", None, None).await.problem(503);
        app.post("/v1/projects", &t.key, json!({ "name": "x" }))
            .await
            .problem(503);
        su.batch_execute(&format!("ALTER DATABASE \"{name}\" ALLOW_CONNECTIONS true"))
            .await
            .unwrap();
        app.get("/v1/projects", &t.key).await.ok(200);
        app.send("GET", "/readyz", None, None).await.ok(200);
        app.stop().await;
    }
}

mod provisioning {
    use crate::helpers::*;
    use tenantguard::schema;

    #[tokio::test]
    async fn only_the_admin_role_can_provision_and_drift_is_reported_and_fixed() {
        let app = spawn_app().await;
        let db = app.db();
        // The app role cannot call the provisioning function, nor write tenants.
        let appc = db.connect_as("tenantguard_app").await;
        let err = appc
            .execute(
                "SELECT * FROM tenantguard.provision_tenant(gen_random_uuid(), 'x', 'tgk_abcd', '\\x00', NULL)",
                &[],
            )
            .await
            .unwrap_err();
        assert!(
            tenantguard::error_chain(&err).contains("permission denied"),
            "{err}"
        );
        assert!(appc
            .execute("INSERT INTO tenants (name) VALUES ('x')", &[])
            .await
            .is_err());
        // The admin role still cannot write any table directly.
        let adminc = db.connect_as("tenantguard_admin").await;
        assert!(adminc
            .execute("INSERT INTO tenants (name) VALUES ('x')", &[])
            .await
            .is_err());
        // Drift: a widened grant and a weakened function are reported, then repaired.
        let mut su = db.superuser().await;
        su.batch_execute(
            "GRANT SELECT, UPDATE ON projects TO tenantguard_provisioner;
             GRANT EXECUTE ON FUNCTION tenantguard.provision_tenant(uuid, text, text, bytea, text) TO PUBLIC;
             ALTER FUNCTION tenantguard.provision_tenant(uuid, text, text, bytea, text) RESET search_path;",
        )
        .await
        .unwrap();
        let policy = tenantguard::testing::policy();
        let diffs = schema::check(&mut su, &policy).await.unwrap();
        let text = diffs.join("\n");
        assert!(text.contains("provision"), "{text}");
        assert!(text.contains("EXECUTE granted"), "{text}");
        assert!(text.contains("definition differs"), "{text}");
        assert!(text.contains("table privileges"), "{text}");
        schema::migrate(&mut su, &policy).await.unwrap();
        let after = schema::check(&mut su, &policy).await.unwrap();
        assert!(after.is_empty(), "{after:?}");
        // And provisioning still works after the repair.
        app.tenant("after repair").await;
        app.stop().await;
    }
}

mod serve_cli {
    use std::process::Command;

    #[tokio::test]
    async fn serve_runs_from_environment_variables_and_stops_on_sigterm() {
        let db = tenantguard::testing::TestDb::new().await;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = |role: &str| tenantguard::testing::config_url(&db.config_as(role));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantguard"))
            .arg("serve")
            .env("TENANTGUARD_DATABASE_URL", url("tenantguard_app"))
            .env("TENANTGUARD_ADMIN_DATABASE_URL", url("tenantguard_admin"))
            .env("TENANTGUARD_ADMIN_TOKEN", "serve-test-token")
            .env("TENANTGUARD_LISTEN", format!("127.0.0.1:{port}"))
            .env("TENANTGUARD_LOG_FORMAT", "json")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let client = reqwest::Client::new();
        let mut ready = false;
        for _ in 0..100 {
            if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
                ready = r.status() == 200;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        assert!(ready, "serve became ready");
        let r = client
            .post(format!("{base}/admin/v1/tenants"))
            .bearer_auth("serve-test-token")
            .json(&serde_json::json!({ "name": "via serve" }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let key = r.json::<serde_json::Value>().await.unwrap()["api_key"]
            .as_str()
            .unwrap()
            .to_string();
        let r = client
            .get(format!("{base}/v1/projects"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
        let out =
            tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
                .await
                .expect("serve stops")
                .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        // JSON log lines on stderr (stdout is for what people read), with the admin call logged.
        let logs = String::from_utf8_lossy(&out.stderr);
        assert!(
            logs.lines()
                .any(|l| l.starts_with('{') && l.contains("admin call")),
            "{logs}"
        );
    }

    #[tokio::test]
    async fn serve_refuses_an_unsafe_app_role_and_says_why() {
        let db = tenantguard::testing::TestDb::new().await;
        let out = Command::new(env!("CARGO_BIN_EXE_tenantguard"))
            .arg("serve")
            .env("TENANTGUARD_DATABASE_URL", db.superuser_url())
            .env("TENANTGUARD_LISTEN", "127.0.0.1:0")
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("SUPERUSER"), "{err}");
    }
}

/// The one-transaction-per-request layer, driven by handlers of the test's own that write
/// and then fail in the ways production handlers could: a panic, a client that goes away.
mod rollback {
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
}

/// The benchmark's explicit-filter baseline answers exactly like the real server, so the
/// two are compared on equal work. Only in builds with the `bench-baseline` feature:
/// `cargo test --features bench-baseline --test api baseline`.
#[cfg(feature = "bench-baseline")]
mod baseline {
    use crate::helpers::*;
    use serde_json::json;
    use tenantguard::http::compare::ExplicitFilterPool;
    use tenantguard::testing::unique_name;

    async fn audit_rows(app: &TestApp, key: &str) -> usize {
        app.get("/v1/audit-log?limit=200", key).await.ok(200)["items"]
            .as_array()
            .unwrap()
            .len()
    }

    #[tokio::test]
    async fn the_explicit_filter_baseline_gives_the_same_answers() {
        let app = spawn_app().await;
        let a = app.tenant("a").await;
        let b = app.tenant("b").await;
        let mut projects = Vec::new();
        for i in 0..3 {
            let p = app
                .post("/v1/projects", &a.key, json!({ "name": format!("p{i}") }))
                .await;
            projects.push(p.ok(201)["id"].as_str().unwrap().to_string());
        }
        for i in 0..3 {
            app.post(
                "/v1/tasks",
                &a.key,
                json!({ "project_id": projects[0], "title": format!("t{i}") }),
            )
            .await
            .ok(201);
        }
        let b_project = app
            .post("/v1/projects", &b.key, json!({ "name": "b's" }))
            .await
            .ok(201)["id"]
            .as_str()
            .unwrap()
            .to_string();

        let role = unique_name("tg_bench_explicit");
        let su = app.db().superuser().await;
        su.batch_execute(&format!(
            "CREATE ROLE {role} LOGIN BYPASSRLS NOSUPERUSER;
             GRANT USAGE ON SCHEMA tenantguard TO {role};
             GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA tenantguard TO {role};
             GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA public TO {role};"
        ))
        .await
        .unwrap();
        let mgr = deadpool_postgres::Manager::new(app.db().config_as(&role), tokio_postgres::NoTls);
        let pool = deadpool_postgres::Pool::builder(mgr)
            .max_size(2)
            .build()
            .unwrap();
        let explicit = spawn_replica(&app, |c| {
            c.explicit_filter_pool = Some(ExplicitFilterPool(pool));
        })
        .await;

        for path in [
            "/v1/projects?limit=2".to_string(),
            format!("/v1/projects/{}", projects[1]),
            format!("/v1/tasks?project_id={}&limit=2", projects[0]),
        ] {
            let want = app.get(&path, &a.key).await;
            let got = explicit.get(&path, &a.key).await;
            assert_eq!(got.status, 200, "{path}: {}", got.body);
            assert_eq!(got.body, want.body, "{path}");
        }
        assert!(
            !explicit.get("/v1/projects?limit=2", &a.key).await.body["next_cursor"].is_null(),
            "a full page has a next cursor"
        );
        // The explicit filter keeps tenants apart too.
        explicit
            .get(&format!("/v1/projects/{b_project}"), &a.key)
            .await
            .problem(404);

        let before = audit_rows(&app, &a.key).await;
        let body = json!({ "project_id": projects[0], "title": "same" });
        let want = app.post("/v1/tasks", &a.key, body.clone()).await;
        let got = explicit.post("/v1/tasks", &a.key, body).await;
        assert_eq!(got.status, 201, "{}", got.body);
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        assert_eq!(keys(&got.body), keys(want.ok(201)));
        assert_eq!(got.body["title"], "same");
        assert_eq!(
            audit_rows(&app, &a.key).await,
            before + 2,
            "both wrote their audit row"
        );
        explicit.stop().await;
    }
}
