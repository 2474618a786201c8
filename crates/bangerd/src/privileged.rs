//! The privileged host operations, behind one narrow interface.
//!
//! Everything banger does that needs root — the bridge, taps, NAT rules,
//! `.vm` DNS routing, signalling an engine another uid started — is one
//! [`Request`]. A request is checked against a [`Policy`] and then carried
//! out by [`execute`]. Who carries it out depends on who the daemon is:
//!
//! - a daemon running as root executes requests in-process;
//! - a daemon running as its user sends them to the root helper
//!   (`bangerd root-helper`, see [`crate::helper`]), which checks the
//!   caller's uid with `SO_PEERCRED` and the request against its own policy
//!   (taken from `/etc/banger/install.toml`, never from the caller);
//! - with neither, host networking is unavailable and VMs boot without a
//!   network, as before.
//!
//! The policy is the same in both cases, so a request that works as root
//! works through the helper and the other way round.

use anyhow::{bail, Context};
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

/// Where the helper listens unless configured otherwise.
pub const DEFAULT_HELPER_SOCKET: &str = "/run/banger-root/helper.sock";

/// One privileged operation. The wire form is one JSON object per line
/// with an `op` field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum Request {
    /// Answers with the helper's owner and bridge; changes nothing.
    Ping,
    /// Create the bridge if missing, with the CIDR's first address, up.
    EnsureBridge { bridge: String, cidr: Ipv4Net },
    /// Delete the bridge (uninstall).
    DeleteBridge { bridge: String },
    /// Create a tap owned by the daemon's user and attach it to the bridge.
    CreateTap { bridge: String, tap: String },
    /// Delete one of banger's taps (missing is fine).
    DeleteTap { tap: String },
    /// Rebuild banger's nftables table (see `banger_net::nat::apply`).
    SyncNat {
        bridge: String,
        any_running: bool,
        nat_ips: Vec<Ipv4Addr>,
        /// Every running VM's tap with its MAC and address (anti-spoofing).
        #[serde(default)]
        guards: Vec<banger_net::nat::Guard>,
    },
    /// Route the `.vm` domain to the daemon's DNS server on the bridge
    /// link (systemd-resolved only; a no-op elsewhere).
    SyncResolver { bridge: String, dns: SocketAddrV4 },
    /// Undo [`Request::SyncResolver`].
    ClearResolver { bridge: String },
    /// Signal an engine process (firecracker, qemu or its vsock backend)
    /// that runs a VM of this installation.
    /// `start_time` (from /proc/PID/stat, as recorded at launch) must
    /// match when given: a PID reused by another process is never hit.
    SignalEngine {
        pid: i32,
        signal: EngineSignal,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_time: Option<u64>,
    },
    /// Build the golden Debian rootfs (debootstrap needs root) in the
    /// helper's own directory; the answer carries the finished ext4 file as
    /// an open descriptor (it is never written where the caller could
    /// redirect it) and the installed packages as JSON.
    BuildRootfs { size_mib: Option<u64> },
    /// Start the owner's firecracker for VM `vm_id` under the jailer (see
    /// `banger_engine::firecracker::jail`), in the helper's jail directory,
    /// as the owner's uid. The VM's files are named relative to the
    /// owner's state dir and opened beneath it (no link followed; each must
    /// be a regular file of the owner's): the daemon may sit in another
    /// mount namespace, from which a descriptor cannot be bound. The
    /// console comes as the one descriptor sent with the request. The
    /// answer's detail is "<firecracker's PID> <the jail's root>".
    StartJail { vm_id: String, vcpu: u32, memory_mib: u64, files: Vec<JailFileRef> },
    /// Remove VM `vm_id`'s jail (its mounts, files, cgroup).
    ReleaseJail { vm_id: String },
    /// Move the owner's QEMU engine processes of VM `vm_id` (each proven
    /// an engine of the owner's with its recorded start time, as for
    /// [`Request::SignalEngine`]) into cgroup `banger-qemu/<vm_id>`, capped
    /// at `vcpu` CPUs and `memory_mib`.
    ConfineEngine { vm_id: String, vcpu: u32, memory_mib: u64, pids: Vec<(i32, u64)> },
    /// Remove cgroup `banger-qemu/<vm_id>`.
    ReleaseCgroup { vm_id: String },
}

