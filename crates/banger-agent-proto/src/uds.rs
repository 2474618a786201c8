//! Reaching a guest port through the VM's hybrid-vsock Unix socket.

use std::path::Path;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The socket is not there or nobody listens: the VM is not running.
    #[error("Cannot connect to the VM's vsock socket {path}: {source}")]
    Socket { path: String, source: std::io::Error },
    /// The VMM closed the connection without an answer: nothing listens
    /// on that guest port yet (the guest is still booting).
    #[error("Nothing listens on guest vsock port {0} yet")]
    NotListening(u32),
    #[error("Unexpected answer to CONNECT {port}: {line:?}")]
    Protocol { port: u32, line: String },
    /// The VMM took the request but nothing answered (`OK` or a close)
    /// within the bound: the guest is hung or badly overloaded.
    #[error("Guest vsock port {port} did not answer within {} s", .waited.as_secs())]
    NoAnswer { port: u32, waited: std::time::Duration },
    #[error("vsock handshake failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Connects to guest `port` through the hybrid-vsock socket at `uds`.
///
/// After `CONNECT` this always reads until the `OK` line or end of stream,
/// never giving up half-way: vhost-device-vsock 0.3 can wedge a VM's vsock
/// when a client closes between `CONNECT` and `OK`.
pub async fn connect_uds(uds: &Path, port: u32) -> Result<UnixStream, ConnectError> {
    let mut s = UnixStream::connect(uds)
        .await
        .map_err(|source| ConnectError::Socket { path: uds.display().to_string(), source })?;
    s.write_all(format!("CONNECT {port}\n").as_bytes()).await?;
    // Read the reply byte by byte: what follows the newline belongs to the
    // guest's stream.
    let mut line = Vec::with_capacity(16);
    loop {
        let mut b = [0u8; 1];
        match s.read(&mut b).await {
            Ok(0) => return Err(ConnectError::NotListening(port)),
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => {
                line.push(b[0]);
                if line.len() > 64 {
                    return Err(ConnectError::Protocol { port, line: String::from_utf8_lossy(&line).into() });
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                ) =>
            {
                return Err(ConnectError::NotListening(port))
            }
            Err(e) => return Err(e.into()),
        }
    }
    let text = String::from_utf8_lossy(&line);
    if !text.starts_with("OK ") {
        return Err(ConnectError::Protocol { port, line: text.into() });
    }
    Ok(s)
}

/// [`connect_uds`] for a VMM whose vsock survives a client that gives up
/// mid-handshake (Firecracker: its muxer drops the pending request): up to
/// `attempts` tries of `each`, a fresh connection each time (Firecracker
/// sweeps stale requests only when a new one arrives), then
/// [`ConnectError::NoAnswer`]. Other errors end it at once.
pub async fn connect_uds_within(
    uds: &Path,
    port: u32,
    each: std::time::Duration,
    attempts: u32,
) -> Result<UnixStream, ConnectError> {
    for _ in 0..attempts {
        if let Ok(r) = tokio::time::timeout(each, connect_uds(uds, port)).await {
            return r;
        }
    }
    Err(ConnectError::NoAnswer { port, waited: each * attempts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncBufReadExt;

    #[tokio::test]
    async fn handshake_variants() {
        let dir = std::env::temp_dir().join(format!("banger-uds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("v.sock");
        let _ = std::fs::remove_file(&sock);
        let l = tokio::net::UnixListener::bind(&sock).unwrap();
        tokio::spawn(async move {
            for answer in ["OK 1073741824\nrest", "", "NO\n"] {
                let (s, _) = l.accept().await.unwrap();
                let mut r = tokio::io::BufReader::new(s);
                let mut line = String::new();
                r.read_line(&mut line).await.unwrap();
                assert_eq!(line, "CONNECT 1024\n");
                r.get_mut().write_all(answer.as_bytes()).await.unwrap();
            }
        });
        let mut s = connect_uds(&sock, 1024).await.unwrap();
        let mut rest = String::new();
        s.read_to_string(&mut rest).await.unwrap();
        assert_eq!(rest, "rest", "bytes after OK must stay in the stream");
        assert!(matches!(connect_uds(&sock, 1024).await, Err(ConnectError::NotListening(1024))));
        assert!(matches!(connect_uds(&sock, 1024).await, Err(ConnectError::Protocol { .. })));
        assert!(matches!(connect_uds(&dir.join("nope"), 1).await, Err(ConnectError::Socket { .. })));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// A VMM that takes `CONNECT` and never answers: the plain handshake
    /// waits on, the bounded one gives up after its attempts, each on a
    /// connection of its own.
    #[tokio::test]
    async fn a_silent_guest_ends_the_bounded_handshake() {
        use std::time::Duration;
        let dir = std::env::temp_dir().join(format!("banger-uds-silent-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("v.sock");
        let _ = std::fs::remove_file(&sock);
        let l = tokio::net::UnixListener::bind(&sock).unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut held = vec![];
            loop {
                let (s, _) = l.accept().await.unwrap();
                let mut r = tokio::io::BufReader::new(s);
                let mut line = String::new();
                r.read_line(&mut line).await.unwrap();
                tx.send(line).unwrap();
                held.push(r); // never answered, never closed
            }
        });
        let plain = tokio::time::timeout(Duration::from_millis(300), connect_uds(&sock, 1024)).await;
        assert!(plain.is_err(), "the plain handshake must keep waiting");
        let t = std::time::Instant::now();
        let r = connect_uds_within(&sock, 1024, Duration::from_millis(100), 3).await;
        assert!(matches!(r, Err(ConnectError::NoAnswer { port: 1024, .. })), "{r:?}");
        assert!(t.elapsed() >= Duration::from_millis(300) && t.elapsed() < Duration::from_secs(5));
        let mut seen = 0;
        while let Ok(line) = rx.try_recv() {
            assert_eq!(line, "CONNECT 1024\n");
            seen += 1;
        }
        assert_eq!(seen, 4, "one connection for the plain try and one per bounded attempt");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
