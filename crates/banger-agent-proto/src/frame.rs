//! Length-prefixed frames.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest payload in one frame. Data streams are cut into frames of at
/// most this size; a peer announcing more is broken or hostile.
pub const MAX_PAYLOAD: usize = 1 << 20;

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// Host → agent: the JSON [`crate::Request`] opening the connection.
    Request = 1,
    /// Agent → host: a JSON [`crate::Response`].
    Response = 2,
    /// Host → agent: bytes for the process's stdin.
    Stdin = 3,
    /// Agent → host: bytes the process wrote to stdout (or the PTY).
    Stdout = 4,
    /// Agent → host: bytes the process wrote to stderr.
    Stderr = 5,
    /// Host → agent: stdin is finished; the agent closes the process's stdin.
    StdinEof = 6,
    /// Agent → host: JSON [`crate::ExitStatus`]; the last frame of an exec.
    Exit = 7,
    /// Host → agent: JSON [`crate::WindowSize`] for the PTY.
    Resize = 8,
    /// Host → agent: JSON [`crate::SignalRequest`] for the process group.
    Signal = 9,
    /// Either way: a chunk of a tar stream.
    Data = 10,
    /// Either way: the tar stream is complete.
    DataEnd = 11,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Request,
            2 => Kind::Response,
            3 => Kind::Stdin,
            4 => Kind::Stdout,
            5 => Kind::Stderr,
            6 => Kind::StdinEof,
            7 => Kind::Exit,
            8 => Kind::Resize,
            9 => Kind::Signal,
            10 => Kind::Data,
            11 => Kind::DataEnd,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub kind: Kind,
    pub payload: Bytes,
}

impl Frame {
    /// Parses a JSON payload.
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> std::io::Result<T> {
        serde_json::from_slice(&self.payload)
            .map_err(|e| invalid(format!("malformed {:?} frame: {e}", self.kind)))
    }
}

fn invalid(msg: String) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg)
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n == 0 || n > MAX_PAYLOAD + 1 {
        return Err(invalid(format!("frame length {n} is out of range")));
    }
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).await?;
    let kind = Kind::from_u8(buf[0]).ok_or_else(|| invalid(format!("unknown frame kind {}", buf[0])))?;
    let payload = Bytes::from(buf).slice(1..);
    Ok(Some(Frame { kind, payload }))
}

/// Writes one frame (payload at most [`MAX_PAYLOAD`] bytes).
pub async fn write_frame<W: AsyncWrite + Unpin>(
    w: &mut W,
    kind: Kind,
    payload: &[u8],
) -> std::io::Result<()> {
    if payload.len() > MAX_PAYLOAD {
        return Err(invalid(format!("payload of {} bytes exceeds the frame limit", payload.len())));
    }
    let mut head = [0u8; 5];
    head[..4].copy_from_slice(&((payload.len() + 1) as u32).to_be_bytes());
    head[4] = kind as u8;
    w.write_all(&head).await?;
    w.write_all(payload).await?;
    w.flush().await
}

/// Writes a JSON frame.
pub async fn write_json<W: AsyncWrite + Unpin, T: serde::Serialize>(
    w: &mut W,
    kind: Kind,
    v: &T,
) -> std::io::Result<()> {
    let bytes = serde_json::to_vec(v).map_err(|e| invalid(e.to_string()))?;
    write_frame(w, kind, &bytes).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn round_trip_and_limits() {
        let (mut a, mut b) = tokio::io::duplex(1 << 16);
        write_frame(&mut a, Kind::Stdout, b"hello").await.unwrap();
        write_frame(&mut a, Kind::StdinEof, b"").await.unwrap();
        let f = read_frame(&mut b).await.unwrap().unwrap();
        assert_eq!((f.kind, &f.payload[..]), (Kind::Stdout, &b"hello"[..]));
        let f = read_frame(&mut b).await.unwrap().unwrap();
        assert_eq!((f.kind, f.payload.len()), (Kind::StdinEof, 0));
        drop(a);
        assert!(read_frame(&mut b).await.unwrap().is_none());

        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            a.write_all(&u32::MAX.to_be_bytes()).await.unwrap();
        });
        assert!(read_frame(&mut b).await.is_err());
        let (mut a, mut b) = tokio::io::duplex(64);
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            a.write_all(&[0, 0, 0, 1, 99]).await.unwrap();
        });
        assert!(read_frame(&mut b).await.is_err());
    }

    /// The property version of the `agent_frames` fuzz target: any bytes
    /// decode to frames or an error, within the payload limit.
    mod props {
        use super::super::*;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]
            #[test]
            fn any_bytes_decode_or_fail(data in prop::collection::vec(any::<u8>(), 0..2048)) {
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                rt.block_on(async {
                    let mut r = data.as_slice();
                    while let Ok(Some(f)) = read_frame(&mut r).await {
                        assert!(f.payload.len() <= MAX_PAYLOAD);
                        let _ = f.json::<crate::Request>();
                        let _ = f.json::<crate::Response>();
                    }
                });
            }
        }
    }
}
