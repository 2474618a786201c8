//! `/sbin/banger-init`: PID 1 for the first moments of every banger guest.
//!
//! The kernel mounts the image read-only as `/` (`root=/dev/vda ro`) and runs
//! us. We then:
//! 1. mount /proc, /sys, /dev (devtmpfs) and a scratch tmpfs on /run;
//! 2. bind the read-only root to /run/banger/lower, mount the VM's own disk
//!    (`banger.disk=`, default /dev/vdb) on /run/banger/disk, and join them
//!    as overlayfs on /run/banger/root — lower: the image, upper: the disk;
//! 3. move /dev, /proc and /sys into it and `pivot_root` there;
//! 4. mount what commands expect under /dev (devpts, /dev/shm, mqueue, the
//!    /dev/fd links) — the agent answers before the image's init has run,
//!    and an image without one never gets them otherwise;
//! 5. set the hostname (`banger.hostname=`);
//! 6. start the agent (a child process), then exec the image's init
//!    (`banger.init=`, default /sbin/init, e.g. systemd). With no init in
//!    the image we stay PID 1: reap orphans, restart the agent if it dies,
//!    and on SIGTERM/SIGINT stop everything, sync and reboot — which ends
//!    the VM, since both engines exit on a guest reboot.
//!
//! Any failure before the hand-over is printed on the console and ends the
//! VM (a reboot), so the host sees it in the console log instead of a hang.

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{execv, fork, ForkResult, Pid};
use std::ffi::CString;
use std::path::Path;
use std::time::{Duration, Instant};

const AGENT: &str = "/usr/local/bin/banger-agent";
const SCRATCH: &str = "/run/banger";

/// The few facts the host passes on the kernel command line.
#[derive(Debug, Default, PartialEq, Eq)]
struct Params {
    disk: Option<String>,
    init: Option<String>,
    hostname: Option<String>,
}

fn parse_cmdline(cmdline: &str) -> Params {
    let mut p = Params::default();
    for word in cmdline.split_whitespace() {
        if let Some((k, v)) = word.split_once('=') {
            match k {
                "banger.disk" => p.disk = Some(v.into()),
                "banger.init" => p.init = Some(v.into()),
                "banger.hostname" => p.hostname = Some(v.into()),
                _ => {}
            }
        }
    }
    p
}

pub fn main() -> ! {
    let t0 = Instant::now();
    if let Err(e) = setup() {
        say(&format!("cannot set up the root filesystem: {e}"));
        die();
    }
    dev_filesystems();
    let cmdline = std::fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let params = parse_cmdline(&cmdline);
    if let Some(h) = &params.hostname {
        set_hostname(h);
    }
    let init = params.init.clone().unwrap_or_else(|| "/sbin/init".into());
    let has_init = Path::new(&init).exists() && params.init.as_deref() != Some("none");
    let mode = if has_init { "systemd" } else { "banger-init" };
    std::env::set_var("BANGER_INIT_MODE", mode);
    if has_init {
        own_tmp_cleanup();
    } else {
        init_api_filesystems();
        let _ = crate::sys::loopback_up();
    }
    // Under the image's init nobody would restart a dead agent, so it runs
    // under a small supervisor; as PID 1 we restart it ourselves.
    let agent = spawn_agent(has_init);
    say(&format!(
        "root ready in {} ms; agent started; init: {}",
        t0.elapsed().as_millis(),
        if has_init { &init } else { "banger-init" }
    ));
    if has_init {
        let prog = CString::new(init.clone()).unwrap_or_default();
        let _ = execv(&prog, std::slice::from_ref(&prog));
        say(&format!("cannot exec {init}; staying PID 1"));
    }
    stay_pid1(agent)
}

