//! What the OpenAPI document promises about bodies and cursors, held by the server (the
//! behaviour the schemathesis run depends on, checked without it).

use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn bodies_and_cursors_are_what_the_document_says() {
    let app = spawn_app().await;
    let t = app.tenant("exact").await;
    let p = app
        .post("/v1/projects", &t.key, json!({ "name": "p" }))
        .await;
    let pid = p.ok(201)["id"].as_str().unwrap().to_string();
    // A PATCH field that cannot be cleared is not nullable: `null` is a 422, and nothing
    // changes; a clearable one (`description`) takes `null`.
    app.patch(
        &format!("/v1/projects/{pid}"),
        &t.key,
        json!({ "name": null }),
    )
    .await
    .problem(422);
    let got = app.get(&format!("/v1/projects/{pid}"), &t.key).await;
    assert_eq!(got.ok(200)["name"], "p");
    let cleared = app
        .patch(
            &format!("/v1/projects/{pid}"),
            &t.key,
            json!({ "description": null }),
        )
        .await;
    assert!(cleared.ok(200)["description"].is_null());
    // An integral float is an integer; a fraction is not; the amount has its maximum.
    let inv = |n: &str, amount: serde_json::Value| json!({ "number": n, "customer_name": "c", "amount_minor": amount, "currency": "EUR" });
    let made = app
        .post("/v1/invoices", &t.key, inv("1", json!(66060676.0)))
        .await;
    assert_eq!(made.ok(201)["amount_minor"], 66060676);
    app.post("/v1/invoices", &t.key, inv("2", json!(1.5)))
        .await
        .problem(422);
    app.post(
        "/v1/invoices",
        &t.key,
        inv("3", json!(9007199254740992_i64)),
    )
    .await
    .problem(422);
    app.post(
        "/v1/invoices",
        &t.key,
        inv("4", json!(9007199254740991_i64)),
    )
    .await
    .ok(201);
    // Every string the cursor pattern matches pages; a next_cursor matches it.
    for _ in 0..2 {
        app.post("/v1/projects", &t.key, json!({ "name": "q" }))
            .await
            .ok(201);
    }
    let page = app.get("/v1/projects?limit=1", &t.key).await;
    let next = page.ok(200)["next_cursor"].as_str().unwrap().to_string();
    let doc: serde_json::Value =
        serde_json::from_str(tenantguard::http::openapi::document_json()).unwrap();
    let pattern = doc["paths"]["/v1/projects"]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "cursor"))
        .map(|p| p["schema"]["pattern"].as_str().unwrap().to_string())
        .expect("the cursor is documented with its pattern");
    assert!(
        regex::Regex::new(&pattern).unwrap().is_match(&next),
        "{next}"
    );
    for c in [
        next.as_str(),
        "0.00000000000000000000000000000000",
        "9999999999999999.ffffffffffffffffffffffffffffffff",
    ] {
        app.get(&format!("/v1/projects?cursor={c}"), &t.key)
            .await
            .ok(200);
    }
    app.get("/v1/projects?cursor=", &t.key).await.problem(400);
    app.stop().await;
}
