//! The Firecracker engine against the real `firecracker` binary: launch,
//! configure, InstanceStart, pause/resume, snapshot, and restore in a new
//! process with network and vsock overrides. Inside a network namespace the
//! test creates. Skipped (one loud line) without root, firecracker or the
//! e2e kernel fixture.
//!
//! The guest itself need not boot: on hosts whose KVM cannot run ordinary
//! guests (kvm_pvm) it never reaches userspace, but the kernel's first lines
//! appear on the console (early printk) and everything on the VMM side works.

use banger_engine::firecracker::{api, Firecracker};
use banger_engine::{process, Accel, BootSource, Drive, Engine, MachineConfig, NetworkInterface, VmSpec};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn fixtures() -> PathBuf {
    std::env::var_os("BANGER_E2E_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/banger-e2e".into())
}

fn firecracker() -> Option<PathBuf> {
    std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("firecracker")).find(|p| p.is_file()))
}

struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ns_run(ns: &str, args: &[&str]) {
    let ok = Command::new("ip").args(["netns", "exec", ns]).args(args).status().unwrap().success();
    assert!(ok, "ip netns exec {ns} {args:?} failed");
}

fn spec(dir: &Path, tap: &str, sub: &str, disk: &Path) -> VmSpec {
    let run = dir.join(sub);
    std::fs::create_dir_all(&run).unwrap();
    VmSpec {
        id: format!("fctest{}", std::process::id()),
        boot: BootSource {
            kernel: fixtures().join("vmlinux"),
            initrd: None,
            cmdline: "console=ttyS0 reboot=k panic=1 pci=off root=/dev/vda ro init=/sbin/banger-init".into(),
        },
        drives: vec![
            Drive { id: "rootfs".into(), path: fixtures().join("rootfs.ext4"), read_only: true },
            Drive { id: "disk".into(), path: disk.to_path_buf(), read_only: false },
        ],
        interfaces: vec![NetworkInterface {
            id: "eth0".into(),
            tap: tap.into(),
            mac: "06:00:00:00:00:01".into(),
        }],
        machine: MachineConfig { vcpu: 1, memory_mib: 256 },
        vsock_cid: 3,
        accel: Accel::Kvm,
        run_dir: run.clone(),
        vm_dir: run,
    }
}

async fn wait_console(path: &Path, needle: &str, timeout: Duration) -> bool {
    let t = Instant::now();
    while t.elapsed() < timeout {
        if std::fs::read(path).map(|b| String::from_utf8_lossy(&b).contains(needle)).unwrap_or(false) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

#[tokio::test]
async fn launch_pause_resume_snapshot_restore() {
    let Some(fc_bin) = firecracker() else {
        banger_testkit::skip("firecracker_real", "firecracker is not on PATH");
        return;
    };
    if !nix::unistd::geteuid().is_root()
        || !fixtures().join("vmlinux").is_file()
        || !fixtures().join("rootfs.ext4").is_file()
    {
        banger_testkit::skip("firecracker_real", "needs root and the e2e fixtures (scripts/e2e-fixtures)");
        return;
    }
    let dir = tempfile::Builder::new().prefix("banger-fc-").tempdir_in("/var/tmp").unwrap();
    let ns = Netns(format!("bgfc-{}", std::process::id()));
    assert!(Command::new("ip").args(["netns", "add", &ns.0]).status().unwrap().success());
    for tap in ["bgfctap1", "bgfctap2"] {
        ns_run(&ns.0, &["ip", "tuntap", "add", "dev", tap, "mode", "tap"]);
        ns_run(&ns.0, &["ip", "link", "set", tap, "up"]);
    }
    // Firecracker runs inside the namespace, through a wrapper.
    let wrapper = dir.path().join("firecracker");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec ip netns exec {} {} \"$@\"\n", ns.0, fc_bin.display()))
        .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fc = Firecracker::new(wrapper);
    let version = fc.check_version().unwrap();
    eprintln!("firecracker {}.{}.{}", version.0, version.1, version.2);

    let disk = dir.path().join("disk.ext4");
    assert!(Command::new("mkfs.ext4").args(["-q", "-F"]).arg(&disk).arg("256M").status().unwrap().success());
    let s1 = spec(dir.path(), "bgfctap1", "a", &disk);
    let t = Instant::now();
    let h = fc.launch(&s1).await.expect("launch + configure + InstanceStart");
    eprintln!("spawn to InstanceStart returned: {:?}", t.elapsed());
    let client = api::Client::new(&h.control_socket);
    assert_eq!(client.instance_info().await.unwrap().state, "Running");
    assert!(
        wait_console(&s1.console_log(), "Linux version", Duration::from_secs(60)).await,
        "the console never showed the kernel starting"
    );

    fc.pause(&h).await.unwrap();
    assert_eq!(client.instance_info().await.unwrap().state, "Paused");
    fc.resume(&h).await.unwrap();
    assert_eq!(client.instance_info().await.unwrap().state, "Running");

    let snapdir = dir.path().join("snap");
    std::fs::create_dir_all(&snapdir).unwrap();
    let t = Instant::now();
    let snap = fc.snapshot(&h, &snapdir).await.expect("snapshot create");
    eprintln!("pause + full snapshot of 256 MiB: {:?}", t.elapsed());
    assert!(snap.state.is_file() && snap.memory.is_file());
    assert_eq!(std::fs::metadata(&snap.memory).unwrap().len(), 256 << 20);

    // A new process loads it, on another tap and another vsock socket, while
    // the original still holds its own.
    let s2 = spec(dir.path(), "bgfctap2", "b", &disk);
    let t = Instant::now();
    let h2 = fc.restore(&s2, &snap).await.expect("snapshot load with overrides");
    eprintln!("new process to resumed from snapshot: {:?}", t.elapsed());
    let c2 = api::Client::new(&h2.control_socket);
    assert_eq!(c2.instance_info().await.unwrap().state, "Running");
    assert!(s2.vsock_uds().exists(), "the vsock override was not applied");

    for hh in [&h, &h2] {
        fc.kill(hh);
    }
    let t = Instant::now();
    while (process::alive(&h.vmm) || process::alive(&h2.vmm)) && t.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!process::alive(&h.vmm) && !process::alive(&h2.vmm));
}
