//! Firecracker's jailer, from the daemon's side: whether VMs run jailed,
//! who makes the jails, and what a crash left of them.
//!
//! `jailer_enabled` turns it on (default: on for a system install's
//! daemon). The jails themselves are `banger_engine::firecracker::jail`'s
//! work, which needs root: a daemon running as root makes them in-process
//! under `<runtime dir>/jail`, running firecracker as root inside them (the
//! VM's files are root's); a system install's daemon asks the root helper,
//! which makes them under its own directory and runs firecracker as the
//! owner's uid.

use super::Daemon;
use crate::error::Result;
use crate::privileged::{JailFileRef, PrivOps, Request};
use banger_api::ApiError;
use banger_engine::cgroup::{self, Confiner};
use banger_engine::firecracker::jail::{self, JailRunner, JailSetup, JailSpec, Started};
use banger_engine::qemu::QEMU_CGROUP;
use banger_engine::{EngineError, ProcessRef};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Jails made in-process by a root daemon.
#[derive(Debug)]
pub struct LocalJails(pub JailSetup);

impl JailRunner for LocalJails {
    fn start(&self, spec: JailSpec) -> std::result::Result<Started, EngineError> {
        jail::start(&self.0, spec)
    }
    fn release(&self, vm_id: &str) -> std::result::Result<(), EngineError> {
        jail::release(&self.0.base, vm_id)
    }
}

/// Jails made by the root helper (a system install's daemon).
#[derive(Debug)]
pub struct HelperJails {
    pub socket: PathBuf,
    /// The owner's state dir, which the helper opens the VM's files
    /// beneath.
    pub state_dir: PathBuf,
}

impl JailRunner for HelperJails {
    fn start(&self, spec: JailSpec) -> std::result::Result<Started, EngineError> {
        let mut files = Vec::new();
        for f in &spec.files {
            let rel = f.path.strip_prefix(&self.state_dir).map_err(|_| {
                EngineError::Launch(format!(
                    "{} is not under banger's state dir {}; the jailer only takes files from there",
                    f.path.display(),
                    self.state_dir.display()
                ))
            })?;
            files.push(JailFileRef { name: f.name.clone(), path: rel.to_path_buf(), writable: f.writable });
        }
        let req = Request::StartJail {
            vm_id: spec.vm_id.clone(),
            vcpu: spec.vcpu,
            memory_mib: spec.memory_mib,
            files,
        };
        let out = crate::helper::call_with_files(&self.socket, &req, &[&spec.console])
            .map_err(|e| EngineError::Launch(format!("{e:#}")))?;
        // "<pid> <jail root>"
        let (pid, root) = out.detail.trim().split_once(' ').unwrap_or(("", ""));
        match pid.parse() {
            Ok(pid) if root.starts_with('/') => Ok(Started { pid, root: root.into() }),
            _ => Err(EngineError::Launch(format!(
                "the root helper answered {:?}, not a PID and a jail",
                out.detail
            ))),
        }
    }
    fn release(&self, vm_id: &str) -> std::result::Result<(), EngineError> {
        crate::helper::call(&self.socket, &Request::ReleaseJail { vm_id: vm_id.to_string() })
            .map(|_| ())
            .map_err(|e| EngineError::Launch(format!("{e:#}")))
    }
}

/// QEMU's cgroups, made in-process by a root daemon.
#[derive(Debug)]
pub struct LocalCgroups;

impl Confiner for LocalCgroups {
    fn place(
        &self,
        vm_id: &str,
        procs: &[ProcessRef],
        vcpu: u32,
        memory_bytes: u64,
    ) -> std::result::Result<(), String> {
        let pids: Vec<u32> = procs.iter().map(|p| p.pid).collect();
        cgroup::place(QEMU_CGROUP, vm_id, &pids, vcpu, memory_bytes)
    }
    fn remove(&self, vm_id: &str) -> std::result::Result<(), String> {
        cgroup::remove(QEMU_CGROUP, vm_id)
    }
}

/// QEMU's cgroups, made by the root helper (a system install's daemon).
#[derive(Debug)]
pub struct HelperCgroups(pub PathBuf);

impl Confiner for HelperCgroups {
    fn place(
        &self,
        vm_id: &str,
        procs: &[ProcessRef],
        vcpu: u32,
        memory_bytes: u64,
    ) -> std::result::Result<(), String> {
        let req = Request::ConfineEngine {
            vm_id: vm_id.to_string(),
            vcpu,
            memory_mib: memory_bytes >> 20,
            pids: procs.iter().map(|p| (p.pid as i32, p.start_time)).collect(),
        };
        crate::helper::call(&self.0, &req).map(|_| ()).map_err(|e| format!("{e:#}"))
    }
    fn remove(&self, vm_id: &str) -> std::result::Result<(), String> {
        let req = Request::ReleaseCgroup { vm_id: vm_id.to_string() };
        crate::helper::call(&self.0, &req).map(|_| ()).map_err(|e| format!("{e:#}"))
    }
}

impl Daemon {
    /// Who puts QEMU VMs in cgroups of their own, when `jailer_enabled`.
    pub(crate) fn qemu_confiner(&self) -> Option<Arc<dyn Confiner>> {
        if !self.jailer_enabled() {
            return None;
        }
        Some(match &self.privops {
            PrivOps::InProcess(_) => Arc::new(LocalCgroups),
            PrivOps::Helper(socket) => Arc::new(HelperCgroups(socket.clone())),
        })
    }

