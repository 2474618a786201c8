//! The e2e environment: fixtures, a network namespace, a private banger.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub const KERNEL: &str = "banger-6.1";
pub const IMAGE: &str = "debian-bookworm";

/// Where `scripts/e2e-fixtures` keeps its banger installation.
pub fn fixtures_dir() -> PathBuf {
    std::env::var_os("BANGER_E2E_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/banger-e2e".into())
}

pub use banger_testkit::Run;

/// Where `prog` is: on PATH, or in `~/.cargo/bin`.
pub fn which(prog: &str) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    dirs.extend(std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo/bin")));
    dirs.into_iter().map(|d| d.join(prog)).find(|p| p.is_file())
}

fn on_path(prog: &str) -> bool {
    which(prog).is_some()
}

/// The `banger` binary under test: Cargo's, or the one in
/// `$BANGER_E2E_BIN_DIR` when the suite runs away from its build tree (the
/// nested Firecracker tier copies everything into its L1 VM).
pub fn banger_exe() -> PathBuf {
    under_test("banger", env!("CARGO_BIN_EXE_banger"))
}

/// The `bangerd` binary under test, found like [`banger_exe`]. It is the
/// daemon package's binary: Cargo puts it beside `banger` when the
/// workspace is built (`scripts/test` does that first).
pub fn bangerd_exe() -> PathBuf {
    match std::env::var_os("BANGER_E2E_BIN_DIR") {
        Some(d) => PathBuf::from(d).join("bangerd"),
        None => banger_testkit::bangerd_beside(Path::new(env!("CARGO_BIN_EXE_banger"))),
    }
}

fn under_test(name: &str, built: &str) -> PathBuf {
    match std::env::var_os("BANGER_E2E_BIN_DIR") {
        Some(d) => PathBuf::from(d).join(name),
        None => built.into(),
    }
}

/// The static guest agent: `$BANGER_E2E_BIN_DIR/banger-agent`, or the one
/// `scripts/build-agent` left beside Cargo's binaries.
pub fn static_agent() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("BANGER_E2E_BIN_DIR") {
        return Some(PathBuf::from(d).join("banger-agent")).filter(|p| p.is_file());
    }
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_banger"));
    let target = exe.ancestors().find(|a| a.file_name().is_some_and(|n| n == "target"))?.to_path_buf();
    ["release", "debug"]
        .iter()
        .map(|p| target.join("x86_64-unknown-linux-gnu").join(p).join("banger-agent"))
        .find(|p| p.is_file())
}

/// Why e2e tests on `engine` cannot run here, if they cannot.
pub fn missing(engine: &str) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root (network namespaces, taps)".into());
    }
    if engine == "qemu" {
        for p in ["qemu-system-x86_64", "vhost-device-vsock"] {
            if !on_path(p) {
                return Some(format!("{p} is not installed"));
            }
        }
    } else if !on_path("firecracker") {
        return Some("firecracker is not installed".into());
    }
    if static_agent().is_none() {
        return Some("the static guest agent is not built (scripts/build-agent)".into());
    }
    let f = fixtures_dir();
    if !f.join("vmlinux").is_file() || !f.join("rootfs.ext4").is_file() {
        return Some(format!(
            "the kernel/image fixtures are not in {} (scripts/e2e-fixtures builds them)",
            f.display()
        ));
    }
    None
}

/// The engine guest-level tests run on: `BANGER_E2E_ENGINE` if set, else
/// firecracker where KVM runs ordinary guests (VMX/SVM) and firecracker is
/// installed, else qemu.
pub fn engine() -> String {
    if let Ok(e) = std::env::var("BANGER_E2E_ENGINE") {
        return e;
    }
    let cpu = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let hw = cpu
        .lines()
        .find(|l| l.starts_with("flags"))
        .is_some_and(|l| l.split_whitespace().any(|f| f == "vmx" || f == "svm"));
    if hw && Path::new("/dev/kvm").exists() && on_path("firecracker") {
        "firecracker".into()
    } else {
        "qemu".into()
    }
}

