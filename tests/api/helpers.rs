//! spawn_app: the real server on a random port, against a fresh database, per test.

use std::time::Duration;

use secrecy::SecretString;
use serde_json::{json, Value};
use tenantguard::http::{AppState, HttpConfig, JwtConfig, JwtKey};
use tenantguard::testing::{Served, TestDb};

pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdef";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// Kept for the test's lifetime (its database).
    _db: TestDb,
    served: Served,
}

/// A response, decoded.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub content_type: String,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Resp {
    /// Asserts a problem+json error with this status.
    pub fn problem(&self, status: u16) -> &Self {
        assert_eq!(self.status, status, "body: {}", self.body);
        assert!(
            self.content_type.starts_with("application/problem+json"),
            "content-type {} for {}",
            self.content_type,
            self.body
        );
        assert_eq!(self.body["status"], status, "{}", self.body);
        self
    }

    pub fn ok(&self, status: u16) -> &Value {
        assert_eq!(self.status, status, "body: {}", self.body);
        &self.body
    }
}

/// A tenant made through the admin API, with its owner key.
#[derive(Debug, Clone)]
pub struct Tenant {
    pub id: String,
    pub key: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(|_| {}).await
}

pub async fn spawn_app_with(tweak: impl FnOnce(&mut HttpConfig)) -> TestApp {
    spawn_on(TestDb::new().await, tweak).await
}

/// Another server on the same database (as a second replica would be).
pub async fn spawn_replica(of: &TestApp, tweak: impl FnOnce(&mut HttpConfig)) -> TestApp {
    spawn_on(of.db().clone(), tweak).await
}

async fn spawn_on(db: TestDb, tweak: impl FnOnce(&mut HttpConfig)) -> TestApp {
    let pool = db.app_pool(8).await;
    let admin = db.admin_pool().await;
    let mut config = HttpConfig {
        admin_token: Some(SecretString::from(ADMIN_TOKEN.to_string())),
        jwt: Some(JwtConfig {
            key: JwtKey::Hs256(SecretString::from(JWT_SECRET.to_string())),
            leeway_secs: 5,
            issuer: None,
            audience: None,
        }),
        body_limit: 256 * 1024,
        last_used_flush: Duration::from_millis(200),
        ..HttpConfig::default()
    };
    tweak(&mut config);
    let state = AppState::new(pool, Some(admin), config).expect("state");
    let served = Served::start(state).await;
    TestApp {
        base: served.base.clone(),
        client: reqwest::Client::new(),
        _db: db,
        served,
    }
}

impl TestApp {
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Resp {
        let mut req = self.client.request(
            reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
            format!("{}{path}", self.base),
        );
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        decode(req.send().await.expect("request")).await
    }

    pub async fn raw(&self, req: reqwest::RequestBuilder) -> Resp {
        decode(req.send().await.expect("request")).await
    }

    pub async fn get(&self, path: &str, token: &str) -> Resp {
        self.send("GET", path, Some(token), None).await
    }
    pub async fn post(&self, path: &str, token: &str, body: Value) -> Resp {
        self.send("POST", path, Some(token), Some(body)).await
    }
    pub async fn patch(&self, path: &str, token: &str, body: Value) -> Resp {
        self.send("PATCH", path, Some(token), Some(body)).await
    }
    pub async fn delete(&self, path: &str, token: &str) -> Resp {
        self.send("DELETE", path, Some(token), None).await
    }

    /// Provisions a tenant through `POST /admin/v1/tenants`.
    pub async fn tenant(&self, name: &str) -> Tenant {
        let r = self
            .post("/admin/v1/tenants", ADMIN_TOKEN, json!({ "name": name }))
            .await;
        let b = r.ok(201);
        Tenant {
            id: b["id"].as_str().unwrap().to_string(),
            key: b["api_key"].as_str().unwrap().to_string(),
        }
    }

    /// A new key of `role` in the tenant of `owner_key`.
    pub async fn key(&self, owner_key: &str, role: &str) -> String {
        let r = self
            .post(
                "/v1/api-keys",
                owner_key,
                json!({ "name": format!("{role} key"), "role": role }),
            )
            .await;
        r.ok(201)["api_key"].as_str().unwrap().to_string()
    }

    pub fn db(&self) -> &TestDb {
        &self._db
    }

    pub async fn stop(self) {
        self.served.stop().await.expect("server");
    }
}

async fn decode(res: reqwest::Response) -> Resp {
    let status = res.status().as_u16();
    let headers = res.headers().clone();
    let content_type = headers
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = res.bytes().await.expect("body");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Resp {
        status,
        content_type,
        headers,
        body,
    }
}

/// One project → task → document → comment chain, plus an invoice, member and webhook,
/// in the tenant of `key`. Returns ids by resource path.
pub async fn populate(app: &TestApp, key: &str, tag: &str) -> Vec<(&'static str, String)> {
    let project = app
        .post(
            "/v1/projects",
            key,
            json!({ "name": format!("{tag} project") }),
        )
        .await;
    let project_id = project.ok(201)["id"].as_str().unwrap().to_string();
    let member = app
        .post(
            "/v1/members",
            key,
            json!({ "email": format!("m@{tag}.example"), "role": "member" }),
        )
        .await;
    let member_id = member.ok(201)["id"].as_str().unwrap().to_string();
    let task = app
        .post(
            "/v1/tasks",
            key,
            json!({ "project_id": project_id, "title": format!("{tag} task"), "assignee_id": member_id }),
        )
        .await;
    let task_id = task.ok(201)["id"].as_str().unwrap().to_string();
    let doc = app
        .post(
            "/v1/documents",
            key,
            json!({ "project_id": project_id, "title": "doc", "body": "text" }),
        )
        .await;
    let doc_id = doc.ok(201)["id"].as_str().unwrap().to_string();
    let comment = app
        .post(
            "/v1/comments",
            key,
            json!({ "task_id": task_id, "body": "hi" }),
        )
        .await;
    let comment_id = comment.ok(201)["id"].as_str().unwrap().to_string();
    let invoice = app
        .post(
            "/v1/invoices",
            key,
            json!({ "number": format!("{tag}-1"), "customer_name": "c", "amount_minor": 100, "currency": "EUR" }),
        )
        .await;
    let invoice_id = invoice.ok(201)["id"].as_str().unwrap().to_string();
    let hook = app
        .post(
            "/v1/webhooks",
            key,
            json!({ "url": "https://example.com/hook", "event_types": ["task.created"] }),
        )
        .await;
    let hook_id = hook.ok(201)["id"].as_str().unwrap().to_string();
    let apikey = app
        .post(
            "/v1/api-keys",
            key,
            json!({ "name": "extra", "role": "viewer" }),
        )
        .await;
    let apikey_id = apikey.ok(201)["id"].as_str().unwrap().to_string();
    vec![
        ("/v1/projects", project_id),
        ("/v1/members", member_id),
        ("/v1/tasks", task_id),
        ("/v1/documents", doc_id),
        ("/v1/comments", comment_id),
        ("/v1/invoices", invoice_id),
        ("/v1/webhooks", hook_id),
        ("/v1/api-keys", apikey_id),
    ]
}

/// A superuser connection to the `postgres` database (for changing the test database
/// while it refuses connections).
pub async fn superuser_elsewhere(db: &TestDb) -> tokio_postgres::Client {
    let mut cfg = db.superuser_config();
    cfg.dbname("postgres");
    let (client, conn) = cfg.connect(tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(conn);
    client
}
