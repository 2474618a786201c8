//! `banger kernel build`: a guest kernel from Debian's `linux-source-6.1`
//! and the config fragment in this repository (`kernel/banger-guest.config`).
//!
//! The source tree is unpacked once into the cache and reused; the config is
//! `make allnoconfig` with the fragment forced (`KCONFIG_ALLCONFIG`), so
//! everything not asked for stays off and the build stays small (about ten
//! minutes on two cores). The result is an uncompressed ELF `vmlinux` that
//! Firecracker and QEMU microvm both boot.

use crate::build::{have, run_logged};
use anyhow::{bail, Context};
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The config fragment, compiled in so the binary builds the same kernel
/// wherever it runs.
pub const CONFIG_FRAGMENT: &str = include_str!("../../../kernel/banger-guest.config");

/// Debian's package and the tarball it installs.
pub const SOURCE_PACKAGE: &str = "linux-source-6.1";
pub const SOURCE_TARBALL: &str = "/usr/src/linux-source-6.1.tar.xz";

/// Packages the build needs besides the source.
pub const BUILD_PACKAGES: &[&str] =
    &["linux-source-6.1", "build-essential", "bc", "flex", "bison", "libelf-dev", "xz-utils"];

/// Options the built kernel must have; the build fails if Kconfig dropped
/// any (a missing dependency in the fragment).
pub const REQUIRED: &[&str] = &[
    "CONFIG_ACPI",
    "CONFIG_PCI",
    "CONFIG_VIRTIO_MMIO",
    "CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES",
    "CONFIG_VIRTIO_BLK",
    "CONFIG_VIRTIO_NET",
    "CONFIG_VIRTIO_VSOCKETS",
    "CONFIG_EXT4_FS",
    "CONFIG_OVERLAY_FS",
    "CONFIG_DEVTMPFS",
    "CONFIG_DEVTMPFS_MOUNT",
    "CONFIG_IP_PNP",
    "CONFIG_PVH",
    "CONFIG_SERIAL_8250_CONSOLE",
    "CONFIG_UNIX98_PTYS",
    "CONFIG_CGROUPS",
    "CONFIG_MEMCG",
    "CONFIG_NAMESPACES",
    "CONFIG_NET_NS",
    "CONFIG_NF_TABLES",
    "CONFIG_BRIDGE",
    "CONFIG_VETH",
];

/// The shell command a user without root should run first.
pub fn install_hint() -> String {
    format!("sudo apt-get install -y {}", BUILD_PACKAGES.join(" "))
}

/// What is missing to build, as package names.
pub fn missing_packages() -> Vec<&'static str> {
    let mut m = Vec::new();
    if !Path::new(SOURCE_TARBALL).exists() {
        m.push("linux-source-6.1");
    }
    for (prog, pkg) in [
        ("make", "build-essential"),
        ("gcc", "build-essential"),
        ("bc", "bc"),
        ("flex", "flex"),
        ("bison", "bison"),
        ("xz", "xz-utils"),
    ] {
        if !have(prog) && !m.contains(&pkg) {
            m.push(pkg);
        }
    }
    if !Path::new("/usr/include/gelf.h").exists() && !Path::new("/usr/include/libelf.h").exists() {
        m.push("libelf-dev");
    }
    m
}

/// Installs `packages` with apt (root only).
pub fn apt_install(packages: &[&str], log: &Path, on_line: impl FnMut(&str)) -> anyhow::Result<()> {
    let mut cmd = Command::new("apt-get");
    cmd.env("DEBIAN_FRONTEND", "noninteractive").args(["install", "-y", "-q"]).args(packages);
    run_logged(cmd, "apt-get install", log, on_line)
}

/// Progress of a kernel build.
pub enum Step<'a> {
    Phase(&'a str),
    /// A compile step: (files compiled so far, rough total).
    Compiled(u64, u64),
}

/// What a guest kernel needs for banger's guests to boot and answer,
/// whatever config it was built from (`kernel build --config`).
pub const GUEST_NEEDS: &[&str] = &[
    "CONFIG_VIRTIO_MMIO",
    "CONFIG_VIRTIO_BLK",
    "CONFIG_VIRTIO_VSOCKETS",
    "CONFIG_EXT4_FS",
    "CONFIG_OVERLAY_FS",
    "CONFIG_DEVTMPFS",
    "CONFIG_UNIX98_PTYS",
    "CONFIG_PVH",
];

