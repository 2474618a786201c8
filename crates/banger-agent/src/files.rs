//! `put_files` and `get_files`: tar streams in and out of the guest.
//!
//! The rules for incoming archives are strict: an entry whose path or
//! hardlink target is absolute or contains `..` fails the whole transfer
//! (it is not silently skipped), and no entry is ever written through a
//! symlink that leads out of the destination. Ownership is root's unless
//! the request names an owner; modes, symlinks and mtimes are kept.

use banger_agent_proto::{
    read_frame, write_frame, write_json, GetFiles, Kind, PutFiles, PutResult, Response, MAX_PAYLOAD,
};
use bytes::Bytes;
use std::io::{Read, Write};
use std::path::{Component, Path, PathBuf};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::mpsc;

pub async fn put<R, W>(req: PutFiles, mut rd: R, mut wr: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    let dest = PathBuf::from(&req.dest);
    let owner = req.owner;
    let unpack = tokio::task::spawn_blocking(move || unpack(&dest, ChannelReader::new(rx), owner));
    let mut tx = Some(tx);
    // Read the whole stream even if unpacking failed early, so the host's
    // writes never block and the reply comes in order.
    loop {
        match read_frame(&mut rd).await? {
            Some(f) if f.kind == Kind::Data => {
                if let Some(t) = &tx {
                    if t.send(f.payload).await.is_err() {
                        tx = None;
                    }
                }
            }
            Some(f) if f.kind == Kind::DataEnd => break,
            Some(f) => {
                return write_json(
                    &mut wr,
                    Kind::Response,
                    &Response::error(format!("unexpected {:?} frame in a tar stream", f.kind)),
                )
                .await
            }
            None => return Ok(()), // host went away
        }
    }
    drop(tx);
    let resp = match unpack.await {
        Ok(Ok(r)) => Response::ok(r),
        Ok(Err(e)) => Response::error(e),
        Err(e) => Response::error(format!("unpacking failed: {e}")),
    };
    write_json(&mut wr, Kind::Response, &resp).await
}

/// Checks that a path from an archive stays inside the destination.
pub fn safe_relative(p: &Path) -> Result<(), String> {
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(format!("archive entry {} contains '..'", p.display())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("archive entry {} is an absolute path", p.display()))
            }
        }
    }
    Ok(())
}

fn unpack(dest: &Path, reader: impl Read, owner: Option<(u32, u32)>) -> Result<PutResult, String> {
    if !dest.is_absolute() {
        return Err(format!("destination {} is not absolute", dest.display()));
    }
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(false);
    archive.set_overwrite(true);
    let mut entries = 0u64;
    let mut bytes = 0u64;
    let mut dirs = Vec::new();
    for entry in archive.entries().map_err(|e| format!("not a tar stream: {e}"))? {
        let mut entry = entry.map_err(|e| format!("corrupt tar stream: {e}"))?;
        let path = entry.path().map_err(|e| format!("bad entry path: {e}"))?.into_owned();
        safe_relative(&path)?;
        if entry.header().entry_type().is_hard_link() {
            if let Ok(Some(target)) = entry.link_name() {
                safe_relative(&target)?;
            }
        }
        bytes += entry.size();
        let is_dir = entry.header().entry_type().is_dir();
        // unpack_in refuses to write through symlinks that leave `dest`.
        let inside = entry.unpack_in(dest).map_err(|e| format!("cannot unpack {}: {e}", path.display()))?;
        if !inside {
            return Err(format!("archive entry {} would land outside {}", path.display(), dest.display()));
        }
        let target = dest.join(&path);
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {}: {e}", target.display()))?;
        }
        if is_dir {
            if let Ok(m) = entry.header().mtime() {
                dirs.push((target, m));
            }
        }
        entries += 1;
    }
    // Directory mtimes last: unpacking their contents touched them.
    for (d, m) in dirs {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(m);
        let _ = std::fs::File::open(&d).and_then(|f| f.set_modified(t));
    }
    Ok(PutResult { entries, bytes })
}

pub async fn get<W: AsyncWrite + Unpin>(req: GetFiles, mut wr: W) -> std::io::Result<()> {
    let path = PathBuf::from(&req.path);
    if !path.is_absolute() {
        return write_json(
            &mut wr,
            Kind::Response,
            &Response::error(format!("{} is not an absolute path", req.path)),
        )
        .await;
    }
    if let Err(e) = std::fs::symlink_metadata(&path) {
        return write_json(&mut wr, Kind::Response, &Response::error(format!("{}: {e}", req.path))).await;
    }
    write_json(&mut wr, Kind::Response, &Response::ok(())).await?;
    let (tx, mut rx) = mpsc::channel::<Bytes>(8);
    let pack = tokio::task::spawn_blocking(move || pack(&path, ChannelWriter { tx, buf: Vec::new() }));
    while let Some(chunk) = rx.recv().await {
        write_frame(&mut wr, Kind::Data, &chunk).await?;
    }
    write_frame(&mut wr, Kind::DataEnd, &[]).await?;
    let resp = match pack.await {
        Ok(Ok(())) => Response::ok(()),
        Ok(Err(e)) => Response::error(e),
        Err(e) => Response::error(format!("packing failed: {e}")),
    };
    write_json(&mut wr, Kind::Response, &resp).await
}

fn pack(path: &Path, out: ChannelWriter) -> Result<(), String> {
    let name = path.file_name().map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    let mut b = tar::Builder::new(out);
    b.follow_symlinks(false);
    let meta = std::fs::symlink_metadata(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let r = if meta.is_dir() { b.append_dir_all(&name, path) } else { b.append_path_with_name(path, &name) };
    r.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = b.into_inner().map_err(|e| format!("cannot finish the archive: {e}"))?;
    out.flush().map_err(|e| e.to_string())
}

/// Blocking `Read` over chunks arriving on a channel.
struct ChannelReader {
    rx: mpsc::Receiver<Bytes>,
    cur: Bytes,
}

impl ChannelReader {
    fn new(rx: mpsc::Receiver<Bytes>) -> Self {
        ChannelReader { rx, cur: Bytes::new() }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        while self.cur.is_empty() {
            match self.rx.blocking_recv() {
                Some(b) => self.cur = b,
                None => return Ok(0),
            }
        }
        let n = buf.len().min(self.cur.len());
        buf[..n].copy_from_slice(&self.cur[..n]);
        self.cur = self.cur.slice(n..);
        Ok(n)
    }
}

/// Blocking `Write` that ships frame-sized chunks over a channel.
struct ChannelWriter {
    tx: mpsc::Sender<Bytes>,
    buf: Vec<u8>,
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= MAX_PAYLOAD / 4 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "reader gone"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_only() {
        assert!(safe_relative(Path::new("a/b/c")).is_ok());
        assert!(safe_relative(Path::new("./a")).is_ok());
        assert!(safe_relative(Path::new("../a")).is_err());
        assert!(safe_relative(Path::new("a/../../b")).is_err());
        assert!(safe_relative(Path::new("/etc/passwd")).is_err());
    }
}
