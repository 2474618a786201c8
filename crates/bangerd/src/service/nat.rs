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
    /// and its tap (its engine is not tracked yet). Every running VM's tap
    /// is bound to its MAC and address.
    pub(crate) async fn sync_nat(&self, booting: Option<(&VmRecord, &str)>) -> Result<()> {
        let mut running: Vec<(VmRecord, Option<String>)> = {
            let rts: Vec<(String, Option<String>)> = self
                .runtimes
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .map(|(id, rt)| (id.clone(), rt.handles.tap.clone()))
                .collect();
            rts.into_iter()
                .filter_map(|(id, tap)| Some((self.store.get_vm(&id).ok().flatten()?, tap)))
                .collect()
        };
        if let Some((b, tap)) = booting {
            running.retain(|(v, _)| v.id != b.id);
            running.push((b.clone(), Some(tap.to_string())));
        }
        let guards: Vec<banger_net::nat::Guard> = running
            .iter()
            .filter_map(|(v, tap)| {
                Some(banger_net::nat::Guard {
                    tap: tap.clone()?,
                    mac: banger_net::guest_mac(&v.id),
                    ip: v.guest_ip,
                })
            })
            .collect();
        let booting = booting.map(|(b, _)| b);
        let running: Vec<VmRecord> = running.into_iter().map(|(v, _)| v).collect();
        let nat_ips: Vec<std::net::Ipv4Addr> = running.iter().filter(|v| v.nat).map(|v| v.guest_ip).collect();
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
            guards,
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
