//! A private PostgreSQL cluster run from the installed server binaries.
//!
//! `tenantguard dev`, the test suite and the benchmarks need a real PostgreSQL without any
//! set-up by hand. [`Cluster::start`] finds the binaries ([`Binaries::locate`]), runs `initdb`
//! when the data directory is new, starts `postmaster` listening on a unix socket in a
//! directory of its own (and on `127.0.0.1` at a free port when asked), and waits until it
//! accepts connections. Dropping the [`Cluster`] stops the server with a fast shutdown.
//!
//! initdb refuses to run as root, so when this process is root the server programs run as
//! the `postgres` OS user (or `TENANTGUARD_PG_USER`) and the directories are handed to it.
//!
//! The server is spawned from a dedicated supervisor thread that lives exactly as long as
//! the cluster, with `PR_SET_PDEATHSIG`: if this process dies without running destructors
//! (SIGKILL, abort) the kernel stops the server too, so no orphan keeps a port or a socket.
//! That stop is a fast shutdown, which writes a checkpoint and can take seconds: a
//! [`Cluster::start`] on the same directory right after (`dev` restarted after a
//! `kill -9`) waits for that previous postmaster to exit, up to
//! [`ClusterOptions::wait_for_previous`], saying so in the log, instead of failing on its
//! lock file.

mod binaries;

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use binaries::Binaries;

/// Errors from starting or stopping a private cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// No PostgreSQL server binaries could be found.
    #[error(
        "PostgreSQL server binaries not found (looked at: {tried}). tenantguard runs a private \
         PostgreSQL from the installed server programs (initdb, postgres). Install them \
         (Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql@16`), or \
         set PG_BIN to the directory that holds them, or point DATABASE_URL (tests: \
         TEST_DATABASE_URL) at a PostgreSQL server you already run."
    )]
    BinariesNotFound {
        /// The places searched, in order.
        tried: String,
    },
    /// Running as root, but the OS user to run the server as does not exist.
    #[error(
        "running as root, and initdb refuses root: the server must run as the OS user `{0}`, \
         which does not exist. Create it (`useradd --system {0}`) or set TENANTGUARD_PG_USER \
         to an existing unprivileged user."
    )]
    NoServerUser(String),
    /// `initdb` failed.
    #[error("initdb failed ({status}):\n{output}")]
    Initdb {
        /// Exit status.
        status: String,
        /// What initdb printed.
        output: String,
    },
    /// The server exited or did not become ready in time.
    #[error("PostgreSQL did not start: {reason}\n--- last lines of {log} ---\n{tail}")]
    Start {
        /// Why it is considered failed.
        reason: String,
        /// Log file path.
        log: String,
        /// Last lines of the server log.
        tail: String,
    },
    /// A file-system or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ClusterError {
    let context = context.into();
    move |source| ClusterError::Io { context, source }
}

/// How the cluster trades durability for speed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// PostgreSQL's defaults: what `dev` uses, data survives a crash.
    Durable,
    /// `fsync=off` and friends: for throwaway test and benchmark clusters only.
    Throwaway,
}

/// What to start.
#[derive(Debug, Clone)]
pub struct ClusterOptions {
    /// Keep the cluster under this directory (created on first start, reused after).
    /// `None` makes a throwaway cluster in a temporary directory, deleted on drop.
    pub base_dir: Option<PathBuf>,
    /// Also listen on `127.0.0.1` at a free port.
    pub listen_tcp: bool,
    /// Durability settings.
    pub durability: Durability,
    /// `max_connections` for the server.
    pub max_connections: u32,
    /// Extra `-c name=value` server settings.
    pub settings: Vec<(String, String)>,
    /// How long to wait for a previous postmaster of a kept data directory that is still
    /// running (shutting down after its owner died) before giving up.
    pub wait_for_previous: Duration,
}

impl Default for ClusterOptions {
    fn default() -> Self {
        Self {
            base_dir: None,
            listen_tcp: false,
            durability: Durability::Durable,
            max_connections: 100,
            settings: Vec::new(),
            wait_for_previous: Duration::from_secs(30),
        }
    }
}

/// The superuser that `initdb` creates in a private cluster.
pub const SUPERUSER: &str = "postgres";

/// A running private PostgreSQL server. Dropping it stops the server (fast shutdown).
#[derive(Debug)]
pub struct Cluster {
    data_dir: PathBuf,
    socket_dir: PathBuf,
    port: u16,
    tcp: bool,
    pid: u32,
    stop: Option<mpsc::Sender<()>>,
    supervisor: Option<JoinHandle<()>>,
    // Declared last so the directories are removed only after the server has stopped.
    _socket_tmp: Option<tempfile::TempDir>,
    _tmp: Option<tempfile::TempDir>,
}

