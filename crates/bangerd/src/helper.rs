//! The root helper (`bangerd root-helper`): the only banger process that
//! runs as root when banger is installed with `banger system install`.
//!
//! It listens on a Unix socket (0600, owned by banger's owner, in a
//! root-owned 0711 directory) and serves one JSON request per connection,
//! one line each way. A caller whose `SO_PEERCRED` uid is neither root nor
//! the owner named in the install file is refused before anything is read;
//! every request is then checked against the policy from the install file
//! (see [`crate::privileged`]) and carried out one at a time.

use crate::privileged::{execute_with_files, Outcome, Policy, Request, Response};
use anyhow::{bail, Context};
use banger_engine::firecracker::jail::JailSetup;
use ipnet::Ipv4Net;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use banger_paths::INSTALL_FILE;

/// A request line longer than this is refused.
const MAX_REQUEST: u64 = 64 * 1024;
/// Descriptors one message may carry (a VM's files and its console).
const MAX_FDS: usize = 20;

/// `/etc/banger/install.toml`: who banger was installed for, and the
/// helper's policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstallFile {
    pub owner: String,
    pub uid: u32,
    pub gid: u32,
    pub home: PathBuf,
    pub version: String,
    /// RFC 3339.
    pub installed_at: String,
    /// Where the binaries went (`<prefix>/bin`, `<prefix>/lib/banger`).
    pub prefix: PathBuf,
    pub helper: HelperSection,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HelperSection {
    pub socket: PathBuf,
    pub state_dir: PathBuf,
    pub bridge: String,
    pub cidr: Ipv4Net,
    /// The owner's banger directories (state, runtime).
    pub dirs: Vec<PathBuf>,
    /// Firecracker's jailer and firecracker, found (root-owned) at install,
    /// and the root-only directory jails are made in; all three or no
    /// jailing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jailer: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub firecracker: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jail_base: Option<PathBuf>,
}

impl InstallFile {
    /// A whole install file, for tests.
    #[cfg(test)]
    pub(crate) fn example() -> InstallFile {
        InstallFile {
            owner: "alice".into(),
            uid: 1000,
            gid: 1000,
            home: "/home/alice".into(),
            version: "0.1.0".into(),
            installed_at: "2026-11-26T00:00:00Z".into(),
            prefix: "/usr/local".into(),
            helper: HelperSection {
                socket: "/run/banger-root/helper.sock".into(),
                state_dir: "/var/lib/banger-root".into(),
                bridge: "banger0".into(),
                cidr: "172.30.213.0/24".parse().unwrap(),
                dirs: vec!["/home/alice/.local/state/banger".into()],
                jailer: Some("/usr/local/bin/jailer".into()),
                firecracker: Some("/usr/local/bin/firecracker".into()),
                jail_base: Some("/run/banger-root/jail".into()),
            },
        }
    }

    pub fn load(path: &Path) -> anyhow::Result<InstallFile> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("Cannot read {}", path.display()))?;
        toml::from_str(&text).with_context(|| format!("Invalid install file {}", path.display()))
    }

    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("an install file serialises")
    }

    pub fn policy(&self) -> Policy {
        Policy {
            owner_uid: self.uid,
            bridge: self.helper.bridge.clone(),
            cidr: self.helper.cidr,
            dirs: self.helper.dirs.clone(),
            state_dir: self.helper.state_dir.clone(),
            jail: match (&self.helper.jailer, &self.helper.firecracker, &self.helper.jail_base) {
                (Some(jailer), Some(firecracker), Some(base)) => Some(JailSetup {
                    jailer: jailer.clone(),
                    firecracker: firecracker.clone(),
                    base: base.clone(),
                    uid: self.uid,
                    gid: self.gid,
                }),
                _ => None,
            },
        }
    }
}

/// Sends one request to the helper and waits for its answer (and the file
/// it hands over, if any). Blocking.
pub fn call(socket: &Path, req: &Request) -> anyhow::Result<Outcome> {
    call_with_files(socket, req, &[])
}

