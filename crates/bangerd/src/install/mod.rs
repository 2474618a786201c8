//! `banger system install|status|uninstall` (run as `bangerd system …`,
//! which the CLI execs): banger as two systemd services, the daemon as its
//! owner and a small root helper (see the `helper` and `privileged`
//! modules). It lives with the daemon because it acts on the host as root
//! with the daemon's own policy, paths and process checks.
//!
//! `--root DIR` installs under DIR instead of `/`: every path, in the files
//! and in the units, points under DIR and no service is started. That is for
//! trying it out and for the tests, which run the units' command lines by
//! hand.

use crate::helper::{HelperSection, InstallFile};
use crate::paths::Paths;
use crate::privileged::Request;
use anyhow::{bail, Context};
use banger_client::print::{fields, json};
use banger_client::{Client, Endpoint};
use clap::{Args, Parser, Subcommand};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

mod status;
mod uninstall;

// `bangerd system …`, shown to users as `banger system …`.
#[derive(Debug, Parser)]
#[command(
    name = "banger system",
    bin_name = "banger system",
    about = "Install banger as system services: the daemon as its owner plus a small root helper"
)]
pub struct SystemCli {
    #[command(subcommand)]
    cmd: SystemCmd,
}

#[derive(Debug, Subcommand)]
pub enum SystemCmd {
    /// Install banger for USER: the binaries, bangerd.service (the daemon, as USER)
    /// and bangerd-root.service (a small root helper for the bridge, taps, NAT and
    /// DNS routing), then start both. Needs root.
    #[command(after_help = "Example:\n  sudo banger system install --owner alice\n\n\
        Afterwards USER's `banger` talks to the service (socket /run/banger/bangerd.sock);\n\
        VMs survive restarts of either service. Undo with `sudo banger system uninstall`.")]
    Install(InstallArgs),
    /// Show the installation, both services and their sockets (exit 1 when something is not right)
    Status(StatusArgs),
    /// Stop the services and the owner's VMs, remove banger's network leftovers
    /// (taps, bridge, NAT rules, DNS routing), the units and the binaries. Needs root.
    #[command(after_help = "With --purge, the owner's banger state (VMs and their disks, images,\n\
        kernels) and caches are deleted too; without it they stay for a later install.")]
    Uninstall(UninstallArgs),
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The user the daemon runs as (the one who uses banger)
    #[arg(long, value_name = "USER")]
    pub owner: String,
    /// Where the binaries go (PREFIX/bin)
    #[arg(long, default_value = "/usr/local", value_name = "DIR")]
    pub prefix: PathBuf,
    /// Install under DIR instead of / (paths point there; nothing is started)
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Write the files but do not start the services
    #[arg(long)]
    pub no_start: bool,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The installation under DIR (see `install --root`)
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UninstallArgs {
    /// Also delete the owner's banger state (VMs, images, kernels) and caches
    #[arg(long)]
    pub purge: bool,
    /// The installation under DIR (see `install --root`)
    #[arg(long, value_name = "DIR")]
    pub root: Option<PathBuf>,
}

/// Runs `bangerd system ARGS` (ARGS after `system`); returns the exit code.
pub fn main(args: &[String]) -> i32 {
    // The daemon's private umask is not for system files: /etc/banger, the
    // binaries' directories and the units are read by everybody, as root's
    // tools make them. Modes that must differ are set explicitly.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
    let cli = match SystemCli::try_parse_from(
        std::iter::once("banger system".to_string()).chain(args.iter().cloned()),
    ) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return e.exit_code();
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    match rt.block_on(run(cli.cmd)) {
        Ok(code) => code,
        Err(e) => {
            banger_client::print::error(&e);
            1
        }
    }
}

async fn run(cmd: SystemCmd) -> anyhow::Result<i32> {
    match cmd {
        SystemCmd::Install(a) => install(a).await,
        SystemCmd::Status(a) => status::run(a).await,
        SystemCmd::Uninstall(a) => uninstall::run(a).await,
    }
}

/// The CLI to install: the one that ran us (`BANGER_CLI_BIN`, set by
/// `banger system`), else `banger` next to this executable.
fn cli_binary(daemon: &Path) -> Option<PathBuf> {
    std::env::var_os("BANGER_CLI_BIN")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .or_else(|| daemon.parent().map(|d| d.join("banger")))
        .filter(|p| p.is_file())
}