impl Cluster {
    /// Starts a cluster as described by `opts`, running `initdb` first if needed.
    /// Blocks until the server accepts connections (at most 60 seconds).
    pub fn start(opts: &ClusterOptions) -> Result<Cluster, ClusterError> {
        let bins = Binaries::locate()?;
        let run_as = server_user()?;

        let (tmp, base) = match &opts.base_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
                let dir = dir
                    .canonicalize()
                    .map_err(io(format!("resolving {}", dir.display())))?;
                (None, dir)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("tenantguard-pg-")
                    .tempdir()
                    .map_err(io("creating a temporary directory"))?;
                let p = t.path().to_path_buf();
                (Some(t), p)
            }
        };
        let data_dir = base.join("data");
        let log_path = base.join("postgres.log");

        // A unix socket path must fit in sun_path (108 bytes): fall back to /tmp when the
        // chosen base directory is deep.
        let port = free_port()?;
        let mut socket_dir = base.join("run");
        let mut socket_tmp = None;
        if socket_dir
            .join(format!(".s.PGSQL.{port}.lock"))
            .as_os_str()
            .len()
            > 100
        {
            let t = tempfile::Builder::new()
                .prefix("tg-sock-")
                .tempdir()
                .map_err(io("creating a socket directory"))?;
            socket_dir = t.path().to_path_buf();
            socket_tmp = Some(t);
        }
        std::fs::create_dir_all(&socket_dir)
            .map_err(io(format!("creating {}", socket_dir.display())))?;
        if !log_path.exists() {
            std::fs::File::create(&log_path)
                .map_err(io(format!("creating {}", log_path.display())))?;
        }
        if let Some(user) = &run_as {
            check_reachable(&base, user)?;
            for p in [&base, &socket_dir, &log_path] {
                chown(p, user)?;
            }
            // The server user must be able to reach its directories.
            set_mode(&base, 0o755)?;
        }
        set_mode(&socket_dir, 0o700)?;

        if !data_dir.join("PG_VERSION").exists() {
            initdb(&bins, &data_dir, &base, run_as.as_ref(), opts.durability)?;
        } else {
            wait_for_previous(&data_dir, opts.wait_for_previous, &log_path)?;
        }

        let mut cmd = Command::new(bins.program("postgres"));
        cmd.arg("-D")
            .arg(&data_dir)
            .arg("-k")
            .arg(&socket_dir)
            .arg("-p")
            .arg(port.to_string())
            .arg("-c")
            .arg(format!(
                "listen_addresses={}",
                if opts.listen_tcp { "127.0.0.1" } else { "" }
            ))
            // Only the server's own user (and root) may use the socket: trust auth on it
            // must not extend to other local users.
            .arg("-c")
            .arg("unix_socket_permissions=0700")
            .arg("-c")
            .arg(format!("max_connections={}", opts.max_connections));
        if opts.durability == Durability::Throwaway {
            for s in [
                "fsync=off",
                "synchronous_commit=off",
                "full_page_writes=off",
                "shared_buffers=128MB",
            ] {
                cmd.arg("-c").arg(s);
            }
        }
        for (k, v) in &opts.settings {
            cmd.arg("-c").arg(format!("{k}={v}"));
        }
        let log = std::fs::OpenOptions::new()
            .append(true)
            .open(&log_path)
            .map_err(io(format!("opening {}", log_path.display())))?;
        let log_err = log.try_clone().map_err(io("duplicating the log handle"))?;
        cmd.current_dir(&base)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        if let Some(u) = &run_as {
            cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
        }
        // SAFETY: prctl is async-signal-safe; it runs in the forked child before exec.
        unsafe {
            cmd.pre_exec(|| {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGINT as libc::c_ulong) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }

        let (ready_tx, ready_rx) = mpsc::channel::<Result<u32, String>>();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let pid_file = data_dir.join("postmaster.pid");
        let supervisor = std::thread::Builder::new()
            .name("tenantguard-postgres".into())
            .spawn(move || supervise(cmd, &pid_file, ready_tx, stop_rx))
            .map_err(io("spawning the supervisor thread"))?;

        let failed = |reason: String| ClusterError::Start {
            reason,
            log: log_path.display().to_string(),
            tail: tail(&log_path, 30),
        };
        let pid = match ready_rx.recv() {
            Ok(Ok(pid)) => pid,
            Ok(Err(reason)) => {
                let _ = supervisor.join();
                return Err(failed(reason));
            }
            Err(_) => return Err(failed("supervisor thread ended".into())),
        };
        tracing::info!(data_dir = %data_dir.display(), socket_dir = %socket_dir.display(), port, "private PostgreSQL is ready");
        Ok(Cluster {
            data_dir,
            socket_dir,
            port,
            tcp: opts.listen_tcp,
            pid,
            stop: Some(stop_tx),
            supervisor: Some(supervisor),
            _socket_tmp: socket_tmp,
            _tmp: tmp,
        })
    }

    /// The directory that holds the server's unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// The server's port (also names the unix socket file).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Connection settings for `user` on database `dbname` over the unix socket.
    pub fn config(&self, user: &str, dbname: &str) -> tokio_postgres::Config {
        let mut c = tokio_postgres::Config::new();
        c.host_path(&self.socket_dir)
            .port(self.port)
            .user(user)
            .dbname(dbname)
            .application_name("tenantguard");
        c
    }

    /// A `postgresql://` URL for `user` on `dbname` over the unix socket, which both
    /// tenantguard and `psql` accept.
    pub fn url(&self, user: &str, dbname: &str) -> String {
        format!(
            "postgresql://{}@{}:{}/{}",
            user,
            percent_encode_path(&self.socket_dir),
            self.port,
            dbname
        )
    }

    /// A `postgresql://` URL over TCP, when the cluster listens on `127.0.0.1`.
    pub fn tcp_url(&self, user: &str, dbname: &str) -> Option<String> {
        self.tcp
            .then(|| format!("postgresql://{user}@127.0.0.1:{}/{dbname}", self.port))
    }

    /// Stops the server (fast shutdown: sessions are disconnected, nothing committed is lost)
    /// and waits for it to exit.
    pub fn stop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.supervisor.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The pid of a live postmaster that holds `data_dir`'s lock file, if any. A stale file (its
