//! `/v1/vms`.

use super::{operation, to_completion, ApiJson, HttpError, HttpResult, State};
use crate::service::lifecycle::DEFAULT_STOP_TIMEOUT;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, State as S};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use banger_api::{ApiError, CreateVmRequest, StopVmRequest, Vm};
use std::time::Duration;

pub async fn list(S(d): S<State>) -> HttpResult<Vec<Vm>> {
    Ok(Json(d.list_vms()?))
}

pub async fn show(S(d): S<State>, Path(vm): Path<String>) -> HttpResult<Vm> {
    Ok(Json(d.show_vm(&vm)?))
}

pub async fn create(S(d): S<State>, headers: HeaderMap, ApiJson(req): ApiJson<CreateVmRequest>) -> Response {
    operation(&headers, move |p| async move { d.create_vm(req, &p).await }).await
}

pub async fn remove(S(d): S<State>, Path(vm): Path<String>) -> HttpResult<Vm> {
    to_completion(async move { d.delete_vm(&vm).await }).await
}

pub async fn start(S(d): S<State>, headers: HeaderMap, Path(vm): Path<String>) -> Response {
    operation(&headers, move |p| async move { d.start_vm(&vm, &p).await }).await
}

/// The optional stop body: empty means the defaults.
fn stop_timeout(body: &[u8]) -> Result<Duration, ApiError> {
    let req: StopVmRequest = super::optional_json(body)?;
    match req.timeout_secs {
        None => Ok(DEFAULT_STOP_TIMEOUT),
        Some(s) if s <= 3600 => Ok(Duration::from_secs(s)),
        Some(s) => Err(ApiError::invalid(format!("Stop timeout {s} s is out of range"))
            .with_hint("use 0 to 3600 seconds")),
    }
}

pub async fn stop(S(d): S<State>, Path(vm): Path<String>, body: Bytes) -> HttpResult<Vm> {
    let timeout = stop_timeout(&body)?;
    to_completion(async move { d.stop_vm(&vm, timeout).await }).await
}

pub async fn restart(S(d): S<State>, headers: HeaderMap, Path(vm): Path<String>, body: Bytes) -> Response {
    let timeout = match stop_timeout(&body) {
        Ok(t) => t,
        Err(e) => return HttpError(e).into_response(),
    };
    operation(&headers, move |p| async move { d.restart_vm(&vm, timeout, &p).await }).await
}

pub async fn kill(S(d): S<State>, Path(vm): Path<String>) -> HttpResult<Vm> {
    to_completion(async move { d.kill_vm(&vm).await }).await
}

pub async fn forget_host_key(
    S(d): S<State>,
    Path(vm): Path<String>,
) -> HttpResult<banger_api::HostKeyForgotten> {
    let rec = d.find_vm(&vm)?;
    let forgotten = d.forget_host_key(&rec.name);
    Ok(Json(banger_api::HostKeyForgotten { name: rec.name, forgotten }))
}

pub async fn set_workspace(
    S(d): S<State>,
    Path(vm): Path<String>,
    ApiJson(ws): ApiJson<crate::service::vms::SetWorkspace>,
) -> HttpResult<Vm> {
    to_completion(async move { d.set_workspace(&vm, ws).await }).await
}

/// The request body is a tar stream.
pub async fn seed(S(d): S<State>, Path(vm): Path<String>, body: Body) -> HttpResult<Vm> {
    use futures_util::TryStreamExt;
    let stream = body.into_data_stream().map_err(std::io::Error::other);
    let reader = tokio_util::io::SyncIoBridge::new(tokio_util::io::StreamReader::new(stream));
    to_completion(async move { d.seed_vm_disk(&vm, reader).await }).await
}

pub async fn pause(S(d): S<State>, Path(vm): Path<String>) -> HttpResult<Vm> {
    to_completion(async move { d.pause_vm(&vm).await }).await
}

pub async fn resume(S(d): S<State>, Path(vm): Path<String>) -> HttpResult<Vm> {
    to_completion(async move { d.resume_vm(&vm).await }).await
}

#[derive(Debug, serde::Deserialize)]
pub struct LogsQuery {
    #[serde(default)]
    follow: bool,
}

/// The serial console, whole; with `follow=true` the stream stays open and
/// carries new output until the VM stops or the client leaves.
pub async fn logs(
    S(d): S<State>,
    Path(vm): Path<String>,
    Query(q): Query<LogsQuery>,
) -> Result<Response, HttpError> {
    let rec = d.find_vm(&vm)?;
    let path = std::path::Path::new(&rec.vm_dir).join("console.log");
    let body = if q.follow {
        Body::from_stream(crate::service::logs::follow(d.clone(), rec.id.clone(), path))
    } else {
        let bytes = match tokio::fs::read(&path).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => {
                return Err(HttpError(ApiError::internal(format!("Cannot read {}: {e}", path.display()))))
            }
        };
        Body::from(bytes)
    };
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], body).into_response())
}

pub async fn stats(S(d): S<State>, Path(vm): Path<String>) -> HttpResult<banger_api::VmStats> {
    Ok(Json(d.vm_stats(&vm).await?))
}

pub async fn set(
    S(d): S<State>,
    Path(vm): Path<String>,
    ApiJson(req): ApiJson<banger_api::SetVmRequest>,
) -> HttpResult<Vm> {
    to_completion(async move { d.set_vm(&vm, req).await }).await
}
