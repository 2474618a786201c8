//! The daemon client: HTTP/1.1 over the daemon's Unix socket, with the
//! daemon started on first use and replaced when it is of another build.

use anyhow::{bail, Context};
use banger_api::events::NDJSON;
use banger_api::{ApiError, DaemonInfo, Event};
use bangerd::paths::Paths;
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// How long to wait for a freshly started daemon to answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Clone)]
pub struct Client {
    pub paths: Paths,
}

/// Why a connection attempt failed.
enum Reach {
    /// Nobody listens: no socket file, or a stale one.
    Down,
    Up(Box<DaemonInfo>),
}

impl Client {
    pub fn new(paths: Paths) -> Client {
        Client { paths }
    }

    /// A client for a daemon of this very build, starting (or replacing) the
    /// daemon as needed.
    pub async fn connect(paths: Paths) -> anyhow::Result<Client> {
        let c = Client::new(paths);
        let service = c.paths.is_service();
        match c.probe_patiently().await? {
            Reach::Up(info) if info.build_id == banger_api::build_id() && !rebuilt(&info) => return Ok(c),
            // A service daemon is systemd's to restart, not ours.
            Reach::Up(info) if service => {
                eprintln!(
                    "banger: bangerd.service runs build {}, this CLI is {}; restart it with `sudo systemctl restart bangerd`",
                    info.build_id,
                    banger_api::build_id()
                );
                return Ok(c);
            }
            Reach::Up(info) if info.build_id == banger_api::build_id() => {
                eprintln!(
                    "banger: replacing daemon (pid {}): {} was rebuilt since it started",
                    info.pid, info.exe
                );
                c.stop_daemon().await?;
            }
            Reach::Up(info) => {
                eprintln!(
                    "banger: replacing daemon of build {} (pid {}) with {}",
                    info.build_id,
                    info.pid,
                    banger_api::build_id()
                );
                c.stop_daemon().await?;
            }
            Reach::Down => {}
        }
        c.start_daemon().await?;
        Ok(c)
    }

    /// The running daemon's identity, or `None` when none answers.
    pub async fn info(&self) -> anyhow::Result<Option<DaemonInfo>> {
        Ok(match self.probe_patiently().await? {
            Reach::Up(i) => Some(*i),
            Reach::Down => None,
        })
    }