/// pid gone, a zombie, or reused by something that is not PostgreSQL) is left to the new
/// postmaster, which recognises and replaces it.
fn previous_postmaster(data_dir: &Path) -> Option<i32> {
    let text = std::fs::read_to_string(data_dir.join("postmaster.pid")).ok()?;
    let pid: i32 = text.lines().next()?.trim().parse().ok()?;
    if pid <= 0 {
        return None;
    }
    // /proc/<pid>/stat: "<pid> (<comm>) <state> …"
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (comm, rest) = stat.split_once(") ")?;
    let comm = comm.split_once('(')?.1;
    let alive = !rest.starts_with('Z') && !rest.starts_with('X');
    (alive && (comm.starts_with("postgres") || comm.starts_with("postmaster"))).then_some(pid)
}

/// Waits, up to `timeout`, until no live postmaster holds `data_dir`.
fn wait_for_previous(data_dir: &Path, timeout: Duration, log: &Path) -> Result<(), ClusterError> {
    let Some(pid) = previous_postmaster(data_dir) else {
        return Ok(());
    };
    tracing::warn!(
        pid,
        data_dir = %data_dir.display(),
        "a previous PostgreSQL is still running on this data directory (shutting down after \
         its owner died?); waiting up to {} s for it to finish",
        timeout.as_secs()
    );
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        if previous_postmaster(data_dir).is_none() {
            tracing::info!(pid, "the previous PostgreSQL has exited");
            return Ok(());
        }
    }
    Err(ClusterError::Start {
        reason: format!(
            "a previous PostgreSQL (pid {pid}) still holds {} after {} s; stop it \
             (`kill -INT {pid}`) or wait for it to finish, then start again",
            data_dir.join("postmaster.pid").display(),
            timeout.as_secs()
        ),
        log: log.display().to_string(),
        tail: tail(log, 30),
    })
}

/// Runs on the supervisor thread: spawn, report readiness, wait for the stop signal, shut down.
fn supervise(
    mut cmd: Command,
    pid_file: &Path,
    ready: mpsc::Sender<Result<u32, String>>,
    stop: mpsc::Receiver<()>,
) {
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            let _ = ready.send(Err(format!("could not run postgres: {e}")));
            return;
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            let _ = ready.send(Err(format!("postgres exited early ({status})")));
            return;
        }
        // The last line of postmaster.pid is the server status; "ready" means it accepts
        // connections (PostgreSQL >= 10).
        if std::fs::read_to_string(pid_file)
            .map(|s| s.lines().nth(7).map(str::trim) == Some("ready"))
            .unwrap_or(false)
        {
            break;
        }
        if Instant::now() > deadline {
            shutdown(&mut child);
            let _ = ready.send(Err("not ready after 60 s".into()));
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    if ready.send(Ok(child.id())).is_err() {
        shutdown(&mut child);
        return;
    }
    // Returns on an explicit stop and also when the Cluster is gone without sending one.
    let _ = stop.recv();
    shutdown(&mut child);
}

