//! `banger vm exec`: run a command in a VM through its guest agent.
//!
//! stdout and stderr arrive as separate streams and are written to ours;
//! the exit status becomes ours (128+N for a signal, 124 for --timeout).
//! Piped stdin is forwarded (with `-i`, a terminal's too). With `-t` the
//! command gets a PTY: our terminal goes raw, window size and resizes are
//! passed on, and Ctrl-C reaches the guest as a keystroke. Without `-t`,
//! SIGINT/SIGTERM/SIGHUP sent to banger are forwarded to the command.

use crate::client::Client;
use banger_agent_proto::{
    read_frame, write_frame, write_json, ExecRequest, ExitStatus, Frame, Kind, Op, Request, Response,
    SignalRequest, WindowSize,
};
use bytes::Bytes;
use clap::Args;
use std::io::IsTerminal;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  banger vm exec web -- uname -a\n  echo data | banger vm exec web -- sha256sum\n  banger vm exec -it web -- bash\n  banger vm exec --cwd /srv --env MODE=test web -- make check"
)]
pub struct ExecArgs {
    /// VM name, id or unique prefix
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::vms))]
    pub vm: String,
    /// Working directory in the guest (default: the VM's workspace, else the user's home)
    #[arg(long)]
    pub cwd: Option<String>,
    /// Environment variable for the command, KEY=VALUE (repeatable)
    #[arg(short = 'e', long = "env", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// Forward stdin even when it is a terminal
    #[arg(short, long)]
    pub interactive: bool,
    /// Give the command a pseudo-terminal
    #[arg(short, long)]
    pub tty: bool,
    /// Kill the command after this long (e.g. 30, 30s, 5m) and exit 124
    #[arg(long, value_parser = parse_duration)]
    pub timeout: Option<std::time::Duration>,
    /// Run as this guest user (default root)
    #[arg(long)]
    pub user: Option<String>,
    /// The command and its arguments
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{s:?} is not KEY=VALUE")),
    }
}

pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if let Ok(n) = s.parse::<u64>() {
        return Ok(std::time::Duration::from_secs(n));
    }
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 30, 30s or 5m: {e}"))
}

/// Exit codes for failures before the command ran, as shells use them.
/// How long the guest agent may take to answer an exec request: it
/// answers as soon as the command is spawned, or with why it could not be.
/// A guest that stops running after accepting the connection never
/// answers; the exec then fails rather than hang.
const FIRST_ANSWER_WITHIN: Duration = Duration::from_secs(60);

/// The agent's first answer to an exec request on `rd`, within `within`.
async fn first_answer<R: AsyncRead + Unpin>(rd: &mut R, vm: &str, within: Duration) -> anyhow::Result<Frame> {
    match tokio::time::timeout(within, read_frame(rd)).await {
        Ok(frame) => frame?.ok_or_else(|| anyhow::anyhow!("the guest agent closed the connection")),
        Err(_) => Err(banger_api::ApiError::timeout(format!(
            "the guest agent of VM {vm:?} took the command but did not start it within {} s",
            within.as_secs()
        ))
        .with_hint(format!(
            "the guest may be stuck: see `banger vm logs {vm}`, and restart it with `banger vm restart {vm}`"
        ))
        .into()),
    }
}

fn exit_code_for(message: &str) -> i32 {
    if message.contains("not found") {
        127
    } else if message.contains("permission denied") {
        126
    } else {
        125
    }
}

/// Puts an image's defaults under what `req` already sets: its ENV before
/// the request's variables, its WORKDIR when the request has no cwd, its
/// USER when the request names none.
pub fn apply_image_defaults(req: &mut ExecRequest, image: Option<&banger_api::ExecDefaults>) {
    let Some(d) = image else { return };
    let env = d.env.iter().filter_map(|kv| kv.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())));
    req.env = env.chain(std::mem::take(&mut req.env)).collect();
    if req.cwd.is_none() {
        req.cwd = d.workdir.clone();
    }
    if req.user.is_none() {
        req.user = d.user.clone();
    }
}

