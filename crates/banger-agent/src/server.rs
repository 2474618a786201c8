//! The agent's accept loop and per-connection dispatch. One operation per
//! connection; see `banger_agent_proto` for the framing.

use banger_agent_proto::{
    read_frame, write_json, Health, Kind, Op, Request, Response, AGENT_PORT, PROTOCOL_VERSION,
};
use std::path::PathBuf;
use std::time::Instant;
use tokio::io::{AsyncRead, AsyncWrite};

/// When the agent started, for `health`.
static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

/// Serves forever on vsock (or on a Unix socket, for tests).
pub async fn run(unix: Option<PathBuf>) -> std::io::Result<()> {
    STARTED.get_or_init(Instant::now);
    match unix {
        Some(path) => {
            let _ = std::fs::remove_file(&path);
            let l = tokio::net::UnixListener::bind(&path)?;
            loop {
                let (s, _) = l.accept().await?;
                tokio::spawn(handle(s));
            }
        }
        None => {
            let addr = tokio_vsock::VsockAddr::new(tokio_vsock::VMADDR_CID_ANY, AGENT_PORT);
            let l = tokio_vsock::VsockListener::bind(addr)?;
            loop {
                let (s, _) = l.accept().await?;
                tokio::spawn(handle(crate::nomem::NoMemRetry::new(s)));
            }
        }
    }
}

async fn handle<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S) {
    if let Err(e) = serve_one(stream).await {
        // A client that goes away mid-operation is normal; anything else is
        // worth a line on the console.
        if !matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset) {
            eprintln!("banger-agent: connection failed: {e}");
        }
    }
}

async fn serve_one<S: AsyncRead + AsyncWrite + Unpin + Send + 'static>(stream: S) -> std::io::Result<()> {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let Some(first) = read_frame(&mut rd).await? else {
        return Ok(());
    };
    if first.kind != Kind::Request {
        return write_json(&mut wr, Kind::Response, &Response::error("the first frame must be a request"))
            .await;
    }
    let req: Request = match first.json() {
        Ok(r) => r,
        Err(e) => {
            return write_json(&mut wr, Kind::Response, &Response::error(format!("bad request: {e}"))).await
        }
    };
    if req.v != PROTOCOL_VERSION {
        let msg = format!("protocol version {} is not supported (agent speaks {PROTOCOL_VERSION})", req.v);
        return write_json(&mut wr, Kind::Response, &Response::error(msg)).await;
    }
    match req.op {
        Op::Health => write_json(&mut wr, Kind::Response, &Response::ok(health())).await,
        Op::Ports => {
            let r = match tokio::task::spawn_blocking(crate::ports::list).await {
                Ok(Ok(p)) => Response::ok(p),
                Ok(Err(e)) => Response::error(format!("cannot list ports: {e}")),
                Err(e) => Response::error(format!("cannot list ports: {e}")),
            };
            write_json(&mut wr, Kind::Response, &r).await
        }
        Op::Sync => {
            let _ = tokio::task::spawn_blocking(nix::unistd::sync).await;
            write_json(&mut wr, Kind::Response, &Response::ok(())).await
        }
        Op::Shutdown => {
            write_json(&mut wr, Kind::Response, &Response::ok(())).await?;
            crate::init::request_shutdown();
            Ok(())
        }
        Op::Exec(e) => crate::exec::run(e, rd, wr).await,
        Op::PutFiles(p) => crate::files::put(p, rd, wr).await,
        Op::GetFiles(g) => crate::files::get(g, wr).await,
        Op::EnsureLine(e) => {
            let r = match tokio::task::spawn_blocking(move || ensure_line(&e)).await {
                Ok(Ok(added)) => Response::ok(serde_json::json!({ "added": added })),
                Ok(Err(m)) => Response::error(m),
                Err(e) => Response::error(e.to_string()),
            };
            write_json(&mut wr, Kind::Response, &r).await
        }
        Op::Connect(c) => {
            let tcp = match tokio::net::TcpStream::connect(("127.0.0.1", c.port)).await {
                Ok(t) => t,
                Err(_) => match tokio::net::TcpStream::connect(("::1", c.port)).await {
                    Ok(t) => t,
                    Err(e) => {
                        let msg = format!("nothing accepts connections on guest port {}: {e}", c.port);
                        return write_json(&mut wr, Kind::Response, &Response::error(msg)).await;
                    }
                },
            };
            let _ = tcp.set_nodelay(true);
            write_json(&mut wr, Kind::Response, &Response::ok(())).await?;
            // From here on the connection is a plain byte pipe to the port.
            let mut host = rd.unsplit(wr);
            let mut tcp = tcp;
            tokio::io::copy_bidirectional(&mut host, &mut tcp).await.map(|_| ())
        }
    }
}

fn health() -> Health {
    Health {
        agent_version: env!("CARGO_PKG_VERSION").to_string(),
        protocol: PROTOCOL_VERSION,
        init: std::env::var("BANGER_INIT_MODE").unwrap_or_else(|_| "unknown".into()),
        hostname: nix::unistd::gethostname().map(|h| h.to_string_lossy().into_owned()).unwrap_or_default(),
        uptime_ms: STARTED.get().map(|s| s.elapsed().as_millis() as u64).unwrap_or(0),
    }
}

/// Appends `e.line` to `e.path` unless a line equal to it is there already.
fn ensure_line(e: &banger_agent_proto::EnsureLine) -> Result<bool, String> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let path = std::path::Path::new(&e.path);
    if !path.is_absolute() || e.line.contains('\n') {
        return Err(format!("invalid ensure_line request for {}", e.path));
    }
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(e.dir_mode)
            .create(dir)
            .map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    }
    let text = std::fs::read_to_string(path).unwrap_or_default();
    if text.lines().any(|l| l == e.line) {
        return Ok(false);
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(e.mode)
        .open(path)
        .map_err(|err| format!("cannot open {}: {err}", path.display()))?;
    let sep = if text.is_empty() || text.ends_with('\n') { "" } else { "\n" };
    writeln!(f, "{sep}{}", e.line).map_err(|err| format!("cannot write {}: {err}", path.display()))?;
    Ok(true)
}
