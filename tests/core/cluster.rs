//! The private PostgreSQL: persistent mode keeps data across restarts, TCP on a free port
//! when asked, and a clear error when no server binaries can be found.

use tenantguard::cluster::{Binaries, Cluster, ClusterError, ClusterOptions, SUPERUSER};
use tokio_postgres::NoTls;

async fn query_one(config: tokio_postgres::Config, sql: &str) -> String {
    let (client, conn) = config.connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    let rows = client.simple_query(sql).await.unwrap();
    rows.into_iter()
        .find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn persistent_cluster_keeps_data_across_restarts_and_listens_on_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ClusterOptions {
        base_dir: Some(dir.path().join("pg")),
        listen_tcp: true,
        ..ClusterOptions::default()
    };
    let o = opts.clone();
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&o))
        .await
        .unwrap()
        .unwrap();
    let pid = cluster.pid();
    assert_ne!(cluster.port(), 5432, "never assumes the default port");
    query_one(
        cluster.config(SUPERUSER, "postgres"),
        "CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')",
    )
    .await;
    let tcp = cluster.tcp_url(SUPERUSER, "postgres").expect("tcp url");
    assert!(tcp.starts_with("postgresql://postgres@127.0.0.1:"), "{tcp}");
    // The URL form is accepted too (socket path percent-encoded).
    let url_cfg: tokio_postgres::Config = cluster.url(SUPERUSER, "postgres").parse().unwrap();
    assert_eq!(query_one(url_cfg, "SELECT 1").await, "1");
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
    // Fast shutdown really stopped the server.
    assert!(
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), None).is_err(),
        "postmaster {pid} still running after drop"
    );

    let cluster = tokio::task::spawn_blocking(move || Cluster::start(&opts))
        .await
        .unwrap()
        .unwrap();
    let v = query_one(cluster.config(SUPERUSER, "postgres"), "SELECT v FROM kept").await;
    assert_eq!(v, "still here");
    tokio::task::spawn_blocking(move || drop(cluster))
        .await
        .unwrap();
}

#[test]
fn missing_binaries_give_a_clear_error() {
    let empty = tempfile::tempdir().unwrap();
    let err = Binaries::locate_with(Some(empty.path().as_os_str())).unwrap_err();
    assert!(matches!(err, ClusterError::BinariesNotFound { .. }));
    let msg = err.to_string();
    for needle in ["PG_BIN", "apt-get install postgresql", "DATABASE_URL"] {
        assert!(msg.contains(needle), "{needle} missing from: {msg}");
    }
    // Without PG_BIN the machine's own binaries are found.
    assert!(Binaries::locate_with(None).is_ok());
}

#[test]
fn a_directory_the_server_user_cannot_reach_is_refused_with_a_hint() {
    use std::os::unix::fs::PermissionsExt;
    let outer = tempfile::tempdir().unwrap();
    std::fs::set_permissions(outer.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let opts = ClusterOptions {
        base_dir: Some(outer.path().join("pg")),
        ..ClusterOptions::default()
    };
    let result = Cluster::start(&opts);
    if nix::unistd::geteuid().is_root() {
        // Root hands the cluster to the postgres user, which cannot enter a 0700 root dir.
        let msg = result.expect_err("unreachable directory").to_string();
        assert!(
            msg.contains("cannot reach") && msg.contains("/var/tmp"),
            "{msg}"
        );
    } else {
        // Not root: the server runs as this user, who owns the directory.
        drop(result.expect("own 0700 directory is fine"));
    }
}