const HELPER_UNIT: &str = "bangerd-root.service";
const DAEMON_UNIT: &str = "bangerd.service";

/// Every location of one installation, under `root`.
struct Layout {
    root: PathBuf,
    prefix: PathBuf,
}

impl Layout {
    fn new(root: Option<&Path>, prefix: &Path) -> Layout {
        Layout { root: root.unwrap_or(Path::new("/")).to_path_buf(), prefix: prefix.to_path_buf() }
    }
    fn is_real(&self) -> bool {
        self.root == Path::new("/")
    }
    /// `p` (absolute) under the root.
    fn at(&self, p: impl AsRef<Path>) -> PathBuf {
        let p = p.as_ref();
        self.root.join(p.strip_prefix("/").unwrap_or(p))
    }
    fn bin(&self, name: &str) -> PathBuf {
        self.at(self.prefix.join("bin").join(name))
    }
    fn install_file(&self) -> PathBuf {
        self.at(crate::helper::INSTALL_FILE)
    }
    fn unit(&self, name: &str) -> PathBuf {
        self.at("/etc/systemd/system").join(name)
    }
    fn daemon_runtime(&self) -> PathBuf {
        self.at(crate::paths::SYSTEM_RUNTIME_DIR)
    }
    fn helper_runtime(&self) -> PathBuf {
        self.at("/run/banger-root")
    }
    fn helper_state(&self) -> PathBuf {
        self.at("/var/lib/banger-root")
    }
}

/// The owner's banger directories, as the service daemon sees them.
fn owner_paths(home: &Path, runtime: &Path) -> Paths {
    Paths {
        config_dir: home.join(".config/banger"),
        state_dir: home.join(".local/state/banger"),
        cache_dir: home.join(".cache/banger"),
        runtime_dir: runtime.to_path_buf(),
    }
}

fn need_root(what: &str) -> anyhow::Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(banger_api::ApiError::precondition(format!("`banger system {what}` needs root"))
            .with_hint(format!("run it with sudo: `sudo banger system {what} ...`"))
            .into());
    }
    Ok(())
}

fn systemd_running() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

fn systemctl(args: &[&str]) -> anyhow::Result<()> {
    let st = Command::new("systemctl").args(args).status().context("Cannot run systemctl")?;
    if !st.success() {
        bail!("systemctl {} failed ({st})", args.join(" "));
    }
    Ok(())
}

/// The helper's unit: root, with only the capabilities its operations need.
fn helper_unit(bangerd: &Path, install_file: &Path, owner_state: &Path) -> String {
    format!(
        "[Unit]
Description=banger root helper (bridge, taps, NAT and DNS routing for bangerd)
Before={DAEMON_UNIT}

[Service]
Type=simple
ExecStart={bangerd} root-helper --install-file {install}
Restart=on-failure
RuntimeDirectory=banger-root
RuntimeDirectoryMode=0711
RuntimeDirectoryPreserve=yes
StateDirectory=banger-root
StateDirectoryMode=0700
# VMs and their taps outlive restarts of the helper.
KillMode=process
SendSIGKILL=no
# Network work needs NET_ADMIN/NET_RAW, signalling engines KILL; the rest is
# for image builds (debootstrap: chroot, mknod, mounting /proc in the
# target, dpkg's owners and setuid files).
CapabilityBoundingSet=CAP_NET_ADMIN CAP_NET_RAW CAP_KILL CAP_CHOWN CAP_FOWNER CAP_FSETID CAP_DAC_OVERRIDE CAP_DAC_READ_SEARCH CAP_SETUID CAP_SETGID CAP_MKNOD CAP_SYS_CHROOT CAP_SYS_ADMIN
NoNewPrivileges=yes
ProtectSystem=strict
# Homes are hidden but for the owner's banger state: the helper opens a
# VM's files there (beneath it, no link followed) to bind them into the
# VM's Firecracker jail.
ProtectHome=tmpfs
BindPaths=-{state}
PrivateTmp=yes
ProtectKernelModules=yes
# (No ProtectControlGroups: the helper makes the jails' and QEMU's cgroups.)
ProtectClock=yes
RestrictRealtime=yes
LockPersonality=yes
SystemCallArchitectures=native
RestrictAddressFamilies=AF_UNIX AF_NETLINK AF_INET AF_INET6

[Install]
WantedBy=multi-user.target
",
        bangerd = bangerd.display(),
        install = install_file.display(),
        state = owner_state.display(),
    )
}

