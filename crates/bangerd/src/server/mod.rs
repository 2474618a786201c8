//! The HTTP/JSON API on the daemon's Unix socket.
//!
//! How a request flows:
//! 1. [`serve`] accepts a connection on the 0600 socket in the 0700 runtime
//!    dir; only the owning user can reach it.
//! 2. The router (built from [`routes`], the single list that the OpenAPI
//!    test checks against `api/openapi.json`) picks a handler.
//! 3. The handler parses the path and body ([`ApiJson`] turns malformed JSON
//!    into `invalid_argument`), then calls one method of
//!    [`crate::service::Daemon`], which validates everything again.
//! 4. The result becomes JSON; an [`ApiError`] becomes
//!    `{code, message, hint?}` with a matching status. Long operations
//!    answer with an NDJSON event stream when the client asks for one
//!    ([`operation`]).

mod agent;
mod images;
mod kernels;
mod system;
mod vms;

use crate::service::{Daemon, Progress};
use axum::extract::{FromRequest, Request};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, MethodRouter};
use axum::{Json, Router};
use banger_api::events::NDJSON;
use banger_api::{ApiError, Event};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::future::Future;
use std::sync::Arc;

type State = Arc<Daemon>;

/// Every route the daemon serves: method, path (axum syntax), handler.
pub fn routes() -> Vec<(Method, &'static str, MethodRouter<State>)> {
    vec![
        (Method::GET, "/v1/version", get(system::version)),
        (Method::POST, "/v1/daemon/shutdown", post(system::shutdown)),
        (Method::GET, "/v1/config", get(system::config)),
        (Method::GET, "/v1/doctor", get(system::doctor)),
        (Method::GET, "/v1/ssh", get(system::ssh)),
        (Method::POST, "/v1/ssh/config", post(system::ssh_config)),
        (Method::GET, "/v1/kernels", get(kernels::list)),
        (Method::POST, "/v1/kernels", post(kernels::import)),
        (Method::POST, "/v1/kernels/build", post(kernels::build)),
        (Method::POST, "/v1/kernels/pull", post(kernels::pull)),
        (Method::POST, "/v1/kernels/{name}/bundle", post(kernels::bundle)),
        (Method::GET, "/v1/kernels/{name}", get(kernels::show)),
        (Method::DELETE, "/v1/kernels/{name}", delete(kernels::remove)),
        (Method::GET, "/v1/images", get(images::list)),
        (Method::POST, "/v1/images", post(images::register)),
        (Method::POST, "/v1/images/build", post(images::build)),
        (Method::POST, "/v1/images/pull", post(images::pull)),
        (Method::POST, "/v1/images/import", post(images::import)),
        (Method::POST, "/v1/images/cache/prune", post(images::prune_cache)),
        (Method::POST, "/v1/images/{image}/bundle", post(images::bundle)),
        (Method::GET, "/v1/catalog", get(images::catalog)),
        (Method::GET, "/v1/images/{image}", get(images::show)),
        (Method::DELETE, "/v1/images/{image}", delete(images::remove)),
        (Method::GET, "/v1/vms", get(vms::list)),
        (Method::POST, "/v1/vms", post(vms::create)),
        (Method::GET, "/v1/vms/{vm}", get(vms::show)),
        (Method::DELETE, "/v1/vms/{vm}", delete(vms::remove)),
        (Method::POST, "/v1/vms/{vm}/start", post(vms::start)),
        (Method::POST, "/v1/vms/{vm}/stop", post(vms::stop)),
        (Method::POST, "/v1/vms/{vm}/restart", post(vms::restart)),
        (Method::POST, "/v1/vms/{vm}/kill", post(vms::kill)),
        (Method::POST, "/v1/vms/{vm}/pause", post(vms::pause)),
        (Method::POST, "/v1/vms/{vm}/resume", post(vms::resume)),
        (Method::GET, "/v1/vms/{vm}/logs", get(vms::logs)),
        (Method::GET, "/v1/vms/{vm}/stats", get(vms::stats)),
        (Method::POST, "/v1/vms/{vm}/set", post(vms::set)),
        (Method::POST, "/v1/vms/{vm}/agent", post(agent::connect)),
        (Method::POST, "/v1/vms/{vm}/forget-host-key", post(vms::forget_host_key)),
        (Method::PUT, "/v1/vms/{vm}/workspace", axum::routing::put(vms::set_workspace)),
        (Method::PUT, "/v1/vms/{vm}/seed", axum::routing::put(vms::seed)),
    ]
}