/// Imports the fixture kernel and registers the fixture image under the
/// default names, through `banger` (however the caller runs it).
pub fn register_fixtures(banger_ok: impl Fn(&[&str])) {
    let f = fixtures_dir();
    banger_ok(&["kernel", "import", KERNEL, "--vmlinux", f.join("vmlinux").to_str().unwrap()]);
    let rootfs = f.join("rootfs.ext4");
    banger_ok(&[
        "image",
        "register",
        "--name",
        IMAGE,
        "--rootfs",
        rootfs.to_str().unwrap(),
        "--kernel",
        KERNEL,
    ]);
}

static SEQ: AtomicU32 = AtomicU32::new(0);

/// `ip netns exec` mounts a fresh /sys for the namespace, which hides the
/// cgroup hierarchies the jailer puts firecracker in. This mounts them
/// back in that command's mount namespace (as the host has them: the
/// unified hierarchy, or the cpu and memory controllers of v1), then runs
/// the command. A user's daemon runs in the host's own namespaces.
pub const CGROUPS_BACK: &str = r#"
if grep -q ' /sys/fs/cgroup cgroup2 ' /proc/1/mounts; then
  mount -t cgroup2 none /sys/fs/cgroup 2>/dev/null
elif mount -t tmpfs none /sys/fs/cgroup 2>/dev/null; then
  for c in cpu memory; do
    mkdir -p /sys/fs/cgroup/$c && mount -t cgroup -o $c none /sys/fs/cgroup/$c 2>/dev/null
  done
fi
exec "$@""#;

/// A private banger in its own network namespace, with the fixture kernel
/// and image registered under the default names.
pub struct E2e {
    pub dir: tempfile::TempDir,
    pub netns: String,
    name: String,
}

impl E2e {
    /// `None` (after one SKIPPED line) when the host cannot run e2e tests.
    pub fn new(test: &str) -> Option<E2e> {
        Self::with(test, &engine(), "boot_timeout_secs = 120")
    }

    /// Like [`E2e::new`] with a given engine and extra config lines.
    pub fn with(test: &str, engine: &str, extra_config: &str) -> Option<E2e> {
        if let Some(why) = missing(engine) {
            banger_testkit::skip(&format!("e2e test {test}"), &why.to_string());
            return None;
        }
        let dir = tempfile::Builder::new().prefix("banger-e2e-").tempdir_in("/var/tmp").unwrap();
        let netns = format!("bge2e-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::SeqCst));
        let ok = Command::new("ip").args(["netns", "add", &netns]).status().unwrap().success();
        assert!(ok, "cannot create network namespace {netns}");
        Command::new("ip").args(["netns", "exec", &netns, "ip", "link", "set", "lo", "up"]).status().unwrap();
        let e = E2e { dir, netns, name: test.to_string() };
        std::fs::create_dir_all(e.dir.path().join("config/banger")).unwrap();
        std::fs::write(
            e.dir.path().join("config/banger/config.toml"),
            format!("engine = \"{engine}\"\n{extra_config}\n[vm_defaults]\nmemory = \"512M\"\n"),
        )
        .unwrap();
        let t = Instant::now();
        if std::env::var_os("BANGER_E2E_NESTED").is_some() {
            e.clone_seed();
        } else {
            register_fixtures(|args| {
                e.ok(args);
            });
        }
        eprintln!("[{test}] fixtures registered in {:.1?}", t.elapsed());
        Some(e)
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.netns, "sh", "-c", CGROUPS_BACK, "sh"])
            .arg(banger_exe())
            .env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("BANGER_DAEMON_BIN", bangerd_exe());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_stdin(args, None)
    }

    pub fn run_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Run {
        use std::io::Write;
        let mut c = self.cmd();
        c.args(args).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::piped());
        c.stdin(if stdin.is_some() { std::process::Stdio::piped() } else { std::process::Stdio::null() });
        let mut child = c.spawn().unwrap();
        if let Some(data) = stdin {
            let mut s = child.stdin.take().unwrap();
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = s.write_all(&data);
            });
        }
        let out = child.wait_with_output().unwrap();
        Run::from_output(&out)
    }

    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(
            r.code, 0,
            "[{}] banger {args:?} failed:\nstdout: {}\nstderr: {}",
            self.name, r.stdout, r.stderr
        );
        r
    }

    pub fn vm(&self, name: &str) -> serde_json::Value {
        self.ok(&["vm", "show", name, "--json"]).json()
    }

    /// Polls `vm show` until `pred` holds or `timeout` passes.
    pub fn wait_for(
        &self,
        name: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.vm(name);
            if pred(&v) {
                return v;
            }
            assert!(Instant::now() < deadline, "VM {name} did not reach the expected state: {v}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.path().join("run/banger/bangerd.lock")).ok()?.trim().parse().ok()
    }

    /// Names of network interfaces in the test's namespace.
    pub fn links(&self) -> Vec<String> {
        let out =
            Command::new("ip").args(["netns", "exec", &self.netns, "ls", "/sys/class/net"]).output().unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().map(String::from).collect()
    }

    /// Asserts that nothing of VM `id` is left: processes, taps, dirs.
    pub fn assert_nothing_left(&self, id: &str) {
        let procs = processes_mentioning(id);
        assert!(procs.is_empty(), "processes of VM {id} are left: {procs:?}");
        let tap = format!("bg{id}");
        assert!(!self.links().contains(&tap), "tap {tap} is left");
        assert!(!self.dir.path().join("state/banger/vms").join(id).exists(), "VM dir left");
        assert!(!self.dir.path().join("run/banger/vms").join(id).exists(), "runtime dir left");
    }
}

