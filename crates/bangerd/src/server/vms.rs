//! `/v1/vms`.

use super::{operation, ApiJson, HttpResult, State};
use axum::extract::{Path, State as S};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use banger_api::{CreateVmRequest, Vm};

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
    Ok(Json(d.delete_vm(&vm).await?))
}
