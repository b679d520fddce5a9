//! The cross-tenant admin API (reports, provisioning) through its own role.

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
