//! `exec`: run a process with separate stdout/stderr (or a PTY), stream its
//! output, feed its stdin, pass on signals and resizes, report how it ended.

use crate::users;
use banger_agent_proto::{
    read_frame, write_frame, write_json, ExecRequest, ExitStatus, Kind, Response, SignalRequest, WindowSize,
};
use bytes::Bytes;
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// How long output may still arrive after the process exited: a background
/// child holding the pipe open must not hold the exec open forever.
const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(250);
const CHUNK: usize = 64 * 1024;

/// Where the process's stdin goes.
enum Input {
    Pipe(tokio::process::ChildStdin),
    Pty(Arc<Pty>),
}

pub async fn run<R, W>(req: ExecRequest, mut rd: R, mut wr: W) -> std::io::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let spawned = spawn(&req);
    let (mut child, input, outputs) = match spawned {
        Ok(s) => s,
        Err(msg) => return write_json(&mut wr, Kind::Response, &Response::error(msg)).await,
    };
    let pid = child.id().unwrap_or(0);
    write_json(&mut wr, Kind::Response, &Response::ok(serde_json::json!({"pid": pid}))).await?;

    // One writer owns the socket; readers of stdout/stderr send it frames.
    let (tx, mut rx) = mpsc::channel::<(Kind, Bytes)>(8);
    let writer = tokio::spawn(async move {
        while let Some((kind, data)) = rx.recv().await {
            write_frame(&mut wr, kind, &data).await?;
        }
        Ok::<_, std::io::Error>(wr)
    });
    let mut readers = Vec::new();
    for (kind, out) in outputs {
        let tx = tx.clone();
        readers.push(tokio::spawn(pump(kind, out, tx)));
    }

    // Frames from the host: stdin, resizes, signals.
    let pgid = Pid::from_raw(pid as i32);
    let input_task = tokio::spawn(async move {
        let mut input = Some(input);
        while let Ok(Some(f)) = read_frame(&mut rd).await {
            match f.kind {
                Kind::Stdin => {
                    let ok = match input.as_mut() {
                        Some(Input::Pipe(p)) => p.write_all(&f.payload).await.is_ok(),
                        Some(Input::Pty(p)) => p.write_all(&f.payload).await.is_ok(),
                        None => true,
                    };
                    if !ok {
                        // The process closed its stdin; drop what follows.
                        input = None;
                    }
                }
                Kind::StdinEof => {
                    // Closing a pipe is EOF; a PTY gets ^D, as a terminal would.
                    match input.take() {
                        Some(Input::Pty(p)) => {
                            let _ = p.write_all(&[4]).await;
                            input = Some(Input::Pty(p));
                        }
                        Some(Input::Pipe(p)) => drop(p),
                        None => {}
                    }
                }
                Kind::Resize => {
                    if let (Ok(ws), Some(Input::Pty(p))) = (f.json::<WindowSize>(), input.as_ref()) {
                        let _ = crate::sys::set_window_size(&p.fd, ws.rows, ws.cols);
                    }
                }
                Kind::Signal => {
                    if let Ok(s) = f.json::<SignalRequest>() {
                        if let Ok(sig) = Signal::try_from(s.signal) {
                            let _ = killpg(pgid, sig);
                        }
                    }
                }
                _ => {}
            }
        }
    });

    let mut timed_out = false;
    let status = match req.timeout_ms {
        Some(ms) => match tokio::time::timeout(Duration::from_millis(ms), child.wait()).await {
            Ok(s) => s,
            Err(_) => {
                timed_out = true;
                let _ = killpg(pgid, Signal::SIGKILL);
                child.wait().await
            }
        },
        None => child.wait().await,
    };
    for r in readers {
        let _ = tokio::time::timeout(DRAIN_AFTER_EXIT, r).await;
    }
    input_task.abort();
    let exit = match status {
        Ok(s) => ExitStatus { code: s.code(), signal: s.signal(), timed_out },
        Err(_) => ExitStatus { code: None, signal: None, timed_out },
    };
    drop(tx);
    let mut wr = match writer.await {
        Ok(Ok(wr)) => wr,
        _ => return Ok(()), // the host went away; nobody to tell
    };
    write_json(&mut wr, Kind::Exit, &exit).await?;
    wr.shutdown().await.ok();
    Ok(())
}

/// A source of process output.
enum Output {
    Pipe(Box<dyn AsyncRead + Unpin + Send>),
    Pty(Arc<Pty>),
}

async fn pump(kind: Kind, out: Output, tx: mpsc::Sender<(Kind, Bytes)>) {
    let mut buf = vec![0u8; CHUNK];
    match out {
        Output::Pipe(mut r) => loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((kind, Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        return;
                    }
                }
            }
        },
        Output::Pty(p) => loop {
            // EIO once every process holding the terminal has exited.
            match p.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if tx.send((kind, Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        return;
                    }
                }
            }
        },
    }
}

