//! Locating the installed PostgreSQL server binaries.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::ClusterError;

/// Where the PostgreSQL server programs (`initdb`, `postgres`) live.
#[derive(Debug, Clone)]
pub struct Binaries {
    dir: PathBuf,
}

impl Binaries {
    /// Finds the binaries: `PG_BIN`, then `pg_config --bindir`, then the newest of
    /// Debian's `/usr/lib/postgresql/<version>/bin`, then `postgres` on `PATH`.
    pub fn locate() -> Result<Self, ClusterError> {
        Self::locate_with(std::env::var_os("PG_BIN").as_deref())
    }

    /// [`Binaries::locate`] with an explicit `PG_BIN` value.
    pub fn locate_with(pg_bin: Option<&std::ffi::OsStr>) -> Result<Self, ClusterError> {
        let mut tried = Vec::new();
        if let Some(dir) = pg_bin {
            // An explicit setting that is wrong is an error, not something to paper over.
            let dir = PathBuf::from(dir);
            return Self::at(&dir).ok_or_else(|| ClusterError::BinariesNotFound {
                tried: format!("PG_BIN={} (no initdb and postgres there)", dir.display()),
            });
        }
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            if out.status.success() {
                let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
                if let Some(b) = Self::at(&dir) {
                    return Ok(b);
                }
                tried.push(format!("pg_config --bindir ({})", dir.display()));
            }
        } else {
            tried.push("pg_config (not on PATH)".to_string());
        }
        if let Some(b) = newest_debian(Path::new("/usr/lib/postgresql")) {
            return Ok(b);
        }
        tried.push("/usr/lib/postgresql/*/bin".to_string());
        if let Some(dir) = which("postgres").and_then(|p| p.parent().map(Path::to_path_buf)) {
            if let Some(b) = Self::at(&dir) {
                return Ok(b);
            }
        }
        tried.push("postgres on PATH".to_string());
        Err(ClusterError::BinariesNotFound {
            tried: tried.join(", "),
        })
    }

    /// Uses `dir` if it holds both `initdb` and `postgres`.
    pub fn at(dir: &Path) -> Option<Self> {
        (dir.join("initdb").is_file() && dir.join("postgres").is_file()).then(|| Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Path of one program in the binary directory.
    pub fn program(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The binary directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

fn newest_debian(root: &Path) -> Option<Binaries> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse::<u32>().ok()?;
            Some((v, e.path().join("bin")))
        })
        .collect();
    versions.sort();
    versions
        .into_iter()
        .rev()
        .find_map(|(_, d)| Binaries::at(&d))
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
        .map(|p| p.canonicalize().unwrap_or(p))
}
