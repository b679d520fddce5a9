//! `tenantguard dev` killed with SIGKILL and started again at once: its postmaster is
//! still doing the fast shutdown that PDEATHSIG started (a checkpoint), and the new `dev`
//! waits for it instead of exiting 2 on the lock file. (The deterministic version, with a
//! postmaster held stopped, is in tests/core/cluster_restart.rs.)

use crate::dev::{free_port, start};

#[tokio::test(flavor = "multi_thread")]
async fn dev_started_right_after_kill_9_waits_for_the_old_postmaster() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let d = dir.path().to_path_buf();
    let (mut child, _, keys) = tokio::task::spawn_blocking(move || start(&d, port))
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
    let (mut child, _, keys2) = tokio::task::spawn_blocking(move || start(&d, port))
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