    /// Like [`Client::probe`], but rides out a daemon that is shutting down
    /// (accepted the connection, then closed it unanswered).
    async fn probe_patiently(&self) -> anyhow::Result<Reach> {
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match self.probe().await {
                Err(e) if Instant::now() < deadline && e.downcast_ref::<hyper::Error>().is_some() => {
                    tokio::time::sleep(Duration::from_millis(25)).await;
                }
                other => return other,
            }
        }
    }

    async fn probe(&self) -> anyhow::Result<Reach> {
        match self.send(Method::GET, "/v1/version", None, false).await {
            Ok(resp) => Ok(Reach::Up(Box::new(decode(resp).await?))),
            Err(e) if is_down(&e) => Ok(Reach::Down),
            Err(e) => Err(e),
        }
    }

    /// Asks the daemon to exit and waits until its socket stops answering.
    pub async fn stop_daemon(&self) -> anyhow::Result<()> {
        let _: serde_json::Value = self.post("/v1/daemon/shutdown", &serde_json::json!({})).await?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            // A dying daemon may accept and drop connections: keep polling.
            if let Ok(Reach::Down) = self.probe().await {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        bail!("the daemon did not stop within 10 s")
    }

    async fn start_daemon(&self) -> anyhow::Result<()> {
        if self.paths.is_service() {
            // Installed as a service: systemd starts it, not us.
            let msg =
                format!("bangerd.service is not running (no socket at {})", self.paths.socket().display());
            return Err(ApiError::unavailable(msg)
                .with_hint("start it with `sudo systemctl start bangerd-root bangerd`; `banger system status` shows both")
                .into());
        }
        let bin = daemon_binary().context(
            "Cannot find the bangerd binary (looked next to banger, in $BANGER_DAEMON_BIN and on PATH)",
        )?;
        bangerd::paths::ensure_private_dir(&self.paths.state_dir)?;
        let log_path = self.paths.daemon_log();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&log_path)
            .with_context(|| format!("Cannot open the daemon log {}", log_path.display()))?;
        // A log from an older banger may be open to others.
        log.set_permissions(std::fs::Permissions::from_mode(0o600))?;
        let mut cmd = std::process::Command::new(&bin);
        cmd.stdin(std::process::Stdio::null()).stdout(log.try_clone()?).stderr(log);
        crate::sys::detach(&mut cmd);
        let mut child = cmd.spawn().with_context(|| format!("Cannot start {}", bin.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Reach::Up(_) = self.probe().await? {
                // The daemon lives on in its own session; reap it if it exits
                // while we still run, without waiting here.
                std::thread::spawn(move || child.wait());
                return Ok(());
            }
            if let Some(status) = child.try_wait()? {
                let tail = tail_lines(&log_path, 5);
                let err = anyhow::anyhow!("bangerd exited right after starting ({status}):\n{tail}");
                // Another CLI may have started a daemon at the same moment.
                if let Reach::Up(_) = self.probe().await? {
                    return Ok(());
                }
                return Err(err.context(format!("full log: {}", log_path.display())));
            }
            if Instant::now() > deadline {
                bail!(
                    "bangerd did not answer within {} s; see {}",
                    START_TIMEOUT.as_secs(),
                    log_path.display()
                );
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Sends one request on a fresh connection.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        stream: bool,
    ) -> anyhow::Result<http::Response<hyper::body::Incoming>> {
        let sock = self.paths.socket();
        let stream_io =
            tokio::net::UnixStream::connect(&sock).await.map_err(|e| Unreachable(sock.clone(), e))?;
        let io = hyper_util::rt::TokioIo::new(stream_io);
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let has_body = body.is_some();
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "bangerd")
            .header(header::ACCEPT, if stream { NDJSON } else { "application/json" });
        if has_body {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default())))?;
        Ok(sender.send_request(req).await?)
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        decode(self.send(Method::GET, path, None, false).await?).await
    }

    pub async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        decode(self.send(Method::POST, path, Some(serde_json::to_vec(body)?), false).await?).await
    }

    pub async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> anyhow::Result<T> {
        decode(self.send(Method::PUT, path, Some(serde_json::to_vec(body)?), false).await?).await
    }

    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        decode(self.send(Method::DELETE, path, None, false).await?).await
    }

    /// A long operation: progress events go to `on_event` as they arrive;
    /// the final result is returned.
    pub async fn post_stream<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        mut on_event: impl FnMut(&Event),
    ) -> anyhow::Result<T> {
        let resp = self.send(Method::POST, path, Some(serde_json::to_vec(body)?), true).await?;
        if resp.status() != StatusCode::OK {
            return decode(resp).await;
        }
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.context("the daemon connection broke during the operation")?;
            if let Some(data) = frame.data_ref() {
                buf.extend_from_slice(data);
            }
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let event: Event =
                    serde_json::from_slice(&line).context("the daemon sent a malformed event")?;
                match event {
                    Event::Done { result } => return Ok(serde_json::from_value(result)?),
                    Event::Failed { error } => return Err(error.into()),
                    other => on_event(&other),
                }
            }
        }
        bail!("the daemon closed the connection before the operation finished; see `banger daemon status` for its log")
    }
}

