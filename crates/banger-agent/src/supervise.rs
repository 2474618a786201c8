//! `banger-agent --supervise`: keeps the agent running when the image's own
//! init (systemd) is PID 1 and nobody else would restart it. It restarts the
//! agent when it exits (at most once a second) and, on SIGTERM or SIGINT
//! (systemd stopping everything at shutdown), stops the agent and exits.

use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{execv, fork, ForkResult, Pid};
use std::ffi::CString;
use std::time::{Duration, Instant};

pub fn run() -> ! {
    let mut set = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        set.add(s);
    }
    let _ = set.thread_block();
    let mut agent = start();
    let mut last = Instant::now();
    loop {
        match set.wait() {
            Ok(Signal::SIGCHLD) => {
                let mut died = false;
                loop {
                    match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
                        Ok(WaitStatus::StillAlive) | Err(_) => break,
                        Ok(s) if s.pid() == agent => died = true,
                        Ok(_) => {}
                    }
                }
                if died {
                    if last.elapsed() < Duration::from_secs(1) {
                        std::thread::sleep(Duration::from_secs(1));
                    }
                    last = Instant::now();
                    eprintln!("banger-agent supervisor: the agent exited; restarting it");
                    agent = start();
                }
            }
            Ok(_) => {
                if let Some(p) = agent {
                    let _ = kill(p, Signal::SIGTERM);
                }
                std::process::exit(0);
            }
            Err(_) => {}
        }
    }
}

fn start() -> Option<Pid> {
    // SAFETY: the supervisor is single-threaded; the child only execs.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => {
            // The agent must not inherit the supervisor's blocked signals.
            let _ = SigSet::all().thread_unblock();
            let prog = CString::new("/proc/self/exe").unwrap_or_default();
            let name = CString::new("banger-agent").unwrap_or_default();
            let _ = execv(&prog, &[name]);
            std::process::exit(127);
        }
        Ok(ForkResult::Parent { child }) => Some(child),
        Err(_) => None,
    }
}
