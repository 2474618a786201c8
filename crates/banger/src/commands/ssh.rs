//! `banger vm ssh`, `banger vm proxy` and `banger ssh-config`.
//!
//! SSH never goes over the bridge: OpenSSH's `ProxyCommand` is `banger vm
//! proxy NAME 22`, which opens the VM's agent stream and asks the agent to
//! connect to port 22 inside the guest. Host keys are pinned on first use in
//! banger's own known_hosts (never the user's).

use crate::client::Client;
use banger_agent_proto::{read_frame, write_json, ConnectRequest, Health, Kind, Op, Request, Response};
use banger_api::SshInfo;
use banger_api::{ApiError, Vm, VmState};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  banger vm ssh web\n  banger vm ssh web -- uname -a\n  ssh web.vm            (after `banger ssh-config --install`)"
)]
pub struct SshArgs {
    /// VM name, id or unique prefix
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::vms))]
    pub vm: String,
    /// Forget the VM's pinned host key first (after you recreated it on purpose)
    #[arg(long)]
    pub forget_host_key: bool,
    /// Command to run instead of a login shell
    #[arg(last = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// VM name (a `.vm` suffix is ignored) or id, whole: `ssh we.vm` never reaches `web`
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::vms))]
    pub vm: String,
    /// TCP port inside the guest
    pub port: u16,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Without flags, prints banger's ssh_config block. --install adds one marked\nInclude block at the top of ~/.ssh/config (creating it 0600 if needed), so\n`ssh NAME.vm` works; --uninstall removes exactly that block."
)]
pub struct SshConfigArgs {
    #[arg(long, conflicts_with = "uninstall")]
    pub install: bool,
    #[arg(long)]
    pub uninstall: bool,
}

fn banger_exe() -> anyhow::Result<String> {
    Ok(std::env::current_exe()?.canonicalize()?.display().to_string())
}

fn ssh_args(info: &SshInfo, name: &str, exe: &str, strict: &str) -> Vec<String> {
    let o = |k: &str, v: &str| vec!["-o".to_string(), format!("{k}={v}")];
    let mut a = vec!["-i".into(), info.private_key.clone()];
    a.extend(o("IdentitiesOnly", "yes"));
    a.extend(o("UserKnownHostsFile", &info.known_hosts));
    a.extend(o("StrictHostKeyChecking", strict));
    a.extend(o("HashKnownHosts", "no"));
    a.extend(o("LogLevel", "ERROR"));
    a.extend(o("ProxyCommand", &format!("\"{exe}\" vm proxy {name} 22")));
    a.push(format!("root@{name}.vm"));
    a
}

pub async fn ssh(client: &Client, a: SshArgs) -> anyhow::Result<i32> {
    let vm: Vm = client.vm(&a.vm).await?;
    if vm.state != VmState::Running {
        return Err(ApiError::precondition(format!("VM {:?} is not running ({})", vm.name, vm.state))
            .with_hint(format!("start it with `banger vm start {}`", vm.name))
            .into());
    }
    if a.forget_host_key {
        client.forget_host_key(&vm.name).await?;
    }
    let info: SshInfo = client.ssh().await?;
    let exe = banger_exe()?;
    let mut cmd = std::process::Command::new("ssh");
    cmd.args(ssh_args(&info, &vm.name, &exe, "accept-new"));
    let interactive = a.command.is_empty();
    if !interactive {
        cmd.arg("--").args(&a.command);
    }
    let status = cmd.status().map_err(|e| anyhow::anyhow!("Cannot run ssh: {e} (install openssh-client)"))?;
    let code = status.code().unwrap_or(255);
    if code == 255 && host_key_changed(&info, &vm.name, &exe) {
        eprintln!(
            "error: the SSH host key of VM {:?} is not the one banger pinned when it first connected",
            vm.name
        );
        eprintln!(
            "       This is expected if the VM's disk was recreated under the same name (its host key is"
        );
        eprintln!("       new); otherwise something else is answering for the VM.");
        eprintln!("hint: if you expect the change, run `banger vm ssh --forget-host-key {}`", vm.name);
        return Ok(255);
    }
    if interactive && std::io::stderr().is_terminal() {
        eprintln!("VM {} is still running; stop it with `banger vm stop {}`", vm.name, vm.name);
    }
    Ok(code)
}

