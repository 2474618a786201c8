//! Stopping VMs: a clean stop (the agent, then the engine's own request,
//! then a kill at the timeout), a kill, a restart, the teardown of what a
//! VM held on the host, an engine that exits on its own; and pausing.

use super::lifecycle::*;
use super::{Daemon, Progress};
use crate::error::{join_errors, Result};
use banger_agent_proto::client::call;
use banger_agent_proto::{connect_uds, Op, AGENT_PORT};
use banger_api::{ApiError, Vm, VmState};
use banger_engine::{process, Engine, EngineError, Handles};
use banger_store::VmRecord;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

impl Daemon {
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
        if vm.state != VmState::Starting {
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
    pub(crate) async fn stop_locked(
        self: &Arc<Self>,
        vm: &VmRecord,
        timeout: Duration,
        kill: bool,
    ) -> Result<()> {
        let Some(rt) = self.runtime(&vm.id) else {
            if vm.state.has_runtime() {
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
        let hp = Handles::path(Path::new(&vm.vm_dir));
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
    pub(crate) async fn on_engine_exit(self: Arc<Self>, vm_id: &str, generation: u64) {
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
        let state = vm.state;
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
