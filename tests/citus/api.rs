//! The API server on Citus (issue #13 item 3), black-box through HTTP: the in-process
//! server on the run's distributed database, with the `SET LOCAL` carrier, per-test
//! tenants provisioned through the admin API.
//!
//! Router planning is proved on every statement the server runs, not on copies of its
//! SQL: the app pool's connections run with `citus.multi_task_query_log_level = error`,
//! so Citus itself refuses any tenant statement that would go to more than one shard (a
//! 500 for the request, which fails the test). The admin pool (cross-tenant reports,
//! BYPASSRLS) is left as it is: its reports fan out by design. `EXPLAIN`s as the app role
//! in a tenant's context show one task for the routed point read and for every part of the
//! audited insert, update and delete shapes.

use std::time::Duration;

use reqwest::Method;
use secrecy::SecretString;
use serde_json::{json, Value};
use tenantguard::http::extract::Record;
use tenantguard::http::{AppState, HttpConfig};
use tenantguard::pool::{AdminPool, ContextCarrier, PoolOptions, TenantPool};
use tenantguard::testing::Served;
use uuid::Uuid;

use crate::support::*;

const ADMIN_TOKEN: &str = "citus-admin-token-0123456789";

struct App {
    base: String,
    http: reqwest::Client,
    served: Served,
}

/// A server on the run's distributed database. `hint`: the routing hint; `strict`: app
/// connections refuse multi-shard statements.
async fn spawn(c: &Citus, hint: bool, strict: bool) -> App {
    let mut app_cfg = c.coordinator.clone();
    app_cfg.user("tenantguard_app");
    if strict {
        app_cfg.options("-c citus.multi_task_query_log_level=error");
    }
    let mut admin_cfg = c.coordinator.clone();
    admin_cfg.user("tenantguard_admin");
    let opts = PoolOptions {
        max_size: 4,
        context_carrier: ContextCarrier::SetLocal,
        ..PoolOptions::default()
    };
    let pool = TenantPool::connect(app_cfg, opts.clone())
        .await
        .unwrap_or_else(|e| panic!("app pool: {}", tenantguard::error_chain(&e)));
    let admin = AdminPool::connect(
        admin_cfg,
        PoolOptions {
            max_size: 2,
            ..opts
        },
    )
    .await
    .unwrap_or_else(|e| panic!("admin pool: {}", tenantguard::error_chain(&e)));
    let config = HttpConfig {
        admin_token: Some(SecretString::from(ADMIN_TOKEN.to_string())),
        last_used_flush: Duration::from_millis(200),
        routing_hint: hint,
        ..HttpConfig::default()
    };
    let state = AppState::new(pool, Some(admin), config).expect("state");
    let served = Served::start(state).await;
    App {
        base: served.base.clone(),
        http: reqwest::Client::new(),
        served,
    }
}

impl App {
    async fn send(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let text = res.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        assert_ne!(status, 500, "{method} {path}: 500 {body}");
        (status, body)
    }

    async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.send(Method::GET, path, token, None).await
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(Method::POST, path, token, Some(body)).await
    }

    async fn patch(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        self.send(Method::PATCH, path, token, Some(body)).await
    }

    async fn delete(&self, path: &str, token: &str) -> u16 {
        self.send(Method::DELETE, path, token, None).await.0
    }

    /// Provisions a tenant through the admin API: (tenant id, owner key).
    async fn tenant(&self, name: &str) -> (String, String) {
        let short = &Uuid::now_v7().simple().to_string()[20..];
        let (status, body) = self
            .post(
                "/admin/v1/tenants",
                ADMIN_TOKEN,
                json!({ "name": format!("{name} {short}"), "owner_email": format!("owner-{short}@example.com") }),
            )
            .await;
        assert_eq!(status, 201, "provisioning: {body}");
        (
            body["id"].as_str().expect("id").to_string(),
            body["api_key"].as_str().expect("key").to_string(),
        )
    }

    async fn stop(self) {
        let _ = self.served.stop().await;
    }
}

