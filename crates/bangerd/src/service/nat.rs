//! Keeps banger's nftables table in step with the running VMs (see
//! `banger_net::nat`): called when a VM's network comes up, after every
//! teardown, and once after a daemon restart.

use super::Daemon;
use crate::error::Result;
use crate::privileged::Request;
use banger_api::ApiError;
use banger_store::VmRecord;

impl Daemon {
    /// Rebuilds the rules from the VMs with a live engine, plus `booting`
    /// (whose engine is not tracked yet).
    pub(crate) async fn sync_nat(&self, booting: Option<&VmRecord>) -> Result<()> {
        let mut running: Vec<VmRecord> = {
            let ids: Vec<String> =
                self.runtimes.lock().unwrap_or_else(|e| e.into_inner()).keys().cloned().collect();
            ids.iter().filter_map(|id| self.store.get_vm(id).ok().flatten()).collect()
        };
        if let Some(b) = booting {
            running.retain(|v| v.id != b.id);
            running.push(b.clone());
        }
        let nat_ips: Vec<std::net::Ipv4Addr> =
            running.iter().filter(|v| v.nat).filter_map(|v| v.guest_ip.parse().ok()).collect();
        if !self.privops.available() {
            if booting.is_some_and(|b| b.nat) {
                return Err(ApiError::unavailable("NAT needs privileges this daemon does not have")
                    .with_hint(format!(
                        "{}; or turn NAT off with `banger vm set VM --no-nat`",
                        self.privops.unavailable_hint()
                    )));
            }
            return Ok(());
        }
        let req = Request::SyncNat {
            bridge: self.config.bridge.clone(),
            any_running: !running.is_empty(),
            nat_ips,
        };
        let ops = self.privops.clone();
        tokio::task::spawn_blocking(move || ops.call(&req))
            .await
            .map_err(|e| ApiError::internal(format!("nat task: {e}")))?
            .map_err(|e| {
                ApiError::unavailable(format!("{e:#}"))
                    .with_hint("install nftables (`apt-get install nftables`)")
            })?;
        Ok(())
    }
}
