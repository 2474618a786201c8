//! A thin typed client for Firecracker's HTTP API on its Unix socket.
//!
//! Types mirror the definitions of Firecracker's swagger file
//! (`spec/firecracker-v1.16.1.yaml`), with optional fields left out of the
//! JSON when unset; a test checks every request this client builds against
//! that file. Error bodies (`{"fault_message": …}`) become [`ApiError`]s
//! carrying Firecracker's own words.

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootSource {
    pub kernel_image_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_args: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initrd_path: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drive {
    pub drive_id: String,
    pub path_on_host: String,
    pub is_root_device: bool,
    pub is_read_only: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkInterface {
    pub iface_id: String,
    pub host_dev_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub guest_mac: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MachineConfiguration {
    pub vcpu_count: u32,
    pub mem_size_mib: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub smt: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_dirty_pages: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vsock {
    pub guest_cid: u32,
    pub uds_path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Logger {
    pub log_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show_level: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub show_log_origin: Option<bool>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metrics {
    pub metrics_path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Serial {
    pub serial_out_path: String,
}

/// `PUT /actions`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionType {
    InstanceStart,
    SendCtrlAltDel,
    FlushMetrics,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct InstanceActionInfo {
    action_type: ActionType,
}

/// `PATCH /vm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum VmState {
    Paused,
    Resumed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct VmPatch {
    state: VmState,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotCreateParams {
    pub snapshot_path: String,
    pub mem_file_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot_type: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemoryBackend {
    pub backend_type: String,
    pub backend_path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkOverride {
    pub iface_id: String,
    pub host_dev_name: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VsockOverride {
    pub uds_path: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotLoadParams {
    pub snapshot_path: String,
    pub mem_backend: MemoryBackend,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resume_vm: Option<bool>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_overrides: Vec<NetworkOverride>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vsock_override: Option<VsockOverride>,
}

/// `GET /`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceInfo {
    pub app_name: String,
    pub id: String,
    pub state: String,
    pub vmm_version: String,
}

/// A failed API call.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("Cannot reach the Firecracker API at {path}: {source}")]
    Connect { path: String, source: std::io::Error },
    #[error("Firecracker refused {method} {endpoint} ({status}): {message}")]
    Refused { method: String, endpoint: String, status: u16, message: String },
    #[error("Firecracker API call {method} {endpoint} failed: {message}")]
    Transport { method: String, endpoint: String, message: String },
}

/// Client for one Firecracker process's API socket.
#[derive(Debug, Clone)]
pub struct Client {
    socket: PathBuf,
}

impl Client {
    pub fn new(socket: impl Into<PathBuf>) -> Client {
        Client { socket: socket.into() }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    async fn call(&self, method: Method, endpoint: &str, body: Option<Vec<u8>>) -> Result<Bytes, ApiError> {
        let transport = |message: String| ApiError::Transport {
            method: method.to_string(),
            endpoint: endpoint.to_string(),
            message,
        };
        let stream = tokio::net::UnixStream::connect(&self.socket)
            .await
            .map_err(|source| ApiError::Connect { path: self.socket.display().to_string(), source })?;
        let (mut sender, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .map_err(|e| transport(e.to_string()))?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method.clone())
            .uri(endpoint)
            .header("host", "localhost")
            .header("accept", "application/json");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        let req = req
            .body(Full::new(Bytes::from(body.unwrap_or_default())))
            .map_err(|e| transport(e.to_string()))?;
        let resp = sender.send_request(req).await.map_err(|e| transport(e.to_string()))?;
        let status = resp.status();
        let bytes = resp.into_body().collect().await.map_err(|e| transport(e.to_string()))?.to_bytes();
        if status.is_success() {
            return Ok(bytes);
        }
        #[derive(Deserialize)]
        struct Fault {
            fault_message: String,
        }
        let message = serde_json::from_slice::<Fault>(&bytes)
            .map(|f| f.fault_message)
            .unwrap_or_else(|_| String::from_utf8_lossy(&bytes).trim().to_string());
        Err(ApiError::Refused {
            method: method.to_string(),
            endpoint: endpoint.to_string(),
            status: status.as_u16(),
            message: if message.is_empty() {
                StatusCode::from_u16(status.as_u16()).map(|s| s.to_string()).unwrap_or_default()
            } else {
                message
            },
        })
    }

    async fn send<T: Serialize>(&self, method: Method, endpoint: &str, body: &T) -> Result<(), ApiError> {
        let json = serde_json::to_vec(body).expect("API types serialise");
        self.call(method, endpoint, Some(json)).await.map(|_| ())
    }

    pub async fn put_boot_source(&self, b: &BootSource) -> Result<(), ApiError> {
        self.send(Method::PUT, "/boot-source", b).await
    }
    pub async fn put_drive(&self, d: &Drive) -> Result<(), ApiError> {
        self.send(Method::PUT, &format!("/drives/{}", d.drive_id), d).await
    }
    pub async fn put_network_interface(&self, n: &NetworkInterface) -> Result<(), ApiError> {
        self.send(Method::PUT, &format!("/network-interfaces/{}", n.iface_id), n).await
    }
    pub async fn put_machine_config(&self, m: &MachineConfiguration) -> Result<(), ApiError> {
        self.send(Method::PUT, "/machine-config", m).await
    }
    pub async fn put_vsock(&self, v: &Vsock) -> Result<(), ApiError> {
        self.send(Method::PUT, "/vsock", v).await
    }
    pub async fn put_logger(&self, l: &Logger) -> Result<(), ApiError> {
        self.send(Method::PUT, "/logger", l).await
    }
    pub async fn put_metrics(&self, m: &Metrics) -> Result<(), ApiError> {
        self.send(Method::PUT, "/metrics", m).await
    }
    pub async fn put_serial(&self, s: &Serial) -> Result<(), ApiError> {
        self.send(Method::PUT, "/serial", s).await
    }
    pub async fn action(&self, action_type: ActionType) -> Result<(), ApiError> {
        self.send(Method::PUT, "/actions", &InstanceActionInfo { action_type }).await
    }
    pub async fn set_vm_state(&self, state: VmState) -> Result<(), ApiError> {
        self.send(Method::PATCH, "/vm", &VmPatch { state }).await
    }
    pub async fn create_snapshot(&self, p: &SnapshotCreateParams) -> Result<(), ApiError> {
        self.send(Method::PUT, "/snapshot/create", p).await
    }
    pub async fn load_snapshot(&self, p: &SnapshotLoadParams) -> Result<(), ApiError> {
        self.send(Method::PUT, "/snapshot/load", p).await
    }
    pub async fn instance_info(&self) -> Result<InstanceInfo, ApiError> {
        let bytes = self.call(Method::GET, "/", None).await?;
        serde_json::from_slice(&bytes).map_err(|e| ApiError::Transport {
            method: "GET".into(),
            endpoint: "/".into(),
            message: format!("unexpected answer: {e}"),
        })
    }
}
