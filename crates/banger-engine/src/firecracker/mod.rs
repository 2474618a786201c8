//! The Firecracker engine: one `firecracker` process per VM, configured over
//! its API socket, started with `InstanceStart`.
//!
//! Launch is: spawn `firecracker --api-sock … --id banger-<id>` in its own
//! session (stdout — the serial console — to `console.log`); wait for the API
//! socket; PUT logger, metrics, machine-config, boot-source, drives, network
//! interface and vsock; PUT `InstanceStart`. The agent channel is
//! Firecracker's own hybrid vsock socket, the same protocol the QEMU engine
//! offers through vhost-device-vsock.

pub mod api;
pub mod jail;

use crate::process::{spawn_detached, tail, wait_for_listener};
use crate::{Accel, Engine, EngineError, EngineKind, Handles, VmSpec};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// The oldest Firecracker banger drives (hybrid vsock overrides, the API
/// shape it uses).
pub const MIN_VERSION: (u32, u32) = (1, 5);

#[derive(Debug, Clone)]
pub struct Firecracker {
    pub bin: PathBuf,
    /// How long a new process may take to create its API socket.
    pub startup_timeout: Duration,
    /// Set: every VM's firecracker runs under the jailer (see [`jail`]).
    pub jail: Option<Arc<dyn jail::JailRunner>>,
}

impl Firecracker {
    pub fn new(bin: PathBuf) -> Firecracker {
        Firecracker { bin, startup_timeout: Duration::from_secs(5), jail: None }
    }

    /// VMs launched by this engine run in jails made by `runner`.
    pub fn jailed(mut self, runner: Arc<dyn jail::JailRunner>) -> Firecracker {
        self.jail = Some(runner);
        self
    }
}

/// A binary's identity for the version cache: path, size, mtime.
type BinaryKey = (PathBuf, u64, std::time::SystemTime);
type Version = (u32, u32, u32);

/// Parses `Firecracker v1.16.1` (the first line of `firecracker --version`).
pub fn parse_version(out: &str) -> Option<(u32, u32, u32)> {
    let v = out.lines().next()?.split_whitespace().find(|w| w.starts_with('v'))?.trim_start_matches('v');
    let mut it = v.split(['.', '-']).map(|p| p.parse::<u32>());
    Some((it.next()?.ok()?, it.next()?.ok()?, it.next().and_then(|r| r.ok()).unwrap_or(0)))
}

