//! The tap pool: a few taps kept ready on the bridge (`bgpool<k>`), so a
//! VM start takes one instead of creating it. A taken tap is replaced in the
//! background; a released one goes back while the pool is short, and is
//! deleted otherwise. After a daemon restart the pool is rebuilt from the
//! taps that exist and no live VM holds. Without a pool (size 0), or when
//! it is empty, a VM gets its own tap `bg<id>` as before.

use super::Daemon;
use crate::privileged::{EngineSignal, Request};
use banger_engine::{process, ProcessRef};
use std::sync::Arc;

impl Daemon {
    /// Creates the bridge if needed (through [`Daemon::privops`]) and, on
    /// systemd-resolved hosts, routes `.vm` to the daemon's DNS on it.
    /// Blocking.
    pub(crate) fn ensure_bridge_blocking(&self) -> anyhow::Result<()> {
        let bridge = self.config.bridge.clone();
        self.privops.call(&Request::EnsureBridge { bridge: bridge.clone(), cidr: self.config.cidr })?;
        self.bridge_ready.store(true, std::sync::atomic::Ordering::SeqCst);
        if self.dns_is_ours() {
            let dns = std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, self.config.dns_port);
            match self.privops.call(&Request::SyncResolver { bridge, dns }) {
                Ok(detail) if !detail.is_empty() => tracing::info!("{detail}"),
                Ok(_) => {}
                Err(e) => tracing::warn!("cannot route .vm names to the daemon: {e:#}"),
            }
        } else if self.config.dns_port != 0 {
            // The port is someone else's: `.vm` must not lead there (an
            // earlier daemon may have routed it).
            if let Err(e) = self.privops.call(&Request::ClearResolver { bridge }) {
                tracing::warn!("cannot stop routing .vm names: {e:#}");
            }
        }
        Ok(())
    }

    /// Creates tap `tap` on the bridge, owned by the daemon's user. Blocking.
    pub(crate) fn create_tap_blocking(&self, tap: &str) -> anyhow::Result<()> {
        self.privops
            .call(&Request::CreateTap { bridge: self.config.bridge.clone(), tap: tap.to_string() })?;
        Ok(())
    }

    /// SIGKILLs an engine process; one that belongs to another uid (left
    /// by a daemon that ran as root) is killed through the root helper.
    pub(crate) async fn kill_engine(&self, p: &ProcessRef) {
        let r = process::kill(p, nix::sys::signal::Signal::SIGKILL);
        if r == Err(nix::errno::Errno::EPERM) && self.privops.available() {
            let (ops, pid) = (self.privops.clone(), p.pid as i32);
            let start_time = (p.start_time != 0).then_some(p.start_time);
            let req = Request::SignalEngine { pid, signal: EngineSignal::Kill, start_time };
            match tokio::task::spawn_blocking(move || ops.call(&req)).await {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => tracing::warn!("cannot kill {} (pid {pid}): {e:#}", p.name),
                Err(e) => tracing::warn!("kill task: {e}"),
            }
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
    pub(crate) async fn release_tap(&self, tap: &str) -> anyhow::Result<()> {
        if banger_net::is_pool_tap(tap) && banger_net::link_exists(tap) {
            let mut pool = self.tap_pool.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < self.config.tap_pool && !pool.iter().any(|t| t == tap) {
                pool.push(tap.to_string());
                return Ok(());
            }
        }
        self.delete_tap(tap).await
    }

    /// Deletes one of banger's taps (missing is fine), off the async
    /// threads: it runs `ip`, perhaps through the helper.
    pub(crate) async fn delete_tap(&self, tap: &str) -> anyhow::Result<()> {
        if !banger_net::link_exists(tap) {
            return Ok(());
        }
        let (ops, req) = (self.privops.clone(), Request::DeleteTap { tap: tap.to_string() });
        tokio::task::spawn_blocking(move || ops.call(&req)).await??;
        Ok(())
    }

    /// Tops the pool up in the background (one refill at a time).
    pub(crate) fn refill_taps(self: &Arc<Self>) {
        if self.config.tap_pool == 0 || !self.privops.available() {
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
        // The first VM start makes the bridge: a daemon that never starts a
        // VM leaves the host's interfaces alone.
        if !banger_net::link_exists(&self.config.bridge) {
            return Ok(());
        }
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
            self.create_tap_blocking(&name)?;
            self.tap_pool.lock().unwrap_or_else(|e| e.into_inner()).push(name);
        }
    }

    /// After a restart: pool taps no live VM holds become the pool (extra
    /// ones are deleted), then the pool is topped up.
    pub(crate) async fn adopt_pool_taps(self: &Arc<Self>, in_use: &[String]) {
        let mut free: Vec<String> =
            banger_net::list_pool_taps().into_iter().filter(|t| !in_use.contains(t)).collect();
        free.sort();
        let extra = {
            let mut pool = self.tap_pool.lock().unwrap_or_else(|e| e.into_inner());
            pool.clear();
            let keep = free.len().min(self.config.tap_pool);
            pool.extend(free.drain(..keep));
            free
        };
        for t in extra {
            if let Err(e) = self.delete_tap(&t).await {
                tracing::warn!("cannot delete extra pool tap {t}: {e:#}");
            }
        }
        self.refill_taps();
    }
}