/// Runs `a` in the VM. `default_cwd` (the workspace) comes before the
/// image's WORKDIR; the image's ENV comes before `--env`; its USER applies
/// unless `--user` is given.
pub async fn run(
    client: &Client,
    a: ExecArgs,
    default_cwd: Option<String>,
    image: Option<&banger_api::ExecDefaults>,
) -> anyhow::Result<i32> {
    let stdin_tty = std::io::stdin().is_terminal();
    let tty = a.tty && stdin_tty;
    if a.tty && !stdin_tty {
        eprintln!("banger: stdin is not a terminal; running without -t");
    }
    let size = if tty { crate::sys::window_size() } else { None };
    let mut req = ExecRequest {
        argv: a.command.clone(),
        env: a.env.clone(),
        cwd: a.cwd.clone().or(default_cwd),
        tty,
        size: size.map(|(rows, cols)| WindowSize { rows, cols }),
        timeout_ms: a.timeout.map(|d| d.as_millis() as u64),
        user: a.user.clone(),
    };
    apply_image_defaults(&mut req, image);
    let stream = client.agent(&a.vm).await?;
    let (mut rd, mut wr) = tokio::io::split(stream);
    write_json(&mut wr, Kind::Request, &Request::new(Op::Exec(req))).await?;
    let first = first_answer(&mut rd, &a.vm, FIRST_ANSWER_WITHIN).await?;
    if let Response::Error { message } = first.json::<Response>()? {
        eprintln!("error: {message}");
        return Ok(exit_code_for(&message));
    }

    // One writer for everything we send: stdin, signals, resizes.
    let (tx, mut rx) = mpsc::channel::<(Kind, Bytes)>(16);
    let writer = tokio::spawn(async move {
        while let Some((k, b)) = rx.recv().await {
            if write_frame(&mut wr, k, &b).await.is_err() {
                break;
            }
        }
        wr
    });
    let _raw = if tty { crate::sys::RawMode::enter().ok() } else { None };
    let forward_stdin = tty || a.interactive || !stdin_tty;
    tokio::spawn(pump_stdin(tx.clone(), forward_stdin, tty));
    tokio::spawn(forward_signals(tx.clone(), tty));

    let mut out = tokio::io::stdout();
    let mut err = tokio::io::stderr();
    let status: ExitStatus = loop {
        let Some(f) = read_frame(&mut rd).await? else {
            anyhow::bail!(
                "the guest agent closed the connection before the command ended (did the VM stop?)"
            );
        };
        match f.kind {
            Kind::Stdout => {
                out.write_all(&f.payload).await?;
                out.flush().await?;
            }
            Kind::Stderr => {
                err.write_all(&f.payload).await?;
                err.flush().await?;
            }
            Kind::Exit => break f.json()?,
            _ => {}
        }
    };
    drop(tx);
    writer.abort();
    if status.timed_out {
        eprintln!("banger: the command timed out and was killed");
    }
    Ok(status.shell_code())
}

async fn pump_stdin(tx: mpsc::Sender<(Kind, Bytes)>, forward: bool, tty: bool) {
    if forward {
        let mut stdin = tokio::io::stdin();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stdin.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if tx.send((Kind::Stdin, Bytes::copy_from_slice(&buf[..n]))).await.is_err() {
                        return;
                    }
                }
            }
        }
        if tty {
            return; // a terminal ends with ^D typed by the user, not EOF
        }
    }
    let _ = tx.send((Kind::StdinEof, Bytes::new())).await;
}

async fn forward_signals(tx: mpsc::Sender<(Kind, Bytes)>, tty: bool) {
    use tokio::signal::unix::{signal, SignalKind};
    if tty {
        let Ok(mut winch) = signal(SignalKind::window_change()) else { return };
        while winch.recv().await.is_some() {
            if let Some((rows, cols)) = crate::sys::window_size() {
                let b = serde_json::to_vec(&WindowSize { rows, cols }).unwrap_or_default();
                if tx.send((Kind::Resize, b.into())).await.is_err() {
                    return;
                }
            }
        }
        return;
    }
    let (Ok(mut int), Ok(mut term), Ok(mut hup)) =
        (signal(SignalKind::interrupt()), signal(SignalKind::terminate()), signal(SignalKind::hangup()))
    else {
        return;
    };
    loop {
        let sig = tokio::select! {
            _ = int.recv() => libc::SIGINT,
            _ = term.recv() => libc::SIGTERM,
            _ = hup.recv() => libc::SIGHUP,
        };
        let b = serde_json::to_vec(&SignalRequest { signal: sig }).unwrap_or_default();
        if tx.send((Kind::Signal, b.into())).await.is_err() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An agent that took the request and then went silent (a guest that
    /// stopped running) ends the exec with a timeout naming the VM and a
    /// hint, after the bound and not before.
    #[tokio::test(start_paused = true)]
    async fn a_silent_agent_ends_the_exec_after_the_bound() {
        let (mut ours, _agent) = tokio::io::duplex(64);
        let started = tokio::time::Instant::now();
        let err = first_answer(&mut ours, "web", Duration::from_secs(60)).await.unwrap_err();
        assert_eq!(started.elapsed().as_secs(), 60);
        let api = err.downcast_ref::<banger_api::ApiError>().expect("an API error");
        assert!(api.message.contains("\"web\"") && api.message.contains("60 s"), "{}", api.message);
        assert!(api.hint.as_deref().is_some_and(|h| h.contains("banger vm restart web")));
    }

    /// An answer that comes in time is returned as it came.
    #[tokio::test(start_paused = true)]
    async fn an_answer_in_time_is_returned() {
        let (mut ours, mut agent) = tokio::io::duplex(256);
        write_json(&mut agent, Kind::Response, &Response::Error { message: "not found: x".into() })
            .await
            .unwrap();
        let f = first_answer(&mut ours, "web", Duration::from_secs(60)).await.unwrap();
        assert!(matches!(f.json::<Response>().unwrap(), Response::Error { .. }));
        drop(agent);
        let err = first_answer(&mut ours, "web", Duration::from_secs(60)).await.unwrap_err();
        assert!(err.to_string().contains("closed the connection"), "{err}");
    }
}
