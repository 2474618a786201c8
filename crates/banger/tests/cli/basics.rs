use crate::env::Env;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

#[test]
fn version_flag_and_command() {
    let e = Env::new();
    let v = e.ok(&["--version"]);
    assert!(v.stdout.starts_with("banger 0."), "{}", v.stdout);
    let v2 = e.ok(&["version"]);
    assert_eq!(v.stdout, v2.stdout);
    let j = e.ok(&["version", "--json"]).json();
    assert_eq!(j["version"], env!("CARGO_PKG_VERSION"));
    assert!(j["commit"].is_string());
}

#[test]
fn first_use_starts_the_daemon_privately() {
    let e = Env::new();
    let s = e.run(&["daemon", "status"]);
    assert_eq!(s.code, 3, "status of a stopped daemon: {}", s.stdout);
    assert!(s.stdout.contains("not running"));

    let ps = e.ok(&["ps"]);
    assert!(ps.stdout.starts_with("ID"), "{}", ps.stdout);

    let run = e.runtime_dir();
    let dir_meta = std::fs::metadata(&run).unwrap();
    assert_eq!(dir_meta.permissions().mode() & 0o777, 0o700);
    assert_eq!(dir_meta.uid(), nix::unistd::getuid().as_raw());
    let sock_meta = std::fs::metadata(run.join("bangerd.sock")).unwrap();
    assert_eq!(sock_meta.permissions().mode() & 0o777, 0o600);

    let st = e.ok(&["daemon", "status", "--json"]).json();
    assert_eq!(st["running"], true);
    let pid = st["daemon"]["pid"].as_i64().unwrap();
    assert_eq!(Some(pid as i32), e.daemon_pid());
    assert!(std::path::Path::new(st["daemon"]["log_path"].as_str().unwrap()).exists());
    assert!(st["daemon"]["log_path"].as_str().unwrap().starts_with(e.state_dir().to_str().unwrap()));

    // A second command reuses the same daemon.
    e.ok(&["vm", "list"]);
    assert_eq!(e.daemon_pid(), Some(pid as i32));

    let stop = e.ok(&["daemon", "stop"]);
    assert!(stop.stdout.contains("stopped"));
    assert_eq!(e.run(&["daemon", "status"]).code, 3);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            !std::path::Path::new(&format!("/proc/{pid}/cmdline")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .map(|s| s.contains(") Z "))
                    .unwrap_or(true)
        }
    );
}

#[test]
fn records_round_trip_with_json() {
    let e = Env::new();
    e.with_fake_agent();
    e.seed_image();

    let kernels = e.ok(&["kernel", "list", "--json"]).json();
    assert_eq!(kernels.as_array().unwrap().len(), 1);
    assert_eq!(kernels[0]["name"], "k1");
    let images = e.ok(&["image", "list", "--json"]).json();
    assert_eq!(images[0]["name"], "img");
    assert_eq!(images[0]["kernel"], "k1");
    assert_eq!(images[0]["size_bytes"], 32 << 20);

    let vm = e
        .ok(&[
            "vm",
            "create",
            "--no-start",
            "--name",
            "web",
            "--image",
            "img",
            "--memory",
            "2G",
            "--disk-size",
            "4GiB",
            "--vcpu",
            "3",
            "--json",
        ])
        .json();
    assert_eq!(vm["name"], "web");
    assert_eq!(vm["state"], "stopped");
    assert_eq!(
        (vm["memory_mib"].as_u64(), vm["disk_size_mib"].as_u64(), vm["vcpu"].as_u64()),
        (Some(2048), Some(4096), Some(3))
    );
    assert!(vm["last_error"].is_null());
    let id = vm["id"].as_str().unwrap().to_string();

    // A generated name, defaults from config.
    let other = e.ok(&["vm", "create", "--no-start", "--image", "img", "--json"]).json();
    assert_eq!(other["memory_mib"], 1024);
    assert_ne!(other["guest_ip"], vm["guest_ip"]);

    let list = e.ok(&["ps", "--json"]).json();
    assert_eq!(list.as_array().unwrap().len(), 2);
    let table = e.ok(&["vm", "list"]).stdout;
    assert!(table.lines().next().unwrap().starts_with("ID "));
    assert!(table.contains("web") && table.contains("stopped"));

    assert_eq!(e.ok(&["vm", "show", "web", "--json"]).json()["id"], id.as_str());
    assert_eq!(e.ok(&["vm", "show", &id[..5], "--json"]).json()["name"], "web");
    let shown = e.ok(&["vm", "show", "web"]).stdout;
    assert!(shown.contains("state:") && shown.contains("stopped"));

    // Several refs at once, JSON array out.
    let other_name = other["name"].as_str().unwrap();
    let deleted = e.ok(&["vm", "delete", "web", other_name, "--json"]).json();
    assert_eq!(deleted.as_array().unwrap().len(), 2);
    assert_eq!(e.ok(&["ps", "--json"]).json(), serde_json::json!([]));

    // In-use protection, then clean removal.
    e.ok(&["vm", "create", "--no-start", "--name", "user", "--image", "img"]);
    let r = e.fails(&["image", "delete", "img"]);
    assert!(r.stderr.contains("used by VM(s) user"), "{}", r.stderr);
    assert!(r.stderr.contains("hint:"));
    e.ok(&["vm", "rm", "user"]);
    let r = e.fails(&["kernel", "rm", "k1"]);
    assert!(r.stderr.contains("used by image(s) img"), "{}", r.stderr);
    e.ok(&["image", "delete", "img"]);
    e.ok(&["kernel", "rm", "k1"]);
}

