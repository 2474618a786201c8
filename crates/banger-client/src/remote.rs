//! A daemon on another machine, reached as Docker reaches one: each
//! connection is `ssh HOST banger system dial-stdio`, whose stdin and
//! stdout carry the same HTTP/1.1 API the local socket does. No listener
//! opens anywhere; authentication is SSH's. OpenSSH's connection sharing
//! (ControlMaster) makes every connection after the first cheap.
//!
//! ```text
//! banger --host ssh://me@box ─ssh─▶ box: banger system dial-stdio ─unix─▶ bangerd
//! ```

use crate::{Error, Result};
use banger_api::ApiError;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

/// `ssh://[user@]host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    pub user: Option<String>,
    pub host: String,
    pub port: Option<u16>,
}

/// How long ssh may take to connect (`ConnectTimeout`); tests shorten it
/// with `BANGER_SSH_CONNECT_TIMEOUT`.
const CONNECT_TIMEOUT_SECS: u64 = 10;

/// How long the first answer over a new connection may take (45 s;
/// `BANGER_REMOTE_TIMEOUT_SECS` for tests).
pub fn first_answer() -> Duration {
    let secs = std::env::var("BANGER_REMOTE_TIMEOUT_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(45);
    Duration::from_secs(secs)
}

impl Remote {
    /// Parses a `--host` value; anything but `ssh://` is refused with a hint.
    pub fn parse(url: &str) -> Result<Remote, ApiError> {
        let hint = "write the host as ssh://[user@]host[:port], e.g. ssh://me@build-box";
        let rest = url
            .strip_prefix("ssh://")
            .ok_or_else(|| ApiError::invalid(format!("host {url:?} is not an ssh:// URL")).with_hint(hint))?;
        let (user, hostport) = match rest.rsplit_once('@') {
            Some((u, h)) => (Some(u.to_string()), h),
            None => (None, rest),
        };
        let (host, port) = match hostport.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6
                    .split_once(']')
                    .ok_or_else(|| ApiError::invalid("unclosed '[' in host").with_hint(hint))?;
                (h.to_string(), after.strip_prefix(':'))
            }
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), Some(p)),
                None => (hostport.to_string(), None),
            },
        };
        let port = match port {
            Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
                ApiError::invalid(format!("port {p:?} in {url:?} is not a port")).with_hint(hint)
            })?),
            None => None,
        };
        let ok = |s: &str| {
            !s.is_empty()
                && !s.starts_with('-')
                && s.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':'))
        };
        if !ok(&host) || user.as_deref().is_some_and(|u| !ok(u) || u.contains(':')) || rest.contains('/') {
            return Err(ApiError::invalid(format!("{url:?} is not a host banger can reach")).with_hint(hint));
        }
        Ok(Remote { user, host, port })
    }

    /// The URL again, for messages.
    pub fn display(&self) -> String {
        let user = self.user.as_deref().map(|u| format!("{u}@")).unwrap_or_default();
        let host = if self.host.contains(':') { format!("[{}]", self.host) } else { self.host.clone() };
        let port = self.port.map(|p| format!(":{p}")).unwrap_or_default();
        format!("ssh://{user}{host}{port}")
    }

    /// The command that opens one connection: `BANGER_SSH_COMMAND` (split
    /// on spaces) or `ssh`, non-interactive, sharing one master connection
    /// per host under `control_dir`, then `banger system dial-stdio` on the
    /// far side (`BANGER_REMOTE_COMMAND` names another banger there).
    pub fn argv(&self, control_dir: &Path) -> Vec<String> {
        let ssh = std::env::var("BANGER_SSH_COMMAND").ok().filter(|s| !s.trim().is_empty());
        let mut argv: Vec<String> = match ssh {
            Some(s) => s.split_whitespace().map(String::from).collect(),
            None => vec!["ssh".into()],
        };
        let timeout = std::env::var("BANGER_SSH_CONNECT_TIMEOUT")
            .ok()
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(CONNECT_TIMEOUT_SECS);
        for o in [
            "BatchMode=yes".to_string(),
            format!("ConnectTimeout={timeout}"),
            "ServerAliveInterval=15".into(),
            "ControlMaster=auto".into(),
            format!("ControlPath={}/%C", control_dir.display()),
            "ControlPersist=60".into(),
        ] {
            argv.push("-o".into());
            argv.push(o);
        }
        argv.push("-T".into());
        if let Some(p) = self.port {
            argv.extend(["-p".into(), p.to_string()]);
        }
        if let Some(u) = &self.user {
            argv.extend(["-l".into(), u.clone()]);
        }
        argv.push("--".into());
        argv.push(self.host.clone());
        let remote = std::env::var("BANGER_REMOTE_COMMAND").unwrap_or_else(|_| "banger".into());
        argv.extend([remote, "system".into(), "dial-stdio".into()]);
        argv
    }
}

/// One connection: the ssh child's stdio as one stream, and what tells
/// why it ended.
pub(crate) struct Dialed {
    pub io: tokio::io::Join<tokio::process::ChildStdout, tokio::process::ChildStdin>,
    pub diag: Diag,
}

/// ssh's exit status and stderr, collected by tasks that own the child
/// (which ends by itself when the connection closes its stdin).
pub(crate) struct Diag {
    remote: Remote,
    status: tokio::sync::watch::Receiver<Option<std::process::ExitStatus>>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
}

