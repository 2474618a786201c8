//! Engine processes: started detached in their own session, found again by
//! PID + start time + command line, watched through a pidfd.

use crate::ProcessRef;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::Stdio;

/// Spawns `cmd` in a new session with stdin closed and stdout/stderr
/// appended to `log`. The process outlives the daemon.
pub fn spawn_detached(
    cmd: &mut tokio::process::Command,
    log: &Path,
    name: &str,
) -> std::io::Result<(tokio::process::Child, ProcessRef)> {
    let out = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
    cmd.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).kill_on_drop(false);
    // SAFETY: runs in the forked child before exec; setsid(2) is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
    let child = cmd.spawn()?;
    let pid = child.id().ok_or_else(|| std::io::Error::other("the process exited at once"))?;
    let start_time = start_time(pid).unwrap_or(0);
    Ok((child, ProcessRef { pid, start_time, name: name.to_string() }))
}

/// Field 22 of /proc/PID/stat: when the process started, in clock ticks
/// since boot. Together with the PID it names one process for good.
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces; fields after it don't.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split_whitespace().nth(19)?.parse().ok()
}

/// Whether `p` still names a live (non-zombie) process.
pub fn alive(p: &ProcessRef) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{}/stat", p.pid)) else {
        return false;
    };
    let state = stat.rfind(')').and_then(|i| stat[i + 2..].chars().next());
    if state == Some('Z') || state == Some('X') {
        return false;
    }
    p.start_time == 0 || start_time(p.pid) == Some(p.start_time)
}

/// Whether the live process `p` has `needle` in its command line.
pub fn cmdline_contains(p: &ProcessRef, needle: &str) -> bool {
    alive(p)
        && std::fs::read(format!("/proc/{}/cmdline", p.pid))
            .map(|c| String::from_utf8_lossy(&c).replace('\0', " ").contains(needle))
            .unwrap_or(false)
}

/// Sends `sig` to `p` if it is still the same process. `EPERM` means it
/// belongs to another uid (an engine a root daemon started).
pub fn kill(p: &ProcessRef, sig: nix::sys::signal::Signal) -> nix::Result<()> {
    if alive(p) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(p.pid as i32), sig)?;
    }
    Ok(())
}

/// Resolves when `p` exits. Works for processes that are not our children
/// (after a daemon restart), through a pidfd. Does not reap.
pub async fn exited(p: &ProcessRef) -> std::io::Result<()> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, p.pid as libc::pid_t, 0) };
    if fd < 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ESRCH) {
            return Ok(()); // already gone
        }
        return Err(e);
    }
    // SAFETY: fd is a fresh pidfd that nothing else owns.
    let owned = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if !alive(p) {
        return Ok(()); // the PID was recycled before we opened it
    }
    // SAFETY: the AsyncFd owns `owned` for its whole life.
    let afd =
        unsafe { tokio::io::unix::AsyncFd::register_with_interest(owned, tokio::io::Interest::READABLE) }
            .map_err(std::io::Error::from)?;
    let _ = afd.readable().await?;
    Ok(())
}

/// Polls for `path` to appear, up to `timeout`; fails early if `p` dies.
pub async fn wait_for_path(path: &Path, p: &ProcessRef, timeout: std::time::Duration) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if path.exists() {
            return Ok(());
        }
        if !alive(p) {
            return Err(format!("{} exited before creating {}", p.name, path.display()));
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("{} did not create {} within {:?}", p.name, path.display(), timeout));
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