/// Like [`call`], sending `files` with the request (`SCM_RIGHTS`).
pub fn call_with_files(socket: &Path, req: &Request, files: &[&std::fs::File]) -> anyhow::Result<Outcome> {
    let hint =
        || format!("is the root helper running? (`banger system status`; socket {})", socket.display());
    let s = UnixStream::connect(socket)
        .with_context(|| format!("Cannot reach banger's root helper at {}", socket.display()))
        .with_context(hint)?;
    // An image build runs debootstrap: minutes, not seconds.
    let wait = if matches!(req, Request::BuildRootfs { .. }) { 45 * 60 } else { 120 };
    s.set_read_timeout(Some(Duration::from_secs(wait)))?;
    s.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut line = serde_json::to_vec(req)?;
    line.push(b'\n');
    let fds: Vec<RawFd> = files.iter().map(|f| f.as_raw_fd()).collect();
    if let Err(e) = send_with_fds(&s, &line, &fds) {
        // A helper that refuses a caller (SO_PEERCRED) answers and closes
        // at once, possibly before reading the request: its refusal then
        // waits in our receive buffer while our send fails.
        let closed = matches!(e.kind(), std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset);
        if closed {
            if let Ok((answer, _)) = read_answer(&s) {
                let r: Option<Response> = serde_json::from_slice(answer.trim_ascii()).ok();
                if let Some(r) = r.filter(|r| !r.ok) {
                    bail!("the root helper refused or failed: {}", r.error);
                }
            }
        }
        return Err(e).context("Cannot send to the root helper");
    }
    let (answer, fd) = read_answer(&s).context("No answer from the root helper")?;
    let r: Response = serde_json::from_slice(answer.trim_ascii()).with_context(|| {
        format!("The root helper answered nonsense: {:?}", String::from_utf8_lossy(&answer))
    })?;
    if !r.ok {
        bail!("the root helper refused or failed: {}", r.error);
    }
    Ok(Outcome { detail: r.detail, file: fd.map(std::fs::File::from) })
}

/// Reads one answer line, keeping a descriptor passed along with it
/// (`SCM_RIGHTS`).
fn read_answer(s: &UnixStream) -> anyhow::Result<(Vec<u8>, Option<OwnedFd>)> {
    read_line_with_fds(s).map(|(line, fds)| (line, fds.into_iter().next()))
}

/// Reads one line (at most [`MAX_REQUEST`] bytes), keeping the
/// descriptors passed along with it (`SCM_RIGHTS`, at most [`MAX_FDS`]).
fn read_line_with_fds(s: &UnixStream) -> anyhow::Result<(Vec<u8>, Vec<OwnedFd>)> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut buf = Vec::new();
    let mut fd: Vec<OwnedFd> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let mut cmsg = nix::cmsg_space!([RawFd; MAX_FDS]);
        let mut iov = [std::io::IoSliceMut::new(&mut chunk)];
        let msg = match recvmsg::<()>(s.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            Err(nix::errno::Errno::EINTR) => continue, // a signal; nothing was read
            r => r?,
        };
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                for f in fds {
                    // SAFETY: the kernel just installed this descriptor for us; nothing else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(f) };
                    if fd.len() < MAX_FDS {
                        fd.push(owned);
                    }
                }
            }
        }
        let n = msg.bytes;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.contains(&b'\n') || buf.len() as u64 > MAX_REQUEST {
            break;
        }
    }
    Ok((buf, fd))
}

/// Whether `uid` may use a helper owned by `owner_uid`.
pub fn authorized(uid: u32, owner_uid: u32) -> bool {
    uid == 0 || uid == owner_uid
}

/// Binds the helper's socket: parent dir root-owned 0711, socket owned by
/// the owner, 0600. A stale socket is replaced atomically.
pub fn bind(socket: &Path, owner_uid: u32, owner_gid: u32) -> anyhow::Result<UnixListener> {
    let dir = socket.parent().context("the helper socket needs a directory")?;
    std::fs::create_dir_all(dir).with_context(|| format!("Cannot create {}", dir.display()))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))?;
    // Bound under a temporary name, given its owner and mode, then renamed
    // into place: nobody ever sees the socket with the wrong owner or mode.
    let tmp = socket.with_extension("new");
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp).with_context(|| format!("Cannot listen on {}", tmp.display()))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600))?;
    nix::unistd::chown(&tmp, Some(owner_uid.into()), Some(owner_gid.into()))
        .with_context(|| format!("Cannot give {} to uid {owner_uid}", tmp.display()))?;
    std::fs::rename(&tmp, socket)
        .with_context(|| format!("Cannot move the socket to {}", socket.display()))?;
    Ok(listener)
}

