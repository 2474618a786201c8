//! Firecracker under its jailer: each VM's firecracker in a chroot that
//! holds only its own files, as an unprivileged uid, in a cgroup sized
//! from the VM, in new mount and PID namespaces.
//!
//! The root side ([`start`], [`release`]) needs root; who runs it is the
//! daemon's business ([`JailRunner`]): the daemon itself when it is root,
//! the root helper for a system install. It never follows a path the
//! unprivileged side names: the VM's files arrive as open descriptors
//! (opened by the daemon, as itself) and are bind-mounted from
//! `/proc/self/fd/N` onto empty files in the jail, read-only where the VM
//! only reads them. The jail lives under a directory root alone controls
//! (`<base>/firecracker/<vm id>/root`), so nothing can be swapped under the
//! jailer while it works; the jailer then chowns the jail's root to the
//! uid firecracker runs as.
//!
//! Inside the jail firecracker sees `/vmlinux`, `/initrd`, `/drive-<id>`,
//! `/firecracker.log`, `/metrics.json`, and makes `/run/api.sock` and
//! `/run/vsock.sock`, which the daemon reaches through the jail's path.

use crate::EngineError;
use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The API socket, as firecracker sees it.
pub const API_SOCKET: &str = "/run/api.sock";
/// The hybrid-vsock socket, as firecracker sees it.
pub const VSOCK_SOCKET: &str = "/run/vsock.sock";
/// cgroup (v2) under which every jailed firecracker gets `<vm id>`: the
/// jailer's default parent, named after the executable.
const CGROUP_PARENT: &str = "firecracker";
/// Memory a jailed firecracker may use beyond its guest's: the VMM itself
/// and its device buffers.
const MEMORY_OVERHEAD_MIB: u64 = 128;

/// One file of the VM, handed over open.
#[derive(Debug)]
pub struct JailFile {
    /// Its name in the jail's root (`vmlinux`, `drive-rootfs`, …).
    pub name: String,
    pub file: File,
    /// Where it is, as the side that opened it sees it (a root helper in
    /// another mount namespace cannot bind a descriptor from this one, and
    /// opens the file again, beneath the owner's state dir).
    pub path: PathBuf,
    /// Whether firecracker may write it (the bind mount is read-only
    /// otherwise).
    pub writable: bool,
}

/// What a jailed launch needs from the unprivileged side.
#[derive(Debug)]
pub struct JailSpec {
    pub vm_id: String,
    pub vcpu: u32,
    pub memory_mib: u64,
    pub files: Vec<JailFile>,
    /// Firecracker's stdout and stderr: the serial console.
    pub console: File,
}

/// What only the root side decides: which binaries, where, as whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JailSetup {
    pub jailer: PathBuf,
    pub firecracker: PathBuf,
    /// Root-owned, all the way up.
    pub base: PathBuf,
    pub uid: u32,
    pub gid: u32,
}

/// A firecracker started in its jail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Started {
    /// In the caller's PID namespace.
    pub pid: u32,
    /// The jail's root, as the host sees it (the sockets are under it).
    pub root: PathBuf,
}

/// Starts and releases jails for the engine; implemented by the daemon
/// (in-process when root, through the root helper otherwise).
pub trait JailRunner: std::fmt::Debug + Send + Sync {
    /// Starts firecracker in a fresh jail.
    fn start(&self, spec: JailSpec) -> Result<Started, EngineError>;
    /// Removes a VM's jail (its mounts, files and cgroup); a jail that is
    /// not there is fine.
    fn release(&self, vm_id: &str) -> Result<(), EngineError>;
}

/// `<base>/firecracker/<vm id>/root`: the jail's root as the host sees it.
pub fn root(base: &Path, vm_id: &str) -> PathBuf {
    base.join("firecracker").join(vm_id).join("root")
}

/// A VM id or file name that is safe as one path component (and as the
/// jailer's `--id`: letters, digits and `-`, at most 64).
fn check_component(s: &str, what: &str, extra: &[char]) -> Result<(), EngineError> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && !s.starts_with(['.', '-'])
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || extra.contains(&c));
    if ok {
        Ok(())
    } else {
        Err(EngineError::Launch(format!("{what} {s:?} is not a plain name")))
    }
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> EngineError {
    move |e| EngineError::Launch(format!("{what}: {e}"))
}

