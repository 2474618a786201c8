//! Reaching the daemon: started on first use, replaced when it is of
//! another build (or its binary was rebuilt since it started), never
//! touched when systemd runs it.

use crate::{Client, Endpoint, Error, Result};
use banger_api::{ApiError, DaemonInfo, ShutdownStarted};
use http::Method;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How long to wait for a freshly started daemon to answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Whether a daemon answers.
enum Reach {
    /// Nobody listens: no socket file, or a stale one.
    Down,
    Up(Box<DaemonInfo>),
}

impl Client {
    /// A client that does not reach out until its first call (and never
    /// starts a daemon).
    pub fn new(endpoint: Endpoint) -> Client {
        Client { endpoint }
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// A client for a daemon of this very build, starting (or replacing)
    /// the daemon as needed. What it did is said on stderr.
    pub async fn connect(endpoint: Endpoint) -> Result<Client> {
        let c = Client::new(endpoint);
        if let Some(r) = &c.endpoint.remote {
            // The far side's `dial-stdio` starts its daemon; a daemon of
            // another version there is refused, never replaced from here.
            let info = c.version().await?;
            crate::remote::check_versions(&r.remote, &info.version)?;
            return Ok(c);
        }
        let ours = banger_api::build_id();
        match c.probe_patiently().await? {
            Reach::Up(info) if info.build_id == ours && !rebuilt(&info) => return Ok(c),
            // A service daemon is systemd's to restart, not ours.
            Reach::Up(info) if c.endpoint.service => {
                eprintln!(
                    "banger: bangerd.service runs build {}, this CLI is {ours}; restart it with `sudo systemctl restart bangerd`",
                    info.build_id,
                );
                return Ok(c);
            }
            Reach::Up(info) if info.build_id == ours => {
                eprintln!(
                    "banger: replacing daemon (pid {}): {} was rebuilt since it started",
                    info.pid, info.exe
                );
                c.stop_daemon().await?;
            }
            Reach::Up(info) => {
                eprintln!(
                    "banger: replacing daemon of build {} (pid {}) with {ours}",
                    info.build_id, info.pid
                );
                c.stop_daemon().await?;
            }
            Reach::Down => {}
        }
        c.start_daemon().await?;
        Ok(c)
    }

    /// The running daemon's identity, or `None` when none answers.
    pub async fn info(&self) -> Result<Option<DaemonInfo>> {
        Ok(match self.probe_patiently().await? {
            Reach::Up(i) => Some(*i),
            Reach::Down => None,
        })
    }

    /// Asks the daemon to exit (its VMs keep running) and waits until its
    /// socket stops answering.
    pub async fn stop_daemon(&self) -> Result<()> {
        let _: ShutdownStarted = self.post("/v1/daemon/shutdown", &crate::ops::NoBody {}).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // A dying daemon may accept and drop connections: keep polling.
            if let Ok(Reach::Down) = self.probe().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(Error::Daemon("the daemon did not stop within 10 s".into()))
    }

    /// Like [`Client::probe`], but rides out a daemon that is shutting
    /// down (accepted the connection, then closed it unanswered).
    async fn probe_patiently(&self) -> Result<Reach> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match self.probe().await {
                Err(Error::Http(_)) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                other => return other,
            }
        }
    }

    async fn probe(&self) -> Result<Reach> {
        match self.send(Method::GET, "/v1/version", None, false).await {
            Ok(resp) => Ok(Reach::Up(Box::new(crate::transport::decode(resp).await?))),
            Err(Error::Unreachable { source, .. })
                if matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(Reach::Down)
            }
            Err(e) => Err(e),
        }
    }

    async fn start_daemon(&self) -> Result<()> {
        if self.endpoint.service {
            // Installed as a service: systemd starts it, not us.
            let msg =
                format!("bangerd.service is not running (no socket at {})", self.endpoint.socket.display());
            return Err(ApiError::unavailable(msg)
                .with_hint("start it with `sudo systemctl start bangerd-root bangerd`; `banger system status` shows both")
                .into());
        }
        let bin = daemon_binary().ok_or_else(|| {
            Error::Daemon(
                "Cannot find the bangerd binary (looked next to banger, in $BANGER_DAEMON_BIN and on PATH)"
                    .into(),
            )
        })?;
        let log_path = &self.endpoint.daemon_log;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(log_path)
            .map_err(|e| Error::Daemon(format!("Cannot open the daemon log {}: {e}", log_path.display())))?;
        // A log from an older banger may be open to others.
        log.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        let mut cmd = std::process::Command::new(&bin);
        cmd.stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
        // In a session of its own: the daemon outlives this process and
        // ignores its terminal's Ctrl-C.
        // SAFETY: the closure runs in the forked child before exec and only
        // calls setsid(2), which is async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                Ok(())
            });
        }
        let mut child =
            cmd.spawn().map_err(|e| Error::Daemon(format!("Cannot start {}: {e}", bin.display())))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Reach::Up(_) = self.probe().await? {
                // The daemon lives on in its own session; reap it if it
                // exits while we still run, without waiting here.
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                // Another client may have started a daemon at the same moment.
                if let Reach::Up(_) = self.probe().await? {
                    return Ok(());
                }
                return Err(Error::Daemon(format!(
                    "bangerd exited right after starting ({status}):\n{}\nfull log: {}",
                    tail_lines(log_path, 5),
                    log_path.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(Error::Daemon(format!(
                    "bangerd did not answer within {} s; see {}",
                    START_TIMEOUT.as_secs(),
                    log_path.display()
                )));
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Whether the daemon binary we would start is the running daemon's
/// executable, changed on disk since it started (a rebuild or reinstall).
fn rebuilt(info: &DaemonInfo) -> bool {
    let Some(bin) = daemon_binary() else { return false };
    let same = std::fs::canonicalize(&bin)
        .ok()
        .zip(std::fs::canonicalize(&info.exe).ok())
        .is_some_and(|(a, b)| a == b);
    same && info.exe_mtime_ms != 0 && banger_paths::mtime_ms(&bin) != info.exe_mtime_ms
}

/// The daemon a client starts: `$BANGER_DAEMON_BIN`, `bangerd` next to
/// this executable, or on PATH.
pub fn daemon_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BANGER_DAEMON_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("bangerd"))) {
        if p.is_file() {
            return Some(p);
        }
    }
    banger_paths::find_executable(None, "bangerd", &[])
}

fn tail_lines(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