fn id(v: &Value) -> String {
    v["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id in {v}"))
        .to_string()
}

fn ids(v: &Value) -> Vec<String> {
    v["items"]
        .as_array()
        .unwrap_or_else(|| panic!("no items in {v}"))
        .iter()
        .map(id)
        .collect()
}

/// Every resource route, on one tenant, with another tenant's rows beside it; every
/// statement on one shard (strict connections).
#[tokio::test]
async fn every_route_works_on_citus_with_each_statement_on_one_shard() {
    let Some(c) = citus("every_route_works_on_citus_with_each_statement_on_one_shard") else {
        return;
    };
    let app = spawn(c, true, true).await;
    let (a_id, a) = app.tenant("a").await;
    let (_b_id, b) = app.tenant("b").await;

    // Create one of everything, in dependency order; B gets a project too.
    let (s, project) = app.post("/v1/projects", &a, json!({ "name": "p" })).await;
    assert_eq!(s, 201, "{project}");
    let p = id(&project);
    let (s, b_project) = app.post("/v1/projects", &b, json!({ "name": "bp" })).await;
    assert_eq!(s, 201, "{b_project}");
    let bp = id(&b_project);
    let (s, member) = app
        .post(
            "/v1/members",
            &a,
            json!({ "email": "m@example.com", "role": "member" }),
        )
        .await;
    assert_eq!(s, 201, "{member}");
    let m = id(&member);
    let (s, task) = app
        .post(
            "/v1/tasks",
            &a,
            json!({ "project_id": p, "title": "t", "assignee_id": m }),
        )
        .await;
    assert_eq!(s, 201, "{task}");
    let t = id(&task);
    let (s, doc) = app
        .post(
            "/v1/documents",
            &a,
            json!({ "project_id": p, "title": "d", "body": "b" }),
        )
        .await;
    assert_eq!(s, 201, "{doc}");
    let d = id(&doc);
    let (s, comment) = app
        .post(
            "/v1/comments",
            &a,
            json!({ "task_id": t, "author_id": m, "body": "c" }),
        )
        .await;
    assert_eq!(s, 201, "{comment}");
    let cm = id(&comment);
    let (s, invoice) = app
        .post(
            "/v1/invoices",
            &a,
            json!({ "number": "N-1", "customer_name": "c", "amount_minor": 1, "currency": "EUR", "issued_on": "2026-01-10" }),
        )
        .await;
    assert_eq!(s, 201, "{invoice}");
    let inv = id(&invoice);
    let (s, hook) = app
        .post(
            "/v1/webhooks",
            &a,
            json!({ "url": "https://example.com/h", "event_types": ["task.created"] }),
        )
        .await;
    assert_eq!(s, 201, "{hook}");
    let wh = id(&hook);
    let (s, key) = app
        .post("/v1/api-keys", &a, json!({ "name": "k", "role": "viewer" }))
        .await;
    assert_eq!(s, 201, "{key}");
    let k = id(&key);
    let viewer = key["api_key"].as_str().expect("api_key").to_string();

    // Get and list each; B sees none of A's rows and gets 404 for each of them.
    for (path, item) in [
        ("projects", &p),
        ("members", &m),
        ("tasks", &t),
        ("documents", &d),
        ("comments", &cm),
        ("invoices", &inv),
        ("webhooks", &wh),
        ("api-keys", &k),
    ] {
        let (s, got) = app.get(&format!("/v1/{path}/{item}"), &a).await;
        assert_eq!((s, id(&got)), (200, item.clone()), "{path}: {got}");
        let (s, list) = app.get(&format!("/v1/{path}"), &a).await;
        assert_eq!(s, 200, "{path}: {list}");
        assert!(ids(&list).contains(item), "{path}: {list}");
        let (s, other) = app.get(&format!("/v1/{path}/{item}"), &b).await;
        assert_eq!(s, 404, "{path} of A read by B: {other}");
        let (s, list) = app.get(&format!("/v1/{path}"), &b).await;
        assert_eq!(s, 200);
        assert!(
            !ids(&list).contains(item),
            "{path}: B lists A's row: {list}"
        );
    }
    // A key made through the API authenticates (its lookup is routed by its tenant).
    assert_eq!(app.get("/v1/projects", &viewer).await.0, 200);

    // Patch each patchable resource; B's patches and deletes of A's rows are 404s.
    for (path, item, body) in [
        ("projects", &p, json!({ "name": "p2" })),
        ("members", &m, json!({ "name": "Em" })),
        ("tasks", &t, json!({ "status": "done" })),
        ("documents", &d, json!({ "title": "d2" })),
        ("comments", &cm, json!({ "body": "c2" })),
        ("invoices", &inv, json!({ "customer_name": "c2" })),
        ("webhooks", &wh, json!({ "url": "https://example.com/h2" })),
    ] {
        let (s, got) = app
            .patch(&format!("/v1/{path}/{item}"), &a, body.clone())
            .await;
        assert_eq!(s, 200, "{path}: {got}");
        let (s, got) = app.patch(&format!("/v1/{path}/{item}"), &b, body).await;
        assert_eq!(s, 404, "{path} of A patched by B: {got}");
        assert_eq!(
            app.delete(&format!("/v1/{path}/{item}"), &b).await,
            404,
            "{path}"
        );
    }
    let (s, got) = app
        .patch(
            &format!("/v1/projects/{}", Uuid::now_v7()),
            &a,
            json!({ "name": "x" }),
        )
        .await;
    assert_eq!(s, 404, "{got}");

    // Constraint violations, from the workers' field-less, shard-suffixed errors: the
    // same problems as on plain PostgreSQL (tests/api/errors.rs).
    for missing in [Uuid::now_v7().to_string(), bp.clone()] {
        let (s, got) = app
            .post(
                "/v1/tasks",
                &a,
                json!({ "project_id": missing, "title": "t" }),
            )
            .await;
        assert_eq!(s, 422, "{got}");
        assert_eq!(got["errors"][0]["field"], "project_id", "{got}");
        assert_eq!(
            got["errors"][0]["message"],
            "refers to a resource that does not exist"
        );
    }
    let (s, got) = app
        .post(
            "/v1/members",
            &a,
            json!({ "email": "m@example.com", "role": "member" }),
        )
        .await;
    assert_eq!(s, 409, "{got}");
    assert_eq!(
        got["detail"], "a resource with this email already exists",
        "{got}"
    );
    let (s, got) = app
        .post(
            "/v1/invoices",
            &a,
            json!({ "number": "N-1", "customer_name": "c", "amount_minor": 1, "currency": "EUR" }),
        )
        .await;
    assert_eq!(s, 409, "{got}");
    assert!(
        got["detail"].as_str().unwrap_or("").contains("number"),
        "{got}"
    );
    // A due date before the stored issue date: only the table's CHECK knows.
    let (s, got) = app
        .patch(
            &format!("/v1/invoices/{inv}"),
            &a,
            json!({ "due_on": "2026-01-01" }),
        )
        .await;
    assert_eq!(s, 422, "{got}");
    assert_eq!(
        got["errors"][0]["message"], "violates a constraint",
        "{got}"
    );
    assert_eq!(got["errors"][0]["field"], "dates", "{got}");

    // Pagination: five projects (and the first), pages of two, newest first, no repeats.
    for i in 0..5 {
        let (s, _) = app
            .post("/v1/projects", &a, json!({ "name": format!("q{i}") }))
            .await;
        assert_eq!(s, 201);
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/projects?limit=2&cursor={c}"),
            None => "/v1/projects?limit=2".to_string(),
        };
        let (s, page) = app.get(&path, &a).await;
        assert_eq!(s, 200, "{page}");
        let got = ids(&page);
        assert!(got.len() <= 2);
        seen.extend(got);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 6, "{seen:?}");
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 6);
    assert!(!seen.contains(&bp));

    // Deletes: a comment; the member (its task is unassigned, its comment's author
    // cleared); the project with its task and document; the rest.
    assert_eq!(app.delete(&format!("/v1/comments/{cm}"), &a).await, 204);
    let (s, comment2) = app
        .post(
            "/v1/comments",
            &a,
            json!({ "task_id": t, "author_id": m, "body": "c" }),
        )
        .await;
    assert_eq!(s, 201, "{comment2}");
    assert_eq!(app.delete(&format!("/v1/members/{m}"), &a).await, 204);
    let (_, task_now) = app.get(&format!("/v1/tasks/{t}"), &a).await;
    assert_eq!(task_now["assignee_id"], Value::Null, "{task_now}");
    assert_eq!(app.delete(&format!("/v1/projects/{p}"), &a).await, 204);
    assert_eq!(app.get(&format!("/v1/tasks/{t}"), &a).await.0, 404);
    assert_eq!(app.get(&format!("/v1/documents/{d}"), &a).await.0, 404);
    assert_eq!(app.delete(&format!("/v1/projects/{p}"), &a).await, 404);
    assert_eq!(app.delete(&format!("/v1/invoices/{inv}"), &a).await, 204);
    assert_eq!(app.delete(&format!("/v1/webhooks/{wh}"), &a).await, 204);
    assert_eq!(app.delete(&format!("/v1/api-keys/{k}"), &a).await, 204);
    assert_eq!(app.delete(&format!("/v1/api-keys/{k}"), &a).await, 404);
    // B's project is untouched.
    assert_eq!(app.get(&format!("/v1/projects/{bp}"), &b).await.0, 200);

    // The audit log: one row per write, none for the refused or unmatched ones.
    let (s, log) = app.get("/v1/audit-log?limit=200", &a).await;
    assert_eq!(s, 200, "{log}");
    let items = log["items"].as_array().expect("items");
    let count = |action: &str, kind: &str| {
        items
            .iter()
            .filter(|i| i["action"] == action && i["resource_type"] == kind)
            .count()
    };
    assert_eq!(count("create", "project"), 6, "{log}");
    assert_eq!(count("update", "project"), 1, "{log}");
    assert_eq!(count("delete", "project"), 1, "{log}");
    assert_eq!(count("update", "invoice"), 1, "{log}");
    assert_eq!(count("create", "member"), 1, "{log}");
    assert_eq!(count("create", "comment"), 2, "{log}");
    let project_delete = items
        .iter()
        .find(|i| i["action"] == "delete" && i["resource_type"] == "project")
        .expect("project delete");
    assert_eq!(
        project_delete["details"]["cascade"]["tasks"]["ids"],
        json!([t]),
        "{project_delete}"
    );
    let (s, entry) = app
        .get(&format!("/v1/audit-log/{}", id(project_delete)), &a)
        .await;
    assert_eq!(s, 200, "{entry}");

    // Admin reports (BYPASSRLS, across shards).
    let (s, tenants) = app.get("/admin/v1/tenants?limit=200", ADMIN_TOKEN).await;
    assert_eq!(s, 200, "{tenants}");
    let (s, one) = app
        .get(&format!("/admin/v1/tenants/{a_id}"), ADMIN_TOKEN)
        .await;
    assert_eq!((s, id(&one)), (200, a_id.clone()), "{one}");
    let (s, stats) = app.get("/admin/v1/stats/projects", ADMIN_TOKEN).await;
    assert_eq!(s, 200, "{stats}");
    let (s, issued) = app
        .post(
            &format!("/admin/v1/tenants/{a_id}/api-keys"),
            ADMIN_TOKEN,
            json!({ "name": "second", "role": "admin" }),
        )
        .await;
    assert_eq!(s, 201, "{issued}");
    let second = issued["api_key"].as_str().expect("api_key");
    assert_eq!(app.get("/v1/projects", second).await.0, 200);
    app.stop().await;
}

