//! Test support: one PostgreSQL per test process, one migrated template database, and a
//! fresh database cloned from it (`CREATE DATABASE … TEMPLATE …`) for each test, so tests
//! are isolated from each other and run in parallel.
//!
//! By default the server is a throwaway private [`Cluster`] (no set-up, no fixed port).
//! With `TEST_DATABASE_URL` set to a superuser URL, the same tests run against that server
//! instead; connections "as" a role then use the superuser's credentials with `role` set
//! at connection start, which is what RLS looks at (`current_user`).
//!
//! Roles are cluster-wide, so a test that needs roles of its own must give them unique
//! names ([`unique_name`]).

use std::sync::{Mutex, OnceLock};

use tokio_postgres::{Client, Config, NoTls};

use crate::cluster::{Cluster, ClusterOptions, Durability, SUPERUSER};
use crate::policy::{PolicySet, Roles};
use crate::pool::{AdminPool, PoolOptions, TenantPool};
use crate::schema;

const TEMPLATE: &str = "tenantguard_template";

/// The reference policy set the template is migrated with.
pub fn policy() -> PolicySet {
    schema::reference_policy(Roles::default(), "app.tenant_id")
}

struct Server {
    /// Connection settings for the superuser; the database name is replaced per use.
    base: Config,
    /// Whether `base` is an external server (TEST_DATABASE_URL).
    external: bool,
    template: String,
    /// `server_version_num` of the server the tests run against (e.g. 180004).
    version_num: i32,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static CLUSTER: Mutex<Option<Cluster>> = Mutex::new(None);

extern "C" fn stop_cluster() {
    // Runs at process exit: stop the server and delete its directory.
    if let Ok(mut guard) = CLUSTER.lock() {
        drop(guard.take());
    }
}

fn server() -> &'static Server {
    let server = SERVER.get_or_init(|| {
        // Initialised on a thread of its own, with its own runtime: the caller may be inside
        // a test's runtime, which cannot block.
        std::thread::spawn(init)
            .join()
            .unwrap_or_else(|_| Err("test server initialisation panicked".into()))
    });
    match server {
        Ok(s) => s,
        Err(e) => panic!("test PostgreSQL unavailable: {e}"),
    }
}

fn init() -> Result<Server, String> {
    let (base, external, template) = match std::env::var("TEST_DATABASE_URL") {
        Ok(url) => {
            let cfg: Config = url
                .parse()
                .map_err(|e| format!("TEST_DATABASE_URL is not a valid URL: {e}"))?;
            // Per process, so several test binaries can share one server.
            (cfg, true, format!("{TEMPLATE}_{}", std::process::id()))
        }
        Err(_) => {
            let cluster = Cluster::start(&ClusterOptions {
                durability: Durability::Throwaway,
                max_connections: 400,
                ..ClusterOptions::default()
            })
            .map_err(|e| e.to_string())?;
            let cfg = cluster.config(SUPERUSER, "postgres");
            *CLUSTER.lock().map_err(|e| e.to_string())? = Some(cluster);
            // SAFETY: registering a plain extern "C" fn with no captured state.
            unsafe {
                libc::atexit(stop_cluster);
            }
            (cfg, false, TEMPLATE.to_string())
        }
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let version_num = rt.block_on(async {
        let admin = connect(&with_db(&base, "postgres")).await?;
        let row = admin
            .query_one(
                "SELECT current_setting('server_version'), current_setting('server_version_num')::int",
                &[],
            )
            .await
            .map_err(|e| format!("reading the server version: {}", crate::error_chain(&e)))?;
        let (version, num): (String, i32) = (row.get(0), row.get(1));
        // Straight to stderr, past the test harness's output capture: a run on several
        // PostgreSQL versions must say which one each test process used.
        {
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "tenantguard tests: PostgreSQL {version} ({}), {}",
                num,
                if external {
                    "TEST_DATABASE_URL".to_string()
                } else {
                    match std::env::var("PG_BIN") {
                        Ok(dir) => format!("private cluster from PG_BIN={dir}"),
                        Err(_) => "private cluster".to_string(),
                    }
                }
            );
        }
        // Two statements: CREATE DATABASE cannot run inside a multi-statement batch.
        for sql in ["DROP DATABASE IF EXISTS", "CREATE DATABASE"] {
            admin
                .batch_execute(&format!("{sql} {}", crate::policy::ident(&template)))
                .await
                .map_err(|e| {
                    format!("creating the template database: {}", crate::error_chain(&e))
                })?;
        }
        let mut client = connect(&with_db(&base, &template)).await?;
        schema::migrate(&mut client, &policy())
            .await
            .map_err(|e| format!("migrating the template: {}", crate::error_chain(&e)))?;
        Ok::<_, String>(num)
    })?;
    Ok(Server {
        base,
        external,
        template,
        version_num,
    })
}

fn with_db(base: &Config, db: &str) -> Config {
    let mut c = base.clone();
    c.dbname(db);
    c
}