/// Serves requests until the process is stopped. One thread per
/// connection; the operations themselves run one at a time.
pub fn serve(listener: UnixListener, policy: Policy) -> anyhow::Result<()> {
    let policy = Arc::new(policy);
    let locks = Arc::new(Locks::default());
    for conn in listener.incoming() {
        let conn = match conn {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let (policy, locks) = (policy.clone(), locks.clone());
        std::thread::spawn(move || handle(conn, &policy, &locks));
    }
    Ok(())
}

/// Network operations run one at a time, and so do image builds; a build
/// (minutes) never holds up a VM start.
#[derive(Default)]
struct Locks {
    network: Mutex<()>,
    build: Mutex<()>,
}

fn handle(mut conn: UnixStream, policy: &Policy, locks: &Locks) {
    let answer = |conn: &mut UnixStream, r: Response| {
        let mut line = serde_json::to_vec(&r).unwrap_or_default();
        line.push(b'\n');
        let _ = conn.write_all(&line);
    };
    let peer = nix::sys::socket::getsockopt(&conn, nix::sys::socket::sockopt::PeerCredentials);
    let uid = match peer {
        Ok(c) => c.uid(),
        Err(e) => {
            tracing::warn!("cannot read the caller's credentials: {e}");
            return;
        }
    };
    if !authorized(uid, policy.owner_uid) {
        tracing::warn!(uid, "refused a caller that is neither root nor banger's owner");
        let error = format!("refused: uid {uid} is not banger's owner (uid {})", policy.owner_uid);
        answer(&mut conn, Response { ok: false, detail: String::new(), error });
        return;
    }
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let read = read_line_with_fds(&conn);
    let mut fds = Vec::new();
    let req: Request = match read.and_then(|(line, f)| {
        fds = f;
        let end = line.iter().position(|b| *b == b'\n').context("no complete request line")?;
        serde_json::from_slice(&line[..end]).context("not a valid request (one JSON object per line)")
    }) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(uid, "bad request: {e:#}");
            answer(&mut conn, Response { ok: false, detail: String::new(), error: format!("{e:#}") });
            return;
        }
    };
    let result = {
        let lock = if matches!(req, Request::BuildRootfs { .. }) { &locks.build } else { &locks.network };
        let _one = lock.lock().unwrap_or_else(|e| e.into_inner());
        execute_with_files(policy, &req, fds)
    };
    match result {
        Ok(Outcome { detail, file: Some(file) }) => {
            tracing::info!(uid, ?req, "helper request done; handing over a file");
            let mut line =
                serde_json::to_vec(&Response { ok: true, detail, error: String::new() }).unwrap_or_default();
            line.push(b'\n');
            if let Err(e) = send_with_fds(&conn, &line, &[file.as_raw_fd()]) {
                tracing::warn!(uid, "cannot hand the file over: {e}");
            }
        }
        Ok(Outcome { detail, file: None }) => {
            tracing::info!(uid, ?req, "helper request done");
            answer(&mut conn, Response { ok: true, detail, error: String::new() });
        }
        Err(e) => {
            tracing::warn!(uid, ?req, "helper request failed: {e:#}");
            answer(&mut conn, Response { ok: false, detail: String::new(), error: format!("{e:#}") });
        }
    }
}

/// Writes `line` with `fds` attached (`SCM_RIGHTS`), then any rest.
fn send_with_fds(conn: &UnixStream, line: &[u8], fds: &[RawFd]) -> std::io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let rights = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage] = if fds.is_empty() { &[] } else { &rights };
    let sent = loop {
        match sendmsg::<()>(conn.as_raw_fd(), &[std::io::IoSlice::new(line)], cmsgs, MsgFlags::empty(), None)
        {
            Err(nix::errno::Errno::EINTR) => continue,
            r => break r?,
        }
    };
    (&*conn).write_all(&line[sent..])?;
    Ok(())
}

