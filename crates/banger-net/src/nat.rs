//! Opt-in NAT with nftables, in banger's own table (`ip banger`).
//!
//! The whole table is rebuilt in one `nft -f` batch from the list of VMs
//! that have NAT and run, so it is always exactly what the daemon's state
//! says — after a stop, a delete or a daemon crash alike. VMs with NAT get
//! masquerading and forwarding; every other packet from the bridge that
//! would leave the host is dropped, so a VM without NAT reaches the host
//! and its neighbours on the bridge, nothing beyond. IPv4 forwarding is
//! switched on only while some VM needs it, and switched back when none
//! does (the value found is remembered in a file, so a crash cannot lose it).

use crate::error::{io, succeeded, NetError, Result, Step};
use std::io::Write;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::{Command, Stdio};

pub const TABLE: &str = "banger";
const IP_FORWARD: &str = "/proc/sys/net/ipv4/ip_forward";

/// A running VM's tap and the only addresses that may come out of it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Guard {
    pub tap: String,
    pub mac: String,
    pub ip: Ipv4Addr,
}

/// Checks a MAC address as banger writes them: six lowercase hex pairs.
pub fn check_mac(mac: &str) -> Result<()> {
    let parts: Vec<&str> = mac.split(':').collect();
    let hex = |p: &&str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if parts.len() != 6 || !parts.iter().all(hex) {
        return Err(NetError::Mac(mac.into()));
    }
    Ok(())
}

/// The nft script for `bridge` with NAT for `nat_ips`, and each guarded
/// tap bound to its VM's MAC and IPv4 address: frames from a tap with any
/// other source (Ethernet, IPv4 or ARP) are dropped on the bridge, so a VM
/// cannot borrow a NAT VM's address to get out, nor answer for another
/// VM's.
pub fn ruleset(bridge: &str, nat_ips: &[Ipv4Addr], guards: &[Guard]) -> String {
    let mut s = format!("add table bridge {TABLE}\ndelete table bridge {TABLE}\ntable bridge {TABLE} {{\n");
    s.push_str("  chain prerouting {\n    type filter hook prerouting priority filter; policy accept;\n");
    for g in guards {
        let (tap, mac, ip) = (&g.tap, &g.mac, g.ip);
        s.push_str(&format!("    iifname \"{tap}\" ether saddr != {mac} drop\n"));
        s.push_str(&format!("    iifname \"{tap}\" ether type ip ip saddr != {ip} drop\n"));
        s.push_str(&format!("    iifname \"{tap}\" ether type arp arp saddr ip != {ip} drop\n"));
        s.push_str(&format!("    iifname \"{tap}\" ether type arp arp saddr ether != {mac} drop\n"));
    }
    s.push_str("  }\n}\n");
    s.push_str(&format!("add table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n"));
    s.push_str("  chain forward {\n    type filter hook forward priority filter; policy accept;\n");
    for ip in nat_ips {
        s.push_str(&format!("    iifname \"{bridge}\" ip saddr {ip} accept\n"));
        s.push_str(&format!("    oifname \"{bridge}\" ip daddr {ip} ct state established,related accept\n"));
    }
    s.push_str(&format!("    iifname \"{bridge}\" oifname != \"{bridge}\" drop\n"));
    s.push_str(&format!("    oifname \"{bridge}\" iifname != \"{bridge}\" drop\n  }}\n"));
    s.push_str("  chain postrouting {\n    type nat hook postrouting priority srcnat; policy accept;\n");
    for ip in nat_ips {
        s.push_str(&format!("    ip saddr {ip} oifname != \"{bridge}\" masquerade\n"));
    }
    s.push_str("  }\n}\n");
    s
}

fn nft(script: &str) -> Result<()> {
    let mut child = Command::new("nft")
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetError::Spawn { tool: "nft".into(), install: "install nftables", source })?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(script.as_bytes()).map_err(io("send the ruleset to nft"))?;
    }
    let out = child.wait_with_output().map_err(io("wait for nft"))?;
    succeeded(|| "nft -f -".into(), &out)
}

