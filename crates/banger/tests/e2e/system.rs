//! `banger system install`: the daemon as an ordinary (throwaway) user, the
//! root helper as root, both started by hand from the command lines in the
//! installed units (no systemd here), inside the test's network namespace.
//!
//! Checks: a VM with NAT boots, its tap belongs to the user; `image build`
//! works through the helper and boots; another uid is
//! refused by both sockets (file mode, then SO_PEERCRED); the VM and its NAT
//! rules survive a daemon kill -9 + restart and a helper restart, and the
//! rules vanish with the VM; `uninstall --purge`
//! leaves no tap, bridge, rule, route, file or state behind.

use crate::harness::{fixtures_dir, missing, register_fixtures};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Everything the test made, undone in reverse whatever happens.
struct Env {
    user: String,
    uid: u32,
    gid: u32,
    netns: String,
    root: tempfile::TempDir,
    home: PathBuf,
    helper: Option<Child>,
    daemon: Option<Child>,
}

impl Drop for Env {
    fn drop(&mut self) {
        for c in [self.daemon.as_mut(), self.helper.as_mut()].into_iter().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // VMs the daemon left (a failed test): their engines run as the user.
        for pid in processes_of(self.uid) {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        let _ = Command::new("userdel").arg(&self.user).status();
        let _ = std::fs::remove_dir_all(&self.home);
    }
}

fn ok(out: Output, what: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{what} failed ({}):\nstdout: {stdout}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// `KEY=VALUE` lines of `[Service]` for `key` (`ExecStart`, `Environment`).
fn unit_values(unit: &str, key: &str) -> Vec<String> {
    unit.lines().filter_map(|l| l.strip_prefix(&format!("{key}="))).map(String::from).collect()
}

impl Env {
    fn bin(&self) -> PathBuf {
        self.root.path().join("usr/local/bin/banger")
    }

    fn unit(&self, name: &str) -> String {
        std::fs::read_to_string(self.root.path().join("etc/systemd/system").join(name)).unwrap()
    }

    /// The daemon unit's environment, as systemd would give it.
    fn daemon_env(&self) -> Vec<String> {
        let mut env = unit_values(&self.unit("bangerd.service"), "Environment");
        env.push("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into());
        env
    }

    /// `banger ARGS` as the user, in the namespace.
    fn banger(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.netns, "setpriv"])
            .args(["--reuid", &self.uid.to_string(), "--regid", &self.gid.to_string(), "--init-groups"])
            .args(["env", "-i"])
            .args(self.daemon_env())
            .arg(self.bin())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        ok(self.banger(args), &format!("banger {args:?} (as {})", self.user))
    }

    /// The helper, as bangerd-root.service runs it.
    fn start_helper(&mut self) {
        self.start_helper_from(None);
    }

    /// The helper with another install file, outside the namespace (see
    /// the image build below); `None`: as the unit runs it, in the
    /// namespace.
    fn start_helper_from(&mut self, outside: Option<&Path>) {
        if let Some(mut h) = self.helper.take() {
            h.kill().unwrap();
            h.wait().unwrap();
        }
        let exec = unit_values(&self.unit("bangerd-root.service"), "ExecStart").remove(0);
        let mut argv: Vec<String> = exec.split_whitespace().map(String::from).collect();
        let sock = self.root.path().join("run/banger-root/helper.sock");
        let _ = std::fs::remove_file(&sock); // a killed helper leaves it
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("helper.log"))
            .unwrap();
        let mut cmd = match outside {
            Some(install) => {
                let at = argv.iter().position(|a| a == "--install-file").unwrap();
                argv[at + 1] = install.display().to_string();
                Command::new(&argv[0])
            }
            None => {
                // With the cgroups back: the helper runs the jailer.
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &self.netns, "sh", "-c", crate::harness::CGROUPS_BACK, "sh"])
                    .arg(&argv[0]);
                c
            }
        };
        let child = cmd.args(&argv[1..]).stdout(log.try_clone().unwrap()).stderr(log).spawn().unwrap();
        self.helper = Some(child);
        wait_for(&sock);
    }

    /// The daemon, as bangerd.service runs it (User=, Environment=,
    /// ExecStart=). This host's /dev/net/tun is 0600 (Debian's usual mode
    /// is 0666), so the daemon gets a 0666 node of the same device in a
    /// private mount namespace.
    fn start_daemon(&mut self) {
        let exec = unit_values(&self.unit("bangerd.service"), "ExecStart").remove(0);
        let tun = self.root.path().join("tun");
        if !tun.exists() {
            let ok = Command::new("mknod").arg(&tun).args(["c", "10", "200"]).status().unwrap().success();
            assert!(ok, "mknod tun");
            std::fs::set_permissions(&tun, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("daemon.log"))
            .unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &self.netns, "unshare", "-m", "sh", "-c"])
            .arg("mount --bind \"$0\" /dev/net/tun && shift && exec \"$@\"")
            .arg(&tun)
            .arg("-")
            .args([
                "setpriv",
                "--reuid",
                &self.uid.to_string(),
                "--regid",
                &self.gid.to_string(),
                "--init-groups",
            ])
            .args(["env", "-i"])
            .args(self.daemon_env())
            .arg(exec)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.daemon = Some(child);
        wait_for(&self.root.path().join("run/banger/bangerd.sock"));
    }

    fn in_ns(&self, args: &[&str]) -> Output {
        Command::new("ip").args(["netns", "exec", &self.netns]).args(args).output().unwrap()
    }

    fn links(&self) -> Vec<String> {
        let out = self.in_ns(&["ls", "/sys/class/net"]);
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect()
    }

    fn nat_table(&self) -> Option<String> {
        let out = self.in_ns(&["nft", "list", "table", "ip", "banger"]);
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    fn vm_state(&self, name: &str) -> String {
        let v: serde_json::Value = serde_json::from_str(&self.ok(&["vm", "show", name, "--json"])).unwrap();
        v["state"].as_str().unwrap().to_string()
    }

    /// `banger system status` run as another uid (nobody).
    fn status_as_nobody(&self) -> serde_json::Value {
        let out = Command::new(self.bin())
            .args(["system", "status", "--json", "--root"])
            .arg(self.root.path())
            .env_clear()
            .env("HOME", "/")
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("status as nobody: {e}: {}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// Issue 14: a system install's firecracker runs under the jailer the root
/// helper starts: as the owner's uid, in a jail under the helper's runtime
/// dir holding the VM's files, PID 1 of its own namespace, in its own
/// cgroup; deleting the VM removes the jail. (Here the guest never gets
/// ready unless KVM runs guests; the jail is checked while it tries.)
fn jailed_firecracker_runs_as_the_owner(e: &Env) {
    let fc = on_path("firecracker");
    let jailer = on_path("jailer");
    if fc.is_none() || jailer.is_none() {
        banger_testkit::skip("system_install's jailer part", "firecracker and jailer are not both installed");
        return;
    }
    let install = std::fs::read_to_string(e.root.path().join("etc/banger/install.toml")).unwrap();
    assert!(install.contains("jailer = "), "the install did not record the jailer: {install}");
    e.ok(&["vm", "create", "--name", "fcj", "--engine", "firecracker", "--no-start"]);
    let mut start = Command::new("ip");
    start
        .args(["netns", "exec", &e.netns, "setpriv"])
        .args(["--reuid", &e.uid.to_string(), "--regid", &e.gid.to_string(), "--init-groups"])
        .args(["env", "-i"])
        .args(e.daemon_env())
        .arg(e.bin())
        .args(["vm", "start", "fcj"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut start = start.spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let (id, pid) = loop {
        let v: serde_json::Value = serde_json::from_str(&e.ok(&["vm", "show", "fcj", "--json"])).unwrap();
        if let Some(pid) = v["runtime"]["pid"].as_u64() {
            break (v["id"].as_str().unwrap().to_string(), pid);
        }
        if let Some(status) = start.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(start.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("vm start ended ({status}) before firecracker ran: {err}");
        }
        assert!(Instant::now() < deadline, "no engine after 30 s: {v}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let proc = PathBuf::from(format!("/proc/{pid}"));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&proc).unwrap().uid(), e.uid, "firecracker must run as the owner");
    let seen: Vec<String> = std::fs::read_dir(proc.join("root"))
        .unwrap()
        .flatten()
        .map(|f| f.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(seen.contains(&"vmlinux".to_string()) && !seen.contains(&"etc".to_string()), "{seen:?}");
    let status = std::fs::read_to_string(proc.join("status")).unwrap();
    assert!(status.lines().any(|l| l.starts_with("NSpid:") && l.ends_with("\t1")), "{status}");
    let cgroup = std::fs::read_to_string(proc.join("cgroup")).unwrap();
    assert!(cgroup.lines().any(|l| l.ends_with(&format!("/firecracker/{id}"))), "{cgroup}");
    let jail = e.root.path().join("run/banger-root/jail/firecracker").join(&id);
    assert!(jail.is_dir(), "no jail at {}", jail.display());
    e.ok(&["vm", "kill", "fcj"]);
    let _ = start.wait();
    e.ok(&["vm", "delete", "fcj"]);
    assert!(!jail.exists(), "the jail outlived its VM");
    let left = crate::harness::processes_mentioning(&id);
    assert!(left.is_empty(), "firecracker outlived its VM: {left:?}");
}

/// PIDs of the processes running as `uid` (only the test's throwaway user).
fn processes_of(uid: u32) -> Vec<i32> {
    use std::os::unix::fs::MetadataExt;
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .filter_map(|e| {
                    let pid: i32 = e.file_name().to_str()?.parse().ok()?;
                    (e.metadata().ok()?.uid() == uid).then_some(pid)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn wait_for(p: &Path) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !p.exists() {
        assert!(Instant::now() < deadline, "{} did not appear", p.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn check_detail(status: &serde_json::Value, name: &str) -> String {
    let c = status["checks"].as_array().unwrap().iter().find(|c| c["name"] == name).unwrap();
    assert_eq!(c["ok"], false, "{name} must fail for another uid: {c}");
    c["detail"].as_str().unwrap().to_string()
}

fn readable_by_others(p: &Path) -> bool {
    // Every ancestor must be searchable by others, the file executable.
    use std::os::unix::fs::PermissionsExt;
    p.ancestors().skip(1).all(|a| std::fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
        && std::fs::metadata(p).is_ok_and(|m| m.permissions().mode() & 0o001 != 0)
}

/// A process's start time (field 22 of /proc/PID/stat).
fn banger_engine_start_time(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    stat[stat.rfind(')').unwrap() + 2..].split_whitespace().nth(19).unwrap().parse().unwrap()
}

fn on_path(prog: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?).map(|d| d.join(prog)).find(|p| p.is_file())
}

#[test]
fn system_install_runs_the_daemon_as_a_user_with_a_root_helper() {
    if let Some(why) = missing("qemu") {
        banger_testkit::skip("e2e test system_install", &why.to_string());
        return;
    }
    for tool in ["useradd", "userdel", "setpriv", "unshare", "nft", "mknod"] {
        if on_path(tool).is_none() {
            banger_testkit::skip("e2e test system_install", &format!("{tool} is not installed"));
            return;
        }
    }
    match on_path("vhost-device-vsock") {
        Some(p) if readable_by_others(&p) => {}
        _ => {
            banger_testkit::skip("e2e test system_install", "vhost-device-vsock is not on PATH where other users can run it (install it with `cargo install vhost-device-vsock --root /usr/local`)");
            return;
        }
    }

    let user = format!("bgsys{}", std::process::id() % 100_000);
    let home = PathBuf::from(format!("/var/tmp/{user}-home"));
    let _ = std::fs::remove_dir_all(&home);
    // Left by a run that was killed before its cleanup (same PID, rare).
    if nix::unistd::User::from_name(&user).ok().flatten().is_some() {
        let _ = Command::new("userdel").arg(&user).status();
    }
    let made = Command::new("useradd")
        .args(["--system", "--create-home", "--shell", "/usr/sbin/nologin", "--home-dir"])
        .arg(&home)
        .arg(&user)
        .status()
        .unwrap()
        .success();
    assert!(made, "useradd {user}");
    let pw = nix::unistd::User::from_name(&user).unwrap().unwrap();
    let netns = format!("bgsys-{}", std::process::id());
    let mut e = Env {
        user: user.clone(),
        uid: pw.uid.as_raw(),
        gid: pw.gid.as_raw(),
        netns: netns.clone(),
        root: tempfile::Builder::new().prefix("banger-sys-").tempdir_in("/var/tmp").unwrap(),
        home: home.clone(),
        helper: None,
        daemon: None,
    };
    assert!(Command::new("ip").args(["netns", "add", &netns]).status().unwrap().success());
    e.in_ns(&["ip", "link", "set", "lo", "up"]);

    // The owner's config: QEMU, small guests.
    let cfg = home.join(".config/banger");
    std::fs::create_dir_all(&cfg).unwrap();
    // (jailer_enabled: firecracker VMs below run under the helper's jailer.)
    std::fs::write(
        cfg.join("config.toml"),
        "engine = \"qemu\"\njailer_enabled = true\n[vm_defaults]\nmemory = \"512M\"\n",
    )
    .unwrap();
    Command::new("chown").args(["-R", &format!("{}:{}", e.uid, e.gid)]).arg(&home).status().unwrap();

    let install = || {
        Command::new(env!("CARGO_BIN_EXE_banger"))
            .args(["system", "install", "--owner", &user, "--root"])
            .arg(e.root.path())
            .env("BANGER_DAEMON_BIN", crate::harness::bangerd_exe())
            .output()
            .unwrap()
    };
    // Issue 14, item 3: the owner plants `~/.cache/banger -> <a root
    // directory>`; install (root) must not hand that directory over.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let victim = e.root.path().join("victim");
    std::fs::create_dir(&victim).unwrap();
    std::fs::set_permissions(&victim, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::create_dir_all(home.join(".cache")).unwrap();
    std::os::unix::fs::symlink(&victim, home.join(".cache/banger")).unwrap();
    Command::new("chown")
        .args(["-Rh", &format!("{}:{}", e.uid, e.gid)])
        .arg(home.join(".cache"))
        .status()
        .unwrap();
    let out = install();
    assert!(!out.status.success(), "install went through a planted symlink");
    assert!(String::from_utf8_lossy(&out.stderr).contains(".cache/banger"), "{out:?}");
    let m = std::fs::metadata(&victim).unwrap();
    assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o755), "the planted symlink's target changed hands");
    std::fs::remove_file(home.join(".cache/banger")).unwrap();

    // Install (as root) under the temp root.
    ok(install(), "system install");
    let du = e.unit("bangerd.service");
    assert!(du.contains(&format!("User={user}\n")), "{du}");
    assert!(du.contains("KillMode=process") && du.contains("NoNewPrivileges=yes"), "{du}");
    let hu = e.unit("bangerd-root.service");
    assert!(hu.contains("CapabilityBoundingSet=CAP_NET_ADMIN") && hu.contains("SendSIGKILL=no"), "{hu}");

    // systemd's own check of the units, where its tools are installed.
    if on_path("systemd-analyze").is_some() {
        let units = e.root.path().join("etc/systemd/system");
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(units.join("bangerd-root.service"))
            .arg(units.join("bangerd.service"))
            .output()
            .unwrap();
        let said = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify: {said}");
    }
    e.start_helper();
    e.start_daemon();
    register_fixtures(|args| {
        e.ok(args);
    });

    // A VM with NAT boots under the user's daemon, network from the helper.
    e.ok(&["vm", "create", "--name", "sys", "--nat"]);
    let vm: serde_json::Value = serde_json::from_str(&e.ok(&["vm", "show", "sys", "--json"])).unwrap();
    let ip = vm["guest_ip"].as_str().unwrap().to_string();
    assert_eq!(e.ok(&["vm", "exec", "sys", "--", "id", "-u"]).trim(), "0");
    let id = vm["id"].as_str().unwrap();
    let taps: Vec<String> = e.links().into_iter().filter(|l| l.starts_with("bg")).collect();
    assert!(!taps.is_empty(), "no taps: {:?}", e.links());
    for t in &taps {
        let owner = e.in_ns(&["cat", &format!("/sys/class/net/{t}/owner")]);
        assert_eq!(String::from_utf8_lossy(&owner.stdout).trim(), e.uid.to_string(), "tap {t} owner");
    }
    let engines: Vec<u32> = crate::harness::processes_mentioning(id).into_iter().map(|(p, _)| p).collect();
    assert!(!engines.is_empty());
    for p in engines {
        let uid = std::fs::metadata(format!("/proc/{p}")).map(|m| std::os::unix::fs::MetadataExt::uid(&m));
        assert_eq!(uid.ok(), Some(e.uid), "engine pid {p} must run as the user");
        // jailer_enabled: the helper put the VM's QEMU in its own cgroup.
        let cgroup = std::fs::read_to_string(format!("/proc/{p}/cgroup")).unwrap_or_default();
        assert!(cgroup.lines().any(|l| l.ends_with(&format!("/banger-qemu/{id}"))), "pid {p}: {cgroup}");
    }
    assert!(e.nat_table().is_some_and(|t| t.contains(&ip)), "NAT rules for {ip} missing");
    // (doctor exits 1 here: the user cannot open /dev/kvm.)
    let doctor = String::from_utf8_lossy(&e.banger(&["doctor", "--json"]).stdout).into_owned();
    let checks: Vec<serde_json::Value> = serde_json::from_str(&doctor).unwrap();
    let privs = checks.iter().find(|c| c["name"] == "privileges").unwrap();
    assert_eq!(privs["level"], "pass", "{privs}");
    assert!(privs["detail"].as_str().unwrap().contains("root helper at"), "{privs}");
    jailed_firecracker_runs_as_the_owner(&e);

    // `image build` from the user's daemon: debootstrap runs in the root
    // helper, the finished image comes back as a file descriptor. (The
    // helper's package cache is seeded from the fixtures' to spare the
    // mirror.)
    let debs = fixtures_dir().join("env/cache/banger/debs");
    if debs.is_dir() {
        let dst = e.root.path().join("var/lib/banger-root");
        std::fs::create_dir_all(&dst).unwrap();
        Command::new("cp").arg("-a").arg(&debs).arg(&dst).status().unwrap();
    }
    // debootstrap needs Debian's mirror, which the namespace cannot reach:
    // for the build, the helper runs outside it, with a policy whose bridge
    // matches nothing, so any network request would be refused rather than
    // touch the host's interfaces.
    let fenced = e.root.path().join("etc/banger/build-only.toml");
    let text = std::fs::read_to_string(e.root.path().join("etc/banger/install.toml")).unwrap();
    std::fs::write(&fenced, text.replace("bridge = \"banger0\"", "bridge = \"banger-none\"")).unwrap();
    e.start_helper_from(Some(&fenced));
    let r = e.banger(&["image", "build", "--name", "built"]);
    e.start_helper();
    ok(r, "image build through the helper");
    let img: serde_json::Value = serde_json::from_str(&e.ok(&["image", "show", "built", "--json"])).unwrap();
    assert_eq!(img["manifest"]["builder"], "banger image build (root helper)", "{img}");
    let rootfs = PathBuf::from(img["rootfs_path"].as_str().unwrap());
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&rootfs).unwrap());
    assert_eq!(owner, e.uid, "the image must belong to the user");
    let leftovers: Vec<_> = std::fs::read_dir(e.root.path().join("var/lib/banger-root"))
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("build-"))
        .collect();
    assert!(leftovers.is_empty(), "the helper left its build dir");
    e.ok(&["vm", "create", "--name", "b", "--image", "built"]);
    let os = e.ok(&["vm", "exec", "b", "--", "cat", "/etc/os-release"]);
    assert!(os.contains("bookworm"), "{os}");
    e.ok(&["vm", "delete", "b"]);

    // Another uid: both sockets refuse it (file mode), and the helper's
    // SO_PEERCRED check refuses it even when the file mode would not.
    let s = e.status_as_nobody();
    assert!(check_detail(&s, "helper answers").contains("ermission denied"), "{s}");
    assert!(check_detail(&s, "daemon answers").contains("ermission denied"), "{s}");
    let hs = e.root.path().join("run/banger-root/helper.sock");
    std::fs::set_permissions(&hs, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let s = e.status_as_nobody();
    std::fs::set_permissions(&hs, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert!(check_detail(&s, "helper answers").contains("refused: uid 65534"), "{s}");

    // kill -9 the daemon: the VM and its NAT rules stay; a restart adopts them.
    let mut d = e.daemon.take().unwrap();
    d.kill().unwrap();
    d.wait().unwrap();
    let _ = std::fs::remove_file(e.root.path().join("run/banger/bangerd.sock"));
    e.start_daemon();
    assert_eq!(e.vm_state("sys"), "running");
    assert!(e.nat_table().is_some_and(|t| t.contains(&ip)), "NAT rules lost in the restart");
    e.ok(&["vm", "exec", "sys", "--", "true"]);
    // Restarting the helper leaves the VM alone too.
    e.start_helper();
    e.ok(&["vm", "exec", "sys", "--", "true"]);
    e.ok(&["vm", "stop", "sys"]);
    assert!(e.nat_table().is_none(), "NAT table left after the last VM stopped");
    e.ok(&["vm", "start", "sys"]);
    assert!(e.nat_table().is_some());

    // Issue 14, item 4: handles.json files are the owner's to write; one
    // naming a root process (start time 0 skips nothing now, a right one
    // proves nothing about what the process is) must not get it killed.
    let mut bystander = Command::new("sleep").arg("600").spawn().unwrap();
    let st = banger_engine_start_time(bystander.id());
    for (name, start_time) in [("forged0", 0), ("forged1", st)] {
        let d = home.join(".local/state/banger/vms").join(name);
        std::fs::create_dir_all(&d).unwrap();
        let h = serde_json::json!({
            "engine": "qemu", "accel": "tcg",
            "vmm": {"pid": bystander.id(), "start_time": start_time, "name": "qemu-system-x86_64"},
            "helpers": [], "control_socket": "/nonexistent", "vsock_uds": "/nonexistent",
            "run_dir": "/nonexistent", "tap": null, "console_log": "/nonexistent", "started_at_ms": 0
        });
        std::fs::write(d.join("handles.json"), h.to_string()).unwrap();
    }
    Command::new("chown").args(["-R", &format!("{}:{}", e.uid, e.gid)]).arg(&home).status().unwrap();

    // Uninstall --purge (as root, in the namespace): nothing is left.
    let out = e.in_ns(&[
        env!("CARGO_BIN_EXE_banger"),
        "system",
        "uninstall",
        "--purge",
        "--root",
        e.root.path().to_str().unwrap(),
    ]);
    ok(out, "system uninstall --purge");
    assert!(bystander.try_wait().unwrap().is_none(), "uninstall killed a root process a handles.json named");
    bystander.kill().unwrap();
    bystander.wait().unwrap();
    let left: Vec<String> =
        e.links().into_iter().filter(|l| l.starts_with("bg") || l.starts_with("banger")).collect();
    assert!(left.is_empty(), "interfaces left: {left:?}");
    assert!(e.nat_table().is_none(), "NAT table left");
    let routes = String::from_utf8_lossy(&e.in_ns(&["ip", "-4", "route"]).stdout).into_owned();
    assert!(!routes.contains("172.30.213."), "routes left: {routes}");
    assert!(crate::harness::processes_mentioning(id).is_empty(), "engine processes left");
    for p in [
        "usr/local/bin/banger",
        "etc/banger/install.toml",
        "etc/systemd/system/bangerd.service",
        "run/banger",
    ] {
        assert!(!e.root.path().join(p).exists(), "{p} left");
    }
    assert!(!home.join(".local/state/banger").exists(), "the owner's state was not purged");
    // The daemon exited on its own (asked over its API).
    let mut d = e.daemon.take().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while d.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the daemon still runs after uninstall");
        std::thread::sleep(Duration::from_millis(50));
    }
}