/// Checks one handed-over file: a regular file owned by `uid`, opened for
/// writing exactly when it is to be writable.
fn check_file(f: &JailFile, uid: u32) -> Result<(), EngineError> {
    check_component(&f.name, "jail file name", &['.', '_'])?;
    let meta = f.file.metadata().map_err(io(format!("cannot stat {}", f.name)))?;
    if !meta.file_type().is_file() {
        return Err(EngineError::Launch(format!("{} is not a regular file", f.name)));
    }
    if meta.uid() != uid {
        return Err(EngineError::Launch(format!(
            "{} belongs to uid {}, not to uid {uid} that firecracker runs as",
            f.name,
            meta.uid()
        )));
    }
    let flags = nix::fcntl::fcntl(&f.file, nix::fcntl::FcntlArg::F_GETFL)
        .map_err(|e| EngineError::Launch(format!("cannot read the mode of {}: {e}", f.name)))?;
    let mode = nix::fcntl::OFlag::from_bits_truncate(flags) & nix::fcntl::OFlag::O_ACCMODE;
    if f.writable && mode == nix::fcntl::OFlag::O_RDONLY {
        return Err(EngineError::Launch(format!("{} is to be writable but was opened read-only", f.name)));
    }
    Ok(())
}

/// The jailer's command line for `spec` under `setup`.
fn jailer_args(setup: &JailSetup, spec: &JailSpec) -> Vec<String> {
    let mut a: Vec<String> = vec![
        "--id".into(),
        spec.vm_id.clone(),
        "--exec-file".into(),
        setup.firecracker.display().to_string(),
        "--uid".into(),
        setup.uid.to_string(),
        "--gid".into(),
        setup.gid.to_string(),
        "--chroot-base-dir".into(),
        setup.base.display().to_string(),
        "--new-pid-ns".into(),
    ];
    a.extend(crate::cgroup::jailer_args(spec.vcpu, (spec.memory_mib + MEMORY_OVERHEAD_MIB) << 20));
    a.extend([
        "--".into(),
        // The jailer passes `--id <vm id>` on itself.
        "--api-sock".into(),
        API_SOCKET.into(),
        "--level".into(),
        "Info".into(),
        "--show-level".into(),
    ]);
    for (flag, name) in [("--log-path", "firecracker.log"), ("--metrics-path", "metrics.json")] {
        if spec.files.iter().any(|f| f.name == name) {
            a.extend([flag.to_string(), format!("/{name}")]);
        }
    }
    a
}

