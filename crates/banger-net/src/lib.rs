//! banger's host network: one bridge, one tap device per running VM, and
//! the guest's static address passed on the kernel command line.
//!
//! Every operation goes through `ip` (iproute2) by direct argv, never a
//! shell, with names checked first: only interfaces named by banger's rules
//! are ever created or deleted.

mod error;
pub mod nat;
pub mod resolver;

pub use error::{NameError, NetError, Result};

use error::{io, succeeded, Step};
use ipnet::Ipv4Net;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;

/// Prefix of every tap device banger creates (`bg` + the VM id).
pub const TAP_PREFIX: &str = "bg";

/// The tap device of VM `id`: `bg` + its 12-hex-digit id (14 bytes; the
/// kernel allows 15).
pub fn tap_name(id: &str) -> String {
    format!("{TAP_PREFIX}{id}")
}

/// A locally administered, stable MAC address derived from the VM id.
pub fn guest_mac(id: &str) -> String {
    let hex: String =
        id.chars().filter(|c| c.is_ascii_hexdigit()).chain(std::iter::repeat('0')).take(10).collect();
    let b: Vec<&str> = (0..5).map(|i| &hex[i * 2..i * 2 + 2]).collect();
    format!("06:{}:{}:{}:{}:{}", b[0], b[1], b[2], b[3], b[4])
}

/// The bridge's own address: the first host address of the network.
pub fn gateway(net: &Ipv4Net) -> Option<Ipv4Addr> {
    net.hosts().next()
}

/// The kernel's `ip=` argument for a static guest address.
pub fn kernel_ip_arg(guest: Ipv4Addr, net: &Ipv4Net, gateway: Ipv4Addr, hostname: &str) -> String {
    format!("ip={guest}::{gateway}:{}:{hostname}:eth0:off", net.netmask())
}

/// Prefix every bridge banger creates or touches must have.
pub const BRIDGE_PREFIX: &str = "banger";

/// Checks an interface name: 1–15 of `[A-Za-z0-9_-]`.
pub fn check_ifname(name: &str) -> Result<(), NameError> {
    if name.is_empty() || name.len() > 15 {
        return Err(NameError::Length(name.into()));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(NameError::Characters(name.into()));
    }
    Ok(())
}

/// Checks a bridge name: an interface name that starts with
/// [`BRIDGE_PREFIX`], so banger only ever touches a bridge named as its own.
pub fn check_bridge_name(name: &str) -> Result<(), NameError> {
    check_ifname(name)?;
    if !name.starts_with(BRIDGE_PREFIX) {
        return Err(NameError::NotABangerBridge(name.into()));
    }
    Ok(())
}

/// Checks a tap name: a VM's (`bg` + id) or a pool tap's.
pub fn check_tap_name(name: &str) -> Result<(), NameError> {
    check_ifname(name)?;
    if !is_vm_tap(name) && !is_pool_tap(name) {
        return Err(NameError::NotABangerTap(name.into()));
    }
    Ok(())
}

/// Whether an interface exists (in this network namespace).
pub fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// Prefix of the taps kept warm in the pool (`bgpool0`, `bgpool1`, …).
pub const POOL_PREFIX: &str = "bgpool";

/// The `k`-th pool tap.
pub fn pool_tap_name(k: usize) -> String {
    format!("{POOL_PREFIX}{k}")
}

/// Whether `name` is one of the pool's taps.
pub fn is_pool_tap(name: &str) -> bool {
    name.strip_prefix(POOL_PREFIX)
        .is_some_and(|n| !n.is_empty() && n.len() <= 3 && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The pool taps that exist now.
pub fn list_pool_taps() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| is_pool_tap(n)).collect()
        })
        .unwrap_or_default()
}

