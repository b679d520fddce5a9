//! Isolation of service: one tenant's slow or abundant requests cannot take the server
//! away from the others (issue 8). Slow clients are raw TCP connections that send what a
//! real attacker sends: headers declaring a body that never (fully) comes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;
use serde_json::json;
use tenantguard::http::{AppState, Application, HttpConfig, JwtConfig, JwtKey};
use tenantguard::testing::TestDb;
use tenantguard::{PoolOptions, TenantPool};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;

/// A server on its own pool (size and wait chosen by the test), with the test's settings.
pub(crate) struct Server {
    pub base: String,
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    _db: Option<TestDb>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

pub(crate) async fn server_on(
    pool: TenantPool,
    admin: tenantguard::AdminPool,
    tweak: impl FnOnce(&mut HttpConfig),
    db: Option<TestDb>,
) -> Server {
    let mut config = HttpConfig {
        admin_token: Some(SecretString::from(ADMIN_TOKEN.to_string())),
        jwt: Some(JwtConfig {
            key: JwtKey::Hs256(SecretString::from(JWT_SECRET.to_string())),
            leeway_secs: 5,
            issuer: None,
            audience: None,
        }),
        body_limit: 64 * 1024,
        ..HttpConfig::default()
    };
    tweak(&mut config);
    let state = AppState::new(pool, Some(admin), config).expect("state");
    let app = Application::bind(SocketAddr::from(([127, 0, 0, 1], 0)), state.clone())
        .await
        .expect("bind");
    let addr = app.local_addr().expect("addr");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(app.run_until(async move {
        let _ = rx.await;
    }));
    Server {
        base: format!("http://{addr}"),
        addr,
        client: reqwest::Client::new(),
        state,
        _db: db,
        _stop: tx,
    }
}

async fn server(pool_size: usize, tweak: impl FnOnce(&mut HttpConfig)) -> Server {
    let db = TestDb::new().await;
    let pool = TenantPool::connect(
        db.config_as("tenantguard_app"),
        PoolOptions {
            max_size: pool_size,
            // Short, so a starved request fails quickly instead of the test waiting.
            wait_timeout: Duration::from_secs(2),
            ..PoolOptions::default()
        },
    )
    .await
    .expect("pool");
    let admin = db.admin_pool().await;
    server_on(pool, admin, tweak, Some(db)).await
}

impl Server {
    pub async fn send(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
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
        let res = req.send().await.expect("request");
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = res.bytes().await.expect("body");
        let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (status, headers, body)
    }

    pub async fn tenant(&self, name: &str) -> Tenant {
        let (s, _, b) = self
            .send(
                "POST",
                "/admin/v1/tenants",
                Some(ADMIN_TOKEN),
                Some(json!({ "name": name })),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        Tenant {
            id: b["id"].as_str().unwrap().to_string(),
            key: b["api_key"].as_str().unwrap().to_string(),
        }
    }

    pub async fn key(&self, owner_key: &str, role: &str) -> String {
        let (s, _, b) = self
            .send(
                "POST",
                "/v1/api-keys",
                Some(owner_key),
                Some(json!({ "name": format!("{role} key"), "role": role })),
            )
            .await;
        assert_eq!(s, 201, "{b}");
        b["api_key"].as_str().unwrap().to_string()
    }

    /// Opens a connection and sends `head` (request line and headers, ended by the empty
    /// line, or not) and `body_start`, then keeps the connection open without sending more.
    pub async fn slow(&self, head: &str, body_start: &[u8]) -> TcpStream {
        let mut s = TcpStream::connect(self.addr).await.expect("connect");
        s.write_all(head.as_bytes()).await.expect("write head");
        s.write_all(body_start).await.expect("write body");
        s.flush().await.expect("flush");
        s
    }
}

/// Headers of a POST that declares `len` body bytes.
pub(crate) fn post_head(path: &str, key: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {len}\r\n\r\n"
    )
}

/// Reads what the server sends until it closes the connection or answers one response
/// head, for at most `guard` (a hang guard, not a timing assertion: the assertion is on
/// what was read). Returns the status, or None if the connection was closed without an
/// answer, or if nothing came within the guard.
async fn read_status(s: &mut TcpStream, guard: Duration) -> Result<Option<u16>, &'static str> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = tokio::time::timeout(guard, async {
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    buf.extend_from_slice(&chunk[..n]);
                    if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        return;
                    }
                }
            }
        }
    })
    .await;
    if read.is_err() {
        return Err("the server neither answered nor closed the connection");
    }
    let text = String::from_utf8_lossy(&buf);
    Ok(text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|r| r.get(..3))
        .and_then(|c| c.parse().ok()))
}