/// Whether banger's table of nftables family `family` exists: `ip` (NAT
/// and the bridge fence) or `bridge` (the taps' address guards).
pub fn table_exists(family: &str) -> bool {
    Command::new("nft")
        .args(["list", "table", family, TABLE])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Whether `nft` can be run at all (asked once per process: this is on
/// every VM start and stop).
pub fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        Command::new("nft")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Makes the rules match: none at all while no VM runs (`any_running`
/// false), else the bridge fenced in with NAT for `nat_ips`; forwarding on
/// exactly while some VM has NAT. `saved` remembers the value found.
pub fn apply(
    bridge: &str,
    any_running: bool,
    nat_ips: &[Ipv4Addr],
    guards: &[Guard],
    saved: &Path,
) -> Result<()> {
    crate::check_ifname(bridge)?;
    for g in guards {
        crate::check_ifname(&g.tap)?;
        check_mac(&g.mac)?;
    }
    if !any_running {
        for family in ["ip", "bridge"] {
            if table_exists(family) {
                nft(&format!("delete table {family} {TABLE}\n"))
                    .step(|| "remove banger's nftables table".into())?;
            }
        }
        if let Ok(orig) = std::fs::read_to_string(saved) {
            std::fs::write(IP_FORWARD, orig.trim()).map_err(io("restore net.ipv4.ip_forward"))?;
            let _ = std::fs::remove_file(saved);
        }
        return Ok(());
    }
    nft(&ruleset(bridge, nat_ips, guards)).step(|| "install banger's NAT rules".into())?;
    if nat_ips.is_empty() {
        if let Ok(orig) = std::fs::read_to_string(saved) {
            std::fs::write(IP_FORWARD, orig.trim()).map_err(io("restore net.ipv4.ip_forward"))?;
            let _ = std::fs::remove_file(saved);
        }
        return Ok(());
    }
    let now = std::fs::read_to_string(IP_FORWARD).map_err(io("read net.ipv4.ip_forward"))?;
    if now.trim() != "1" {
        if !saved.exists() {
            std::fs::write(saved, now.trim()).map_err(io("remember net.ipv4.ip_forward"))?;
        }
        std::fs::write(IP_FORWARD, "1").map_err(io("enable net.ipv4.ip_forward"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_tap_is_bound_to_its_vms_addresses() {
        let g = Guard {
            tap: "bg0123456789ab".into(),
            mac: "06:01:23:45:67:89".into(),
            ip: "172.30.213.2".parse().unwrap(),
        };
        let r = ruleset("banger0", &[], std::slice::from_ref(&g));
        assert!(r.starts_with("add table bridge banger\ndelete table bridge banger\n"), "atomic replace");
        for rule in [
            "iifname \"bg0123456789ab\" ether saddr != 06:01:23:45:67:89 drop",
            "iifname \"bg0123456789ab\" ether type ip ip saddr != 172.30.213.2 drop",
            "iifname \"bg0123456789ab\" ether type arp arp saddr ip != 172.30.213.2 drop",
        ] {
            assert!(r.contains(rule), "{rule} missing:\n{r}");
        }
        assert!(check_mac("06:01:23:45:67:89").is_ok());
        for bad in ["06:01:23:45:67", "06:01:23:45:67:8g", "06:01:23:45:67:89; drop", "06:01:23:45:67:89:00"]
        {
            assert!(check_mac(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ruleset_masquerades_only_nat_vms() {
        let r = ruleset("banger0", &["172.30.213.5".parse().unwrap()], &[]);
        assert!(r.contains("ip saddr 172.30.213.5 oifname != \"banger0\" masquerade"));
        assert!(r.contains("iifname \"banger0\" oifname != \"banger0\" drop"));
        assert_eq!(r.matches("masquerade").count(), 1);
        assert!(r.contains("add table ip banger\ndelete table ip banger\n"), "atomic replace");
        assert!(!ruleset("banger0", &[], &[]).contains("masquerade"));
    }
}
