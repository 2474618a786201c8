//! Where banger keeps things, following the XDG base directories.
//!
//! Every location honours `XDG_CONFIG_HOME`, `XDG_STATE_HOME`,
//! `XDG_CACHE_HOME` and `XDG_RUNTIME_DIR`, so a user or a test can isolate a
//! whole banger installation by setting four variables.
//!
//! ```text
//! $XDG_CONFIG_HOME/banger/config.toml
//! $XDG_STATE_HOME/banger/   banger.db, bangerd.log, vms/<id>/, images/<id>/, kernels/<name>/, ssh/
//! $XDG_CACHE_HOME/banger/   build trees, downloads, OCI blobs
//! $XDG_RUNTIME_DIR/banger/  bangerd.sock, bangerd.lock, vms/<id>/ (engine sockets)
//!                           (fallback: /tmp/banger-<uid>/; `BANGER_RUNTIME_DIR`
//!                           overrides; /run/banger when `banger system install`
//!                           installed banger for this user)
//! ```

use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What can go wrong finding or making banger's directories.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error("HOME is not set; set HOME or the XDG_*_HOME variables")]
    NoHome,
    #[error("Cannot create {}: {source}", .path.display())]
    Create { path: PathBuf, source: std::io::Error },
    #[error("Cannot inspect {}: {source}", .path.display())]
    Inspect { path: PathBuf, source: std::io::Error },
    #[error("{} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    #[error("{} is owned by uid {owner}, not by you (uid {uid}); refusing to use it", .path.display())]
    NotOwned { path: PathBuf, owner: u32, uid: u32 },
    #[error("Cannot chmod 0700 {}: {source}", .path.display())]
    Chmod { path: PathBuf, source: std::io::Error },
}

type Result<T> = std::result::Result<T, PathsError>;

/// The four roots of a banger installation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub runtime_dir: PathBuf,
}

impl Paths {
    /// Resolves the paths from the environment, as both the CLI and the
    /// daemon do, so that they agree on the socket without talking.
    pub fn from_env() -> Result<Paths> {
        let home = || -> Result<PathBuf> {
            std::env::var_os("HOME").filter(|h| !h.is_empty()).map(PathBuf::from).ok_or(PathsError::NoHome)
        };
        let xdg = |var: &str, fallback: &str| -> Result<PathBuf> {
            match std::env::var_os(var).filter(|v| !v.is_empty()).map(PathBuf::from) {
                // The spec says relative values are invalid and must be ignored.
                Some(p) if p.is_absolute() => Ok(p.join("banger")),
                _ => Ok(home()?.join(fallback).join("banger")),
            }
        };
        let explicit = std::env::var_os("BANGER_RUNTIME_DIR").filter(|v| !v.is_empty()).map(PathBuf::from);
        let runtime_dir = match (explicit, std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty())) {
            (Some(p), _) if p.is_absolute() => p,
            // Installed with `banger system install` for this user: the
            // daemon runs as bangerd.service with its socket in /run/banger.
            _ if system_install_for_me() => PathBuf::from(SYSTEM_RUNTIME_DIR),
            (_, Some(p)) if Path::new(&p).is_absolute() => PathBuf::from(p).join("banger"),
            _ => PathBuf::from(format!("/tmp/banger-{}", nix::unistd::getuid())),
        };
        Ok(Paths {
            config_dir: xdg("XDG_CONFIG_HOME", ".config")?,
            state_dir: xdg("XDG_STATE_HOME", ".local/state")?,
            cache_dir: xdg("XDG_CACHE_HOME", ".cache")?,
            runtime_dir,
        })
    }

    /// Whether these are the paths of a daemon systemd runs
    /// (`banger system install`): nobody but systemd starts or replaces it.
    pub fn is_service(&self) -> bool {
        self.runtime_dir == Path::new(SYSTEM_RUNTIME_DIR)
    }

    pub fn config_file(&self) -> PathBuf {
        self.config_dir.join("config.toml")
    }
    pub fn socket(&self) -> PathBuf {
        self.runtime_dir.join("bangerd.sock")
    }
    pub fn lock_file(&self) -> PathBuf {
        self.runtime_dir.join("bangerd.lock")
    }
    pub fn db(&self) -> PathBuf {
        self.state_dir.join("banger.db")
    }
    pub fn daemon_log(&self) -> PathBuf {
        self.state_dir.join("bangerd.log")
    }
    pub fn vms_dir(&self) -> PathBuf {
        self.state_dir.join("vms")
    }
    pub fn vm_dir(&self, id: &str) -> PathBuf {
        self.vms_dir().join(id)
    }
    /// Short-lived per-VM sockets live under the runtime dir: Unix socket
    /// paths are limited to 108 bytes and state dirs can be long.
    pub fn vm_run_dir(&self, id: &str) -> PathBuf {
        self.runtime_dir.join("vms").join(id)
    }
    pub fn images_dir(&self) -> PathBuf {
        self.state_dir.join("images")
    }
    pub fn kernels_dir(&self) -> PathBuf {
        self.state_dir.join("kernels")
    }
    pub fn ssh_dir(&self) -> PathBuf {
        self.state_dir.join("ssh")
    }

    /// Creates the state, cache and runtime dirs. The runtime dir holds the
    /// daemon's socket, so it must be ours and closed to everybody else; a
    /// pre-existing one owned by another user (a squatter in /tmp) is refused.
    pub fn ensure(&self) -> Result<()> {
        // Private whatever the umask, and tightened if an older banger made
        // them open: they hold guest disks, logs and the database.
        for dir in [&self.state_dir, &self.cache_dir] {
            ensure_private_dir(dir)?;
        }
        for dir in [self.vms_dir(), self.images_dir(), self.kernels_dir()] {
            std::fs::create_dir_all(&dir)
                .map_err(|source| PathsError::Create { path: dir.clone(), source })?;
        }
        ensure_private_dir(&self.runtime_dir)
    }
}

