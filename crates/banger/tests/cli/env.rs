//! A throwaway banger installation: four XDG dirs and the binaries.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub struct Env {
    pub dir: tempfile::TempDir,
}

pub use banger_testkit::Run;

impl Env {
    pub fn new() -> Env {
        let dir = tempfile::tempdir().unwrap();
        let e = Env { dir };
        std::fs::create_dir_all(e.config_dir()).unwrap();
        e
    }

    pub fn config_dir(&self) -> PathBuf {
        self.dir.path().join("config/banger")
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.dir.path().join("run/banger")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state/banger")
    }

    /// Writes config.toml.
    pub fn config(&self, text: &str) {
        std::fs::write(self.config_dir().join("config.toml"), text).unwrap();
    }

    pub fn cmd(&self) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_banger"));
        c.env("XDG_CONFIG_HOME", self.dir.path().join("config"))
            .env("XDG_STATE_HOME", self.dir.path().join("state"))
            .env("XDG_CACHE_HOME", self.dir.path().join("cache"))
            .env("XDG_RUNTIME_DIR", self.dir.path().join("run"))
            .env("BANGER_DAEMON_BIN", bangerd_exe())
            .env("NO_COLOR", "1");
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let out: Output = self.cmd().args(args).output().unwrap();
        Run::from_output(&out)
    }

    /// Runs and asserts success.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_eq!(r.code, 0, "banger {args:?} failed:\nstdout: {}\nstderr: {}", r.stdout, r.stderr);
        r
    }

    /// Runs and asserts a failure with an `error:` line.
    pub fn fails(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert_ne!(r.code, 0, "banger {args:?} succeeded but should not have:\n{}", r.stdout);
        assert!(
            r.stderr.starts_with("error: ") || r.stderr.contains("\nerror: ") || r.stderr.contains("error:"),
            "no error line: {}",
            r.stderr
        );
        r
    }

    /// A fake 64-bit ELF "agent" and config pointing at it.
    pub fn with_fake_agent(&self) -> &Env {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[16] = 2;
        elf[18] = 62;
        let agent = self.dir.path().join("fake-agent");
        std::fs::write(&agent, &elf).unwrap();
        self.config(&format!("agent_bin = \"{}\"\nengine = \"qemu\"\n", agent.display()));
        self
    }

    /// A kernel file and a small ext4 image, registered as `k1` / `img`.
    pub fn seed_image(&self) {
        let mut elf = vec![0u8; 4096];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[16] = 2;
        elf[18] = 62;
        let vmlinux = self.dir.path().join("vmlinux");
        std::fs::write(&vmlinux, elf).unwrap();
        self.ok(&["kernel", "import", "k1", "--vmlinux", vmlinux.to_str().unwrap()]);
        let rootfs = self.dir.path().join("rootfs.ext4");
        let st = Command::new("mkfs.ext4")
            .args(["-q", "-F", rootfs.to_str().unwrap(), "32M"])
            .status()
            .expect("mkfs.ext4 (e2fsprogs) is needed for the CLI tests");
        assert!(st.success());
        self.ok(&[
            "image",
            "register",
            "--name",
            "img",
            "--rootfs",
            rootfs.to_str().unwrap(),
            "--kernel",
            "k1",
        ]);
    }

    pub fn daemon_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.runtime_dir().join("bangerd.lock")).ok()?.trim().parse().ok()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let pid = self.daemon_pid();
        let _ = self.cmd().args(["daemon", "stop"]).output();
        // If it did not stop, end it by the PID it recorded.
        if let Some(pid) = pid {
            if Path::new(&format!("/proc/{pid}")).exists() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
        }
    }
}

/// The daemon package's `bangerd`, which Cargo puts beside `banger` when
/// the workspace is built (`scripts/test` does that first).
pub fn bangerd_exe() -> std::path::PathBuf {
    banger_testkit::bangerd_beside(std::path::Path::new(env!("CARGO_BIN_EXE_banger")))
}
