//! Interactive use from a real terminal, right after boot: `vm run`'s shell,
//! `vm run PATH`'s shell in the copied repo, `vm exec -it` the moment
//! `vm create` returns — on the Debian image (systemd takes over PID 1
//! seconds after the agent answers) and on an OCI image with no init at all.
//! Each types commands, reads their output off the screen, resizes the
//! window, presses Ctrl-C and checks the exit status banger returns.
//!
//! Needles are chosen so the typed line's own echo cannot match them: the
//! command computes what the test waits for (`$((6*7))`, `tr`).

use crate::harness::E2e;
use crate::term::Term;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// Booting under TCG plus the first command.
const BOOT: Duration = Duration::from_secs(180);
/// One command in a running guest.
const STEP: Duration = Duration::from_secs(20);

fn on_term(e: &E2e, args: &[&str]) -> Term {
    let mut c = e.cmd();
    c.args(args);
    Term::spawn(c, 24, 80)
}

/// Window size, resize, Ctrl-C and the shell's exit status, on a shell that
/// has already answered once.
fn drive_shell(t: &mut Term, exit_code: u8) {
    t.send("stty size | tr ' ' x\r");
    t.expect("24x80", STEP);
    t.resize(41, 117);
    t.send("stty size | tr ' ' x\r");
    t.expect("41x117", STEP);
    // Ctrl-C interrupts the guest's foreground process; banger and the
    // shell stay.
    t.send("sleep 600\r");
    std::thread::sleep(Duration::from_secs(2));
    t.send("\x03");
    t.send("echo alive-$((2+3))\r");
    t.expect("alive-5", STEP);
    assert!(t.running(), "Ctrl-C ended banger itself:\n{}", t.text());
    t.send(&format!("exit {exit_code}\r"));
}

#[test]
fn vm_run_gives_a_working_shell_at_once() {
    let Some(e) = E2e::new("interactive-run") else { return };
    let mut t = on_term(&e, &["vm", "run", "--rm"]);
    // Typed while the VM boots, as a person would: the first thing the
    // guest does after agent-ready is open this shell's PTY.
    t.send("echo ready-$((6*7))\r");
    t.expect("ready-42", BOOT);
    t.send("tty | tr / _\r");
    t.expect("_dev_pts_", STEP);
    drive_shell(&mut t, 3);
    assert_eq!(t.wait(Duration::from_secs(120)), 3, "the shell's exit status is banger's");
    assert_eq!(e.ok(&["ps", "--json"]).json(), serde_json::json!([]), "--rm left the VM");
}

#[test]
fn vm_run_repo_shell_starts_in_the_copy() {
    let Some(e) = E2e::new("interactive-repo") else { return };
    let repo = e.dir.path().join("proj");
    std::fs::create_dir_all(&repo).unwrap();
    std::fs::write(repo.join("hello.txt"), "HELLO from the host\n").unwrap();
    let git = |args: &[&str]| {
        let o = Command::new("git").arg("-C").arg(&repo).args(args).output().unwrap();
        assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    };
    git(&["init", "-q", "-b", "main"]);
    git(&["add", "."]);
    git(&["-c", "user.email=t@example.com", "-c", "user.name=T", "commit", "-qm", "first"]);
    let mut t = on_term(&e, &["vm", "run", repo.to_str().unwrap()]);
    t.send("pwd | tr / _; tr a-z A-Z < hello.txt\r");
    t.expect("_root_proj", BOOT);
    t.expect("HELLO FROM THE HOST", STEP);
    t.send("exit\r");
    assert_eq!(t.wait(Duration::from_secs(60)), 0);
}

#[test]
fn exec_it_right_after_create() {
    let Some(e) = E2e::new("interactive-exec") else { return };
    e.ok(&["vm", "create", "--name", "it"]);
    let mut t = on_term(&e, &["vm", "exec", "-it", "it", "--", "bash"]);
    t.send("tty | tr / _; cat <(echo subst-$((1+1)))\r");
    t.expect("_dev_pts_", STEP);
    t.expect("subst-2", STEP);
    drive_shell(&mut t, 5);
    assert_eq!(t.wait(Duration::from_secs(60)), 5);
}

