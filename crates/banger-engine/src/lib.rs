//! How banger runs a VM: one small [`Engine`] interface, shaped after
//! Firecracker's own vocabulary — boot source, drives, network interfaces,
//! vsock, machine config; launch (configure + start), graceful stop, kill,
//! and pause/resume/snapshot where the engine supports them.
//!
//! Two engines implement it:
//! - [`firecracker`]: the product's engine wherever KVM runs ordinary
//!   guests;
//! - [`qemu`]: `qemu-system-x86_64 -M microvm` with virtio-mmio devices, for
//!   hosts where Firecracker cannot run a guest (no usable KVM: then QEMU
//!   emulates with TCG) or is not installed.
//!
//! Both give the guest agent the same channel: a Unix socket speaking
//! Firecracker's hybrid-vsock protocol (`CONNECT <port>`), natively under
//! Firecracker and through vhost-device-vsock under QEMU. Layers above never
//! know which engine runs a VM.
//!
//! Engine processes start in their own session, so they outlive the daemon;
//! what is needed to find them again is [`Handles`], which the daemon keeps
//! in the VM dir as `handles.json`.

pub mod cgroup;
pub mod firecracker;
pub mod host;
pub mod process;
pub mod qemu;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Which engine runs a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineKind {
    Firecracker,
    Qemu,
}

impl EngineKind {
    pub fn parse(s: &str) -> Option<EngineKind> {
        match s {
            "firecracker" => Some(EngineKind::Firecracker),
            "qemu" => Some(EngineKind::Qemu),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            EngineKind::Firecracker => "firecracker",
            EngineKind::Qemu => "qemu",
        }
    }

    /// Whether a host client may give up on a vsock handshake (close
    /// between `CONNECT` and `OK`) without harm. Firecracker's muxer drops
    /// the pending request; vhost-device-vsock 0.3, QEMU's vsock here, can
    /// wedge the VM's vsock when a client does that.
    pub fn vsock_handshake_abandonable(self) -> bool {
        match self {
            EngineKind::Firecracker => true,
            EngineKind::Qemu => false,
        }
    }

    /// What the engine's log in `vm_dir` says about why it stopped: its
    /// last lines, and for Firecracker the errors before them (a vCPU's
    /// "Unexpected exit reason on vcpu run: Shutdown" is followed by
    /// several lines of orderly exit).
    pub fn log_excerpt(self, vm_dir: &Path) -> String {
        match self {
            EngineKind::Firecracker => {
                process::excerpt(&vm_dir.join("firecracker.log"), 3, |l| l.contains(":ERROR]"))
            }
            EngineKind::Qemu => process::tail(&vm_dir.join("qemu.log"), 3),
        }
    }
}

impl std::fmt::Display for EngineKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the guest's CPU is provided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through /dev/kvm.
    Kvm,
    /// QEMU's software emulation.
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// The kernel and its command line (Firecracker's `boot-source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSource {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub cmdline: String,
}

/// A block device (Firecracker's `drives`). The first is `/dev/vda`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drive {
    pub id: String,
    pub path: PathBuf,
    pub read_only: bool,
}

/// A network interface backed by a host tap device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkInterface {
    pub id: String,
    pub tap: String,
    pub mac: String,
}

/// Size of the machine (Firecracker's `machine-config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MachineConfig {
    pub vcpu: u32,
    pub memory_mib: u64,
}

/// Everything an engine needs to boot one VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSpec {
    /// The VM's id; it appears in the engine's command line, which is how a
    /// restarted daemon recognises the process.
    pub id: String,
    pub boot: BootSource,
    pub drives: Vec<Drive>,
    pub interfaces: Vec<NetworkInterface>,
    pub machine: MachineConfig,
    /// Guest context id of the vsock device.
    pub vsock_cid: u32,
    pub accel: Accel,
    /// Short directory for sockets (Unix socket paths are limited to 108
    /// bytes).
    pub run_dir: PathBuf,
    /// The VM dir: logs and the serial console go here.
    pub vm_dir: PathBuf,
}

impl VmSpec {
    /// The hybrid-vsock socket the agent is reached through.
    pub fn vsock_uds(&self) -> PathBuf {
        self.run_dir.join("vsock.sock")
    }
    pub fn console_log(&self) -> PathBuf {
        self.vm_dir.join("console.log")
    }
}

/// A process banger started for a VM, identified beyond its PID.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRef {
    pub pid: u32,
    /// Start time from /proc/PID/stat, so a recycled PID is never mistaken
    /// for ours.
    pub start_time: u64,
    pub name: String,
}

/// What is needed to find, control and clean up a running VM; stored as
/// `handles.json` in the VM dir.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handles {
    pub engine: EngineKind,
    pub accel: Accel,
    /// The engine process (firecracker or qemu).
    pub vmm: ProcessRef,
    /// Helper processes (vhost-device-vsock for QEMU).
    #[serde(default)]
    pub helpers: Vec<ProcessRef>,
    /// Firecracker's API socket or QEMU's QMP socket.
    pub control_socket: PathBuf,
    pub vsock_uds: PathBuf,
    pub run_dir: PathBuf,
    #[serde(default)]
    pub tap: Option<String>,
    pub console_log: PathBuf,
    pub started_at_ms: i64,
    /// Firecracker runs under its jailer, in the jail of this id (the
    /// VM's); QEMU in the cgroup of this id. Released after the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jail: Option<String>,
}

