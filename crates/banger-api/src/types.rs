//! Objects the daemon returns and request bodies it accepts.
//!
//! Field names are part of the CLI's `--json` contract: add fields freely,
//! never rename or remove one.

use serde::{Deserialize, Serialize};

/// Lifecycle state of a VM, as recorded by the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Not running; its disk is kept.
    Stopped,
    /// The engine is being launched or the guest has not answered yet.
    Starting,
    /// The guest agent answered; the VM is usable.
    Running,
    /// A stop is under way.
    Stopping,
    /// The guest is paused (Firecracker only); it keeps its memory.
    Paused,
    /// The engine died or a start failed; see `last_error`.
    Error,
    /// Its engine is gone and its files are being removed; a daemon that
    /// restarts finishes the delete.
    Deleting,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Stopped => "stopped",
            VmState::Starting => "starting",
            VmState::Running => "running",
            VmState::Stopping => "stopping",
            VmState::Paused => "paused",
            VmState::Error => "error",
            VmState::Deleting => "deleting",
        }
    }

    /// Parses the stored form; unknown strings are `None`.
    pub fn parse(s: &str) -> Option<VmState> {
        Some(match s {
            "stopped" => VmState::Stopped,
            "starting" => VmState::Starting,
            "running" => VmState::Running,
            "stopping" => VmState::Stopping,
            "paused" => VmState::Paused,
            "error" => VmState::Error,
            "deleting" => VmState::Deleting,
            _ => return None,
        })
    }

    /// Whether an engine process may exist for a VM in this state.
    pub fn has_runtime(self) -> bool {
        matches!(self, VmState::Starting | VmState::Running | VmState::Stopping | VmState::Paused)
    }
}

impl std::fmt::Display for VmState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A VM as `vm show --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vm {
    pub id: String,
    pub name: String,
    pub state: VmState,
    /// Name of the image the VM was created from.
    pub image: String,
    pub image_id: String,
    /// Name of the kernel the VM boots.
    pub kernel: String,
    pub vcpu: u32,
    pub memory_mib: u64,
    pub disk_size_mib: u64,
    pub guest_ip: String,
    pub vm_dir: String,
    pub created_at: String,
    pub last_error: Option<String>,
    /// Engine that runs (or will run) this VM: `qemu` or `firecracker`.
    pub engine: String,
    /// Why that engine was chosen.
    pub engine_reason: String,
    /// Whether the guest may reach beyond the host (opt-in NAT).
    #[serde(default)]
    pub nat: bool,
    /// Runtime facts, present while an engine process exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runtime: Option<VmRuntime>,
    /// The workspace copied into the guest, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workspace: Option<Workspace>,
    /// Ports forwarded from the host for the VM's life.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwards: Vec<PortForward>,
    /// Defaults for `vm exec` from the image's config (OCI ENV, WORKDIR,
    /// USER), when it has any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec_defaults: Option<ExecDefaults>,
}

/// What an OCI image's config sets for the processes it runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecDefaults {
    /// `KEY=value` pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
}

/// Facts about a running VM's engine process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VmRuntime {
    pub pid: u32,
    /// `kvm` or `tcg` (QEMU), `kvm` (Firecracker).
    pub accel: String,
    pub tap: Option<String>,
    pub started_at: String,
    pub console_log: String,
}

/// The git workspace copied into a VM by `vm run PATH` or `vm workspace prepare`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Workspace {
    pub guest_path: String,
    pub host_path: String,
    pub head: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
    pub prepared_at: String,
}

/// One host → guest TCP port forward.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PortForward {
    pub host_addr: String,
    pub host_port: u16,
    pub guest_port: u16,
}

/// An image as `image show --json` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub id: String,
    pub name: String,
    /// Name of the kernel this image boots with.
    pub kernel: String,
    pub rootfs_path: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub created_at: String,
    /// Where the image came from: `register`, `build`, `pull`, `import`.
    #[serde(default)]
    pub source: String,
    /// The image's manifest (distro, packages, agent version, OCI config…).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<serde_json::Value>,
}

/// A kernel as `kernel show --json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kernel {
    pub name: String,
    pub vmlinux_path: String,
    pub initrd_path: Option<String>,
    pub sha256: String,
    pub created_at: String,
    /// Where the kernel came from: `import`, `build`, `pull`.
    #[serde(default)]
    pub source: String,
}