/// `(METHOD, /path/{param})` for each route, for the OpenAPI check.
pub fn route_list() -> Vec<(String, String)> {
    routes().into_iter().map(|(m, p, _)| (m.to_string(), p.to_string())).collect()
}

pub fn router(daemon: Arc<Daemon>) -> Router {
    let mut r: Router<State> = Router::new();
    for (_, path, handler) in routes() {
        r = r.route(path, handler);
    }
    r.fallback(|| async {
        HttpError(ApiError::not_found("No such API endpoint").with_hint("see api/openapi.json"))
    })
    .method_not_allowed_fallback(|| async {
        let e = ApiError::invalid("Method not allowed on this endpoint").with_hint("see api/openapi.json");
        (StatusCode::METHOD_NOT_ALLOWED, Json(e))
    })
    .with_state(daemon)
}

/// Serves the API on `listener` until `shutdown` resolves or a client asks
/// the daemon to stop.
pub async fn serve(
    listener: tokio::net::UnixListener,
    daemon: Arc<Daemon>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(daemon.clone());
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            tokio::select! {
                _ = shutdown => {},
                _ = daemon.shutdown_requested() => {},
            }
        })
        .await
}

/// An [`ApiError`] as an HTTP response.
#[derive(Debug)]
pub struct HttpError(pub ApiError);

impl From<ApiError> for HttpError {
    fn from(e: ApiError) -> Self {
        HttpError(e)
    }
}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let status =
            StatusCode::from_u16(self.0.code.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(self.0)).into_response()
    }
}

pub type HttpResult<T> = Result<Json<T>, HttpError>;

/// A JSON body whose rejection is an `invalid_argument` API error instead of
/// axum's plain-text one.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = HttpError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Json::<T>::from_request(req, state).await {
            Ok(Json(v)) => Ok(ApiJson(v)),
            Err(rej) => Err(HttpError(
                ApiError::invalid(format!("Malformed request body: {}", rej.body_text()))
                    .with_hint("send a JSON object as described in api/openapi.json"),
            )),
        }
    }
}

/// Parses an optional JSON body: empty means `T::default()`.
pub fn optional_json<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(format!("Malformed request body: {e}"))
            .with_hint("send a JSON object as described in api/openapi.json")
    })
}

/// Runs a state-changing call to completion in its own task: a client that
/// goes away (Ctrl-C) does not cancel it half-way and leave, say, a VM
/// `stopping` with its engine half torn down.
pub async fn to_completion<T, Fut>(call: Fut) -> HttpResult<T>
where
    T: Send + 'static,
    Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    match tokio::spawn(call).await {
        Ok(Ok(v)) => Ok(Json(v)),
        Ok(Err(e)) => Err(HttpError(e)),
        Err(e) => Err(HttpError(ApiError::internal(format!("Operation panicked: {e}")))),
    }
}

/// Runs a possibly long operation. It runs in its own task, so a client
/// that disconnects does not cut it short half-way. If the client accepts
/// `application/x-ndjson`, progress events stream as they happen and the
/// last line is `done` or `failed`; otherwise the plain result is returned.
pub async fn operation<T, F, Fut>(headers: &HeaderMap, op: F) -> Response
where
    T: Serialize + Send + 'static,
    F: FnOnce(Progress) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
{
    let wants_stream =
        headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains(NDJSON));
    if !wants_stream {
        // Dropping the JoinHandle (client gone) does not cancel the task.
        return match tokio::spawn(op(Progress::none())).await {
            Ok(Ok(v)) => Json(v).into_response(),
            Ok(Err(e)) => HttpError(e).into_response(),
            Err(e) => HttpError(ApiError::internal(format!("Operation panicked: {e}"))).into_response(),
        };
    }
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Event>();
    let progress = Progress::new(tx.clone());
    tokio::spawn(async move {
        let task = tokio::spawn(op(progress));
        let last = match task.await {
            Ok(Ok(v)) => Event::Done { result: serde_json::to_value(v).unwrap_or_default() },
            Ok(Err(error)) => Event::Failed { error },
            Err(e) => Event::Failed { error: ApiError::internal(format!("operation panicked: {e}")) },
        };
        let _ = tx.send(last);
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        let e = rx.recv().await?;
        let mut line = serde_json::to_vec(&e).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, std::convert::Infallible>(line), rx))
    });
    ([(header::CONTENT_TYPE, NDJSON)], axum::body::Body::from_stream(stream)).into_response()
}
