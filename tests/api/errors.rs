//! Honest errors on the wire (issue #9 item 4): constraint violations are mapped by
//! SQLSTATE and the error's fields, the direction of a foreign-key violation by what the
//! statement wrote, never by the message's wording; field-less errors (as a Citus worker's
//! reach the client) go through the documented fallback that reads the quoted names; a
//! bug of ours is a 500, not a 503.

use crate::helpers::*;
use serde_json::json;
use tenantguard::http::error::ApiError;

/// A locale the cluster can use for `lc_messages` whose messages are not English, if one
/// is installed (and the server has translations): `(locale, a translated message)`.
async fn other_language(db: &tokio_postgres::Client) -> Option<(String, String)> {
    for locale in [
        "de_DE.UTF-8",
        "de_DE.utf8",
        "fr_FR.UTF-8",
        "fr_FR.utf8",
        "es_ES.UTF-8",
        "es_ES.utf8",
    ] {
        if db
            .batch_execute(&format!("SET lc_messages = '{locale}'"))
            .await
            .is_err()
        {
            continue;
        }
        let err = db.batch_execute("SELECT 1/0").await.unwrap_err();
        let message = err.as_db_error().unwrap().message().to_string();
        db.batch_execute("RESET lc_messages").await.unwrap();
        if message != "division by zero" {
            return Some((locale.to_string(), message));
        }
    }
    None
}

/// The whole mapping with the server's messages in another language: 422 for a missing
/// referenced row, 409 for a row that is still referenced (the case the old
/// English-text check got wrong), 409 for a duplicate. Runs in English, with a printed
/// note, where the cluster has no other locale.
#[tokio::test]
async fn constraint_errors_do_not_depend_on_lc_messages() {
    let app = spawn_app().await;
    let t = app.tenant("lc").await;
    let su = app.db().superuser().await;
    // A key that refuses instead of cascading, so a delete can be "still referenced".
    su.batch_execute(
        "ALTER TABLE tasks DROP CONSTRAINT tasks_project_fkey, \
         ADD CONSTRAINT tasks_project_fkey FOREIGN KEY (tenant_id, project_id) \
             REFERENCES projects (tenant_id, id)",
    )
    .await
    .unwrap();
    let served = match other_language(&su).await {
        Some((locale, sample)) => {
            eprintln!("lc_messages = {locale} (e.g. {sample:?})");
            su.batch_execute(&format!(
                "ALTER DATABASE \"{}\" SET lc_messages = '{locale}'",
                app.db().name()
            ))
            .await
            .unwrap();
            // New sessions of the database speak it: prove it, then serve from a fresh pool.
            let fresh = app.db().superuser().await;
            let e = fresh.batch_execute("SELECT 1/0").await.unwrap_err();
            assert_ne!(e.as_db_error().unwrap().message(), "division by zero");
            spawn_replica(&app, |_| {}).await
        }
        None => {
            eprintln!(
                "no non-English locale installed for lc_messages (e.g. `localedef -i de_DE -f UTF-8 de_DE.UTF-8`): checking in English only"
            );
            spawn_replica(&app, |_| {}).await
        }
    };
    let project = served
        .post("/v1/projects", &t.key, json!({ "name": "p" }))
        .await;
    let project_id = project.ok(201)["id"].as_str().unwrap().to_string();
    served
        .post(
            "/v1/tasks",
            &t.key,
            json!({ "project_id": project_id, "title": "t" }),
        )
        .await
        .ok(201);

    let missing = served
        .post(
            "/v1/tasks",
            &t.key,
            json!({ "project_id": uuid::Uuid::now_v7(), "title": "t" }),
        )
        .await;
    missing.problem(422);
    assert_eq!(
        missing.body["errors"][0]["field"], "project_id",
        "{}",
        missing.body
    );

    let referenced = served
        .delete(&format!("/v1/projects/{project_id}"), &t.key)
        .await;
    referenced.problem(409);
    assert_eq!(
        referenced.body["detail"], "the resource is still referenced",
        "{}",
        referenced.body
    );
    served
        .get(&format!("/v1/projects/{project_id}"), &t.key)
        .await
        .ok(200);

    let invoice =
        json!({ "number": "N-1", "customer_name": "c", "amount_minor": 1, "currency": "EUR" });
    served
        .post("/v1/invoices", &t.key, invoice.clone())
        .await
        .ok(201);
    let dup = served.post("/v1/invoices", &t.key, invoice).await;
    dup.problem(409);
    assert!(
        dup.body["detail"].as_str().unwrap().contains("number"),
        "{}",
        dup.body
    );
    served.stop().await;
    app.stop().await;
}

