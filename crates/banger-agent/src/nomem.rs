//! A stream wrapper that rides out ENOMEM on writes.
//!
//! The guest kernel's virtio-vsock transport allocates a buffer of up to
//! 64 KiB per packet. When memory is fragmented (a guest whose page cache
//! holds a file the size of its RAM, say) that allocation can fail and the
//! write returns ENOMEM, although memory frees up a moment later. Dropping
//! the connection then would end a large `get_files` half-way; this wrapper
//! waits and retries instead, for a bounded time.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How long writes keep failing with ENOMEM before the error is returned.
const GIVE_UP_AFTER: Duration = Duration::from_secs(30);

pub struct NoMemRetry<S> {
    inner: S,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
    backoff: Duration,
    waited: Duration,
}

impl<S> NoMemRetry<S> {
    pub fn new(inner: S) -> Self {
        NoMemRetry { inner, sleep: None, backoff: Duration::from_millis(1), waited: Duration::ZERO }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for NoMemRetry<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for NoMemRetry<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            if let Some(s) = self.sleep.as_mut() {
                match s.as_mut().poll(cx) {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(()) => self.sleep = None,
                }
            }
            match Pin::new(&mut self.inner).poll_write(cx, buf) {
                Poll::Ready(Err(e))
                    if e.raw_os_error() == Some(libc::ENOMEM) && self.waited < GIVE_UP_AFTER =>
                {
                    let d = self.backoff;
                    self.waited += d;
                    self.backoff = (d * 2).min(Duration::from_millis(100));
                    self.sleep = Some(Box::pin(tokio::time::sleep(d)));
                }
                Poll::Ready(Ok(n)) => {
                    self.backoff = Duration::from_millis(1);
                    self.waited = Duration::ZERO;
                    return Poll::Ready(Ok(n));
                }
                other => return other,
            }
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
