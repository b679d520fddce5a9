//! `tenantguard serve`: configuration from the environment and files.

use std::process::Command;

#[tokio::test]
async fn serve_runs_from_environment_variables_and_stops_on_sigterm() {
    let db = tenantguard::testing::TestDb::new().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = |role: &str| tenantguard::testing::config_url(&db.config_as(role));
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantguard"))
        .arg("serve")
        .env("TENANTGUARD_DATABASE_URL", url("tenantguard_app"))
        .env("TENANTGUARD_ADMIN_DATABASE_URL", url("tenantguard_admin"))
        .env("TENANTGUARD_ADMIN_TOKEN", "serve-test-token")
        .env("TENANTGUARD_LISTEN", format!("127.0.0.1:{port}"))
        .env("TENANTGUARD_LOG_FORMAT", "json")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let base = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let mut ready = false;
    for _ in 0..100 {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await {
            ready = r.status() == 200;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(ready, "serve became ready");
    let r = client
        .post(format!("{base}/admin/v1/tenants"))
        .bearer_auth("serve-test-token")
        .json(&serde_json::json!({ "name": "via serve" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let key = r.json::<serde_json::Value>().await.unwrap()["api_key"]
        .as_str()
        .unwrap()
        .to_string();
    let r = client
        .get(format!("{base}/v1/projects"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id().unwrap() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    let out = tokio::time::timeout(std::time::Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("serve stops")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // JSON log lines on stderr (stdout is for what people read), with the admin call logged.
    let logs = String::from_utf8_lossy(&out.stderr);
    assert!(
        logs.lines()
            .any(|l| l.starts_with('{') && l.contains("admin call")),
        "{logs}"
    );
}

#[tokio::test]
async fn serve_refuses_an_unsafe_app_role_and_says_why() {
    let db = tenantguard::testing::TestDb::new().await;
    let out = Command::new(env!("CARGO_BIN_EXE_tenantguard"))
        .arg("serve")
        .env("TENANTGUARD_DATABASE_URL", db.superuser_url())
        .env("TENANTGUARD_LISTEN", "127.0.0.1:0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("SUPERUSER"), "{err}");
}
