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
                if meta.ino() != st.inode {
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