/// One of a VM's files for [`Request::StartJail`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JailFileRef {
    /// Its name in the jail.
    pub name: String,
    /// Relative to the owner's state dir.
    pub path: PathBuf,
    pub writable: bool,
}

/// What a carried-out request produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub detail: String,
    /// An open file handed to the caller (`BuildRootfs`).
    pub file: Option<std::fs::File>,
}

impl From<String> for Outcome {
    fn from(detail: String) -> Outcome {
        Outcome { detail, file: None }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EngineSignal {
    Term,
    Kill,
}

/// The answer to one request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Response {
    pub ok: bool,
    /// What was done (or skipped), when there is something to say.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub error: String,
}

/// What requests may touch. Built from the daemon's config when it runs as
/// root; read from the install file by the helper.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// The uid that owns taps and engines (and may call the helper).
    pub owner_uid: u32,
    /// The one bridge, banger-prefixed.
    pub bridge: String,
    /// Guest addresses come from here.
    pub cidr: Ipv4Net,
    /// banger's own directories: an engine must be running from a file
    /// under one of them.
    pub dirs: Vec<PathBuf>,
    /// Where the helper keeps what it must remember (the saved
    /// `ip_forward` value).
    pub state_dir: PathBuf,
    /// How the owner's firecracker is jailed (binaries found at install,
    /// the helper's jail directory, the owner's uid and gid); `None`: this
    /// install cannot jail.
    pub jail: Option<banger_engine::firecracker::jail::JailSetup>,
}

impl Policy {
    /// Checks `req` against every rule; the error names the rule broken.
    pub fn check(&self, req: &Request) -> anyhow::Result<()> {
        match req {
            Request::Ping => {}
            Request::DeleteBridge { bridge } => self.check_bridge(bridge)?,
            Request::EnsureBridge { bridge, cidr } => {
                self.check_bridge(bridge)?;
                if *cidr != self.cidr {
                    bail!("network {cidr} is not banger's configured network {}", self.cidr);
                }
            }
            Request::CreateTap { bridge, tap } => {
                self.check_bridge(bridge)?;
                banger_net::check_tap_name(tap)?;
            }
            Request::DeleteTap { tap } => banger_net::check_tap_name(tap)?,
            Request::SyncNat { bridge, nat_ips, guards, .. } => {
                self.check_bridge(bridge)?;
                for ip in nat_ips {
                    self.check_guest_ip(*ip)?;
                }
                for g in guards {
                    banger_net::check_tap_name(&g.tap)?;
                    banger_net::nat::check_mac(&g.mac)?;
                    self.check_guest_ip(g.ip)?;
                }
            }
            Request::SyncResolver { bridge, dns } => {
                self.check_bridge(bridge)?;
                if !dns.ip().is_loopback() || dns.port() == 0 {
                    bail!("DNS server {dns} is not a port on the loopback address");
                }
            }
            Request::ClearResolver { bridge } => self.check_bridge(bridge)?,
            Request::SignalEngine { pid, start_time, .. } => self.check_engine(*pid, *start_time)?,
            Request::BuildRootfs { size_mib } => {
                if let Some(m) = size_mib {
                    banger_api::validate::disk_size_mib(*m).map_err(|e| anyhow::anyhow!("{}", e.message))?;
                }
            }
            Request::StartJail { vm_id, vcpu, memory_mib, files } => {
                check_vm_id(vm_id)?;
                if self.jail.is_none() {
                    bail!("this installation has no jailer (install firecracker's jailer and run `banger system install` again)");
                }
                if !(1..=64).contains(vcpu) || !(64..=1 << 20).contains(memory_mib) {
                    bail!("{vcpu} vCPUs and {memory_mib} MiB is not a VM size banger makes");
                }
                if files.len() > 16 {
                    bail!("{} files is more than a VM has", files.len());
                }
            }
            Request::ReleaseJail { vm_id } | Request::ReleaseCgroup { vm_id } => check_vm_id(vm_id)?,
            Request::ConfineEngine { vm_id, vcpu, memory_mib, pids } => {
                check_vm_id(vm_id)?;
                if !(1..=64).contains(vcpu) || !(64..=2 << 20).contains(memory_mib) || pids.len() > 4 {
                    bail!(
                        "{vcpu} vCPUs, {memory_mib} MiB and {} processes is not a VM banger makes",
                        pids.len()
                    );
                }
                for (pid, start_time) in pids {
                    self.check_engine(*pid, Some(*start_time))?;
                }
            }
        }
        Ok(())
    }

