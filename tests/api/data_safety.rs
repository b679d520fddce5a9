//! Owner keys follow the owner rule, the last owner key stays, the admin API can issue a
//! key for an existing tenant; deletes audit what went with them; emails are one form.

use crate::helpers::*;
use serde_json::json;

fn owner_key_id(app_log: &serde_json::Value) -> String {
    app_log["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "owner" && k["revoked_at"].is_null())
        .expect("an active owner key")["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn an_admin_key_cannot_revoke_an_owner_key_and_the_last_one_stays() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let admin = app.key(&t.key, "admin").await;
    let keys = app.get("/v1/api-keys", &t.key).await;
    let first_owner = owner_key_id(keys.ok(200));
    // The admin-role key may not revoke (nor create) an owner key.
    app.delete(&format!("/v1/api-keys/{first_owner}"), &admin)
        .await
        .problem(403);
    app.post(
        "/v1/api-keys",
        &admin,
        json!({ "name": "x", "role": "owner" }),
    )
    .await
    .problem(403);
    // Not even the owner can revoke the last owner key: 409, and it still works.
    app.delete(&format!("/v1/api-keys/{first_owner}"), &t.key)
        .await
        .problem(409);
    app.get("/v1/projects", &t.key).await.ok(200);
    // With a second owner key, the first one can go; then the second is the last.
    let second = app
        .post(
            "/v1/api-keys",
            &t.key,
            json!({ "name": "second owner", "role": "owner" }),
        )
        .await;
    let second_key = second.ok(201)["api_key"].as_str().unwrap().to_string();
    let second_id = second.body["id"].as_str().unwrap().to_string();
    app.delete(&format!("/v1/api-keys/{first_owner}"), &second_key)
        .await
        .ok(204);
    app.get("/v1/projects", &t.key).await.problem(401);
    app.delete(&format!("/v1/api-keys/{second_id}"), &second_key)
        .await
        .problem(409);
    // Admins still revoke non-owner keys.
    let viewer = app
        .post(
            "/v1/api-keys",
            &admin,
            json!({ "name": "v", "role": "viewer" }),
        )
        .await;
    let viewer_id = viewer.ok(201)["id"].as_str().unwrap().to_string();
    app.delete(&format!("/v1/api-keys/{viewer_id}"), &admin)
        .await
        .ok(204);
    app.stop().await;
}

#[tokio::test]
async fn two_owners_revoking_each_others_key_at_once_leave_one() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let second = app
        .post(
            "/v1/api-keys",
            &t.key,
            json!({ "name": "o2", "role": "owner" }),
        )
        .await;
    let second_key = second.ok(201)["api_key"].as_str().unwrap().to_string();
    let second_id = second.body["id"].as_str().unwrap().to_string();
    let keys = app.get("/v1/api-keys", &t.key).await;
    let first_id = keys.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["role"] == "owner" && k["id"] != second_id.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (pa, pb) = (
        format!("/v1/api-keys/{second_id}"),
        format!("/v1/api-keys/{first_id}"),
    );
    let (a, b) = tokio::join!(app.delete(&pa, &t.key), app.delete(&pb, &second_key));
    let mut statuses = [a.status, b.status];
    statuses.sort_unstable();
    // One wins; the other is refused (409: last owner key, or 401: its own key is gone).
    assert_eq!(statuses[0], 204, "{statuses:?}");
    assert!(matches!(statuses[1], 401 | 409), "{statuses:?}");
    let su = app.db().superuser().await;
    let active: i64 = su
        .query_one(
            "SELECT count(*) FROM api_keys WHERE role = 'owner' AND revoked_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(active, 1);
    app.stop().await;
}

#[tokio::test]
async fn the_admin_api_issues_a_working_key_for_an_existing_tenant() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let other = app.tenant("other").await;
    let r = app
        .post(
            &format!("/admin/v1/tenants/{}/api-keys", t.id),
            ADMIN_TOKEN,
            json!({ "name": "recovery", "role": "owner" }),
        )
        .await;
    let b = r.ok(201).clone();
    let key = b["api_key"].as_str().unwrap().to_string();
    assert!(key.starts_with(&format!("tgk_{}", t.id.replace('-', ""))));
    assert_eq!(b["role"], "owner");
    assert_eq!(b["name"], "recovery");
    // It works, as an owner, in that tenant only.
    app.post(
        "/v1/api-keys",
        &key,
        json!({ "name": "made by recovery", "role": "owner" }),
    )
    .await
    .ok(201);
    let projects = app.get("/v1/projects", &key).await;
    assert_eq!(projects.ok(200)["items"], json!([]));
    app.post("/v1/projects", &other.key, json!({ "name": "other's" }))
        .await
        .ok(201);
    assert_eq!(
        app.get("/v1/projects", &key).await.ok(200)["items"],
        json!([])
    );
    // Audited in the tenant's log, actor admin.
    let log = app
        .get("/v1/audit-log?resource_type=api_key&actor=admin", &key)
        .await;
    let items = log.ok(200)["items"].as_array().unwrap().clone();
    assert_eq!(items.len(), 1, "{items:?}");
    assert_eq!(items[0]["action"], "issue");
    assert_eq!(items[0]["resource_id"], b["id"]);
    assert_eq!(items[0]["details"]["role"], "owner");
    // A missing tenant is a 404, a bad role 422, a tenant credential 401.
    app.post(
        &format!("/admin/v1/tenants/{}/api-keys", uuid::Uuid::now_v7()),
        ADMIN_TOKEN,
        json!({ "name": "x", "role": "owner" }),
    )
    .await
    .problem(404);
    app.post(
        &format!("/admin/v1/tenants/{}/api-keys", t.id),
        ADMIN_TOKEN,
        json!({ "name": "x", "role": "superuser" }),
    )
    .await
    .problem(422);
    app.post(
        &format!("/admin/v1/tenants/{}/api-keys", t.id),
        &t.key,
        json!({ "name": "x", "role": "owner" }),
    )
    .await
    .problem(401);
    // The admin role still writes nothing itself: the key came through the definer function.
    let su = app.db().superuser().await;
    let writes: i64 = su
        .query_one(
            "SELECT count(*) FROM information_schema.role_table_grants \
             WHERE grantee = 'tenantguard_admin' AND privilege_type <> 'SELECT'",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(writes, 0);
    app.stop().await;
}

#[tokio::test]
async fn a_cascading_delete_audits_what_went_with_it() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let ids = populate(&app, &t.key, "acme").await;
    let id = |p: &str| ids.iter().find(|(x, _)| *x == p).unwrap().1.clone();
    let (project, task, doc, comment, member) = (
        id("/v1/projects"),
        id("/v1/tasks"),
        id("/v1/documents"),
        id("/v1/comments"),
        id("/v1/members"),
    );
    // A second comment, on the document.
    let c2 = app
        .post(
            "/v1/comments",
            &t.key,
            json!({ "document_id": doc, "body": "on doc" }),
        )
        .await;
    let comment2 = c2.ok(201)["id"].as_str().unwrap().to_string();
    // A second task, assigned to the member, in another project.
    let p2 = app
        .post("/v1/projects", &t.key, json!({ "name": "p2" }))
        .await;
    let p2 = p2.ok(201)["id"].as_str().unwrap().to_string();
    let t2 = app
        .post(
            "/v1/tasks",
            &t.key,
            json!({ "project_id": p2, "title": "t2", "assignee_id": member }),
        )
        .await;
    let t2 = t2.ok(201)["id"].as_str().unwrap().to_string();

    app.delete(&format!("/v1/projects/{project}"), &t.key)
        .await
        .ok(204);
    let log = app
        .get(
            &format!("/v1/audit-log?resource_type=project&resource_id={project}"),
            &t.key,
        )
        .await;
    let del = log.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "delete")
        .expect("the delete is audited")
        .clone();
    let cascade = &del["details"]["cascade"];
    assert_eq!(cascade["tasks"]["count"], 1, "{cascade}");
    assert_eq!(cascade["tasks"]["ids"], json!([task]));
    assert_eq!(cascade["documents"]["count"], 1);
    assert_eq!(cascade["documents"]["ids"], json!([doc]));
    assert_eq!(cascade["comments"]["count"], 2);
    let mut want = vec![comment.clone(), comment2.clone()];
    want.sort();
    assert_eq!(cascade["comments"]["ids"], json!(want));
    assert_eq!(cascade["comments"]["ids_complete"], true);
    // What the log says is what went.
    for (path, id) in [
        ("tasks", &task),
        ("documents", &doc),
        ("comments", &comment),
    ] {
        app.get(&format!("/v1/{path}/{id}"), &t.key)
            .await
            .problem(404);
    }
    // Deleting a member records the tasks it unassigned.
    app.delete(&format!("/v1/members/{member}"), &t.key)
        .await
        .ok(204);
    let log = app
        .get(
            &format!("/v1/audit-log?resource_type=member&resource_id={member}"),
            &t.key,
        )
        .await;
    let del = log.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "delete")
        .unwrap()
        .clone();
    assert_eq!(
        del["details"]["cascade"]["tasks_unassigned"]["ids"],
        json!([t2])
    );
    // A task delete lists its comments; with none, an empty list.
    let t3 = app
        .post(
            "/v1/tasks",
            &t.key,
            json!({ "project_id": p2, "title": "t3" }),
        )
        .await;
    let t3 = t3.ok(201)["id"].as_str().unwrap().to_string();
    app.delete(&format!("/v1/tasks/{t3}"), &t.key).await.ok(204);
    let log = app
        .get(
            &format!("/v1/audit-log?resource_type=task&resource_id={t3}"),
            &t.key,
        )
        .await;
    let del = log.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "delete")
        .unwrap()
        .clone();
    assert_eq!(
        del["details"]["cascade"]["comments"],
        json!({ "count": 0, "ids": [], "ids_complete": true })
    );
    // A missing id is still a 404 and writes no audit row.
    app.delete(&format!("/v1/projects/{project}"), &t.key)
        .await
        .problem(404);
    app.stop().await;
}