impl Firecracker {
    /// Runs `firecracker --version` and refuses versions below
    /// [`MIN_VERSION`], naming what was found. The answer is remembered per
    /// binary (path, size and mtime), so a launch does not pay for a spawn.
    pub fn check_version(&self) -> Result<(u32, u32, u32), EngineError> {
        use std::collections::HashMap;
        use std::sync::Mutex;
        static SEEN: Mutex<Option<HashMap<BinaryKey, Version>>> = Mutex::new(None);
        let key = std::fs::metadata(&self.bin)
            .ok()
            .and_then(|m| Some((self.bin.clone(), m.len(), m.modified().ok()?)));
        if let Some(k) = &key {
            if let Some(v) =
                SEEN.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).get(k)
            {
                return Ok(*v);
            }
        }
        let v = self.query_version()?;
        if let Some(k) = key {
            SEEN.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert_with(HashMap::new).insert(k, v);
        }
        Ok(v)
    }

    fn query_version(&self) -> Result<(u32, u32, u32), EngineError> {
        let out = std::process::Command::new(&self.bin).arg("--version").output().map_err(|e| {
            EngineError::Missing {
                what: format!("firecracker ({}: {e})", self.bin.display()),
                hint: "install firecracker from its releases and put it on PATH, or set firecracker_bin"
                    .into(),
            }
        })?;
        let text = String::from_utf8_lossy(&out.stdout);
        let v = parse_version(&text).ok_or_else(|| {
            EngineError::Launch(format!("cannot read the version of {}: {text:?}", self.bin.display()))
        })?;
        if (v.0, v.1) < MIN_VERSION {
            return Err(EngineError::Unsupported(format!(
                "firecracker {}.{}.{} at {} is too old; banger needs {}.{} or newer",
                v.0,
                v.1,
                v.2,
                self.bin.display(),
                MIN_VERSION.0,
                MIN_VERSION.1
            )));
        }
        Ok(v)
    }

    pub fn api_socket(spec: &VmSpec) -> PathBuf {
        spec.run_dir.join("fc.sock")
    }

    /// Spawns the process and waits for its API socket. Returns the handles
    /// of a process that is configured by nobody yet.
    pub async fn spawn(&self, spec: &VmSpec) -> Result<Handles, EngineError> {
        if let Some(runner) = &self.jail {
            return self.spawn_jailed(spec, runner.clone()).await;
        }
        let api = Self::api_socket(spec);
        for s in [&api, &spec.vsock_uds()] {
            let _ = std::fs::remove_file(s);
        }
        // Logger and metrics are set on the command line, so that even
        // Firecracker's first lines go to its log and not to the console.
        let log = spec.vm_dir.join("firecracker.log");
        let metrics = spec.vm_dir.join("metrics.json");
        for f in [&log, &metrics] {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(f)
                .map_err(|e| EngineError::Launch(format!("Cannot create {}: {e}", f.display())))?;
        }
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--api-sock")
            .arg(&api)
            .arg("--id")
            .arg(format!("banger-{}", spec.id))
            .arg("--log-path")
            .arg(&log)
            .args(["--level", "Info", "--show-level"])
            .arg("--metrics-path")
            .arg(&metrics);
        // The serial console is the process's stdout.
        let console = spec.console_log();
        let (_child, vmm) = spawn_detached(&mut cmd, &console, "firecracker")
            .map_err(|e| EngineError::Launch(format!("Cannot start {}: {e}", self.bin.display())))?;
        let handles = Handles {
            engine: EngineKind::Firecracker,
            accel: Accel::Kvm,
            vmm: vmm.clone(),
            helpers: vec![],
            control_socket: api.clone(),
            vsock_uds: spec.vsock_uds(),
            run_dir: spec.run_dir.clone(),
            tap: spec.interfaces.first().map(|n| n.tap.clone()),
            console_log: console.clone(),
            started_at_ms: crate::now_ms(),
            jail: None,
        };
        if let Err(e) = wait_for_listener(&api, &vmm, self.startup_timeout).await {
            self.kill(&handles);
            return Err(EngineError::Launch(format!(
                "firecracker failed to start ({e}): {}",
                tail(&console, 4)
            )));
        }
        Ok(handles)
    }

    /// Like [`Firecracker::spawn`], under the jailer: the VM's files are
    /// handed over open (see [`jail`]), firecracker runs as the jail's uid
    /// with its sockets inside the jail.
    async fn spawn_jailed(
        &self,
        spec: &VmSpec,
        runner: Arc<dyn jail::JailRunner>,
    ) -> Result<Handles, EngineError> {
        let open = |p: &Path, write: bool| {
            std::fs::OpenOptions::new()
                .read(true)
                .write(write)
                .open(p)
                .map_err(|e| EngineError::Launch(format!("Cannot open {}: {e}", p.display())))
        };
        let append = |p: &Path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .map_err(|e| EngineError::Launch(format!("Cannot create {}: {e}", p.display())))
        };
        let file =
            |name: &str, path: &Path, writable: bool, log: bool| -> Result<jail::JailFile, EngineError> {
                let file = if log { append(path)? } else { open(path, writable)? };
                Ok(jail::JailFile { name: name.into(), file, path: path.to_path_buf(), writable })
            };
        let mut files = vec![
            file("vmlinux", &spec.boot.kernel, false, false)?,
            file("firecracker.log", &spec.vm_dir.join("firecracker.log"), true, true)?,
            file("metrics.json", &spec.vm_dir.join("metrics.json"), true, true)?,
        ];
        if let Some(initrd) = &spec.boot.initrd {
            files.push(file("initrd", initrd, false, false)?);
        }
        for d in &spec.drives {
            files.push(file(&format!("drive-{}", d.id), &d.path, !d.read_only, false)?);
        }
        let console = spec.console_log();
        let js = jail::JailSpec {
            vm_id: spec.id.clone(),
            vcpu: spec.machine.vcpu,
            memory_mib: spec.machine.memory_mib,
            files,
            console: append(&console)?,
        };
        let r2 = runner.clone();
        let started = tokio::task::spawn_blocking(move || r2.start(js))
            .await
            .map_err(|e| EngineError::Launch(format!("jail task: {e}")))?;
        // The jailer's own complaint is on the console: show it.
        let jail::Started { pid, root } = started.map_err(|e| match tail(&console, 2) {
            t if t.is_empty() => e,
            t => EngineError::Launch(format!("{e}:\n{t}")),
        })?;
        let handles = Handles {
            engine: EngineKind::Firecracker,
            accel: Accel::Kvm,
            vmm: crate::ProcessRef {
                pid,
                start_time: crate::process::start_time(pid).unwrap_or(0),
                name: "firecracker".into(),
            },
            helpers: vec![],
            control_socket: root.join(jail::API_SOCKET.trim_start_matches('/')),
            vsock_uds: root.join(jail::VSOCK_SOCKET.trim_start_matches('/')),
            run_dir: spec.run_dir.clone(),
            tap: spec.interfaces.first().map(|n| n.tap.clone()),
            console_log: console.clone(),
            started_at_ms: crate::now_ms(),
            jail: Some(spec.id.clone()),
        };
        if let Err(e) = wait_for_listener(&handles.control_socket, &handles.vmm, self.startup_timeout).await {
            self.kill(&handles);
            let _ = self.release(&handles);
            return Err(EngineError::Launch(format!(
                "firecracker failed to start in its jail ({e}): {}",
                tail(&console, 4)
            )));
        }
        Ok(handles)
    }

    /// `spec` as a jailed firecracker sees it: its files at the jail's
    /// root, its sockets under `/run`.
    fn inside_jail(spec: &VmSpec) -> VmSpec {
        let mut s = spec.clone();
        s.boot.kernel = "/vmlinux".into();
        if s.boot.initrd.is_some() {
            s.boot.initrd = Some("/initrd".into());
        }
        for d in &mut s.drives {
            d.path = format!("/drive-{}", d.id).into();
        }
        s.run_dir = "/run".into();
        s
    }

    /// Configures a spawned process for `spec` (everything before
    /// `InstanceStart`): machine config, boot source, drives, network
    /// interfaces, vsock.
    pub async fn configure(&self, spec: &VmSpec, client: &api::Client) -> Result<(), api::ApiError> {
        let jailed;
        let spec = if self.jail.is_some() {
            jailed = Self::inside_jail(spec);
            &jailed
        } else {
            spec
        };
        client
            .put_machine_config(&api::MachineConfiguration {
                vcpu_count: spec.machine.vcpu,
                mem_size_mib: spec.machine.memory_mib,
                smt: Some(false),
                track_dirty_pages: None,
            })
            .await?;
        // Early printk shows the kernel's first lines even when a boot dies
        // before the console driver starts; its output then appears in
        // `last_error` instead of an empty console.
        let mut boot_args = spec.boot.cmdline.clone();
        if !boot_args.contains("earlyprintk") {
            boot_args.push_str(" earlyprintk=serial,ttyS0");
        }
        client
            .put_boot_source(&api::BootSource {
                kernel_image_path: path_str(&spec.boot.kernel),
                boot_args: Some(boot_args),
                initrd_path: spec.boot.initrd.as_deref().map(path_str),
            })
            .await?;
        for d in &spec.drives {
            client
                .put_drive(&api::Drive {
                    drive_id: d.id.clone(),
                    path_on_host: path_str(&d.path),
                    // The command line names the root (`root=/dev/vda`).
                    is_root_device: false,
                    is_read_only: d.read_only,
                    cache_type: None,
                })
                .await?;
        }
        for n in &spec.interfaces {
            client
                .put_network_interface(&api::NetworkInterface {
                    iface_id: n.id.clone(),
                    host_dev_name: n.tap.clone(),
                    guest_mac: Some(n.mac.clone()),
                })
                .await?;
        }
        client
            .put_vsock(&api::Vsock { guest_cid: spec.vsock_cid, uds_path: path_str(&spec.vsock_uds()) })
            .await
    }
}