    fn check_bridge(&self, name: &str) -> anyhow::Result<()> {
        banger_net::check_bridge_name(name)?;
        if name != self.bridge {
            bail!("bridge {name:?} is not banger's configured bridge {:?}", self.bridge);
        }
        Ok(())
    }

    fn check_guest_ip(&self, ip: Ipv4Addr) -> anyhow::Result<()> {
        if !self.cidr.contains(&ip) || ip == self.cidr.network() || ip == self.cidr.broadcast() {
            bail!("address {ip} is not a guest address in banger's network {}", self.cidr);
        }
        if Some(ip) == banger_net::gateway(&self.cidr) {
            bail!("address {ip} is the bridge's own address, not a guest's");
        }
        Ok(())
    }

    /// The process must be an engine binary, run by the owner (or root),
    /// with one of its arguments under banger's own directories.
    fn check_engine(&self, pid: i32, start_time: Option<u64>) -> anyhow::Result<()> {
        if pid <= 1 {
            bail!("pid {pid} is not an engine process");
        }
        if let Some(want) = start_time {
            let have = banger_engine::process::start_time(pid as u32);
            if want == 0 || have != Some(want) {
                bail!("pid {pid} is not the process that was started (start time {have:?}, recorded {want})");
            }
        }
        let uid = engine_process(pid, &self.dirs)?;
        if uid != self.owner_uid && uid != 0 {
            bail!("pid {pid} belongs to uid {uid}, not banger's owner (uid {})", self.owner_uid);
        }
        Ok(())
    }
}

/// Checks that `pid` runs an engine binary (firecracker, qemu or
/// vhost-device-vsock) with one of its arguments naming a file under
/// `dirs`; returns its uid, which the caller judges.
pub(crate) fn engine_process(pid: i32, dirs: &[PathBuf]) -> anyhow::Result<u32> {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let exe = std::fs::read_link(proc.join("exe")).with_context(|| format!("no process {pid}"))?;
    let name = exe.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let name = name.strip_suffix(" (deleted)").unwrap_or(name);
    if !matches!(name, "firecracker" | "qemu-system-x86_64" | "vhost-device-vsock") {
        bail!("pid {pid} runs {}, not firecracker, qemu or vhost-device-vsock", exe.display());
    }
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata(&proc).with_context(|| format!("no process {pid}"))?.uid();
    let cmdline = std::fs::read(proc.join("cmdline")).with_context(|| format!("no process {pid}"))?;
    let ours = cmdline
        .split(|b| *b == 0)
        .skip(1) // the program itself: its arguments must name banger's files
        .filter_map(|a| std::str::from_utf8(a).ok())
        .flat_map(|a| a.split([',', '=']))
        .any(|a| a.starts_with('/') && dirs.iter().any(|d| under(Path::new(a), d)));
    if !ours {
        bail!("pid {pid} does not run a VM from banger's directories");
    }
    Ok(uid)
}

/// Whether `path` lies under `dir`, with no `..` to climb out.
fn under(path: &Path, dir: &Path) -> bool {
    !path.components().any(|c| matches!(c, std::path::Component::ParentDir)) && path.starts_with(dir)
}

/// banger's VM ids: 12 lowercase hex digits.
pub(crate) fn check_vm_id(id: &str) -> anyhow::Result<()> {
    if id.len() != 12 || !id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        bail!("{id:?} is not a banger VM id (12 hex digits)");
    }
    Ok(())
}