/// After ssh failed: was it the pinned host key? (A quiet, strict probe.)
fn host_key_changed(info: &SshInfo, name: &str, exe: &str) -> bool {
    let out = std::process::Command::new("ssh")
        .args(ssh_args(info, name, exe, "yes"))
        .args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR", "true"])
        .stdin(std::process::Stdio::null())
        .output();
    out.map(|o| {
        let e = String::from_utf8_lossy(&o.stderr);
        e.contains("IDENTIFICATION HAS CHANGED") || e.contains("Host key verification failed")
    })
    .unwrap_or(false)
}

/// How long after the agent started a port that nobody accepts yet is
/// waited for: the agent answers seconds before systemd has started sshd
/// (or the user's service), so `vm create web && vm ssh web` waits for it
/// instead of failing.
const BOOT_GRACE_MS: u64 = 120_000;

/// Splices stdin/stdout to a TCP port in the guest (ssh's ProxyCommand).
pub async fn proxy(client: &Client, a: ProxyArgs) -> anyhow::Result<i32> {
    let asked = a.vm.strip_suffix(".vm").unwrap_or(&a.vm);
    // `ssh NAME.vm` must reach exactly NAME: a prefix would let `ssh we.vm`
    // reach `web`, and pin web's host key under another name. From here on
    // the VM is named by its id.
    let vm: Vm = client.vm(asked).await?;
    if vm.name != asked && vm.id != asked {
        anyhow::bail!(
            "no VM is named {asked:?} ({asked:?} is only the start of {:?}); `vm proxy` and `ssh NAME.vm` take a whole name or id",
            vm.name
        );
    }
    let name = vm.id.as_str();
    // Set on the first refusal from a guest that is still starting: how
    // long its services may still take.
    let mut wait_until: Option<tokio::time::Instant> = None;
    let (mut rd, mut wr) = loop {
        let stream = client.agent(name).await?;
        let (mut rd, mut wr) = tokio::io::split(stream);
        write_json(&mut wr, Kind::Request, &Request::new(Op::Connect(ConnectRequest { port: a.port })))
            .await?;
        let f = read_frame(&mut rd)
            .await?
            .ok_or_else(|| anyhow::anyhow!("the guest agent closed the connection"))?;
        match f.json::<Response>()? {
            Response::Error { message } => {
                if !message.starts_with("nothing accepts connections") {
                    anyhow::bail!("{message}");
                }
                let deadline = match wait_until {
                    Some(t) => t,
                    None => {
                        let Some(left) = boot_grace_left(client, name).await else {
                            anyhow::bail!("{message}")
                        };
                        eprintln!(
                            "banger: waiting for guest port {} (the guest is still starting its services)",
                            a.port
                        );
                        *wait_until.insert(tokio::time::Instant::now() + left)
                    }
                };
                if tokio::time::Instant::now() >= deadline {
                    anyhow::bail!("{message}");
                }
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            }
            Response::Ok { .. } => break (rd, wr),
        }
    };
    let up = async {
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut wr).await;
    };
    let down = async {
        let mut out = tokio::io::stdout();
        let _ = tokio::io::copy(&mut rd, &mut out).await;
    };
    // Whichever side ends first ends the connection (no half-close on vsock).
    tokio::select! {
        _ = up => {},
        _ = down => {},
    }
    Ok(0)
}

