//! `/v1/images`.

use super::{ApiJson, HttpResult, State};
use axum::extract::{Path, State as S};
use axum::Json;
use banger_api::{Image, RegisterImageRequest};

pub async fn list(S(d): S<State>) -> HttpResult<Vec<Image>> {
    Ok(Json(d.list_images()?))
}

pub async fn show(S(d): S<State>, Path(image): Path<String>) -> HttpResult<Image> {
    Ok(Json(d.show_image(&image)?))
}

pub async fn register(S(d): S<State>, ApiJson(req): ApiJson<RegisterImageRequest>) -> HttpResult<Image> {
    Ok(Json(d.register_image(req).await?))
}

pub async fn remove(S(d): S<State>, Path(image): Path<String>) -> HttpResult<Image> {
    Ok(Json(d.delete_image(&image).await?))
}
