//! `bangerd`, the banger daemon: one per user, owner of all banger state.
//!
//! - [`paths`] and [`config`]: where things live and how they are set up.
//! - [`service`]: every operation, on the [`service::Daemon`] context.
//! - [`server`]: the HTTP/JSON API on a Unix socket, a thin layer over
//!   `service`.
//!
//! Tests start the real daemon in-process with [`Server::bind`] on temp
//! directories and drive it through its socket or its service methods.

pub mod catalog;
pub mod config;
pub mod entry;
pub mod error;
pub mod helper;
pub mod install;
pub mod paths;
pub mod privileged;
pub mod server;
pub mod service;
pub mod util;

use anyhow::Context;
use nix::fcntl::{Flock, FlockArg};
use service::Daemon;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;

/// A daemon bound to its socket, not yet serving.
pub struct Server {
    pub daemon: Arc<Daemon>,
    listener: tokio::net::UnixListener,
    _lock: (Flock<std::fs::File>, Flock<std::fs::File>),
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("daemon", &self.daemon).finish_non_exhaustive()
    }
}

impl Server {
    /// Opens the state, takes the single-daemon lock, reconciles VMs left
    /// from an earlier daemon, and binds the 0600 socket.
    pub async fn bind(paths: paths::Paths, config: config::Config) -> anyhow::Result<Server> {
        let daemon = Daemon::open(paths, config)?;
        let lock = take_lock(&daemon.paths.lock_file())?;
        // Two daemons with different runtime dirs (a user-mode one and the
        // service) must not share one state dir either.
        let state_lock = take_lock(&daemon.paths.state_dir.join("bangerd.lock"))?;
        let socket = daemon.paths.socket();
        // We hold the lock, so any socket file left is from a dead daemon.
        match std::fs::remove_file(&socket) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(e).with_context(|| format!("Cannot remove stale socket {}", socket.display()))
            }
        }
        let listener = tokio::net::UnixListener::bind(&socket)
            .with_context(|| format!("Cannot listen on {}", socket.display()))?;
        std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("Cannot chmod 0600 {}", socket.display()))?;
        daemon.reconcile().await;
        tracing::info!(socket = %socket.display(), build = %banger_api::build_id(), "bangerd ready");
        Ok(Server { daemon, listener, _lock: (lock, state_lock) })
    }

    /// Serves until `shutdown` resolves or a client asks the daemon to stop.
    /// VMs keep running after it returns.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let socket = self.daemon.paths.socket();
        self.daemon.spawn_dns();
        server::serve(self.listener, self.daemon.clone(), shutdown).await?;
        let _ = std::fs::remove_file(&socket);
        tracing::info!("bangerd stopped");
        Ok(())
    }
}

/// One daemon per runtime dir and per state dir: an exclusive `flock` on
/// `bangerd.lock` in each, released by the kernel when the process dies,
/// however it dies.
fn take_lock(path: &std::path::Path) -> anyhow::Result<Flock<std::fs::File>> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("Cannot open {}", path.display()))?;
    let mut lock = Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(f, _)| {
        let holder = std::fs::read_to_string(path).unwrap_or_default();
        drop(f);
        anyhow::anyhow!(
            "Another bangerd (pid {}) already holds {}; stop it first (`banger daemon stop`)",
            holder.trim(),
            path.display()
        )
    })?;
    lock.set_len(0)?;
    write!(&mut *lock, "{}", std::process::id())?;
    Ok(lock)
}