fn setup() -> Result<(), String> {
    let none: Option<&str> = None;
    let try_mount = |src: &str, dst: &str, fs: &str, flags: MsFlags, data: Option<&str>| {
        let _ = std::fs::create_dir_all(dst);
        match mount(Some(src), dst, Some(fs), flags, data) {
            Ok(()) | Err(nix::errno::Errno::EBUSY) => Ok(()),
            Err(e) => Err(format!("mount {fs} on {dst}: {e}")),
        }
    };
    let nosuid = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    try_mount("proc", "/proc", "proc", nosuid, None)?;
    try_mount("sysfs", "/sys", "sysfs", nosuid, None)?;
    try_mount("devtmpfs", "/dev", "devtmpfs", MsFlags::MS_NOSUID, Some("mode=0755"))?;
    try_mount("tmpfs", "/run", "tmpfs", MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some("mode=0755"))?;
    let cmdline = std::fs::read_to_string("/proc/cmdline").map_err(|e| format!("read /proc/cmdline: {e}"))?;
    let params = parse_cmdline(&cmdline);
    let disk = params.disk.unwrap_or_else(|| "/dev/vdb".into());
    let lower = format!("{SCRATCH}/lower");
    let upper_mnt = format!("{SCRATCH}/disk");
    let root = format!("{SCRATCH}/root");
    for d in [&lower, &upper_mnt, &root] {
        std::fs::create_dir_all(d).map_err(|e| format!("mkdir {d}: {e}"))?;
    }
    mount(Some("/"), lower.as_str(), none, MsFlags::MS_BIND, none)
        .map_err(|e| format!("bind / to {lower}: {e}"))?;
    mount(none, lower.as_str(), none, MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY, none)
        .map_err(|e| format!("remount {lower} read-only: {e}"))?;
    mount(Some(disk.as_str()), upper_mnt.as_str(), Some("ext4"), MsFlags::MS_NOATIME, none)
        .map_err(|e| format!("mount the VM disk {disk}: {e}"))?;
    for d in ["upper", "work"] {
        let p = format!("{upper_mnt}/{d}");
        std::fs::create_dir_all(&p).map_err(|e| format!("mkdir {p}: {e}"))?;
    }
    let opts = format!("lowerdir={lower},upperdir={upper_mnt}/upper,workdir={upper_mnt}/work");
    mount(Some("overlay"), root.as_str(), Some("overlay"), MsFlags::empty(), Some(opts.as_str()))
        .map_err(|e| format!("mount overlayfs: {e}"))?;
    for api in ["/dev", "/proc", "/sys"] {
        let target = format!("{root}{api}");
        let _ = std::fs::create_dir_all(&target);
        mount(Some(api), target.as_str(), none, MsFlags::MS_MOVE, none)
            .map_err(|e| format!("move {api}: {e}"))?;
    }
    std::env::set_current_dir(&root).map_err(|e| format!("chdir {root}: {e}"))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; the
    // lazy unmount then drops it. The overlay keeps its layers alive.
    nix::unistd::pivot_root(".", ".").map_err(|e| format!("pivot_root: {e}"))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| format!("detach the old root: {e}"))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))?;
    Ok(())
}

/// The agent answers while the image's init is still booting, so a command
/// from the host may run before systemd-tmpfiles does — and Debian's rule
/// `D /tmp` would then empty /tmp under it. So /tmp is emptied here, before
/// the agent starts, and that rule is replaced (once, on the VM's own disk,
/// unless the image or the user already has one) by one that only creates it.
fn own_tmp_cleanup() {
    let is_dir = std::fs::symlink_metadata("/tmp").map(|m| m.is_dir()).unwrap_or(false);
    if is_dir {
        for entry in std::fs::read_dir("/tmp").into_iter().flatten().flatten() {
            let path = entry.path();
            let _ = match entry.file_type() {
                Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
                _ => std::fs::remove_file(&path),
            };
        }
    }
    let rule = Path::new("/etc/tmpfiles.d/tmp.conf");
    if !rule.exists() && Path::new("/usr/lib/tmpfiles.d/tmp.conf").exists() {
        let _ = std::fs::create_dir_all("/etc/tmpfiles.d");
        let _ = std::fs::write(
            rule,
            "# banger: /sbin/banger-init empties /tmp at boot, before the agent starts,\n\
             # so systemd-tmpfiles must not empty it again under a running command.\n\
             d /tmp 1777 root root -\n",
        );
    }
}

/// The /dev a command expects, mounted before the agent starts, whether or
/// not the image has an init: PTYs (`vm exec -t`, `vm run`'s shell) need
/// devpts, POSIX shared memory and semaphores need /dev/shm, message queues
/// /dev/mqueue, and shells' process substitution `<(...)` the /dev/fd links.
/// systemd would make these seconds later, so the agent (ready first) would
/// otherwise run commands without them. The mounts use systemd's own flags
/// and options; systemd skips a mount point that is already mounted and a
/// link that already exists, so it takes over what it finds.
fn dev_filesystems() {
    let nosuid_noexec = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    let nosuid_nodev = MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    for (src, dst, fs, flags, data) in [
        ("devpts", "/dev/pts", "devpts", nosuid_noexec, "mode=0620,gid=5,ptmxmode=0666"),
        ("tmpfs", "/dev/shm", "tmpfs", nosuid_nodev | MsFlags::MS_STRICTATIME, "mode=1777"),
        ("mqueue", "/dev/mqueue", "mqueue", nosuid_nodev | MsFlags::MS_NOEXEC, ""),
    ] {
        let _ = std::fs::create_dir_all(dst);
        let data = (!data.is_empty()).then_some(data);
        if let Err(e) = mount(Some(src), dst, Some(fs), flags, data) {
            say(&format!("cannot mount {fs} on {dst}: {e}"));
        }
    }
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
        ("/dev/ptmx", "pts/ptmx"),
    ] {
        if std::fs::symlink_metadata(link).is_err() {
            let _ = std::os::unix::fs::symlink(target, link);
        }
    }
}

