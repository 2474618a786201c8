//! Boot, exec, persistence across stop/start, crash detection, daemon
//! restart, delete leaving nothing; two VMs on one bridge.

use crate::harness::{E2e, IMAGE};
use std::time::{Duration, Instant};

#[test]
fn lifecycle_survives_stop_crash_and_daemon_restart() {
    let Some(e) = E2e::new("lifecycle") else { return };

    let t = Instant::now();
    let vm = e.ok(&["vm", "create", "--name", "life", "--json"]).json();
    eprintln!("create to agent-ready: {:?}", t.elapsed());
    assert_eq!(vm["state"], "running", "{vm}");
    let id = vm["id"].as_str().unwrap().to_string();
    assert_eq!(vm["engine"], crate::harness::engine());

    let uname = e.ok(&["vm", "exec", "life", "--", "uname", "-r"]);
    assert!(uname.stdout.starts_with("6.1."), "{}", uname.stdout);
    let host = e.ok(&["vm", "exec", "life", "--", "hostname"]);
    assert_eq!(host.stdout.trim(), "life");

    // A file put in /tmp while the image's init is still booting stays
    // there once systemd-tmpfiles has run (the agent answers before it).
    let early = e.ok(&[
        "vm",
        "exec",
        "life",
        "--",
        "sh",
        "-c",
        "echo early > /tmp/early; for i in $(seq 120); do \
         systemctl show -p ActiveState systemd-tmpfiles-setup 2>/dev/null | grep -q =active && break; \
         sleep 0.25; done; systemctl show -p ActiveState systemd-tmpfiles-setup; cat /tmp/early",
    ]);
    assert_eq!(early.stdout, "ActiveState=active\nearly\n", "{}", early.stderr);

    // Data written and synced survives stop/start; /tmp starts empty.
    e.ok(&["vm", "exec", "life", "--", "sh", "-c", "echo persisted > /root/marker && sync"]);
    let stopped = e.ok(&["vm", "stop", "life", "--json"]).json();
    assert_eq!(stopped[0]["state"], "stopped");
    assert!(crate::harness::processes_mentioning(&id).is_empty(), "engine still running after stop");
    e.ok(&["vm", "start", "life"]);
    let marker = e.ok(&["vm", "exec", "life", "--", "cat", "/root/marker"]);
    assert_eq!(marker.stdout, "persisted\n");
    assert_eq!(e.ok(&["vm", "exec", "life", "--", "ls", "-A", "/tmp"]).stdout, "");

    // The engine dies on its own: the VM goes to error, with the console.
    let pid = e.vm("life")["runtime"]["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL).unwrap();
    let v = e.wait_for("life", Duration::from_secs(15), |v| v["state"] == "error");
    let err = v["last_error"].as_str().unwrap();
    assert!(err.contains("exited unexpectedly"), "{err}");
    assert!(err.contains("banger-init"), "last_error lacks the console tail: {err}");
    assert!(!e.links().contains(&format!("bg{id}")), "tap left after the crash");
    assert!(crate::harness::processes_mentioning(&id).is_empty(), "helpers left after the crash");

    // It starts again, and the data is still there.
    e.ok(&["vm", "start", "life"]);
    assert_eq!(e.ok(&["vm", "exec", "life", "--", "cat", "/root/marker"]).stdout, "persisted\n");

    // The daemon crashes while the VM runs: a new daemon adopts the VM.
    let engine_pid = e.vm("life")["runtime"]["pid"].as_i64().unwrap();
    let daemon = e.daemon_pid().expect("daemon pid");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon), nix::sys::signal::Signal::SIGKILL).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let after = e.vm("life"); // starts a new daemon
    assert_ne!(e.daemon_pid(), Some(daemon));
    assert_eq!(after["state"], "running", "{after}");
    assert_eq!(after["runtime"]["pid"].as_i64(), Some(engine_pid));
    assert_eq!(e.ok(&["vm", "exec", "life", "--", "cat", "/root/marker"]).stdout, "persisted\n");
    // And a graceful daemon stop leaves it running too.
    e.ok(&["daemon", "stop"]);
    assert_eq!(e.vm("life")["state"], "running");
    let stopped = e.ok(&["vm", "stop", "life", "--json"]).json();
    assert_eq!(stopped[0]["state"], "stopped");

    // Delete leaves nothing behind.
    e.ok(&["vm", "start", "life"]);
    e.ok(&["vm", "delete", "life"]);
    assert_eq!(e.ok(&["ps", "--json"]).json(), serde_json::json!([]));
    e.assert_nothing_left(&id);
}