    /// `doctor`'s word on the jailer, when VMs are to run under it.
    pub(crate) fn jailer_check(&self, firecracker: Option<&Path>) -> Option<super::doctor::Check> {
        use super::doctor::{Check, Level};
        if !self.jailer_enabled() {
            return None;
        }
        let fail = |detail: String, hint: &str| Check {
            name: "jailer".into(),
            level: Level::Fail,
            detail,
            hint: Some(hint.to_string()),
        };
        let Some(fc) = firecracker else {
            return Some(fail(
                "jailer_enabled is set but firecracker is not installed".into(),
                "install firecracker and its jailer from the release archive",
            ));
        };
        let runner = match self.jail_runner(fc) {
            Ok(r) => r,
            Err(e) => return Some(fail(e.message, e.hint.as_deref().unwrap_or(""))),
        };
        if let PrivOps::InProcess(_) = &self.privops {
            if jail::is_dynamic(fc).unwrap_or(true) {
                return Some(fail(
                    format!("{} is dynamically linked; the jail holds no libraries", fc.display()),
                    "install the static firecracker from its release archive, or set jailer_enabled = false",
                ));
            }
        }
        let detail = match &self.privops {
            PrivOps::InProcess(_) => format!(
                "VMs run jailed, under {}, as root (this daemon's uid); jails in {}",
                self.config.jailer_bin.as_deref().unwrap_or(Path::new("jailer")).display(),
                self.paths.runtime_dir.join("jail").display()
            ),
            PrivOps::Helper(_) => "VMs run jailed by the root helper, as your uid".into(),
        };
        drop(runner);
        Some(Check { name: "jailer".into(), level: Level::Pass, detail, hint: None })
    }

    /// Whether VMs run under the jailer: `jailer_enabled`, by default on
    /// for a system install whose helper can jail (its install file names
    /// a jailer).
    pub fn jailer_enabled(&self) -> bool {
        self.config.jailer_enabled.unwrap_or_else(|| {
            self.paths.is_service()
                && crate::helper::InstallFile::load(Path::new(crate::helper::INSTALL_FILE))
                    .is_ok_and(|f| f.policy().jail.is_some())
        })
    }

    /// Who makes jails, when VMs run jailed (`None` when they do not).
    pub(crate) fn jail_runner(&self, firecracker: &Path) -> Result<Option<Arc<dyn JailRunner>>> {
        if !self.jailer_enabled() {
            return Ok(None);
        }
        match &self.privops {
            PrivOps::InProcess(_) => {
                let jailer = self.config.binaries().find_jailer(firecracker)
                    .ok_or_else(|| {
                        ApiError::unavailable("jailer_enabled is set but the jailer is not installed")
                            .with_hint("install jailer from Firecracker's release beside firecracker, set jailer_bin, or set jailer_enabled = false")
                    })?;
                Ok(Some(Arc::new(LocalJails(JailSetup {
                    jailer,
                    firecracker: firecracker.to_path_buf(),
                    base: self.paths.runtime_dir.join("jail"),
                    uid: nix::unistd::geteuid().as_raw(),
                    gid: nix::unistd::getegid().as_raw(),
                }))))
            }
            PrivOps::Helper(socket) => Ok(Some(Arc::new(HelperJails {
                socket: socket.clone(),
                state_dir: self.paths.state_dir.clone(),
            }))),
        }
    }

    /// Jails (and QEMU cgroups) no running VM accounts for (a daemon killed between starting a
    /// jailed firecracker and recording it): the firecracker still in one
    /// is killed (it is known by the cgroup the jailer put it in, which
    /// only root can do), then the jail is released. Root daemons only;
    /// the helper's jails go with their VMs.
    pub(crate) fn sweep_orphan_jails(&self, live: &[String]) {
        let PrivOps::InProcess(_) = &self.privops else { return };
        // A confined QEMU's cgroup, its processes gone (killed by the
        // engine sweep, or exited): removed unless its VM runs.
        if self.jailer_enabled() {
            for id in cgroup::children(QEMU_CGROUP) {
                if !live.contains(&id) && crate::privileged::check_vm_id(&id).is_ok() {
                    if let Err(e) = cgroup::remove(QEMU_CGROUP, &id) {
                        tracing::warn!(vm = %id, "cannot remove a leftover cgroup: {e}");
                    }
                }
            }
        }
        let base = self.paths.runtime_dir.join("jail");
        let Ok(entries) = std::fs::read_dir(base.join("firecracker")) else { return };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if live.contains(&id) {
                continue;
            }
            if let Some(pid) = jailed_pid(&base, &id) {
                tracing::warn!(vm = %id, pid, "killing a jailed firecracker no VM accounts for");
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
                while Path::new(&format!("/proc/{pid}")).exists() && std::time::Instant::now() < deadline {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                }
            }
            match jail::release(&base, &id) {
                Ok(()) => tracing::info!(vm = %id, "removed a leftover jail"),
                Err(e) => tracing::warn!(vm = %id, "cannot remove a leftover jail: {e}"),
            }
        }
    }
}

/// The PID in a jail's pid file, if that process is still in the jail's
/// cgroup.
fn jailed_pid(base: &Path, id: &str) -> Option<i32> {
    let text = std::fs::read_to_string(jail::root(base, id).join("firecracker.pid")).ok()?;
    let pid: i32 = text.trim().parse().ok().filter(|p| *p > 1)?;
    let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let want = format!("/firecracker/{id}");
    cgroup.lines().any(|l| l.ends_with(&want)).then_some(pid)
}
