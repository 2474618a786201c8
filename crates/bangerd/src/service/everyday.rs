//! The small everyday operations: `vm stats` and `vm set`.

use super::Daemon;
use crate::error::{store_err, Result};
use crate::util::now_ms;
use banger_api::{validate, ApiError, SetVmRequest, Vm, VmStats};
use std::time::Duration;

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: "(comm) S ...".
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().trim_end_matches("kB").trim();
    Some(kb.parse::<u64>().ok()? * 1024)
}

impl Daemon {
    pub async fn vm_stats(&self, reference: &str) -> Result<VmStats> {
        let vm = self.find_vm(reference)?;
        let disk = std::path::Path::new(&vm.vm_dir).join("disk.ext4");
        let disk_allocated_bytes = banger_fs::allocated_bytes(&disk).unwrap_or(0);
        let disk_size_bytes = std::fs::metadata(&disk).map(|m| m.len()).unwrap_or(0);
        let mut stats = VmStats {
            id: vm.id.clone(),
            name: vm.name.clone(),
            state: vm.state,
            vcpu: vm.vcpu,
            memory_mib: vm.memory_mib,
            uptime_secs: None,
            cpu_percent: None,
            cpu_seconds: None,
            rss_bytes: None,
            disk_allocated_bytes,
            disk_size_bytes,
        };
        let Some(rt) = self.runtime(&vm.id) else { return Ok(stats) };
        let pids: Vec<u32> =
            std::iter::once(rt.handles.vmm.pid).chain(rt.handles.helpers.iter().map(|h| h.pid)).collect();
        let ticks = || pids.iter().filter_map(|p| cpu_ticks(*p)).sum::<u64>();
        // SAFETY: sysconf has no preconditions.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
        let before = ticks();
        let t0 = std::time::Instant::now();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let after = ticks();
        stats.cpu_percent =
            Some(((after.saturating_sub(before)) as f64 / hz) / t0.elapsed().as_secs_f64() * 100.0);
        stats.cpu_seconds = Some(after as f64 / hz);
        stats.rss_bytes = Some(pids.iter().filter_map(|p| rss_bytes(*p)).sum());
        stats.uptime_secs = Some(((now_ms() - rt.handles.started_at_ms).max(0) / 1000) as u64);
        Ok(stats)
    }

    /// Changes vCPUs, memory or NAT of a VM that is not running.
    pub async fn set_vm(&self, reference: &str, req: SetVmRequest) -> Result<Vm> {
        if req == SetVmRequest::default() {
            return Err(
                ApiError::invalid("Nothing to change").with_hint("pass --vcpu, --memory, --nat or --no-nat")
            );
        }
        if let Some(v) = req.vcpu {
            validate::vcpu(v)?;
        }
        if let Some(m) = req.memory_mib {
            validate::memory_mib(m)?;
        }
        let vm = self.find_vm(reference)?;
        let _lock = self.vm_locks.lock(&vm.id).await;
        let vm = self.reload(&vm.id)?;
        if !matches!(vm.state.as_str(), "stopped" | "error") {
            return Err(ApiError::conflict(format!(
                "VM {} is {}; its resources change only while it is stopped",
                vm.name, vm.state
            ))
            .with_hint(format!("stop it first with `banger vm stop {}`", vm.name)));
        }
        self.store
            .set_vm_spec(
                &vm.id,
                req.vcpu.unwrap_or(vm.vcpu),
                req.memory_mib.unwrap_or(vm.memory_mib),
                req.nat.unwrap_or(vm.nat),
                now_ms(),
            )
            .map_err(store_err)?;
        Ok(self.vm_to_api(&self.reload(&vm.id)?))
    }
}