impl Client {
    /// A raw stream to a running VM's guest agent (see the daemon's
    /// `/v1/vms/{vm}/agent`), speaking `banger_agent_proto`.
    pub async fn agent(&self, vm: &str) -> anyhow::Result<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>> {
        let sock = self.paths.socket();
        let io = tokio::net::UnixStream::connect(&sock).await.map_err(|e| Unreachable(sock.clone(), e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
        tokio::spawn(async move {
            let _ = conn.with_upgrades().await;
        });
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("/v1/vms/{}/agent", crate::commands::seg(vm)))
            .header(header::HOST, "bangerd")
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "banger-agent")
            .body(Full::new(Bytes::new()))?;
        let resp = sender.send_request(req).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            return decode::<serde_json::Value>(resp)
                .await
                .and_then(|_| bail!("the daemon did not open the agent stream"));
        }
        let up = hyper::upgrade::on(resp).await.context("the agent stream could not be opened")?;
        Ok(hyper_util::rt::TokioIo::new(up))
    }

    /// PUTs a body that arrives in chunks on `rx` (a tar stream, say).
    pub async fn put_stream<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        rx: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> anyhow::Result<T> {
        let sock = self.paths.socket();
        let io = tokio::net::UnixStream::connect(&sock).await.map_err(|e| Unreachable(sock.clone(), e))?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
        tokio::spawn(conn);
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            let chunk = rx.recv().await?;
            Some((Ok::<_, std::io::Error>(hyper::body::Frame::data(chunk)), rx))
        });
        let req = Request::builder()
            .method(Method::PUT)
            .uri(path)
            .header(header::HOST, "bangerd")
            .header(header::CONTENT_TYPE, content_type)
            .body(http_body_util::StreamBody::new(stream))?;
        decode(sender.send_request(req).await?).await
    }

    /// GETs `path` and copies the body to stdout as it arrives.
    pub async fn stream_to_stdout(&self, path: &str) -> anyhow::Result<()> {
        use std::io::Write;
        let resp = self.send(Method::GET, path, None, false).await?;
        if !resp.status().is_success() {
            return decode::<serde_json::Value>(resp).await.map(|_| ());
        }
        let mut body = resp.into_body();
        let mut out = std::io::stdout().lock();
        while let Some(frame) = body.frame().await {
            if let Some(d) = frame?.data_ref() {
                out.write_all(d)?;
                out.flush()?;
            }
        }
        Ok(())
    }
}

/// The socket could not be reached.
#[derive(Debug)]
struct Unreachable(PathBuf, std::io::Error);

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Cannot reach bangerd at {}: {}", self.0.display(), self.1)
    }
}
impl std::error::Error for Unreachable {}

fn is_down(e: &anyhow::Error) -> bool {
    e.downcast_ref::<Unreachable>().is_some_and(|u| {
        matches!(u.1.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused)
    })
}

/// Decodes a JSON response; an error status becomes the daemon's
/// [`ApiError`] (code, message, hint).
async fn decode<T: DeserializeOwned>(resp: http::Response<hyper::body::Incoming>) -> anyhow::Result<T> {
    let status = resp.status();
    let bytes = resp.into_body().collect().await.context("reading the daemon's answer")?.to_bytes();
    if !status.is_success() {
        if let Ok(e) = serde_json::from_slice::<ApiError>(&bytes) {
            return Err(e.into());
        }
        bail!("the daemon answered {status}: {}", String::from_utf8_lossy(&bytes));
    }
    serde_json::from_slice(&bytes)
        .with_context(|| format!("the daemon sent an unexpected answer: {}", String::from_utf8_lossy(&bytes)))
}

/// Whether the daemon binary we would start is the running daemon's
/// executable, changed on disk since it started (a rebuild or reinstall).
fn rebuilt(info: &DaemonInfo) -> bool {
    let Some(bin) = daemon_binary() else { return false };
    let same = std::fs::canonicalize(&bin)
        .ok()
        .zip(std::fs::canonicalize(&info.exe).ok())
        .is_some_and(|(a, b)| a == b);
    same && info.exe_mtime_ms != 0 && bangerd::util::mtime_ms(&bin) != info.exe_mtime_ms
}

/// `$BANGER_DAEMON_BIN`, `bangerd` next to this binary, or on PATH.
pub(crate) fn daemon_binary() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("BANGER_DAEMON_BIN").filter(|p| !p.is_empty()) {
        return Some(PathBuf::from(p));
    }
    if let Some(p) = std::env::current_exe().ok().and_then(|e| e.parent().map(|d| d.join("bangerd"))) {
        if p.is_file() {
            return Some(p);
        }
    }
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("bangerd")).find(|p| p.is_file()))
}

fn tail_lines(path: &std::path::Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
