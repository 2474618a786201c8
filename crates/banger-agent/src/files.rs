//! `put_files` and `get_files`: tar streams in and out of the guest.
//!
//! Incoming archives are unpacked under the rules of
//! `banger_agent_proto::tarsafe` (shared with the host): a bad entry fails
//! the whole transfer, nothing lands outside the destination. Ownership is
//! root's unless the request names an owner; modes, symlinks and mtimes are
//! kept.

use banger_agent_proto::{
    read_frame, write_frame, write_json, GetFiles, Kind, PutFiles, PutResult, Response, MAX_PAYLOAD,
};
use bytes::Bytes;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
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
    let rename = req.rename.clone();
    let unpack =
        tokio::task::spawn_blocking(move || unpack(&dest, ChannelReader::new(rx), owner, rename.as_deref()));
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

fn unpack(
    dest: &Path,
    reader: impl Read,
    owner: Option<(u32, u32)>,
    rename: Option<&str>,
) -> Result<PutResult, String> {
    let u = banger_agent_proto::tarsafe::unpack(dest, reader, owner, rename)?;
    Ok(PutResult { entries: u.entries, bytes: u.bytes })
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
