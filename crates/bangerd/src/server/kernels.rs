//! `/v1/kernels`.

use super::{operation, to_completion, ApiJson, HttpResult, State};
use axum::extract::{Path, State as S};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use banger_api::{BuildKernelRequest, Bundle, BundleRequest, ImportKernelRequest, Kernel, PullKernelRequest};

pub async fn list(S(d): S<State>) -> HttpResult<Vec<Kernel>> {
    Ok(Json(d.list_kernels()?))
}

pub async fn show(S(d): S<State>, Path(name): Path<String>) -> HttpResult<Kernel> {
    Ok(Json(d.show_kernel(&name)?))
}

pub async fn import(S(d): S<State>, ApiJson(req): ApiJson<ImportKernelRequest>) -> HttpResult<Kernel> {
    to_completion(async move { d.import_kernel(req).await }).await
}

pub async fn remove(S(d): S<State>, Path(name): Path<String>) -> HttpResult<Kernel> {
    to_completion(async move { d.delete_kernel(&name).await }).await
}

pub async fn build(
    S(d): S<State>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<BuildKernelRequest>,
) -> Response {
    operation(&headers, move |p| async move { d.build_kernel(req, &p).await }).await
}

pub async fn pull(S(d): S<State>, headers: HeaderMap, ApiJson(req): ApiJson<PullKernelRequest>) -> Response {
    operation(&headers, move |p| async move { d.pull_kernel(req, &p).await }).await
}

pub async fn bundle(
    S(d): S<State>,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<BundleRequest>,
) -> HttpResult<Bundle> {
    to_completion(async move { d.bundle_kernel(&name, req).await }).await
}
