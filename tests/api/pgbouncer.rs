//! The API server behind a real transaction-mode pgbouncer (Debian's is 1.18, which does
//! not keep prepared statements): with the statement cache off every main flow works and
//! no request is a 500, and the slow-body attack still leaves the pool to others; with
//! the cache on, the start-up probe sees the statements lost and `/readyz` says what to do.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use tenantguard::testing::{Pgbouncer, TestDb};
use tenantguard::{PoolOptions, TenantPool};

use crate::helpers::{Tenant, ADMIN_TOKEN, JWT_SECRET};
use crate::service::{server_on, slow_bodies_leave_the_pool_to_others, Server};

/// The server with its app pool through pgbouncer (the admin pool, a separate role and
/// URL, connects directly).
async fn behind_pgbouncer(
    server_conns: u32,
    pool_size: usize,
    statement_cache: bool,
    tweak: impl FnOnce(&mut tenantguard::http::HttpConfig),
) -> Option<(Server, Pgbouncer)> {
    let db = TestDb::new().await;
    let b = Pgbouncer::start(&db, server_conns)?;
    let pool = TenantPool::connect(
        b.config("tenantguard_app"),
        PoolOptions {
            max_size: pool_size,
            wait_timeout: Duration::from_secs(2),
            statement_cache,
            ..PoolOptions::default()
        },
    )
    .await
    .expect("the role check works through pgbouncer");
    let admin = db.admin_pool().await;
    Some((server_on(pool, admin, tweak, Some(db)).await, b))
}

/// Sends a request and fails on any 5xx.
async fn call(
    s: &Server,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let (st, _, b) = s.send(method, path, Some(token), body).await;
    assert!(st < 500, "{method} {path}: {st} {b}");
    (st, b)
}

async fn created(s: &Server, path: &str, token: &str, body: Value) -> String {
    let (st, b) = call(s, "POST", path, token, Some(body)).await;
    assert_eq!(st, 201, "POST {path}: {b}");
    b["id"].as_str().unwrap().to_string()
}

