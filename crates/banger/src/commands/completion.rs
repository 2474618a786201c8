//! `banger completion bash|zsh|fish`: shell completion with live names.
//!
//! Completion runs through clap's dynamic engine: the shell calls `banger`
//! itself (with `COMPLETE=<shell>`) for each Tab, so subcommands and flags
//! always match this binary, and VM, image and kernel names come from the
//! daemon. Those lookups never start a daemon and give up after half a
//! second: with no daemon they simply offer nothing.

use bangerd::paths::Paths;
use clap::Args;
use clap_complete::engine::CompletionCandidate;
use std::io::{Read, Write};
use std::time::Duration;

#[derive(Debug, Args)]
#[command(
    after_help = "Install:\n  bash: echo 'source <(banger completion bash)' >> ~/.bashrc\n  zsh:  echo 'source <(banger completion zsh)' >> ~/.zshrc\n  fish: banger completion fish > ~/.config/fish/completions/banger.fish"
)]
pub struct CompletionArgs {
    /// bash, zsh, fish, elvish or powershell
    pub shell: String,
}

pub fn run(a: CompletionArgs) -> anyhow::Result<i32> {
    if !["bash", "zsh", "fish", "elvish", "powershell"].contains(&a.shell.as_str()) {
        anyhow::bail!("unsupported shell {:?}: use bash, zsh, fish, elvish or powershell", a.shell);
    }
    // The registration script is what the dynamic engine prints for
    // `COMPLETE=<shell> banger`.
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(&exe).env("COMPLETE", &a.shell).output()?;
    if !out.status.success() {
        anyhow::bail!("cannot produce the {} completion script", a.shell);
    }
    std::io::stdout().write_all(&out.stdout)?;
    Ok(0)
}

/// GETs `path` from a running daemon; `None` on any trouble.
fn daemon_get(path: &str) -> Option<serde_json::Value> {
    let sock = Paths::from_env().ok()?.socket();
    let mut s = std::os::unix::net::UnixStream::connect(sock).ok()?;
    s.set_read_timeout(Some(Duration::from_millis(500))).ok()?;
    s.set_write_timeout(Some(Duration::from_millis(500))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: bangerd\r\nConnection: close\r\n\r\n").ok()?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let (head, body) = text.split_once("\r\n\r\n")?;
    if !head.starts_with("HTTP/1.1 200") {
        return None;
    }
    serde_json::from_str(body).ok()
}

fn names(path: &str, help: &[&str]) -> Vec<CompletionCandidate> {
    let Some(serde_json::Value::Array(items)) = daemon_get(path) else { return Vec::new() };
    items
        .iter()
        .filter_map(|i| {
            let name = i.get("name")?.as_str()?;
            let about: Vec<String> =
                help.iter().filter_map(|k| i.get(*k).and_then(|v| v.as_str()).map(str::to_string)).collect();
            Some(CompletionCandidate::new(name).help(Some(about.join(" ").into())))
        })
        .collect()
}

pub fn vms() -> Vec<CompletionCandidate> {
    names("/v1/vms", &["state", "image"])
}

pub fn images() -> Vec<CompletionCandidate> {
    names("/v1/images", &["source"])
}

pub fn kernels() -> Vec<CompletionCandidate> {
    names("/v1/kernels", &["source"])
}
