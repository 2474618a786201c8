//! `banger image build`: the Debian bookworm golden image, from debootstrap
//! to an ext4 file, without mounting anything.
//!
//! debootstrap fills a staging directory; banger's guest config is written
//! into it (sshd by key only, slow units masked, per-VM host keys); then
//! `mkfs.ext4 -d` turns the directory into the image. The package list and
//! the overlay files live in the repository under `images/`.

use crate::build::run_logged;
use anyhow::{bail, Context};
use std::path::Path;
use std::process::Command;

/// Packages on top of debootstrap's minbase (one per line, `#` comments).
pub const PACKAGES: &str = include_str!("../../../images/debian-bookworm.packages");

/// Units masked in the image: timers that wake a short-lived VM for
/// housekeeping, and gettys waiting for devices that only udev would
/// announce (there is no udev in the image; banger reaches the guest
/// through its agent and sshd).
pub const MASKED_UNITS: &[&str] = &[
    "apt-daily.timer",
    "apt-daily-upgrade.timer",
    "dpkg-db-backup.timer",
    "e2scrub_all.timer",
    "fstrim.timer",
    "man-db.timer",
    "systemd-tmpfiles-clean.timer",
    "serial-getty@ttyS0.service",
    "getty@tty1.service",
    "getty.target",
    "systemd-networkd-wait-online.service",
];

/// Files written into the image: (path, mode, contents).
pub const OVERLAY: &[(&str, u32, &str)] = &[
    (
        "etc/ssh/sshd_config.d/banger.conf",
        0o644,
        "# banger: keys only, root by key, no DNS lookups, one fast host key.\n\
         PasswordAuthentication no\n\
         KbdInteractiveAuthentication no\n\
         PermitRootLogin prohibit-password\n\
         PubkeyAuthentication yes\n\
         UseDNS no\n\
         HostKey /etc/ssh/ssh_host_ed25519_key\n",
    ),
    (
        "etc/systemd/system/banger-ssh-hostkey.service",
        0o644,
        "[Unit]\n\
         Description=Generate this VM's own SSH host key (banger)\n\
         Before=ssh.service\n\
         ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key\n\n\
         [Service]\n\
         Type=oneshot\n\
         ExecStart=/usr/bin/ssh-keygen -q -t ed25519 -N \"\" -f /etc/ssh/ssh_host_ed25519_key\n\n\
         [Install]\n\
         WantedBy=multi-user.target\n",
    ),
    (
        "etc/systemd/system.conf.d/banger.conf",
        0o644,
        "# banger: quiet console, quick stops.\n[Manager]\nShowStatus=no\nDefaultTimeoutStopSec=5s\n",
    ),
    ("etc/hostname", 0o644, "banger\n"),
    ("etc/hosts", 0o644, "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"),
    ("etc/fstab", 0o644, "# banger: the root is assembled by /sbin/banger-init; nothing to mount.\n"),
    ("etc/machine-id", 0o444, ""),
];

/// The packages to `--include`.
pub fn packages() -> Vec<&'static str> {
    PACKAGES.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()).collect()
}

/// Runs debootstrap into `root` (which must not exist yet).
pub fn debootstrap(
    root: &Path,
    debs_cache: &Path,
    mirror: &str,
    log: &Path,
    mut on_line: impl FnMut(&str),
) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        bail!("debootstrap needs root");
    }
    std::fs::create_dir_all(debs_cache)?;
    let mut cmd = Command::new(crate::ext4::tool("debootstrap").context("debootstrap is not installed")?);
    cmd.arg("--variant=minbase")
        .arg(format!("--cache-dir={}", debs_cache.display()))
        .arg(format!("--include={}", packages().join(",")))
        .arg("bookworm")
        .arg(root)
        .arg(mirror);
    // The guest's files get Debian's usual modes, not the daemon's private
    // umask.
    // SAFETY: umask is async-signal-safe; runs in the child before exec.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut cmd, || {
            libc::umask(0o022);
            Ok(())
        });
    }
    run_logged(cmd, "debootstrap", log, |l| on_line(l))
}