/// The daemon's unit: the owner, no capabilities, writes only to banger's
/// own directories.
fn daemon_unit(bangerd: &Path, file: &InstallFile, paths: &Paths, kvm_group: bool) -> String {
    let groups = if kvm_group { "SupplementaryGroups=kvm\n" } else { "" };
    format!(
        "[Unit]
Description=banger daemon for {owner}
Wants={HELPER_UNIT}
After={HELPER_UNIT} network.target

[Service]
Type=simple
User={owner}
Group={gid}
{groups}ExecStart={bangerd}
Environment=HOME={home}
Environment=BANGER_RUNTIME_DIR={runtime}
Environment=BANGER_HELPER_SOCKET={helper}
Restart=on-failure
RuntimeDirectory=banger
RuntimeDirectoryMode=0700
RuntimeDirectoryPreserve=yes
UMask=0077
# VMs (their engine processes) outlive restarts of the daemon.
KillMode=process
CapabilityBoundingSet=
NoNewPrivileges=yes
ProtectSystem=strict
ProtectHome=read-only
ReadWritePaths=-{state} -{cache} -{config}
PrivateTmp=yes
ProtectKernelModules=yes
ProtectControlGroups=yes
RestrictSUIDSGID=yes
LockPersonality=yes

[Install]
WantedBy=multi-user.target
",
        owner = file.owner,
        gid = file.gid,
        bangerd = bangerd.display(),
        home = file.home.display(),
        runtime = paths.runtime_dir.display(),
        helper = file.helper.socket.display(),
        state = paths.state_dir.display(),
        cache = paths.cache_dir.display(),
        config = paths.config_dir.display(),
    )
}

/// Whether `path` and every directory above it belong to root and only
/// root may write them: a binary root runs must not be anyone else's.
fn root_owned(path: &Path) -> bool {
    let Ok(path) = path.canonicalize() else { return false };
    banger_engine::firecracker::jail::only_root_writes(&path).is_ok()
}

