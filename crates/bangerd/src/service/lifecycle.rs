//! Booting and stopping VMs. (Engines arrive in the next step; until then a
//! start reports that no engine can run.)

use super::{host, Daemon, Progress};
use crate::config::EngineChoice;
use crate::error::Result;
use banger_api::{ApiError, Vm, VmRuntime};
use banger_store::VmRecord;
use std::sync::Arc;

impl Daemon {
    /// Live runtime facts for `vm show`; `None` when no engine runs.
    pub fn runtime_view(&self, _id: &str) -> Option<VmRuntime> {
        None
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
            EngineChoice::Qemu => Ok(("qemu".into(), format!("requested; {}", kvm.reason))),
            EngineChoice::Firecracker => match fc {
                Some(p) => Ok(("firecracker".into(), format!("requested; using {}", p.display()))),
                None => Err(ApiError::unavailable("Firecracker was requested but is not installed")
                    .with_hint(
                        "install firecracker from its releases and put it on PATH, or set firecracker_bin",
                    )),
            },
            EngineChoice::Auto => match (kvm.usable, fc) {
                (true, Some(p)) => Ok((
                    "firecracker".into(),
                    format!("auto: KVM is usable and firecracker is at {}", p.display()),
                )),
                (true, None) => Ok(("qemu".into(), "auto: firecracker is not installed".into())),
                (false, _) => Ok(("qemu".into(), format!("auto: {}", kvm.reason))),
            },
        }
    }

    pub async fn start_vm(self: &Arc<Self>, id: &str, _progress: &Progress) -> Result<Vm> {
        let vm = self.find_vm(id)?;
        Err(ApiError::unavailable(format!(
            "VM {:?} was created but cannot be started: no engine is available yet",
            vm.name
        ))
        .with_hint("create VMs with --no-start for now"))
    }

    /// Stops whatever runs for a VM that is being deleted.
    pub async fn teardown_for_delete(&self, _vm: &VmRecord) -> std::result::Result<(), String> {
        Ok(())
    }
}

impl Daemon {
    /// Brings the VMs recorded as running in line with the host after a
    /// daemon (re)start.
    pub async fn reconcile(self: &Arc<Self>) {}
}
