//! A pseudo-terminal to drive banger the way a person at a terminal does:
//! the command runs as the session leader of a fresh PTY (its controlling
//! terminal), the test types keys, reads the screen back, resizes the
//! window (the kernel sends SIGWINCH to the foreground process group) and
//! collects the exit status.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub struct Term {
    master: std::fs::File,
    child: Child,
    /// Everything the command wrote to the terminal so far.
    screen: Arc<Mutex<Vec<u8>>>,
    /// How much of `screen` earlier `expect`s consumed.
    seen: usize,
}

fn set_size(fd: &impl AsRawFd, rows: u16, cols: u16) {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize we own from a valid terminal fd.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    assert_eq!(rc, 0, "TIOCSWINSZ: {}", std::io::Error::last_os_error());
}

impl Term {
    /// Starts `cmd` on a new `rows`×`cols` terminal.
    pub fn spawn(mut cmd: Command, rows: u16, cols: u16) -> Term {
        let pty = nix::pty::openpty(None, None).expect("openpty");
        set_size(&pty.master, rows, cols);
        let slave: OwnedFd = pty.slave;
        let io = |f: &OwnedFd| Stdio::from(f.try_clone().unwrap());
        cmd.stdin(io(&slave)).stdout(io(&slave)).stderr(io(&slave));
        // SAFETY: runs in the child before exec; setsid and ioctl are
        // async-signal-safe.
        unsafe {
            cmd.pre_exec(|| {
                nix::unistd::setsid().map_err(std::io::Error::from)?;
                if libc::ioctl(0, libc::TIOCSCTTY as _, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn on the PTY");
        drop(slave);
        let master = std::fs::File::from(pty.master);
        let screen = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let sink = screen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            // EIO once the last process holding the terminal has exited.
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Term { master, child, screen, seen: 0 }
    }

    /// Types `keys` (use "\r" for Enter, "\x03" for Ctrl-C).
    pub fn send(&mut self, keys: &str) {
        self.master.write_all(keys.as_bytes()).unwrap();
    }

    /// The whole screen so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until `needle` appears in what the command wrote since the
    /// last match, and returns that stretch of the screen. Panics with the
    /// screen after `timeout`.
    pub fn expect(&mut self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            {
                let screen = self.screen.lock().unwrap();
                let fresh = &screen[self.seen..];
                if let Some(i) = fresh.windows(needle.len()).position(|w| w == needle.as_bytes()) {
                    let stretch = String::from_utf8_lossy(&fresh[..i + needle.len()]).into_owned();
                    self.seen += i + needle.len();
                    return stretch;
                }
            }
            if Instant::now() >= deadline {
                panic!(
                    "{needle:?} did not appear on the terminal within {timeout:?}; screen:\n{}",
                    self.text()
                );
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                // Let the reader drain what the command wrote last, then
                // look once more before giving up.
                std::thread::sleep(Duration::from_millis(300));
                let screen = self.screen.lock().unwrap();
                if !screen[self.seen..].windows(needle.len()).any(|w| w == needle.as_bytes()) {
                    drop(screen);
                    panic!(
                        "the command exited ({status}) before {needle:?} appeared; screen:\n{}",
                        self.text()
                    );
                }
                continue;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Resizes the window, as a terminal emulator does.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        set_size(&self.master, rows, cols);
    }

    /// The command's exit code; panics (after killing it) past `timeout`.
    pub fn wait(mut self, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code().unwrap_or(-1);
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                panic!("the command did not exit within {timeout:?}; screen:\n{}", self.text());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the command is still running.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Term {
    fn drop(&mut self) {
        if self.running() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