/// Without the hint every tenant statement fans out (the strict server refuses them),
/// and still sees only its tenant's rows: forgetting the hint costs latency, not
/// isolation.
#[tokio::test]
async fn without_the_hint_statements_fan_out_and_stay_isolated() {
    let Some(c) = citus("without_the_hint_statements_fan_out_and_stay_isolated") else {
        return;
    };
    let routed = spawn(c, true, false).await;
    let (_, a) = routed.tenant("a").await;
    let (_, b) = routed.tenant("b").await;
    let (_, bp) = routed
        .post("/v1/projects", &b, json!({ "name": "b's" }))
        .await;
    let bp = id(&bp);

    let strict = spawn(c, false, true).await;
    let res = strict
        .http
        .get(format!("{}/v1/projects", strict.base))
        .bearer_auth(&a)
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status().as_u16(),
        500,
        "an unhinted list is a multi-shard statement"
    );
    strict.stop().await;

    let fanned = spawn(c, false, false).await;
    let (s, made) = fanned
        .post("/v1/projects", &a, json!({ "name": "a's" }))
        .await;
    assert_eq!(s, 201, "{made}");
    let ap = id(&made);
    let (s, list) = fanned.get("/v1/projects", &a).await;
    assert_eq!((s, ids(&list)), (200, vec![ap.clone()]), "{list}");
    assert_eq!(fanned.get(&format!("/v1/projects/{bp}"), &a).await.0, 404);
    let (s, _) = fanned
        .patch(&format!("/v1/projects/{bp}"), &a, json!({ "name": "x" }))
        .await;
    assert_eq!(s, 404);
    assert_eq!(fanned.delete(&format!("/v1/projects/{bp}"), &a).await, 404);
    let (s, _) = fanned
        .patch(&format!("/v1/projects/{ap}"), &a, json!({ "name": "y" }))
        .await;
    assert_eq!(s, 200);
    assert_eq!(fanned.delete(&format!("/v1/projects/{ap}"), &a).await, 204);
    let (_, bs) = routed.get(&format!("/v1/projects/{bp}"), &b).await;
    assert_eq!(bs["name"], "b's", "{bs}");
    fanned.stop().await;
    routed.stop().await;
}

