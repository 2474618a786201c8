//! `/v1/images`.

use super::{operation, to_completion, ApiJson, HttpResult, State};
use axum::extract::{Path, State as S};
use axum::http::HeaderMap;
use axum::response::Response;
use axum::Json;
use banger_api::{
    BuildImageRequest, Bundle, BundleRequest, CatalogView, Image, ImportImageRequest, PruneCacheRequest,
    PruneCacheResult, PullImageRequest, RegisterImageRequest,
};

pub async fn list(S(d): S<State>) -> HttpResult<Vec<Image>> {
    Ok(Json(d.list_images()?))
}

pub async fn show(S(d): S<State>, Path(image): Path<String>) -> HttpResult<Image> {
    Ok(Json(d.show_image(&image)?))
}

pub async fn register(S(d): S<State>, ApiJson(req): ApiJson<RegisterImageRequest>) -> HttpResult<Image> {
    to_completion(async move { d.register_image(req).await }).await
}

pub async fn remove(S(d): S<State>, Path(image): Path<String>) -> HttpResult<Image> {
    to_completion(async move { d.delete_image(&image).await }).await
}

pub async fn build(S(d): S<State>, headers: HeaderMap, ApiJson(req): ApiJson<BuildImageRequest>) -> Response {
    operation(&headers, move |p| async move { d.build_image(req, &p).await }).await
}

pub async fn pull(S(d): S<State>, headers: HeaderMap, ApiJson(req): ApiJson<PullImageRequest>) -> Response {
    operation(&headers, move |p| async move { d.pull_image(req, &p).await }).await
}

pub async fn import(
    S(d): S<State>,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ImportImageRequest>,
) -> Response {
    operation(&headers, move |p| async move { d.import_image(req, &p).await }).await
}

pub async fn bundle(
    S(d): S<State>,
    Path(image): Path<String>,
    ApiJson(req): ApiJson<BundleRequest>,
) -> HttpResult<Bundle> {
    to_completion(async move { d.bundle_image(&image, req).await }).await
}

pub async fn prune_cache(
    S(d): S<State>,
    ApiJson(req): ApiJson<PruneCacheRequest>,
) -> HttpResult<PruneCacheResult> {
    to_completion(async move { d.prune_image_cache(req).await }).await
}

pub async fn catalog(S(d): S<State>) -> HttpResult<CatalogView> {
    Ok(Json(d.list_catalog().await?))
}
