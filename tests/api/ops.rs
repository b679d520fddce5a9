//! Operational endpoints (health, readiness, metrics) and the OpenAPI document covering every route.

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
