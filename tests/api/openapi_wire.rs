//! Errors hyper would answer itself (a request target or header section over the limits, a
//! malformed request line) are problem+json like every other error: sent over raw TCP.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::*;

/// Sends `raw` on a new connection and reads the answer until the server closes it (or 10 s).
async fn exchange(app: &TestApp, raw: &[u8]) -> String {
    let addr = app.base.trim_start_matches("http://");
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    // The server may answer (and close) before it has read everything: ignore write errors.
    let _ = s.write_all(raw).await;
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn status_and_body(resp: &str) -> (u16, String, String) {
    let (head, body) = resp.split_once("\r\n\r\n").unwrap_or((resp, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

fn assert_problem(resp: &str, status: u16) {
    let (got, head, body) = status_and_body(resp);
    assert_eq!(got, status, "{resp}");
    assert!(
        head.contains("content-type: application/problem+json"),
        "{resp}"
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_else(|_| panic!("{resp}"));
    assert_eq!(v["status"], status, "{resp}");
}

#[tokio::test]
async fn hypers_own_errors_are_problem_json() {
    let app = spawn_app().await;
    let long = format!(
        "GET /v1/projects?x={} HTTP/1.1\r\nHost: x\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    assert_problem(&exchange(&app, long.as_bytes()).await, 414);
    let headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..200)
            .map(|i| format!("x-h{i}: {}\r\n", "v".repeat(100)))
            .collect::<String>()
    );
    assert_problem(&exchange(&app, headers.as_bytes()).await, 431);
    let huge = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nx-big: {}\r\n\r\n",
        "v".repeat(1024 * 1024)
    );
    assert_problem(&exchange(&app, huge.as_bytes()).await, 431);
    assert_problem(&exchange(&app, b"GARBAGE\r\n\r\n").await, 400);
    assert_problem(
        &exchange(&app, b"GET / HTTP/9.9\r\nHost: x\r\n\r\n").await,
        400,
    );
    // After a good request on the same connection: the good answer untouched, then the
    // problem for the malformed one.
    let r = exchange(
        &app,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /healthz HTTP/1.1\r\nBad Header\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    let second = &r[r.find("{\"status\":\"ok\"}").unwrap() + 15..];
    assert_problem(second, 400);
    // An answer of ours is never rewritten: a real 404 keeps its own detail.
    let r = exchange(
        &app,
        b"GET /nowhere HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_problem(&r, 404);
    assert!(r.contains("no such route"), "{r}");
    app.stop().await;
}
