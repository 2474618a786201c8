//! `banger vm workspace prepare|export`.

use crate::client::Client;
use crate::workspace;
use banger_api::{ApiError, Vm, VmState};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum WorkspaceCmd {
    /// Copy a git working tree into a running VM (replacing an earlier copy)
    Prepare(PrepareArgs),
    /// Write a patch of everything changed in the guest checkout since it was prepared
    #[command(
        after_help = "The patch holds commits made in the guest, uncommitted edits, new untracked files\nand deletions, as one binary-safe diff against the workspace as it was prepared\n(HEAD plus the host changes copied with it). Apply it in the host repository with\n`git apply FILE`. The guest is not modified."
    )]
    Export(ExportArgs),
}

#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// VM name, id or unique prefix
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::vms))]
    pub vm: String,
    /// The git working tree (default: the current directory)
    pub path: Option<PathBuf>,
    #[arg(long)]
    pub include_untracked: bool,
    #[arg(long)]
    pub branch: Option<String>,
    #[arg(long, requires = "branch")]
    pub from: Option<String>,
    /// Print what would be copied, and copy nothing
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// VM name, id or unique prefix
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::vms))]
    pub vm: String,
    /// Write the patch to FILE instead of stdout
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

pub async fn run(client: &Client, cmd: WorkspaceCmd) -> anyhow::Result<i32> {
    match cmd {
        WorkspaceCmd::Prepare(a) => {
            let path = a.path.clone().unwrap_or_else(|| PathBuf::from("."));
            let plan = workspace::plan(&path, a.include_untracked, a.branch, a.from)?;
            if a.dry_run {
                workspace::print_dry_run(&plan);
                return Ok(0);
            }
            let vm: Vm = client.vm(&a.vm).await?;
            if vm.state != VmState::Running {
                return Err(ApiError::precondition(format!(
                    "VM {:?} is not running ({})",
                    vm.name, vm.state
                ))
                .with_hint(format!("start it with `banger vm start {}`", vm.name))
                .into());
            }
            let guest = workspace::copy(client, &vm.id, &plan, false).await?;
            println!("{guest}");
            eprintln!("workspace: {} -> {}:{guest}", plan.root.display(), vm.name);
            Ok(0)
        }
        WorkspaceCmd::Export(a) => {
            let vm: Vm = client.vm(&a.vm).await?;
            let Some(ws) = vm.workspace.clone() else {
                return Err(ApiError::precondition(format!("VM {:?} has no workspace", vm.name))
                    .with_hint(format!("copy one in with `banger vm workspace prepare {} PATH`", vm.name))
                    .into());
            };
            let patch = workspace::export(client, &vm.id, &ws.guest_path, &ws.head).await?;
            match &a.output {
                Some(f) => {
                    std::fs::write(f, &patch)
                        .map_err(|e| anyhow::anyhow!("Cannot write {}: {e}", f.display()))?;
                    eprintln!(
                        "wrote {} bytes to {}; apply it in {} (at {}) with `git apply {}`",
                        patch.len(),
                        f.display(),
                        ws.host_path,
                        &ws.head[..12.min(ws.head.len())],
                        f.display()
                    );
                }
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&patch)?;
                }
            }
            if patch.is_empty() {
                eprintln!("no changes in {}:{} since it was prepared", vm.name, ws.guest_path);
            }
            Ok(0)
        }
    }
}
