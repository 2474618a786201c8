//! The Firecracker engine against an in-process fake of its API socket:
//! every request checked against Firecracker's own swagger file, and the
//! error paths (4xx bodies, a socket that never appears, a process that
//! exits early).

use super::api::{self, Client};
use super::*;
use crate::{BootSource, Drive, MachineConfig, NetworkInterface};
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use std::sync::{Arc, Mutex};

type Log = Arc<Mutex<Vec<(String, String, serde_json::Value)>>>;

/// Serves a fake Firecracker API on `sock`: records each request and
/// answers 204, or 400 with a fault message for paths in `reject`.
fn fake_api(sock: &Path, reject: &'static [&'static str]) -> Log {
    let log: Log = Arc::default();
    let listener = tokio::net::UnixListener::bind(sock).unwrap();
    let state = (log.clone(), reject);
    let app = axum::Router::new()
        .fallback(|State((log, reject)): State<(Log, &'static [&'static str])>, req: Request| async move {
            let (parts, body) = req.into_parts();
            let bytes: Bytes = axum::body::to_bytes(body, 1 << 20).await.unwrap();
            let json = if bytes.is_empty() { serde_json::Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
            let path = parts.uri.path().to_string();
            log.lock().unwrap().push((parts.method.to_string(), path.clone(), json));
            if reject.contains(&path.as_str()) {
                return (StatusCode::BAD_REQUEST, r#"{"fault_message":"Invalid request: the fake says no"}"#).into_response();
            }
            if path == "/" {
                return axum::Json(serde_json::json!({"app_name":"Firecracker","id":"x","state":"Running","vmm_version":"1.16.1"})).into_response();
            }
            StatusCode::NO_CONTENT.into_response()
        })
        .with_state(state);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    log
}

fn spec(dir: &Path) -> VmSpec {
    VmSpec {
        id: "0123456789ab".into(),
        boot: BootSource { kernel: "/k/vmlinux".into(), initrd: None, cmdline: "console=ttyS0".into() },
        drives: vec![
            Drive { id: "rootfs".into(), path: "/i/rootfs.ext4".into(), read_only: true },
            Drive { id: "disk".into(), path: dir.join("disk.ext4"), read_only: false },
        ],
        interfaces: vec![NetworkInterface {
            id: "eth0".into(),
            tap: "bg0123456789ab".into(),
            mac: "06:01:23:45:67:89".into(),
        }],
        machine: MachineConfig { vcpu: 2, memory_mib: 512 },
        vsock_cid: 3,
        accel: Accel::Kvm,
        run_dir: dir.to_path_buf(),
        vm_dir: dir.to_path_buf(),
    }
}

/// The swagger file, as `(paths, definitions)`.
fn swagger() -> serde_json::Value {
    let text = include_str!("../../spec/firecracker-v1.16.1.yaml");
    serde_norway::from_str(text).unwrap()
}

/// Finds the spec path template matching a concrete path.
fn template_for<'a>(spec: &'a serde_json::Value, path: &str) -> Option<(&'a str, &'a serde_json::Value)> {
    spec["paths"].as_object()?.iter().find_map(|(tpl, item)| {
        let a: Vec<&str> = tpl.split('/').collect();
        let b: Vec<&str> = path.split('/').collect();
        (a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.starts_with('{') || x == y))
            .then_some((tpl.as_str(), item))
    })
}

/// Checks that every field of `body` is defined by the schema `schema`
/// (following `$ref`s into `definitions`), recursively.
fn check_fields(spec: &serde_json::Value, schema: &serde_json::Value, body: &serde_json::Value, at: &str) {
    let schema = match schema.get("$ref").and_then(|r| r.as_str()) {
        Some(r) => &spec["definitions"][r.trim_start_matches("#/definitions/")],
        None => schema,
    };
    match body {
        serde_json::Value::Object(fields) => {
            let props =
                schema["properties"].as_object().unwrap_or_else(|| panic!("{at}: schema has no properties"));
            for (k, v) in fields {
                let sub = props
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}: field {k:?} is not in Firecracker's API spec"));
                check_fields(spec, sub, v, &format!("{at}.{k}"));
            }
            for req in schema["required"].as_array().into_iter().flatten() {
                assert!(fields.contains_key(req.as_str().unwrap()), "{at}: required field {req} missing");
            }
        }
        serde_json::Value::Array(items) => {
            for (i, it) in items.iter().enumerate() {
                check_fields(spec, &schema["items"], it, &format!("{at}[{i}]"));
            }
        }
        serde_json::Value::String(s) => {
            if let Some(allowed) = schema["enum"].as_array() {
                assert!(allowed.iter().any(|a| a == s), "{at}: {s:?} is not one of {allowed:?}");
            }
        }
        _ => {}
    }
}

fn check_against_spec(log: &Log) {
    let spec = swagger();
    let requests = log.lock().unwrap().clone();
    assert!(!requests.is_empty());
    for (method, path, body) in requests {
        let (tpl, item) = template_for(&spec, &path)
            .unwrap_or_else(|| panic!("{method} {path}: not a path in Firecracker's API"));
        let op = item
            .get(method.to_lowercase())
            .unwrap_or_else(|| panic!("{method} {tpl}: method not in the spec"));
        if body.is_null() {
            continue;
        }
        let param = op["parameters"]
            .as_array()
            .and_then(|ps| ps.iter().find(|p| p["in"] == "body"))
            .unwrap_or_else(|| panic!("{method} {tpl} takes no body in the spec"));
        check_fields(&spec, &param["schema"], &body, &format!("{method} {tpl}"));
    }
}

