//! The audit log: every mutation writes an audit row, a failed one none.

use crate::helpers::*;
use serde_json::json;

#[tokio::test]
async fn every_mutation_writes_an_audit_row_and_failed_ones_none() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let ids = populate(&app, &t.key, "acme").await;
    let (pid, kid) = (&ids[0].1, &ids[7].1);
    app.patch(
        &format!("/v1/projects/{pid}"),
        &t.key,
        json!({ "name": "renamed" }),
    )
    .await
    .ok(200);
    app.delete(&format!("/v1/api-keys/{kid}"), &t.key)
        .await
        .ok(204);
    app.delete(&format!("/v1/projects/{pid}"), &t.key)
        .await
        .ok(204);
    // A failing request rolls back, audit row included.
    app.post(
        "/v1/invoices",
        &t.key,
        json!({ "number": "acme-1", "customer_name": "c", "amount_minor": 1, "currency": "EUR" }),
    )
    .await
    .problem(409);
    let log = app.get("/v1/audit-log?limit=200", &t.key).await;
    let rows = log.ok(200)["items"].as_array().unwrap().clone();
    let owner_key_actor = rows.iter().find(|r| r["action"] == "create").unwrap()["actor"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(owner_key_actor.starts_with("api_key:"));
    for (path, id) in &ids {
        let kind = match *path {
            "/v1/projects" => "project",
            "/v1/members" => "member",
            "/v1/tasks" => "task",
            "/v1/documents" => "document",
            "/v1/comments" => "comment",
            "/v1/invoices" => "invoice",
            "/v1/webhooks" => "webhook",
            _ => "api_key",
        };
        assert!(
            rows.iter().any(|r| r["action"] == "create"
                && r["resource_type"] == kind
                && r["resource_id"] == id.as_str()),
            "create of {kind} audited"
        );
    }
    let upd = rows.iter().find(|r| r["action"] == "update").unwrap();
    assert_eq!(upd["resource_id"], pid.as_str());
    assert_eq!(upd["details"]["changed"], json!(["name"]));
    assert!(rows
        .iter()
        .any(|r| r["action"] == "delete" && r["resource_id"] == pid.as_str()));
    assert!(rows
        .iter()
        .any(|r| r["action"] == "revoke" && r["resource_id"] == kid.as_str()));
    assert!(rows
        .iter()
        .any(|r| r["action"] == "provision" && r["resource_type"] == "tenant"));
    let invoice_creates = rows
        .iter()
        .filter(|r| r["resource_type"] == "invoice")
        .count();
    assert_eq!(
        invoice_creates, 1,
        "the rolled-back invoice left no audit row"
    );
    // The audit log is read-only over HTTP.
    let any = rows[0]["id"].as_str().unwrap();
    app.delete(&format!("/v1/audit-log/{any}"), &t.key)
        .await
        .problem(405);
    app.patch(
        &format!("/v1/audit-log/{any}"),
        &t.key,
        json!({ "action": "x" }),
    )
    .await
    .problem(405);
    app.stop().await;
}