#[tokio::test]
async fn ids_in_a_cascade_audit_are_bounded_but_the_count_is_not() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    let p = app
        .post("/v1/projects", &t.key, json!({ "name": "big" }))
        .await;
    let pid = p.ok(201)["id"].as_str().unwrap().to_string();
    let su = app.db().superuser().await;
    su.execute(
        "INSERT INTO tasks (tenant_id, project_id, title) \
         SELECT $1::text::uuid, $2::text::uuid, 't' || g FROM generate_series(1, 150) g",
        &[&t.id, &pid],
    )
    .await
    .unwrap();
    app.delete(&format!("/v1/projects/{pid}"), &t.key)
        .await
        .ok(204);
    let log = app
        .get(
            &format!("/v1/audit-log?resource_type=project&resource_id={pid}"),
            &t.key,
        )
        .await;
    let del = log.ok(200)["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "delete")
        .unwrap()
        .clone();
    let tasks = &del["details"]["cascade"]["tasks"];
    assert_eq!(tasks["count"], 150);
    assert_eq!(tasks["ids"].as_array().unwrap().len(), 100);
    assert_eq!(tasks["ids_complete"], false);
    app.stop().await;
}

#[tokio::test]
async fn nfc_and_nfd_spellings_of_an_email_are_one_member() {
    let app = spawn_app().await;
    let t = app.tenant("acme").await;
    // "josé@example.com": precomposed é (NFC) and e + combining acute (NFD).
    let nfc = "jos\u{e9}@example.com";
    let nfd = "jose\u{301}@example.com";
    let r = app
        .post(
            "/v1/members",
            &t.key,
            json!({ "email": nfd, "role": "member" }),
        )
        .await;
    // Stored in NFC, lower case.
    assert_eq!(r.ok(201)["email"], nfc);
    app.post(
        "/v1/members",
        &t.key,
        json!({ "email": nfc, "role": "member" }),
    )
    .await
    .problem(409);
    app.post(
        "/v1/members",
        &t.key,
        json!({ "email": "JOS\u{c9}@Example.COM", "role": "member" }),
    )
    .await
    .problem(409);
    app.post(
        "/v1/members",
        &t.key,
        json!({ "email": "JOSE\u{301}@EXAMPLE.COM", "role": "member" }),
    )
    .await
    .problem(409);
    // The database refuses a non-NFC email whoever writes it.
    let su = app.db().superuser().await;
    let err = su
        .execute(
            "INSERT INTO team_members (tenant_id, email, role) VALUES ($1::text::uuid, $2, 'member')",
            &[&t.id, &"ann\u{301}@example.com"],
        )
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(&tokio_postgres::error::SqlState::CHECK_VIOLATION),
        "{err}"
    );
    app.stop().await;
}