/// Which config a kernel is built from.
pub enum Config<'a> {
    /// banger's fragment (`kernel/banger-guest.config`) over `allnoconfig`.
    Banger,
    /// A whole `.config` (completed with `olddefconfig`), built in a source
    /// tree of its own so switching configs never rebuilds from scratch.
    Full(&'a str),
}

/// Builds `vmlinux` in `cache_dir` and returns its path. `log` receives the
/// whole output.
pub fn build(
    cache_dir: &Path,
    log: &Path,
    jobs: usize,
    config: Config<'_>,
    mut progress: impl FnMut(Step<'_>),
) -> anyhow::Result<PathBuf> {
    let version = source_version().unwrap_or_else(|| "unknown".into());
    let tree_parent = cache_dir.join("kernel");
    let tree = match config {
        Config::Banger => tree_parent.join(format!("linux-source-6.1_{version}")),
        Config::Full(text) => {
            let sum = hex::encode(sha2::Sha256::digest(text.as_bytes()));
            tree_parent.join(format!("linux-source-6.1_{version}-config-{}", &sum[..12]))
        }
    };
    if !tree.join("Makefile").exists() {
        progress(Step::Phase("unpacking linux-source-6.1"));
        let staging = tree_parent.join(format!(".unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging)?;
        let mut tar = Command::new("tar");
        tar.args(["-xf", SOURCE_TARBALL, "-C"]).arg(&staging);
        run_logged(tar, "unpacking the kernel source", log, |_| {})?;
        let unpacked = staging.join("linux-source-6.1");
        if !unpacked.join("Makefile").exists() {
            bail!("{SOURCE_TARBALL} did not contain linux-source-6.1/");
        }
        let _ = std::fs::remove_dir_all(&tree);
        std::fs::rename(&unpacked, &tree)?;
        let _ = std::fs::remove_dir_all(&staging);
    }
    progress(Step::Phase("configuring"));
    let (required, total) = match config {
        Config::Banger => {
            let fragment = tree_parent.join("banger-guest.config");
            std::fs::write(&fragment, CONFIG_FRAGMENT)?;
            let mut cfg = Command::new("make");
            cfg.current_dir(&tree).env("KCONFIG_ALLCONFIG", &fragment).arg("allnoconfig");
            run_logged(cfg, "make allnoconfig", log, |_| {})?;
            // About 1,450 objects with this config; a rebuild compiles far fewer.
            (REQUIRED, 1450)
        }
        Config::Full(text) => {
            std::fs::write(tree.join(".config"), text)?;
            let mut cfg = Command::new("make");
            cfg.current_dir(&tree).arg("olddefconfig");
            run_logged(cfg, "make olddefconfig", log, |_| {})?;
            (GUEST_NEEDS, 4000)
        }
    };
    let generated = std::fs::read_to_string(tree.join(".config")).context("reading the generated .config")?;
    let missing: Vec<&str> =
        required.iter().copied().filter(|o| !generated.lines().any(|l| l == format!("{o}=y"))).collect();
    if !missing.is_empty() {
        bail!(
            "the kernel config lacks {} ({})",
            missing.join(", "),
            match config {
                Config::Banger => "a dependency is missing from kernel/banger-guest.config",
                Config::Full(_) => "banger's guests need them built in",
            }
        );
    }
    progress(Step::Phase("compiling vmlinux"));
    let mut done = 0u64;
    let mut make = Command::new("make");
    make.current_dir(&tree).arg(format!("-j{jobs}")).arg("vmlinux");
    run_logged(make, "make vmlinux", log, |line| {
        if line.trim_start().starts_with("CC ") || line.trim_start().starts_with("AS ") {
            done += 1;
            progress(Step::Compiled(done, total.max(done)));
        }
    })?;
    let vmlinux = tree.join("vmlinux");
    crate::kernel::check_vmlinux(&vmlinux)?;
    Ok(vmlinux)
}

/// Version of the installed linux-source-6.1 package, e.g. `6.1.158-1`.
pub fn source_version() -> Option<String> {
    let out = Command::new("dpkg-query").args(["-W", "-f=${Version}", SOURCE_PACKAGE]).output().ok()?;
    let v = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (!v.is_empty() && out.status.success()).then_some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn banger_kernel_has_what_every_guest_kernel_needs() {
        for o in GUEST_NEEDS {
            assert!(REQUIRED.contains(o), "{o} is a guest need that banger's own config does not require");
        }
    }

    #[test]
    fn fragment_asks_for_every_required_option() {
        for o in REQUIRED {
            assert!(CONFIG_FRAGMENT.lines().any(|l| l == format!("{o}=y")), "{o} is not in the fragment");
        }
    }
}
