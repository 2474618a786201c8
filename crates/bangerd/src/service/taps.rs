//! The tap pool: a few taps kept ready on the bridge (`bgpool<k>`), so a
//! VM start takes one instead of creating it. A taken tap is replaced in the
//! background; a released one goes back while the pool is short, and is
//! deleted otherwise. After a daemon restart the pool is rebuilt from the
//! taps that exist and no live VM holds. Without a pool (size 0), or when
//! it is empty, a VM gets its own tap `bg<id>` as before.

use super::Daemon;
use std::sync::Arc;

impl Daemon {
    fn bridge(&self) -> banger_net::Bridge {
        banger_net::Bridge {
            name: self.config.bridge.clone(),
            net: self.config.cidr,
            gateway: self.config.gateway(),
        }
    }

    /// A ready pool tap, if there is one.
    pub(crate) fn take_pool_tap(&self) -> Option<String> {
        let mut pool = self.tap_pool.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(t) = pool.pop() {
            if banger_net::link_exists(&t) {
                return Some(t);
            }
        }
        None
    }

    /// Gives a tap back after its VM stopped: into the pool while it is
    /// short, else deleted.
    pub(crate) fn release_tap(&self, tap: &str) -> anyhow::Result<()> {
        if banger_net::is_pool_tap(tap) && banger_net::link_exists(tap) {
            let mut pool = self.tap_pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < self.config.tap_pool && !pool.iter().any(|t| t == tap) {
                pool.push(tap.to_string());
                return Ok(());
            }
        }
        banger_net::delete_tap(tap)
    }

    /// Tops the pool up in the background (one refill at a time).
    pub(crate) fn refill_taps(self: &Arc<Self>) {
        if self.config.tap_pool == 0 || !nix::unistd::geteuid().is_root() {
            return;
        }
        let d = self.clone();
        tokio::spawn(async move {
            let _one = d.tap_refill.lock().await;
            let d2 = d.clone();
            let r = tokio::task::spawn_blocking(move || d2.refill_blocking()).await;
            if let Ok(Err(e)) = r {
                tracing::warn!("cannot refill the tap pool: {e:#}");
            }
        });
    }

    fn refill_blocking(&self) -> anyhow::Result<()> {
        let bridge = self.bridge();
        if !banger_net::link_exists(&bridge.name) {
            bridge.ensure()?;
        }
        let uid = nix::unistd::getuid().as_raw();
        loop {
            let (short, taken): (bool, Vec<String>) = {
                let pool = self.tap_pool.lock().unwrap_or_else(|e| e.into_inner());
                (pool.len() < self.config.tap_pool, pool.clone())
            };
            if !short {
                return Ok(());
            }
            // The lowest free name: neither a link nor pooled.
            let name = (0..1000)
                .map(banger_net::pool_tap_name)
                .find(|n| !banger_net::link_exists(n) && !taken.contains(n))
                .ok_or_else(|| anyhow::anyhow!("no free pool tap name"))?;
            bridge.add_tap(&name, uid)?;
            self.tap_pool.lock().unwrap_or_else(|e| e.into_inner()).push(name);
        }
    }

    /// After a restart: pool taps no live VM holds become the pool (extra
    /// ones are deleted), then the pool is topped up.
    pub(crate) fn adopt_pool_taps(self: &Arc<Self>, in_use: &[String]) {
        let mut free: Vec<String> =
            banger_net::list_pool_taps().into_iter().filter(|t| !in_use.contains(t)).collect();
        free.sort();
        {
            let mut pool = self.tap_pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.clear();
            for t in free {
                if pool.len() < self.config.tap_pool {
                    pool.push(t);
                } else if let Err(e) = banger_net::delete_tap(&t) {
                    tracing::warn!("cannot delete extra pool tap {t}: {e:#}");
                }
            }
        }
        self.refill_taps();
    }
}