#[test]
fn exit_codes_and_streams() {
    let Some(e) = E2e::new("exec") else { return };
    e.ok(&["vm", "create", "--name", "x"]);
    for (cmd, code) in [("exit 0", 0), ("exit 1", 1), ("exit 3", 3), ("kill -9 $$", 137)] {
        let r = e.run(&["vm", "exec", "x", "--", "sh", "-c", cmd]);
        assert_eq!(r.code, code, "{cmd}: {}", r.stderr);
    }
    let r = e.run(&["vm", "exec", "x", "--", "sh", "-c", "echo to-out; echo to-err >&2"]);
    assert_eq!((r.stdout.as_str(), r.stderr.as_str()), ("to-out\n", "to-err\n"));
    let r = e.run_stdin(&["vm", "exec", "x", "--", "sha256sum"], Some(b"data"));
    assert!(
        r.stdout.starts_with("3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7"),
        "{}",
        r.stdout
    );
    let r = e.run(&["vm", "exec", "x", "--timeout", "1", "--", "sleep", "30"]);
    assert_eq!(r.code, 124);
    let r = e.run(&["vm", "exec", "x", "--", "no-such-command"]);
    assert_eq!(r.code, 127, "{}", r.stderr);
    // A client that goes away (Ctrl-C, kill -9) mid-stop does not cancel
    // the stop: the VM still ends `stopped`, not stuck `stopping`
    // (issue 14, item 11).
    let mut stop = e.cmd();
    let mut stop = stop.args(["vm", "stop", "x"]).stdout(std::process::Stdio::null()).spawn().unwrap();
    e.wait_for("x", std::time::Duration::from_secs(30), |v| v["state"] == "stopping");
    stop.kill().unwrap();
    let _ = stop.wait();
    e.wait_for("x", std::time::Duration::from_secs(60), |v| v["state"] == "stopped");
    // exec on a stopped VM is refused with a hint.
    let r = e.run(&["vm", "exec", "x", "--", "true"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not running") && r.stderr.contains("hint:"), "{}", r.stderr);
}

#[test]
fn two_vms_reach_each_other() {
    let Some(e) = E2e::new("network") else { return };
    let a = e.ok(&["vm", "create", "--name", "a", "--json"]).json();
    let b = e.ok(&["vm", "create", "--name", "b", "--json"]).json();
    assert_ne!(a["guest_ip"], b["guest_ip"]);
    for (from, to) in [("a", &b), ("b", &a)] {
        let ip = to["guest_ip"].as_str().unwrap();
        // sshd answers on port 22 of the other guest, across the bridge
        // (once the other guest's systemd has started it).
        let probe = format!(
            "for i in $(seq 120); do (exec 3<>/dev/tcp/{ip}/22 && head -c 8 <&3) 2>/dev/null && exit 0; sleep 0.5; done; exit 1"
        );
        let r = e.run(&["vm", "exec", from, "--timeout", "90", "--", "bash", "-c", &probe]);
        assert_eq!(r.stdout, "SSH-2.0-", "{from} -> {ip}: {}", r.stderr);
    }
    // Not ext4: refused, nothing registered.
    let r = e.run(&[
        "image",
        "register",
        "--name",
        "junk",
        "--rootfs",
        "/etc/hostname",
        "--kernel",
        crate::harness::KERNEL,
    ]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not an ext4"), "{}", r.stderr);
    assert_eq!(e.ok(&["image", "list", "--json"]).json().as_array().unwrap().len(), 1);
}

/// Issue 14, item 7: a guest that floods its serial console cannot fill
/// the host's disk: past `console_log_max_mib` the log is rotated, and the
/// engine (QEMU's chardev appends) goes on writing at its new start.
#[test]
fn a_chatty_console_stays_bounded() {
    let Some(e) = E2e::with("chatty", &crate::harness::engine(), "console_log_max_mib = 1") else { return };
    e.ok(&["vm", "create", "--name", "chatty"]);
    let id = e.vm("chatty")["id"].as_str().unwrap().to_string();
    let dir = e.dir.path().join("state/banger/vms").join(&id);
    // About 4 MiB of lines straight to the serial port, then a marker.
    let flood = "yes 'chatty console line, seventy-odd characters long, over and over.' \
                 | head -c 4000000 > /dev/ttyS0; echo CHATTY-END > /dev/ttyS0";
    e.ok(&["vm", "exec", "chatty", "--timeout", "300", "--", "sh", "-c", flood]);
    // The end of the flood lands in the current file, or, when a rotation
    // came after it, in the rotated copy; either way the log gets back
    // under its limit.
    let read = |name: &str| std::fs::read(dir.join(name)).unwrap_or_default();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let len = std::fs::metadata(dir.join("console.log")).map(|m| m.len()).unwrap_or(0);
        let end = |b: Vec<u8>| String::from_utf8_lossy(&b).contains("CHATTY-END");
        if len <= 1 << 20 && (end(read("console.log")) || end(read("console.log.1"))) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "console.log is {len} bytes after the flood");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // And the engine goes on writing at the rotated file's new start.
    e.ok(&["vm", "exec", "chatty", "--", "sh", "-c", "echo CHATTY-AFTER > /dev/ttyS0"]);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let logs = e.ok(&["vm", "logs", "chatty"]).stdout;
        let len = std::fs::metadata(dir.join("console.log")).map(|m| m.len()).unwrap_or(0);
        if logs.contains("CHATTY-AFTER") && len <= 1 << 20 {
            assert_eq!(logs.len() as u64, len, "vm logs is the current file");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the console stopped after a rotation ({len} bytes)");
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    let old = std::fs::metadata(dir.join("console.log.1")).unwrap();
    assert_eq!(old.len(), 1 << 20, "the rotated copy keeps the last MiB");
    // Not sparse: the engine really writes at the start after a rotation.
    use std::os::unix::fs::MetadataExt;
    let cur = std::fs::metadata(dir.join("console.log")).unwrap();
    assert!(cur.blocks() * 512 <= (1 << 20) + (64 << 10), "console.log: {} blocks", cur.blocks());
    e.ok(&["vm", "exec", "chatty", "--", "true"]);
}

/// Issue 14: the daemon is killed (-9) at spread-out moments of a create
/// (with its boot) and of a delete; after the next start nothing is left
/// that no VM accounts for: every row has a settled state, a running VM
/// has its engine, a VM dir exists exactly for each row, no engine or tap
/// belongs to a VM that is not running.
#[test]
fn a_daemon_killed_at_any_moment_leaves_nothing() {
    let Some(e) = E2e::new("kill-anywhere") else { return };
    e.ok(&["ps"]);
    for (i, delay_ms) in [50u64, 5, 800, 40, 2500, 120].into_iter().enumerate() {
        let op: Vec<String> = if i % 2 == 0 {
            vec!["vm".into(), "create".into(), "--name".into(), format!("k{i}")]
        } else {
            // Odd rounds delete what the round before made (or left).
            vec!["vm".into(), "delete".into(), format!("k{}", i - 1)]
        };
        let mut child = e
            .cmd()
            .args(&op)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let daemon = e.daemon_pid().expect("a daemon");
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(daemon), nix::sys::signal::Signal::SIGKILL);
        let _ = child.wait();
        // The next command starts a daemon, which reconciles; what was
        // booting settles once reconcile has waited for its agent.
        let deadline = Instant::now() + Duration::from_secs(180);
        let vms = loop {
            let vms = e.ok(&["ps", "--json"]).json();
            if vms.as_array().unwrap().iter().all(|v| v["state"] != "starting" && v["state"] != "stopping") {
                break vms;
            }
            assert!(Instant::now() < deadline, "VMs did not settle: {vms}");
            std::thread::sleep(Duration::from_millis(300));
        };
        let rows: Vec<(String, String)> = vms
            .as_array()
            .unwrap()
            .iter()
            .map(|v| (v["id"].as_str().unwrap().to_string(), v["state"].as_str().unwrap().to_string()))
            .collect();
        eprintln!("round {i}: {op:?} killed at {delay_ms} ms -> {rows:?}");
        let vm_dirs: Vec<String> = std::fs::read_dir(e.dir.path().join("state/banger/vms"))
            .map(|d| d.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        for d in &vm_dirs {
            assert!(
                rows.iter().any(|(id, _)| id == d),
                "round {i} ({op:?} killed at {delay_ms} ms): VM dir {d} has no row"
            );
        }
        for (id, state) in &rows {
            assert!(vm_dirs.contains(id), "round {i}: VM {id} has no dir");
            let engines = crate::harness::processes_mentioning(id);
            let tap = e.links().contains(&format!("bg{id}"));
            if state == "running" {
                assert!(!engines.is_empty(), "round {i}: running VM {id} has no engine");
                assert!(
                    e.run(&["vm", "exec", id, "--", "true"]).code == 0,
                    "round {i}: running VM {id} does not answer"
                );
            } else {
                assert!(engines.is_empty(), "round {i}: {state} VM {id} still has processes: {engines:?}");
                assert!(!tap, "round {i}: {state} VM {id} still has its tap");
            }
        }
        // No engine of this test's dirs without a row.
        let marker = e.dir.path().display().to_string();
        for (pid, cmd) in crate::harness::processes_mentioning(&marker) {
            if cmd.contains("bangerd") || cmd.contains("banger ") {
                continue;
            }
            assert!(
                rows.iter().any(|(id, _)| cmd.contains(id.as_str())),
                "round {i}: pid {pid} belongs to no VM: {cmd}"
            );
        }
    }
}

/// Issue 14: `image pull` killed with the daemon at moments spread over
/// its download, unpack, agent injection and publication. After each
/// restart the image is either whole and listed or absent, no staging or
/// scratch dir and no process of the pull is left, and the VM that existed
/// before is still there; the last pull then completes and boots.
#[test]
fn a_daemon_killed_mid_pull_leaves_nothing() {
    let Some(e) = E2e::new("kill-mid-pull") else { return };
    // A catalog beside a bundle of the fixture image, as users serve one.
    let cat = e.dir.path().join("catalog");
    std::fs::create_dir_all(&cat).unwrap();
    let bundle = cat.join("pulled.tar.zst");
    let entry = e.ok(&["image", "bundle", IMAGE, "--output", bundle.to_str().unwrap(), "--json"]).json();
    let entry =
        entry["catalog_entry"].as_str().unwrap().replace(&format!("name = \"{IMAGE}\""), "name = \"pulled\"");
    std::fs::write(cat.join("catalog.toml"), format!("version = 1\n{entry}\n")).unwrap();
    let config = e.dir.path().join("config/banger/config.toml");
    let mut text = std::fs::read_to_string(&config).unwrap();
    text.push_str(&format!("[[catalog]]\nfile = \"{}\"\n", cat.join("catalog.toml").display()));
    std::fs::write(&config, text).unwrap();
    e.ok(&["vm", "create", "--no-start", "--name", "keep"]);
    let keep = e.vm("keep")["id"].as_str().unwrap().to_string();
    kill_daemon(&e); // the next command's daemon reads the catalog

    let images_dir = e.dir.path().join("state/banger/images");
    let scratch = e.dir.path().join("cache/banger/unpack");
    let listed = |dir: &std::path::Path| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .map(|d| d.flatten().map(|x| x.file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        v.sort();
        v
    };
    let mut outcomes = Vec::new();
    // Each round kills the daemon this long after the pull prints a phase
    // (plain lines on a pipe): copying the bundle (and hashing it on the way), and
    // through the unpack, agent injection, hashing and publication.
    let rounds = [
        ("copying", 0u64),
        ("copying", 400),
        ("unpacking image", 0),
        ("unpacking image", 800),
        ("unpacking image", 2000),
        ("unpacking image", 3500),
        ("unpacking image", 5000),
    ];
    for (phase, delay_ms) in rounds {
        e.ok(&["image", "ls"]); // a daemon up, so the kill lands in the pull
        let mut pull = e
            .cmd()
            .args(["image", "pull", "pulled"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = std::io::BufReader::new(pull.stderr.take().unwrap());
        let seen = std::io::BufRead::lines(stderr).map_while(Result::ok).any(|l| l.contains(phase));
        assert!(seen, "the pull never printed {phase:?}");
        std::thread::sleep(Duration::from_millis(delay_ms));
        let finished = pull.try_wait().unwrap().is_some();
        kill_daemon(&e);
        let _ = pull.wait();
        let at = format!("{phase} +{delay_ms} ms");
        // The next command starts a daemon, which sweeps.
        let images = e.ok(&["image", "ls", "--json"]).json();
        let rows: Vec<String> =
            images.as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
        let pulled = images.as_array().unwrap().iter().find(|i| i["name"] == "pulled").cloned();
        outcomes.push((at.clone(), finished, pulled.is_some()));
        let mut ids = rows.clone();
        ids.sort();
        assert_eq!(listed(&images_dir), ids, "killed at {at}: image dirs do not match the rows");
        assert!(listed(&scratch).is_empty(), "killed at {at}: scratch left: {:?}", listed(&scratch));
        let marker = e.dir.path().display().to_string();
        let strays: Vec<_> = crate::harness::processes_mentioning(&marker)
            .into_iter()
            .filter(|(_, cmd)| !cmd.contains("bangerd"))
            .collect();
        assert!(strays.is_empty(), "killed at {at}: processes of the pull are left: {strays:?}");
        assert_eq!(e.vm("keep")["id"], keep.as_str(), "killed at {at}: the existing VM is lost");
        if let Some(p) = pulled {
            // Whole, or not listed: a listed image's files are all there.
            let dir = images_dir.join(p["id"].as_str().unwrap());
            let size = std::fs::metadata(dir.join("rootfs.ext4")).map(|m| m.len()).unwrap_or(0);
            assert_eq!(size, p["size_bytes"].as_u64().unwrap(), "killed at {at}: {p}");
            e.ok(&["image", "rm", "pulled"]);
        }
    }
    eprintln!("kill moments (phase +ms, pull had finished, image listed after): {outcomes:?}");
    assert!(outcomes.iter().any(|(_, done, listed)| !done && !listed), "no kill landed inside a pull");
    e.ok(&["image", "pull", "pulled", "--quiet"]);
    e.ok(&["vm", "create", "--image", "pulled", "--name", "p"]);
    assert_eq!(e.ok(&["vm", "exec", "p", "--", "cat", "/etc/hostname"]).stdout.trim(), "p");
}

fn kill_daemon(e: &E2e) {
    if let Some(pid) = e.daemon_pid() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::path::Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Issue 14: what applies of the jailer to QEMU (`jailer_enabled` on a root
/// daemon): its QEMU and vhost-device-vsock in a cgroup of the VM's own,
/// capped from its size (one vCPU; 512 MiB + 1 GiB for TCG's translation
/// cache), with QEMU's seccomp sandbox; the guest works within it, and
/// deleting the VM removes the cgroup.
#[test]
fn a_confined_qemu_vm_gets_its_own_capped_cgroup() {
    if crate::harness::engine() != "qemu" {
        banger_testkit::skip("e2e test qemu-confined", "the guest engine here is not QEMU");
        return;
    }
    let Some(e) = E2e::with("qemu-confined", "qemu", "boot_timeout_secs = 120\njailer_enabled = true") else {
        return;
    };
    e.ok(&["vm", "create", "--name", "c", "--vcpu", "1", "--memory", "512M"]);
    let v = e.vm("c");
    let id = v["id"].as_str().unwrap().to_string();
    let want = format!("/banger-qemu/{id}");
    let procs = crate::harness::processes_mentioning(&id);
    assert!(procs.len() >= 2, "qemu and its vsock backend: {procs:?}");
    for (pid, cmd) in &procs {
        if cmd.contains("bangerd") {
            continue;
        }
        let cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
        assert!(cgroup.lines().any(|l| l.ends_with(&want)), "{cmd} is not in {want}: {cgroup}");
        if cmd.contains("qemu-system") {
            assert!(cmd.contains("-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny"), "{cmd}");
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            assert!(
                status.lines().any(|l| l.starts_with("Seccomp:") && l.ends_with('2')),
                "no seccomp filter"
            );
        }
    }
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let (mem, dir) = if v2 {
        let d = std::path::PathBuf::from("/sys/fs/cgroup/banger-qemu").join(&id);
        (d.join("memory.max"), d)
    } else {
        let d = std::path::PathBuf::from("/sys/fs/cgroup/memory/banger-qemu").join(&id);
        (d.join("memory.limit_in_bytes"), d)
    };
    assert_eq!(std::fs::read_to_string(&mem).unwrap().trim(), ((512u64 + 1024) << 20).to_string());
    assert_eq!(e.ok(&["vm", "exec", "c", "--", "sh", "-c", "echo ok"]).stdout, "ok\n");
    e.ok(&["vm", "delete", "c"]);
    e.assert_nothing_left(&id);
    assert!(!dir.exists(), "the cgroup outlived its VM: {}", dir.display());
}