/// Whether `name` is a per-VM tap: `bg` + a 12-hex-digit VM id.
pub fn is_vm_tap(name: &str) -> bool {
    name.strip_prefix(TAP_PREFIX).is_some_and(|id| {
        id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// banger's per-VM taps that exist now (pool taps not included).
pub fn list_taps() -> Vec<String> {
    std::fs::read_dir("/sys/class/net")
        .map(|d| {
            d.flatten().filter_map(|e| e.file_name().into_string().ok()).filter(|n| is_vm_tap(n)).collect()
        })
        .unwrap_or_default()
}

fn ip(args: &[&str]) -> Result<()> {
    let out = Command::new("ip").args(args).output().map_err(|source| NetError::Spawn {
        tool: "ip".into(),
        install: "install iproute2",
        source,
    })?;
    succeeded(|| format!("ip {}", args.join(" ")), &out)
}

/// The bridge VMs attach to, with the gateway address on it.
#[derive(Debug, Clone)]
pub struct Bridge {
    pub name: String,
    pub net: Ipv4Net,
    pub gateway: Ipv4Addr,
}

impl Bridge {
    /// Creates the bridge if missing, gives it the gateway address and
    /// brings it up. Idempotent.
    pub fn ensure(&self) -> Result<()> {
        check_ifname(&self.name)?;
        if !link_exists(&self.name) {
            ip(&["link", "add", "name", &self.name, "type", "bridge"])
                .step(|| format!("create bridge {}", self.name))?;
        }
        let addr = format!("{}/{}", self.gateway, self.net.prefix_len());
        let shown = Command::new("ip")
            .args(["-4", "-o", "addr", "show", "dev", &self.name])
            .output()
            .map_err(io(format!("read the addresses of bridge {}", self.name)))?;
        if !String::from_utf8_lossy(&shown.stdout).contains(&format!(" {addr} ")) {
            ip(&["addr", "add", &addr, "dev", &self.name])
                .step(|| format!("address bridge {}", self.name))?;
        }
        ip(&["link", "set", &self.name, "up"])
    }

    /// Creates tap `name` owned by `uid`, attached to the bridge, up.
    pub fn add_tap(&self, name: &str, uid: u32) -> Result<()> {
        check_tap_name(name)?;
        if link_exists(name) {
            // Left over from a crash: start clean.
            delete_tap(name)?;
        }
        ip(&["tuntap", "add", "dev", name, "mode", "tap", "user", &uid.to_string()])
            .step(|| format!("create tap {name}"))?;
        let attach = ip(&["link", "set", name, "master", &self.name, "up"]);
        if attach.is_err() {
            let _ = delete_tap(name);
        }
        attach.step(|| format!("attach tap {name} to {}", self.name))
    }
}

/// Deletes the bridge (its address and route go with it); a missing one is
/// not an error.
pub fn delete_bridge(name: &str) -> Result<()> {
    check_ifname(name)?;
    if !Path::new("/sys/class/net").join(name).join("bridge").exists() {
        return Ok(());
    }
    ip(&["link", "del", name]).step(|| format!("delete bridge {name}"))
}

/// Deletes a banger tap; a missing one is not an error.
pub fn delete_tap(name: &str) -> Result<()> {
    check_tap_name(name)?;
    if !link_exists(name) {
        return Ok(());
    }
    ip(&["link", "del", name]).step(|| format!("delete tap {name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_addresses() {
        assert_eq!(tap_name("0123456789ab"), "bg0123456789ab");
        assert!(check_ifname(&tap_name("0123456789ab")).is_ok());
        assert!(is_vm_tap(&tap_name("0123456789ab")));
        assert!(!is_vm_tap("bgpool00000000") && !is_vm_tap("bg0123456789AB"));
        assert_eq!(guest_mac("0123456789ab"), "06:01:23:45:67:89");
        let net: Ipv4Net = "172.30.213.0/24".parse().unwrap();
        assert_eq!(
            kernel_ip_arg("172.30.213.2".parse().unwrap(), &net, "172.30.213.1".parse().unwrap(), "web"),
            "ip=172.30.213.2::172.30.213.1:255.255.255.0:web:eth0:off"
        );
        assert!(check_ifname("eth0; rm -rf /").is_err());
        assert!(delete_tap("eth0").is_err(), "must refuse non-banger names");
    }
}
