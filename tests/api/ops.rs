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
        // extract/ holds helpers, no routes.
        if file.is_dir() || matches!(name.as_str(), "ops.rs" | "compare.rs") {
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
