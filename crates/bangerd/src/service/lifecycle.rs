//! Booting VMs (stopping them is in `stop`, adopting them after a daemon
//! restart in `reconcile`).
//!
//! Start: prepare the VM's disk → take a tap on the bridge → launch the
//! engine (configure + start) → record `handles.json` → wait for the guest
//! agent's health → `running`. Any failure on the way kills what was
//! launched, removes the tap and sockets, and leaves the VM in `error`
//! with the reason (and the console's last lines) in `last_error`.
//!
//! A watcher per running VM notices when the engine process exits on its
//! own; the VM then goes to `error` with the console's tail, and its
//! runtime is cleaned. Engines live in their own sessions: a daemon that
//! stops or crashes leaves them running, and [`Daemon::reconcile`] adopts
//! them again at the next start (PID + start time + command line).

use super::{Daemon, Progress};
use crate::error::{join_errors, store_err, OrInternal, Result};
use crate::util::{now_ms, rfc3339};
use banger_agent_proto::client::call;
use banger_agent_proto::{connect_uds, Health, Op, AGENT_PORT};
use banger_api::{ApiError, Vm, VmRuntime, VmState};
use banger_engine::host::{self, EngineChoice, Selection};
use banger_engine::qemu::Qemu;
use banger_engine::{
    process, AnyEngine, BootSource, Drive, Engine, EngineError, EngineKind, Handles, MachineConfig,
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

/// A live engine process for one VM.
#[derive(Debug)]
pub struct Runtime {
    pub handles: Handles,
    /// Distinguishes this launch from later ones of the same VM.
    pub generation: u64,
    /// Set before we stop or kill the engine ourselves, so its exit is not
    /// taken for a crash.
    pub(crate) expected_exit: AtomicBool,
    /// Set when a stop, kill or delete cancels a boot in progress, so the
    /// boot ends as `stopped` rather than `error`.
    pub(crate) cancelled: AtomicBool,
    exited: watch::Receiver<bool>,
    /// Listener tasks of the VM's port forwards.
    pub(crate) forwards: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    /// Agent connections that never got an answer, held open until the VM
    /// stops (closing them could wedge the vsock backend), and their tasks.
    pub(crate) parked: Arc<std::sync::Mutex<Vec<tokio::net::UnixStream>>>,
    pub(crate) parked_tasks: std::sync::Mutex<Vec<tokio::task::AbortHandle>>,
}

impl Runtime {
    /// Resolves once the engine process has exited.
    pub(crate) async fn wait_exit(&self) {
        let mut rx = self.exited.clone();
        let _ = rx.wait_for(|e| *e).await;
    }

    pub(crate) fn has_exited(&self) -> bool {
        *self.exited.borrow()
    }
}

/// What banger-init prints on the console once the root is assembled, just
/// before it starts the agent.
const GUEST_READY_LINE: &str = "banger-init: root ready";

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

pub(crate) fn engine_err(e: EngineError, vm: &str) -> ApiError {
    match e {
        EngineError::Missing { what, hint } => {
            ApiError::unavailable(format!("{what} not found")).with_hint(hint)
        }
        EngineError::Unsupported(m) => ApiError::precondition(m),
        e @ (EngineError::Launch(_) | EngineError::Api(_) | EngineError::NotStarted { .. }) => {
            ApiError::internal(format!("VM {vm:?}: {e}"))
                .with_hint(format!("see `banger vm logs {vm}` and the logs in its VM dir"))
        }
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
    pub fn choose_engine(&self, requested: Option<&str>) -> Result<Selection> {
        let choice = match requested {
            None => self.config.engine,
            Some(s) => EngineChoice::parse(s).ok_or_else(|| {
                ApiError::invalid(format!("Unknown engine {s:?}")).with_hint("use auto, firecracker or qemu")
            })?,
        };
        let firecracker = self.config.binaries().find_firecracker();
        host::select(choice, host::kvm_status(), firecracker).map_err(|e| engine_err(e, "new"))
    }

    /// The engine implementation for a VM's recorded engine.
    pub(crate) fn engine(&self, kind: EngineKind) -> Result<AnyEngine> {
        let bins = self.config.binaries();
        let missing = |e| engine_err(e, "");
        match kind {
            EngineKind::Qemu => {
                let qemu_bin = bins.qemu().map_err(missing)?;
                let vhost_vsock_bin = bins.vhost_vsock().map_err(missing)?;
                // What applies of the jailer to QEMU: a cgroup of its own
                // (the seccomp sandbox is always on).
                Ok(AnyEngine::Qemu(Qemu { qemu_bin, vhost_vsock_bin, confine: self.qemu_confiner() }))
            }
            EngineKind::Firecracker => {
                let bin = bins.firecracker().map_err(missing)?;
                let fc = banger_engine::firecracker::Firecracker::new(bin.clone());
                Ok(AnyEngine::Firecracker(match self.jail_runner(&bin)? {
                    Some(runner) => fc.jailed(runner),
                    None => fc,
                }))
            }
        }
    }

    pub(crate) fn set_state(&self, id: &str, state: VmState, last_error: Option<&str>) {
        if let Err(e) = self.store.set_vm_state(id, state, last_error, now_ms()) {
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
        let kind = vm.engine;
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
                cmdline.push(' ');
                cmdline.push_str(&banger_net::kernel_ip_arg(
                    vm.guest_ip,
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

        let accel = host::accel(kind, &host::kvm_status());
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
        rt.handles.write(&vm_dir).or_internal(|| format!("Cannot record the handles of VM {:?}", vm.name))?;

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
    pub(crate) fn track(self: &Arc<Self>, vm_id: &str, handles: Handles) -> Arc<Runtime> {
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
    pub(crate) async fn wait_for_agent(
        &self,
        vm: &VmRecord,
        rt: &Runtime,
        deadline: Instant,
    ) -> Result<Health> {
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

    pub(crate) fn parked_tasks<'a>(
        &self,
        rt: &'a Runtime,
    ) -> std::sync::MutexGuard<'a, Vec<tokio::task::AbortHandle>> {
        rt.parked_tasks.lock().unwrap_or_else(|e| e.into_inner())
    }
}
