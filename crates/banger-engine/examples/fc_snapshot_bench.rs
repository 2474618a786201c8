//! Snapshot-load benchmark: banger's restore path (`Firecracker::restore`:
//! spawn, wait for the API socket, load with network and vsock overrides,
//! resume) beside bare Firecracker (spawn, wait, one raw `PUT
//! /snapshot/load`), in the same run, from one snapshot of a 256 MiB VM.
//!
//!   sudo cargo run --release -p banger-engine --example fc_snapshot_bench [RUNS]
//!
//! Needs root (a network namespace with two taps), firecracker on PATH and
//! the e2e kernel fixture (scripts/e2e-fixtures).

use banger_engine::firecracker::Firecracker;
use banger_engine::{process, Accel, BootSource, Drive, Engine, MachineConfig, NetworkInterface, VmSpec};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn sh(args: &[&str]) {
    assert!(Command::new(args[0]).args(&args[1..]).status().unwrap().success(), "{args:?}");
}

fn spec(dir: &Path, sub: &str, tap: &str, fixtures: &Path) -> VmSpec {
    let run = dir.join(sub);
    std::fs::create_dir_all(&run).unwrap();
    VmSpec {
        id: format!("snapbench{sub}"),
        boot: BootSource {
            kernel: fixtures.join("vmlinux"),
            initrd: None,
            cmdline: "console=ttyS0 reboot=k panic=1 pci=off".into(),
        },
        drives: vec![Drive { id: "rootfs".into(), path: fixtures.join("rootfs.ext4"), read_only: true }],
        interfaces: vec![NetworkInterface {
            id: "eth0".into(),
            tap: tap.into(),
            mac: "06:00:00:00:00:02".into(),
        }],
        machine: MachineConfig { vcpu: 1, memory_mib: 256 },
        vsock_cid: 3,
        accel: Accel::Kvm,
        run_dir: run.clone(),
        vm_dir: run,
    }
}

/// One raw HTTP/1.1 PUT on a Unix socket; returns the status line.
fn raw_put(sock: &Path, path: &str, body: &str) -> String {
    let mut s = std::os::unix::net::UnixStream::connect(sock).unwrap();
    write!(s, "PUT {path} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).lines().next().unwrap_or("").to_string()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Deletes the namespace (and with it the taps) however the run ends.
struct Netns(String);

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

#[tokio::main]
async fn main() {
    let runs: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(10);
    let fixtures = PathBuf::from(
        std::env::var("BANGER_E2E_FIXTURES").unwrap_or_else(|_| "/var/cache/banger-e2e".into()),
    );
    let fc_bin = std::env::var_os("PATH")
        .and_then(|p| std::env::split_paths(&p).map(|d| d.join("firecracker")).find(|p| p.is_file()))
        .expect("firecracker on PATH");
    let dir = tempfile::Builder::new().prefix("banger-snapbench-").tempdir_in("/var/tmp").unwrap();
    let ns = format!("bgsnap-{}", std::process::id());
    sh(&["ip", "netns", "add", &ns]);
    let _ns_guard = Netns(ns.clone());
    for tap in ["bgsnaptap0", "bgsnaptap1", "bgsnaptap2"] {
        sh(&["ip", "netns", "exec", &ns, "ip", "tuntap", "add", "dev", tap, "mode", "tap"]);
    }
    let wrapper = dir.path().join("firecracker");
    std::fs::write(&wrapper, format!("#!/bin/sh\nexec ip netns exec {ns} {} \"$@\"\n", fc_bin.display()))
        .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let fc = Firecracker::new(wrapper.clone());

    let orig = fc.launch(&spec(dir.path(), "orig", "bgsnaptap0", &fixtures)).await.expect("launch");
    tokio::time::sleep(Duration::from_secs(2)).await;
    let snapdir = dir.path().join("snap");
    std::fs::create_dir_all(&snapdir).unwrap();
    let snap = fc.snapshot(&orig, &snapdir).await.expect("snapshot");
    fc.kill(&orig);

    let (mut banger, mut bare) = (Vec::new(), Vec::new());
    for i in 0..runs {
        let s = spec(dir.path(), &format!("b{i}"), "bgsnaptap1", &fixtures);
        let t = Instant::now();
        let h = fc.restore(&s, &snap).await.expect("restore");
        banger.push(t.elapsed().as_secs_f64() * 1000.0);
        fc.kill(&h);
        while process::alive(&h.vmm) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }

        let run = dir.path().join(format!("r{i}"));
        std::fs::create_dir_all(&run).unwrap();
        let api = run.join("fc.sock");
        let t = Instant::now();
        let mut child = Command::new(&wrapper)
            .arg("--api-sock")
            .arg(&api)
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        while !api.exists() {
            std::thread::sleep(Duration::from_micros(500));
        }
        let body = format!(
            r#"{{"snapshot_path":"{}","mem_backend":{{"backend_type":"File","backend_path":"{}"}},"resume_vm":true,"network_overrides":[{{"iface_id":"eth0","host_dev_name":"bgsnaptap2"}}],"vsock_override":{{"uds_path":"{}"}}}}"#,
            snap.state.display(),
            snap.memory.display(),
            run.join("vsock.sock").display()
        );
        let status = raw_put(&api, "/snapshot/load", &body);
        bare.push(t.elapsed().as_secs_f64() * 1000.0);
        assert!(status.contains("204"), "bare load: {status}");
        child.kill().unwrap();
        child.wait().unwrap();
        println!("run {}: banger restore {:.1} ms   bare {:.1} ms", i + 1, banger[i], bare[i]);
    }
    let (mb, mr) = (median(banger), median(bare));
    println!(
        "\nmedian of {runs}: banger restore {mb:.1} ms; bare spawn + load {mr:.1} ms; difference {:.1} ms",
        mb - mr
    );
}