/// Live processes whose command line mentions `needle`.
pub fn processes_mentioning(needle: &str) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else { continue };
        if stat.rfind(')').and_then(|i| stat[i + 2..].chars().next()) == Some('Z') {
            continue;
        }
        if let Ok(c) = std::fs::read(e.path().join("cmdline")) {
            let c = String::from_utf8_lossy(&c).replace('\0', " ");
            if c.contains(needle) {
                out.push((pid, c));
            }
        }
    }
    out
}

/// Where the nested tier keeps the registered fixtures it clones for each
/// test (L1's root is thrown away when L1 stops).
const SEED: &str = "/var/tmp/banger-nested-seed";

impl E2e {
    /// The fixtures, registered once per L1 session and cloned for each
    /// test: under nested TCG, hashing the 2 GiB rootfs at `image register`
    /// takes about 30 s, most of a short test. The seed's images and
    /// kernels are hard-linked (VMs open them read-only) and its database
    /// copied with their paths moved to this test's state dir. The host
    /// tiers register for real in every test.
    fn clone_seed(&self) {
        let seed = Path::new(SEED);
        let lock = std::fs::File::create(format!("{SEED}.lock")).unwrap();
        let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive).unwrap();
        if !seed.join("ready").exists() {
            let _ = std::fs::remove_dir_all(seed);
            std::fs::create_dir_all(seed.join("config/banger")).unwrap();
            let cmd = |args: &[&str]| {
                let out = self
                    .cmd()
                    .env("XDG_CONFIG_HOME", seed.join("config"))
                    .env("XDG_STATE_HOME", seed.join("state"))
                    .env("XDG_CACHE_HOME", seed.join("cache"))
                    .env("XDG_RUNTIME_DIR", seed.join("run"))
                    .args(args)
                    .output()
                    .unwrap();
                assert!(
                    out.status.success(),
                    "seed: banger {args:?}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
            };
            register_fixtures(cmd);
            let pid = std::fs::read_to_string(seed.join("run/banger/bangerd.lock")).unwrap_or_default();
            cmd(&["daemon", "stop"]);
            let deadline = Instant::now() + Duration::from_secs(30);
            while Path::new(&format!("/proc/{}", pid.trim())).exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            std::fs::write(seed.join("ready"), "").unwrap();
        }
        let (from, to) = (seed.join("state/banger"), self.dir.path().join("state/banger"));
        link_tree(&from.join("images"), &to.join("images"));
        link_tree(&from.join("kernels"), &to.join("kernels"));
        for f in std::fs::read_dir(&from).unwrap().flatten() {
            if f.file_name().to_string_lossy().starts_with("banger.db") {
                std::fs::copy(f.path(), to.join(f.file_name())).unwrap();
            }
        }
        let db = rusqlite::Connection::open(to.join("banger.db")).unwrap();
        let (a, b) = (from.display().to_string(), to.display().to_string());
        db.execute_batch(&format!(
            "UPDATE kernels SET vmlinux_path = replace(vmlinux_path, '{a}', '{b}'),
                                initrd_path = replace(initrd_path, '{a}', '{b}');
             UPDATE images SET rootfs_path = replace(rootfs_path, '{a}', '{b}');"
        ))
        .unwrap();
    }
}

