//! Guest access end to end: exec streams and PTYs, ssh with pinned host
//! keys, ssh-config, cp round trips, port forwards, and bad input.

use crate::harness::E2e;
use sha2::Digest;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(data))
}

#[test]
fn large_output_and_a_pty() {
    let Some(e) = E2e::new("exec-streams") else { return };
    e.ok(&["vm", "create", "--name", "s"]);
    // 200 MiB through stdout, checked against the guest's own digest.
    let r = e.ok(&[
        "vm",
        "exec",
        "s",
        "--",
        "sh",
        "-c",
        "head -c 209715200 /dev/urandom > /root/big && sha256sum /root/big",
    ]);
    let guest_sum = r.stdout.split_whitespace().next().unwrap().to_string();
    let t = Instant::now();
    let out = e
        .cmd()
        .args(["vm", "exec", "s", "--", "cat", "/root/big"])
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    let took = t.elapsed();
    assert!(out.status.success());
    assert_eq!(out.stdout.len(), 200 << 20);
    assert_eq!(sha256_hex(&out.stdout), guest_sum, "stdout lost or reordered bytes");
    eprintln!("200 MiB through vm exec stdout in {took:?}");

    // -t under a pseudo-terminal (script gives banger one).
    let banger = format!("{:?}", e.cmd());
    let _ = banger;
    let run_script = |inner: &str, input: &str| {
        let mut c = Command::new("script");
        c.args(["-qec", inner, "/dev/null"]);
        for (k, v) in e.cmd().get_envs() {
            if let Some(v) = v {
                c.env(k, v);
            }
        }
        c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().unwrap();
        let mut stdin = child.stdin.take().unwrap();
        let input = input.to_string();
        std::thread::spawn(move || {
            use std::io::Write;
            std::thread::sleep(Duration::from_secs(3));
            let _ = stdin.write_all(input.as_bytes());
            std::thread::sleep(Duration::from_secs(30));
        });
        child.wait_with_output().unwrap()
    };
    let b = format!("ip netns exec {} {}", e.netns, crate::harness::banger_exe().display());
    let out = run_script(&format!("{b} vm exec -t s -- tty"), "");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("/dev/pts/"), "no PTY in the guest: {text:?}");
    // Ctrl-C typed on the terminal reaches the guest process.
    let t = Instant::now();
    let out = run_script(&format!("{b} vm exec -t s -- sleep 60"), "\x03");
    assert!(t.elapsed() < Duration::from_secs(20), "Ctrl-C did not stop the guest process");
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn ssh_pins_host_keys_and_ssh_config_installs() {
    let Some(e) = E2e::new("ssh") else { return };
    e.ok(&["vm", "create", "--name", "k"]);
    // Right after create: sshd starts seconds after the agent answers, and
    // `vm ssh` waits for it instead of failing.
    let r = e.ok(&["vm", "ssh", "k", "--", "echo", "over-ssh"]);
    assert_eq!(r.stdout, "over-ssh\n");
    let kh = e.dir.path().join("state/banger/ssh/known_hosts");
    assert!(std::fs::read_to_string(&kh).unwrap().starts_with("k.vm "), "host key not pinned");

    // The guest's host key changes: banger refuses and explains.
    e.ok(&["vm", "exec", "k", "--", "sh", "-c", "rm -f /etc/ssh/ssh_host_ed25519_key* && ssh-keygen -q -t ed25519 -N '' -f /etc/ssh/ssh_host_ed25519_key && systemctl restart ssh"]);
    let r = e.run(&["vm", "ssh", "k", "--", "true"]);
    assert_eq!(r.code, 255, "{}", r.stderr);
    assert!(
        r.stderr.contains("not the one banger pinned") && r.stderr.contains("--forget-host-key"),
        "{}",
        r.stderr
    );
    let r = e.ok(&["vm", "ssh", "--forget-host-key", "k", "--", "echo", "again"]);
    assert_eq!(r.stdout, "again\n");

    // ssh-config: printed, installed once, used by plain ssh, removed exactly.
    let home = e.dir.path().join("home");
    std::fs::create_dir_all(home.join(".ssh")).unwrap();
    let user_cfg = home.join(".ssh/config");
    std::fs::write(&user_cfg, "Host example\n    User me\n").unwrap();
    let printed = e.ok(&["ssh-config"]).stdout;
    assert!(printed.contains("Host *.vm") && printed.contains("vm proxy %h 22"));
    let with_home = |args: &[&str]| {
        let mut c = e.cmd();
        c.env("HOME", &home).args(args);
        let o = c.output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    with_home(&["ssh-config", "--install"]);
    with_home(&["ssh-config", "--install"]);
    let cfg = std::fs::read_to_string(&user_cfg).unwrap();
    assert_eq!(cfg.matches("# >>> banger ssh-config >>>").count(), 1, "{cfg}");
    assert!(cfg.ends_with("Host example\n    User me\n"));
    let o = Command::new("ip")
        .args(["netns", "exec", &e.netns, "ssh", "-F"])
        .arg(&user_cfg)
        .args(["k.vm", "echo", "plain-ssh"])
        .envs(e.cmd().get_envs().filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&o.stdout), "plain-ssh\n", "{}", String::from_utf8_lossy(&o.stderr));
    with_home(&["ssh-config", "--uninstall"]);
    assert_eq!(std::fs::read_to_string(&user_cfg).unwrap(), "Host example\n    User me\n");

    // Deleting the VM drops its pinned key.
    e.ok(&["vm", "delete", "k"]);
    assert!(!std::fs::read_to_string(&kh).unwrap().contains("k.vm "));
}

