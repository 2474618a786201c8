//! `banger doctor`: a read-only health report of the host and banger's
//! setup, one PASS/WARN/FAIL line per check with a fix hint.

use super::Daemon;
use crate::config::EngineChoice;
use banger_engine::host;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

pub use banger_api::{CheckLevel as Level, DoctorCheck as Check};

fn check(name: &str, level: Level, detail: impl Into<String>, hint: Option<&str>) -> Check {
    Check { name: name.into(), level, detail: detail.into(), hint: hint.map(String::from) }
}

impl Daemon {
    /// Who does the privileged network work: this daemon as root, or the
    /// root helper (socket owned by us, 0600, in a root-owned 0711 dir, and
    /// answering).
    fn privileges_check(&self) -> Check {
        use crate::privileged::{PrivOps, Request};
        let name = "privileges";
        let sock = match &self.privops {
            PrivOps::InProcess(_) => {
                return check(name, Level::Pass, "the daemon runs as root: network work in-process", None)
            }
            PrivOps::Helper(s) => s,
        };
        let me = nix::unistd::getuid().as_raw();
        let dir = sock.parent().unwrap_or(Path::new("/"));
        let (Ok(d), Ok(s)) = (std::fs::metadata(dir), std::fs::metadata(sock)) else {
            return check(
                name,
                Level::Warn,
                format!("no root helper at {}: VMs get no network, NAT is unavailable", sock.display()),
                Some("install the services with `sudo banger system install --owner $USER`"),
            );
        };
        let (dmode, smode) = (d.permissions().mode() & 0o777, s.permissions().mode() & 0o777);
        if d.uid() != 0 || dmode != 0o711 || s.uid() != me || smode != 0o600 {
            return check(
                name,
                Level::Fail,
                format!(
                    "{}: dir uid {} mode {dmode:o}, socket uid {} mode {smode:o} (want 0/711 and {me}/600)",
                    sock.display(),
                    d.uid(),
                    s.uid()
                ),
                Some("restart the helper (`sudo systemctl restart bangerd-root`); it recreates both"),
            );
        }
        match self.privops.call(&Request::Ping) {
            Ok(detail) => {
                check(name, Level::Pass, format!("root helper at {}: {detail}", sock.display()), None)
            }
            Err(e) => check(
                name,
                Level::Fail,
                format!("{e:#}"),
                Some("see `banger system status` and `journalctl -u bangerd-root`"),
            ),
        }
    }