#[test]
fn bad_input_is_refused_with_a_hint() {
    let e = Env::new();
    e.with_fake_agent();
    e.seed_image();
    for args in [
        &["vm", "create", "--no-start", "--image", "img", "--name", "Bad_Name"][..],
        &["vm", "create", "--no-start", "--image", "img", "--name", "-lead"],
        &["vm", "create", "--no-start", "--image", "img", "--memory", "12MB"],
        &["vm", "create", "--no-start", "--image", "img", "--memory", "0"],
        &["vm", "create", "--no-start", "--image", "img", "--memory", "64M"],
        &["vm", "create", "--no-start", "--image", "img", "--disk-size", "-5"],
        &["vm", "create", "--no-start", "--image", "img", "--vcpu", "99"],
        &["vm", "create", "--no-start", "--image", "nope"],
        &["vm", "show", "nope"],
        &["vm", "delete", "nope"],
        &["image", "register", "--name", "x", "--rootfs", "/does/not/exist", "--kernel", "k1"],
        &["image", "register", "--name", "x", "--rootfs", "/etc/hostname", "--kernel", "k1"],
        &["kernel", "import", "k2", "--vmlinux", "/bin/ls"],
        &["kernel", "import", "k2", "--vmlinux", "relative/missing"],
    ] {
        let r = e.fails(args);
        let clap_usage_error = r.code == 2;
        assert!(clap_usage_error || r.stderr.contains("hint:"), "banger {args:?}: no hint in {:?}", r.stderr);
    }
    // Nothing was created by any of it.
    assert_eq!(e.ok(&["ps", "--json"]).json(), serde_json::json!([]));
    assert_eq!(e.ok(&["image", "list", "--json"]).json().as_array().unwrap().len(), 1);

    // Duplicate names: conflict, exit 1, no second VM.
    e.ok(&["vm", "create", "--no-start", "--image", "img", "--name", "dup"]);
    let r = e.fails(&["vm", "create", "--no-start", "--image", "img", "--name", "dup"]);
    assert!(r.stderr.contains("already exists"));
    assert_eq!(e.ok(&["ps", "--json"]).json().as_array().unwrap().len(), 1);

    // Partial failure over several refs: the good one is deleted, exit 1.
    let r = e.run(&["vm", "delete", "dup", "ghost"]);
    assert_eq!(r.code, 1);
    assert!(r.stdout.contains("deleted VM dup"));
    assert!(r.stderr.contains("ghost"));
}

#[test]
fn config_show_reports_sources_and_rejects_bad_files() {
    let e = Env::new();
    e.config("[vm_defaults]\nmemory = \"2G\"\n");
    let v = e.ok(&["config", "show", "--json"]).json();
    let entry = |k: &str| v["entries"].as_array().unwrap().iter().find(|x| x["key"] == k).unwrap().clone();
    assert_eq!(entry("vm_defaults.memory")["value"], "2G");
    assert_eq!(entry("vm_defaults.memory")["source"], "file");
    assert_eq!(entry("vm_defaults.vcpu")["source"], "default");
    let text = e.ok(&["config", "show"]).stdout;
    assert!(text.contains("vm_defaults.memory") && text.contains("file"));
    e.ok(&["daemon", "stop"]);

    // A config the daemon cannot accept: it refuses to start, and the CLI
    // says why instead of hanging.
    e.config("bogus_key = 1\n");
    let r = e.fails(&["ps"]);
    assert!(r.stderr.contains("bogus_key") || r.stderr.contains("unknown field"), "{}", r.stderr);
}

/// A daemon that starts no VM leaves the host's interfaces alone: the
/// bridge and the tap pool appear with the first VM start, not before.
#[test]
fn an_idle_daemon_makes_no_bridge_or_taps() {
    if !nix::unistd::geteuid().is_root() {
        // Without root the daemon cannot make a bridge: nothing to prove.
        banger_testkit::skip("an_idle_daemon_makes_no_bridge_or_taps", "needs root");
        return;
    }
    let e = Env::new();
    let bridge = format!("bangercli{}", std::process::id() % 100_000);
    e.config(&format!("[network]\nbridge = \"{bridge}\"\n"));
    e.ok(&["ps"]);
    // The pool refill runs in the background after start-up: give it time.
    std::thread::sleep(std::time::Duration::from_millis(500));
    e.ok(&["ps"]);
    assert!(!std::path::Path::new("/sys/class/net").join(&bridge).exists(), "bridge {bridge} was created");
}