/// Recreates the directories under `from` at `to`, hard-linking the files.
fn link_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            link_tree(&e.path(), &dest);
        } else {
            std::fs::hard_link(e.path(), dest).unwrap();
        }
    }
}

impl E2e {
    /// Keeps the daemon log and every VM's logs of a failed test, and says
    /// where.
    fn keep_logs(&self) {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let dest = PathBuf::from("/var/tmp/banger-e2e-failures").join(format!("{}-{stamp}", self.name));
        let state = self.dir.path().join("state/banger");
        let _ = std::fs::create_dir_all(&dest);
        let _ = std::fs::copy(state.join("bangerd.log"), dest.join("bangerd.log"));
        if let Ok(vms) = std::fs::read_dir(state.join("vms")) {
            for vm in vms.flatten() {
                let d = dest.join(vm.file_name());
                let _ = std::fs::create_dir_all(&d);
                for f in [
                    "console.log",
                    "console.log.1",
                    "qemu.log",
                    "vhost-vsock.log",
                    "firecracker.log",
                    "handles.json",
                ] {
                    let _ = std::fs::copy(vm.path().join(f), d.join(f));
                }
            }
        }
        eprintln!("e2e test {} failed; its logs are in {}", self.name, dest.display());
    }
}

impl E2e {
    /// ACPI errors printed by any of this test's guests: every kernel must
    /// take the ACPI tables both engines give it without complaint.
    fn acpi_errors(&self) -> Vec<String> {
        let mut found = Vec::new();
        let vms = self.dir.path().join("state/banger/vms");
        for vm in std::fs::read_dir(vms).into_iter().flatten().flatten() {
            for f in ["console.log.1", "console.log"] {
                let text = std::fs::read(vm.path().join(f)).unwrap_or_default();
                let text = String::from_utf8_lossy(&text);
                found.extend(
                    text.lines()
                        .filter(|l| l.contains("ACPI Error") || l.contains("ACPI BIOS Error"))
                        .map(|l| format!("{}/{f}: {l}", vm.file_name().to_string_lossy())),
                );
            }
        }
        found
    }
}

impl Drop for E2e {
    fn drop(&mut self) {
        let acpi = self.acpi_errors();
        if std::thread::panicking() || !acpi.is_empty() {
            self.keep_logs();
        }
        // Leave nothing running: delete every VM, stop the daemon, kill by
        // PID whatever still names this test's dirs, remove the namespace.
        if let Ok(r) = std::panic::catch_unwind(|| self.run(&["ps", "--json"])) {
            if let Ok(serde_json::Value::Array(vms)) = serde_json::from_str::<serde_json::Value>(&r.stdout) {
                for v in vms {
                    if let Some(id) = v["id"].as_str() {
                        let _ = self.run(&["vm", "kill", id]);
                        let _ = self.run(&["vm", "delete", id]);
                    }
                }
            }
        }
        let daemon = self.daemon_pid();
        let _ = self.cmd().args(["daemon", "stop"]).output();
        if let Some(pid) = daemon {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
        let marker = self.dir.path().display().to_string();
        for (pid, _) in processes_mentioning(&marker) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        let _ = Command::new("ip").args(["netns", "del", &self.netns]).status();
        if !acpi.is_empty() && !std::thread::panicking() {
            panic!("[{}] a guest's console shows ACPI errors:\n{}", self.name, acpi.join("\n"));
        }
    }
}
