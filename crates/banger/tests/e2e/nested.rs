//! The nested Firecracker tier: banger's end-to-end scenarios against real
//! Firecracker guests, on hosts whose own KVM cannot run them (kvm_pvm).
//!
//! An L1 VM (Debian bookworm, its stock kernel; built once by
//! `scripts/nested-fixtures`) boots under QEMU/TCG with an emulated AMD SVM
//! CPU, loads `kvm_amd` and so has a real /dev/kvm. Its second disk carries
//! this very test binary, banger, bangerd, the static agent, firecracker and
//! the e2e fixtures; L1 runs the selected tests one by one (`--exact`) with
//! the engine chosen the way a user's would be (`auto`: Firecracker, since
//! KVM runs ordinary guests there) and prints a marker line around each on
//! its serial console, which is how results come back. L1 has no network
//! (`-nic none`); the tests make their own namespaces inside it.
//!
//! L1 itself has been seen to panic under repeated guest boots (see
//! `shared/notes/nested-firecracker.md`), so L1 runs with `panic=5` and
//! `-no-reboot` (a panic, or a soft lockup with `softlockup_panic=1`, ends
//! QEMU), and a crash is retried in a fresh L1
//! from the test that was running, at most [`MAX_L1_CRASHES`] times; every
//! crash is reported with its console tail. An L1 that stops making progress
//! is killed at a deadline.
//!
//! `BANGER_NESTED_TESTS` (comma-separated substrings) narrows the tests;
//! `BANGER_NESTED_BUDGET_SECS` bounds the whole tier (default 2700);
//! `BANGER_NESTED_ENV` (`KEY=VALUE …`) is set for the tests inside L1;
//! `BANGER_NESTED_TEST_TIMEOUT_SECS` is one test's limit there;
//! `BANGER_NESTED_KVM_AMD` gives L1's kvm_amd module options.

