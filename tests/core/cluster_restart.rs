//! A kept cluster started again while its previous postmaster is still running (as after
//! `kill -9` of `dev`, whose postmaster then does a fast shutdown with a checkpoint) waits
//! for it instead of failing on the lock file, and gives up with a clear message when it
//! does not finish in time.

use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tenantguard::cluster::{Cluster, ClusterOptions, SUPERUSER};
use tokio_postgres::NoTls;

fn start(opts: &ClusterOptions) -> std::thread::JoinHandle<Result<Cluster, String>> {
    let o = opts.clone();
    std::thread::spawn(move || Cluster::start(&o).map_err(|e| e.to_string()))
}

#[tokio::test]
async fn a_restart_waits_for_the_previous_postmaster_to_exit() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ClusterOptions {
        base_dir: Some(dir.path().join("pg")),
        ..ClusterOptions::default()
    };
    let first = start(&opts).join().unwrap().expect("first start");
    let old = Pid::from_raw(first.pid() as i32);
    // A postmaster that holds its lock file and does not finish yet: stopped.
    kill(old, Signal::SIGSTOP).unwrap();
    let second = start(&opts);
    std::thread::sleep(Duration::from_millis(1500));
    // Then it goes on with a fast shutdown, as it would after its owner's death.
    kill(old, Signal::SIGCONT).unwrap();
    kill(old, Signal::SIGINT).unwrap();
    let second = tokio::task::spawn_blocking(move || second.join().unwrap())
        .await
        .unwrap()
        .expect("the second start waits for the first postmaster, then starts");
    assert_ne!(second.pid(), first.pid());
    let (client, conn) = second
        .config(SUPERUSER, "postgres")
        .connect(NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.simple_query("SELECT 1").await.unwrap();
    drop(client);
    drop(first);
    tokio::task::spawn_blocking(move || drop(second))
        .await
        .unwrap();
}

#[tokio::test]
async fn the_wait_is_bounded_and_says_who_holds_the_directory() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ClusterOptions {
        base_dir: Some(dir.path().join("pg")),
        wait_for_previous: Duration::from_secs(1),
        ..ClusterOptions::default()
    };
    let first = start(&opts).join().unwrap().expect("first start");
    let old = Pid::from_raw(first.pid() as i32);
    kill(old, Signal::SIGSTOP).unwrap();
    let err = start(&opts)
        .join()
        .unwrap()
        .expect_err("a postmaster that never finishes is reported");
    kill(old, Signal::SIGCONT).unwrap();
    assert!(
        err.contains(&format!("a previous PostgreSQL (pid {})", first.pid())),
        "{err}"
    );
    assert!(err.contains("postmaster.pid"), "{err}");
    tokio::task::spawn_blocking(move || drop(first))
        .await
        .unwrap();
}
