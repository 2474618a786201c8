//! Booting and stopping VMs, and keeping the record true to the host.
//!
//! Start: prepare the VM's disk → take a tap on the bridge → launch the
//! engine (configure + start) → record `handles.json` → wait for the guest
//! agent's health → `running`. Any failure on the way kills what was
//! launched, removes the tap and sockets, and leaves the VM in `error`
//! with the reason (and the console's last lines) in `last_error`.
//!
//! Stop: ask the agent to shut the guest down (it syncs first), fall back
//! to the engine's own request (ACPI power button, Ctrl-Alt-Del), and kill
//! after the timeout. Kill: SIGKILL now.
//!
//! A watcher per running VM notices when the engine process exits on its
//! own; the VM then goes to `error` with the console's tail, and its
//! runtime is cleaned. Engines live in their own sessions: a daemon that
//! stops or crashes leaves them running, and [`Daemon::reconcile`] adopts
//! them again at the next start (PID + start time + command line).

use super::{host, Daemon, Progress};
use crate::config::EngineChoice;
use crate::error::{join_errors, store_err, Result};
use crate::util::{now_ms, rfc3339};
use banger_agent_proto::client::call;
use banger_agent_proto::{connect_uds, connect_uds_within, Health, Op, AGENT_PORT};
use banger_api::{ApiError, Vm, VmRuntime, VmState};
use banger_engine::qemu::Qemu;
use banger_engine::{
    process, Accel, AnyEngine, BootSource, Drive, Engine, EngineError, EngineKind, Handles, MachineConfig,
    NetworkInterface, VmSpec,
};
use banger_store::VmRecord;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Default time a stop waits for a clean shutdown before killing.
pub const DEFAULT_STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Guest context id: each VM has its own vsock device and socket, so every
/// guest can use the same one.
const GUEST_CID: u32 = 3;

/// How long one boot-time probe of the agent may go unanswered before a new
/// one is started beside it (see [`Daemon::wait_for_agent`]).
const ATTEMPT_PATIENCE: Duration = Duration::from_secs(3);

/// How long a running guest's agent may leave one connection unanswered
/// (engines where giving up is harmless), and how many connections it
/// gets before `vm exec` and friends fail: a healthy agent answers in
/// milliseconds, a busy guest within seconds.
const AGENT_ANSWER_ATTEMPT: Duration = Duration::from_secs(10);
const AGENT_ANSWER_ATTEMPTS: u32 = 3;

/// A live engine process for one VM.
#[derive(Debug)]
pub struct Runtime {
    pub handles: Handles,
    /// Distinguishes this launch from later ones of the same VM.
    pub generation: u64,
    /// Set before we stop or kill the engine ourselves, so its exit is not
    /// taken for a crash.
    expected_exit: AtomicBool,
    /// Set when a stop, kill or delete cancels a boot in progress, so the
    /// boot ends as `stopped` rather than `error`.
    cancelled: AtomicBool,
    exited: watch::Receiver<bool>,
    /// Listener tasks of the VM's port forwards.
    pub(crate) forwards: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Agent connections that never got an answer, held open until the VM
    /// stops (closing them could wedge the vsock backend), and their tasks.
    parked: Arc<std::sync::Mutex<Vec<tokio::net::UnixStream>>>,
    parked_tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Runtime {
    /// Resolves once the engine process has exited.
    async fn wait_exit(&self) {
        let mut rx = self.exited.clone();
        let _ = rx.wait_for(|e| *e).await;
    }

    fn has_exited(&self) -> bool {
        *self.exited.borrow()
    }
}

/// What banger-init prints on the console once the root is assembled, just
/// before it starts the agent.
const GUEST_READY_LINE: &str = "banger-init: root ready";

fn handles_path(vm_dir: &Path) -> PathBuf {
    vm_dir.join("handles.json")
}

/// The engine handles recorded in a VM's dir, if readable: a regular file
/// (no symlink followed) of at most 64 KiB, since root reads it too.
fn read_handles(vm_dir: &Path) -> Option<Handles> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let f =
        std::fs::File::options().read(true).custom_flags(libc::O_NOFOLLOW).open(handles_path(vm_dir)).ok()?;
    if !f.metadata().ok()?.is_file() {
        return None;
    }
    let mut bytes = Vec::new();
    f.take(64 << 10).read_to_end(&mut bytes).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// SIGKILLs the engines recorded under `vms_dir/*/handles.json` that still
/// run, for `system uninstall` (root, no daemon). The files are the
/// owner's, so each process is signalled only once `policy` has proven it
/// (recorded start time, an engine executable of the owner running
/// banger's files, pinned by a pidfd); returns the refusals.
pub fn kill_recorded_engines(vms_dir: &Path, policy: &crate::privileged::Policy) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(vms_dir) else { return Vec::new() };
    let mut refused = Vec::new();
    for h in dir.flatten().filter_map(|e| read_handles(&e.path())) {
        for p in std::iter::once(&h.vmm).chain(&h.helpers) {
            if !process::alive(p) {
                continue;
            }
            // The files are the owner's to write, so each process must
            // prove itself: recorded start time, an engine executable of
            // the owner running banger's files, signalled by pidfd.
            let req = crate::privileged::Request::SignalEngine {
                pid: p.pid as i32,
                signal: crate::privileged::EngineSignal::Kill,
                start_time: Some(p.start_time),
            };
            if let Err(e) = crate::privileged::execute(policy, &req) {
                refused.push(format!("pid {} ({}): {e:#}", p.pid, p.name));
            }
        }
    }
    refused
}

/// The file's length and up to 1 MiB of it from `offset`; `None` if it
/// cannot be read.
async fn read_from(path: &Path, offset: u64) -> Option<(u64, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let mut f = tokio::fs::File::open(path).await.ok()?;
    let len = f.metadata().await.ok()?.len();
    if len <= offset {
        return Some((len, Vec::new()));
    }
    f.seek(std::io::SeekFrom::Start(offset)).await.ok()?;
    let mut buf = Vec::new();
    f.take(1 << 20).read_to_end(&mut buf).await.ok()?;
    Some((len, buf))
}