/// `bangerd root-helper [--install-file PATH] [--socket PATH]`.
pub fn main(args: &[String]) -> anyhow::Result<()> {
    let mut install = PathBuf::from(INSTALL_FILE);
    let mut socket: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| it.next().cloned().with_context(|| format!("{flag} needs a value"));
        match a.as_str() {
            "--install-file" => install = value(a)?.into(),
            "--socket" => socket = Some(value(a)?.into()),
            other => bail!("unexpected argument {other:?} (usage: bangerd root-helper [--install-file PATH] [--socket PATH])"),
        }
    }
    if !nix::unistd::geteuid().is_root() {
        bail!("the root helper must run as root (it is started by bangerd-root.service)");
    }
    let file = InstallFile::load(&install)
        .context("the helper reads its policy from the install file that `banger system install` writes")?;
    let socket = socket.unwrap_or_else(|| file.helper.socket.clone());
    std::fs::create_dir_all(&file.helper.state_dir)
        .with_context(|| format!("Cannot create {}", file.helper.state_dir.display()))?;
    let listener = bind(&socket, file.uid, file.gid)?;
    tracing::info!(owner = %file.owner, uid = file.uid, socket = %socket.display(), "root helper listening");
    serve(listener, file.policy())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::privileged::EngineSignal;
    use crate::privileged::JailFileRef;

    #[test]
    fn only_root_and_the_owner_are_authorized() {
        assert!(authorized(0, 1000));
        assert!(authorized(1000, 1000));
        assert!(!authorized(1001, 1000));
        assert!(!authorized(65534, 1000));
    }

    #[test]
    fn install_file_round_trips_and_refuses_unknown_keys() {
        let f = InstallFile::example();
        let text = toml::to_string(&f).unwrap();
        assert_eq!(toml::from_str::<InstallFile>(&text).unwrap(), f);
        assert!(toml::from_str::<InstallFile>(&format!("{text}\nextra = 1\n")).is_err());
    }

    /// The owner is served; requests out of policy (one per rule) and
    /// garbage get an error answer. (A foreign uid is refused in the e2e tests, which can
    /// switch users.)
    #[test]
    fn serves_the_owner_and_checks_requests() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("h.sock");
        let me = nix::unistd::getuid().as_raw();
        let gid = nix::unistd::getgid().as_raw();
        let p = Policy {
            owner_uid: me,
            bridge: "banger0".into(),
            cidr: "172.30.213.0/24".parse().unwrap(),
            dirs: vec![dir.path().to_path_buf()],
            state_dir: dir.path().to_path_buf(),
            jail: None,
        };
        let listener = bind(&sock, me, gid).unwrap();
        std::thread::spawn(move || serve(listener, p));
        let refused = |req: Request, why: &str| {
            let e = call(&sock, &req).expect_err(&format!("{req:?} must be refused"));
            assert!(format!("{e:#}").contains(why), "{req:?}: {e:#}");
        };
        assert!(call(&sock, &Request::Ping).unwrap().detail.contains("bridge banger0"));
        // One request per rule, through the socket.
        refused(Request::DeleteTap { tap: "eth0".into() }, "not a banger tap");
        refused(
            Request::EnsureBridge { bridge: "docker0".into(), cidr: "172.30.213.0/24".parse().unwrap() },
            "not banger's",
        );
        let outside = vec!["10.0.0.7".parse().unwrap()];
        refused(
            Request::SyncNat {
                bridge: "banger0".into(),
                any_running: true,
                nat_ips: outside,
                guards: vec![],
            },
            "not a guest address",
        );
        refused(
            Request::SyncResolver { bridge: "banger0".into(), dns: "8.8.8.8:53".parse().unwrap() },
            "loopback",
        );
        let jail =
            |vm_id: &str| Request::StartJail { vm_id: vm_id.into(), vcpu: 1, memory_mib: 512, files: vec![] };
        refused(jail("../../etc"), "not a banger VM id");
        refused(jail("0123456789ab"), "no jailer");
        refused(Request::ReleaseJail { vm_id: "x/y".into() }, "not a banger VM id");
        let me_pid = std::process::id() as i32;
        let st = banger_engine::process::start_time(me_pid as u32).unwrap();
        refused(
            Request::ConfineEngine {
                vm_id: "0123456789ab".into(),
                vcpu: 1,
                memory_mib: 512,
                pids: vec![(me_pid, st)],
            },
            "not firecracker",
        );
        refused(
            Request::SignalEngine {
                pid: std::process::id() as i32,
                signal: EngineSignal::Kill,
                start_time: None,
            },
            "not firecracker",
        );
        // An "engine" (a shell named firecracker) running from outside
        // banger's dirs is refused; one whose command line names a file
        // under them is signalled.
        let fake = dir.path().join("firecracker");
        std::fs::copy("/bin/sh", &fake).unwrap();
        let spawn = |arg: &Path| {
            // `read` is a builtin: the shell itself waits, no child to leak.
            std::process::Command::new(&fake)
                .args(["-c", "read x; true"])
                .arg(arg)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        };
        let mut foreign = spawn(Path::new("/etc/passwd"));
        let mut ours = spawn(&dir.path().join("vms/x/fc.sock"));
        std::thread::sleep(Duration::from_millis(100));
        refused(
            Request::SignalEngine { pid: foreign.id() as i32, signal: EngineSignal::Kill, start_time: None },
            "banger's directories",
        );
        // Ours, but with a start time that is not its own (a reused PID,
        // or a forged handles.json): refused.
        let st = banger_engine::process::start_time(ours.id()).unwrap();
        for wrong in [0, st + 1] {
            refused(
                Request::SignalEngine {
                    pid: ours.id() as i32,
                    signal: EngineSignal::Kill,
                    start_time: Some(wrong),
                },
                "not the process that was started",
            );
        }
        let kill_ours =
            Request::SignalEngine { pid: ours.id() as i32, signal: EngineSignal::Kill, start_time: Some(st) };
        call(&sock, &kill_ours).unwrap();
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(ours.wait().unwrap().signal(), Some(9));
        foreign.kill().unwrap();
        foreign.wait().unwrap();
        // Garbage is answered with an error, not a crash.
        let mut s = UnixStream::connect(&sock).unwrap();
        s.write_all(b"{\"op\":\"nope\"}\n").unwrap();
        let mut out = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(s), &mut out).unwrap();
        assert!(out.contains("\"ok\":false"), "{out}");
        let mode = std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    /// `StartJail` through the socket: the VM's files, named relative to the
    /// owner's state dir, are opened beneath it (a link or a path out of it
    /// is refused) and bound into the jail the helper makes under its own
    /// directory; the console comes as a descriptor; `ReleaseJail` removes
    /// the jail.
    #[test]
    fn starts_jails_with_files_opened_beneath_the_owners_state() {
        if !nix::unistd::geteuid().is_root() {
            banger_testkit::skip("starts_jails_with_the_files_sent_along", "needs root (mounts)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let sock = dir.path().join("h.sock");
        let base = dir.path().join("jail");
        let root = banger_engine::firecracker::jail::root(&base, "0123456789ab");
        let state = dir.path().join("owner-state");
        // A stand-in jailer: writes the PID file the real one leaves.
        let jailer = dir.path().join("jailer");
        std::fs::write(&jailer, format!("#!/bin/sh\necho 77 > {}/firecracker.pid\n", root.display()))
            .unwrap();
        std::fs::set_permissions(&jailer, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = Policy {
            owner_uid: 0,
            bridge: "banger0".into(),
            cidr: "172.30.213.0/24".parse().unwrap(),
            dirs: vec![state.clone()],
            state_dir: dir.path().to_path_buf(),
            jail: Some(JailSetup {
                jailer,
                // Static, so the helper accepts it (the stand-in never runs it).
                firecracker: dir.path().join("firecracker"),
                base: base.clone(),
                uid: 0,
                gid: 0,
            }),
        };
        // An ELF64 header whose one program header is PT_LOAD: no loader.
        let mut elf = vec![0u8; 64 + 56];
        elf[..5].copy_from_slice(b"\x7fELF\x02");
        elf[0x20] = 64;
        elf[0x36] = 56;
        elf[0x38] = 1;
        elf[64] = 1;
        std::fs::write(dir.path().join("firecracker"), elf).unwrap();
        let listener = bind(&sock, 0, 0).unwrap();
        std::thread::spawn(move || serve(listener, p));
        std::fs::create_dir_all(state.join("kernels/k")).unwrap();
        std::fs::write(state.join("kernels/k/vmlinux"), b"kernel").unwrap();
        std::os::unix::fs::symlink("/etc/shadow", state.join("kernels/k/link")).unwrap();
        let console = std::fs::File::create(dir.path().join("console")).unwrap();
        let req = |path: &str| Request::StartJail {
            vm_id: "0123456789ab".into(),
            vcpu: 1,
            memory_mib: 512,
            files: vec![JailFileRef { name: "vmlinux".into(), path: path.into(), writable: false }],
        };
        let e = call(&sock, &req("kernels/k/vmlinux")).unwrap_err();
        assert!(format!("{e:#}").contains("it takes one, the console"), "{e:#}");
        for bad in ["kernels/k/link", "../../etc/shadow", "/etc/shadow"] {
            let e = call_with_files(&sock, &req(bad), &[&console]).unwrap_err();
            assert!(format!("{e:#}").contains("no links followed"), "{bad}: {e:#}");
        }
        let out = call_with_files(&sock, &req("kernels/k/vmlinux"), &[&console]).unwrap();
        assert_eq!(out.detail, format!("77 {}", root.display()));
        assert_eq!(std::fs::read(root.join("vmlinux")).unwrap(), b"kernel");
        call(&sock, &Request::ReleaseJail { vm_id: "0123456789ab".into() }).unwrap();
        assert!(!root.exists(), "the jail is left");
    }
}