#[test]
fn kernel_build_refuses_a_config_that_is_not_one() {
    let e = Env::new();
    let not_config = e.dir.path().join("notes.txt");
    std::fs::write(&not_config, "just some text\n").unwrap();
    let r = e.fails(&["kernel", "build", "--name", "k", "--config", not_config.to_str().unwrap()]);
    assert!(r.stderr.contains("not a kernel .config") && r.stderr.contains("hint:"), "{}", r.stderr);
    let big = e.dir.path().join("big.config");
    std::fs::write(&big, "CONFIG_X=y\n".repeat(200_000)).unwrap();
    let r = e.fails(&["kernel", "build", "--name", "k", "--config", big.to_str().unwrap()]);
    assert!(r.stderr.contains("larger than a kernel config can be"), "{}", r.stderr);
    let r = e.fails(&["kernel", "build", "--config", "/no/such/file"]);
    assert!(r.stderr.contains("/no/such/file"), "{}", r.stderr);
    assert_eq!(e.ok(&["kernel", "list", "--json"]).json(), serde_json::json!([]));
    e.ok(&["daemon", "stop"]);
}

/// Issue 14, item 6: whatever the umask it is started with, the daemon
/// makes its state and cache private: directories 0700, files 0600 (or
/// 0700 for the few it makes executable), nothing for other users.
#[test]
fn the_daemons_files_are_private_whatever_the_umask() {
    use std::os::unix::process::CommandExt;
    let e = Env::new();
    e.with_fake_agent();
    let mut first = e.cmd();
    // SAFETY: umask is async-signal-safe; runs in the child before exec.
    unsafe {
        first.pre_exec(|| {
            libc::umask(0);
            Ok(())
        });
    }
    assert!(first.args(["ps"]).status().unwrap().success());
    e.seed_image();
    e.ok(&["vm", "create", "--no-start", "--name", "private", "--image", "img"]);
    let mut open = Vec::new();
    for top in [e.state_dir(), e.dir.path().join("cache/banger")] {
        let mut stack = vec![top];
        while let Some(p) = stack.pop() {
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.file_type().is_symlink() {
                continue;
            }
            if m.permissions().mode() & 0o077 != 0 {
                open.push(format!("{} {:o}", p.display(), m.permissions().mode() & 0o7777));
            }
            if m.is_dir() {
                stack.extend(std::fs::read_dir(&p).unwrap().map(|d| d.unwrap().path()));
            }
        }
    }
    assert!(open.is_empty(), "open to other users:\n{}", open.join("\n"));
}

/// Issue 14, item 15: `ssh we.vm` (which runs `vm proxy we.vm 22`) must
/// not reach a VM named `web`; prefixes stay fine for the other commands.
#[test]
fn vm_proxy_takes_whole_names_only() {
    let e = Env::new();
    e.with_fake_agent();
    e.seed_image();
    e.ok(&["vm", "create", "--no-start", "--name", "web", "--image", "img"]);
    let r = e.fails(&["vm", "proxy", "we.vm", "22"]);
    assert!(r.stderr.contains("no VM is named \"we\""), "{}", r.stderr);
    assert_eq!(e.ok(&["vm", "show", "we", "--json"]).json()["name"], "web");
    // The whole name gets as far as the (stopped) VM.
    let r = e.fails(&["vm", "proxy", "web.vm", "22"]);
    assert!(!r.stderr.contains("no VM is named"), "{}", r.stderr);
}

/// A host without the CA bundle (here: pointed at none) gets a clear error
/// with the fix on `image pull`, not a crash (seen in the nested tier).
#[test]
fn image_pull_without_ca_certificates_says_how_to_fix_it() {
    let e = Env::new();
    e.with_fake_agent();
    let empty = e.dir.path().join("no-certs");
    std::fs::create_dir_all(&empty).unwrap();
    let out = e
        .cmd()
        .env("SSL_CERT_FILE", empty.join("none.pem"))
        .env("SSL_CERT_DIR", &empty)
        .args(["image", "pull", "127.0.0.1:9/team/app:1"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("ca-certificates"), "{stderr}");
    // The daemon is still there.
    e.ok(&["image", "list"]);
}

/// `daemon start` starts the daemon (or finds it) and names its socket,
/// which is how the Python SDK finds the daemon the way the CLI does.
#[test]
fn daemon_start_prints_the_socket_and_is_idempotent() {
    let e = Env::new();
    let first = e.ok(&["daemon", "start"]);
    let sock = e.runtime_dir().join("bangerd.sock");
    assert_eq!(first.stdout.trim(), sock.to_str().unwrap());
    let pid = e.daemon_pid().expect("a daemon runs");
    let again = e.ok(&["daemon", "start", "--json"]).json();
    assert_eq!(again["running"], true);
    assert_eq!(again["daemon"]["socket"], sock.to_str().unwrap());
    assert_eq!(again["daemon"]["pid"].as_i64(), Some(i64::from(pid)), "the same daemon");
}
