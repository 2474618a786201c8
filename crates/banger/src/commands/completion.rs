//! `banger completion bash|zsh|fish`: shell completion with live names.
//!
//! Completion runs through clap's dynamic engine: the shell calls `banger`
//! itself (with `COMPLETE=<shell>`) for each Tab, so subcommands and flags
//! always match this binary, and VM, image and kernel names come from the
//! daemon. Those lookups never start a daemon and give up after half a
//! second: with no daemon they simply offer nothing.

use crate::client::{Client, Endpoint};
use banger_paths::Paths;
use clap::Args;
use clap_complete::engine::CompletionCandidate;
use std::io::Write;
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

/// Asks a running daemon (never starting one) for names, within half a
/// second; nothing on any trouble.
fn names<T, F, Fut>(list: F, candidate: impl Fn(&T) -> CompletionCandidate) -> Vec<CompletionCandidate>
where
    F: FnOnce(Client) -> Fut,
    Fut: std::future::Future<Output = banger_client::Result<Vec<T>>>,
{
    let Ok(paths) = Paths::from_env() else { return Vec::new() };
    let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() else {
        return Vec::new();
    };
    let endpoint = Endpoint::for_paths(&paths);
    let items = rt.block_on(async {
        tokio::time::timeout(Duration::from_millis(500), list(Client::new(endpoint))).await
    });
    match items {
        Ok(Ok(items)) => items.iter().map(candidate).collect(),
        _ => Vec::new(),
    }
}

fn named(name: &str, about: &[&str]) -> CompletionCandidate {
    CompletionCandidate::new(name).help(Some(about.join(" ").into()))
}

pub fn vms() -> Vec<CompletionCandidate> {
    names(|c| async move { c.vms().await }, |v| named(&v.name, &[v.state.as_str(), &v.image]))
}

pub fn images() -> Vec<CompletionCandidate> {
    names(|c| async move { c.images().await }, |i| named(&i.name, &[&i.source]))
}

pub fn kernels() -> Vec<CompletionCandidate> {
    names(|c| async move { c.kernels().await }, |k| named(&k.name, &[&k.source]))
}
