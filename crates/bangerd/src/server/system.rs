//! `/v1/version`, `/v1/daemon/*`, `/v1/config`.

use super::{HttpResult, State};
use crate::util::rfc3339;
use axum::extract;
use axum::Json;
use banger_api::{ConfigView, DaemonInfo};

pub async fn version(extract::State(d): extract::State<State>) -> HttpResult<DaemonInfo> {
    Ok(Json(DaemonInfo {
        version: banger_api::VERSION.into(),
        commit: banger_api::GIT_COMMIT.into(),
        build_id: banger_api::build_id(),
        pid: std::process::id(),
        socket: d.paths.socket().display().to_string(),
        log_path: d.paths.daemon_log().display().to_string(),
        state_dir: d.paths.state_dir.display().to_string(),
        started_at: rfc3339(d.started_at_ms),
        exe: d.exe.0.clone(),
        exe_mtime_ms: d.exe.1,
    }))
}

pub async fn shutdown(extract::State(d): extract::State<State>) -> HttpResult<banger_api::ShutdownStarted> {
    tracing::info!("shutdown requested over the API; running VMs keep running");
    // Answer first: stopping the server at once could cut this very reply.
    tokio::spawn(async move {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        d.request_shutdown();
    });
    Ok(Json(banger_api::ShutdownStarted { stopping: true }))
}

pub async fn config(extract::State(d): extract::State<State>) -> HttpResult<ConfigView> {
    Ok(Json(d.config.view()))
}

pub async fn doctor(
    extract::State(d): extract::State<State>,
) -> HttpResult<Vec<crate::service::doctor::Check>> {
    let d2 = d.clone();
    let checks = tokio::task::spawn_blocking(move || d2.doctor())
        .await
        .map_err(|e| banger_api::ApiError::internal(format!("doctor task: {e}")))?;
    Ok(Json(checks))
}

pub async fn ssh(extract::State(d): extract::State<State>) -> HttpResult<crate::service::guest::SshInfo> {
    Ok(Json(d.ensure_ssh_key()?))
}

/// Writes banger's ssh_config (a `Host *.vm` block) into the state dir and
/// returns its path and text.
pub async fn ssh_config(
    extract::State(d): extract::State<State>,
    super::ApiJson(req): super::ApiJson<banger_api::SshConfigRequest>,
) -> HttpResult<banger_api::SshConfigWritten> {
    let (path, text) = d.write_ssh_config(&req.banger)?;
    Ok(Json(banger_api::SshConfigWritten { path, text }))
}