/// Asserts that the guest's /proc/mounts (`mounts`, its text) has /dev/pts,
/// /dev/shm and /dev/mqueue mounted once each, with the right types.
fn assert_dev_mounts(mounts: &str) {
    for (point, fstype) in [("/dev/pts", "devpts"), ("/dev/shm", "tmpfs"), ("/dev/mqueue", "mqueue")] {
        let found: Vec<&str> = mounts
            .lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                (f.get(1) == Some(&point)).then(|| f[2])
            })
            .collect();
        assert_eq!(found, vec![fstype], "{point} in the guest's mounts:\n{mounts}");
    }
}

/// What the agent offers commands is there the moment it answers, and
/// systemd takes the mounts over without failing or stacking a second one.
#[test]
fn the_guest_is_complete_when_the_agent_answers() {
    let Some(e) = E2e::new("early-guest") else { return };
    e.ok(&["vm", "create", "--name", "early"]);
    let probe = "readlink /dev/fd /dev/stdin; cat <(echo subst); echo shm > /dev/shm/t && cat /dev/shm/t; \
                 hostname";
    let r = e.ok(&["vm", "exec", "early", "--", "bash", "-c", probe]);
    assert_eq!(r.stdout, "/proc/self/fd\n/proc/self/fd/0\nsubst\nshm\nearly\n");
    assert_dev_mounts(&e.ok(&["vm", "exec", "early", "--", "cat", "/proc/mounts"]).stdout);

    // Once systemd is up: still one mount each, and none of its mount
    // units failed.
    let wait = "for i in $(seq 900); do s=$(systemctl is-system-running 2>/dev/null); \
                case $s in running|degraded) break;; esac; sleep 0.2; done; echo $s";
    let up = e.ok(&["vm", "exec", "early", "--", "sh", "-c", wait]).stdout;
    assert!(up == "running\n" || up == "degraded\n", "systemd did not finish booting: {up}");
    assert_dev_mounts(&e.ok(&["vm", "exec", "early", "--", "cat", "/proc/mounts"]).stdout);
    let r = e.ok(&[
        "vm",
        "exec",
        "early",
        "--",
        "sh",
        "-c",
        "systemctl is-active dev-mqueue.mount; systemctl list-units --failed --plain --no-legend '*.mount'; \
         cat /proc/1/comm",
    ]);
    assert_eq!(r.stdout, "active\nsystemd\n", "{}", r.stderr);
    let mut t = on_term(&e, &["vm", "exec", "-t", "early", "--", "sh", "-c", "tty | tr / _"]);
    t.expect("_dev_pts_", STEP);
    assert_eq!(t.wait(STEP), 0);
}

#[test]
fn shell_in_an_image_without_init() {
    if !Path::new("/bin/busybox").exists() {
        banger_testkit::skip(
            "e2e test interactive-noinit",
            "needs busybox-static (apt-get install busybox-static)",
        );
        return;
    }
    let Some(e) = E2e::new("interactive-noinit") else { return };
    let applets = ["sh", "tty", "stty", "tr", "sleep", "cat", "stat", "readlink"];
    let archive = crate::images::busybox_archive(e.dir.path(), &applets);
    e.ok(&["image", "import", archive.to_str().unwrap(), "--name", "bbsh"]);
    e.ok(&["vm", "create", "--image", "bbsh", "--name", "bb"]);
    let r = e.ok(&["vm", "exec", "bb", "--", "sh", "-c", "readlink /dev/fd; cat /proc/1/comm"]);
    assert_eq!(r.stdout, "/proc/self/fd\nbanger-init\n", "{}", r.stderr);
    assert_dev_mounts(&e.ok(&["vm", "exec", "bb", "--", "cat", "/proc/mounts"]).stdout);
    // No init, so nothing will start an sshd: `vm ssh` says so at once
    // rather than waiting for one.
    let t = std::time::Instant::now();
    let r = e.run(&["vm", "ssh", "bb", "--", "true"]);
    assert_eq!(r.code, 255, "{}", r.stderr);
    assert!(r.stderr.contains("nothing accepts connections on guest port 22"), "{}", r.stderr);
    assert!(t.elapsed() < Duration::from_secs(30), "vm ssh waited for an sshd that cannot come");
    e.ok(&["vm", "delete", "bb"]);

    let mut t = on_term(&e, &["vm", "run", "--rm", "--image", "bbsh"]);
    t.send("echo ready-$((6*7)); tty | tr / _\r");
    t.expect("ready-42", BOOT);
    t.expect("_dev_pts_", STEP);
    drive_shell(&mut t, 4);
    assert_eq!(t.wait(Duration::from_secs(120)), 4);
}