/// The last lines of the serial console, for error messages.
pub fn console_tail(vm_dir: &Path, lines: usize) -> String {
    process::tail(&vm_dir.join("console.log"), lines)
}

fn engine_err(e: EngineError, vm: &str) -> ApiError {
    match e {
        EngineError::Missing { what, hint } => {
            ApiError::unavailable(format!("{what} not found")).with_hint(hint)
        }
        EngineError::Unsupported(m) => ApiError::precondition(m),
        EngineError::Launch(m) | EngineError::Api(m) => ApiError::internal(format!("VM {vm:?}: {m}"))
            .with_hint(format!("see `banger vm logs {vm}` and the logs in its VM dir")),
        EngineError::Io(e) => ApiError::internal(format!("VM {vm:?}: {e}")),
    }
}

impl Daemon {
    pub(crate) fn runtime(&self, id: &str) -> Option<Arc<Runtime>> {
        self.runtimes.lock().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    /// Live runtime facts for `vm show`; `None` when no engine runs.
    pub fn runtime_view(&self, id: &str) -> Option<VmRuntime> {
        let rt = self.runtime(id)?;
        let h = &rt.handles;
        Some(VmRuntime {
            pid: h.vmm.pid,
            accel: h.accel.as_str().into(),
            tap: h.tap.clone(),
            started_at: rfc3339(h.started_at_ms),
            console_log: h.console_log.display().to_string(),
        })
    }

    /// Picks the engine for a new VM and says why.
    pub fn choose_engine(&self, requested: Option<&str>) -> Result<(String, String)> {
        let choice = match requested {
            None => self.config.engine,
            Some(s) => EngineChoice::parse(s).ok_or_else(|| {
                ApiError::invalid(format!("Unknown engine {s:?}")).with_hint("use auto, firecracker or qemu")
            })?,
        };
        let kvm = host::kvm_status();
        let fc = host::find_binary(self.config.firecracker_bin.as_deref(), "firecracker", &[]);
        match choice {
            EngineChoice::Qemu => Ok(("qemu".into(), format!("requested; {}", qemu_accel_reason(&kvm)))),
            EngineChoice::Firecracker => match fc {
                Some(p) if kvm.usable => {
                    Ok(("firecracker".into(), format!("requested; using {}", p.display())))
                }
                Some(p) => Ok((
                    "firecracker".into(),
                    format!("requested; using {} although {}", p.display(), kvm.reason),
                )),
                None => Err(ApiError::unavailable("Firecracker was requested but is not installed")
                    .with_hint(
                    "install firecracker from its GitHub releases and put it on PATH, or set firecracker_bin",
                )),
            },
            EngineChoice::Auto => match (kvm.usable, fc) {
                (true, Some(p)) => Ok((
                    "firecracker".into(),
                    format!("auto: KVM runs ordinary guests and firecracker is at {}", p.display()),
                )),
                (true, None) => {
                    Ok(("qemu".into(), "auto: firecracker is not installed; qemu with KVM".into()))
                }
                (false, _) => Ok(("qemu".into(), format!("auto: {}; qemu with TCG emulation", kvm.reason))),
            },
        }
    }

    /// The engine implementation for a VM's recorded engine.
    pub(crate) fn engine(&self, kind: EngineKind) -> Result<AnyEngine> {
        match kind {
            EngineKind::Qemu => {
                let qemu_bin = host::find_binary(self.config.qemu_bin.as_deref(), "qemu-system-x86_64", &[])
                    .ok_or_else(|| {
                        ApiError::unavailable("qemu-system-x86_64 not found")
                            .with_hint("install it with `apt-get install qemu-system-x86`, or set qemu_bin")
                    })?;
                let vhost_vsock_bin = host::find_binary(
                    self.config.vhost_vsock_bin.as_deref(),
                    "vhost-device-vsock",
                    &host::cargo_bin_dir(),
                )
                .ok_or_else(|| {
                    ApiError::unavailable(
                        "vhost-device-vsock not found (QEMU VMs need it for the agent channel)",
                    )
                    .with_hint("install it with `cargo install vhost-device-vsock`, or set vhost_vsock_bin")
                })?;
                // What applies of the jailer to QEMU: a cgroup of its own
                // (the seccomp sandbox is always on).
                Ok(AnyEngine::Qemu(Qemu { qemu_bin, vhost_vsock_bin, confine: self.qemu_confiner() }))
            }
            EngineKind::Firecracker => {
                let bin = host::find_binary(self.config.firecracker_bin.as_deref(), "firecracker", &[])
                    .ok_or_else(|| {
                        ApiError::unavailable("firecracker not found")
                            .with_hint("install firecracker and put it on PATH, or set firecracker_bin")
                    })?;
                let fc = banger_engine::firecracker::Firecracker::new(bin.clone());
                Ok(AnyEngine::Firecracker(match self.jail_runner(&bin)? {
                    Some(runner) => fc.jailed(runner),
                    None => fc,
                }))
            }
        }
    }

    fn set_state(&self, id: &str, state: VmState, last_error: Option<&str>) {
        if let Err(e) = self.store.set_vm_state(id, state.as_str(), last_error, now_ms()) {
            tracing::error!(vm = id, "cannot record state {state}: {e}");
        }
    }

    pub(crate) fn reload(&self, id: &str) -> Result<VmRecord> {
        self.store.get_vm(id).map_err(store_err)?.ok_or_else(|| {
            ApiError::not_found(format!("VM {id:?} not found")).with_hint("list VMs with `banger vm list`")
        })
    }

    /// Boots a VM and waits for its agent. Starting a running VM is a no-op.
    pub async fn start_vm(self: &Arc<Self>, reference: &str, progress: &Progress) -> Result<Vm> {
        let vm = self.find_vm(reference)?;
        let _lock = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        if self.runtime(&vm.id).is_some() {
            return Ok(self.vm_to_api(&vm));
        }
        self.set_state(&vm.id, VmState::Starting, None);
        let t0 = Instant::now();
        match self.boot(&vm, progress).await {
            Ok(()) => {
                self.set_state(&vm.id, VmState::Running, None);
                tracing::info!(vm = %vm.name, ms = t0.elapsed().as_millis() as u64, "VM running");
                Ok(self.vm_to_api(&self.reload(&vm.id)?))
            }
            Err(e) => {
                let rt = self.runtime(&vm.id);
                let cancelled = rt.as_ref().is_some_and(|r| r.cancelled.load(Ordering::SeqCst));
                let leftovers = match &rt {
                    Some(rt) => {
                        rt.expected_exit.store(true, Ordering::SeqCst);
                        self.teardown_runtime(&vm, Some(&rt.handles)).await
                    }
                    None => self.teardown_runtime(&vm, None).await,
                };
                if cancelled {
                    self.set_state(&vm.id, VmState::Stopped, None);
                    tracing::info!(vm = %vm.name, "boot cancelled");
                    return Err(ApiError::precondition(format!(
                        "The start of VM {:?} was cancelled by a stop, kill or delete",
                        vm.name
                    )));
                }
                let mut msg = e.message.clone();
                if let Some(l) = join_errors(leftovers) {
                    msg.push_str(&format!(" (cleanup: {l})"));
                }
                self.set_state(&vm.id, VmState::Error, Some(&msg));
                tracing::warn!(vm = %vm.name, "start failed: {msg}");
                Err(e)
            }
        }
    }

    async fn boot(self: &Arc<Self>, vm: &VmRecord, progress: &Progress) -> Result<()> {
        let kind = EngineKind::parse(&vm.engine).ok_or_else(|| {
            ApiError::internal(format!("VM {:?} has an unknown engine {:?}", vm.name, vm.engine))
        })?;
        let engine = self.engine(kind)?;
        let image = self.image_record(&vm.image_id)?;
        let kernel = self.kernel_record(&image.kernel)?;
        for (what, p) in [("image rootfs", &image.rootfs_path), ("kernel", &kernel.vmlinux_path)] {
            if !Path::new(p).is_file() {
                return Err(ApiError::precondition(format!("The {what} {p} of VM {:?} is missing", vm.name))
                    .with_hint("re-create the image or kernel, or delete the VM"));
            }
        }
        let vm_dir = PathBuf::from(&vm.vm_dir);
        let run_dir = self.paths.vm_run_dir(&vm.id);
        if run_dir.as_os_str().len() + "/vsock.sock_4294967295".len() > 107 {
            return Err(ApiError::precondition(format!(
                "The runtime dir {} is too long for Unix socket paths",
                run_dir.display()
            ))
            .with_hint("set XDG_RUNTIME_DIR to a shorter directory"));
        }
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(&run_dir)
            .map_err(|e| ApiError::internal(format!("Cannot create {}: {e}", run_dir.display())))?;
        std::fs::create_dir_all(&vm_dir)
            .map_err(|e| ApiError::internal(format!("Cannot create {}: {e}", vm_dir.display())))?;

        // The VM's own disk, created on first start: a sparse clone of a
        // formatted template of that size (milliseconds).
        let disk = vm_dir.join("disk.ext4");
        if !disk.exists() {
            progress.phase(
                "disk",
                format!("creating a {} disk", banger_api::validate::format_mib(vm.disk_size_mib)),
            );
            let size = vm.disk_size_mib;
            let templates = self.paths.cache_dir.join("disk-templates");
            let d = disk.clone();
            tokio::task::spawn_blocking(move || banger_image::ext4::clone_vm_disk(&templates, &d, size))
                .await
                .map_err(|e| ApiError::internal(format!("disk task: {e}")))?
                .map_err(|e| {
                    ApiError::internal(format!("Cannot create the disk of VM {:?}: {e:#}", vm.name))
                })?;
        }

        // Network: a tap on the bridge, the address on the command line.
        let mut cmdline = format!(
            "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda ro rootfstype=ext4 \
             init=/sbin/banger-init banger.hostname={}",
            vm.name
        );
        let mut interfaces = Vec::new();
        match self.attach_network(vm).await {
            Ok(Some(tap)) => {
                self.sync_nat(Some((vm, &tap))).await?;
                let ip: std::net::Ipv4Addr = vm.guest_ip.parse().map_err(|_| {
                    ApiError::internal(format!("VM {:?} has a malformed IP {:?}", vm.name, vm.guest_ip))
                })?;
                cmdline.push(' ');
                cmdline.push_str(&banger_net::kernel_ip_arg(
                    ip,
                    &self.config.cidr,
                    self.config.gateway(),
                    &vm.name,
                ));
                interfaces.push(NetworkInterface {
                    id: "eth0".into(),
                    tap,
                    mac: banger_net::guest_mac(&vm.id),
                });
            }
            Ok(None) => {
                progress.log("note: not root, so this VM has no network interface (vsock still works)")
            }
            Err(e) => return Err(e),
        }

        let accel = match kind {
            EngineKind::Firecracker => Accel::Kvm,
            EngineKind::Qemu if host::kvm_status().usable => Accel::Kvm,
            EngineKind::Qemu => Accel::Tcg,
        };
        let spec = VmSpec {
            id: vm.id.clone(),
            boot: BootSource {
                kernel: kernel.vmlinux_path.clone().into(),
                initrd: kernel.initrd_path.clone().map(PathBuf::from),
                cmdline,
            },
            drives: vec![
                Drive { id: "rootfs".into(), path: image.rootfs_path.clone().into(), read_only: true },
                Drive { id: "disk".into(), path: disk, read_only: false },
            ],
            interfaces,
            machine: MachineConfig { vcpu: vm.vcpu, memory_mib: vm.memory_mib },
            vsock_cid: GUEST_CID,
            accel,
            run_dir,
            vm_dir: vm_dir.clone(),
        };
        // A fresh console for each boot; the previous one is kept.
        let console = spec.console_log();
        if console.exists() {
            let _ = std::fs::rename(&console, vm_dir.join("console.log.1"));
        }
        // What goes into the guest once it answers is gathered meanwhile.
        let d = self.clone();
        let setup = tokio::task::spawn_blocking(move || d.gather_guest_setup());
        progress.phase("boot", format!("starting {} ({})", kind.as_str(), accel.as_str()));
        let handles = engine.launch(&spec).await.map_err(|e| engine_err(e, &vm.name))?;
        let rt = self.track(&vm.id, handles);
        let json = serde_json::to_vec_pretty(&rt.handles).unwrap_or_default();
        banger_image::fsutil::write_atomic(&handles_path(&vm_dir), &json).map_err(|e| {
            ApiError::internal(format!("Cannot record the handles of VM {:?}: {e:#}", vm.name))
        })?;

        progress.phase("agent", "waiting for the guest agent");
        let deadline = Instant::now() + Duration::from_secs(self.config.boot_timeout_secs);
        let health = self.wait_for_agent(vm, &rt, deadline).await?;
        tracing::info!(vm = %vm.name, init = %health.init, agent = %health.agent_version, "guest agent ready");
        progress.phase("configure", "configuring the guest");
        let setup = setup.await.map_err(|e| ApiError::internal(format!("guest setup task: {e}")))?;
        self.configure_guest(vm, &rt, progress, setup).await;
        self.open_forwards(vm, &rt).await?;
        Ok(())
    }

    /// Creates the VM's tap on the bridge. `None` when the daemon cannot
    /// manage host networking (not root and no root helper).
    async fn attach_network(self: &Arc<Self>, vm: &VmRecord) -> Result<Option<String>> {
        if !self.privops.available() {
            tracing::info!(vm = %vm.name, "no network: {}", self.privops.unavailable_hint());
            return Ok(None);
        }
        // The bridge is checked once per daemon (and again after a failure).
        let bridge_ready =
            self.bridge_ready.load(Ordering::SeqCst) && banger_net::link_exists(&self.config.bridge);
        if bridge_ready {
            if let Some(tap) = self.take_pool_tap() {
                self.refill_taps();
                return Ok(Some(tap));
            }
        }
        let tap = banger_net::tap_name(&vm.id);
        let (d, t) = (self.clone(), tap.clone());
        tokio::task::spawn_blocking(move || {
            if !bridge_ready {
                d.ensure_bridge_blocking()?;
            }
            d.create_tap_blocking(&t)
        })
        .await
        .map_err(|e| ApiError::internal(format!("network task: {e}")))?
        .map_err(|e| {
            ApiError::unavailable(format!("Cannot set up the network of VM {:?}: {e:#}", vm.name))
                .with_hint("check that /dev/net/tun exists and that iproute2 is installed (`banger doctor`)")
        })?;
        self.refill_taps();
        Ok(Some(tap))
    }

    /// Registers a launched engine and watches for its exit.
    fn track(self: &Arc<Self>, vm_id: &str, handles: Handles) -> Arc<Runtime> {
        let (tx, rx) = watch::channel(false);
        let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
        let rt = Arc::new(Runtime {
            handles,
            generation,
            expected_exit: AtomicBool::new(false),
            cancelled: AtomicBool::new(false),
            exited: rx,
            forwards: std::sync::Mutex::new(Vec::new()),
            parked: Arc::default(),
            parked_tasks: std::sync::Mutex::new(Vec::new()),
        });
        self.runtimes.lock().unwrap_or_else(|e| e.into_inner()).insert(vm_id.to_string(), rt.clone());
        let d = self.clone();
        let id = vm_id.to_string();
        let watched = rt.clone();
        let (console, max) = (rt.handles.console_log.clone(), self.config.console_log_max_mib << 20);
        let mut exited = rt.exited.clone();
        tokio::spawn(async move {
            // The console log stays bounded while the engine runs.
            while !*exited.borrow() {
                match crate::service::logs::rotate_console(&console, max) {
                    Ok(true) => tracing::info!(log = %console.display(), "console log rotated"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(log = %console.display(), "cannot rotate the console log: {e}"),
                }
                if let Ok(Err(_)) = tokio::time::timeout(Duration::from_secs(1), exited.changed()).await {
                    break; // the watcher is gone
                }
            }
        });
        tokio::spawn(async move {
            if let Err(e) = process::exited(&watched.handles.vmm).await {
                tracing::warn!(vm = %id, "cannot watch the engine process: {e}; polling");
                while process::alive(&watched.handles.vmm) {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
            let _ = tx.send(true);
            if !watched.expected_exit.load(Ordering::SeqCst) {
                d.on_engine_exit(&id, watched.generation).await;
            }
        });
        rt
    }

    /// Polls the agent until it answers `health`, the engine exits, or the
    /// deadline passes.
    ///
    /// One attempt that gets neither `OK` nor end-of-stream (a request the
    /// backend lost early in the boot) must not hold up the boot. After
    /// [`ATTEMPT_PATIENCE`] the attempt's connection is parked — kept open
    /// until the VM stops, because closing it between `CONNECT` and `OK` can
    /// wedge vhost-device-vsock — and a fresh attempt starts.
    async fn wait_for_agent(&self, vm: &VmRecord, rt: &Runtime, deadline: Instant) -> Result<Health> {
        let uds = rt.handles.vsock_uds.clone();
        let console = rt.handles.console_log.clone();
        let attempt = async {
            // No probe before banger-init says the root is up: by then every
            // guest driver, virtio-vsock included, has probed. A request that
            // reaches vhost-device-vsock earlier, while the guest side is not
            // there yet, can stay unanswered for good (seen on loaded hosts).
            // Only what is new is read (a chatty guest's console can be
            // large), with a line's worth of overlap for a marker split
            // across two reads; a rotated (truncated) log is read anew.
            let mut seen = 0u64;
            let mut carry: Vec<u8> = Vec::new();
            loop {
                if let Some((len, new)) = read_from(&console, seen).await {
                    if len < seen {
                        (seen, carry) = (0, Vec::new());
                        continue;
                    }
                    seen += new.len() as u64;
                    carry.extend_from_slice(&new);
                    if carry.windows(GUEST_READY_LINE.len()).any(|w| w == GUEST_READY_LINE.as_bytes()) {
                        break;
                    }
                    let keep = carry.len().saturating_sub(GUEST_READY_LINE.len());
                    carry.drain(..keep);
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            loop {
                let (tx, rx) = tokio::sync::oneshot::channel();
                let uds2 = uds.clone();
                let one = tokio::spawn(async move {
                    let mut s = match connect_uds(&uds2, AGENT_PORT).await {
                        Ok(s) => s,
                        Err(_) => return None,
                    };
                    let health = call(&mut s, Op::Health)
                        .await
                        .ok()
                        .and_then(|v| serde_json::from_value::<Health>(v).ok());
                    // Whatever happened, the stream goes to whoever waits.
                    let _ = tx.send(s);
                    health
                });
                let abort = one.abort_handle();
                match tokio::time::timeout(ATTEMPT_PATIENCE, one).await {
                    Ok(Ok(Some(h))) => return h,
                    Ok(_) => tokio::time::sleep(Duration::from_millis(10)).await,
                    Err(_) => {
                        // Stuck: let the task keep its connection, and keep
                        // the task's result (the stream) with the runtime.
                        tracing::info!(vm = %vm.name, "an agent probe got no answer; parking it and retrying");
                        let parked = rt.parked.clone();
                        tokio::spawn(async move {
                            if let Ok(s) = rx.await {
                                parked.lock().unwrap_or_else(|e| e.into_inner()).push(s);
                            }
                        });
                        self.parked_tasks(rt).push(abort);
                    }
                }
            }
        };
        tokio::select! {
            h = attempt => Ok(h),
            _ = rt.wait_exit() => Err(ApiError::internal(format!(
                "VM {:?}: the {} process exited during boot; engine log:\n{}\nconsole:\n{}",
                vm.name, vm.engine, rt.handles.engine.log_excerpt(Path::new(&vm.vm_dir)),
                console_tail(Path::new(&vm.vm_dir), 15)
            )).with_hint(format!("see `banger vm logs {}`", vm.name))),
            _ = tokio::time::sleep_until(deadline.into()) => Err(ApiError::timeout(format!(
                "VM {:?}: the guest agent did not answer within {} s; console:\n{}",
                vm.name, self.config.boot_timeout_secs, console_tail(Path::new(&vm.vm_dir), 15)
            )).with_hint("raise boot_timeout_secs in config.toml if the host is slow, or check the image's init")),
        }
    }

    fn parked_tasks<'a>(&self, rt: &'a Runtime) -> std::sync::MutexGuard<'a, Vec<tokio::task::AbortHandle>> {
        rt.parked_tasks.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stops a VM cleanly (agent shutdown, then the engine's request), and
    /// kills it after `timeout`.
    pub async fn stop_vm(self: &Arc<Self>, reference: &str, timeout: Duration) -> Result<Vm> {
        let vm = self.find_vm(reference)?;
        self.cancel_boot(&vm);
        let _lock = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        self.stop_locked(&vm, timeout, false).await?;
        Ok(self.vm_to_api(&self.reload(&vm.id)?))
    }

    /// Kills a VM's engine at once.
    pub async fn kill_vm(self: &Arc<Self>, reference: &str) -> Result<Vm> {
        let vm = self.find_vm(reference)?;
        self.cancel_boot(&vm);
        let _lock = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        self.stop_locked(&vm, Duration::ZERO, true).await?;
        Ok(self.vm_to_api(&self.reload(&vm.id)?))
    }

    /// A VM still booting holds its lock while it waits for the agent;
    /// stop, kill and delete must not wait for that. Killing the engine ends
    /// the boot at once, and the boot records `stopped`.
    pub(crate) fn cancel_boot(&self, vm: &VmRecord) {
        if VmState::parse(&vm.state) != Some(VmState::Starting) {
            return;
        }
        if let Some(rt) = self.runtime(&vm.id) {
            rt.cancelled.store(true, Ordering::SeqCst);
            rt.expected_exit.store(true, Ordering::SeqCst);
            for p in std::iter::once(&rt.handles.vmm).chain(&rt.handles.helpers) {
                let _ = process::kill(p, nix::sys::signal::Signal::SIGKILL);
            }
            tracing::info!(vm = %vm.name, "cancelling the boot in progress");
        }
    }

    /// Stop, then start.
    pub async fn restart_vm(
        self: &Arc<Self>,
        reference: &str,
        timeout: Duration,
        progress: &Progress,
    ) -> Result<Vm> {
        let vm = self.stop_vm(reference, timeout).await?;
        self.start_vm(&vm.id, progress).await
    }

    /// Stops (or with `kill`, kills) the engine of `vm`; the caller holds
    /// the VM's lock. A VM with no engine running just ends up `stopped`.
    async fn stop_locked(self: &Arc<Self>, vm: &VmRecord, timeout: Duration, kill: bool) -> Result<()> {
        let Some(rt) = self.runtime(&vm.id) else {
            if VmState::parse(&vm.state).is_some_and(|s| s.has_runtime()) {
                self.set_state(&vm.id, VmState::Stopped, vm.last_error.as_deref());
            }
            return Ok(());
        };
        rt.expected_exit.store(true, Ordering::SeqCst);
        self.set_state(&vm.id, VmState::Stopping, None);
        let kind = rt.handles.engine;
        let engine = self.engine(kind).ok();
        let mut how = "killed";
        if !kill && !rt.has_exited() {
            let asked = tokio::time::timeout(Duration::from_secs(3), async {
                let mut s = connect_uds(&rt.handles.vsock_uds, AGENT_PORT).await.ok()?;
                call(&mut s, Op::Shutdown).await.ok()
            })
            .await
            .ok()
            .flatten()
            .is_some();
            // Without the agent, the engine's own request (Ctrl-Alt-Del);
            // when neither can be asked, waiting would only delay the kill.
            let requested = asked
                || match &engine {
                    Some(e) => match e.request_stop(&rt.handles).await {
                        Ok(()) => true,
                        Err(err) => {
                            tracing::info!(vm = %vm.name, "no clean stop possible: {err}");
                            false
                        }
                    },
                    None => false,
                };
            if requested && tokio::time::timeout(timeout, rt.wait_exit()).await.is_ok() {
                how = "stopped";
            }
        }
        if !rt.has_exited() {
            match &engine {
                Some(e) => e.kill(&rt.handles),
                None => {
                    for p in std::iter::once(&rt.handles.vmm).chain(&rt.handles.helpers) {
                        let _ = process::kill(p, nix::sys::signal::Signal::SIGKILL);
                    }
                }
            }
            if tokio::time::timeout(Duration::from_secs(5), rt.wait_exit()).await.is_err() {
                let msg = format!("the {} process (pid {}) did not die", kind.as_str(), rt.handles.vmm.pid);
                self.set_state(&vm.id, VmState::Error, Some(&msg));
                return Err(ApiError::internal(format!("VM {:?}: {msg}", vm.name)));
            }
        }
        let errors = self.teardown_runtime(vm, Some(&rt.handles)).await;
        match join_errors(errors) {
            None => {
                tracing::info!(vm = %vm.name, "VM {how}");
                self.set_state(&vm.id, VmState::Stopped, None);
                Ok(())
            }
            Some(msg) => {
                self.set_state(&vm.id, VmState::Error, Some(&format!("cleanup after stop: {msg}")));
                Err(ApiError::internal(format!("VM {:?} stopped, but cleanup failed: {msg}", vm.name)))
            }
        }
    }

    /// Removes everything a launch created: helper and engine processes
    /// still alive, the tap, the sockets, `handles.json`. Every step runs;
    /// the errors are returned together.
    pub(crate) async fn teardown_runtime(&self, vm: &VmRecord, handles: Option<&Handles>) -> Vec<String> {
        let mut errors = Vec::new();
        let rt = self.runtime(&vm.id);
        if let Some(rt) = &rt {
            super::forwards::close_forwards(rt);
        }
        if let Some(h) = handles {
            for p in std::iter::once(&h.vmm).chain(&h.helpers) {
                self.kill_engine(p).await;
            }
            // Give the kernel a moment to release the tap the engine held.
            for p in std::iter::once(&h.vmm).chain(&h.helpers) {
                let deadline = Instant::now() + Duration::from_secs(3);
                while process::alive(p) && Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                if process::alive(p) {
                    errors.push(format!("{} (pid {}) is still running", p.name, p.pid));
                }
            }
        }
        // A jail goes once its firecracker has.
        if let Some(h) = handles.filter(|h| h.jail.is_some()) {
            let released = self.engine(h.engine).and_then(|e| {
                e.release(h).map_err(|e| ApiError::internal(format!("Cannot remove the VM's jail: {e}")))
            });
            if let Err(e) = released {
                errors.push(e.message);
            }
        }
        let mut taps = vec![banger_net::tap_name(&vm.id)];
        if let Some(t) = handles.and_then(|h| h.tap.clone()) {
            if !taps.contains(&t) {
                taps.push(t);
            }
        }
        for tap in taps.into_iter().filter(|t| banger_net::link_exists(t)) {
            if let Err(e) = self.release_tap(&tap).await {
                errors.push(format!("{e:#}"));
            }
        }
        let run_dir = self.paths.vm_run_dir(&vm.id);
        if let Err(e) = std::fs::remove_dir_all(&run_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("cannot remove {}: {e}", run_dir.display()));
            }
        }
        let hp = handles_path(Path::new(&vm.vm_dir));
        if let Err(e) = std::fs::remove_file(&hp) {
            if e.kind() != std::io::ErrorKind::NotFound {
                errors.push(format!("cannot remove {}: {e}", hp.display()));
            }
        }
        // Parked probes go last: their backend is gone now.
        if let Some(rt) = rt {
            for t in self.parked_tasks(&rt).drain(..) {
                t.abort();
            }
            rt.parked.lock().unwrap_or_else(|e| e.into_inner()).clear();
        }
        self.runtimes.lock().unwrap_or_else(|e| e.into_inner()).remove(&vm.id);
        if let Err(e) = self.sync_nat(None).await {
            errors.push(e.message);
        }
        errors
    }

    /// The engine of a VM exited without being asked to.
    async fn on_engine_exit(self: Arc<Self>, vm_id: &str, generation: u64) {
        let _lock = self.vm_locks.lock(vm_id).await;
        let Some(rt) = self.runtime(vm_id) else { return };
        if rt.generation != generation {
            return; // a newer launch; this exit was already dealt with
        }
        let Ok(vm) = self.reload(vm_id) else { return };
        let tail = console_tail(Path::new(&vm.vm_dir), 15);
        let engine_log = rt.handles.engine.log_excerpt(Path::new(&vm.vm_dir));
        let mut msg = format!("the {} process exited unexpectedly", rt.handles.engine.as_str());
        if !engine_log.is_empty() {
            msg.push_str(&format!("; engine log:\n{engine_log}"));
        }
        msg.push_str(&format!("\nconsole:\n{tail}"));
        let errors = self.teardown_runtime(&vm, Some(&rt.handles)).await;
        if let Some(e) = join_errors(errors) {
            msg.push_str(&format!("\ncleanup: {e}"));
        }
        tracing::warn!(vm = %vm.name, "engine exited unexpectedly; engine log:\n{engine_log}");
        self.set_state(vm_id, VmState::Error, Some(&msg));
    }

    /// Stops whatever runs for a VM that is being deleted; the caller holds
    /// the VM's lock. The engine is killed rather than shut down cleanly: the
    /// disk is about to be removed, so a clean shutdown would protect nothing
    /// and only take seconds.
    pub async fn teardown_for_delete(self: &Arc<Self>, vm: &VmRecord) -> std::result::Result<(), String> {
        if self.runtime(&vm.id).is_some() {
            self.stop_locked(vm, Duration::ZERO, true).await.map_err(|e| e.message)?;
        } else {
            // Leftovers of an earlier crash: a tap, sockets, handles.json.
            if let Some(e) = join_errors(self.teardown_runtime(vm, None).await) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// Brings the records in line with the host after a daemon (re)start:
    /// adopts engines still running, and marks VMs whose engine died while
    /// no daemon watched as `error`, cleaning their leftovers.
    pub async fn reconcile(self: &Arc<Self>) {
        let vms = match self.store.list_vms() {
            Ok(v) => v,
            Err(e) => {
                tracing::error!("reconcile: cannot list VMs: {e}");
                return;
            }
        };
        for vm in &vms {
            let state = VmState::parse(&vm.state).unwrap_or(VmState::Error);
            let handles = read_handles(Path::new(&vm.vm_dir));
            let live = handles.as_ref().filter(|h| process::cmdline_contains(&h.vmm, &vm.id)).cloned();
            match (state.has_runtime(), live) {
                (true, Some(h)) => {
                    let rt = self.track(&vm.id, h);
                    if state == VmState::Running || state == VmState::Paused {
                        tracing::info!(vm = %vm.name, pid = rt.handles.vmm.pid, "adopted running VM");
                        if let Err(e) = self.open_forwards(vm, &rt).await {
                            tracing::warn!(vm = %vm.name, "cannot restore port forwards: {}", e.message);
                        }
                        continue;
                    }
                    if state == VmState::Stopping {
                        // A stop was under way: finish it.
                        let d = self.clone();
                        let vm = vm.clone();
                        tokio::spawn(async move {
                            let _lock = d.vm_locks.lock(&vm.id).await;
                            if let Err(e) = d.stop_locked(&vm, Duration::ZERO, true).await {
                                tracing::warn!(vm = %vm.name, "finishing an interrupted stop failed: {}", e.message);
                            }
                        });
                        continue;
                    }
                    // A boot was under way: keep waiting for the agent until
                    // the boot timeout counted from the launch.
                    let deadline_ms = rt.handles.started_at_ms + 1000 * self.config.boot_timeout_secs as i64;
                    let left = Duration::from_millis((deadline_ms - now_ms()).max(2000) as u64);
                    tracing::info!(vm = %vm.name, pid = rt.handles.vmm.pid, "adopted a VM that was booting; waiting for its agent");
                    let d = self.clone();
                    let vm = vm.clone();
                    tokio::spawn(async move {
                        let _lock = d.vm_locks.lock(&vm.id).await;
                        match d.wait_for_agent(&vm, &rt, Instant::now() + left).await {
                            Ok(_) => d.set_state(&vm.id, VmState::Running, None),
                            Err(_) if rt.cancelled.load(Ordering::SeqCst) => {
                                let _ = d.teardown_runtime(&vm, Some(&rt.handles)).await;
                                d.set_state(&vm.id, VmState::Stopped, None);
                            }
                            Err(e) => {
                                rt.expected_exit.store(true, Ordering::SeqCst);
                                let errors = d.teardown_runtime(&vm, Some(&rt.handles)).await;
                                let mut msg =
                                    format!("boot interrupted by a daemon restart, then: {}", e.message);
                                if let Some(e) = join_errors(errors) {
                                    msg.push_str(&format!(" (cleanup: {e})"));
                                }
                                d.set_state(&vm.id, VmState::Error, Some(&msg));
                            }
                        }
                    });
                }
                (true, None) => {
                    let tail = console_tail(Path::new(&vm.vm_dir), 15);
                    let errors = self.teardown_runtime(vm, handles.as_ref()).await;
                    let mut msg = format!("the engine exited while no daemon was watching\nconsole:\n{tail}");
                    if let Some(e) = join_errors(errors) {
                        msg.push_str(&format!("\ncleanup: {e}"));
                    }
                    tracing::warn!(vm = %vm.name, "engine gone after daemon restart");
                    self.set_state(&vm.id, VmState::Error, Some(&msg));
                }
                (false, live) => {
                    // Stopped VMs may have leftovers from a crash mid-stop.
                    if handles.is_some() || banger_net::link_exists(&banger_net::tap_name(&vm.id)) {
                        let _ = self.teardown_runtime(vm, live.as_ref().or(handles.as_ref())).await;
                    }
                }
            }
        }
        self.sweep_orphan_engines();
        let jailed: Vec<String> = {
            let rts = self.runtimes.lock().unwrap_or_else(|e| e.into_inner());
            rts.values().filter_map(|rt| rt.handles.jail.clone()).collect()
        };
        self.sweep_orphan_jails(&jailed);
        self.sweep_leftover_files(&vms);
        // Pool taps no live VM holds form the pool again.
        let in_use: Vec<String> = {
            let rts = self.runtimes.lock().unwrap_or_else(|e| e.into_inner());
            rts.values().filter_map(|rt| rt.handles.tap.clone()).collect()
        };
        if self.privops.available() {
            self.adopt_pool_taps(&in_use).await;
            // Taps of VMs that no longer exist.
            let known: Vec<String> = vms.iter().map(|v| banger_net::tap_name(&v.id)).collect();
            for tap in banger_net::list_taps() {
                if !known.contains(&tap) {
                    if let Err(e) = self.delete_tap(&tap).await {
                        tracing::warn!("reconcile: {e:#}");
                    }
                }
            }
        }
        if let Err(e) = self.sync_nat(None).await {
            tracing::warn!("reconcile: NAT rules: {}", e.message);
        }
    }
}

impl Daemon {
    /// Kills engine processes of this user that run a VM from this
    /// daemon's dirs but that no VM tracks: launched by a daemon killed
    /// before it wrote `handles.json` (they hold a tap and would run
    /// forever). Found by their command line, checked (uid, executable)
    /// with a pidfd held, signalled through it.
    fn sweep_orphan_engines(&self) {
        let tracked: Vec<u32> = {
            let rts = self.runtimes.lock().unwrap_or_else(|e| e.into_inner());
            rts.values()
                .flat_map(|rt| {
                    std::iter::once(rt.handles.vmm.pid).chain(rt.handles.helpers.iter().map(|h| h.pid))
                })
                .collect()
        };
        let me = nix::unistd::getuid().as_raw();
        let dirs = [self.paths.vms_dir(), self.paths.runtime_dir.join("vms")];
        let Ok(procs) = std::fs::read_dir("/proc") else { return };
        for p in procs.flatten() {
            let Some(pid) = p.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            if tracked.contains(&pid) || pid == std::process::id() {
                continue;
            }
            let Ok(pidfd) = crate::privileged::PidFd::open(pid as i32) else { continue };
            if crate::privileged::engine_process(pid as i32, &dirs).ok() == Some(me) {
                tracing::warn!(pid, "killing an engine no VM tracks (left by a daemon crash)");
                if let Err(e) = pidfd.signal(nix::sys::signal::Signal::SIGKILL) {
                    tracing::warn!(pid, "cannot kill it: {e}");
                }
            }
        }
    }

    /// Removes what a crash can leave behind and nothing refers to: image
    /// staging dirs, scratch unpack trees, half-made disk templates, image
    /// and VM dirs without a row. Runs before the daemon serves, so no
    /// operation is under way.
    fn sweep_leftover_files(&self, vms: &[VmRecord]) {
        // Nothing is removed unless the rows could be read.
        let Ok(images) = self.store.list_images() else { return };
        let images: Vec<String> = images.into_iter().map(|i| i.id).collect();
        let vm_ids: Vec<&str> = vms.iter().map(|v| v.id.as_str()).collect();
        let mut gone: Vec<PathBuf> = Vec::new();
        let children = |d: PathBuf| std::fs::read_dir(d).into_iter().flatten().flatten().map(|e| e.path());
        for p in children(self.paths.images_dir()) {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            if n.starts_with(".staging-") || !images.contains(&n) {
                gone.push(p);
            }
        }
        for p in children(self.paths.vms_dir()).chain(children(self.paths.runtime_dir.join("vms"))) {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("").to_string();
            if !vm_ids.contains(&n.as_str()) {
                gone.push(p);
            }
        }
        gone.extend(children(self.paths.cache_dir.join("unpack")));
        gone.extend(
            children(self.paths.cache_dir.join("disk-templates"))
                .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))),
        );
        // A layer cut off mid-download (registry pulls start a layer over;
        // catalog downloads keep their `.part` to resume).
        gone.extend(
            children(self.paths.cache_dir.join("oci/blobs/sha256"))
                .filter(|p| p.extension().is_some_and(|x| x == "part")),
        );
        for p in gone {
            let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
            match r {
                Ok(()) => tracing::info!(path = %p.display(), "removed a leftover"),
                Err(e) => tracing::warn!(path = %p.display(), "cannot remove a leftover: {e}"),
            }
        }
    }
}

fn qemu_accel_reason(kvm: &host::KvmStatus) -> String {
    if kvm.usable {
        "qemu with KVM".into()
    } else {
        format!("{}; qemu with TCG emulation", kvm.reason)
    }
}

impl Daemon {
    /// A fresh connection to a running VM's guest agent.
    pub async fn agent_stream(&self, reference: &str) -> Result<tokio::net::UnixStream> {
        let vm = self.find_vm(reference)?;
        let Some(rt) = self.runtime(&vm.id) else {
            return Err(ApiError::precondition(format!("VM {:?} is not running ({})", vm.name, vm.state))
                .with_hint(format!("start it with `banger vm start {}`", vm.name)));
        };
        match VmState::parse(&vm.state) {
            Some(VmState::Starting) => {
                return Err(ApiError::precondition(format!("VM {:?} is still starting", vm.name))
                    .with_hint("wait for `banger vm start` to finish"))
            }
            // Its vCPUs are frozen: nothing in it would answer.
            Some(VmState::Paused) => {
                return Err(ApiError::precondition(format!("VM {:?} is paused", vm.name))
                    .with_hint(format!("resume it with `banger vm resume {}`", vm.name)))
            }
            _ => {}
        }
        // Where giving up between CONNECT and OK is harmless (Firecracker)
        // a guest that never answers ends the wait; under QEMU it would
        // wedge vhost-device-vsock, so there only the VM's end ends it.
        let uds = &rt.handles.vsock_uds;
        let connect = async {
            if rt.handles.engine.vsock_handshake_abandonable() {
                connect_uds_within(uds, AGENT_PORT, AGENT_ANSWER_ATTEMPT, AGENT_ANSWER_ATTEMPTS).await
            } else {
                connect_uds(uds, AGENT_PORT).await
            }
        };
        tokio::select! {
            r = connect => r.map_err(|e| ApiError::unavailable(format!("The guest agent of VM {:?} does not answer: {e}", vm.name))
                .with_hint(format!("the guest may be shutting down, hung or out of memory; see `banger vm logs {}`, or restart it", vm.name))),
            _ = rt.wait_exit() => Err(ApiError::precondition(format!("VM {:?} stopped", vm.name))),
        }
    }
}

impl Daemon {
    /// Freezes a running VM's vCPUs (engines that support it).
    pub async fn pause_vm(self: &Arc<Self>, reference: &str) -> Result<Vm> {
        self.pause_or_resume(reference, true).await
    }

    /// Thaws a paused VM.
    pub async fn resume_vm(self: &Arc<Self>, reference: &str) -> Result<Vm> {
        self.pause_or_resume(reference, false).await
    }

    async fn pause_or_resume(self: &Arc<Self>, reference: &str, pause: bool) -> Result<Vm> {
        let vm = self.find_vm(reference)?;
        let _lock = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        let state = VmState::parse(&vm.state).unwrap_or(VmState::Error);
        let (from, to) =
            if pause { (VmState::Running, VmState::Paused) } else { (VmState::Paused, VmState::Running) };
        if state == to {
            return Ok(self.vm_to_api(&vm));
        }
        let Some(rt) = self.runtime(&vm.id).filter(|_| state == from) else {
            return Err(ApiError::precondition(format!("VM {:?} is {state}, not {from}", vm.name)));
        };
        let engine = self.engine(rt.handles.engine)?;
        let r = if pause { engine.pause(&rt.handles).await } else { engine.resume(&rt.handles).await };
        r.map_err(|e| match e {
            EngineError::Unsupported(m) => ApiError::precondition(format!("VM {:?}: {m}", vm.name))
                .with_hint("pause and resume need the firecracker engine (`--engine firecracker` at create)"),
            e => engine_err(e, &vm.name),
        })?;
        self.set_state(&vm.id, to, None);
        Ok(self.vm_to_api(&self.reload(&vm.id)?))
    }
}
