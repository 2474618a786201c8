//! The daemon's service layer: every operation any transport offers.
//!
//! The HTTP handlers in [`crate::server`] only parse and validate a request
//! and call one method here; nothing here knows about HTTP. Methods are
//! grouped by object: [`vms`], [`images`], [`kernels`].
//!
//! Locks, always taken in this order (see ARCHITECTURE.md):
//! 1. a per-VM lock (`vm_lock`), held across one lifecycle operation;
//! 2. a per-name lock for images/kernels (`name_lock`), held across an
//!    import, build or pull of that name;
//! 3. the reservation lock, held only while a name and IP are checked and the
//!    VM row is inserted — never across I/O that can block for long.
//!
//! The store's own mutex and the runtime map's mutex are innermost and are
//! never held across an await.

pub mod archives;
pub mod builds;
pub mod dns;
pub mod doctor;
pub mod everyday;
pub mod forwards;
pub mod guest;
pub mod images;
pub mod jails;
pub mod kernels;
pub mod lifecycle;
pub mod logs;
pub mod names;
pub mod nat;
pub mod progress;
pub mod pull;
pub mod reconcile;
pub mod registry;
pub mod stop;
pub mod taps;
pub mod vms;

pub use progress::Progress;

use crate::config::Config;
use crate::paths::Paths;
use banger_store::Store;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// Named async locks created on demand.
#[derive(Default)]
pub struct LockMap {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl LockMap {
    /// Waits for and takes the lock named `key`.
    pub async fn lock(&self, key: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let m = {
            let mut map = self.locks.lock().unwrap_or_else(|e| e.into_inner());
            // Drop entries nobody holds or waits for, so the map stays small.
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(key.to_string()).or_default().clone()
        };
        m.lock_owned().await
    }
}

/// The daemon: configuration, state and the locks that order access to it.
pub struct Daemon {
    /// Where its files are, its configuration and its records: public, so
    /// the in-process integration tests can set the scene and look.
    pub paths: Paths,
    pub config: Config,
    pub store: Store,
    /// Per-VM lifecycle locks, keyed by VM id.
    pub(crate) vm_locks: LockMap,
    /// Per-name locks for image and kernel imports/builds/pulls.
    pub(crate) name_locks: LockMap,
    /// Short lock around name + IP reservation.
    pub(crate) reserve_lock: tokio::sync::Mutex<()>,
    pub(crate) started_at_ms: i64,
    /// This daemon's executable and its mtime at start (see `DaemonInfo`).
    pub(crate) exe: (String, i64),
    /// Live engine processes, keyed by VM id.
    pub(crate) runtimes: Mutex<HashMap<String, Arc<lifecycle::Runtime>>>,
    pub(crate) generation: std::sync::atomic::AtomicU64,
    /// Whether this daemon has set up the bridge already.
    pub(crate) bridge_ready: std::sync::atomic::AtomicBool,
    /// Ready taps on the bridge (see `taps`), and the one refill at a time.
    pub(crate) tap_pool: Mutex<Vec<String>>,
    pub(crate) tap_refill: tokio::sync::Mutex<()>,
    /// Who does the privileged network work (in-process as root, else the
    /// root helper).
    pub(crate) privops: crate::privileged::PrivOps,
    /// Whether `.vm` DNS is served: unset until [`Daemon::spawn_dns`]
    /// has tried to bind, then `Ok` or why not. `.vm` is routed to the
    /// port only while it is ours.
    pub(crate) dns: std::sync::OnceLock<std::result::Result<(), String>>,
    shutdown: Notify,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon").field("paths", &self.paths).finish_non_exhaustive()
    }
}

impl Daemon {
    /// Opens the state in `paths` (creating directories and migrating the
    /// database). Does not bind a socket; see [`crate::server`].
    pub fn open(paths: Paths, config: Config) -> anyhow::Result<Arc<Daemon>> {
        paths.ensure()?;
        let store = Store::open(&paths.db())?;
        let policy = crate::privileged::Policy {
            owner_uid: nix::unistd::getuid().as_raw(),
            bridge: config.bridge.clone(),
            cidr: config.cidr,
            dirs: vec![paths.state_dir.clone(), paths.runtime_dir.clone()],
            state_dir: paths.state_dir.clone(),
            // A root daemon makes its jails itself (`service::jails`).
            jail: None,
        };
        let helper_socket = std::env::var_os("BANGER_HELPER_SOCKET")
            .filter(|v| !v.is_empty())
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| crate::privileged::DEFAULT_HELPER_SOCKET.into());
        Ok(Arc::new(Daemon {
            privops: crate::privileged::PrivOps::new(policy, helper_socket),
            paths,
            config,
            store,
            vm_locks: LockMap::default(),
            name_locks: LockMap::default(),
            reserve_lock: tokio::sync::Mutex::new(()),
            started_at_ms: crate::util::now_ms(),
            exe: own_exe(),
            runtimes: Mutex::new(HashMap::new()),
            generation: std::sync::atomic::AtomicU64::new(0),
            bridge_ready: std::sync::atomic::AtomicBool::new(false),
            tap_pool: Mutex::new(Vec::new()),
            tap_refill: tokio::sync::Mutex::new(()),
            dns: std::sync::OnceLock::new(),
            shutdown: Notify::new(),
        }))
    }

    /// Asks the server to stop accepting requests and exit. Running VMs are
    /// left running: their engines live in their own sessions.
    pub fn request_shutdown(&self) {
        self.shutdown.notify_waiters();
        self.shutdown.notify_one();
    }

    /// Resolves when a shutdown was requested.
    pub async fn shutdown_requested(&self) {
        self.shutdown.notified().await
    }
}

/// The running executable and its modification time in ms.
fn own_exe() -> (String, i64) {
    let Ok(exe) = std::env::current_exe() else { return (String::new(), 0) };
    let mtime = banger_paths::mtime_ms(&exe);
    (exe.display().to_string(), mtime)
}