/// Like [`wait_for_path`] for a Unix socket served by `p`, and then until a
/// connection is accepted: the file appears at bind(), a moment before the
/// server's listen(), and a client in between is refused. Only for servers
/// that take a probe connection in their stride (an HTTP API, QMP).
pub async fn wait_for_listener(
    path: &Path,
    p: &ProcessRef,
    timeout: std::time::Duration,
) -> Result<(), String> {
    let deadline = std::time::Instant::now() + timeout;
    wait_for_path(path, p, timeout).await?;
    loop {
        match tokio::net::UnixStream::connect(path).await {
            Ok(_) => return Ok(()),
            Err(e)
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && std::time::Instant::now() < deadline =>
            {
                if !alive(p) {
                    return Err(format!("{} exited before listening on {}", p.name, path.display()));
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            Err(e) => return Err(format!("cannot connect to {}: {e}", path.display())),
        }
    }
}

/// The last `n` lines of a log file, for error messages, read from its
/// last 64 KiB: a guest can make its console log large.
pub fn tail(path: &Path, n: usize) -> String {
    excerpt(path, n, |_| false)
}

/// The last `n` non-empty lines of a log, preceded by up to three earlier
/// lines that `important` picks (an engine's errors, which its shutdown
/// messages push out of a short tail). Reads at most the last 64 KiB.
pub fn excerpt(path: &Path, n: usize, important: impl Fn(&str) -> bool) -> String {
    use std::io::{Read, Seek};
    const WINDOW: u64 = 64 << 10;
    let mut bytes = Vec::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if f.seek(std::io::SeekFrom::Start(len.saturating_sub(WINDOW))).is_ok() {
            let _ = f.take(WINDOW).read_to_end(&mut bytes);
        }
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let (before, last) = lines.split_at(lines.len().saturating_sub(n));
    let picked: Vec<&str> = before.iter().copied().filter(|l| important(l)).collect();
    let picked = &picked[picked.len().saturating_sub(3)..];
    picked.iter().chain(last).copied().collect::<Vec<_>>().join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_excerpt_keeps_the_error_a_tail_would_lose() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("firecracker.log");
        let lines = [
            "t [vm:main:INFO] Running Firecracker v1.16.1",
            "t [vm:fc_vcpu 0:ERROR] Unexpected exit reason on vcpu run: Shutdown",
            "t [vm:main:INFO] Vmm is stopping.",
            "",
            "t [vm:main:INFO] Vmm is stopping.",
            "t [vm:main:INFO] flushed metrics",
            "t [vm:main:ERROR] Firecracker exiting with error. exit_code=1",
        ];
        std::fs::write(&log, lines.join("\n")).unwrap();
        assert_eq!(tail(&log, 3), lines[4..].join("\n"));
        let got = excerpt(&log, 3, |l| l.contains(":ERROR]"));
        assert_eq!(got, [lines[1], lines[4], lines[5], lines[6]].join("\n"));
        assert_eq!(excerpt(&d.path().join("absent"), 3, |_| true), "");
    }

    #[tokio::test]
    async fn detached_process_is_tracked() {
        let d = tempfile::tempdir().unwrap();
        let log = d.path().join("log");
        let mut cmd = tokio::process::Command::new("sh");
        cmd.args(["-c", "echo started; sleep 30"]);
        let (mut child, p) = spawn_detached(&mut cmd, &log, "sh").unwrap();
        assert!(alive(&p));
        assert!(p.start_time > 0);
        assert!(cmdline_contains(&p, "sleep 30"));
        assert!(!cmdline_contains(&p, "nope"));
        // Its own session.
        let sid = nix::unistd::getsid(Some(nix::unistd::Pid::from_raw(p.pid as i32))).unwrap();
        assert_eq!(sid.as_raw(), p.pid as i32);
        for _ in 0..200 {
            if tail(&log, 5).contains("started") {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert!(tail(&log, 5).contains("started"), "stdout did not reach the log");
        let watcher = {
            let p = p.clone();
            tokio::spawn(async move { exited(&p).await })
        };
        let _ = kill(&p, nix::sys::signal::Signal::SIGKILL);
        child.wait().await.unwrap();
        watcher.await.unwrap().unwrap();
        assert!(!alive(&p));
        // A wrong start time is not our process.
        let me = ProcessRef { pid: std::process::id(), start_time: 1, name: "x".into() };
        assert!(!alive(&me));
    }
}
