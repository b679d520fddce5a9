//! Bad input gets the right problem+json answer, and odd strings never a 500.

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
    app.post(
        "/v1/invoices",
        k,
        json!({ "number": "acme-1", "customer_name": "c", "amount_minor": 1, "currency": "EUR" }),
    )
    .await
    .problem(409);
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
