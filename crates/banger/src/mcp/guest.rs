//! What the tools do inside a sandbox, through its guest agent: a command
//! with its output captured (bounded), one file read or written.

use crate::client::Client;
use banger_agent_proto::client::{exec_capture, get_tar, put_tar_renamed, Capture};
use banger_agent_proto::ExecRequest;
use banger_api::{ApiError, Vm};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// Runs `req` in `vm`, keeping at most `limit` bytes of each stream. The
/// agent kills the command at its timeout; the host gives up a little later
/// in case the guest stops answering altogether.
pub async fn exec(
    client: &Client,
    vm: &Vm,
    req: ExecRequest,
    stdin: &[u8],
    limit: usize,
) -> anyhow::Result<Capture> {
    let within = Duration::from_millis(req.timeout_ms.unwrap_or(0)) + Duration::from_secs(30);
    let stream = client.agent(&vm.id).await?;
    match tokio::time::timeout(within, exec_capture(stream, req, stdin, limit)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(ApiError::timeout(format!(
            "the guest agent of sandbox {:?} stopped answering during the command",
            vm.name
        ))
        .with_hint(format!("the guest may be stuck: see `banger vm logs {}`", vm.name))
        .into()),
    }
}

/// The contents of the regular file at `path` (at most `max` bytes).
pub async fn read_file(client: &Client, vm: &Vm, path: &str, max: usize) -> anyhow::Result<Vec<u8>> {
    let stream = client.agent(&vm.id).await?;
    // The archive holds the file plus headers; a little room for them.
    let mut sink = Bounded { buf: Vec::new(), max: max + 64 * 1024, over: false };
    let got = get_tar(stream, path, &mut sink, |_| {}).await;
    if sink.over {
        return Err(too_large(path, max));
    }
    got.map_err(|e| ApiError::not_found(format!("cannot read {path} in sandbox {:?}: {e}", vm.name)))?;
    let mut archive = tar::Archive::new(&sink.buf[..]);
    let mut entries = archive.entries()?;
    let Some(entry) = entries.next() else {
        anyhow::bail!("the guest sent an empty archive for {path}");
    };
    let mut entry = entry?;
    let kind = entry.header().entry_type();
    if !kind.is_file() {
        let what = if kind.is_dir() {
            "a directory"
        } else if kind.is_symlink() {
            "a symlink"
        } else {
            "not a regular file"
        };
        return Err(ApiError::invalid(format!("{path} is {what}"))
            .with_hint("read regular files only; list a directory with sandbox_exec [\"ls\", \"-la\", PATH]")
            .into());
    }
    if entry.size() > max as u64 {
        return Err(too_large(path, max));
    }
    let mut content = Vec::with_capacity(entry.size() as usize);
    std::io::Read::read_to_end(&mut entry, &mut content)?;
    Ok(content)
}

fn too_large(path: &str, max: usize) -> anyhow::Error {
    ApiError::invalid(format!("{path} is larger than {} KiB, the most sandbox_read_file returns", max / 1024))
        .with_hint("read part of it with sandbox_exec, e.g. [\"head\", \"-c\", \"65536\", PATH]")
        .into()
}

/// Writes `content` to `path` (its directory made if missing), mode `mode`.
pub async fn write_file(
    client: &Client,
    vm: &Vm,
    path: &str,
    content: &[u8],
    mode: u32,
) -> anyhow::Result<()> {
    let (dir, name) = path.rsplit_once('/').expect("a checked guest path is absolute");
    let dir = if dir.is_empty() { "/" } else { dir };
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(tar::EntryType::Regular);
    header.set_size(content.len() as u64);
    header.set_mode(mode);
    header.set_mtime(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs());
    let mut b = tar::Builder::new(Vec::new());
    b.append_data(&mut header, name, content)?;
    let archive = b.into_inner()?;
    let stream = client.agent(&vm.id).await?;
    put_tar_renamed(stream, dir, None, None, &archive[..], |_| {})
        .await
        .map_err(|e| ApiError::invalid(format!("cannot write {path} in sandbox {:?}: {e}", vm.name)))?;
    Ok(())
}

/// An in-memory sink that refuses to grow past `max`.
struct Bounded {
    buf: Vec<u8>,
    max: usize,
    over: bool,
}

impl tokio::io::AsyncWrite for Bounded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        if self.buf.len() + data.len() > self.max {
            self.over = true;
            return Poll::Ready(Err(std::io::Error::other("the file is too large")));
        }
        self.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