use crate::harness::{banger_exe, bangerd_exe, fixtures_dir, static_agent, which};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Test modules that run inside L1 (everything but this tier and the
/// system-install test, which exercises users and units, not the engine).
const MODULES: &[&str] =
    &["lifecycle::", "access::", "run::", "interactive::", "images::", "host::", "firecracker::"];
/// L1 crashes tolerated (each retried in a fresh L1) before the tier fails:
/// L1 has been measured to die about once every three to four tests, and
/// on a bad day (2026-11-29, evening) nine times in a 16-test run (see
/// BENCHMARKS.md). The time budget bounds the whole tier anyway. A crash costs a
/// fresh L1 (about 40 s) and the seed registration (about 35 s). A soft
/// lockup panics L1 (`softlockup_panic=1`), so a hang costs about a minute,
/// not a stall timeout.
const MAX_L1_CRASHES: usize = 16;
/// Guest triple faults (Firecracker's "Unexpected exit reason on vcpu run:
/// Shutdown") tolerated in a run. Nested SVM emulation resets a guest now
/// and then early in its boot (from none to seven times in a 16-test run;
/// see BENCHMARKS.md); a test that failed that way runs again, up to three
/// times in one L1 (a fourth fails it: a guest that resets every boot is
/// a bug, not the emulator), and every reset is reported. Beyond this many
/// in a run, the tier fails.
const MAX_GUEST_RESETS: usize = 16;
/// L1's CPU (`BANGER_NESTED_CPU` overrides): an AMD model with SVM and
/// nested paging, which TCG emulates.
const L1_CPU: &str = "EPYC,+svm,+npt";
/// One test inside L1 is killed (and its logs shown) after this long.
const TEST_TIMEOUT: Duration = Duration::from_secs(420);
/// No marker line, heartbeat included (every 20 s), for this long: L1
/// itself is stuck.
const STALL: Duration = Duration::from_secs(180);

fn cache_dir() -> PathBuf {
    std::env::var_os("BANGER_NESTED_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| "/var/cache/banger-nested".into())
}

/// Why the tier cannot run here, if it cannot: what every Firecracker e2e
/// test needs (root, firecracker, the agent, the fixtures), then QEMU with
/// SVM emulation and the L1 image.
fn missing() -> Option<String> {
    if let Some(why) = crate::harness::missing("firecracker") {
        return Some(why);
    }
    for tool in ["qemu-system-x86_64", "mkfs.ext4"] {
        if which(tool).is_none() && !Path::new("/sbin").join(tool).exists() {
            return Some(format!("{tool} is not installed"));
        }
    }
    let cpus = Command::new("qemu-system-x86_64").args(["-cpu", "help"]).output();
    let cpus = cpus.map(|o| String::from_utf8_lossy(&o.stdout).into_owned()).unwrap_or_default();
    if !cpus.contains("EPYC") || !cpus.split_whitespace().any(|w| w == "svm") {
        return Some("this QEMU cannot emulate an AMD CPU with SVM".into());
    }
    let c = cache_dir();
    if !["l1.ext4", "vmlinuz", "initrd.img"].iter().all(|f| c.join(f).is_file()) {
        return Some(format!("the L1 image is not in {} (scripts/nested-fixtures builds it)", c.display()));
    }
    None
}

/// The tests of this binary that run inside L1: those of [`MODULES`]
/// that `BANGER_NESTED_TESTS` names, or all but the ignored ones (the
/// benchmark and probes) when it names none.
fn selected_tests() -> Vec<String> {
    let me = std::env::current_exe().unwrap();
    let list = |extra: &[&str]| -> Vec<String> {
        let out = Command::new(&me).args(["--list", "--format", "terse"]).args(extra).output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_suffix(": test"))
            .map(String::from)
            .collect()
    };
    let ignored = list(&["--ignored"]);
    let wanted: Vec<String> = std::env::var("BANGER_NESTED_TESTS")
        .map(|v| v.split(',').filter(|s| !s.is_empty()).map(String::from).collect())
        .unwrap_or_default();
    list(&[])
        .into_iter()
        .filter(|t| MODULES.iter().any(|m| t.starts_with(m)))
        .filter(|t| match wanted.is_empty() {
            true => !ignored.contains(t),
            false => wanted.iter().any(|w| t.contains(w.as_str())),
        })
        .collect()
}

/// What L1 runs from its payload disk; its output is the serial console.
const RUN: &str = r#"#!/bin/sh
P=/payload
export PATH=$P/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export BANGER_E2E_BIN_DIR=$P/bin BANGER_E2E_FIXTURES=$P/fixtures BANGER_E2E_NESTED=1 HOME=/root RUST_BACKTRACE=1
TEST_TIMEOUT=$(cat $P/test-timeout)
# Variables the host passed on (BANGER_NESTED_ENV), e.g. BANGER_BENCH_RUNS=5.
set -a
. $P/env
set +a
modprobe kvm_amd 2>/dev/null
# kvm_amd options from the host (BANGER_NESTED_KVM_AMD), e.g. "vgif=0 vls=0".
opts=$(cat $P/kvm-amd)
if [ -n "$opts" ]; then
  modprobe -r kvm_amd && modprobe kvm_amd $opts
fi
if [ ! -c /dev/kvm ]; then
  echo "NESTED-NOKVM $(dmesg | grep -i -m 3 -e svm -e kvm | tr '\n' ' ')"
  exit 0
fi
kvm_params=$(cd /sys/module/kvm_amd/parameters && for p in npt nested vgif vls avic; do [ -f $p ] && printf '%s=%s ' $p "$(cat $p)"; done)
echo "NESTED-READY $(uname -r) $(nproc) cpus $(awk '/MemTotal/ {print $2}' /proc/meminfo) kB; kvm_amd: $kvm_params"
# A heartbeat: L1 can hang without a panic, and the host notices its silence.
( while sleep 20; do echo "NESTED-ALIVE"; done ) &
# One run of test $1 (its exit code in $rc); a run killed at its deadline
# shows what was still running and the logs, and leaves nothing behind.
# $reset says whether a guest of the run was reset by a triple fault
# (Firecracker: "Unexpected exit reason on vcpu run: Shutdown"), which
# nested SVM emulation does now and then to a guest early in its boot.
run_one() {
  { timeout -k 10 $TEST_TIMEOUT $P/bin/e2e --exact "$1" --include-ignored --test-threads=1 --nocapture </dev/null
    echo $? >/tmp/rc; } 2>&1 | tee /tmp/out
  rc=$(cat /tmp/rc)
  if [ $rc -ge 124 ]; then
    echo "== $1 timed out after $TEST_TIMEOUT s; processes:"
    ps -eo pid,etimes,args | grep -e banger -e firecracker | grep -v grep
    for f in /var/tmp/banger-e2e-*/state/banger/bangerd.log /var/tmp/banger-e2e-*/state/banger/vms/*/console.log \
             /var/tmp/banger-e2e-*/state/banger/vms/*/firecracker.log; do
      [ -f "$f" ] && { echo "== $f"; tail -n 25 "$f"; }
    done
    for p in $(ps -eo pid,args | awk '/banger-e2e-/ && !/awk/ {print $1}'); do kill -9 "$p" 2>/dev/null; done
    rm -rf /var/tmp/banger-e2e-*
  fi
  reset=0
  if [ $rc -ne 0 ] && cat /tmp/out /var/tmp/banger-e2e-failures/*/*/firecracker.log /var/tmp/banger-e2e-failures/*/bangerd.log 2>/dev/null |
       grep -q 'exit reason on vcpu run: Shutdown'; then
    reset=1
  fi
  # A failed test keeps its logs (the harness's keep_logs): show the
  # engine's side, which the test's own output does not carry.
  for f in /var/tmp/banger-e2e-failures/*/*/firecracker.log /var/tmp/banger-e2e-failures/*/bangerd.log; do
    [ -f "$f" ] && { echo "== $f"; tail -n 15 "$f"; }
  done
  rm -rf /var/tmp/banger-e2e-failures
}
while read -r t; do
  [ -n "$t" ] || continue
  echo "NESTED-BEGIN $t"
  s=$(date +%s)
  run_one "$t"
  retried=0 resets=0
  while [ $rc -ne 0 ]; do
    if [ $reset = 1 ] && [ $resets -lt 3 ]; then
      # Emulation, not banger: run again, reported (the host caps these).
      resets=$((resets + 1))
      echo "NESTED-GUEST-RESET $t"
    elif [ $retried = 0 ]; then
      # One more try, reported: nested TCG is slow and noisy.
      retried=1
      echo "NESTED-RETRY $t $rc"
    else
      break
    fi
    run_one "$t"
  done
  echo "NESTED-END $t $rc $(( $(date +%s) - s ))"
done < $P/tests
echo "NESTED-DONE"
"#;

/// One run of a test inside L1 is killed after this long
/// (`BANGER_NESTED_TEST_TIMEOUT_SECS`, default [`TEST_TIMEOUT`]).
fn test_timeout() -> Duration {
    std::env::var("BANGER_NESTED_TEST_TIMEOUT_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(TEST_TIMEOUT)
}

fn copy(from: &Path, to: &Path) {
    let ok = Command::new("cp").arg("--sparse=always").arg(from).arg(to).status().unwrap().success();
    assert!(ok, "cannot copy {} to {}", from.display(), to.display());
}

/// Writes the payload disk for `tests` into `dir`.
fn payload(dir: &Path, tests: &[String]) -> PathBuf {
    let stage = dir.join("payload");
    let _ = std::fs::remove_dir_all(&stage);
    for d in ["bin", "fixtures"] {
        std::fs::create_dir_all(stage.join(d)).unwrap();
    }
    copy(&banger_exe(), &stage.join("bin/banger"));
    copy(&bangerd_exe(), &stage.join("bin/bangerd"));
    copy(&static_agent().unwrap(), &stage.join("bin/banger-agent"));
    copy(&which("firecracker").unwrap(), &stage.join("bin/firecracker"));
    if let Some(jailer) = which("jailer") {
        copy(&jailer, &stage.join("bin/jailer"));
    }
    copy(&std::env::current_exe().unwrap(), &stage.join("bin/e2e"));
    copy(&fixtures_dir().join("vmlinux"), &stage.join("fixtures/vmlinux"));
    copy(&fixtures_dir().join("rootfs.ext4"), &stage.join("fixtures/rootfs.ext4"));
    let fc_ci = fixtures_dir().join("fc-ci-vmlinux");
    if fc_ci.is_file() {
        copy(&fc_ci, &stage.join("fixtures/fc-ci-vmlinux"));
    }
    std::fs::write(stage.join("tests"), tests.join("\n") + "\n").unwrap();
    std::fs::write(stage.join("test-timeout"), test_timeout().as_secs().to_string()).unwrap();
    let env = std::env::var("BANGER_NESTED_ENV").unwrap_or_default();
    let env: Vec<&str> = env.split_whitespace().collect();
    for kv in &env {
        let ok = kv.split_once('=').is_some_and(|(k, v)| {
            !k.is_empty()
                && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                && v.chars().all(|c| c.is_ascii_alphanumeric() || "_-.,:/".contains(c))
        });
        assert!(ok, "BANGER_NESTED_ENV takes KEY=VALUE words of plain characters, not {kv:?}");
    }
    std::fs::write(stage.join("env"), env.join("\n") + "\n").unwrap();
    let kvm_amd = std::env::var("BANGER_NESTED_KVM_AMD").unwrap_or_default();
    assert!(
        kvm_amd.chars().all(|c| c.is_ascii_alphanumeric() || "_= ".contains(c)),
        "BANGER_NESTED_KVM_AMD takes module options like \"vgif=0 vls=0\", not {kvm_amd:?}"
    );
    std::fs::write(stage.join("kvm-amd"), kvm_amd).unwrap();
    std::fs::write(stage.join("run"), RUN).unwrap();
    std::fs::set_permissions(stage.join("run"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let img = dir.join("payload.ext4");
    let _ = std::fs::remove_file(&img);
    let out =
        Command::new("mkfs.ext4").args(["-q", "-F", "-d"]).arg(&stage).arg(&img).arg("8G").output().unwrap();
    assert!(
        out.status.success(),
        "mkfs.ext4 of the payload failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::remove_dir_all(&stage).unwrap();
    img
}

/// How one L1 session ended.
enum Session {
    /// Every test ran (results in the markers).
    Done,
    /// L1 has no usable /dev/kvm: the reason.
    NoKvm(String),
    /// QEMU ended before the run did: L1 crashed (or powered off early).
    Crashed,
    /// No progress for [`STALL`], or the tier's budget ran out: L1 killed.
    Stalled,
}

/// Boots L1 on `payload`, follows its console until the run ends, and
/// returns how it ended. The console is kept in `console`.
fn session(payload: &Path, console: &Path, deadline: Instant) -> Session {
    let c = cache_dir();
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-M", "q35", "-accel", "tcg,thread=multi", "-cpu"])
        .arg(std::env::var("BANGER_NESTED_CPU").unwrap_or_else(|_| L1_CPU.to_string()))
        .args(["-smp", "2", "-m", "6144"])
        // Resets (a triple fault ends QEMU under -no-reboot without a word
        // on the console) and guest errors, for the crash report.
        .args(["-d", "guest_errors,cpu_reset", "-D"])
        .arg(console.with_extension("qemu-debug.log"))
        .arg("-kernel")
        .arg(c.join("vmlinuz"))
        .arg("-initrd")
        .arg(c.join("initrd.img"))
        .args(["-append", "root=/dev/vda rw console=ttyS0 panic=5 softlockup_panic=1 quiet loglevel=3"])
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw,snapshot=on", c.join("l1.ext4").display()))
        .arg("-drive")
        .arg(format!("file={},if=virtio,format=raw", payload.display()))
        .args(["-display", "none", "-monitor", "none", "-no-reboot", "-nic", "none", "-serial"])
        .arg(format!("file:{}", console.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(console.with_extension("qemu.log")).unwrap());
    // SAFETY: runs in the child before exec; prctl is async-signal-safe.
    // QEMU dies with this test, whatever ends it.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut qemu, || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = qemu.spawn().expect("cannot start qemu-system-x86_64");
    let mut last_len = 0;
    let mut last_progress = Instant::now();
    let (mut last_runs, mut run_started) = (0, Instant::now());
    let test_limit = test_timeout();
    let ended = loop {
        std::thread::sleep(Duration::from_secs(1));
        let text = console_text(console);
        if text.lines().any(|l| l.starts_with("NESTED-DONE")) {
            break Session::Done;
        }
        if let Some(l) = text.lines().find(|l| l.starts_with("NESTED-NOKVM")) {
            break Session::NoKvm(l.trim_start_matches("NESTED-NOKVM").trim().to_string());
        }
        let markers = text.lines().filter(|l| l.starts_with("NESTED-")).count();
        if markers != last_len {
            last_len = markers;
            last_progress = Instant::now();
        }
        // A run of a test (its start, or a rerun's) counted on this side:
        // L1's own `timeout` has been seen not to fire in an L1 that still
        // sends its heartbeat.
        let runs = text
            .lines()
            .filter(|l| {
                ["NESTED-BEGIN ", "NESTED-RETRY ", "NESTED-GUEST-RESET "].iter().any(|m| l.starts_with(m))
            })
            .count();
        if runs != last_runs {
            last_runs = runs;
            run_started = Instant::now();
        }
        let in_test = text.lines().rfind(|l| l.starts_with("NESTED-BEGIN ") || l.starts_with("NESTED-END "));
        let running = in_test.is_some_and(|l| l.starts_with("NESTED-BEGIN "));
        if child.try_wait().unwrap().is_some() {
            break Session::Crashed;
        }
        let overrun = running && run_started.elapsed() > test_limit + Duration::from_secs(120);
        if last_progress.elapsed() > STALL || overrun || Instant::now() > deadline {
            break Session::Stalled;
        }
    };
    // QEMU powers off by itself after the run; never leave it behind.
    let wait_until = Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() && Instant::now() < wait_until {
        std::thread::sleep(Duration::from_millis(200));
    }
    if child.try_wait().unwrap().is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    ended
}

/// The console's last lines, for a report.
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A test that ran to its end inside L1: name, exit code, seconds.
type Finished = (String, i32, u64);
/// A test's name and the console lines it printed.
type Output = (String, Vec<String>);

/// A console log as text (empty if QEMU never wrote it).
fn console_text(console: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(console).unwrap_or_default()).into_owned()
}

/// Each finished test, and the output lines of each test, from a console's
/// text.
fn results(text: &str) -> (Vec<Finished>, Vec<Output>) {
    let mut done = Vec::new();
    let mut outputs: Vec<(String, Vec<String>)> = Vec::new();
    for line in text.lines() {
        if let Some(t) = line.strip_prefix("NESTED-BEGIN ") {
            outputs.push((t.to_string(), Vec::new()));
        } else if let Some(rest) = line.strip_prefix("NESTED-END ") {
            let f: Vec<&str> = rest.split_whitespace().collect();
            if let [t, rc, secs] = f.as_slice() {
                done.push((t.to_string(), rc.parse().unwrap_or(-1), secs.parse().unwrap_or(0)));
            }
        } else if line.starts_with("NESTED-ALIVE") {
            continue;
        } else if let Some((_, out)) = outputs.last_mut() {
            out.push(line.to_string());
        }
    }
    (done, outputs)
}

#[test]
fn firecracker_guests_nested_in_l1() {
    if let Some(why) = missing() {
        banger_testkit::skip("nested Firecracker tier", &why.to_string());
        return;
    }
    let budget = std::env::var("BANGER_NESTED_BUDGET_SECS").ok().and_then(|v| v.parse().ok()).unwrap_or(2700);
    let deadline = Instant::now() + Duration::from_secs(budget);
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("banger-nested-").tempdir_in("/var/tmp").unwrap();
    let mut remaining = selected_tests();
    assert!(!remaining.is_empty(), "no test matches BANGER_NESTED_TESTS");
    let mut finished: Vec<Finished> = Vec::new();
    let mut failed_output: Vec<Output> = Vec::new();
    let mut crashes: Vec<String> = Vec::new();
    let mut sessions = 0;
    let mut retried: Vec<String> = Vec::new();
    let mut guest_resets: Vec<String> = Vec::new();
    let mut skipped: Vec<String> = Vec::new();
    while !remaining.is_empty() {
        sessions += 1;
        let img = payload(dir.path(), &remaining);
        let console = dir.path().join(format!("console-{sessions}.log"));
        let t0 = Instant::now();
        let ended = session(&img, &console, deadline);
        let text = console_text(&console);
        let (done, outputs) = results(&text);
        retried.extend(text.lines().filter_map(|l| l.strip_prefix("NESTED-RETRY ")).map(String::from));
        guest_resets
            .extend(text.lines().filter_map(|l| l.strip_prefix("NESTED-GUEST-RESET ")).map(String::from));
        assert!(
            guest_resets.len() <= MAX_GUEST_RESETS,
            "guests were reset by a triple fault {} times (more than {MAX_GUEST_RESETS}): {guest_resets:?}",
            guest_resets.len()
        );
        eprintln!("L1 session {sessions}: {} test(s) finished in {:.0?}", done.len(), t0.elapsed());
        for (t, rc, secs) in &done {
            eprintln!("  {} {t} ({secs} s)", if *rc == 0 { "PASS" } else { "FAIL" });
            let output = outputs.iter().filter(|(n, _)| n == t);
            if *rc != 0 {
                failed_output.extend(output.cloned());
            } else {
                // Benchmarks report through lines of their own; a test
                // that could not run says SKIPPED, which is not a pass.
                for line in output.flat_map(|(_, lines)| lines) {
                    if line.starts_with("BENCH") {
                        eprintln!("{line}");
                    } else if line.starts_with("SKIPPED") {
                        eprintln!("    {line}");
                        skipped.push(t.clone());
                    }
                }
            }
        }
        remaining.retain(|t| !done.iter().any(|(d, _, _)| d == t));
        finished.extend(done);
        match ended {
            Session::Done => break,
            Session::NoKvm(why) => {
                banger_testkit::skip(
                    "nested Firecracker tier",
                    &format!("L1 got no /dev/kvm (QEMU's SVM emulation): {why}"),
                );
                return;
            }
            Session::Crashed | Session::Stalled => {
                let what = if matches!(ended, Session::Crashed) {
                    "crashed"
                } else {
                    "stopped making progress and was killed"
                };
                let during = outputs.last().map(|(t, _)| t.clone()).filter(|t| remaining.contains(t));
                let debug = std::fs::read(console.with_extension("qemu-debug.log")).unwrap_or_default();
                let triple = String::from_utf8_lossy(&debug).to_lowercase().contains("triple fault");
                let report = format!(
                    "L1 session {sessions} {what}{} during {}; console tail:\n{}",
                    if triple { " (QEMU logged a triple fault of L1)" } else { "" },
                    during.as_deref().unwrap_or("boot"),
                    tail(&text, 40)
                );
                eprintln!("{report}");
                crashes.push(report);
                assert!(
                    crashes.len() <= MAX_L1_CRASHES && Instant::now() < deadline,
                    "the nested tier gave up after {} L1 crash(es) or stall(s) in {:.0?}",
                    crashes.len(),
                    started.elapsed()
                );
            }
        }
    }
    let failed: Vec<&String> = finished.iter().filter(|(_, rc, _)| *rc != 0).map(|(t, _, _)| t).collect();
    skipped.dedup();
    eprintln!(
        "nested Firecracker tier: {} passed, {} skipped, {} failed, {} L1 session(s), {} L1 crash(es), {:.0?}",
        finished.len() - failed.len() - skipped.len(),
        skipped.len(),
        failed.len(),
        sessions,
        crashes.len(),
        started.elapsed()
    );
    if !guest_resets.is_empty() {
        eprintln!("run again after a guest's triple fault (nested emulation): {guest_resets:?}");
    }
    if !retried.is_empty() {
        eprintln!("failed once and were run again inside L1 (test, first exit code): {retried:?}");
    }
    for (t, out) in &failed_output {
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "---- output of {t} in L1 ----\n{}", out.join("\n"));
    }
    assert!(failed.is_empty(), "tests failed inside L1: {failed:?}");
}
