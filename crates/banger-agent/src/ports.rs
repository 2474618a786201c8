//! `ports`: listening TCP and UDP sockets, from /proc/net, with the owning
//! process found through /proc/*/fd.

use banger_agent_proto::PortInfo;
use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};

pub fn list() -> std::io::Result<Vec<PortInfo>> {
    let owners = socket_owners();
    let mut out = Vec::new();
    for (file, proto, listen_state) in
        [("tcp", "tcp", "0A"), ("tcp6", "tcp", "0A"), ("udp", "udp", "07"), ("udp6", "udp", "07")]
    {
        let Ok(text) = std::fs::read_to_string(format!("/proc/net/{file}")) else {
            continue;
        };
        for entry in parse(&text, listen_state) {
            let (address, port, inode) = entry;
            let owner = owners.get(&inode);
            out.push(PortInfo {
                proto: proto.into(),
                address,
                port,
                pid: owner.map(|o| o.0),
                process: owner.map(|o| o.1.clone()),
            });
        }
    }
    out.sort_by(|a, b| {
        (a.proto.as_str(), a.port, a.address.as_str()).cmp(&(b.proto.as_str(), b.port, b.address.as_str()))
    });
    out.dedup();
    Ok(out)
}

/// Parses a /proc/net/{tcp,udp}[6] table: (address, port, inode) of rows in
/// `state` (0A = LISTEN for TCP, 07 = unconnected for UDP).
pub fn parse(text: &str, state: &str) -> Vec<(String, u16, u64)> {
    text.lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            if f.len() < 10 || f[3] != state {
                return None;
            }
            let (addr_hex, port_hex) = f[1].split_once(':')?;
            let port = u16::from_str_radix(port_hex, 16).ok()?;
            let inode = f[9].parse().ok()?;
            Some((decode_addr(addr_hex)?, port, inode))
        })
        .collect()
}

/// Kernel hex addresses are in host byte order, 32 bits at a time.
fn decode_addr(hex: &str) -> Option<String> {
    let words: Vec<u32> = (0..hex.len() / 8)
        .map(|i| u32::from_str_radix(&hex[i * 8..i * 8 + 8], 16))
        .collect::<Result<_, _>>()
        .ok()?;
    match words.len() {
        1 => Some(Ipv4Addr::from(words[0].to_le_bytes()).to_string()),
        4 => {
            let mut b = [0u8; 16];
            for (i, w) in words.iter().enumerate() {
                b[i * 4..i * 4 + 4].copy_from_slice(&w.to_le_bytes());
            }
            Some(Ipv6Addr::from(b).to_string())
        }
        _ => None,
    }
}

/// socket inode → (pid, process name).
fn socket_owners() -> HashMap<u64, (u32, String)> {
    let mut map = HashMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return map;
    };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default().trim().to_string();
        for fd in fds.flatten() {
            if let Ok(target) = std::fs::read_link(fd.path()) {
                let t = target.to_string_lossy();
                if let Some(inode) = t.strip_prefix("socket:[").and_then(|s| s.strip_suffix(']')) {
                    if let Ok(i) = inode.parse() {
                        map.entry(i).or_insert((pid, comm.clone()));
                    }
                }
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_net() {
        let tcp = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n\
   0: 00000000:0016 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0 100 0 0 10 0\n\
   1: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 5678 1 0 100 0 0 10 0\n\
   2: 0100007F:1F91 0100007F:0016 01 00000000:00000000 00:00000000 00000000     0        0 9 1 0 100 0 0 10 0\n";
        let rows = parse(tcp, "0A");
        assert_eq!(rows, vec![("0.0.0.0".into(), 22, 1234), ("127.0.0.1".into(), 8080, 5678)]);
        let tcp6 = "header\n   0: 00000000000000000000000001000000:0050 00000000000000000000000000000000:0000 0A 0 0 0 0 0 42 1\n";
        assert_eq!(parse(tcp6, "0A"), vec![("::1".into(), 80, 42)]);
    }
}
