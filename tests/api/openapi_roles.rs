//! The role matrix, driven by `/openapi.json`: every tenant operation the document lists
//! must be in the matrix below (so a tenth resource cannot go unchecked), its documented
//! `x-min-role` must be the matrix's, and the server must refuse exactly the roles below
//! it (403) and let the others past the role check. Admin operations refuse every tenant
//! credential (401).

use serde_json::{json, Value};

use crate::helpers::*;

const ROLES: [&str; 4] = ["viewer", "member", "admin", "owner"];

/// Who may call what: (operationId, least role).
const MATRIX: &[(&str, &str)] = &[
    ("projects_list", "viewer"),
    ("projects_get", "viewer"),
    ("projects_create", "member"),
    ("projects_update", "member"),
    ("projects_delete", "member"),
    ("tasks_list", "viewer"),
    ("tasks_get", "viewer"),
    ("tasks_create", "member"),
    ("tasks_update", "member"),
    ("tasks_delete", "member"),
    ("documents_list", "viewer"),
    ("documents_get", "viewer"),
    ("documents_create", "member"),
    ("documents_update", "member"),
    ("documents_delete", "member"),
    ("comments_list", "viewer"),
    ("comments_get", "viewer"),
    ("comments_create", "member"),
    ("comments_update", "member"),
    ("comments_delete", "member"),
    ("invoices_list", "viewer"),
    ("invoices_get", "viewer"),
    ("invoices_create", "admin"),
    ("invoices_update", "admin"),
    ("invoices_delete", "admin"),
    ("members_list", "viewer"),
    ("members_get", "viewer"),
    ("members_create", "admin"),
    ("members_update", "admin"),
    ("members_delete", "admin"),
    ("webhooks_list", "admin"),
    ("webhooks_get", "admin"),
    ("webhooks_create", "admin"),
    ("webhooks_update", "admin"),
    ("webhooks_delete", "admin"),
    ("api_keys_list", "admin"),
    ("api_keys_get", "admin"),
    ("api_keys_create", "admin"),
    ("api_keys_revoke", "admin"),
    ("audit_log_list", "admin"),
    ("audit_log_get", "admin"),
];

fn rank(r: &str) -> usize {
    ROLES.iter().position(|x| *x == r).expect("a role")
}

#[tokio::test]
async fn the_role_matrix_covers_every_documented_operation() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let mut keys = Vec::new();
    for r in ROLES {
        let key = if r == "owner" {
            t.key.clone()
        } else {
            app.key(&t.key, r).await
        };
        keys.push((r, key));
    }
    let doc = app.send("GET", "/openapi.json", None, None).await;
    let paths = doc.ok(200)["paths"].as_object().unwrap().clone();
    let any_id = uuid::Uuid::now_v7().to_string();
    let mut seen = Vec::new();
    for (path, item) in &paths {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str().unwrap().to_string();
            let concrete = path.replace("{id}", &any_id);
            // A body the role check comes before: an allowed role gets past it to a 4xx
            // about the body or the id, never a 403.
            let body = op.get("requestBody").map(|_| json!({}));
            if path.starts_with("/admin/") {
                for (role, key) in &keys {
                    let r = app
                        .send(&method.to_uppercase(), &concrete, Some(key), body.clone())
                        .await;
                    assert_eq!(r.status, 401, "{role} {method} {path}: {}", r.body);
                }
                continue;
            }
            let min = MATRIX
                .iter()
                .find(|(o, _)| *o == id)
                .unwrap_or_else(|| panic!("{id} ({method} {path}) is not in the role matrix"))
                .1;
            assert_eq!(op["x-min-role"], Value::from(min), "{id}: documented role");
            seen.push(id.clone());
            for (role, key) in &keys {
                let r = app
                    .send(&method.to_uppercase(), &concrete, Some(key), body.clone())
                    .await;
                if rank(role) < rank(min) {
                    r.problem(403);
                } else {
                    assert!(
                        r.status != 403 && r.status != 401 && r.status < 500,
                        "{role} {id}: {} {}",
                        r.status,
                        r.body
                    );
                }
            }
        }
    }
    seen.sort();
    let mut want: Vec<String> = MATRIX.iter().map(|(o, _)| o.to_string()).collect();
    want.sort();
    assert_eq!(
        seen, want,
        "the matrix lists exactly the documented tenant operations"
    );
    app.stop().await;
}
