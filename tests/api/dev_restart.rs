//! `tenantguard dev` killed with SIGKILL and started again at once: its postmaster is
//! still doing the fast shutdown that PDEATHSIG started (a checkpoint), and the new `dev`
//! waits for it instead of exiting 2 on the lock file. (The deterministic version, with a
//! postmaster held stopped, is in tests/core/cluster_restart.rs.)

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn start(dir: &std::path::Path, port: u16) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tenantguard"))
        .arg("dev")
        .current_dir(dir)
        .env("TENANTGUARD_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("TENANTGUARD_ADMIN_TOKEN")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut keys = Vec::new();
    loop {
        let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => l,
            Err(_) => {
                let status = child.try_wait().unwrap();
                panic!("dev did not become ready (exit status {status:?})");
            }
        };
        if let Some(k) = line.trim().strip_prefix("API key: ") {
            keys.push(k.to_string());
        }
        if line.starts_with("ready:") {
            return (child, keys);
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn dev_started_right_after_kill_9_waits_for_the_old_postmaster() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let d = dir.path().to_path_buf();
    let (mut child, keys) = tokio::task::spawn_blocking(move || start(&d, port))
        .await
        .unwrap();
    let client = reqwest::Client::new();
    let base = format!("http://127.0.0.1:{port}");
    // Some writes, so the shutdown checkpoint has work to do.
    for i in 0..50 {
        let r = client
            .post(format!("{base}/v1/projects"))
            .bearer_auth(&keys[0])
            .json(&serde_json::json!({ "name": format!("before kill {i}") }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    // At once: the old postmaster is still shutting down.
    let d = dir.path().to_path_buf();
    let (mut child, keys2) = tokio::task::spawn_blocking(move || start(&d, port))
        .await
        .unwrap();
    assert_eq!(keys, keys2);
    let body: serde_json::Value = client
        .get(format!("{base}/v1/projects?limit=200"))
        .bearer_auth(&keys[0])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let names = body["items"].as_array().unwrap();
    assert!(
        names
            .iter()
            .filter(|p| p["name"].as_str().unwrap_or("").starts_with("before kill"))
            .count()
            == 50,
        "{body}"
    );
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let status = tokio::task::spawn_blocking(move || child.wait().unwrap())
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}