/// EXPLAIN as the app role in the tenant's context: the server's own routed point read
/// (`Table::get_routed`, the text `get_by_id` runs) goes to one task, the unhinted read to
/// every shard; the audited insert, update and delete shapes run every part as one task.
#[tokio::test]
async fn the_routed_statements_explain_to_one_task() {
    let Some(c) = citus("the_routed_statements_explain_to_one_task") else {
        return;
    };
    let su = c.superuser().await;
    let a = tenant(&su).await;
    let mut app = c.as_role("tenantguard_app").await;
    let tx = app.transaction().await.expect("begin");
    tx.batch_execute(&format!("SET LOCAL app.tenant_id = '{}'", a.id))
        .await
        .expect("set local");
    let explain = |sql: String, params: Vec<Uuid>| {
        let tx = &tx;
        async move {
            let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = params
                .iter()
                .map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync))
                .collect();
            tx.query(&format!("EXPLAIN {sql}"), &refs)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {}", tenantguard::error_chain(&e)))
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<String>>()
        }
    };
    let table = <tenantguard::http::projects::Project as Record>::TABLE;
    let get = explain(table.get_routed.to_string(), vec![a.project, a.id]).await;
    assert_eq!(task_count(&get), Some(1), "{get:#?}");
    let unhinted = explain(table.get.to_string(), vec![a.project]).await;
    assert_eq!(task_count(&unhinted), Some(SHARD_COUNT), "{unhinted:#?}");
    let rows = tx
        .query(table.get_routed, &[&a.project, &a.id])
        .await
        .expect("routed get");
    assert_eq!(rows.len(), 1);

    // The audited writes, as the builders wrap them (`audited`, the public wrapper every
    // Insert, Patch and delete goes through): every distributed subplan one task.
    use tenantguard::http::extract::write::audited;
    let all_one = |plan: &[String]| {
        let counts: Vec<&str> = plan
            .iter()
            .filter_map(|l| l.trim().strip_prefix("Task Count: "))
            .collect();
        !counts.is_empty() && counts.iter().all(|n| n.trim() == "1")
    };
    let explain_write = |sql: String| {
        let tx = &tx;
        let (id, tenant) = (a.project, a.id);
        async move {
            let rows = if sql.contains("$7") {
                tx.query(
                    &format!("EXPLAIN {sql}"),
                    &[
                        &"p",
                        &id,
                        &tenant,
                        &"actor",
                        &"create",
                        &"project",
                        &json!({}),
                    ],
                )
                .await
            } else {
                tx.query(
                    &format!("EXPLAIN {sql}"),
                    &[&id, &tenant, &"actor", &"delete", &"project", &json!({})],
                )
                .await
            };
            rows.unwrap_or_else(|e| panic!("{sql}: {}", tenantguard::error_chain(&e)))
                .iter()
                .map(|r| r.get::<_, String>(0))
                .collect::<Vec<String>>()
        }
    };
    let insert = audited(
        "INSERT INTO projects (tenant_id, id, name) VALUES ($3, $2, $1)",
        table.columns,
        4,
        2,
        Some(3),
        false,
    );
    let plan = explain_write(insert).await;
    assert!(all_one(&plan), "{plan:#?}");
    let update = audited(
        "UPDATE projects SET name = $1, updated_at = now() WHERE id = $2 AND tenant_id = $3",
        table.columns,
        4,
        2,
        Some(3),
        true,
    );
    let plan = explain_write(update).await;
    assert!(all_one(&plan), "{plan:#?}");
    let delete = audited(
        "DELETE FROM projects WHERE id = $1 AND tenant_id = $2",
        "id",
        3,
        1,
        Some(2),
        true,
    );
    let plan = explain_write(delete).await;
    assert!(all_one(&plan), "{plan:#?}");
    tx.commit().await.expect("commit");
}

