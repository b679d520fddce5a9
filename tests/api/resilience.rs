//! The server under database trouble: outages answer 503 and recover.

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
