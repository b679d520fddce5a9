//! `tenantguard dev`: a private cluster, migrated, seeded, serving.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Runs `tenantguard dev` in `dir` until it prints `ready:`; returns the child, the curl
/// lines and the API keys it printed (also used by `dev_restart`).
pub(crate) fn start(
    dir: &std::path::Path,
    port: u16,
) -> (std::process::Child, Vec<String>, Vec<String>) {
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
    let (mut curls, mut keys) = (Vec::new(), Vec::new());
    loop {
        let line = match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
            Ok(l) => l,
            Err(_) => {
                let status = child.try_wait().unwrap();
                panic!("dev did not become ready (exit status {status:?})");
            }
        };
        if let Some(c) = line.trim().strip_prefix("curl ") {
            curls.push(format!("curl --fail-with-body {c}"));
        }
        if let Some(k) = line.trim().strip_prefix("API key: ") {
            keys.push(k.to_string());
        }
        if line.starts_with("ready:") {
            break;
        }
    }
    (child, curls, keys)
}

fn stop(mut child: std::process::Child) {
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGINT,
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "dev exited with {status}");
            return;
        }
        assert!(Instant::now() < deadline, "dev did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn dev_starts_from_nothing_and_its_curl_lines_work() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (child, curls, keys) = start(dir.path(), port);
    assert_eq!(keys.len(), 3, "three demo tenants");
    assert!(curls.len() >= 4, "{curls:?}");
    for c in &curls {
        let out = Command::new("sh").arg("-c").arg(c).output().unwrap();
        assert!(
            out.status.success(),
            "{c}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
    let out = Command::new("sh")
        .arg("-c")
        .arg(&curls[0])
        .output()
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(body["items"].as_array().unwrap().len() >= 3, "{body}");
    stop(child);
    // Second run: same cluster, no re-seed, the same keys still work.
    let (child, curls2, keys2) = start(dir.path(), port);
    assert_eq!(keys, keys2);
    let out = Command::new("sh")
        .arg("-c")
        .arg(&curls2[0])
        .output()
        .unwrap();
    let body: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(
        body["items"].as_array().unwrap().len() >= 4,
        "the project created by curl persisted: {body}"
    );
    stop(child);
}