pub(crate) fn dial(remote: &Remote, control_dir: &Path) -> Result<Dialed> {
    use tokio::io::AsyncReadExt;
    let argv = remote.argv(control_dir);
    let mut child = tokio::process::Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            Error::Api(
                ApiError::unavailable(format!("cannot run {}: {e}", argv[0]))
                    .with_hint("install OpenSSH's client (ssh), or set BANGER_SSH_COMMAND"),
            )
        })?;
    let out = child.stdout.take().expect("piped");
    let inp = child.stdin.take().expect("piped");
    let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    if let Some(mut e) = child.stderr.take() {
        let sink = stderr.clone();
        tokio::spawn(async move {
            let mut buf = [0u8; 4096];
            while let Ok(n) = e.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                let mut s = sink.lock().expect("stderr buffer");
                if s.len() < 64 * 1024 {
                    s.extend_from_slice(&buf[..n]);
                }
            }
        });
    }
    let (status_tx, status) = tokio::sync::watch::channel(None);
    let (kill, kill_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let st = tokio::select! {
            st = child.wait() => st,
            _ = kill_rx => {
                let _ = child.start_kill();
                child.wait().await
            }
        };
        let _ = status_tx.send(st.ok());
    });
    Ok(Dialed {
        io: tokio::io::join(out, inp),
        diag: Diag { remote: remote.clone(), status, stderr, kill: Some(kill) },
    })
}

impl Diag {
    /// Why the connection ended before it answered: ssh's own words and a
    /// hint for the common causes.
    pub(crate) async fn failure(mut self, timed_out: bool) -> Error {
        let host = self.remote.display();
        if timed_out {
            if let Some(k) = self.kill.take() {
                let _ = k.send(());
            }
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), self.status.wait_for(|s| s.is_some())).await;
        // The stderr reader may trail the exit by a moment.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let code = self.status.borrow().and_then(|s| s.code());
        let stderr = String::from_utf8_lossy(&self.stderr.lock().expect("stderr buffer")).trim().to_string();
        let said = if stderr.is_empty() { String::new() } else { format!(": {stderr}") };
        let e = if timed_out {
            ApiError::timeout(format!("{host} did not answer within {} s{said}", first_answer().as_secs()))
                .with_hint("check that the host is up and that `ssh` reaches it by hand")
        } else if code == Some(127) || stderr.contains("command not found") || stderr.contains("No such file")
        {
            ApiError::unavailable(format!("banger is not installed on {host}{said}")).with_hint(
                "install banger there (its README), so that `banger` is on the PATH of non-interactive ssh sessions",
            )
        } else if code == Some(255) {
            ApiError::unavailable(format!("ssh could not reach {host}{said}")).with_hint(
                "check the host, port and user, and that `ssh` reaches it without a password prompt (BatchMode)",
            )
        } else {
            ApiError::unavailable(format!("the connection to {host} ended before bangerd answered{said}"))
                .with_hint(format!("run `ssh {} banger daemon status` to see the far side", self.remote.host))
        };
        Error::Api(e)
    }
}

/// A daemon of another version is refused with both versions named (the
/// API may differ); only the build differing is fine.
pub fn check_versions(remote: &Remote, theirs: &str) -> Result<(), ApiError> {
    if theirs != banger_api::VERSION {
        return Err(ApiError::precondition(format!(
            "{} runs banger {theirs}, this CLI is {}",
            remote.display(),
            banger_api::VERSION
        ))
        .with_hint("install the same banger version on both machines"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_are_refused() {
        let r = Remote::parse("ssh://me@box.lan:2222").unwrap();
        assert_eq!(r, Remote { user: Some("me".into()), host: "box.lan".into(), port: Some(2222) });
        assert_eq!(r.display(), "ssh://me@box.lan:2222");
        assert_eq!(Remote::parse("ssh://box").unwrap().port, None);
        assert_eq!(Remote::parse("ssh://[::1]:22").unwrap().host, "::1");
        for bad in [
            "box",
            "http://box",
            "ssh://",
            "ssh://-oProxyCommand=x",
            "ssh://me@box:0",
            "ssh://me@box:99999",
            "ssh://box/path",
            "ssh://m e@box",
            "ssh://box;rm",
        ] {
            let e = Remote::parse(bad).unwrap_err();
            assert!(e.hint.unwrap().contains("ssh://"), "{bad}");
        }
    }

    #[test]
    fn the_ssh_command_is_batch_mode_and_ends_in_dial_stdio() {
        let r = Remote::parse("ssh://me@box:2222").unwrap();
        let argv = r.argv(Path::new("/run/x"));
        assert_eq!(argv[0], "ssh");
        assert!(argv.contains(&"BatchMode=yes".to_string()));
        assert!(argv.contains(&"ControlPath=/run/x/%C".to_string()));
        let dd = argv.iter().position(|a| a == "--").unwrap();
        assert_eq!(&argv[dd + 1..], ["box", "banger", "system", "dial-stdio"]);
        assert_eq!(&argv[dd - 4..dd], ["-p", "2222", "-l", "me"]);
    }

    #[test]
    fn another_version_is_refused_with_both_named() {
        let r = Remote::parse("ssh://box").unwrap();
        assert!(check_versions(&r, banger_api::VERSION).is_ok());
        let e = check_versions(&r, "99.0.0").unwrap_err();
        assert!(e.message.contains("99.0.0") && e.message.contains(banger_api::VERSION));
        assert!(e.hint.unwrap().contains("same banger version"));
    }
}