fn write_file(path: &Path, data: &[u8], mode: u32) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("Cannot create {}", dir.display()))?;
    }
    // Through a temporary file and a rename: a crash never leaves a
    // half-written binary or unit, and a running binary is not overwritten.
    let tmp = path.with_extension("banger-new");
    std::fs::write(&tmp, data).with_context(|| format!("Cannot write {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("Cannot set the mode of {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("Cannot write {}", path.display()))
}

/// Runs `script` (with `dir` as `$1`) as the owner, with a private umask:
/// what the owner's paths point at is reached with the owner's rights
/// only, so a symlink planted there (`~/.cache/banger -> /etc`) gets root
/// to create, chmod, chown or delete nothing.
fn as_owner(script: &str, dir: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;
    let out = std::process::Command::new("/bin/sh")
        .args(["-c", script, "sh"])
        .arg(dir)
        .uid(uid)
        .gid(gid)
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .output()
        .context("Cannot run /bin/sh")?;
    if !out.status.success() {
        bail!("as uid {uid}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Creates one of the owner's directories (0700) as the owner (see
/// [`as_owner`]), then checks what the path leads to: a directory of the
/// owner's, mode 0700.
fn mkdir_as_owner(dir: &Path, uid: u32, gid: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    as_owner("umask 077 && mkdir -p -- \"$1\" && chmod 0700 -- \"$1\"", dir, uid, gid)
        .with_context(|| format!("Cannot create {} as its owner", dir.display()))?;
    let m = std::fs::metadata(dir).with_context(|| format!("Cannot inspect {}", dir.display()))?;
    if !m.is_dir() || m.uid() != uid || m.mode() & 0o777 != 0o700 {
        bail!(
            "{} is not a private directory of uid {uid}; remove it and run the install again",
            dir.display()
        );
    }
    Ok(())
}

fn mkdir_owned(dir: &Path, uid: u32, gid: u32, mode: u32) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("Cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    nix::unistd::chown(dir, Some(uid.into()), Some(gid.into()))
        .with_context(|| format!("Cannot give {} to uid {uid}", dir.display()))
}

async fn install(a: InstallArgs) -> anyhow::Result<i32> {
    need_root("install")?;
    let user = nix::unistd::User::from_name(&a.owner)?
        .with_context(|| format!("no user {:?} on this machine (see `getent passwd`)", a.owner))?;
    if user.uid.is_root() {
        bail!("the owner must be an ordinary user: running the daemon as root needs no install (just use banger as root)");
    }
    if !user.dir.is_dir() {
        bail!(
            "{}'s home {} does not exist; banger keeps the owner's VMs and images there",
            a.owner,
            user.dir.display()
        );
    }
    if !a.prefix.is_absolute() {
        bail!("--prefix must be an absolute path");
    }
    let layout = Layout::new(a.root.as_deref(), &a.prefix);
    let (uid, gid) = (user.uid.as_raw(), user.gid.as_raw());
    let paths = owner_paths(&user.dir, &layout.daemon_runtime());
    // The helper's policy follows the owner's network config.
    let config = crate::config::Config::load(&paths.config_file())
        .context("the owner's config file is invalid; fix it first (`banger config show` as the owner)")?;

    let daemon = std::env::current_exe().context("Cannot find this executable")?;
    let me = cli_binary(&daemon).context(
        "Cannot find the banger CLI next to bangerd; run this as `banger system install` or set BANGER_CLI_BIN",
    )?;
    let agent = crate::service::images::locate_agent(None).context(
        "Cannot find the static guest agent (banger-agent); build it with `scripts/build-agent` or `scripts/install`",
    )?;
    // The helper runs the jailer as root: only a root-owned one, found on
    // root's PATH, is recorded (never a path from the owner's config).
    let on_path = banger_engine::host::Binaries::default();
    let firecracker = on_path.find_firecracker().filter(|p| root_owned(p));
    let jailer = firecracker.as_ref().and_then(|fc| on_path.find_jailer(fc)).filter(|p| root_owned(p));
    let file = InstallFile {
        owner: a.owner.clone(),
        uid,
        gid,
        home: user.dir.clone(),
        version: banger_api::build_id(),
        installed_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        prefix: layout.at(&a.prefix),
        helper: HelperSection {
            socket: layout.helper_runtime().join("helper.sock"),
            state_dir: layout.helper_state(),
            bridge: config.bridge.clone(),
            cidr: config.cidr,
            dirs: vec![paths.state_dir.clone(), paths.runtime_dir.clone()],
            jailer: jailer.clone(),
            firecracker: jailer.as_ref().and(firecracker),
            jail_base: jailer.as_ref().map(|_| layout.helper_runtime().join("jail")),
        },
    };

    let mut done: Vec<String> = Vec::new();
    for (src, name) in [(&me, "banger"), (&daemon, "bangerd"), (&agent, "banger-agent")] {
        let dst = layout.bin(name);
        let data = std::fs::read(src).with_context(|| format!("Cannot read {}", src.display()))?;
        write_file(&dst, &data, 0o755)?;
        done.push(dst.display().to_string());
    }
    let install_file = layout.install_file();
    write_file(&install_file, file.to_toml().as_bytes(), 0o644)?;
    done.push(install_file.display().to_string());
    let bangerd_bin = layout.bin("bangerd");
    let kvm_group = nix::unistd::Group::from_name("kvm").ok().flatten().is_some();
    for (name, text) in [
        (HELPER_UNIT, helper_unit(&bangerd_bin, &install_file, &paths.state_dir)),
        (DAEMON_UNIT, daemon_unit(&bangerd_bin, &file, &paths, kvm_group)),
    ] {
        let p = layout.unit(name);
        write_file(&p, text.as_bytes(), 0o644)?;
        done.push(p.display().to_string());
    }
    // The daemon may write only here (ReadWritePaths), so they must exist.
    for d in [&paths.config_dir, &paths.state_dir, &paths.cache_dir] {
        mkdir_as_owner(d, uid, gid)?;
    }
    if !layout.is_real() {
        // No systemd to make the runtime dirs: make them as it would.
        mkdir_owned(&paths.runtime_dir, uid, gid, 0o700)?;
        mkdir_owned(&layout.helper_runtime(), 0, 0, 0o711)?;
        std::fs::set_permissions(&layout.root, std::fs::Permissions::from_mode(0o755))?;
    }

    // A daemon the owner started by hand (user mode) shares the state dir:
    // stop it so the service takes over (its VMs keep running and are
    // adopted).
    if layout.is_real() {
        for dir in [format!("/run/user/{uid}/banger"), format!("/tmp/banger-{uid}")] {
            let c = Client::new(Endpoint::for_paths(&owner_paths(&user.dir, Path::new(&dir))));
            if let Ok(Some(info)) = c.info().await {
                match c.stop_daemon().await {
                    Ok(()) => println!(
                        "stopped {}'s own bangerd (pid {}); the service takes over",
                        a.owner, info.pid
                    ),
                    Err(e) => {
                        eprintln!("warning: cannot stop {}'s bangerd (pid {}): {e:#}", a.owner, info.pid)
                    }
                }
            }
        }
    }
    let start = layout.is_real() && !a.no_start;
    let started = if start && systemd_running() {
        systemctl(&["daemon-reload"])?;
        systemctl(&["enable", "--now", HELPER_UNIT, DAEMON_UNIT])?;
        true
    } else {
        false
    };
    if a.json {
        json(&serde_json::json!({"installed": done, "owner": file.owner, "started": started}))?;
    } else {
        for d in &done {
            println!("installed {d}");
        }
        if started {
            println!("started {HELPER_UNIT} and {DAEMON_UNIT}; {} can use banger now", file.owner);
        } else if start {
            eprintln!("warning: systemd is not running here, so nothing was started.");
            eprintln!("hint: start the helper as root: {} root-helper", bangerd_bin.display());
            eprintln!(
                "      and the daemon as {}: BANGER_RUNTIME_DIR={} {}",
                file.owner,
                paths.runtime_dir.display(),
                bangerd_bin.display()
            );
        } else {
            println!("not started (--no-start or --root); see `banger system status`");
        }
        if !kvm_group {
            eprintln!("note: there is no kvm group; {} needs access to /dev/kvm for firecracker", file.owner);
        }
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_are_hardened_and_keep_vms_across_restarts() {
        let h = helper_unit(
            Path::new("/usr/local/bin/bangerd"),
            Path::new("/etc/banger/install.toml"),
            Path::new("/home/alice/.local/state/banger"),
        );
        assert!(h.contains(
            "ExecStart=/usr/local/bin/bangerd root-helper --install-file /etc/banger/install.toml"
        ));
        for line in [
            "KillMode=process",
            "SendSIGKILL=no",
            "RuntimeDirectoryPreserve=yes",
            "NoNewPrivileges=yes",
            "ProtectSystem=strict",
            "ProtectHome=tmpfs",
            "BindPaths=-/home/alice/.local/state/banger",
        ] {
            assert!(h.contains(line), "helper unit lacks {line}");
        }
        assert!(!h.lines().any(|l| l.starts_with("ProtectControlGroups=")), "the helper makes cgroups");
        let caps = h.lines().find(|l| l.starts_with("CapabilityBoundingSet=")).unwrap();
        assert!(caps.contains("CAP_NET_ADMIN") && !caps.contains("CAP_SYS_MODULE"), "{caps}");
        assert!(!caps.contains("CAP_SYS_PTRACE") && !caps.contains("CAP_SYS_BOOT"), "{caps}");
        let f = InstallFile::example();
        let paths = owner_paths(&f.home, Path::new("/run/banger"));
        let d = daemon_unit(Path::new("/usr/local/bin/bangerd"), &f, &paths, true);
        for line in [
            "User=alice",
            "SupplementaryGroups=kvm",
            "Environment=BANGER_RUNTIME_DIR=/run/banger",
            "Environment=BANGER_HELPER_SOCKET=/run/banger-root/helper.sock",
            "KillMode=process",
            "CapabilityBoundingSet=\n",
            "ProtectHome=read-only",
            "ReadWritePaths=-/home/alice/.local/state/banger -/home/alice/.cache/banger -/home/alice/.config/banger",
        ] {
            assert!(d.contains(line), "daemon unit lacks {line:?}:\n{d}");
        }
    }

    #[test]
    fn layout_puts_everything_under_root() {
        let l = Layout::new(Some(Path::new("/tmp/r")), Path::new("/usr/local"));
        assert_eq!(l.bin("banger"), Path::new("/tmp/r/usr/local/bin/banger"));
        assert_eq!(l.install_file(), Path::new("/tmp/r/etc/banger/install.toml"));
        assert_eq!(l.unit(DAEMON_UNIT), Path::new("/tmp/r/etc/systemd/system/bangerd.service"));
        let real = Layout::new(None, Path::new("/usr/local"));
        assert_eq!(real.daemon_runtime(), Path::new("/run/banger"));
        assert!(real.is_real());
    }
}
