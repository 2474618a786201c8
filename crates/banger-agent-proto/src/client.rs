//! Host-side helpers for the common operations, over any stream to an agent
//! (a vsock connection from [`crate::connect_uds`], or a Unix socket in
//! tests).

use crate::frame::write_json;
use crate::{
    read_frame, write_frame, ExecRequest, ExitStatus, Kind, Op, PutFiles, PutResult, Request, Response,
    MAX_PAYLOAD,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// The agent answered with an error.
    #[error("{0}")]
    Agent(String),
    /// The stream broke or the agent broke the protocol.
    #[error("agent connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the agent closed the connection early")]
    Closed,
}

async fn read_response<R: AsyncRead + Unpin>(rd: &mut R) -> Result<serde_json::Value, CallError> {
    let f = read_frame(rd).await?.ok_or(CallError::Closed)?;
    if f.kind != Kind::Response {
        return Err(CallError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("expected a response frame, got {:?}", f.kind),
        )));
    }
    match f.json::<Response>()? {
        Response::Ok { data } => Ok(data),
        Response::Error { message } => Err(CallError::Agent(message)),
    }
}

/// Sends a single-answer request (`health`, `ports`, `sync`, `shutdown`).
pub async fn call<S: AsyncRead + AsyncWrite + Unpin>(
    s: &mut S,
    op: Op,
) -> Result<serde_json::Value, CallError> {
    write_json(s, Kind::Request, &Request::new(op)).await?;
    read_response(s).await
}

/// Runs a command, feeding it `stdin` (then EOF), and collects its output.
pub async fn exec_collect<S>(
    s: S,
    req: ExecRequest,
    stdin: &[u8],
) -> Result<(Vec<u8>, Vec<u8>, ExitStatus), CallError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let c = exec_capture(s, req, stdin, usize::MAX).await?;
    Ok((c.stdout.kept, c.stderr.kept, c.status))
}

/// One output stream of a captured command: its first bytes, up to a
/// limit, and how many it wrote in all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    pub kept: Vec<u8>,
    pub total: u64,
}

impl Captured {
    fn push(&mut self, bytes: &[u8], limit: usize) {
        self.total += bytes.len() as u64;
        let room = limit.saturating_sub(self.kept.len());
        self.kept.extend_from_slice(&bytes[..room.min(bytes.len())]);
    }

    /// Whether the command wrote more than was kept.
    pub fn truncated(&self) -> bool {
        self.total > self.kept.len() as u64
    }
}

/// What [`exec_capture`] got from a command.
#[derive(Debug, Clone)]
pub struct Capture {
    pub stdout: Captured,
    pub stderr: Captured,
    pub status: ExitStatus,
}

/// Runs a command, feeding it `stdin` (then EOF), keeping at most `limit`
/// bytes of each output stream (the rest is read and counted, so the
/// command never blocks on a full pipe).
pub async fn exec_capture<S>(s: S, req: ExecRequest, stdin: &[u8], limit: usize) -> Result<Capture, CallError>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut rd, mut wr) = tokio::io::split(s);
    write_json(&mut wr, Kind::Request, &Request::new(Op::Exec(req))).await?;
    read_response(&mut rd).await?;
    let input = stdin.to_vec();
    let feeder = tokio::spawn(async move {
        for chunk in input.chunks(MAX_PAYLOAD) {
            write_frame(&mut wr, Kind::Stdin, chunk).await?;
        }
        write_frame(&mut wr, Kind::StdinEof, &[]).await?;
        Ok::<_, std::io::Error>(wr)
    });
    let (mut out, mut err) = (Captured::default(), Captured::default());
    loop {
        let f = read_frame(&mut rd).await?.ok_or(CallError::Closed)?;
        match f.kind {
            Kind::Stdout => out.push(&f.payload, limit),
            Kind::Stderr => err.push(&f.payload, limit),
            Kind::Exit => {
                let status: ExitStatus = f.json()?;
                let _ = feeder.await;
                return Ok(Capture { stdout: out, stderr: err, status });
            }
            other => {
                return Err(CallError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unexpected {other:?} frame during exec"),
                )))
            }
        }
    }
}

/// Sends a tar stream read from `tar` to be unpacked in `dest`.
/// `progress` is called with the bytes sent so far.
pub async fn put_tar<S, T>(
    s: S,
    dest: &str,
    owner: Option<(u32, u32)>,
    tar: T,
    progress: impl FnMut(u64),
) -> Result<PutResult, CallError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + Unpin,
{
    put_tar_renamed(s, dest, owner, None, tar, progress).await
}

/// [`put_tar`], giving the archive's top entry a new name.
pub async fn put_tar_renamed<S, T>(
    s: S,
    dest: &str,
    owner: Option<(u32, u32)>,
    rename: Option<String>,
    mut tar: T,
    mut progress: impl FnMut(u64),
) -> Result<PutResult, CallError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(s);
    write_json(
        &mut wr,
        Kind::Request,
        &Request::new(Op::PutFiles(PutFiles { dest: dest.into(), owner, rename })),
    )
    .await?;
    let mut buf = vec![0u8; 256 * 1024];
    let mut sent = 0u64;
    loop {
        let n = tar.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        write_frame(&mut wr, Kind::Data, &buf[..n]).await?;
        sent += n as u64;
        progress(sent);
    }
    write_frame(&mut wr, Kind::DataEnd, &[]).await?;
    let data = read_response(&mut rd).await?;
    serde_json::from_value(data)
        .map_err(|e| CallError::Io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Receives `path` from the guest as a tar stream written to `out`.
/// `progress` is called with the bytes received so far.
pub async fn get_tar<S, W>(
    s: S,
    path: &str,
    mut out: W,
    mut progress: impl FnMut(u64),
) -> Result<u64, CallError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    W: AsyncWrite + Unpin,
{
    let (mut rd, mut wr) = tokio::io::split(s);
    write_json(&mut wr, Kind::Request, &Request::new(Op::GetFiles(crate::GetFiles { path: path.into() })))
        .await?;
    read_response(&mut rd).await?;
    let mut got = 0u64;
    loop {
        let f = read_frame(&mut rd).await?.ok_or(CallError::Closed)?;
        match f.kind {
            Kind::Data => {
                out.write_all(&f.payload).await?;
                got += f.payload.len() as u64;
                progress(got);
            }
            Kind::DataEnd => break,
            other => {
                return Err(CallError::Io(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("unexpected {other:?} frame in a tar stream"),
                )))
            }
        }
    }
    out.flush().await?;
    read_response(&mut rd).await?;
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::Captured;

    /// A stream keeps its first `limit` bytes and counts the rest.
    #[test]
    fn captured_keeps_the_head_and_counts_all() {
        let mut c = Captured::default();
        c.push(b"hello ", 8);
        assert!(!c.truncated());
        c.push(b"world", 8);
        c.push(b"!!!", 8);
        assert_eq!(c.kept, b"hello wo");
        assert_eq!(c.total, 14);
        assert!(c.truncated());
    }
}
