//! Every 201 carries `Location`, the URL of what it made, as the document says.

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_created_resource_is_at_its_location() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let p = app
        .post("/v1/projects", &t.key, json!({ "name": "p" }))
        .await;
    let id = p.ok(201)["id"].as_str().unwrap().to_string();
    let loc = p.headers["location"].to_str().unwrap().to_string();
    assert_eq!(loc, format!("/v1/projects/{id}"));
    assert_eq!(app.get(&loc, &t.key).await.ok(200)["id"], id.as_str());
    let k = app
        .post(
            "/v1/api-keys",
            &t.key,
            json!({ "name": "k", "role": "viewer" }),
        )
        .await;
    let kid = k.ok(201)["id"].as_str().unwrap().to_string();
    assert_eq!(
        k.headers["location"],
        format!("/v1/api-keys/{kid}").as_str()
    );
    // The admin API's creates: the tenant, and a key it issues (read through /v1).
    let c = app
        .post("/admin/v1/tenants", ADMIN_TOKEN, json!({ "name": "beta" }))
        .await;
    let tid = c.ok(201)["id"].as_str().unwrap().to_string();
    let loc = c.headers["location"].to_str().unwrap().to_string();
    assert_eq!(loc, format!("/admin/v1/tenants/{tid}"));
    app.get(&loc, ADMIN_TOKEN).await.ok(200);
    let i = app
        .post(
            &format!("/admin/v1/tenants/{tid}/api-keys"),
            ADMIN_TOKEN,
            json!({ "name": "k", "role": "viewer" }),
        )
        .await;
    let iid = i.ok(201)["id"].as_str().unwrap().to_string();
    let key = i.body["api_key"].as_str().unwrap().to_string();
    let loc = i.headers["location"].to_str().unwrap().to_string();
    assert_eq!(loc, format!("/v1/api-keys/{iid}"));
    // A viewer may not read keys; the tenant's owner key may.
    app.get(&loc, &key).await.problem(403);
    // Errors get no Location.
    let bad = app
        .post("/v1/projects", &t.key, json!({ "name": "" }))
        .await;
    bad.problem(422);
    assert!(bad.headers.get("location").is_none());
    app.stop().await;
}