/// Whether the ELF executable at `path` asks for a dynamic loader
/// (`PT_INTERP`): such a binary cannot run in a jail, which holds no
/// libraries. Firecracker's release binaries are static.
pub fn is_dynamic(path: &Path) -> std::io::Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = File::open(path)?;
    let mut h = [0u8; 64];
    f.read_exact(&mut h)?;
    if &h[..4] != b"\x7fELF" || h[4] != 2 {
        return Err(std::io::Error::other("not a 64-bit ELF executable"));
    }
    let phoff = u64::from_le_bytes(h[0x20..0x28].try_into().expect("8 bytes"));
    let phentsize = u64::from(u16::from_le_bytes([h[0x36], h[0x37]]));
    let phnum = u16::from_le_bytes([h[0x38], h[0x39]]).min(256);
    for i in 0..u64::from(phnum) {
        let mut t = [0u8; 4];
        f.seek(SeekFrom::Start(phoff + i * phentsize))?;
        f.read_exact(&mut t)?;
        if u32::from_le_bytes(t) == 3 {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Checks that only root can change `path` or any directory above it:
/// each one that exists is root's and writable by nobody else (a sticky
/// directory like /var/tmp is fine: others cannot rename what root put
/// there). Components not there yet are skipped (root makes them). The
/// error is the first path that fails, or that cannot be read.
pub fn only_root_writes(path: &Path) -> Result<(), PathBuf> {
    for p in path.ancestors().filter(|p| !p.as_os_str().is_empty()) {
        match std::fs::symlink_metadata(p) {
            Ok(m) => {
                let open = m.mode() & 0o022 != 0 && m.mode() & 0o1000 == 0;
                if m.uid() != 0 || open {
                    return Err(p.to_path_buf());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(_) => return Err(p.to_path_buf()),
        }
    }
    Ok(())
}

/// Starts firecracker for `spec` in a fresh jail. Root only.
pub fn start(setup: &JailSetup, spec: JailSpec) -> Result<Started, EngineError> {
    check_component(&spec.vm_id, "VM id", &[])?;
    if is_dynamic(&setup.firecracker).map_err(io(format!("cannot read {}", setup.firecracker.display())))? {
        return Err(EngineError::Missing {
            what: format!("a static firecracker ({} is dynamically linked)", setup.firecracker.display()),
            hint: "the jail holds no libraries: install firecracker from its release archive (static), or set jailer_enabled = false".into(),
        });
    }
    for f in &spec.files {
        check_file(f, setup.uid)?;
    }
    // Only root may write on the way to the jail: a directory anyone else
    // could rename or fill would let them steer the jailer. Checked before
    // anything is made.
    let not_root_only = |p: &Path| {
        EngineError::Launch(format!(
            "{} must be a directory owned by root and writable by root alone (jail base {})",
            p.display(),
            setup.base.display()
        ))
    };
    only_root_writes(&setup.base).map_err(|p| not_root_only(&p))?;
    if std::fs::symlink_metadata(&setup.base).is_ok_and(|m| !m.is_dir()) {
        return Err(not_root_only(&setup.base));
    }
    release(&setup.base, &spec.vm_id)?;
    let root = root(&setup.base, &spec.vm_id);
    let mut dirs = std::fs::DirBuilder::new();
    dirs.mode(0o711).recursive(true);
    dirs.create(&root).map_err(io(format!("cannot create {}", root.display())))?;
    // 0711 whatever the umask: the uid firecracker runs as walks this way
    // to its root (the jailer gives it that one).
    for d in [
        setup.base.clone(),
        setup.base.join("firecracker"),
        root.parent().unwrap_or(&root).to_path_buf(),
        root.clone(),
    ] {
        std::fs::set_permissions(&d, std::os::unix::fs::PermissionsExt::from_mode(0o711))
            .map_err(io(format!("cannot set the mode of {}", d.display())))?;
    }
    let started = (|| {
        for f in &spec.files {
            mount_file(&root, f)?;
        }
        run_jailer(setup, &spec, &root)
    })();
    let started = started.map(|pid| Started { pid, root });
    if started.is_err() {
        let _ = release(&setup.base, &spec.vm_id);
    }
    started
}

/// Bind-mounts `f` (through its descriptor) onto `<root>/<name>`.
fn mount_file(root: &Path, f: &JailFile) -> Result<(), EngineError> {
    use nix::mount::{mount, MsFlags};
    let target = root.join(&f.name);
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(io(format!("cannot create {}", target.display())))?;
    let source = PathBuf::from(format!("/proc/self/fd/{}", f.file.as_raw_fd()));
    mount(Some(&source), &target, None::<&str>, MsFlags::MS_BIND, None::<&str>)
        .map_err(|e| EngineError::Launch(format!("cannot bind {} into the jail: {e}", f.name)))?;
    if !f.writable {
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
        mount(None::<&str>, &target, None::<&str>, flags, None::<&str>)
            .map_err(|e| EngineError::Launch(format!("cannot make {} read-only in the jail: {e}", f.name)))?;
    }
    Ok(())
}

/// Runs the jailer, which forks firecracker into a new PID namespace,
/// writes its PID into the jail and exits.
fn run_jailer(setup: &JailSetup, spec: &JailSpec, root: &Path) -> Result<u32, EngineError> {
    use std::os::unix::process::CommandExt;
    let out = spec.console.try_clone().map_err(io("cannot share the console"))?;
    let err = spec.console.try_clone().map_err(io("cannot share the console"))?;
    let mut cmd = std::process::Command::new(&setup.jailer);
    cmd.args(jailer_args(setup, spec)).stdin(std::process::Stdio::null()).stdout(out).stderr(err);
    // SAFETY: runs in the child before exec; setsid and umask are
    // async-signal-safe. Its own session: firecracker outlives whoever
    // started it. umask 022: the jailer's directories must be traversable
    // by the uid it hands the jail to.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(io(format!("cannot run {}", setup.jailer.display())))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(s) = child.try_wait().map_err(io("cannot wait for the jailer"))? {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(EngineError::Launch("the jailer did not finish within 10 s".into()));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if !status.success() {
        return Err(EngineError::Launch(format!("the jailer failed ({status}); see its message below")));
    }
    let pid_file = root.join("firecracker.pid");
    let text =
        std::fs::read_to_string(&pid_file).map_err(io(format!("cannot read {}", pid_file.display())))?;
    text.trim()
        .parse()
        .map_err(|_| EngineError::Launch(format!("{} holds {text:?}, not a PID", pid_file.display())))
}

/// Removes the jail of `vm_id` under `base`: detaches the files mounted in
/// it, deletes it, and removes its cgroup. Root only; idempotent.
pub fn release(base: &Path, vm_id: &str) -> Result<(), EngineError> {
    check_component(vm_id, "VM id", &[])?;
    let dir = base.join("firecracker").join(vm_id);
    let root = dir.join("root");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for e in entries.flatten() {
            // Not a mount point: EINVAL, fine.
            let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let mut errors = Vec::new();
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            errors.push(format!("cannot remove {}: {e}", dir.display()));
        }
    }
    if let Err(e) = crate::cgroup::remove(CGROUP_PARENT, vm_id) {
        errors.push(e);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Launch(errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(files: Vec<JailFile>) -> JailSpec {
        JailSpec {
            vm_id: "0123456789ab".into(),
            vcpu: 2,
            memory_mib: 512,
            files,
            console: tempfile::tempfile().unwrap(),
        }
    }

    /// A minimal static ELF64 header: no program header asks for a loader.
    fn static_elf() -> Vec<u8> {
        let mut h = vec![0u8; 64 + 56];
        h[..4].copy_from_slice(b"\x7fELF");
        h[4] = 2;
        h[0x20..0x28].copy_from_slice(&64u64.to_le_bytes());
        h[0x36..0x38].copy_from_slice(&56u16.to_le_bytes());
        h[0x38..0x3a].copy_from_slice(&1u16.to_le_bytes());
        h[64..68].copy_from_slice(&1u32.to_le_bytes()); // PT_LOAD
        h
    }

    #[test]
    fn a_dynamic_firecracker_is_told_apart_from_a_static_one() {
        // This test binary is dynamically linked (the gnu target's default).
        assert!(is_dynamic(&std::env::current_exe().unwrap()).unwrap());
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("s"), static_elf()).unwrap();
        assert!(!is_dynamic(&d.path().join("s")).unwrap());
        std::fs::write(d.path().join("t"), b"#!/bin/sh\n").unwrap();
        assert!(is_dynamic(&d.path().join("t")).is_err());
    }

    #[test]
    fn the_jailer_gets_limits_from_the_vm_and_paths_inside_the_jail() {
        let setup = JailSetup {
            jailer: "/usr/bin/jailer".into(),
            firecracker: "/usr/bin/firecracker".into(),
            base: "/run/banger-root/jail".into(),
            uid: 1000,
            gid: 1000,
        };
        let log = JailFile {
            name: "firecracker.log".into(),
            file: tempfile::tempfile().unwrap(),
            path: "/l".into(),
            writable: true,
        };
        let a = jailer_args(&setup, &spec(vec![log])).join(" ");
        for want in [
            "--id 0123456789ab --exec-file /usr/bin/firecracker --uid 1000 --gid 1000",
            "--chroot-base-dir /run/banger-root/jail --new-pid-ns --cgroup-version",
            "-- --api-sock /run/api.sock --level Info",
            "--log-path /firecracker.log",
        ] {
            assert!(a.contains(want), "{want:?} not in {a}");
        }
        assert!(!a.contains("--metrics-path"), "{a}");
        // This host's hierarchy, with the VM's limits (512 + 128 MiB).
        assert!(a.contains("=671088640"), "{a}");
    }

    #[test]
    fn only_plain_names_and_owned_files_enter_a_jail() {
        for bad in ["", "../x", "a/b", ".hidden", "-flag", &"x".repeat(65)] {
            assert!(check_component(bad, "VM id", &['.', '_']).is_err(), "{bad:?}");
        }
        assert!(check_component("drive-rootfs", "f", &['.', '_']).is_ok());
        assert!(check_component("firecracker.log", "VM id", &[]).is_err());
        let me = nix::unistd::getuid().as_raw();
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("f"), b"x").unwrap();
        let ro = |writable| JailFile {
            name: "f".into(),
            file: File::open(d.path().join("f")).unwrap(),
            path: d.path().join("f"),
            writable,
        };
        assert!(check_file(&ro(false), me).is_ok());
        let e = check_file(&ro(true), me).unwrap_err().to_string();
        assert!(e.contains("opened read-only"), "{e}");
        let e = check_file(&ro(false), me + 1).unwrap_err().to_string();
        assert!(e.contains("belongs to uid"), "{e}");
        let dir = JailFile {
            name: "d".into(),
            file: File::open(d.path()).unwrap(),
            path: d.path().into(),
            writable: false,
        };
        assert!(check_file(&dir, me).unwrap_err().to_string().contains("not a regular file"));
    }

    #[test]
    fn a_jail_base_others_can_write_is_refused() {
        if !nix::unistd::geteuid().is_root() {
            banger_testkit::skip("a_jail_base_others_can_write_is_refused", "needs root");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let base = d.path().join("jail");
        std::fs::create_dir(&base).unwrap();
        std::fs::set_permissions(&base, std::os::unix::fs::PermissionsExt::from_mode(0o777)).unwrap();
        std::fs::write(d.path().join("firecracker"), static_elf()).unwrap();
        let setup = JailSetup {
            jailer: "/nonexistent/jailer".into(),
            firecracker: d.path().join("firecracker"),
            base: base.clone(),
            uid: 0,
            gid: 0,
        };
        let e = start(&setup, spec(vec![])).unwrap_err().to_string();
        assert!(e.contains("writable by root alone"), "{e}");
        assert!(!base.join("firecracker").exists(), "a refused jail was started");
    }

    #[test]
    fn files_are_bound_into_the_jail_read_only_unless_writable_and_released() {
        if !nix::unistd::geteuid().is_root() {
            banger_testkit::skip(
                "files_are_bound_into_the_jail_read_only_unless_writable_and_released",
                "needs root",
            );
            return;
        }
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        let base = d.path().join("jail");
        let src = d.path().join("src");
        std::fs::create_dir(&src).unwrap();
        std::fs::write(src.join("disk"), b"disk").unwrap();
        std::fs::write(src.join("kernel"), b"kernel").unwrap();
        let open_rw = |p: &Path| std::fs::OpenOptions::new().read(true).write(true).open(p).unwrap();
        let files = vec![
            JailFile {
                name: "drive-rootfs".into(),
                file: open_rw(&src.join("disk")),
                path: src.join("disk"),
                writable: true,
            },
            JailFile {
                name: "vmlinux".into(),
                file: open_rw(&src.join("kernel")),
                path: src.join("kernel"),
                writable: false,
            },
        ];
        // A jailer that only shows what it was given: the PID file as the
        // real one leaves it, and its arguments on the console.
        let fake = d.path().join("jailer");
        std::fs::write(
            &fake,
            format!(
                "#!/bin/sh\necho \"$@\"; echo 4242 > {}/firecracker.pid\n",
                root(&base, "0123456789ab").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
        // Any static executable stands in for firecracker (the fake jailer
        // never runs it).
        let static_exe = d.path().join("firecracker");
        std::fs::write(&static_exe, static_elf()).unwrap();
        let setup = JailSetup { jailer: fake, firecracker: static_exe, base: base.clone(), uid: 0, gid: 0 };
        let mut s = spec(files);
        let console = d.path().join("console");
        s.console = File::create(&console).unwrap();
        let r = root(&base, "0123456789ab");
        assert_eq!(start(&setup, s).unwrap(), Started { pid: 4242, root: r.clone() });
        assert_eq!(std::fs::read(r.join("vmlinux")).unwrap(), b"kernel");
        std::fs::write(r.join("drive-rootfs"), b"written").unwrap();
        assert_eq!(std::fs::read(src.join("disk")).unwrap(), b"written", "the bind reaches the VM's file");
        let e = std::fs::OpenOptions::new().write(true).open(r.join("vmlinux")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::EROFS), "a read-only file is writable in the jail");
        assert!(std::fs::read_to_string(&console).unwrap().contains("--id 0123456789ab"));
        release(&base, "0123456789ab").unwrap();
        assert!(!r.parent().unwrap().exists(), "the jail is left");
        assert_eq!(std::fs::read(src.join("kernel")).unwrap(), b"kernel", "release touched the VM's files");
        release(&base, "0123456789ab").unwrap();
    }
}
