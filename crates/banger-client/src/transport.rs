//! One HTTP/1.1 exchange per connection over the daemon's socket: JSON in
//! and out, NDJSON progress streams, a streamed upload, an upgrade to the
//! guest agent's stream.

use crate::remote::{self, Diag};
use crate::{Client, Error, Result};
use banger_api::events::NDJSON;
use banger_api::{ApiError, Event};
use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// A raw byte stream to a running VM's guest agent, speaking
/// `banger_agent_proto`.
pub type AgentStream = hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>;

type Response = http::Response<hyper::body::Incoming>;

impl Client {
    /// A fresh HTTP/1.1 connection to the daemon, carrying bodies of type
    /// `B`: its Unix socket, or `ssh HOST banger system dial-stdio` for a
    /// remote one (then with what tells why it failed, if it does).
    async fn open<B>(&self) -> Result<(hyper::client::conn::http1::SendRequest<B>, Option<Diag>)>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        if let Some(r) = &self.endpoint.remote {
            let dialed = remote::dial(&r.remote, &r.control_dir)?;
            return Ok((handshake(dialed.io).await?, Some(dialed.diag)));
        }
        let sock = &self.endpoint.socket;
        let io = tokio::net::UnixStream::connect(sock)
            .await
            .map_err(|source| Error::Unreachable { socket: sock.clone(), source })?;
        Ok((handshake(io).await?, None))
    }

    /// Sends `req` and waits for the answer's head; over ssh, within the
    /// first-answer bound (unless `unbounded`: an upload takes its time),
    /// and a failure is explained by ssh's exit and stderr.
    async fn exchange<B>(
        mut sender: hyper::client::conn::http1::SendRequest<B>,
        diag: Option<Diag>,
        req: Request<B>,
        unbounded: bool,
    ) -> Result<Response>
    where
        B: hyper::body::Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let Some(diag) = diag else { return Ok(sender.send_request(req).await?) };
        let answer = sender.send_request(req);
        let outcome = if unbounded {
            Ok(answer.await)
        } else {
            tokio::time::timeout(remote::first_answer(), answer).await
        };
        match outcome {
            Ok(Ok(resp)) => Ok(resp),
            Ok(Err(_)) => Err(diag.failure(false).await),
            Err(_) => Err(diag.failure(true).await),
        }
    }

    /// Sends one request on a fresh connection.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<Vec<u8>>,
        stream: bool,
    ) -> Result<Response> {
        let (sender, diag) = self.open().await?;
        let mut req = Request::builder()
            .method(method)
            .uri(path)
            .header(header::HOST, "bangerd")
            .header(header::ACCEPT, if stream { NDJSON } else { "application/json" });
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or_default()))).map_err(http_err)?;
        Self::exchange(sender, diag, req, false).await
    }

    pub(crate) async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        decode(self.send(Method::GET, path, None, false).await?).await
    }

    pub(crate) async fn post<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        decode(self.send(Method::POST, path, Some(to_json(body)?), false).await?).await
    }

    pub(crate) async fn put<B: Serialize, T: DeserializeOwned>(&self, path: &str, body: &B) -> Result<T> {
        decode(self.send(Method::PUT, path, Some(to_json(body)?), false).await?).await
    }

    pub(crate) async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        decode(self.send(Method::DELETE, path, None, false).await?).await
    }

    /// A long operation: progress events go to `on_event` as they arrive;
    /// the final result is returned.
    pub(crate) async fn post_stream<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        mut on_event: impl FnMut(&Event),
    ) -> Result<T> {
        let resp = self.send(Method::POST, path, Some(to_json(body)?), true).await?;
        if resp.status() != StatusCode::OK {
            return decode(resp).await;
        }
        let mut body = resp.into_body();
        let mut buf: Vec<u8> = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                buf.extend_from_slice(data);
            }
            while let Some(pos) = buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = buf.drain(..=pos).collect();
                let event: Event = serde_json::from_slice(&line)
                    .map_err(|e| Error::Protocol(format!("a malformed event ({e})")))?;
                match event {
                    Event::Done { result } => {
                        return serde_json::from_value(result)
                            .map_err(|e| Error::Protocol(format!("a result of the wrong shape ({e})")))
                    }
                    Event::Failed { error } => return Err(error.into()),
                    other => on_event(&other),
                }
            }
        }
        Err(Error::Daemon(
            "the daemon closed the connection before the operation finished; see `banger daemon status` for its log"
                .into(),
        ))
    }

    /// GETs `path` and hands the body to `sink` as it arrives.
    pub(crate) async fn get_streamed(
        &self,
        path: &str,
        sink: &mut (impl std::io::Write + ?Sized),
    ) -> Result<()> {
        let resp = self.send(Method::GET, path, None, false).await?;
        if !resp.status().is_success() {
            return decode::<serde_json::Value>(resp).await.map(|_| ());
        }
        let mut body = resp.into_body();
        while let Some(frame) = body.frame().await {
            if let Some(d) = frame?.data_ref() {
                sink.write_all(d)?;
                sink.flush()?;
            }
        }
        Ok(())
    }

    /// Upgrades `POST path` to a raw stream.
    pub(crate) async fn upgrade(&self, path: &str, protocol: &'static str) -> Result<AgentStream> {
        let (sender, diag) = self.open().await?;
        let req = Request::builder()
            .method(Method::POST)
            .uri(path)
            .header(header::HOST, "bangerd")
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, protocol)
            .body(Full::new(Bytes::new()))
            .map_err(http_err)?;
        let resp = Self::exchange(sender, diag, req, false).await?;
        if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
            decode::<serde_json::Value>(resp).await?;
            return Err(Error::Protocol("the daemon did not open the stream".into()));
        }
        Ok(hyper_util::rt::TokioIo::new(hyper::upgrade::on(resp).await?))
    }

    /// PUTs a body that arrives in chunks on `rx` (a tar stream, say).
    pub(crate) async fn put_streamed<T: DeserializeOwned>(
        &self,
        path: &str,
        content_type: &str,
        rx: tokio::sync::mpsc::Receiver<Bytes>,
    ) -> Result<T> {
        let (sender, diag) = self.open().await?;
        let stream = futures_util::stream::unfold(rx, |mut rx| async move {
            let chunk = rx.recv().await?;
            Some((Ok::<_, std::io::Error>(hyper::body::Frame::data(chunk)), rx))
        });
        let req = Request::builder()
            .method(Method::PUT)
            .uri(path)
            .header(header::HOST, "bangerd")
            .header(header::CONTENT_TYPE, content_type)
            .body(http_body_util::StreamBody::new(stream))
            .map_err(http_err)?;
        decode(Self::exchange(sender, diag, req, true).await?).await
    }
}

/// HTTP/1.1 over `io`, its connection driven (upgrades included) by a task
/// of its own.
async fn handshake<B, I>(io: I) -> Result<hyper::client::conn::http1::SendRequest<B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io)).await?;
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    Ok(sender)
}

fn to_json<B: Serialize>(body: &B) -> Result<Vec<u8>> {
    serde_json::to_vec(body).map_err(|e| Error::Protocol(format!("a request that does not serialize ({e})")))
}

fn http_err(e: http::Error) -> Error {
    Error::Protocol(format!("a request that cannot be built ({e})"))
}

/// Decodes a JSON answer; an error status becomes the daemon's
/// [`ApiError`] (code, message, hint).
pub(crate) async fn decode<T: DeserializeOwned>(resp: Response) -> Result<T> {
    let status = resp.status();
    let bytes = resp.into_body().collect().await?.to_bytes();
    if !status.is_success() {
        if let Ok(e) = serde_json::from_slice::<ApiError>(&bytes) {
            return Err(e.into());
        }
        return Err(Error::Protocol(format!("{status}: {}", String::from_utf8_lossy(&bytes))));
    }
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Protocol(format!("{e}: {}", String::from_utf8_lossy(&bytes))))
}
