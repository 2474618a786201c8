//! `banger vm run`: one command from a repository (or nothing) to a running
//! sandbox: create and boot a VM, copy the workspace in, then an interactive
//! shell, or a command whose exit status becomes banger's.

use super::exec::ExecArgs;
use crate::client::Client;
use crate::output::ProgressView;
use crate::workspace;
use banger_api::validate::format_mib;
use banger_api::{ApiError, ConfigView, CreateVmRequest, Event, Vm};
use clap::Args;
use std::io::IsTerminal;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "Modes:
  banger vm run                     a fresh VM and a shell in it
  banger vm run ./repo              the repo copied to /root/<repo>, a shell there
  banger vm run ./repo -- make test run it there; banger exits with its status
  banger vm run --rm -- uname -a    a throwaway VM for one command

The VM keeps running after a shell or command (stop it with `banger vm stop`),
unless --rm deletes it on exit (also after Ctrl-C or a failure). -d leaves it
running in the background after preparing it.")]
pub struct RunArgs {
    /// A git working tree to copy into the VM (its whole repository)
    pub path: Option<PathBuf>,
    #[command(flatten)]
    pub spec: super::vm::VmSpecArgs,
    /// Delete the VM when the shell or command ends
    #[arg(long)]
    pub rm: bool,
    /// Create and prepare the VM, then exit and leave it running
    #[arg(short, long)]
    pub detach: bool,
    /// Also copy untracked files that are not ignored
    #[arg(long)]
    pub include_untracked: bool,
    /// Print what would be copied and created, and do nothing
    #[arg(long)]
    pub dry_run: bool,
    /// Create this guest-only branch in the workspace
    #[arg(long)]
    pub branch: Option<String>,
    /// Start --branch at this ref instead of HEAD (the guest checks it out)
    #[arg(long, requires = "branch")]
    pub from: Option<String>,
    /// The command to run (default: an interactive shell)
    #[arg(last = true)]
    pub command: Vec<String>,
}

fn refuse(message: &str, hint: &str) -> anyhow::Error {
    ApiError::invalid(message).with_hint(hint).into()
}

pub async fn run(client: &Client, a: RunArgs) -> anyhow::Result<i32> {
    if a.detach && a.rm {
        return Err(refuse(
            "-d and --rm contradict each other",
            "-d leaves the VM running; drop one of them",
        ));
    }
    if a.detach && !a.command.is_empty() {
        return Err(refuse("-d cannot run a command", "run it afterwards with `banger vm exec NAME -- CMD`"));
    }
    if a.path.is_none() && (a.include_untracked || a.branch.is_some()) {
        return Err(refuse(
            "--include-untracked and --branch need a PATH",
            "pass the repository, e.g. `banger vm run . --branch x`",
        ));
    }
    let req = a.spec.request(false)?;
    // Every check of the workspace happens before a VM exists.
    let plan = match &a.path {
        Some(p) => Some(workspace::plan(p, a.include_untracked, a.branch.clone(), a.from.clone())?),
        None => None,
    };
    let config: ConfigView = client.config().await?;
    let default =
        |k: &str| config.entries.iter().find(|e| e.key == k).map(|e| e.value.clone()).unwrap_or_default();
    let image =
        a.spec.image.clone().unwrap_or_else(|| default("default_image").as_str().unwrap_or("").to_string());
    let vcpu = a.spec.vcpu.map(|v| v.to_string()).unwrap_or_else(|| default("vm_defaults.vcpu").to_string());
    let mem = a
        .spec
        .memory
        .map(format_mib)
        .unwrap_or_else(|| default("vm_defaults.memory").as_str().unwrap_or("").to_string());
    let disk = a
        .spec
        .disk_size
        .map(format_mib)
        .unwrap_or_else(|| default("vm_defaults.disk_size").as_str().unwrap_or("").to_string());
    if a.dry_run {
        match &plan {
            Some(p) => workspace::print_dry_run(p),
            None => eprintln!("dry run: would create a VM from {image}; nothing was created"),
        }
        return Ok(0);
    }
    eprintln!("spec: {vcpu} vCPU · {mem} memory · {disk} disk · {image}");

    // With a workspace, the VM is created without booting, its new disk is
    // seeded with the workspace on the host, and then it boots.
    let req = CreateVmRequest { no_start: plan.is_some(), ..req };
    let mut reserved: Option<String> = None;
    let mut view = ProgressView::new(false);
    let created = {
        let create = client.create_vm(&req, |e| {
            if let Event::Phase { phase, message } = e {
                if phase == "reserved" {
                    reserved = message.split_whitespace().next().map(String::from);
                    return;
                }
            }
            view.event(e)
        });
        tokio::select! {
            r = create => Some(r),
            _ = tokio::signal::ctrl_c() => None,
        }
    };
    view.finish();
    let vm = match created {
        Some(Ok(vm)) => vm,
        Some(Err(e)) => {
            if a.rm {
                if let Some(id) = &reserved {
                    let _ = client.delete_vm(id).await;
                }
            }
            return Err(e.into());
        }
        None => {
            eprintln!("interrupted");
            if let Some(id) = &reserved {
                if a.rm {
                    let _ = client.delete_vm(id).await;
                    eprintln!("deleted the VM");
                } else {
                    eprintln!("the VM keeps booting; delete it with `banger vm delete {id}`");
                }
            }
            return Ok(130);
        }
    };
    let vm = match &plan {
        Some(p) => match seed_and_boot(client, &vm, p).await {
            Ok(vm) => vm,
            Err(e) => {
                if a.rm {
                    let _ = client.delete_vm(&vm.id).await;
                }
                return Err(e);
            }
        },
        None => vm,
    };
    let result = after_boot(client, &a, &vm, plan.as_ref()).await;
    if a.rm {
        match client.delete_vm(&vm.id).await {
            Ok(_) => eprintln!("deleted VM {}", vm.name),
            Err(e) => eprintln!("warning: could not delete VM {}: {e:#}", vm.name),
        }
    }
    result
}