/// `Idempotency-Key` on Citus: the lookup and the record are routed to the tenant's shard
/// (unhinted, the lookup's LEFT JOIN crashed the Citus 13.2 coordinator); a retry replays
/// the first answer and writes nothing, a 4xx is replayed too.
#[tokio::test]
async fn idempotent_retries_replay_on_citus() {
    let Some(c) = citus("idempotent_retries_replay_on_citus") else {
        return;
    };
    let app = spawn(c, true, true).await;
    let (_, a) = app.tenant("a").await;
    let post = |key: &'static str, body: Value| {
        let req = app
            .http
            .post(format!("{}/v1/projects", app.base))
            .bearer_auth(&a)
            .header("Idempotency-Key", key)
            .json(&body);
        async move {
            let res = req.send().await.expect("request");
            let replayed = res.headers().contains_key("idempotent-replayed");
            let status = res.status().as_u16();
            let body: Value = res.json().await.expect("json");
            (status, replayed, body)
        }
    };
    let (s, replayed, first) = post("citus-key-1", json!({ "name": "once" })).await;
    assert_eq!((s, replayed), (201, false), "{first}");
    let (s, replayed, again) = post("citus-key-1", json!({ "name": "once" })).await;
    assert_eq!((s, replayed), (201, true), "{again}");
    assert_eq!(id(&again), id(&first));
    let (s, _, bad) = post("citus-key-2", json!({ "name": "" })).await;
    assert_eq!(s, 422, "{bad}");
    let (s, replayed, _) = post("citus-key-2", json!({ "name": "" })).await;
    assert_eq!((s, replayed), (422, true));
    let (_, list) = app.get("/v1/projects", &a).await;
    assert_eq!(ids(&list), vec![id(&first)], "{list}");
    app.stop().await;
}