/// Errors that carry no table, constraint or column field, with shard-suffixed names in
/// a German message, as a Citus coordinator relays a worker's: raised for real by the
/// server (a trigger's `RAISE … USING ERRCODE`, which sets none of those fields), and
/// mapped through the fallback that reads the quoted names.
#[tokio::test]
async fn field_less_errors_are_mapped_from_their_quoted_names() {
    let app = spawn_app().await;
    let t = app.tenant("citusish").await;
    let project = app
        .post("/v1/projects", &t.key, json!({ "name": "p" }))
        .await;
    let project_id = project.ok(201)["id"].as_str().unwrap().to_string();
    let su = app.db().superuser().await;
    su.batch_execute(
        "CREATE FUNCTION public.fake_worker_error() RETURNS trigger LANGUAGE plpgsql AS $$ \
         BEGIN \
           IF TG_TABLE_NAME = 'tasks' THEN \
             RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = \
               'Einfügen oder Aktualisieren in Tabelle »tasks_102008« verletzt Fremdschlüssel-Constraint »tasks_project_fkey_102290«'; \
           ELSIF TG_TABLE_NAME = 'projects' THEN \
             RAISE EXCEPTION USING ERRCODE = 'foreign_key_violation', MESSAGE = \
               'Aktualisieren oder Löschen in Tabelle »projects_102009« verletzt Fremdschlüssel-Constraint »tasks_project_fkey_102290« von Tabelle »tasks_102008«'; \
           ELSIF TG_TABLE_NAME = 'invoices' THEN \
             RAISE EXCEPTION USING ERRCODE = 'unique_violation', MESSAGE = \
               'doppelter Schlüsselwert verletzt Unique-Constraint »invoices_number_key_102100«'; \
           ELSE \
             RAISE EXCEPTION USING ERRCODE = 'not_null_violation', MESSAGE = \
               'NULL-Wert in Spalte »name« von Relation »team_members_102001« verletzt Not-Null-Constraint'; \
           END IF; \
         END $$; \
         CREATE TRIGGER fake BEFORE INSERT ON tasks FOR EACH ROW EXECUTE FUNCTION public.fake_worker_error(); \
         CREATE TRIGGER fake BEFORE DELETE ON projects FOR EACH ROW EXECUTE FUNCTION public.fake_worker_error(); \
         CREATE TRIGGER fake BEFORE INSERT ON invoices FOR EACH ROW EXECUTE FUNCTION public.fake_worker_error(); \
         CREATE TRIGGER fake BEFORE INSERT ON team_members FOR EACH ROW EXECUTE FUNCTION public.fake_worker_error();",
    )
    .await
    .unwrap();

    let task = app
        .post(
            "/v1/tasks",
            &t.key,
            json!({ "project_id": project_id, "title": "t" }),
        )
        .await;
    task.problem(422);
    assert_eq!(
        task.body["errors"][0]["field"], "project_id",
        "{}",
        task.body
    );

    let delete = app
        .delete(&format!("/v1/projects/{project_id}"), &t.key)
        .await;
    delete.problem(409);
    assert_eq!(delete.body["detail"], "the resource is still referenced");

    let invoice = app
        .post(
            "/v1/invoices",
            &t.key,
            json!({ "number": "N-1", "customer_name": "c", "amount_minor": 1, "currency": "EUR" }),
        )
        .await;
    invoice.problem(409);
    assert_eq!(
        invoice.body["detail"], "a resource with this number already exists",
        "{}",
        invoice.body
    );

    let member = app
        .post(
            "/v1/members",
            &t.key,
            json!({ "email": "m@example.com", "role": "viewer" }),
        )
        .await;
    member.problem(422);
    assert_eq!(member.body["errors"][0]["field"], "name", "{}", member.body);
    app.stop().await;
}

/// An error of ours with no SQLSTATE (a wrong parameter count, a value of the wrong
/// type: the client library refuses them before anything is sent) is a 500, logged; only
/// a pool that cannot deliver a connection, a closed connection or failed I/O is 503.
#[tokio::test]
async fn a_programming_error_is_a_500_not_a_503() {
    let db = tenantguard::testing::TestDb::new().await;
    let pool = db.app_pool(2).await;
    let tenant = tenantguard::TenantId::from_uuid(uuid::Uuid::now_v7());
    let mut tx = pool.begin(tenant).await.unwrap();
    let wrong_count = tx.query("SELECT $1::int", &[]).await.unwrap_err();
    assert!(wrong_count.code().is_none(), "{wrong_count}");
    assert_eq!(ApiError::from(wrong_count).status().as_u16(), 500);
    let mut tx = pool.begin(tenant).await.unwrap();
    let wrong_type = tx.query("SELECT $1::int", &[&"text"]).await.unwrap_err();
    assert!(wrong_type.code().is_none(), "{wrong_type}");
    assert_eq!(ApiError::from(wrong_type).status().as_u16(), 500);
    // The pool's own outage stays a 503.
    let gone = tenantguard::pool::PoolError::from(deadpool_postgres::PoolError::Timeout(
        deadpool_postgres::TimeoutType::Wait,
    ));
    assert_eq!(ApiError::from(gone).status().as_u16(), 503);
}