fn shutdown(child: &mut Child) {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pid = Pid::from_raw(child.id() as i32);
    for (signal, wait) in [
        (Signal::SIGINT, Duration::from_secs(30)), // fast shutdown
        (Signal::SIGQUIT, Duration::from_secs(5)), // immediate shutdown
        (Signal::SIGKILL, Duration::from_secs(5)),
    ] {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let _ = kill(pid, signal);
        let until = Instant::now() + wait;
        while Instant::now() < until {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn initdb(
    bins: &Binaries,
    data_dir: &Path,
    base: &Path,
    run_as: Option<&nix::unistd::User>,
    durability: Durability,
) -> Result<(), ClusterError> {
    let mut cmd = Command::new(bins.program("initdb"));
    cmd.arg("-D")
        .arg(data_dir)
        .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C"])
        // Trust only on the private socket (0700); TCP needs a password.
        .args(["--auth-local=trust", "--auth-host=scram-sha-256"])
        .current_dir(base)
        .stdin(Stdio::null());
    if durability == Durability::Throwaway {
        cmd.arg("--no-sync");
    }
    if let Some(u) = run_as {
        cmd.uid(u.uid.as_raw()).gid(u.gid.as_raw());
    }
    let out = cmd.output().map_err(io("running initdb"))?;
    if !out.status.success() {
        return Err(ClusterError::Initdb {
            status: out.status.to_string(),
            output: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(())
}

/// The OS user to run the server as: `None` when not root.
fn server_user() -> Result<Option<nix::unistd::User>, ClusterError> {
    if !nix::unistd::geteuid().is_root() {
        return Ok(None);
    }
    let name = std::env::var("TENANTGUARD_PG_USER").unwrap_or_else(|_| "postgres".into());
    match nix::unistd::User::from_name(&name) {
        Ok(Some(u)) if !u.uid.is_root() => Ok(Some(u)),
        _ => Err(ClusterError::NoServerUser(name)),
    }
}

/// The server user must be able to traverse every ancestor of its directory; a checkout
/// under `/root` (mode 700) is the usual trap when running as root.
fn check_reachable(dir: &Path, user: &nix::unistd::User) -> Result<(), ClusterError> {
    use std::os::unix::fs::MetadataExt;
    for ancestor in dir.ancestors().skip(1) {
        let Ok(meta) = std::fs::metadata(ancestor) else {
            continue;
        };
        let mode = meta.mode();
        let ok = mode & 0o001 != 0
            || (meta.uid() == user.uid.as_raw() && mode & 0o100 != 0)
            || (meta.gid() == user.gid.as_raw() && mode & 0o010 != 0);
        if !ok {
            return Err(ClusterError::Io {
                context: format!(
                    "the server runs as OS user `{}` (initdb refuses root), which cannot reach {}: \
                     {} is not searchable by it. Choose a directory it can reach (for example \
                     under /var/tmp), or `chmod o+x {}`",
                    user.name,
                    dir.display(),
                    ancestor.display(),
                    ancestor.display()
                ),
                source: std::io::Error::from(std::io::ErrorKind::PermissionDenied),
            });
        }
    }
    Ok(())
}

fn chown(path: &Path, user: &nix::unistd::User) -> Result<(), ClusterError> {
    nix::unistd::chown(path, Some(user.uid), Some(user.gid)).map_err(|e| ClusterError::Io {
        context: format!("chown {} to {}", path.display(), user.name),
        source: e.into(),
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), ClusterError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("chmod {}", path.display())))
}

fn free_port() -> Result<u16, ClusterError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(io("finding a free port"))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(io("finding a free port"))
}

fn tail(path: &Path, lines: usize) -> String {
    let mut s = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut s);
    }
    let all: Vec<&str> = s.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Percent-encodes a socket directory for the host part of a `postgresql://` URL.
pub(crate) fn percent_encode_path(p: &Path) -> String {
    let mut out = String::new();
    for b in p.as_os_str().as_encoded_bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(*b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}