/// The runtime dir of a system-installed daemon (bangerd.service's
/// `RuntimeDirectory=banger`).
pub const SYSTEM_RUNTIME_DIR: &str = "/run/banger";

/// Where `banger system install` records the installation (root's, 0644).
pub const INSTALL_FILE: &str = "/etc/banger/install.toml";

/// Whether `banger system install` installed banger for the current user
/// (its install file names our uid). Only the owner is read here; the
/// daemon and the root helper load and check the whole file.
pub fn system_install_for_me() -> bool {
    #[derive(serde::Deserialize)]
    struct Owner {
        uid: u32,
    }
    std::fs::read_to_string(INSTALL_FILE)
        .ok()
        .and_then(|text| toml::from_str::<Owner>(&text).ok())
        .is_some_and(|o| o.uid == nix::unistd::getuid().as_raw())
}

/// Creates `dir` with mode 0700 if missing, then checks that it is a real
/// directory owned by us and tightens its mode to 0700.
pub fn ensure_private_dir(dir: &Path) -> Result<()> {
    if let Some(parent) = dir.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|source| PathsError::Create { path: parent.into(), source })?;
    }
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(source) => return Err(PathsError::Create { path: dir.into(), source }),
    }
    let meta =
        std::fs::symlink_metadata(dir).map_err(|source| PathsError::Inspect { path: dir.into(), source })?;
    if !meta.is_dir() {
        return Err(PathsError::NotADirectory(dir.into()));
    }
    let uid = nix::unistd::getuid().as_raw();
    if meta.uid() != uid {
        return Err(PathsError::NotOwned { path: dir.into(), owner: meta.uid(), uid });
    }
    if meta.mode() & 0o777 != 0o700 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|source| PathsError::Chmod { path: dir.into(), source })?;
    }
    Ok(())
}

/// A file's modification time in ms since the epoch, 0 when unknown: how
/// the daemon reports its own executable and how a client tells that the
/// executable changed since (a rebuild or reinstall).
pub fn mtime_ms(path: &Path) -> i64 {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_millis() as i64)
}

/// Finds an executable: the configured path if given (and executable),
/// else `name` in a directory of PATH, else in one of `extra`. The one
/// place banger looks for the programs it runs.
pub fn find_executable(configured: Option<&Path>, name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    if let Some(p) = configured {
        return is_executable(p).then(|| p.to_path_buf());
    }
    let path_dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    path_dirs.iter().chain(extra).map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_dir_is_0700_and_owned() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path().join("run/banger");
        ensure_private_dir(&d).unwrap();
        let m = std::fs::metadata(&d).unwrap();
        assert_eq!(m.mode() & 0o777, 0o700);
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().mode() & 0o777, 0o700);
        let f = tmp.path().join("file");
        std::fs::write(&f, b"").unwrap();
        assert!(ensure_private_dir(&f).is_err());
    }
}