type Spawned = (tokio::process::Child, Input, Vec<(Kind, Output)>);

fn spawn(req: &ExecRequest) -> Result<Spawned, String> {
    let Some(program) = req.argv.first() else {
        return Err("exec needs a command".into());
    };
    let user = users::resolve(req.user.as_deref())?;
    let cwd = req.cwd.clone().unwrap_or_else(|| user.home.clone());
    if !std::path::Path::new(&cwd).is_dir() {
        return Err(format!("working directory {cwd} does not exist in the guest"));
    }
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(&req.argv[1..]).current_dir(&cwd).env_clear();
    cmd.env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", &user.home)
        .env("USER", &user.name)
        .env("LOGNAME", &user.name)
        .env("SHELL", &user.shell);
    if req.tty {
        cmd.env("TERM", "xterm-256color");
    }
    for (k, v) in &req.env {
        if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
            return Err(format!("invalid environment variable {k:?}"));
        }
        cmd.env(k, v);
    }
    if user.uid != 0 {
        cmd.uid(user.uid).gid(user.gid);
    }
    let not_found = |e: std::io::Error| match e.kind() {
        std::io::ErrorKind::NotFound => format!("{program}: command not found in the guest"),
        std::io::ErrorKind::PermissionDenied => format!("{program}: permission denied"),
        _ => format!("cannot run {program}: {e}"),
    };
    if req.tty {
        let pty = nix::pty::openpty(None, None).map_err(|e| format!("cannot allocate a PTY: {e}"))?;
        if let Some(ws) = req.size {
            let _ = crate::sys::set_window_size(&pty.master, ws.rows, ws.cols);
        }
        let slave: OwnedFd = pty.slave;
        if user.uid != 0 {
            // The terminal belongs to whoever runs in it, as login(1) does it.
            let _ = nix::unistd::fchown(&slave, Some(user.uid.into()), None);
        }
        let dup = |f: &OwnedFd| f.try_clone().map(Stdio::from).map_err(|e| e.to_string());
        cmd.stdin(dup(&slave)?).stdout(dup(&slave)?).stderr(dup(&slave)?);
        // SAFETY: runs in the forked child before exec; setsid and ioctl
        // are async-signal-safe.
        unsafe {
            cmd.pre_exec(|| crate::sys::become_session_leader_with_tty(0));
        }
        let child = cmd.spawn().map_err(not_found)?;
        drop(slave);
        let master = Arc::new(Pty::new(pty.master).map_err(|e| format!("PTY setup failed: {e}"))?);
        Ok((child, Input::Pty(master.clone()), vec![(Kind::Stdout, Output::Pty(master))]))
    } else {
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).process_group(0);
        let mut child = cmd.spawn().map_err(not_found)?;
        let stdin = child.stdin.take().ok_or("no stdin pipe")?;
        let stdout = child.stdout.take().ok_or("no stdout pipe")?;
        let stderr = child.stderr.take().ok_or("no stderr pipe")?;
        Ok((
            child,
            Input::Pipe(stdin),
            vec![
                (Kind::Stdout, Output::Pipe(Box::new(stdout))),
                (Kind::Stderr, Output::Pipe(Box::new(stderr))),
            ],
        ))
    }
}

/// The master side of a PTY, non-blocking, driven by the runtime.
pub struct Pty {
    fd: AsyncFd<OwnedFd>,
}

impl Pty {
    fn new(fd: OwnedFd) -> std::io::Result<Pty> {
        let flags = nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_GETFL).map_err(std::io::Error::from)?;
        let flags = nix::fcntl::OFlag::from_bits_truncate(flags) | nix::fcntl::OFlag::O_NONBLOCK;
        nix::fcntl::fcntl(&fd, nix::fcntl::FcntlArg::F_SETFL(flags)).map_err(std::io::Error::from)?;
        // SAFETY: `fd` is an open PTY master that the AsyncFd owns for its
        // whole life; OwnedFd always reports that same descriptor.
        let fd = unsafe { AsyncFd::register(fd) }.map_err(std::io::Error::from)?;
        Ok(Pty { fd })
    }

    async fn read(&self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let mut guard = self.fd.readable().await?;
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(std::io::Error::from)) {
                Ok(r) => return r,
                Err(_would_block) => continue,
            }
        }
    }

    async fn write_all(&self, mut data: &[u8]) -> std::io::Result<()> {
        while !data.is_empty() {
            let mut guard = self.fd.writable().await?;
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), data).map_err(std::io::Error::from)) {
                Ok(Ok(n)) => data = &data[n..],
                Ok(Err(e)) => return Err(e),
                Err(_would_block) => continue,
            }
        }
        Ok(())
    }
}

impl AsRawFd for Pty {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.fd.get_ref().as_raw_fd()
    }
}
