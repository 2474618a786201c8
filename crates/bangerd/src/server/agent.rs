//! `POST /v1/vms/{vm}/agent`: a raw stream to the VM's guest agent.
//!
//! The client sends `Connection: Upgrade` and `Upgrade: banger-agent`; the
//! daemon connects to the agent over the VM's vsock socket first (so a VM
//! that is not running, or an agent that is gone, is a normal JSON error),
//! then answers `101 Switching Protocols` and splices the two streams. From
//! there the client speaks the agent protocol (`banger_agent_proto`)
//! directly, for exec, file transfer and ports, with nothing re-encoded.

use super::{HttpError, State};
use axum::extract::{Path, Request, State as S};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;

pub const UPGRADE_PROTOCOL: &str = "banger-agent";

pub async fn connect(
    S(d): S<State>,
    Path(vm): Path<String>,
    mut req: Request,
) -> Result<Response, HttpError> {
    let wants = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case(UPGRADE_PROTOCOL));
    if !wants {
        return Err(HttpError(
            banger_api::ApiError::invalid("This endpoint needs `Upgrade: banger-agent`")
                .with_hint("use `banger vm exec`, `vm cp` or `vm ports`"),
        ));
    }
    let mut guest = d.agent_stream(&vm).await?;
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match upgrade.await {
            Ok(up) => {
                let mut client = TokioIo::new(up);
                let _ = tokio::io::copy_bidirectional(&mut client, &mut guest).await;
            }
            Err(e) => tracing::debug!("agent upgrade failed: {e}"),
        }
    });
    let mut resp = StatusCode::SWITCHING_PROTOCOLS.into_response();
    resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    resp.headers_mut().insert(header::UPGRADE, HeaderValue::from_static(UPGRADE_PROTOCOL));
    Ok(resp)
}