#[tokio::test]
async fn every_request_matches_the_swagger_file() {
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("fc.sock");
    let log = fake_api(&sock, &[]);
    let fc = Firecracker::new("/nonexistent".into());
    let client = Client::new(&sock);
    let s = spec(d.path());
    fc.configure(&s, &client).await.unwrap();
    client.action(api::ActionType::InstanceStart).await.unwrap();
    client.action(api::ActionType::SendCtrlAltDel).await.unwrap();
    client.set_vm_state(api::VmState::Paused).await.unwrap();
    client.set_vm_state(api::VmState::Resumed).await.unwrap();
    client
        .create_snapshot(&api::SnapshotCreateParams {
            snapshot_path: "/s".into(),
            mem_file_path: "/m".into(),
            snapshot_type: Some("Full".into()),
        })
        .await
        .unwrap();
    client
        .load_snapshot(&api::SnapshotLoadParams {
            snapshot_path: "/s".into(),
            mem_backend: api::MemoryBackend { backend_type: "File".into(), backend_path: "/m".into() },
            resume_vm: Some(true),
            network_overrides: vec![api::NetworkOverride {
                iface_id: "eth0".into(),
                host_dev_name: "bgx".into(),
            }],
            vsock_override: Some(api::VsockOverride { uds_path: "/v".into() }),
        })
        .await
        .unwrap();
    client.put_serial(&api::Serial { serial_out_path: "/c".into() }).await.unwrap();
    client
        .put_logger(&api::Logger {
            log_path: "/l".into(),
            level: Some("Info".into()),
            show_level: Some(true),
            show_log_origin: Some(false),
        })
        .await
        .unwrap();
    client.put_metrics(&api::Metrics { metrics_path: "/m".into() }).await.unwrap();
    assert_eq!(client.instance_info().await.unwrap().vmm_version, "1.16.1");
    let paths: Vec<String> = log.lock().unwrap().iter().map(|r| format!("{} {}", r.0, r.1)).collect();
    for want in [
        "PUT /logger",
        "PUT /metrics",
        "PUT /machine-config",
        "PUT /boot-source",
        "PUT /drives/rootfs",
        "PUT /drives/disk",
        "PUT /network-interfaces/eth0",
        "PUT /vsock",
        "PUT /actions",
    ] {
        assert!(paths.iter().any(|p| p == want), "{want} was not sent: {paths:?}");
    }
    check_against_spec(&log);
}

#[tokio::test]
async fn fault_messages_become_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let sock = d.path().join("fc.sock");
    let _log = fake_api(&sock, &["/boot-source"]);
    let fc = Firecracker::new("/nonexistent".into());
    let err = fc.configure(&spec(d.path()), &Client::new(&sock)).await.unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("PUT /boot-source") && msg.contains("400") && msg.contains("the fake says no"),
        "{msg}"
    );
    let err = Client::new(d.path().join("missing.sock")).instance_info().await.unwrap_err();
    assert!(matches!(err, api::ApiError::Connect { .. }), "{err}");
}

fn fake_binary(dir: &Path, script: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join("firecracker");
    std::fs::write(
        &p,
        format!(
            "#!/bin/sh\nif [ \"$1\" = --version ]; then echo 'Firecracker v1.16.1'; exit 0; fi\n{script}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

#[tokio::test]
async fn a_process_that_exits_early_is_reported() {
    let d = tempfile::tempdir().unwrap();
    let bin = fake_binary(d.path(), "echo 'Error: bad config' ; exit 1");
    let fc = Firecracker::new(bin);
    let err = fc.launch(&spec(d.path())).await.unwrap_err().to_string();
    assert!(err.contains("exited before creating") && err.contains("bad config"), "{err}");
}

#[tokio::test]
async fn a_socket_that_never_appears_times_out_and_leaves_nothing() {
    let d = tempfile::tempdir().unwrap();
    let bin = fake_binary(d.path(), "exec sleep 30");
    let fc = Firecracker { bin, startup_timeout: Duration::from_millis(300), jail: None };
    let t = std::time::Instant::now();
    let err = fc.launch(&spec(d.path())).await.unwrap_err().to_string();
    assert!(err.contains("did not create"), "{err}");
    assert!(t.elapsed() < Duration::from_secs(3));
    tokio::time::sleep(Duration::from_millis(100)).await;
    let left: Vec<_> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|c| String::from_utf8_lossy(&c).replace('\0', " "))
        .filter(|c| c.contains(&d.path().display().to_string()) && c.contains("banger-0123456789ab"))
        .collect();
    assert!(left.is_empty(), "the fake firecracker was left running: {left:?}");
}

#[test]
fn versions() {
    assert_eq!(
        parse_version("Firecracker v1.16.1\n\nSupported snapshot data format versions: v8.0.0"),
        Some((1, 16, 1))
    );
    assert_eq!(parse_version("Firecracker v1.5.0-dev"), Some((1, 5, 0)));
    assert_eq!(parse_version("garbage"), None);
}

#[tokio::test]
async fn old_versions_are_refused_by_name() {
    use std::os::unix::fs::PermissionsExt;
    let d = tempfile::tempdir().unwrap();
    let p = d.path().join("firecracker");
    std::fs::write(&p, "#!/bin/sh\necho 'Firecracker v1.4.1'\n").unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    let err = Firecracker::new(p).check_version().unwrap_err().to_string();
    assert!(err.contains("1.4.1") && err.contains("1.5"), "{err}");
}
