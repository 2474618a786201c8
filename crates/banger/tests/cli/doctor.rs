//! `banger doctor`: FAIL lines with a fix, and exit code 1.

use crate::env::Env;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn find<'a>(checks: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    checks
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no {name} check: {checks}"))
}

#[test]
fn an_old_firecracker_fails_with_a_fix() {
    let e = Env::new();
    let fc = e.dir.path().join("firecracker");
    std::fs::write(&fc, "#!/bin/sh\necho 'Firecracker v1.2.0'\n").unwrap();
    std::fs::set_permissions(&fc, std::fs::Permissions::from_mode(0o755)).unwrap();
    e.config(&format!("firecracker_bin = \"{}\"\n", fc.display()));
    let r = e.run(&["doctor", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let checks = r.json();
    let c = find(&checks, "firecracker");
    assert_eq!(c["level"], "fail", "{c}");
    assert!(c["detail"].as_str().unwrap().contains("1.2.0"), "{c}");
    assert!(c["hint"].as_str().unwrap().contains("install firecracker"), "{c}");
    // The text form says FAIL and the fix on the same line.
    let r = e.run(&["doctor"]);
    assert_eq!(r.code, 1);
    let at = r.stdout.lines().position(|l| l.split_whitespace().nth(1) == Some("firecracker")).unwrap();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[at].starts_with("FAIL"), "{}", r.stdout);
    assert!(lines[at + 1].contains("hint: install firecracker"), "{}", r.stdout);
    e.ok(&["daemon", "stop"]);
}

#[test]
fn a_missing_dev_kvm_fails_with_a_fix() {
    if !nix::unistd::geteuid().is_root() {
        banger_testkit::skip(
            "a_missing_dev_kvm_fails_with_a_fix",
            "needs root for a private mount namespace",
        );
        return;
    }
    let e = Env::new();
    // A private /dev without kvm, for the CLI and the daemon it starts.
    let script = format!(
        "mount --make-rprivate / && mount -t tmpfs none /dev && \
         mknod -m 666 /dev/null c 1 3 && mknod -m 666 /dev/zero c 1 5 && mknod -m 666 /dev/urandom c 1 9 && \
         mknod -m 666 /dev/random c 1 8 && exec {} doctor --json",
        env!("CARGO_BIN_EXE_banger")
    );
    let mut c = Command::new("unshare");
    c.args(["-m", "sh", "-c", &script]);
    for (k, v) in e.cmd().get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let kvm = find(&checks, "/dev/kvm");
    assert_eq!(kvm["level"], "fail", "{kvm}");
    assert!(kvm["hint"].as_str().unwrap().contains("kvm"), "{kvm}");
    // The daemon lives in that namespace; stop it from there.
    let stop = format!("{} daemon stop", env!("CARGO_BIN_EXE_banger"));
    let mut c = Command::new("sh");
    c.args(["-c", &stop]);
    for (k, v) in e.cmd().get_envs() {
        if let Some(v) = v {
            c.env(k, v);
        }
    }
    assert!(c.status().unwrap().success());
}

#[test]
fn firecracker_configured_but_missing_fails() {
    let e = Env::new();
    // PATH without any firecracker on it, for the CLI and the daemon it starts.
    let path: Vec<_> = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .filter(|d| !d.join("firecracker").exists())
        .collect();
    let path = std::env::join_paths(path).unwrap();
    e.config(&format!(
        "engine = \"firecracker\"\nfirecracker_bin = \"{}\"\n",
        e.dir.path().join("none").display()
    ));
    let run = |args: &[&str]| e.cmd().env("PATH", &path).args(args).output().unwrap();
    let out = run(&["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
    let checks: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fc = find(&checks, "firecracker");
    assert_eq!(fc["level"], "fail", "{fc}");
    let engine = find(&checks, "engine for new VMs");
    assert_eq!(engine["level"], "fail", "{engine}");
    let detail = engine["detail"].as_str().unwrap();
    assert!(detail.contains("no VM can be created") && !detail.contains("QEMU is used"), "{engine}");
    assert!(engine["hint"].as_str().unwrap().contains("firecracker"), "{engine}");
    assert!(run(&["daemon", "stop"]).status.success());
}

/// Issue 14, item 14: the `.vm` DNS port held by another process (another
/// local user could answer `.vm` lookups) is a FAIL with the fix, and an
/// error in the daemon's log, not a quiet warning.
#[test]
fn a_dns_port_held_by_another_process_fails() {
    let e = Env::new();
    let squatter = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let port = squatter.local_addr().unwrap().port();
    e.config(&format!("[network]\ndns_port = {port}\n"));
    let r = e.run(&["doctor", "--json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let checks = r.json();
    let c = find(&checks, ".vm names");
    assert_eq!(c["level"], "fail", "{c}");
    assert!(c["detail"].as_str().unwrap().contains("not routed"), "{c}");
    assert!(c["hint"].as_str().unwrap().contains("dns_port"), "{c}");
    let log = std::fs::read_to_string(e.state_dir().join("bangerd.log")).unwrap();
    assert!(log.contains("ERROR") && log.contains("no .vm names"), "{log}");
    e.ok(&["daemon", "stop"]);
    drop(squatter);
}