/// The no-limits, slow-body settings: limits out of the way, so what is tested is that a
/// waiting request holds no database connection at all.
fn no_limits(c: &mut HttpConfig) {
    c.key_cache_ttl = Duration::ZERO; // every request looks its key up
    c.tenant_concurrency = 10_000;
    c.key_concurrency = 10_000;
    c.tenant_rate = 0;
    c.key_rate = 0;
    c.body_read_timeout = Duration::from_secs(60);
    c.request_timeout = Duration::from_secs(60);
}

/// Many POSTs of one tenant declaring a body that trickles (one byte) or never comes,
/// against a pool of 4: the victim tenant's reads and writes still succeed, because
/// authentication gave its connection back and the body is read before any statement.
pub(crate) async fn slow_bodies_leave_the_pool_to_others(s: &Server, attackers: usize) {
    let attacker = s.tenant("attacker").await;
    let member = s.key(&attacker.key, "member").await;
    let victim = s.tenant("victim").await;
    let mut held = Vec::new();
    for i in 0..attackers {
        let head = post_head("/v1/projects", &member, 100);
        let start: &[u8] = if i % 2 == 0 { b"{" } else { b"" };
        held.push(s.slow(&head, start).await);
    }
    // Let every attacking request get through authentication to its body wait.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for i in 0..4 {
        let (st, _, b) = s.send("GET", "/v1/projects", Some(&victim.key), None).await;
        assert_eq!(st, 200, "victim read {i} while the attacker waits: {b}");
        let (st, _, b) = s
            .send(
                "POST",
                "/v1/projects",
                Some(&victim.key),
                Some(json!({ "name": format!("victim {i}") })),
            )
            .await;
        assert_eq!(st, 201, "victim write {i} while the attacker waits: {b}");
    }
    // The attacker's own later requests are served too: nothing of the pool is held.
    let (st, _, b) = s.send("GET", "/v1/projects", Some(&member), None).await;
    assert_eq!(st, 200, "{b}");
    drop(held);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_bodies_hold_no_database_connection() {
    let s = server(4, no_limits).await;
    slow_bodies_leave_the_pool_to_others(&s, 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_request_bodies_hold_no_database_connection_without_statement_cache() {
    let db = TestDb::new().await;
    let pool = TenantPool::connect(
        db.config_as("tenantguard_app"),
        PoolOptions {
            max_size: 4,
            wait_timeout: Duration::from_secs(2),
            statement_cache: false,
            ..PoolOptions::default()
        },
    )
    .await
    .expect("pool");
    let admin = db.admin_pool().await;
    let s = server_on(pool, admin, no_limits, Some(db)).await;
    slow_bodies_leave_the_pool_to_others(&s, 24).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_at_its_concurrency_limit_gets_429_and_others_are_served() {
    let s = server(8, |c| {
        c.tenant_concurrency = 3;
        c.key_concurrency = 3;
        c.body_read_timeout = Duration::from_secs(60);
    })
    .await;
    let busy = s.tenant("busy").await;
    let quiet = s.tenant("quiet").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(
            s.slow(&post_head("/v1/projects", &busy.key, 50), b"{")
                .await,
        );
    }
    s.wait_in_flight(&busy, 3).await;
    // A fourth request of the busy tenant: refused at once, with when to retry.
    let (st, h, b) = s.send("GET", "/v1/projects", Some(&busy.key), None).await;
    assert_eq!(st, 429, "{b}");
    assert_eq!(b["status"], 429);
    assert!(
        b["detail"].as_str().unwrap().contains("tenant concurrency"),
        "{b}"
    );
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!(retry >= 1);
    assert!(h["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/problem+json"));
    // Another tenant is not affected.
    let (st, _, b) = s.send("GET", "/v1/projects", Some(&quiet.key), None).await;
    assert_eq!(st, 200, "{b}");
    // The busy tenant's slots come back when its slow requests end.
    drop(held);
    let mut ok = false;
    for _ in 0..50 {
        let (st, _, _) = s.send("GET", "/v1/projects", Some(&busy.key), None).await;
        if st == 200 {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ok, "the slots were freed when the slow clients went away");
    assert!(s.limits_settle().await, "no in-flight slot was leaked");
}

impl Server {
    /// Waits until `n` requests of `t` are admitted and waiting for their bodies.
    async fn wait_in_flight(&self, t: &Tenant, n: u32) {
        let tenant: tenantguard::TenantId = t.id.parse().unwrap();
        for _ in 0..200 {
            if self.state.limits().tenant_in_flight(tenant) >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the slow requests were not admitted");
    }

    /// Waits until no tenant or credential has a request in flight. True once settled.
    async fn limits_settle(&self) -> bool {
        for _ in 0..50 {
            if self.state.limits().in_flight_slots() == 0 {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        false
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_key_at_its_limit_leaves_the_tenants_other_keys_alone() {
    let s = server(8, |c| {
        c.tenant_concurrency = 10;
        c.key_concurrency = 2;
        c.body_read_timeout = Duration::from_secs(60);
    })
    .await;
    let t = s.tenant("t").await;
    let noisy = s.key(&t.key, "member").await;
    let mut held = Vec::new();
    for _ in 0..2 {
        held.push(s.slow(&post_head("/v1/projects", &noisy, 50), b"").await);
    }
    s.wait_in_flight(&t, 2).await;
    let (st, h, b) = s.send("GET", "/v1/projects", Some(&noisy), None).await;
    assert_eq!(st, 429, "{b}");
    assert!(
        b["detail"]
            .as_str()
            .unwrap()
            .contains("credential concurrency"),
        "{b}"
    );
    assert!(h.contains_key("retry-after"));
    let (st, _, b) = s.send("GET", "/v1/projects", Some(&t.key), None).await;
    assert_eq!(st, 200, "the owner key of the same tenant: {b}");
    drop(held);
}

#[tokio::test]
async fn a_tenant_over_its_rate_gets_429_with_retry_after_and_others_do_not() {
    let s = server(8, |c| {
        c.tenant_rate = 2;
        c.key_rate = 0;
    })
    .await;
    let a = s.tenant("a").await;
    let b = s.tenant("b").await;
    let mut limited = None;
    for _ in 0..20 {
        let (st, h, body) = s.send("GET", "/v1/projects", Some(&a.key), None).await;
        if st == 429 {
            limited = Some((h, body));
            break;
        }
        assert_eq!(st, 200, "{body}");
    }
    let (h, body) = limited.expect("20 requests at 2 per second are limited");
    assert!(
        body["detail"].as_str().unwrap().contains("tenant rate"),
        "{body}"
    );
    let retry: u64 = h["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "retry after {retry} s");
    let (st, _, body) = s.send("GET", "/v1/projects", Some(&b.key), None).await;
    assert_eq!(st, 200, "another tenant has its own budget: {body}");
    // After the advertised wait, the limited tenant is served again.
    tokio::time::sleep(Duration::from_secs(retry)).await;
    let (st, _, body) = s.send("GET", "/v1/projects", Some(&a.key), None).await;
    assert_eq!(st, 200, "{body}");
}

#[tokio::test]
async fn an_oversize_declared_length_is_413_before_any_body_is_read() {
    let s = server(4, |c| {
        c.body_limit = 1024;
        // Were the request held until this, the answer would be a 503.
        c.request_timeout = Duration::from_secs(3);
    })
    .await;
    let t = s.tenant("t").await;
    for path in ["/v1/projects", "/admin/v1/tenants", "/v1/nowhere"] {
        let key = if path.starts_with("/admin") {
            ADMIN_TOKEN
        } else {
            &t.key
        };
        let mut c = s.slow(&post_head(path, key, 10_000_000), b"").await;
        let status = read_status(&mut c, Duration::from_secs(20)).await.unwrap();
        assert_eq!(status, Some(413), "{path}");
    }
    // Also without credentials: nothing is read, nothing is looked up.
    let mut c = s
        .slow(
            "POST /v1/projects HTTP/1.1\r\nHost: t\r\nContent-Length: 99999999\r\n\r\n",
            b"",
        )
        .await;
    assert_eq!(
        read_status(&mut c, Duration::from_secs(20)).await.unwrap(),
        Some(413)
    );
    // A chunked body past the limit is 413 too, once it has grown past it.
    let mut c = s
        .slow(
            &format!(
                "POST /v1/projects HTTP/1.1\r\nHost: t\r\nAuthorization: Bearer {}\r\n\
                 Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
                t.key
            ),
            format!("800\r\n{}\r\n", "x".repeat(0x800)).as_bytes(),
        )
        .await;
    assert_eq!(
        read_status(&mut c, Duration::from_secs(20)).await.unwrap(),
        Some(413)
    );
}

#[tokio::test]
async fn a_body_that_does_not_arrive_in_time_is_408() {
    let s = server(4, |c| {
        c.body_read_timeout = Duration::from_secs(1);
    })
    .await;
    let t = s.tenant("t").await;
    let mut c = s
        .slow(&post_head("/v1/projects", &t.key, 50), b"{\"na")
        .await;
    let status = read_status(&mut c, Duration::from_secs(15)).await.unwrap();
    assert_eq!(status, Some(408));
    // Nothing was written.
    let (st, _, b) = s.send("GET", "/v1/projects", Some(&t.key), None).await;
    assert_eq!(st, 200);
    assert_eq!(b["items"].as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn headers_that_do_not_arrive_in_time_close_the_connection() {
    let s = server(4, |c| {
        c.header_read_timeout = Duration::from_secs(1);
    })
    .await;
    let mut c = s
        .slow("GET /healthz HTTP/1.1\r\nHost: t\r\nX-Slow: ", b"")
        .await;
    // Closed (hyper answers nothing, or a 408), within the guard.
    let status = read_status(&mut c, Duration::from_secs(15)).await.unwrap();
    assert!(matches!(status, None | Some(408)), "{status:?}");
    // Whole requests are still served.
    let (st, _, _) = s.send("GET", "/healthz", None, None).await;
    assert_eq!(st, 200);
}

/// Every series' method label in the Prometheus text.
fn method_labels(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split("method=\"").nth(1))
        .filter_map(|r| r.split('"').next())
        .map(str::to_string)
        .collect()
}

#[tokio::test]
async fn unknown_methods_fold_into_one_metrics_label() {
    let s = server(4, |_| {}).await;
    let t = s.tenant("t").await;
    let mut sent = Vec::new();
    for i in 0..300 {
        let m = format!("XM{i}{}", uuid::Uuid::new_v4().simple());
        let path = if i % 2 == 0 {
            "/v1/projects"
        } else {
            "/nowhere"
        };
        let (st, _, _) = s.send(&m, path, Some(&t.key), None).await;
        assert!(st == 405 || st == 404, "{m}: {st}");
        sent.push(m);
    }
    let text = s
        .client
        .get(format!("{}/metrics", s.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let labels = method_labels(&text);
    assert!(labels.contains("other"), "{labels:?}");
    assert!(
        sent.iter().all(|m| !labels.contains(m)),
        "a client-chosen method became a label"
    );
    let known = [
        "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "other",
    ];
    assert!(
        labels.iter().all(|l| known.contains(&l.as_str())),
        "{labels:?}"
    );
    // No series is labelled with a tenant.
    assert!(!text.contains(&t.id), "a tenant id in /metrics");
}

#[tokio::test]
async fn metrics_can_require_a_token() {
    let s = server(4, |c| {
        c.metrics_token = Some(SecretString::from("metrics-token-0123".to_string()));
    })
    .await;
    for token in [None, Some("wrong"), Some("metrics-token-012")] {
        let (st, _, _) = s.send("GET", "/metrics", token, None).await;
        assert_eq!(st, 401, "{token:?}");
    }
    let (st, _, _) = s
        .send("GET", "/metrics", Some("metrics-token-0123"), None)
        .await;
    assert_eq!(st, 200);
    // Off by default (the other tests read /metrics without one).
    let open = server(4, |_| {}).await;
    assert_eq!(open.send("GET", "/metrics", None, None).await.0, 200);
}

fn jwt(claims: serde_json::Value) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

#[tokio::test]
async fn jwt_nbf_and_iat_are_checked_with_the_exp_leeway() {
    // Leeway 5 s (see server_on).
    let s = server(4, |_| {}).await;
    let t = s.tenant("t").await;
    let now = chrono::Utc::now().timestamp();
    let token = |extra: serde_json::Value| {
        let mut c = json!({ "sub": "u1", "tenant_id": t.id, "role": "viewer", "exp": now + 600 });
        for (k, v) in extra.as_object().unwrap() {
            c[k] = v.clone();
        }
        jwt(c)
    };
    let cases = [
        (json!({}), 200),
        (json!({ "nbf": now + 3600 }), 401),
        (json!({ "nbf": now + 60 }), 401),
        (json!({ "nbf": now + 2 }), 200), // within the leeway
        (json!({ "nbf": now - 60 }), 200),
        (json!({ "iat": now + 3600 }), 401),
        (json!({ "iat": now + 60 }), 401),
        (json!({ "iat": now + 2 }), 200),
        (json!({ "iat": now - 60, "nbf": now - 60 }), 200),
        (json!({ "iat": "yesterday" }), 401),
    ];
    for (extra, want) in cases {
        let (st, _, b) = s
            .send("GET", "/v1/projects", Some(&token(extra.clone())), None)
            .await;
        assert_eq!(st, want, "{extra}: {b}");
    }
}

#[tokio::test]
async fn the_openapi_document_lists_429_413_and_408() {
    let s = server(4, |_| {}).await;
    let (_, _, doc) = s.send("GET", "/openapi.json", None, None).await;
    let post = &doc["paths"]["/v1/projects"]["post"]["responses"];
    for code in ["429", "413", "408"] {
        assert!(
            post.get(code).is_some(),
            "POST /v1/projects documents {code}"
        );
    }
    assert!(post["429"]["headers"].get("Retry-After").is_some());
    let get = &doc["paths"]["/v1/projects"]["get"]["responses"];
    assert!(get.get("429").is_some());
    assert!(get.get("413").is_none(), "GET takes no body");
}