/// A process held by a pidfd: a signal sent through it reaches that
/// process or none, even if its PID is reused after it was checked.
pub(crate) struct PidFd(std::os::fd::OwnedFd);

impl PidFd {
    pub(crate) fn open(pid: i32) -> anyhow::Result<PidFd> {
        use std::os::fd::FromRawFd;
        // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if fd < 0 {
            return Err(std::io::Error::last_os_error()).with_context(|| format!("no process {pid}"));
        }
        // SAFETY: a fresh descriptor nobody else owns.
        Ok(PidFd(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd as i32) }))
    }

    pub(crate) fn signal(&self, sig: nix::sys::signal::Signal) -> std::io::Result<()> {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid pidfd, a signal number, no siginfo, no flags.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_pidfd_send_signal,
                self.0.as_raw_fd(),
                sig as i32,
                std::ptr::null::<u8>(),
                0,
            )
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Carries out a checked request. Blocking.
pub fn execute(policy: &Policy, req: &Request) -> anyhow::Result<Outcome> {
    execute_with_files(policy, req, Vec::new())
}

/// Like [`execute`], with the descriptors that came with the request
/// (`StartJail`'s files).
pub fn execute_with_files(
    policy: &Policy,
    req: &Request,
    fds: Vec<std::os::fd::OwnedFd>,
) -> anyhow::Result<Outcome> {
    // A signal's target is pinned (pidfd) before it is checked, and the
    // signal goes through the pin: checking a PID and then killing the
    // number could hit a process that took the number in between.
    let target = match req {
        Request::SignalEngine { pid, .. } if *pid > 1 => Some(PidFd::open(*pid)?),
        _ => None,
    };
    policy.check(req)?;
    let bridge = |name: &str| banger_net::Bridge {
        name: name.to_string(),
        net: policy.cidr,
        gateway: banger_net::gateway(&policy.cidr).unwrap_or(policy.cidr.network()),
    };
    fn done<E: Into<anyhow::Error>>(r: Result<(), E>) -> anyhow::Result<Outcome> {
        r.map(|_| Outcome::default()).map_err(Into::into)
    }
    match req {
        Request::Ping => {
            Ok(format!("owner uid {}, bridge {}, network {}", policy.owner_uid, policy.bridge, policy.cidr)
                .into())
        }
        Request::DeleteBridge { bridge } => done(banger_net::delete_bridge(bridge)),
        Request::EnsureBridge { bridge: b, .. } => done(bridge(b).ensure()),
        Request::CreateTap { bridge: b, tap } => done(bridge(b).add_tap(tap, policy.owner_uid)),
        Request::DeleteTap { tap } => done(banger_net::delete_tap(tap)),
        Request::SyncNat { bridge, any_running, nat_ips, guards } => {
            let saved = policy.state_dir.join("ip_forward.saved");
            if nat_ips.is_empty() && !banger_net::nat::available() {
                // Nothing asked of nft, and no table it could have made.
                return Ok(String::from("nft is not installed; no NAT rules or address guards").into());
            }
            done(banger_net::nat::apply(bridge, *any_running, nat_ips, guards, &saved))
        }
        Request::SyncResolver { bridge, dns } => {
            Ok(banger_net::resolver::Resolved::system().sync(bridge, *dns).map(Outcome::from)?)
        }
        Request::ClearResolver { bridge } => {
            Ok(banger_net::resolver::Resolved::system().clear(bridge).map(Outcome::from)?)
        }
        Request::SignalEngine { pid, signal, .. } => {
            let sig = match signal {
                EngineSignal::Term => nix::sys::signal::Signal::SIGTERM,
                EngineSignal::Kill => nix::sys::signal::Signal::SIGKILL,
            };
            let target = target.with_context(|| format!("pid {pid} is not an engine process"))?;
            target.signal(sig).with_context(|| format!("Cannot signal pid {pid}"))?;
            Ok(Outcome::default())
        }
        Request::BuildRootfs { size_mib } => build_rootfs(policy, *size_mib),
        Request::StartJail { vm_id, vcpu, memory_mib, files } => {
            use banger_engine::firecracker::jail;
            let setup = policy.jail.as_ref().context("this installation has no jailer")?;
            if fds.len() != 1 {
                bail!("{} descriptors came with the request; it takes one, the console", fds.len());
            }
            let console = fds.into_iter().next().map(std::fs::File::from).context("no console descriptor")?;
            // The install writes the owner's state dir first.
            let state = policy.dirs.first().context("the install names no state dir")?;
            let state_fd = nix::fcntl::open(
                state,
                nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_NOFOLLOW | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .with_context(|| format!("Cannot open the owner's state dir {}", state.display()))?;
            let mut opened = Vec::new();
            for f in files {
                let flags = if f.writable { nix::fcntl::OFlag::O_RDWR } else { nix::fcntl::OFlag::O_RDONLY };
                let fd = banger_agent_proto::beneath::open_beneath(&state_fd, &f.path, flags).with_context(
                    || {
                        format!(
                            "Cannot open {} beneath {} (no links followed)",
                            f.path.display(),
                            state.display()
                        )
                    },
                )?;
                // Whose it is, jail::start checks (the owner's uid).
                opened.push(jail::JailFile {
                    name: f.name.clone(),
                    file: std::fs::File::from(fd),
                    path: state.join(&f.path),
                    writable: f.writable,
                });
            }
            let files = opened;
            let spec =
                jail::JailSpec { vm_id: vm_id.clone(), vcpu: *vcpu, memory_mib: *memory_mib, files, console };
            let started = jail::start(setup, spec)?;
            Ok(format!("{} {}", started.pid, started.root.display()).into())
        }
        Request::ConfineEngine { vm_id, vcpu, memory_mib, pids } => {
            let pids: Vec<u32> = pids.iter().map(|(p, _)| *p as u32).collect();
            banger_engine::cgroup::place(
                banger_engine::qemu::QEMU_CGROUP,
                vm_id,
                &pids,
                *vcpu,
                memory_mib << 20,
            )
            .map_err(anyhow::Error::msg)
            .map(|_| Outcome::default())
        }
        Request::ReleaseCgroup { vm_id } => {
            banger_engine::cgroup::remove(banger_engine::qemu::QEMU_CGROUP, vm_id)
                .map_err(anyhow::Error::msg)
                .map(|_| Outcome::default())
        }
        Request::ReleaseJail { vm_id } => {
            let setup = policy.jail.as_ref().context("this installation has no jailer")?;
            done(banger_engine::firecracker::jail::release(&setup.base, vm_id).map_err(anyhow::Error::from))
        }
    }
}

/// Builds the golden rootfs under the helper's state dir and hands it over
/// as an open, already unlinked file.
fn build_rootfs(policy: &Policy, size_mib: Option<u64>) -> anyhow::Result<Outcome> {
    let work = policy.state_dir.join(format!("build-{}", crate::util::new_id()));
    std::fs::create_dir_all(&work).with_context(|| format!("Cannot create {}", work.display()))?;
    let out = work.join("rootfs.ext4");
    let log = policy.state_dir.join("image-build.log");
    let built = banger_image::golden::build_rootfs(
        &work,
        &policy.state_dir.join("debs"),
        &log,
        size_mib,
        &out,
        |_, m| tracing::info!("image build: {m}"),
    )
    .and_then(|packages| {
        let file = std::fs::File::open(&out)?;
        // The caller (the owner's daemon) reads it through /proc/self/fd,
        // which checks the file's mode: readable, whatever the helper's
        // private umask made it. It lives in the helper's 0700 dir only
        // until this answer is sent.
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
        Ok((packages, file))
    });
    let _ = std::fs::remove_dir_all(&work);
    match built {
        Ok((packages, file)) => Ok(Outcome { detail: serde_json::to_string(&packages)?, file: Some(file) }),
        Err(e) => {
            // The caller cannot read the helper's log: pass its end along.
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            let tail: Vec<&str> = tail.into_iter().rev().collect();
            Err(e.context(format!(
                "the root helper's image build failed; end of {}:\n{}",
                log.display(),
                tail.join("\n")
            )))
        }
    }
}

/// Removes every network leftover of an installation under `policy`: DNS
/// routing, banger's taps, the NAT table (restoring `ip_forward`), the
/// bridge. Runs as root, in-process; every step runs and the errors are
/// returned together.
pub fn purge_network(policy: &Policy) -> Vec<String> {
    let bridge = policy.bridge.clone();
    let mut reqs = vec![Request::ClearResolver { bridge: bridge.clone() }];
    for tap in banger_net::list_taps().into_iter().chain(banger_net::list_pool_taps()) {
        reqs.push(Request::DeleteTap { tap });
    }
    reqs.push(Request::SyncNat {
        bridge: bridge.clone(),
        any_running: false,
        nat_ips: vec![],
        guards: vec![],
    });
    reqs.push(Request::DeleteBridge { bridge });
    reqs.iter().filter_map(|r| execute(policy, r).err().map(|e| format!("{e:#}"))).collect()
}

/// How this daemon gets privileged work done.
#[derive(Debug, Clone)]
pub enum PrivOps {
    /// The daemon is root: requests run in-process under `policy`.
    InProcess(Policy),
    /// Requests go to the root helper listening on this socket.
    Helper(PathBuf),
}

impl PrivOps {
    /// Root runs in-process; a user daemon uses the helper at `socket`.
    pub fn new(policy: Policy, socket: PathBuf) -> PrivOps {
        if nix::unistd::geteuid().is_root() {
            PrivOps::InProcess(policy)
        } else {
            PrivOps::Helper(socket)
        }
    }

    /// Whether privileged work can be done at all now (the helper's socket
    /// is looked at each time: it may be installed after the daemon started).
    pub fn available(&self) -> bool {
        match self {
            PrivOps::InProcess(_) => true,
            PrivOps::Helper(s) => s.exists(),
        }
    }

    /// Why not, for errors and `doctor`.
    pub fn unavailable_hint(&self) -> String {
        match self {
            PrivOps::InProcess(_) => String::new(),
            PrivOps::Helper(s) => format!(
                "the daemon runs as uid {} and no root helper listens on {}: install it with \
                 `sudo banger system install --owner $USER`, or run the daemon as root",
                nix::unistd::getuid(),
                s.display()
            ),
        }
    }

    /// Carries out `req`; returns what it has to say. Blocking: call from a
    /// blocking task.
    pub fn call(&self, req: &Request) -> anyhow::Result<String> {
        self.call_full(req).map(|o| o.detail)
    }

    /// Like [`PrivOps::call`], with the file a request may hand over.
    pub fn call_full(&self, req: &Request) -> anyhow::Result<Outcome> {
        match self {
            PrivOps::InProcess(policy) => execute(policy, req),
            PrivOps::Helper(socket) => crate::helper::call(socket, req),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> Policy {
        Policy {
            owner_uid: 4242,
            bridge: "banger0".into(),
            cidr: "172.30.213.0/24".parse().unwrap(),
            dirs: vec!["/home/u/.local/state/banger".into(), "/run/banger".into()],
            state_dir: "/var/lib/banger-root".into(),
            jail: None,
        }
    }

    fn refused(req: Request, why: &str) {
        let e = policy().check(&req).expect_err(&format!("{req:?} must be refused"));
        assert!(format!("{e:#}").contains(why), "{req:?}: {e:#}");
    }

    #[test]
    fn interface_names_must_be_bangers() {
        let p = policy();
        p.check(&Request::EnsureBridge { bridge: "banger0".into(), cidr: p.cidr }).unwrap();
        p.check(&Request::CreateTap { bridge: "banger0".into(), tap: "bg0123456789ab".into() }).unwrap();
        p.check(&Request::CreateTap { bridge: "banger0".into(), tap: "bgpool3".into() }).unwrap();
        refused(Request::EnsureBridge { bridge: "eth0".into(), cidr: p.cidr }, "not banger's");
        refused(Request::EnsureBridge { bridge: "banger9".into(), cidr: p.cidr }, "configured bridge");
        refused(Request::DeleteTap { tap: "eth0".into() }, "not a banger tap");
        refused(Request::DeleteTap { tap: "bgXYZ".into() }, "not a banger tap");
        refused(Request::DeleteTap { tap: "bg0123456789AB".into() }, "not a banger tap");
        refused(Request::DeleteTap { tap: "bgpool".into() }, "not a banger tap");
        refused(Request::DeleteTap { tap: "bg01234567;rm".into() }, "may only contain letters");
        refused(Request::ClearResolver { bridge: "docker0".into() }, "not banger's");
    }

    #[test]
    fn addresses_must_be_inside_the_network() {
        let p = policy();
        let nat = |ip: &str| Request::SyncNat {
            bridge: "banger0".into(),
            any_running: true,
            nat_ips: vec![ip.parse().unwrap()],
            guards: vec![],
        };
        p.check(&nat("172.30.213.7")).unwrap();
        // Address guards: banger's taps, real MACs, guest addresses only.
        let guard = |tap: &str, mac: &str, ip: &str| Request::SyncNat {
            bridge: "banger0".into(),
            any_running: true,
            nat_ips: vec![],
            guards: vec![banger_net::nat::Guard {
                tap: tap.into(),
                mac: mac.into(),
                ip: ip.parse().unwrap(),
            }],
        };
        p.check(&guard("bg0123456789ab", "06:01:23:45:67:89", "172.30.213.7")).unwrap();
        refused(guard("eth0", "06:01:23:45:67:89", "172.30.213.7"), "not a banger tap");
        refused(guard("bg0123456789ab", "06:01:23:45:67:89 drop", "172.30.213.7"), "not a MAC");
        refused(guard("bg0123456789ab", "06:01:23:45:67:89", "10.0.0.7"), "not a guest address");
        refused(nat("10.0.0.7"), "not a guest address");
        refused(nat("172.30.213.255"), "not a guest address");
        refused(nat("172.30.213.1"), "bridge's own address");
        refused(
            Request::EnsureBridge { bridge: "banger0".into(), cidr: "10.0.0.0/24".parse().unwrap() },
            "not banger's configured network",
        );
        let dns = |a: &str| Request::SyncResolver { bridge: "banger0".into(), dns: a.parse().unwrap() };
        p.check(&dns("127.0.0.1:53535")).unwrap();
        refused(dns("8.8.8.8:53"), "loopback");
        refused(dns("127.0.0.1:0"), "loopback");
    }

    #[test]
    fn pids_must_be_engines_of_this_installation() {
        let sig = |pid| Request::SignalEngine { pid, signal: EngineSignal::Term, start_time: None };
        refused(sig(1), "not an engine");
        refused(sig(0), "not an engine");
        refused(sig(-5), "not an engine");
        // This test process is not an engine.
        refused(sig(std::process::id() as i32), "not firecracker");
        refused(sig(i32::MAX), "no process");
    }

    #[test]
    fn paths_must_be_under_bangers_dirs() {
        let d = Path::new("/run/banger");
        assert!(under(Path::new("/run/banger/vms/x/fc.sock"), d));
        assert!(!under(Path::new("/run/banger/../shadow"), d));
        assert!(!under(Path::new("/run/bangerX/vm"), d));
        assert!(!under(Path::new("/etc/passwd"), d));
    }

    #[test]
    fn unknown_fields_and_ops_are_refused_on_the_wire() {
        let ok: Request = serde_json::from_str(r#"{"op":"delete_tap","tap":"bgpool0"}"#).unwrap();
        assert_eq!(ok, Request::DeleteTap { tap: "bgpool0".into() });
        assert!(serde_json::from_str::<Request>(r#"{"op":"delete_tap","tap":"bgpool0","x":1}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"run_shell","cmd":"id"}"#).is_err());
        assert!(serde_json::from_str::<Request>(r#"{"op":"signal_engine","pid":5,"signal":"HUP"}"#).is_err());
    }
}
