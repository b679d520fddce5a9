//! The routing hint (`tenant_id = $n` in every builder statement, for Citus) on plain
//! PostgreSQL: it is not the boundary (a server with it off still isolates tenants, so
//! forgetting it costs latency, not isolation), and with it the reads stay index scans.

use serde_json::json;
use tenantguard::http::extract::Record;

use crate::helpers::*;

#[tokio::test]
async fn without_the_routing_hint_a_tenant_still_sees_and_writes_only_its_rows() {
    let app = spawn_app_with(|c| c.routing_hint = false).await;
    let a = app.tenant("a").await;
    let b = app.tenant("b").await;
    let bp = app
        .post("/v1/projects", &b.key, json!({ "name": "b's" }))
        .await;
    let bp = bp.ok(201)["id"].as_str().unwrap().to_string();
    let ap = app
        .post("/v1/projects", &a.key, json!({ "name": "a's" }))
        .await;
    let ap = ap.ok(201)["id"].as_str().unwrap().to_string();

    let list = app.get("/v1/projects", &a.key).await;
    let items = list.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{}", list.body);
    assert_eq!(items[0]["id"], ap.as_str());
    app.get(&format!("/v1/projects/{bp}"), &a.key)
        .await
        .problem(404);
    app.patch(
        &format!("/v1/projects/{bp}"),
        &a.key,
        json!({ "name": "x" }),
    )
    .await
    .problem(404);
    app.delete(&format!("/v1/projects/{bp}"), &a.key)
        .await
        .problem(404);
    app.patch(
        &format!("/v1/projects/{ap}"),
        &a.key,
        json!({ "name": "a2" }),
    )
    .await
    .ok(200);
    // B's project is as it was, and A's log has its own writes only (none for the 404s).
    let got = app.get(&format!("/v1/projects/{bp}"), &b.key).await;
    assert_eq!(got.ok(200)["name"], "b's");
    let log = app.get("/v1/audit-log", &a.key).await;
    let actions: Vec<String> = log.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["resource_type"] == "project")
        .map(|i| i["action"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(actions, ["update", "create"], "{}", log.body);
    app.delete(&format!("/v1/projects/{ap}"), &a.key).await;
    app.stop().await;
}

/// The hinted point read and list as the app role in a tenant's context, on a table with
/// many tenants: index scans on the `(tenant_id, …)` keys, never a sequential scan.
#[tokio::test]
async fn the_hinted_reads_stay_index_scans_on_plain_postgres() {
    let app = spawn_app().await;
    let t = app.tenant("t").await;
    app.post("/v1/projects", &t.key, json!({ "name": "own" }))
        .await
        .ok(201);
    let su = app.db().superuser().await;
    su.batch_execute(
        "INSERT INTO tenants (id, name) SELECT tenantguard.uuid_v7(), 'bulk ' || g FROM generate_series(1, 300) g;
         INSERT INTO projects (tenant_id, name, created_at)
           SELECT t.id, 'p' || g, now() - g * interval '1 minute'
           FROM tenants t, generate_series(1, 40) g WHERE t.name LIKE 'bulk %';
         ANALYZE",
    )
    .await
    .unwrap();
    let tenant: uuid::Uuid = t.id.parse().unwrap();
    let project: uuid::Uuid = su
        .query_one(
            "SELECT id FROM projects WHERE tenant_id = $1 LIMIT 1",
            &[&tenant],
        )
        .await
        .unwrap()
        .get(0);
    let table = <tenantguard::http::projects::Project as Record>::TABLE;
    // The list builder's text with no filter and no cursor (pagination.rs `ListQuery`).
    let list = format!(
        "SELECT {} FROM projects WHERE tenant_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2",
        table.columns
    );
    let mut c = app.db().superuser().await;
    let tx = c.transaction().await.unwrap();
    tx.batch_execute("SET LOCAL ROLE tenantguard_app")
        .await
        .unwrap();
    tx.execute("SELECT set_config('app.tenant_id', $1, true)", &[&t.id])
        .await
        .unwrap();
    let plan = |rows: Vec<tokio_postgres::Row>| {
        rows.iter()
            .map(|r| r.get::<_, String>(0))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let get = plan(
        tx.query(
            &format!("EXPLAIN {}", table.get_routed),
            &[&project, &tenant],
        )
        .await
        .unwrap(),
    );
    assert!(get.contains("Index") && !get.contains("Seq Scan"), "{get}");
    let listed = plan(
        tx.query(&format!("EXPLAIN {list}"), &[&tenant, &51i64])
            .await
            .unwrap(),
    );
    assert!(
        listed.contains("Index") && !listed.contains("Seq Scan"),
        "{listed}"
    );
    let rows = tx.query(list.as_str(), &[&tenant, &51i64]).await.unwrap();
    assert_eq!(rows.len(), 1, "only the tenant's own project");
    tx.rollback().await.unwrap();
    app.stop().await;
}
