//! The benchmark's explicit-filter baseline answers exactly like the real server, so the
//! two are compared on equal work.

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