fn path_str(p: &Path) -> String {
    p.display().to_string()
}

impl Engine for Firecracker {
    fn kind(&self) -> EngineKind {
        EngineKind::Firecracker
    }

    async fn launch(&self, spec: &VmSpec) -> Result<Handles, EngineError> {
        self.check_version()?;
        let handles = self.spawn(spec).await?;
        let client = api::Client::new(&handles.control_socket);
        let started = async {
            self.configure(spec, &client).await?;
            client.action(api::ActionType::InstanceStart).await
        }
        .await;
        if let Err(e) = started {
            let log = EngineKind::Firecracker.log_excerpt(&spec.vm_dir);
            self.kill(&handles);
            if handles.jail.is_some() {
                // Its jail goes once it is gone.
                let deadline = std::time::Instant::now() + Duration::from_secs(3);
                while crate::process::alive(&handles.vmm) && std::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let _ = self.release(&handles);
            }
            return Err(if log.is_empty() {
                EngineError::Api(e)
            } else {
                EngineError::NotStarted { error: e, log }
            });
        }
        Ok(handles)
    }

    fn release(&self, h: &Handles) -> Result<(), EngineError> {
        let Some(vm_id) = &h.jail else { return Ok(()) };
        match &self.jail {
            Some(r) => r.release(vm_id),
            None => Err(EngineError::Launch(format!(
                "VM {vm_id} ran under the jailer, which is no longer configured; its jail stays until it is"
            ))),
        }
    }

