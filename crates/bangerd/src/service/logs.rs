//! Following a VM's serial console as it grows.

use super::Daemon;
use bytes::Bytes;
use futures_util::Stream;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Streams `path` from its start, then whatever is appended, until the
/// VM has no engine running and everything is sent. A new boot replaces the
/// file (the old one becomes `console.log.1`); the stream follows the new
/// one from its start.
pub fn follow(d: Arc<Daemon>, vm_id: String, path: PathBuf) -> impl Stream<Item = std::io::Result<Bytes>> {
    struct St {
        d: Arc<Daemon>,
        vm_id: String,
        path: PathBuf,
        inode: u64,
        offset: u64,
        idle_since_stop: u32,
    }
    let st = St { d, vm_id, path, inode: 0, offset: 0, idle_since_stop: 0 };
    futures_util::stream::unfold(st, |mut st| async move {
        loop {
            if let Ok(meta) = tokio::fs::metadata(&st.path).await {
                // A new boot's file, or this one rotated (copied to
                // `console.log.1` and truncated): read it from its start.
                if meta.ino() != st.inode || meta.len() < st.offset {
                    st.inode = meta.ino();
                    st.offset = 0;
                }
                if meta.len() > st.offset {
                    let mut f = tokio::fs::File::open(&st.path).await.ok()?;
                    f.seek(std::io::SeekFrom::Start(st.offset)).await.ok()?;
                    let mut buf = vec![0u8; (meta.len() - st.offset).min(1 << 20) as usize];
                    let n = f.read(&mut buf).await.ok()?;
                    buf.truncate(n);
                    st.offset += n as u64;
                    st.idle_since_stop = 0;
                    return Some((Ok(Bytes::from(buf)), st));
                }
            }
            if st.d.runtime(&st.vm_id).is_none() {
                // Not running: end once nothing more arrives.
                st.idle_since_stop += 1;
                if st.idle_since_stop > 2 {
                    return None;
                }
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    })
}

/// Keeps a running VM's console log under `max` bytes: past it, the file
/// is copied to `console.log.1` (replacing it) and truncated in place, the
/// way logrotate's `copytruncate` does, since the engine keeps writing to
/// its open descriptor (opened `O_APPEND`, so it goes on at the new end).
/// Output written between the copy and the truncation is lost. Returns
/// whether it rotated.
pub fn rotate_console(path: &std::path::Path, max: u64) -> std::io::Result<bool> {
    use std::io::{Read, Seek};
    // A stat per running VM per second; the file is opened only to rotate.
    match std::fs::metadata(path) {
        Ok(m) if m.len() <= max => return Ok(false),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    }
    let mut f = std::fs::OpenOptions::new().read(true).write(true).open(path)?;
    let len = f.metadata()?.len();
    // Only the last `max` bytes are kept in the copy: a burst far past the
    // limit costs no more than the limit twice on disk.
    f.seek(std::io::SeekFrom::Start(len - max))?;
    let old = path.with_extension("log.1");
    let tmp = path.with_extension("log.1.tmp");
    let mut out = std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&tmp)?;
    std::io::copy(&mut (&mut f).take(max), &mut out)?;
    std::fs::rename(&tmp, &old)?;
    f.set_len(0)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// Issue 14, item 7: a writer that never stops (as an engine writes
    /// the console) cannot grow the log past the limit by more than what
    /// it writes between two checks, and keeps writing after a rotation.
    #[test]
    fn a_chatty_console_is_rotated_under_its_limit() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("console.log");
        let mut w = std::fs::OpenOptions::new().create(true).append(true).open(&log).unwrap();
        let line = [b'x'; 1023];
        let mut rotations = 0;
        for i in 0..2000 {
            w.write_all(&line).unwrap();
            w.write_all(b"\n").unwrap();
            if i % 100 == 99 && rotate_console(&log, 256 << 10).unwrap() {
                rotations += 1;
            }
            assert!(std::fs::metadata(&log).unwrap().len() <= (256 << 10) + 100 * 1024);
        }
        assert!(rotations >= 5, "{rotations} rotations");
        let old = std::fs::metadata(d.path().join("console.log.1")).unwrap().len();
        assert_eq!(old, 256 << 10);
        w.write_all(b"after\n").unwrap();
        assert!(std::fs::read_to_string(&log).unwrap().ends_with("after\n"));
        assert!(!rotate_console(&d.path().join("missing"), 1).unwrap());
    }
}
