//! Keeping the record true to the host: at start the daemon adopts the
//! engines still running (PID + start time + command line), marks the rest
//! stopped or in error, and sweeps what crashes left behind (engines no VM
//! tracks, taps, sockets, jails, half-written files).

use super::lifecycle::*;
use super::Daemon;
use crate::error::join_errors;
use crate::util::now_ms;
use banger_api::VmState;
use banger_engine::{process, Handles};
use banger_store::VmRecord;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Daemon {
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
        // A delete the last daemon had begun removing files for is finished.
        let mut kept = Vec::with_capacity(vms.len());
        for vm in vms {
            if vm.state != VmState::Deleting || !self.finish_delete(&vm).await {
                kept.push(vm);
            }
        }
        let vms = kept;
        for vm in &vms {
            let state = vm.state;
            let handles = Handles::read(Path::new(&vm.vm_dir));
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
    /// Completes a delete interrupted by a daemon crash after the VM was
    /// marked `deleting`: whatever runtime is left, then the dirs and the
    /// row. What cannot be removed leaves the VM in `error`, kept for a
    /// retried `vm delete`. Returns whether the VM is gone.
    async fn finish_delete(&self, vm: &VmRecord) -> bool {
        let handles =
            Handles::read(Path::new(&vm.vm_dir)).filter(|h| process::cmdline_contains(&h.vmm, &vm.id));
        let mut errors = self.teardown_runtime(vm, handles.as_ref()).await;
        errors.extend(self.remove_vm_dirs(&vm.id));
        let removed = match join_errors(errors) {
            Some(msg) => Err(msg),
            None => self.store.delete_vm(&vm.id).map(drop).map_err(|e| e.to_string()),
        };
        match removed {
            Ok(()) => {
                self.forget_host_key(&vm.name);
                tracing::info!(vm = %vm.name, id = %vm.id, "finished a delete a daemon crash interrupted");
                true
            }
            Err(msg) => {
                tracing::warn!(vm = %vm.name, "cannot finish an interrupted delete: {msg}");
                self.set_state(&vm.id, VmState::Error, Some(&format!("delete interrupted, then: {msg}")));
                false
            }
        }
    }

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

/// SIGKILLs the engines recorded under `vms_dir/*/handles.json` that still
/// run, for `system uninstall` (root, no daemon). The files are the
/// owner's, so each process is signalled only once `policy` has proven it
/// (recorded start time, an engine executable of the owner running
/// banger's files, pinned by a pidfd); returns the refusals.
pub fn kill_recorded_engines(vms_dir: &Path, policy: &crate::privileged::Policy) -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(vms_dir) else { return Vec::new() };
    let mut refused = Vec::new();
    for h in dir.flatten().filter_map(|e| Handles::read(&e.path())) {
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