impl Handles {
    /// Where a VM's handles are kept in its dir.
    pub fn path(vm_dir: &Path) -> PathBuf {
        vm_dir.join("handles.json")
    }

    /// The handles recorded in `vm_dir`, if readable: a regular file (no
    /// symlink followed) of at most 64 KiB, since root reads it too.
    pub fn read(vm_dir: &Path) -> Option<Handles> {
        use std::io::Read;
        use std::os::unix::fs::OpenOptionsExt;
        let f = std::fs::File::options()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(Self::path(vm_dir))
            .ok()?;
        if !f.metadata().ok()?.is_file() {
            return None;
        }
        let mut bytes = Vec::new();
        f.take(64 << 10).read_to_end(&mut bytes).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Records the handles in `vm_dir`, atomically (a crash leaves the old
    /// file or the new one).
    pub fn write(&self, vm_dir: &Path) -> Result<(), banger_fs::FsError> {
        let json = serde_json::to_vec_pretty(self).expect("handles serialize");
        banger_fs::write_atomic(&Self::path(vm_dir), &json)
    }
}

/// Engine failures, with what the user can do about them.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A binary the engine needs is missing.
    #[error("{what} not found")]
    Missing { what: String, hint: String },
    /// The engine process could not start or died while starting.
    #[error("{0}")]
    Launch(String),
    /// Firecracker's API refused a request or could not be reached.
    #[error(transparent)]
    Api(#[from] firecracker::api::ApiError),
    /// Firecracker refused its configuration or its start; `log` is what
    /// its log said about it.
    #[error("{error}\n{log}")]
    NotStarted { error: firecracker::api::ApiError, log: String },
    /// This engine cannot do that (pause on QEMU, say).
    #[error("{0}")]
    Unsupported(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// One way of running VMs. Implementations must be cheap to construct; all
/// per-VM state is in [`Handles`].
#[allow(async_fn_in_trait)]
pub trait Engine {
    fn kind(&self) -> EngineKind;

    /// Starts the engine process(es) for `spec`, configures the VM and
    /// starts it. Returns once the guest is running (not yet booted).
    /// On failure nothing of this launch is left running.
    async fn launch(&self, spec: &VmSpec) -> Result<Handles, EngineError>;

    /// Asks the guest to shut down (ACPI power button, Ctrl-Alt-Del).
    /// Returns without waiting for it.
    async fn request_stop(&self, h: &Handles) -> Result<(), EngineError>;

    /// Kills the engine and its helpers now.
    fn kill(&self, h: &Handles) {
        for p in std::iter::once(&h.vmm).chain(&h.helpers) {
            let _ = process::kill(p, nix::sys::signal::Signal::SIGKILL);
        }
    }

    /// Releases what the engine holds for a VM beyond its processes (a
    /// Firecracker jail), once they are gone. Idempotent.
    fn release(&self, _h: &Handles) -> Result<(), EngineError> {
        Ok(())
    }

    /// Freezes the guest's vCPUs.
    async fn pause(&self, _h: &Handles) -> Result<(), EngineError> {
        Err(EngineError::Unsupported(format!("the {} engine cannot pause VMs", self.kind().as_str())))
    }

    async fn resume(&self, _h: &Handles) -> Result<(), EngineError> {
        Err(EngineError::Unsupported(format!("the {} engine cannot resume VMs", self.kind().as_str())))
    }
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Either engine, behind the one interface.
#[derive(Debug, Clone)]
pub enum AnyEngine {
    Qemu(qemu::Qemu),
    Firecracker(firecracker::Firecracker),
}

impl Engine for AnyEngine {
    fn kind(&self) -> EngineKind {
        match self {
            AnyEngine::Qemu(e) => e.kind(),
            AnyEngine::Firecracker(e) => e.kind(),
        }
    }
    async fn launch(&self, spec: &VmSpec) -> Result<Handles, EngineError> {
        match self {
            AnyEngine::Qemu(e) => e.launch(spec).await,
            AnyEngine::Firecracker(e) => e.launch(spec).await,
        }
    }
    async fn request_stop(&self, h: &Handles) -> Result<(), EngineError> {
        match self {
            AnyEngine::Qemu(e) => e.request_stop(h).await,
            AnyEngine::Firecracker(e) => e.request_stop(h).await,
        }
    }
    fn release(&self, h: &Handles) -> Result<(), EngineError> {
        match self {
            AnyEngine::Qemu(e) => e.release(h),
            AnyEngine::Firecracker(e) => e.release(h),
        }
    }
    async fn pause(&self, h: &Handles) -> Result<(), EngineError> {
        match self {
            AnyEngine::Qemu(e) => e.pause(h).await,
            AnyEngine::Firecracker(e) => e.pause(h).await,
        }
    }
    async fn resume(&self, h: &Handles) -> Result<(), EngineError> {
        match self {
            AnyEngine::Qemu(e) => e.resume(h).await,
            AnyEngine::Firecracker(e) => e.resume(h).await,
        }
    }
}