/// The API's main flows for one tenant: every resource created, listed, read, patched
/// and deleted, the errors a client can cause (422, 409, 404, 403, 401), keys, JWTs and
/// the audit log, with another tenant's ids looking absent.
pub(crate) async fn main_flows(s: &Server, t: &Tenant, other: &Tenant, tag: &str) {
    let k = &t.key;
    let project = created(s, "/v1/projects", k, json!({ "name": format!("{tag} p") })).await;
    let member = created(
        s,
        "/v1/members",
        k,
        json!({ "email": format!("m@{tag}.example"), "role": "member" }),
    )
    .await;
    let task = created(
        s,
        "/v1/tasks",
        k,
        json!({ "project_id": project, "title": "t", "assignee_id": member }),
    )
    .await;
    let doc = created(
        s,
        "/v1/documents",
        k,
        json!({ "project_id": project, "title": "d", "body": "x" }),
    )
    .await;
    let comment = created(
        s,
        "/v1/comments",
        k,
        json!({ "task_id": task, "body": "c" }),
    )
    .await;
    let invoice = created(
        s,
        "/v1/invoices",
        k,
        json!({ "number": format!("{tag}-1"), "customer_name": "c", "amount_minor": 100, "currency": "EUR" }),
    )
    .await;
    let hook = created(
        s,
        "/v1/webhooks",
        k,
        json!({ "url": "https://example.com/h", "event_types": ["task.created"] }),
    )
    .await;
    let (st, b) = call(
        s,
        "POST",
        "/v1/api-keys",
        k,
        Some(json!({ "name": "viewer", "role": "viewer" })),
    )
    .await;
    assert_eq!(st, 201, "{b}");
    let viewer = b["api_key"].as_str().unwrap().to_string();
    let viewer_id = b["id"].as_str().unwrap().to_string();
    let all = [
        ("/v1/projects", &project),
        ("/v1/members", &member),
        ("/v1/tasks", &task),
        ("/v1/documents", &doc),
        ("/v1/comments", &comment),
        ("/v1/invoices", &invoice),
        ("/v1/webhooks", &hook),
        ("/v1/api-keys", &viewer_id),
    ];
    for (path, id) in all {
        let (st, b) = call(s, "GET", path, k, None).await;
        assert_eq!(st, 200, "{path}: {b}");
        assert!(b["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["id"] == **id));
        let (st, _) = call(s, "GET", &format!("{path}/{id}"), k, None).await;
        assert_eq!(st, 200, "{path}/{id}");
        // The other tenant cannot see it.
        let (st, _) = call(s, "GET", &format!("{path}/{id}"), &other.key, None).await;
        assert_eq!(st, 404, "{path}/{id} from another tenant");
    }
    let (st, b) = call(
        s,
        "PATCH",
        &format!("/v1/tasks/{task}"),
        k,
        Some(json!({ "status": "done", "assignee_id": null })),
    )
    .await;
    assert_eq!((st, &b["status"]), (200, &json!("done")), "{b}");
    let (st, _) = call(
        s,
        "PATCH",
        &format!("/v1/projects/{project}"),
        k,
        Some(json!({ "name": "renamed" })),
    )
    .await;
    assert_eq!(st, 200);
    // Errors a client causes: each a 4xx, some after earlier statements of the request.
    let (st, _) = call(s, "POST", "/v1/projects", k, Some(json!({ "name": "" }))).await;
    assert_eq!(st, 422);
    let (st, _) = call(
        s,
        "POST",
        "/v1/projects",
        k,
        Some(json!({ "name": "x", "tenant_id": other.id })),
    )
    .await;
    assert_eq!(st, 422);
    let (st, _) = call(
        s,
        "POST",
        "/v1/invoices",
        k,
        Some(json!({ "number": format!("{tag}-1"), "customer_name": "c", "amount_minor": 1, "currency": "EUR" })),
    )
    .await;
    assert_eq!(st, 409);
    let (st, _) = call(
        s,
        "POST",
        "/v1/tasks",
        k,
        Some(json!({ "project_id": uuid::Uuid::now_v7(), "title": "t" })),
    )
    .await;
    assert_eq!(st, 422);
    let (st, _) = call(
        s,
        "POST",
        "/v1/tasks",
        k,
        Some(json!({ "project_id": project, "title": "t", "assignee_id": uuid::Uuid::now_v7() })),
    )
    .await;
    assert_eq!(st, 422);
    let (st, _) = call(
        s,
        "POST",
        "/v1/projects",
        &viewer,
        Some(json!({ "name": "v" })),
    )
    .await;
    assert_eq!(st, 403);
    let (st, _) = call(s, "GET", "/v1/projects", &viewer, None).await;
    assert_eq!(st, 200);
    // A JWT of the tenant.
    let exp = chrono::Utc::now().timestamp() + 600;
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": format!("{tag}-user"), "tenant_id": t.id, "role": "member", "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap();
    created(s, "/v1/projects", &token, json!({ "name": "by jwt" })).await;
    // Deletes, children first; a referenced parent is a 409 first.
    let (st, _) = call(s, "DELETE", &format!("/v1/members/{member}"), k, None).await;
    assert!(st == 204 || st == 409, "{st}");
    for (path, id) in [
        ("/v1/comments", &comment),
        ("/v1/documents", &doc),
        ("/v1/tasks", &task),
        ("/v1/projects", &project),
        ("/v1/invoices", &invoice),
        ("/v1/webhooks", &hook),
        ("/v1/api-keys", &viewer_id),
    ] {
        let (st, b) = call(s, "DELETE", &format!("{path}/{id}"), k, None).await;
        assert_eq!(st, 204, "DELETE {path}/{id}: {b}");
        let (st, _) = call(s, "GET", &format!("{path}/{id}"), k, None).await;
        assert!(
            st == 404 || (path == "/v1/api-keys" && st == 200),
            "{path} after delete: {st}"
        );
    }
    // The revoked viewer key no longer works.
    let (st, _) = call(s, "GET", "/v1/projects", &viewer, None).await;
    assert_eq!(st, 401);
    let (st, b) = call(s, "GET", "/v1/audit-log?limit=200", k, None).await;
    assert_eq!(st, 200);
    assert!(b["items"].as_array().unwrap().len() >= 10, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_behind_pgbouncer_without_statement_cache_has_no_500() {
    // Three server connections for eight pooled clients: consecutive transactions of one
    // client land on different server connections.
    let Some((s, _b)) = behind_pgbouncer(3, 8, false, |_| {}).await else {
        return;
    };
    let (st, _, b) = s.send("GET", "/readyz", None, None).await;
    assert_eq!(st, 200, "{b}");
    let mut tenants = Vec::new();
    for i in 0..4 {
        tenants.push(s.tenant(&format!("t{i}")).await);
    }
    // Four tenants' flows at once, so their transactions interleave on the server
    // connections.
    let flows = (0..4).map(|i| {
        let me = tenants[i].clone();
        let other = tenants[(i + 1) % 4].clone();
        let s = &s;
        async move { main_flows(s, &me, &other, &format!("t{i}")).await }
    });
    futures::future::join_all(flows).await;
    let (st, _, b) = s.send("GET", "/readyz", None, None).await;
    assert_eq!(st, 200, "{b}");
    let (st, _, b) = s
        .send("GET", "/admin/v1/tenants", Some(ADMIN_TOKEN), None)
        .await;
    assert_eq!(st, 200, "{b}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_bodies_hold_no_connection_behind_pgbouncer() {
    let Some((s, _b)) = behind_pgbouncer(4, 4, false, |c| {
        c.key_cache_ttl = Duration::ZERO;
        c.tenant_concurrency = 10_000;
        c.key_concurrency = 10_000;
        c.tenant_rate = 0;
        c.key_rate = 0;
        c.body_read_timeout = Duration::from_secs(60);
        c.request_timeout = Duration::from_secs(60);
    })
    .await
    else {
        return;
    };
    slow_bodies_leave_the_pool_to_others(&s, 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pooler_that_loses_prepared_statements_is_reported_not_500() {
    // The statement cache on (the default), which pgbouncer 1.18 cannot serve.
    let Some((s, _b)) = behind_pgbouncer(3, 8, true, |c| {
        c.tenant_concurrency = 100;
        c.key_concurrency = 100;
    })
    .await
    else {
        return;
    };
    assert!(s.state.statements_lost(), "the start-up probe saw it");
    let (st, _, b) = s.send("GET", "/readyz", None, None).await;
    assert_eq!(st, 503, "{b}");
    let detail = b["detail"].as_str().unwrap();
    assert!(
        detail.contains("TENANTGUARD_STATEMENT_CACHE=off") && detail.contains("1.21"),
        "{detail}"
    );
    // Requests are answered, never with a 500; concurrent ones, so that statements
    // prepared on one server connection are run on another.
    let t = s.tenant("t").await;
    let mut lost = 0;
    for round in 0..10 {
        let calls = (0..8).map(|i| {
            let s = &s;
            let key = t.key.clone();
            async move {
                if i % 2 == 0 {
                    s.send("GET", "/v1/projects", Some(&key), None).await
                } else {
                    s.send(
                        "POST",
                        "/v1/projects",
                        Some(&key),
                        Some(json!({ "name": format!("p{round}-{i}") })),
                    )
                    .await
                }
            }
        });
        for (st, _, b) in futures::future::join_all(calls).await {
            assert!(matches!(st, 200 | 201 | 503), "{st} {b}");
            if st == 503 {
                assert!(
                    b["detail"]
                        .as_str()
                        .unwrap()
                        .contains("prepared statements"),
                    "{b}"
                );
                lost += 1;
            }
        }
    }
    eprintln!("{lost} of 80 requests met a lost prepared statement (503)");
}

/// Without the start-up probe (the server assembled by hand, as a library user may),
/// SQLSTATE 26000 at run time is a 503 and turns `/readyz` to 503 with the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_prepared_statement_at_run_time_is_503_and_reported_by_readyz() {
    let db = TestDb::new().await;
    let Some(b) = Pgbouncer::start(&db, 3) else {
        return;
    };
    let pool = TenantPool::connect(
        b.config("tenantguard_app"),
        PoolOptions {
            max_size: 8,
            ..PoolOptions::default()
        },
    )
    .await
    .unwrap();
    let state = tenantguard::http::AppState::new(
        pool,
        Some(db.admin_pool().await),
        tenantguard::http::HttpConfig {
            admin_token: Some(secrecy::SecretString::from(ADMIN_TOKEN.to_string())),
            tenant_concurrency: 100,
            key_concurrency: 100,
            ..Default::default()
        },
    )
    .unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = tenantguard::http::router(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    assert!(!state.statements_lost(), "nothing probed yet");
    let client = reqwest::Client::new();
    let t: Value = client
        .post(format!("{base}/admin/v1/tenants"))
        .bearer_auth(ADMIN_TOKEN)
        .json(&json!({ "name": "t" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = t["api_key"].as_str().unwrap().to_string();
    // Another client of the pooler that now and then holds a transaction, so that the
    // server connections in use change between requests, as under real load.
    let (other, conn) = b
        .config("tenantguard_app")
        .connect(tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut saw_503 = false;
    for round in 0..40 {
        if round % 2 == 0 {
            other.batch_execute("BEGIN; SELECT 1").await.unwrap();
        }
        let calls = (0..8).map(|_| {
            let client = &client;
            let (base, key) = (&base, &key);
            async move {
                let r = client
                    .get(format!("{base}/v1/projects"))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap();
                r.status().as_u16()
            }
        });
        for st in futures::future::join_all(calls).await {
            assert!(st == 200 || st == 503, "{st}");
            saw_503 |= st == 503;
        }
        if round % 2 == 0 {
            other.batch_execute("COMMIT").await.unwrap();
        }
        if saw_503 {
            break;
        }
    }
    assert!(
        saw_503,
        "pgbouncer 1.18 loses cached statements under concurrency"
    );
    assert!(state.statements_lost());
    let r = client.get(format!("{base}/readyz")).send().await.unwrap();
    assert_eq!(r.status(), 503);
}

/// `tenantguard serve` itself, configured from the environment with
/// `TENANTGUARD_STATEMENT_CACHE=off`, behind pgbouncer: ready, and writes and reads work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_statement_cache_off_works_behind_pgbouncer() {
    let db = TestDb::new().await;
    let Some(b) = Pgbouncer::start(&db, 2) else {
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app_url = format!("postgresql://tenantguard_app@127.0.0.1:{}/tg", b.port);
    let admin_url = tenantguard::testing::config_url(&db.config_as("tenantguard_admin"));
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantguard"))
        .arg("serve")
        .env("TENANTGUARD_DATABASE_URL", app_url)
        .env("TENANTGUARD_ADMIN_DATABASE_URL", admin_url)
        .env("TENANTGUARD_ADMIN_TOKEN", "serve-test-token")
        .env("TENANTGUARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANTGUARD_STATEMENT_CACHE", "off")
        .env("TENANTGUARD_POOL_SIZE", "6")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut ready = None;
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            ready = Some(r.status().as_u16());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(ready, Some(200), "serve became ready behind pgbouncer");
    let t: Value = client
        .post(format!("{base}/admin/v1/tenants"))
        .bearer_auth("serve-test-token")
        .json(&json!({ "name": "via pgbouncer" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = t["api_key"].as_str().unwrap().to_string();
    let writes = (0..12).map(|i| {
        let (client, base, key) = (&client, &base, &key);
        async move {
            client
                .post(format!("{base}/v1/projects"))
                .bearer_auth(key)
                .json(&json!({ "name": format!("p{i}") }))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    });
    let statuses = futures::future::join_all(writes).await;
    // 201, or 429 past the key's concurrency limit (half of half the pool); never a 5xx.
    assert!(
        statuses.iter().all(|s| *s == 201 || *s == 429),
        "{statuses:?}"
    );
    let created = statuses.iter().filter(|s| **s == 201).count();
    assert!(created > 0, "{statuses:?}");
    let r: Value = client
        .get(format!("{base}/v1/projects?limit=200"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["items"].as_array().unwrap().len(), created);
    let _ = child.kill().await;
}