/// Applies banger's guest config to a debootstrapped tree.
pub fn configure(root: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    for (path, mode, text) in OVERLAY {
        let p = root.join(path);
        if let Some(d) = p.parent() {
            create_dirs_0755(root, d)?;
        }
        let _ = std::fs::remove_file(&p);
        std::fs::write(&p, text).with_context(|| format!("Cannot write {}", p.display()))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))?;
    }
    let system = root.join("etc/systemd/system");
    for unit in MASKED_UNITS {
        let link = system.join(unit);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink("/dev/null", &link)?;
    }
    let wants = system.join("multi-user.target.wants");
    create_dirs_0755(root, &wants)?;
    let _ = std::fs::remove_file(wants.join("banger-ssh-hostkey.service"));
    std::os::unix::fs::symlink("../banger-ssh-hostkey.service", wants.join("banger-ssh-hostkey.service"))?;
    // Host keys made at build time would be shared by every VM.
    for e in std::fs::read_dir(root.join("etc/ssh"))?.flatten() {
        if e.file_name().to_string_lossy().starts_with("ssh_host_") {
            std::fs::remove_file(e.path())?;
        }
    }
    let _ = std::fs::remove_file(root.join("var/lib/dbus/machine-id"));
    // Downloaded package files and lists: `apt-get update` refreshes them.
    for dir in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        if let Ok(entries) = std::fs::read_dir(root.join(dir)) {
            for e in entries.flatten() {
                if e.file_type().map(|t| t.is_file()).unwrap_or(false) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
    std::fs::create_dir_all(root.join("root/.ssh"))?;
    std::fs::set_permissions(root.join("root/.ssh"), std::fs::Permissions::from_mode(0o700))?;
    Ok(())
}

/// Creates the missing directories of `dir` under `root` with mode 0755,
/// whatever the process umask (the daemon's is private).
fn create_dirs_0755(root: &Path, dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let rel = dir.strip_prefix(root).unwrap_or(dir);
    let mut p = root.to_path_buf();
    for c in rel.components() {
        p.push(c);
        if std::fs::symlink_metadata(&p).is_err() {
            std::fs::create_dir(&p).with_context(|| format!("Cannot create {}", p.display()))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
        }
    }
    Ok(())
}

/// Debian's mirror the golden image is built from.
pub const DEBIAN_MIRROR: &str = "http://deb.debian.org/debian";

/// The whole golden build: debootstrap into `work/root`, banger's config,
/// then `mkfs.ext4 -d` into `out` (sized from the content unless
/// `size_mib`). `on_phase(phase, message)` reports progress. Returns the
/// installed packages for the manifest. The caller removes `work`.
pub fn build_rootfs(
    work: &Path,
    debs_cache: &Path,
    log: &Path,
    size_mib: Option<u64>,
    out: &Path,
    on_phase: impl Fn(&str, String),
) -> anyhow::Result<Vec<String>> {
    let root = work.join("root");
    on_phase("debootstrap", "debootstrap: Debian bookworm".into());
    debootstrap(&root, debs_cache, DEBIAN_MIRROR, log, |l| {
        if let Some(m) = l.strip_prefix("I: ") {
            on_phase("debootstrap", format!("debootstrap: {m}"));
        }
    })?;
    on_phase("configure", "applying banger's guest config".into());
    configure(&root)?;
    let packages = installed_packages(&root);
    let content = tree_bytes(&root);
    let size_mib = size_mib.unwrap_or_else(|| ((content * 3 / 2) >> 20).max(2048).next_multiple_of(256));
    if content >> 20 > size_mib {
        bail!("the image content ({} MiB) does not fit in {size_mib} MiB", content >> 20);
    }
    on_phase("mkfs", format!("making a {size_mib} MiB ext4 image"));
    crate::ext4::mkfs_from_dir(out, Some(&root), size_mib, "banger-root")?;
    Ok(packages)
}

/// `name=version` of every installed package, for the manifest.
pub fn installed_packages(root: &Path) -> Vec<String> {
    let status = std::fs::read_to_string(root.join("var/lib/dpkg/status")).unwrap_or_default();
    let mut out = Vec::new();
    for para in status.split("\n\n") {
        let field = |k: &str| para.lines().find_map(|l| l.strip_prefix(k)).map(|v| v.trim().to_string());
        if let (Some(p), Some(v), Some(s)) = (field("Package:"), field("Version:"), field("Status:")) {
            if s.ends_with("installed") && !s.contains("not-installed") {
                out.push(format!("{p}={v}"));
            }
        }
    }
    out.sort();
    out
}

/// Bytes used by a directory tree (apparent sizes), to size the image.
pub fn tree_bytes(root: &Path) -> u64 {
    fn walk(p: &Path, acc: &mut u64) {
        if let Ok(rd) = std::fs::read_dir(p) {
            for e in rd.flatten() {
                if let Ok(m) = e.metadata() {
                    if m.is_dir() {
                        walk(&e.path(), acc);
                    } else {
                        *acc += m.len().max(4096);
                    }
                }
            }
        }
    }
    let mut acc = 0;
    walk(root, &mut acc);
    acc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_list_has_the_essentials() {
        let p = packages();
        for must in [
            "systemd",
            "systemd-sysv",
            "openssh-server",
            "iproute2",
            "ca-certificates",
            "curl",
            "git",
            "jq",
            "sudo",
            "procps",
            "less",
            "build-essential",
        ] {
            assert!(p.contains(&must), "{must} missing from images/debian-bookworm.packages");
        }
    }

    #[test]
    fn configure_writes_overlay_and_masks() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("etc/ssh")).unwrap();
        std::fs::write(d.path().join("etc/ssh/ssh_host_rsa_key"), "secret").unwrap();
        configure(d.path()).unwrap();
        assert!(!d.path().join("etc/ssh/ssh_host_rsa_key").exists());
        let masked = std::fs::read_link(d.path().join("etc/systemd/system/apt-daily.timer")).unwrap();
        assert_eq!(masked, Path::new("/dev/null"));
        let sshd = std::fs::read_to_string(d.path().join("etc/ssh/sshd_config.d/banger.conf")).unwrap();
        assert!(sshd.contains("PasswordAuthentication no"));
        configure(d.path()).unwrap(); // idempotent
    }

    #[test]
    fn reads_dpkg_status() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("var/lib/dpkg")).unwrap();
        std::fs::write(
            d.path().join("var/lib/dpkg/status"),
            "Package: git\nStatus: install ok installed\nVersion: 1:2.39\n\nPackage: gone\nStatus: deinstall ok config-files\nVersion: 1\n",
        )
        .unwrap();
        assert_eq!(installed_packages(d.path()), vec!["git=1:2.39".to_string()]);
    }
}