    async fn request_stop(&self, h: &Handles) -> Result<(), EngineError> {
        api::Client::new(&h.control_socket)
            .action(api::ActionType::SendCtrlAltDel)
            .await
            .map_err(EngineError::Api)
    }

    async fn pause(&self, h: &Handles) -> Result<(), EngineError> {
        api::Client::new(&h.control_socket).set_vm_state(api::VmState::Paused).await.map_err(EngineError::Api)
    }

    async fn resume(&self, h: &Handles) -> Result<(), EngineError> {
        api::Client::new(&h.control_socket)
            .set_vm_state(api::VmState::Resumed)
            .await
            .map_err(EngineError::Api)
    }
}

/// A full snapshot of a paused VM: its state file and its memory file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub state: PathBuf,
    pub memory: PathBuf,
}

impl Firecracker {
    /// Pauses the VM and writes a full snapshot into `dir` (the VM stays
    /// paused; resume it or kill it).
    pub async fn snapshot(&self, h: &Handles, dir: &Path) -> Result<Snapshot, EngineError> {
        let client = api::Client::new(&h.control_socket);
        let snap = Snapshot { state: dir.join("vm.state"), memory: dir.join("vm.mem") };
        client.set_vm_state(api::VmState::Paused).await.map_err(EngineError::Api)?;
        client
            .create_snapshot(&api::SnapshotCreateParams {
                snapshot_path: path_str(&snap.state),
                mem_file_path: path_str(&snap.memory),
                snapshot_type: Some("Full".into()),
            })
            .await
            .map_err(EngineError::Api)?;
        Ok(snap)
    }

    /// Starts a new process for `spec` from a snapshot, pointing it at the
    /// spec's tap and vsock socket (so the original VM's may still be in
    /// use), and resumes it.
    pub async fn restore(&self, spec: &VmSpec, snap: &Snapshot) -> Result<Handles, EngineError> {
        if self.jail.is_some() {
            return Err(EngineError::Unsupported(
                "snapshots are not taken or restored under the jailer yet".into(),
            ));
        }
        self.check_version()?;
        let handles = self.spawn(spec).await?;
        let client = api::Client::new(&handles.control_socket);
        let params = api::SnapshotLoadParams {
            snapshot_path: path_str(&snap.state),
            mem_backend: api::MemoryBackend {
                backend_type: "File".into(),
                backend_path: path_str(&snap.memory),
            },
            resume_vm: Some(true),
            network_overrides: spec
                .interfaces
                .iter()
                .map(|n| api::NetworkOverride { iface_id: n.id.clone(), host_dev_name: n.tap.clone() })
                .collect(),
            vsock_override: Some(api::VsockOverride { uds_path: path_str(&spec.vsock_uds()) }),
        };
        if let Err(e) = client.load_snapshot(&params).await {
            self.kill(&handles);
            return Err(EngineError::Api(e));
        }
        Ok(handles)
    }
}

#[cfg(test)]
mod tests;
