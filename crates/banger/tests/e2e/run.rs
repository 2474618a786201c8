//! `banger vm run`: the three modes, the workspace copy, export, --rm, -d,
//! --dry-run and bad input, against real guests.

use crate::harness::{processes_mentioning, E2e};
use sha2::Digest;
use std::path::Path;
use std::process::Command;

fn git(dir: &Path, args: &[&str]) -> String {
    let o = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A repository with history, an uncommitted edit, an untracked file, an
/// ignored file, a binary file and an executable.
fn repo(root: &Path) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let r = root.join("proj");
    std::fs::create_dir_all(r.join("src")).unwrap();
    git(&r, &["init", "-q", "-b", "main"]);
    git(&r, &["config", "user.email", "t@example.com"]);
    git(&r, &["config", "user.name", "T"]);
    git(&r, &["remote", "add", "origin", "https://example.com/proj.git"]);
    std::fs::write(r.join(".gitignore"), "*.log\n").unwrap();
    std::fs::write(r.join("README"), "one\n").unwrap();
    std::fs::write(r.join("src/tool.sh"), "#!/bin/sh\necho tool\n").unwrap();
    std::fs::set_permissions(r.join("src/tool.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(r.join("blob.bin"), (0..4096u32).map(|i| (i * 31 % 256) as u8).collect::<Vec<_>>())
        .unwrap();
    git(&r, &["add", "."]);
    git(&r, &["commit", "-qm", "first"]);
    std::fs::write(r.join("README"), "one\ntwo\n").unwrap();
    git(&r, &["commit", "-qam", "second"]);
    std::fs::write(r.join("README"), "one\ntwo\nuncommitted\n").unwrap();
    std::fs::write(r.join("notes.txt"), "untracked\n").unwrap();
    std::fs::write(r.join("build.log"), "ignored\n").unwrap();
    r
}

fn sha(p: &Path) -> String {
    hex::encode(sha2::Sha256::digest(std::fs::read(p).unwrap()))
}

#[test]
fn run_modes_exit_codes_and_rm() {
    let Some(e) = E2e::new("run-modes") else { return };
    let r = e.run(&["vm", "run", "--rm", "--", "true"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("spec: ") && r.stderr.contains("vCPU"), "{}", r.stderr);
    let r = e.run(&["vm", "run", "--rm", "--", "sh", "-c", "pwd; exit 3"]);
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert_eq!(r.stdout, "/root\n");
    // --rm left nothing: no VM, dir, tap or process.
    assert_eq!(e.ok(&["ps", "--json"]).json(), serde_json::json!([]));
    assert_eq!(std::fs::read_dir(e.dir.path().join("state/banger/vms")).unwrap().count(), 0);
    // No VM's own tap is left; only the warm pool (bgpool*) stays.
    let links = e.links();
    assert!(
        !links.iter().any(|l| l.starts_with("bg") && !l.starts_with("bgpool")),
        "a tap was left: {links:?}"
    );
    assert!(links.iter().filter(|l| l.starts_with("bgpool")).count() <= 4, "the pool grew: {links:?}");
    assert!(processes_mentioning(&e.dir.path().display().to_string()).is_empty());
    // A bare shell reads its commands from a non-terminal stdin.
    let r = e.run_stdin(&["vm", "run", "--rm"], Some(b"echo from-stdin\nexit 4\n"));
    assert_eq!((r.code, r.stdout.as_str()), (4, "from-stdin\n"), "{}", r.stderr);
}

#[test]
fn workspace_lands_exactly_and_exports_back() {
    let Some(e) = E2e::new("run-workspace") else { return };
    let r = repo(e.dir.path());
    let head = git(&r, &["rev-parse", "HEAD"]).trim().to_string();

    // --dry-run lists exactly the files and creates nothing.
    let dry = e.ok(&["vm", "run", r.to_str().unwrap(), "--include-untracked", "--dry-run"]);
    let listed: Vec<&str> = dry.stdout.lines().collect();
    assert_eq!(listed, vec![".gitignore", "README", "blob.bin", "notes.txt", "src/tool.sh"]);
    assert_eq!(e.ok(&["ps", "--json"]).json(), serde_json::json!([]));

    // Tracked files only by default; ignored never.
    let v = e.ok(&["vm", "run", r.to_str().unwrap(), "--name", "ws", "-d"]);
    assert_eq!(v.stdout.trim(), "ws");
    let vm = e.vm("ws");
    assert_eq!(vm["state"], "running");
    assert_eq!(vm["workspace"]["guest_path"], "/root/proj");
    assert_eq!(vm["workspace"]["head"], head);
    let list = e.ok(&["vm", "list"]).stdout;
    assert!(list.contains("/root/proj"), "{list}");
    // vm exec runs in the workspace by default.
    assert_eq!(e.ok(&["vm", "exec", "ws", "--", "pwd"]).stdout, "/root/proj\n");
    // The seeded disk is the overlay's upper layer: the guest's `/` keeps
    // 0755 whatever the daemon's (private) umask.
    assert_eq!(e.ok(&["vm", "exec", "ws", "--", "stat", "-c", "%a", "/"]).stdout, "755\n");
    let sums = e.ok(&[
        "vm",
        "exec",
        "ws",
        "--",
        "sh",
        "-c",
        "sha256sum README blob.bin src/tool.sh; stat -c %a src/tool.sh; ls notes.txt build.log 2>&1 | sort",
    ]);
    let lines: Vec<&str> = sums.stdout.lines().collect();
    assert!(lines[0].starts_with(&sha(&r.join("README"))), "{}", sums.stdout);
    assert!(lines[1].starts_with(&sha(&r.join("blob.bin"))));
    assert!(lines[2].starts_with(&sha(&r.join("src/tool.sh"))));
    assert_eq!(lines[3], "755");
    assert!(
        sums.stdout.contains("cannot access 'build.log'")
            && sums.stdout.contains("cannot access 'notes.txt'"),
        "{}",
        sums.stdout
    );
    // Same HEAD, history, branch, origin; the uncommitted edit shows as such.
    let g = e.ok(&["vm", "exec", "ws", "--", "sh", "-c", "git rev-parse HEAD; git branch --show-current; git remote get-url origin; git log --format=%s; git diff"]);
    assert!(
        g.stdout.starts_with(&format!("{head}\nmain\nhttps://example.com/proj.git\nsecond\nfirst\n")),
        "{}",
        g.stdout
    );
    assert!(g.stdout.ends_with(&git(&r, &["diff"])), "guest diff differs from the host's:\n{}", g.stdout);

    // Work in the guest: a commit, an edit, a new file, a deletion.
    e.ok(&["vm", "exec", "ws", "--", "sh", "-c", "git -c user.email=g@x -c user.name=g commit -qam guest-commit && echo guest-edit >> README && head -c 300 /dev/urandom > new.bin && git rm -q src/tool.sh"]);
    let before = e
        .ok(&[
            "vm",
            "exec",
            "ws",
            "--",
            "sh",
            "-c",
            "git status --porcelain; git rev-parse HEAD; git count-objects",
        ])
        .stdout;
    let patch = e.dir.path().join("guest.patch");
    e.ok(&["vm", "workspace", "export", "ws", "-o", patch.to_str().unwrap()]);
    let after = e
        .ok(&[
            "vm",
            "exec",
            "ws",
            "--",
            "sh",
            "-c",
            "git status --porcelain; git rev-parse HEAD; git count-objects",
        ])
        .stdout;
    assert_eq!(before, after, "export modified the guest");
    // It applies cleanly to the host repository, uncommitted edit and all.
    git(&r, &["apply", "--check", patch.to_str().unwrap()]);
    git(&r, &["apply", patch.to_str().unwrap()]);
    assert_eq!(std::fs::read_to_string(r.join("README")).unwrap(), "one\ntwo\nuncommitted\nguest-edit\n");
    assert!(!r.join("src/tool.sh").exists());
    let guest_bin = e.ok(&["vm", "exec", "ws", "--", "sha256sum", "new.bin"]).stdout;
    assert!(guest_bin.starts_with(&sha(&r.join("new.bin"))), "binary file changed in transit");

    // Re-prepare with untracked files and a guest-only branch.
    e.ok(&[
        "vm",
        "workspace",
        "prepare",
        "ws",
        r.to_str().unwrap(),
        "--include-untracked",
        "--branch",
        "sandbox",
    ]);
    let g = e
        .ok(&[
            "vm",
            "exec",
            "ws",
            "--",
            "sh",
            "-c",
            "git branch --show-current; cat notes.txt; ls build.log 2>&1 || true",
        ])
        .stdout;
    assert!(g.starts_with("sandbox\nuntracked\n") && g.contains("No such file"), "{g}");
}

#[test]
fn bad_input_is_refused_before_any_vm_exists() {
    let Some(e) = E2e::new("run-bad-input") else { return };
    let plain = e.dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let bare = e.dir.path().join("bare.git");
    git(e.dir.path(), &["init", "-q", "--bare", bare.to_str().unwrap()]);
    let empty = e.dir.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    git(&empty, &["init", "-q"]);
    let r = repo(e.dir.path());
    e.ok(&["vm", "create", "--no-start", "--name", "taken"]);
    for (args, needle) in [
        (vec!["vm", "run", plain.to_str().unwrap()], "not inside a git working tree"),
        (vec!["vm", "run", bare.to_str().unwrap()], "bare git repository"),
        (vec!["vm", "run", "/does/not/exist"], "does not exist"),
        (vec!["vm", "run", empty.to_str().unwrap()], "no commits"),
        (vec!["vm", "run", r.to_str().unwrap(), "--from", "HEAD~1"], "--branch"),
        (
            vec!["vm", "run", r.to_str().unwrap(), "--branch", "x", "--from", "nosuchref"],
            "does not name a commit",
        ),
        (vec!["vm", "run", "--name", "taken", "--", "true"], "already exists"),
        (vec!["vm", "run", "-d", "--rm"], "contradict"),
        (vec!["vm", "run", "-d", "--", "true"], "cannot run a command"),
    ] {
        let out = e.run(&args);
        assert_ne!(out.code, 0, "{args:?} succeeded");
        assert!(out.stderr.contains(needle), "{args:?}: {}", out.stderr);
    }
    // Only the VM made on purpose exists.
    assert_eq!(e.ok(&["ps", "--json"]).json().as_array().unwrap().len(), 1);
}
