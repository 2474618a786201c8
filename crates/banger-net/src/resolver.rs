//! `.vm` routing through systemd-resolved's per-link DNS: the bridge gets
//! banger's DNS server and the `~vm` routing domain, where resolved runs.

use crate::error::{succeeded, NetError, Result};
use std::net::SocketAddrV4;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where systemd-resolved shows it runs, and its control tool.
pub struct Resolved {
    pub run_dir: PathBuf,
    pub resolvectl: Option<PathBuf>,
}

impl Resolved {
    pub fn system() -> Resolved {
        Resolved {
            run_dir: "/run/systemd/resolve".into(),
            resolvectl: banger_paths::find_executable(None, "resolvectl", &[]),
        }
    }

    /// resolvectl, when resolved runs (its runtime dir exists).
    fn tool(&self) -> Option<&Path> {
        self.resolvectl.as_deref().filter(|_| self.run_dir.is_dir())
    }

    fn run(tool: &Path, args: &[&str]) -> Result<()> {
        let out = Command::new(tool).args(args).output().map_err(|source| NetError::Spawn {
            tool: tool.display().to_string(),
            install: "part of systemd-resolved",
            source,
        })?;
        succeeded(|| format!("resolvectl {}", args.join(" ")), &out)
    }

    pub fn sync(&self, bridge: &str, dns: SocketAddrV4) -> Result<String> {
        let Some(tool) = self.tool() else {
            return Ok("systemd-resolved is not running; .vm routing left to the host's resolver".into());
        };
        Self::run(tool, &["dns", bridge, &dns.to_string()])?;
        Self::run(tool, &["domain", bridge, "~vm"])?;
        Ok(format!("resolvectl routes .vm to {dns} on {bridge}"))
    }

    pub fn clear(&self, bridge: &str) -> Result<String> {
        let Some(tool) = self.tool() else { return Ok(String::new()) };
        if !crate::link_exists(bridge) {
            return Ok(String::new());
        }
        Self::run(tool, &["revert", bridge])?;
        Ok(format!("resolvectl routing on {bridge} reverted"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in resolvectl that records its arguments.
    #[test]
    fn routes_the_vm_domain_only_where_resolved_runs() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("calls");
        let tool = d.path().join("resolvectl");
        std::fs::write(&tool, format!("#!/bin/sh\necho \"$@\" >> {}\n", log.display())).unwrap();
        std::fs::set_permissions(&tool, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let dns: SocketAddrV4 = "127.0.0.1:53535".parse().unwrap();
        let absent = Resolved { run_dir: d.path().join("none"), resolvectl: Some(tool.clone()) };
        assert!(absent.sync("banger0", dns).unwrap().contains("not running"));
        assert!(!log.exists(), "resolvectl must not run without resolved");
        let here = Resolved { run_dir: d.path().to_path_buf(), resolvectl: Some(tool) };
        here.sync("banger0", dns).unwrap();
        let calls = std::fs::read_to_string(&log).unwrap();
        assert_eq!(calls, "dns banger0 127.0.0.1:53535\ndomain banger0 ~vm\n");
    }
}