#[test]
fn cp_round_trip_keeps_modes_symlinks_and_mtimes() {
    use std::os::unix::fs::PermissionsExt;
    let Some(e) = E2e::new("cp") else { return };
    e.ok(&["vm", "create", "--name", "c"]);
    let src = e.dir.path().join("tree");
    std::fs::create_dir_all(src.join("bin")).unwrap();
    std::fs::write(src.join("bin/run"), "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(src.join("bin/run"), std::fs::Permissions::from_mode(0o754)).unwrap();
    std::fs::write(src.join("data"), vec![7u8; 5 << 20]).unwrap();
    std::os::unix::fs::symlink("bin/run", src.join("link")).unwrap();
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_600_000_000);
    std::fs::File::options().write(true).open(src.join("data")).unwrap().set_modified(old).unwrap();

    e.ok(&["vm", "cp", src.to_str().unwrap(), "c:/root/"]);
    let r = e.ok(&[
        "vm",
        "exec",
        "c",
        "--",
        "sh",
        "-c",
        "stat -c '%a %Y' /root/tree/bin/run /root/tree/data; readlink /root/tree/link; /root/tree/link",
    ]);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert!(lines[0].starts_with("754 "), "{}", r.stdout);
    assert_eq!(lines[1], "644 1600000000");
    assert_eq!(lines[2], "bin/run");
    assert_eq!(lines[3], "ran");
    // A single file under a new name.
    e.ok(&["vm", "cp", src.join("data").to_str().unwrap(), "c:/tmp/renamed"]);
    e.ok(&["vm", "exec", "c", "--", "test", "-f", "/tmp/renamed"]);

    let back = e.dir.path().join("back");
    std::fs::create_dir_all(&back).unwrap();
    e.ok(&["vm", "cp", "c:/root/tree", back.to_str().unwrap()]);
    let b = back.join("tree");
    assert_eq!(std::fs::read(b.join("data")).unwrap(), vec![7u8; 5 << 20]);
    assert_eq!(std::fs::metadata(b.join("bin/run")).unwrap().permissions().mode() & 0o777, 0o754);
    assert_eq!(std::fs::read_link(b.join("link")).unwrap(), std::path::Path::new("bin/run"));
    assert_eq!(std::fs::metadata(b.join("data")).unwrap().modified().unwrap(), old);

    // Bad paths are refused with a message.
    let r = e.run(&["vm", "cp", src.to_str().unwrap(), "c:relative"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("must be absolute"), "{}", r.stderr);
    let r = e.run(&["vm", "cp", "c:/no/such/file", back.to_str().unwrap()]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("/no/such/file"), "{}", r.stderr);
}

/// A one-line HTTP responder on guest port 8000, from systemd's own tools.
const RESPONDER: &str = "nohup systemd-socket-activate -l 8000 -a --inetd sh -c 'printf \"HTTP/1.0 200 OK\\r\\n\\r\\nhello from the guest\\n\"' >/dev/null 2>&1 &";

fn curl(e: &E2e, port: u16) -> String {
    let o = Command::new("ip")
        .args([
            "netns",
            "exec",
            &e.netns,
            "curl",
            "-s",
            "--max-time",
            "10",
            &format!("http://127.0.0.1:{port}/"),
        ])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn port_forwards_answer_and_survive_a_daemon_restart() {
    let Some(e) = E2e::new("forward") else { return };
    e.ok(&["vm", "create", "--name", "f", "-p", "18080:8000"]);
    e.ok(&["vm", "exec", "f", "--", "sh", "-c", RESPONDER]);
    // The responder binds in the background; under TCG and a loaded host
    // that takes a moment. `vm ports` shows it once it listens.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let ports = e.ok(&["vm", "ports", "f", "--json"]).json();
        if ports.as_array().unwrap().iter().any(|p| p["port"] == 8000) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "port 8000 never listened: {ports}");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(curl(&e, 18080), "hello from the guest\n");

    // The daemon crashes; the new one re-opens the forward.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(e.daemon_pid().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    e.ok(&["ps"]);
    assert_eq!(curl(&e, 18080), "hello from the guest\n");

    // A port already forwarded is refused before anything is created.
    let r = e.run(&["vm", "create", "--name", "g", "-p", "18080:80"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("18080"), "{}", r.stderr);
    assert_eq!(e.ok(&["ps", "--json"]).json().as_array().unwrap().len(), 1);

    // vm forward, until interrupted.
    let mut fwd = e.cmd().args(["vm", "forward", "f", "18081:8000"]).stderr(Stdio::piped()).spawn().unwrap();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(curl(&e, 18081), "hello from the guest\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(fwd.id() as i32), nix::sys::signal::Signal::SIGINT)
        .unwrap();
    fwd.wait().unwrap();

    // Stopping the VM closes its forward.
    e.ok(&["vm", "stop", "f"]);
    assert_eq!(curl(&e, 18080), "");
}

#[test]
fn a_vanished_agent_is_reported_and_comes_back() {
    let Some(e) = E2e::new("agent-restart") else { return };
    e.ok(&["vm", "create", "--name", "a"]);
    let r = e.run(&[
        "vm",
        "exec",
        "a",
        "--",
        "sh",
        "-c",
        "kill -9 $(pidof -s banger-agent || pgrep -x banger-agent | head -1)",
    ]);
    assert_ne!(r.code, 0, "the exec should lose its agent");
    // The supervisor restarts the agent within a couple of seconds.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = e.run(&["vm", "exec", "a", "--", "true"]);
        if r.code == 0 {
            break;
        }
        assert!(r.stderr.contains("error:"), "{}", r.stderr);
        assert!(Instant::now() < deadline, "the agent did not come back: {}", r.stderr);
        std::thread::sleep(Duration::from_millis(500));
    }
    let r = e.run(&["vm", "exec", "nosuchvm", "--", "true"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("not found") && r.stderr.contains("hint:"), "{}", r.stderr);
}