/// How much of [`BOOT_GRACE_MS`] is left since the guest's agent started,
/// if it runs under an init that starts services (systemd) and some is.
async fn boot_grace_left(client: &Client, name: &str) -> Option<std::time::Duration> {
    let health = async {
        let stream = client.agent(name).await.ok()?;
        let (mut rd, mut wr) = tokio::io::split(stream);
        write_json(&mut wr, Kind::Request, &Request::new(Op::Health)).await.ok()?;
        match read_frame(&mut rd).await.ok()??.json::<Response>().ok()? {
            Response::Ok { data } => serde_json::from_value::<Health>(data).ok(),
            Response::Error { .. } => None,
        }
    };
    let h = health.await.filter(|h| h.init == "systemd" && h.uptime_ms < BOOT_GRACE_MS)?;
    Some(std::time::Duration::from_millis(BOOT_GRACE_MS - h.uptime_ms))
}

const BEGIN: &str = "# >>> banger ssh-config >>>";
const END: &str = "# <<< banger ssh-config <<<";

fn user_ssh_config() -> anyhow::Result<PathBuf> {
    let home = std::env::var_os("HOME").ok_or_else(|| anyhow::anyhow!("HOME is not set"))?;
    Ok(PathBuf::from(home).join(".ssh/config"))
}

/// `text` without banger's marked block (and the blank line after it).
fn without_block(text: &str) -> String {
    let mut out = Vec::new();
    let mut inside = false;
    let mut skip_blank = false;
    for line in text.lines() {
        if line.trim() == BEGIN {
            inside = true;
            continue;
        }
        if inside {
            if line.trim() == END {
                inside = false;
                skip_blank = true;
            }
            continue;
        }
        if skip_blank && line.trim().is_empty() {
            skip_blank = false;
            continue;
        }
        skip_blank = false;
        out.push(line);
    }
    let mut s = out.join("\n");
    if !s.is_empty() && text.ends_with('\n') {
        s.push('\n');
    }
    s
}

pub async fn ssh_config(client: &Client, a: SshConfigArgs) -> anyhow::Result<i32> {
    use std::os::unix::fs::PermissionsExt;
    let exe = banger_exe()?;
    let written = client.write_ssh_config(&exe).await?;
    let path = written.path.clone();
    let cfg = user_ssh_config()?;
    if a.install || a.uninstall {
        let text = match std::fs::read_to_string(&cfg) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => anyhow::bail!("Cannot read {}: {e}", cfg.display()),
        };
        let rest = without_block(&text);
        let new = if a.install {
            // At the top: an Include inside a Host block would only apply there.
            format!("{BEGIN}\nInclude \"{path}\"\n{END}\n\n{rest}")
        } else {
            rest
        };
        if new == text {
            println!(
                "{} already {}",
                cfg.display(),
                if a.install { "includes banger's ssh config" } else { "has no banger block" }
            );
            return Ok(0);
        }
        if let Some(dir) = cfg.parent() {
            if !dir.exists() {
                std::fs::create_dir_all(dir)?;
                std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
            }
        }
        let existed = cfg.exists();
        let tmp = cfg.with_extension("banger-tmp");
        std::fs::write(&tmp, &new)?;
        let mode = if existed { std::fs::metadata(&cfg)?.permissions().mode() & 0o777 } else { 0o600 };
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
        std::fs::rename(&tmp, &cfg)?;
        if a.install {
            println!("added banger's Include block to {}; `ssh NAME.vm` now reaches VMs", cfg.display());
        } else {
            println!("removed banger's block from {}", cfg.display());
        }
        return Ok(0);
    }
    print!("{}", written.text);
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_removal_is_exact() {
        let user = "Host github.com\n    User git\n";
        let installed = format!("{BEGIN}\nInclude \"/x/config\"\n{END}\n\n{user}");
        assert_eq!(without_block(&installed), user);
        assert_eq!(without_block(user), user);
        let twice = format!("{BEGIN}\nInclude \"/x\"\n{END}\n\nHost a\n{BEGIN}\nInclude \"/y\"\n{END}\n");
        assert_eq!(without_block(&twice), "Host a\n");
    }
}
