//! Behind a transaction-mode pooler (pgbouncer), server connections are shared by many
//! clients between transactions. A session-level tenant setting leaks to whoever gets the
//! server connection next (shown here as a control: this is the seed's flaw); the
//! transaction-local context of `TenantPool` does not, with the statement cache off as
//! pgbouncer before 1.21 requires.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tenantguard::{PoolOptions, TenantPool};
use tokio_postgres::config::Host;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use crate::support::*;

struct Bouncer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Bouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_pgbouncer() -> Option<PathBuf> {
    [
        "/usr/sbin/pgbouncer",
        "/usr/bin/pgbouncer",
        "/usr/local/bin/pgbouncer",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// Starts pgbouncer in transaction mode with `server_conns` server connections in front
/// of the test database. `None` when pgbouncer is not installed outside CI.
fn start(db: &TestDb, server_conns: u32) -> Option<Bouncer> {
    if tenantguard::testing::is_external() {
        // pgbouncer must reach the server as the app role itself, without a password.
        eprintln!("skipping: the pgbouncer tests need the private cluster, not TEST_DATABASE_URL");
        return None;
    }
    let Some(bin) = find_pgbouncer() else {
        assert!(
            std::env::var_os("CI").is_none(),
            "pgbouncer is not installed (apt-get install pgbouncer); CI must have it"
        );
        eprintln!("skipping: pgbouncer is not installed (apt-get install pgbouncer)");
        return None;
    };
    let cfg = db.superuser_config();
    let host = match cfg.get_hosts().first() {
        Some(Host::Unix(p)) => p.display().to_string(),
        Some(Host::Tcp(h)) => h.clone(),
        None => "localhost".into(),
    };
    let server_port = cfg.get_ports().first().copied().unwrap_or(5432);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let ini = dir.path().join("pgbouncer.ini");
    let users = dir.path().join("users.txt");
    std::fs::write(&users, "\"tenantguard_app\" \"\"\n\"postgres\" \"\"\n").unwrap();
    std::fs::write(
        &ini,
        format!(
            "[databases]\ntg = host={host} port={server_port} dbname={db}\n\
             [pgbouncer]\nlisten_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n\
             auth_type = trust\nauth_file = {users}\npool_mode = transaction\n\
             default_pool_size = {server_conns}\nmax_client_conn = 200\n\
             server_reset_query =\nlogfile = {log}\n",
            db = db.name(),
            users = users.display(),
            log = dir.path().join("pgbouncer.log").display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(bin);
    cmd.arg(&ini).stdout(Stdio::null()).stderr(Stdio::null());
    // pgbouncer refuses to run as root, like initdb.
    if nix::unistd::geteuid().is_root() {
        let user = nix::unistd::User::from_name("postgres")
            .unwrap()
            .expect("postgres user");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        cmd.uid(user.uid.as_raw()).gid(user.gid.as_raw());
    }
    let child = cmd.spawn().expect("start pgbouncer");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "pgbouncer did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Bouncer {
        child,
        port,
        _dir: dir,
    })
}

fn config(b: &Bouncer, user: &str) -> tokio_postgres::Config {
    let mut c = tokio_postgres::Config::new();
    c.host("127.0.0.1").port(b.port).user(user).dbname("tg");
    c
}

async fn raw(b: &Bouncer, user: &str) -> Client {
    let (client, conn) = config(b, user).connect(NoTls).await.unwrap();
    tokio::spawn(conn);
    client
}

/// Runs one simple-protocol statement (no prepared statements: pgbouncer 1.18 cannot
/// route them) and returns the first column of the first row.
async fn scalar(c: &Client, sql: &str) -> Option<String> {
    c.simple_query(sql)
        .await
        .unwrap()
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(r) => Some(r.get(0).map(str::to_string)),
            _ => None,
        })
        .flatten()
}

#[tokio::test]
async fn session_level_context_leaks_behind_pgbouncer_transaction_local_does_not() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let a = graph(&su, "a").await;
    let Some(b) = start(&db, 1) else { return };
    // One server connection, two clients: every statement of either runs on it.
    let alice = raw(&b, "tenantguard_app").await;
    let mallory = raw(&b, "tenantguard_app").await;

    // The seed's way: a session-level SET. It outlives the statement on the shared
    // server connection, so the *other* client now reads tenant A's rows.
    scalar(
        &alice,
        &format!("SELECT set_config('app.tenant_id', '{}', false)", a.tenant),
    )
    .await;
    let leaked = scalar(&mallory, "SELECT count(*) FROM projects").await;
    assert_eq!(
        leaked.as_deref(),
        Some("1"),
        "control: session SET leaks through the pooler"
    );
    scalar(&alice, "RESET app.tenant_id").await;
    assert_eq!(
        scalar(&mallory, "SELECT count(*) FROM projects")
            .await
            .as_deref(),
        Some("0")
    );

    // tenantguard's way: transaction-local. Inside the transaction A sees its row; the
    // next client on the same server connection sees nothing.
    let inside = alice
        .simple_query(&format!(
            "BEGIN; SELECT set_config('app.tenant_id', '{}', true); SELECT count(*) FROM projects; COMMIT",
            a.tenant
        ))
        .await
        .unwrap();
    let counts: Vec<String> = inside
        .iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => r.get(0).map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(counts.last().map(String::as_str), Some("1"));
    assert_eq!(
        scalar(&mallory, "SELECT count(*) FROM projects")
            .await
            .as_deref(),
        Some("0"),
        "transaction-local context did not survive COMMIT"
    );
    let setting = scalar(&mallory, "SELECT current_setting('app.tenant_id', true)").await;
    assert!(setting.unwrap_or_default().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenant_pool_behind_pgbouncer_keeps_tenants_apart() {
    let db = TestDb::new().await;
    let su = db.superuser().await;
    let tenants = tenants(&su, 16).await;
    // Two server connections shared by eight pooled clients.
    let Some(b) = start(&db, 2) else { return };
    let pool = TenantPool::connect(
        config(&b, "tenantguard_app"),
        PoolOptions {
            max_size: 8,
            statement_cache: false,
            ..PoolOptions::default()
        },
    )
    .await
    .expect("the role check works through pgbouncer");
    concurrent_isolation(&su, &pool, &tenants, 6).await;
}