/// Seeds the new VM's disk with the workspace, then boots it (Ctrl-C
/// abandons both; `run` then deletes the VM for --rm).
async fn seed_and_boot(client: &Client, vm: &Vm, p: &workspace::Plan) -> anyhow::Result<Vm> {
    let work = async {
        workspace::seed(client, &vm.id, p).await?;
        let mut view = ProgressView::new(false);
        let booted: Vm = client.start_vm(&vm.id, |e| view.event(e)).await?;
        view.finish();
        workspace::seeded_boot_done(client, &vm.id, p).await?;
        Ok::<_, anyhow::Error>(booted)
    };
    tokio::select! {
        r = work => r,
        _ = tokio::signal::ctrl_c() => anyhow::bail!("interrupted"),
    }
}

/// Workspace, then shell or command. Errors and exit codes come back to
/// `run`, which deletes the VM for `--rm` either way.
async fn after_boot(
    client: &Client,
    a: &RunArgs,
    vm: &Vm,
    plan: Option<&workspace::Plan>,
) -> anyhow::Result<i32> {
    let cwd = match plan {
        Some(p) => {
            eprintln!("workspace: {} -> {}:{}", p.root.display(), vm.name, p.guest_path());
            Some(p.guest_path())
        }
        None => None, // the image's WORKDIR, else /root
    };
    if a.detach {
        println!("{}", vm.name);
        eprintln!("VM {} is running; `banger vm exec {} -- CMD` or `banger vm ssh {}`; stop it with `banger vm stop {}`", vm.name, vm.name, vm.name, vm.name);
        return Ok(0);
    }
    let interactive = a.command.is_empty();
    let terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let command = if interactive {
        vec![
            "/bin/sh".into(),
            "-c".into(),
            "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi".into(),
        ]
    } else {
        a.command.clone()
    };
    let exec = ExecArgs {
        vm: vm.id.clone(),
        cwd,
        env: Vec::new(),
        interactive,
        tty: terminal,
        timeout: None,
        user: None,
        command,
    };
    let code = super::exec::run(client, exec, None, vm.exec_defaults.as_ref()).await?;
    if interactive && !a.rm {
        eprintln!("VM {} is still running; stop it with `banger vm stop {}` or delete it with `banger vm delete {}`", vm.name, vm.name, vm.name);
    }
    Ok(code)
}