/// `POST /v1/vms`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateVmRequest {
    /// Omitted: the daemon generates a readable name.
    #[serde(default)]
    pub name: Option<String>,
    /// Image name or id; omitted: the configured default image.
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub vcpu: Option<u32>,
    #[serde(default)]
    pub memory_mib: Option<u64>,
    #[serde(default)]
    pub disk_size_mib: Option<u64>,
    /// Record the VM without booting it.
    #[serde(default)]
    pub no_start: bool,
    /// `auto`, `firecracker` or `qemu`; omitted: the configured engine.
    #[serde(default)]
    pub engine: Option<String>,
    #[serde(default)]
    pub nat: bool,
    #[serde(default)]
    pub forwards: Vec<PortForward>,
}

/// `POST /v1/vms/{ref}/stop` and `/restart`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StopVmRequest {
    /// Seconds to wait for a clean shutdown before killing; omitted: 10.
    #[serde(default)]
    pub timeout_secs: Option<u64>,
}

/// `POST /v1/images`: register an existing ext4 root filesystem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterImageRequest {
    pub name: String,
    /// Absolute path of the ext4 file on the daemon's host.
    pub rootfs: String,
    /// Name of an imported kernel.
    pub kernel: String,
}

/// `POST /v1/images/build`: debootstrap a Debian image.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildImageRequest {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub size_mib: Option<u64>,
    /// Kernel to pair with; omitted: the configured default kernel.
    #[serde(default)]
    pub kernel: Option<String>,
}

/// `POST /v1/images/pull`: a catalog name or an OCI reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullImageRequest {
    /// `debian-bookworm` (catalog) or `docker.io/library/debian:bookworm`.
    pub reference: String,
    /// Name to register under; default: the catalog name, or one derived
    /// from the reference (`debian-bookworm`).
    #[serde(default)]
    pub name: Option<String>,
    /// ext4 size for OCI images; default content × 1.5, at least 1 GiB.
    #[serde(default)]
    pub size_mib: Option<u64>,
    /// Kernel to pair an OCI image with; default: the configured one.
    #[serde(default)]
    pub kernel: Option<String>,
}

/// `POST /v1/images/import`: a `docker save` tarball or OCI layout archive.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportImageRequest {
    /// Absolute path of the archive on the daemon's host.
    pub archive: String,
    pub name: String,
    #[serde(default)]
    pub size_mib: Option<u64>,
    #[serde(default)]
    pub kernel: Option<String>,
}

/// `POST /v1/kernels/pull`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullKernelRequest {
    pub name: String,
}

/// `POST /v1/images/{image}/bundle`, `POST /v1/kernels/{name}/bundle`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BundleRequest {
    /// Absolute path of the `.tar.zst` to write (must not exist).
    pub output: String,
    /// URL the bundle will be served from, for the printed catalog entry;
    /// default: the file name (relative to the catalog).
    #[serde(default)]
    pub url: Option<String>,
}

/// A written bundle and the catalog entry that serves it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub path: String,
    pub sha256: String,
    pub size_bytes: u64,
    /// TOML to paste into a catalog file.
    pub catalog_entry: String,
}

/// One entry of the catalogs, with its state on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogEntry {
    /// `image` or `kernel`.
    pub kind: String,
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Bundle URL; none for entries banger builds locally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
    /// For images: the kernel they boot with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel: Option<String>,
    /// Whether banger can build it locally when no bundle is reachable.
    #[serde(default)]
    pub buildable: bool,
    /// The catalog it comes from (`embedded`, a URL or a file).
    pub origin: String,
    /// `pulled` (present here) or `available`.
    pub state: String,
}

/// `GET /v1/catalog`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogView {
    pub entries: Vec<CatalogEntry>,
    /// Catalogs that could not be read, and why.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `POST /v1/images/cache/prune`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneCacheRequest {
    #[serde(default)]
    pub dry_run: bool,
}

/// What a cache prune removed (or would remove).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneCacheResult {
    pub files: u64,
    pub bytes: u64,
    pub dry_run: bool,
}