    /// Runs every check. Nothing here changes the host.
    pub fn doctor(&self) -> Vec<Check> {
        let mut out = Vec::new();
        let arch = std::env::consts::ARCH;
        out.push(if arch == "x86_64" {
            check("cpu architecture", Level::Pass, "x86_64", None)
        } else {
            check("cpu architecture", Level::Fail, arch, Some("banger supports x86_64 hosts only"))
        });

        let kvm = host::kvm_status();
        let kvm_dev = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm");
        out.push(match (&kvm_dev, kvm.usable) {
            (Ok(_), true) => check("/dev/kvm", Level::Pass, kvm.reason.clone(), None),
            (Ok(_), false) => check("/dev/kvm", Level::Warn, kvm.reason.clone(), Some("VMs run under QEMU with TCG emulation (slower); firecracker needs a KVM with VMX/SVM")),
            (Err(e), _) => check("/dev/kvm", Level::Fail, format!("cannot open /dev/kvm: {e}"), Some("load kvm_intel or kvm_amd, and add your user to the kvm group (`sudo usermod -aG kvm $USER`)")),
        });

        let bins = self.config.binaries();
        let fc = bins.find_firecracker();
        let fc_required = self.config.engine == EngineChoice::Firecracker;
        out.push(match &fc {
            Some(p) => {
                let v = banger_engine::firecracker::Firecracker::new(p.clone()).check_version();
                match v {
                    Ok((a, b, c)) => check("firecracker", Level::Pass, format!("{} (v{a}.{b}.{c})", p.display()), None),
                    Err(e) => check("firecracker", Level::Fail, e.to_string(), Some("install firecracker 1.5 or newer from its releases")),
                }
            }
            None if kvm.usable || fc_required => check("firecracker", Level::Fail, "not found on PATH (and firecracker_bin is unset)", Some("install firecracker from https://github.com/firecracker-microvm/firecracker/releases and put it on PATH")),
            None if self.config.engine == EngineChoice::Qemu => check("firecracker", Level::Warn, "not found (engine = \"qemu\" is configured)", None),
            None => check("firecracker", Level::Warn, "not found; QEMU is used instead", Some("install firecracker where KVM runs ordinary guests")),
        });
        if let Some(c) = self.jailer_check(fc.as_deref()) {
            out.push(c);
        }
        let qemu = bins.find_qemu();
        let vhost = bins.find_vhost_vsock();
        let need_qemu = !(fc_required || kvm.usable && fc.is_some());
        let lvl = if need_qemu { Level::Fail } else { Level::Warn };
        out.push(match &qemu {
            Some(p) => check("qemu", Level::Pass, p.display().to_string(), None),
            None => {
                check("qemu", lvl, "qemu-system-x86_64 not found", Some("apt-get install qemu-system-x86"))
            }
        });
        out.push(match &vhost {
            Some(p) => check("vhost-device-vsock", Level::Pass, p.display().to_string(), None),
            None => check(
                "vhost-device-vsock",
                lvl,
                "not found (QEMU VMs need it for the agent channel)",
                Some("cargo install vhost-device-vsock"),
            ),
        });
        out.push(match self.choose_engine(None) {
            Ok(s) => check("engine for new VMs", Level::Pass, format!("{}: {s}", s.kind), None),
            Err(e) => check(
                "engine for new VMs",
                Level::Fail,
                format!("none: {}; no VM can be created", e.message),
                e.hint.as_deref().or(Some("install the engine, or set engine = \"auto\" in config.toml")),
            ),
        });

        out.push(match std::fs::OpenOptions::new().read(true).write(true).open("/dev/net/tun") {
            Ok(_) => check("/dev/net/tun", Level::Pass, "usable", None),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => check(
                "/dev/net/tun",
                Level::Fail,
                format!("{e}"),
                Some("give it its usual mode: `sudo chmod 0666 /dev/net/tun` (engines open their tap through it)"),
            ),
            Err(e) => check("/dev/net/tun", Level::Fail, format!("{e}"), Some("load the tun module: `sudo modprobe tun`")),
        });
        for (tool, pkg) in [
            ("mkfs.ext4", "e2fsprogs"),
            ("debugfs", "e2fsprogs"),
            ("ip", "iproute2"),
            ("nft", "nftables"),
            ("ssh", "openssh-client"),
        ] {
            out.push(match banger_image::ext4::tool(tool) {
                Ok(p) => check(tool, Level::Pass, p.display().to_string(), None),
                Err(_) => check(
                    tool,
                    if tool == "nft" || tool == "ssh" { Level::Warn } else { Level::Fail },
                    "not found",
                    Some(&format!("apt-get install {pkg}")),
                ),
            });
        }

        out.push(match self.agent_binary() {
            Ok(p) => check("guest agent", Level::Pass, format!("{} (static)", p.display()), None),
            Err(e) => check("guest agent", Level::Fail, e.message, e.hint.as_deref()),
        });
        out.push(match self.store.get_kernel(&self.config.default_kernel) {
            Ok(Some(k)) => {
                check("default kernel", Level::Pass, format!("{} ({})", k.name, k.vmlinux_path), None)
            }
            _ => check(
                "default kernel",
                Level::Warn,
                format!("{:?} is not present", self.config.default_kernel),
                Some("build it with `banger kernel build`"),
            ),
        });
        out.push(match self.store.get_image_by_name(&self.config.default_image) {
            Ok(Some(i)) => {
                check("default image", Level::Pass, format!("{} ({})", i.name, i.rootfs_path), None)
            }
            _ => check(
                "default image",
                Level::Warn,
                format!("{:?} is not present", self.config.default_image),
                Some("build it with `sudo banger image build`"),
            ),
        });

        out.push(match self.dns.get() {
            Some(Ok(())) => check(".vm names", Level::Pass, format!("answered on 127.0.0.1:{}", self.config.dns_port), None),
            Some(Err(why)) if self.config.dns_port == 0 => check(".vm names", Level::Warn, why.clone(), None),
            Some(Err(why)) => check(
                ".vm names",
                Level::Fail,
                format!("{why}; .vm is not routed to it"),
                Some("another process holds the port: set network.dns_port to a free port in config.toml (or 0 to turn .vm names off)"),
            ),
            None => check(".vm names", Level::Warn, "not started yet", None),
        });

        let bridge = &self.config.bridge;
        out.push(if banger_net::link_exists(bridge) {
            check(
                "bridge",
                Level::Pass,
                format!("{bridge} exists ({} via {})", self.config.cidr, self.config.gateway()),
                None,
            )
        } else {
            check("bridge", Level::Pass, format!("{bridge} will be created on the first start"), None)
        });

        out.push(match nix::sys::statvfs::statvfs(&self.paths.state_dir) {
            Ok(s) => {
                let free = s.blocks_available() * s.fragment_size();
                let gib = free as f64 / (1u64 << 30) as f64;
                if gib < 2.0 {
                    check(
                        "disk space",
                        Level::Fail,
                        format!("{gib:.1} GiB free in {}", self.paths.state_dir.display()),
                        Some("free space: images take ~1 GiB, each VM what it writes"),
                    )
                } else if gib < 10.0 {
                    check(
                        "disk space",
                        Level::Warn,
                        format!("{gib:.1} GiB free in {}", self.paths.state_dir.display()),
                        None,
                    )
                } else {
                    check(
                        "disk space",
                        Level::Pass,
                        format!("{gib:.0} GiB free in {}", self.paths.state_dir.display()),
                        None,
                    )
                }
            }
            Err(e) => check("disk space", Level::Warn, format!("cannot read: {e}"), None),
        });

        let me = nix::unistd::getuid().as_raw();
        let sock = self.paths.socket();
        out.push(match (std::fs::metadata(&self.paths.runtime_dir), std::fs::metadata(&sock)) {
            (Ok(d), Ok(s))
                if d.uid() == me
                    && d.permissions().mode() & 0o777 == 0o700
                    && s.uid() == me
                    && s.permissions().mode() & 0o777 == 0o600 =>
            {
                check(
                    "daemon socket",
                    Level::Pass,
                    format!("{} (0600 in a 0700 dir, owned by uid {me})", sock.display()),
                    None,
                )
            }
            (Ok(d), Ok(s)) => check(
                "daemon socket",
                Level::Fail,
                format!(
                    "{}: dir mode {:o} uid {}, socket mode {:o} uid {}",
                    sock.display(),
                    d.permissions().mode() & 0o777,
                    d.uid(),
                    s.permissions().mode() & 0o777,
                    s.uid()
                ),
                Some("stop the daemon, remove the runtime dir, and let banger recreate it"),
            ),
            _ => check("daemon socket", Level::Fail, format!("{} missing", sock.display()), None),
        });

        out.push(self.privileges_check());

        let ssh_config = std::env::var_os("HOME").map(|h| Path::new(&h).join(".ssh/config"));
        let wired = ssh_config
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .is_some_and(|t| t.contains("# banger ssh-config"));
        out.push(if wired {
            check("ssh-config", Level::Pass, "~/.ssh/config includes banger's block", None)
        } else {
            check(
                "ssh-config",
                Level::Warn,
                "not wired; `ssh NAME.vm` will not work",
                Some("run `banger ssh-config --install`"),
            )
        });
        out
    }
}