async fn connect(cfg: &Config) -> Result<Client, String> {
    let (client, conn) = cfg
        .connect(NoTls)
        .await
        .map_err(|e| format!("connecting to the test server: {e}"))?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Whether tests run against an external server (`TEST_DATABASE_URL`) rather than a
/// private cluster. Tests that need password-less access to arbitrary roles (a pooler in
/// front of the server, say) only run on the private cluster.
pub fn is_external() -> bool {
    server().external
}

/// The test server's `server_version_num` (150018, 180004, …), for tests of catalog
/// semantics that differ between PostgreSQL versions.
pub fn server_version_num() -> i32 {
    server().version_num
}

/// A name no other test in this run uses, for databases and roles.
pub fn unique_name(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

/// A database of a test's own.
#[derive(Debug, Clone)]
pub struct TestDb {
    name: String,
}

impl TestDb {
    /// A fresh copy of the migrated reference schema.
    pub async fn new() -> TestDb {
        let template = server().template.clone();
        Self::create(&template).await
    }

    /// A fresh empty database (no tenantguard objects), for fixtures of other shapes.
    pub async fn empty() -> TestDb {
        Self::create("template0").await
    }

    async fn create(template: &str) -> TestDb {
        let s = server();
        let name = unique_name("tg_test");
        let admin = connect(&with_db(&s.base, "postgres"))
            .await
            .unwrap_or_else(|e| panic!("{e}"));
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {} TEMPLATE {}",
                crate::policy::ident(&name),
                crate::policy::ident(template)
            ))
            .await
            .unwrap_or_else(|e| {
                panic!("creating test database {name}: {}", crate::error_chain(&e))
            });
        TestDb { name }
    }

    /// The database name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection settings for the superuser.
    pub fn superuser_config(&self) -> Config {
        with_db(&server().base, &self.name)
    }

    /// Connection settings that act as `role` (what `current_user` and RLS see).
    pub fn config_as(&self, role: &str) -> Config {
        let s = server();
        let mut c = with_db(&s.base, &self.name);
        if s.external {
            c.options(format!("-c role={role}"));
        } else {
            c.user(role);
        }
        c
    }

    /// A `postgresql://` URL for the superuser on this database (for the CLI).
    pub fn superuser_url(&self) -> String {
        config_url(&self.superuser_config())
    }

    /// Connects as the superuser.
    pub async fn superuser(&self) -> Client {
        connect(&self.superuser_config())
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Connects acting as `role`.
    pub async fn connect_as(&self, role: &str) -> Client {
        connect(&self.config_as(role))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The app pool of the reference roles.
    pub async fn app_pool(&self, max_size: usize) -> TenantPool {
        TenantPool::connect(
            self.config_as("tenantguard_app"),
            PoolOptions {
                max_size,
                ..PoolOptions::default()
            },
        )
        .await
        .unwrap_or_else(|e| panic!("app pool: {e}"))
    }

    /// The admin pool of the reference roles.
    pub async fn admin_pool(&self) -> AdminPool {
        AdminPool::connect(self.config_as("tenantguard_admin"), PoolOptions::default())
            .await
            .unwrap_or_else(|e| panic!("admin pool: {e}"))
    }
}

/// Renders connection settings as a URL that tenantguard's `--database-url` accepts.
pub fn config_url(c: &Config) -> String {
    use tokio_postgres::config::Host;
    let user = c.get_user().unwrap_or(SUPERUSER);
    let host = match c.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => crate::cluster::percent_encode_path(p),
        None => "localhost".into(),
    };
    let port = c.get_ports().first().copied().unwrap_or(5432);
    let password = c
        .get_password()
        .map(|p| format!(":{}", String::from_utf8_lossy(p)))
        .unwrap_or_default();
    format!(
        "postgresql://{user}{password}@{host}:{port}/{}",
        c.get_dbname().unwrap_or("postgres")
    )
}

/// A real pgbouncer in transaction mode in front of a test database (pool name `tg`, trust
/// auth for `tenantguard_app` and `postgres`), stopped on drop. The core and API suites
/// both prove behaviour behind it.
#[derive(Debug)]
pub struct Pgbouncer {
    child: std::process::Child,
    /// The port it listens on, at 127.0.0.1.
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Pgbouncer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_pgbouncer() -> Option<std::path::PathBuf> {
    [
        "/usr/sbin/pgbouncer",
        "/usr/bin/pgbouncer",
        "/usr/local/bin/pgbouncer",
    ]
    .iter()
    .map(std::path::PathBuf::from)
    .find(|p| p.is_file())
}

impl Pgbouncer {
    /// Starts pgbouncer in transaction mode with `server_conns` server connections in
    /// front of `db`. `None` (with a printed reason) when pgbouncer is not installed outside
    /// CI, or the suite runs against `TEST_DATABASE_URL`; in CI a missing pgbouncer fails.
    pub fn start(db: &TestDb, server_conns: u32) -> Option<Pgbouncer> {
        if is_external() {
            // pgbouncer must reach the server as the app role itself, without a password.
            eprintln!(
                "skipping: the pgbouncer tests need the private cluster, not TEST_DATABASE_URL"
            );
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
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        use std::time::{Duration, Instant};
        use tokio_postgres::config::Host;
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
        Some(Pgbouncer {
            child,
            port,
            _dir: dir,
        })
    }

    /// A connection config for `user` through the pooler.
    pub fn config(&self, user: &str) -> Config {
        let mut c = Config::new();
        c.host("127.0.0.1").port(self.port).user(user).dbname("tg");
        c
    }
}

/// The server of `state` running in this process on a free loopback port, until
/// [`Served::stop`] (or until dropped: the server then shuts down on its own).
pub struct Served {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    shutdown: tokio::sync::oneshot::Sender<()>,
    handle: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    /// Binds and starts the server.
    pub async fn start(state: crate::http::AppState) -> Served {
        let app =
            crate::http::Application::bind(std::net::SocketAddr::from(([127, 0, 0, 1], 0)), state)
                .await
                .expect("bind");
        let addr = app.local_addr().expect("addr");
        let (shutdown, rx) = tokio::sync::oneshot::channel::<()>();
        let handle = tokio::spawn(app.run_until(async move {
            let _ = rx.await;
        }));
        Served {
            base: format!("http://{addr}"),
            shutdown,
            handle,
        }
    }

    /// Shuts the server down and returns how it ended.
    pub async fn stop(self) -> std::io::Result<()> {
        let _ = self.shutdown.send(());
        self.handle.await.expect("the server task panicked")
    }
}
