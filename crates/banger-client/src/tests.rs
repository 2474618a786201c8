//! The client against a stand-in daemon on a Unix socket.

use super::*;
use axum::extract::Path;
use axum::routing::{get, post};
use axum::Json;
use banger_api::{ErrorCode, Event, HostKeyForgotten};

/// Serves a few routes the way bangerd does, on `<dir>/d.sock`.
async fn stand_in(dir: &std::path::Path) -> Endpoint {
    let socket = dir.join("d.sock");
    let app = axum::Router::new()
        .route(
            "/v1/vms/{vm}/forget-host-key",
            post(
                |Path(vm): Path<String>| async move { Json(HostKeyForgotten { name: vm, forgotten: true }) },
            ),
        )
        .route(
            "/v1/kernels/{name}",
            get(|Path(name): Path<String>| async move {
                let e =
                    ApiError::not_found(format!("No kernel {name:?}")).with_hint("see `banger kernel list`");
                (axum::http::StatusCode::NOT_FOUND, Json(e))
            }),
        )
        .route(
            "/v1/vms/{vm}/start",
            post(|| async {
                let events = [
                    Event::Phase { phase: "boot".into(), message: "booting".into() },
                    Event::Log { line: "hello".into() },
                    Event::Failed { error: ApiError::timeout("the guest agent never answered") },
                ];
                events.iter().map(|e| serde_json::to_string(e).unwrap() + "\n").collect::<String>()
            }),
        );
    let l = tokio::net::UnixListener::bind(&socket).unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    Endpoint { socket, service: false, daemon_log: dir.join("d.log"), remote: None }
}

#[tokio::test]
async fn names_stay_one_path_segment() {
    let dir = tempfile::tempdir().unwrap();
    let c = Client::new(stand_in(dir.path()).await);
    // A slash or space in a name is encoded: the route still matches and
    // the daemon sees the name whole.
    let r = c.forget_host_key("a/b c?x").await.unwrap();
    assert_eq!(r, HostKeyForgotten { name: "a/b c?x".into(), forgotten: true });
}

#[tokio::test]
async fn the_daemons_errors_arrive_typed() {
    let dir = tempfile::tempdir().unwrap();
    let c = Client::new(stand_in(dir.path()).await);
    let e = c.kernel("nope").await.unwrap_err();
    let api = e.api().expect("an API error");
    assert_eq!((api.code, api.hint.as_deref()), (ErrorCode::NotFound, Some("see `banger kernel list`")));

    // Progress reaches the callback; the failure ends the call.
    let mut seen = vec![];
    let e = c.start_vm("v", |ev| seen.push(ev.clone())).await.unwrap_err();
    assert_eq!(e.api().map(|a| a.code), Some(ErrorCode::Timeout));
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn no_daemon_is_unreachable_and_a_service_is_not_started() {
    let dir = tempfile::tempdir().unwrap();
    let ep = Endpoint {
        socket: dir.path().join("none.sock"),
        service: true,
        daemon_log: dir.path().join("d.log"),
        remote: None,
    };
    let e = Client::new(ep.clone()).version().await.unwrap_err();
    assert!(matches!(e, Error::Unreachable { .. }), "{e:?}");
    assert!(Client::new(ep.clone()).info().await.unwrap().is_none());
    let e = Client::connect(ep).await.unwrap_err();
    let api = e.api().expect("an API error");
    assert_eq!(api.code, ErrorCode::Unavailable);
    assert!(api.hint.as_deref().unwrap_or_default().contains("systemctl start"), "{api:?}");
    assert!(!dir.path().join("d.log").exists(), "a service daemon must not be started by a client");
}