/// `POST /v1/vms/{vm}/set`: change a stopped VM's resources.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetVmRequest {
    #[serde(default)]
    pub vcpu: Option<u32>,
    #[serde(default)]
    pub memory_mib: Option<u64>,
    #[serde(default)]
    pub nat: Option<bool>,
}

/// `GET /v1/vms/{vm}/stats`: resource use, measured on the host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmStats {
    pub id: String,
    pub name: String,
    pub state: VmState,
    pub vcpu: u32,
    pub memory_mib: u64,
    /// Seconds since the engine started; none when not running.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uptime_secs: Option<u64>,
    /// CPU used by the engine and its helpers, over a 250 ms sample, in %
    /// of one core (200 = two cores busy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_percent: Option<f64>,
    /// CPU seconds used since start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_seconds: Option<f64>,
    /// Resident memory of the engine and its helpers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rss_bytes: Option<u64>,
    /// Bytes the VM's own disk takes on the host (it is sparse).
    pub disk_allocated_bytes: u64,
    pub disk_size_bytes: u64,
}

/// `POST /v1/kernels`: import a kernel from files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportKernelRequest {
    pub name: String,
    pub vmlinux: String,
    #[serde(default)]
    pub initrd: Option<String>,
}

/// `POST /v1/kernels/build`: build a kernel from Debian's linux-source.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildKernelRequest {
    #[serde(default)]
    pub name: Option<String>,
    /// A whole kernel `.config` to build with instead of banger's own
    /// fragment (for instance Firecracker's CI guest config); at most
    /// [`MAX_KERNEL_CONFIG_BYTES`].
    #[serde(default)]
    pub config: Option<String>,
}

/// The largest kernel config `kernel build --config` accepts.
pub const MAX_KERNEL_CONFIG_BYTES: usize = 1 << 20;

/// `GET /v1/version`: who is answering.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DaemonInfo {
    pub version: String,
    pub commit: String,
    pub build_id: String,
    pub pid: u32,
    pub socket: String,
    pub log_path: String,
    pub state_dir: String,
    pub started_at: String,
    /// The daemon's executable and its modification time (ms) when the
    /// daemon started: a rebuilt binary at the same path means a stale
    /// daemon, even when the version string did not change.
    #[serde(default)]
    pub exe: String,
    #[serde(default)]
    pub exe_mtime_ms: i64,
}

/// One effective configuration value and where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigEntry {
    pub key: String,
    pub value: serde_json::Value,
    /// `file` or `default`.
    pub source: String,
}

/// `GET /v1/config`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigView {
    /// The config file the daemon read (it may not exist).
    pub path: String,
    pub file_exists: bool,
    pub entries: Vec<ConfigEntry>,
}

/// Result of deleting or otherwise acting on one object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    pub id: String,
    pub name: String,
}

/// `GET /v1/ssh`: where banger keeps its SSH material (all under the
/// daemon's state dir).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshInfo {
    pub private_key: String,
    pub public_key: String,
    pub known_hosts: String,
}

/// `POST /v1/ssh/config`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshConfigRequest {
    /// Absolute path of the banger executable for the ProxyCommand.
    pub banger: String,
}

/// `POST /v1/ssh/config`: the ssh_config banger wrote (a `Host *.vm` block).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SshConfigWritten {
    pub path: String,
    pub text: String,
}

/// `POST /v1/vms/{vm}/forget-host-key`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostKeyForgotten {
    pub name: String,
    /// Whether a pinned key was there to forget.
    pub forgotten: bool,
}

/// `PUT /v1/vms/{vm}/workspace`: what was copied into the VM, recorded
/// for `workspace export`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetWorkspaceRequest {
    pub guest_path: String,
    pub host_path: String,
    pub head: String,
    #[serde(default)]
    pub branch: Option<String>,
}

/// `POST /v1/daemon/shutdown`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShutdownStarted {
    pub stopping: bool,
}

/// How one `GET /v1/doctor` check came out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckLevel {
    Pass,
    Warn,
    Fail,
}

/// One `GET /v1/doctor` check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DoctorCheck {
    pub name: String,
    pub level: CheckLevel,
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hint: Option<String>,
}