#[tokio::test]
async fn the_email_migration_refuses_to_merge_nfc_nfd_duplicates() {
    let db = tenantguard::testing::TestDb::new().await;
    let mut su = db.superuser().await;
    // Plant what an older version could store: the NFC and NFD spellings of one address,
    // and an NFD email without a twin; then pretend the migration has not run yet.
    su.batch_execute(
        "ALTER TABLE team_members DROP CONSTRAINT team_members_email_nfc; \
         INSERT INTO tenants (id, name) VALUES ('018f3c2e-5b7a-7c1d-9e2f-3a4b5c6d7e8f', 't'); \
         DELETE FROM tenantguard_schema_history WHERE version = 3;",
    )
    .await
    .unwrap();
    for email in [
        "jos\u{e9}@example.com",
        "jose\u{301}@example.com",
        "zoe\u{308}@example.com",
    ] {
        su.execute(
            "INSERT INTO team_members (tenant_id, email, role) \
             VALUES ('018f3c2e-5b7a-7c1d-9e2f-3a4b5c6d7e8f', $1, 'member')",
            &[&email],
        )
        .await
        .unwrap();
    }
    let set = tenantguard::testing::policy();
    let err = tenantguard::schema::migrate(&mut su, &set)
        .await
        .expect_err("duplicates must stop the migration");
    let text = tenantguard::error_chain(&err);
    assert!(text.contains("refusing to merge"), "{text}");
    assert!(text.contains("jos\u{e9}@example.com"), "{text}");
    assert!(text.contains("jose\u{301}@example.com"), "{text}");
    assert!(
        !text.contains("zoe"),
        "only the duplicates are listed: {text}"
    );
    // Nothing was merged or changed.
    let emails: Vec<String> = su
        .query("SELECT email FROM team_members ORDER BY email", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(emails.len(), 3);
    assert!(emails.contains(&"zoe\u{308}@example.com".to_string()));
    // Once resolved by hand, it runs: the lone NFD email is normalised, the check is on.
    su.batch_execute("DELETE FROM team_members WHERE email = 'jose\u{301}@example.com'")
        .await
        .unwrap();
    let report = tenantguard::schema::migrate(&mut su, &set).await.unwrap();
    assert_eq!(report.migrations.len(), 1, "{:?}", report.migrations);
    let emails: Vec<String> = su
        .query("SELECT email FROM team_members ORDER BY email", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        emails,
        vec![
            "jos\u{e9}@example.com".to_string(),
            "zo\u{eb}@example.com".to_string()
        ]
    );
    assert!(tenantguard::schema::check(&mut su, &set)
        .await
        .unwrap()
        .is_empty());
}
