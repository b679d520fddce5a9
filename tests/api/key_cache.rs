//! The verified-key cache is keyed by the key as presented: only that exact key hits it,
//! and a hit gives the same caller as a lookup.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn only_the_exact_cached_key_is_accepted() {
    let app = spawn_app().await;
    let a = app.tenant("a").await;
    // Cached now (the default TTL is 5 s).
    app.get("/v1/projects", &a.key).await.ok(200);
    app.get("/v1/projects", &a.key).await.ok(200);
    let mut last_changed = a.key.clone();
    let last = last_changed.pop().unwrap();
    last_changed.push(if last == 'a' { 'b' } else { 'a' });
    let mut shorter = a.key.clone();
    shorter.pop();
    for near in [
        last_changed,
        shorter,
        format!("{}a", a.key),
        a.key.to_uppercase(),
    ] {
        app.get("/v1/projects", &near).await.problem(401);
    }
    app.get("/v1/projects", &a.key).await.ok(200);
    app.stop().await;
}

#[tokio::test]
async fn a_cached_key_writes_the_same_actor_as_a_looked_up_one() {
    let app = spawn_app().await;
    let a = app.tenant("a").await;
    let key = app.key(&a.key, "member").await;
    // The first request looks the key up, the second finds it cached.
    for name in ["first", "second"] {
        app.post("/v1/projects", &key, json!({ "name": name }))
            .await
            .ok(201);
    }
    let keys = app.get("/v1/api-keys?limit=200", &a.key).await;
    let kid = keys.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "member key")
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let audit = app.get("/v1/audit-log?limit=200", &a.key).await;
    let actors: Vec<&str> = audit.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["action"] == "create" && r["resource_type"] == "project")
        .map(|r| r["actor"].as_str().unwrap())
        .collect();
    let want = format!("api_key:{kid}");
    assert_eq!(actors, [want.as_str(), want.as_str()], "{}", audit.body);
    app.stop().await;
}