/// What systemd would mount besides /dev, for images where we stay PID 1.
fn init_api_filesystems() {
    for (dst, data) in [("/run", "mode=0755"), ("/tmp", "mode=1777")] {
        let _ = std::fs::create_dir_all(dst);
        let _ = mount(Some("tmpfs"), dst, Some("tmpfs"), MsFlags::MS_NOSUID | MsFlags::MS_NODEV, Some(data));
    }
}

/// Sets the kernel hostname and the image's idea of it (written to the VM's
/// own disk, so systemd keeps it).
fn set_hostname(name: &str) {
    let _ = nix::unistd::sethostname(name);
    let _ = std::fs::write("/etc/hostname", format!("{name}\n"));
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    if !hosts.lines().any(|l| l.split_whitespace().skip(1).any(|h| h == name)) {
        let base = if hosts.is_empty() { "127.0.0.1\tlocalhost\n".to_string() } else { hosts };
        let _ = std::fs::write("/etc/hosts", format!("{base}127.0.1.1\t{name}\n"));
    }
}

fn spawn_agent(supervised: bool) -> Option<Pid> {
    // SAFETY: we are single-threaded here (no runtime has started), so the
    // child may do anything before exec.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            let prog = CString::new(AGENT).unwrap_or_default();
            let name = CString::new("banger-agent").unwrap_or_default();
            let flag = CString::new("--supervise").unwrap_or_default();
            let argv = if supervised { vec![name, flag] } else { vec![name] };
            let _ = execv(&prog, &argv);
            say(&format!("cannot exec {AGENT}"));
            std::process::exit(127);
        }
        Ok(ForkResult::Parent { child }) => Some(child),
        Err(e) => {
            say(&format!("cannot fork the agent: {e}"));
            None
        }
    }
}

/// PID 1 duties when the image has no init of its own.
fn stay_pid1(mut agent: Option<Pid>) -> ! {
    let _ = nix::sys::reboot::set_cad_enabled(false); // Ctrl-Alt-Del → SIGINT to us
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGPWR, Signal::SIGUSR2] {
        set.add(s);
    }
    let _ = set.thread_block();
    let mut last_restart = Instant::now();
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => loop {
                match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::StillAlive) | Err(_) => break,
                    Ok(s) => {
                        if s.pid().is_some() && s.pid() == agent {
                            // Restart a crashed agent, at most once a second.
                            if last_restart.elapsed() < Duration::from_secs(1) {
                                std::thread::sleep(Duration::from_secs(1));
                            }
                            last_restart = Instant::now();
                            say("the agent exited; restarting it");
                            agent = spawn_agent(false);
                        }
                    }
                }
            },
            Ok(_) => shutdown_now(),
            Err(_) => {}
        }
    }
}

/// Stops every process, syncs and reboots (ending the VM).
fn shutdown_now() -> ! {
    say("shutting down");
    let _ = kill(Pid::from_raw(-1), Signal::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(3);
    while Instant::now() < deadline {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Err(nix::errno::Errno::ECHILD) => break,
            Ok(WaitStatus::StillAlive) => std::thread::sleep(Duration::from_millis(20)),
            _ => {}
        }
    }
    let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
    die()
}

/// Syncs and reboots; the engine exits on a guest reboot.
fn die() -> ! {
    nix::unistd::sync();
    let _ = nix::sys::reboot::reboot(nix::sys::reboot::RebootMode::RB_AUTOBOOT);
    // Only reachable without CAP_SYS_BOOT, i.e. never as PID 1.
    std::process::exit(1)
}

fn say(msg: &str) {
    eprintln!("banger-init: {msg}");
}

/// Called by the agent on a `shutdown` request: sync, then ask PID 1 for an
/// orderly reboot (systemd: reboot.target; banger-init: SIGTERM). A signal
/// that reaches systemd before it installed its handlers is lost, so it is
/// repeated each second; if the guest is still up after
/// [`SHUTDOWN_GRACE`], it syncs and reboots directly — before the host's
/// default stop timeout would kill it.
pub fn request_shutdown() {
    std::thread::spawn(|| {
        nix::unistd::sync();
        let comm = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
        let sig = if comm.trim() == "systemd" { libc::SIGRTMIN() + 5 } else { libc::SIGTERM };
        let deadline = Instant::now() + SHUTDOWN_GRACE;
        while Instant::now() < deadline {
            // SAFETY: kill(2) with a valid signal number; no memory involved.
            unsafe { libc::kill(1, sig) };
            std::thread::sleep(Duration::from_secs(1));
        }
        say("the guest did not shut down in time; syncing and rebooting");
        die();
    });
}

/// How long a requested shutdown may take before the agent forces it.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(8);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cmdline() {
        let p = parse_cmdline(
            "console=ttyS0 root=/dev/vda banger.hostname=web-1 banger.disk=/dev/vdc banger.init=none",
        );
        assert_eq!(
            p,
            Params {
                disk: Some("/dev/vdc".into()),
                init: Some("none".into()),
                hostname: Some("web-1".into())
            }
        );
        assert_eq!(parse_cmdline("quiet"), Params::default());
    }
}
