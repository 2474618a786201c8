//! `banger vm`: create, list, show, delete.

use super::for_each_ref;
use crate::client::Client;
use crate::output::{self, ProgressView};
use banger_api::validate::{self, format_mib};
use banger_api::{CreateVmRequest, Vm, VmState};
use clap::{Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum VmCmd {
    /// Create a VM from an image and boot it (or only record it with --no-start)
    #[command(
        after_help = "Examples:\n  banger vm create --name web --memory 2G\n  banger vm create --no-start --image debian-bookworm --json"
    )]
    Create(CreateArgs),
    /// List VMs
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one VM in full
    Show(ShowArgs),
    /// Delete VMs: stop them if needed, then remove their disks and records
    #[command(visible_alias = "rm")]
    Delete(RefsArgs),
    /// Boot stopped VMs and wait until their guest agent answers
    Start(RefsArgs),
    /// Shut VMs down cleanly (the guest syncs its disks), killing them after --timeout
    Stop(StopArgs),
    /// Stop, then start VMs
    Restart(StopArgs),
    /// Kill VMs' engines at once (unsynced guest writes may be lost)
    Kill(RefsArgs),
    /// Freeze VMs' vCPUs, keeping their memory (firecracker engine)
    Pause(RefsArgs),
    /// Thaw paused VMs
    Resume(RefsArgs),
    /// Print a VM's serial console; -f keeps following it
    Logs(LogsArgs),
    /// Run a command in a running VM and exit with its status
    Exec(super::exec::ExecArgs),
    /// List the guest's listening TCP and UDP ports
    Ports(ShowArgs),
    /// Open an SSH session (or run a command over SSH) with banger's key
    Ssh(super::ssh::SshArgs),
    /// Copy files and directories between the host and a VM
    Cp(super::cp::CpArgs),
    /// Forward host ports to guest ports until interrupted
    Forward(super::forward::ForwardArgs),
    /// Create a VM, copy a git workspace in, and open a shell or run a command
    Run(super::run::RunArgs),
    /// Copy a git workspace into a VM, or export the changes made there
    #[command(subcommand)]
    Workspace(super::workspace::WorkspaceCmd),
    /// Resource use: CPU, memory and disk on the host, uptime
    Stats(ShowArgs),
    /// Change a stopped VM's vCPUs, memory or NAT
    #[command(after_help = "Examples:\n  banger vm set web --vcpu 4 --memory 4G\n  banger vm set web --nat")]
    Set(SetArgs),
    /// Delete every VM that is not running (asks first unless -f)
    Prune(PruneArgs),
    /// Connect stdin/stdout to a guest TCP port (used as ssh's ProxyCommand)
    #[command(hide = true)]
    Proxy(super::ssh::ProxyArgs),
}

#[derive(Debug, Args)]
pub struct SetArgs {
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::vms))]
    pub vm: String,
    /// Virtual CPUs
    #[arg(long)]
    pub vcpu: Option<u32>,
    /// Memory, e.g. 2G or 512M (a bare number means MiB)
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Let the guest reach beyond the host
    #[arg(long, conflicts_with = "no_nat")]
    pub nat: bool,
    /// Keep the guest on the host only
    #[arg(long)]
    pub no_nat: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Do not ask
    #[arg(short, long)]
    pub force: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// VM names, ids or unique prefixes
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::vms))]
    pub vms: Vec<String>,
    /// Seconds to wait for a clean shutdown before killing
    #[arg(long, default_value_t = 10)]
    pub timeout: u64,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    /// VM name, id or unique prefix
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::vms))]
    pub vm: String,
    /// Keep printing new output until the VM stops
    #[arg(short, long)]
    pub follow: bool,
}

/// What a new VM is made of; shared by `vm create` and `vm run`.
#[derive(Debug, Args)]
pub struct VmSpecArgs {
    /// VM name: 1-63 of a-z, 0-9 and '-'; omitted: a generated name
    #[arg(long)]
    pub name: Option<String>,
    /// Image name or id; omitted: the configured default image
    #[arg(long, add = clap_complete::engine::ArgValueCandidates::new(super::completion::images))]
    pub image: Option<String>,
    /// Virtual CPUs
    #[arg(long)]
    pub vcpu: Option<u32>,
    /// Memory, e.g. 1G or 512M (a bare number means MiB)
    #[arg(long, value_parser = parse_size)]
    pub memory: Option<u64>,
    /// Size of the VM's own disk, e.g. 8G (holds its changes to the image)
    #[arg(long, value_parser = parse_size)]
    pub disk_size: Option<u64>,
    /// Let the guest reach beyond the host (masquerading NAT; needs nftables)
    #[arg(long)]
    pub nat: bool,
    /// Engine: auto (firecracker where KVM runs ordinary guests, else qemu), firecracker or qemu
    #[arg(long, value_parser = ["auto", "firecracker", "qemu"])]
    pub engine: Option<String>,
    /// Forward [HOST_ADDR:]HOST_PORT:GUEST_PORT for the VM's life (repeatable)
    #[arg(short = 'p', long = "publish", value_parser = super::forward::parse_forward)]
    pub forwards: Vec<banger_api::PortForward>,
}

impl VmSpecArgs {
    /// The create request for this spec; a given name is checked first.
    pub fn request(&self, no_start: bool) -> anyhow::Result<CreateVmRequest> {
        if let Some(n) = &self.name {
            banger_api::validate::vm_name(n)?;
        }
        Ok(CreateVmRequest {
            name: self.name.clone(),
            image: self.image.clone(),
            vcpu: self.vcpu,
            memory_mib: self.memory,
            disk_size_mib: self.disk_size,
            no_start,
            engine: self.engine.clone(),
            nat: self.nat,
            forwards: self.forwards.clone(),
        })
    }
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub spec: VmSpecArgs,
    /// Only record the VM; start it later with `banger vm start`
    #[arg(long)]
    pub no_start: bool,
    /// Print the created VM as JSON
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// VM name, id or unique prefix
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::vms))]
    pub vm: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RefsArgs {
    /// VM names, ids or unique prefixes
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::vms))]
    pub vms: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

pub fn parse_size(s: &str) -> Result<u64, String> {
    validate::parse_size_mib(s).map_err(|e| match e.hint {
        Some(h) => format!("{} ({h})", e.message),
        None => e.message,
    })
}

pub async fn run(client: Client, cmd: VmCmd) -> anyhow::Result<i32> {
    let c = &client;
    match cmd {
        VmCmd::Create(a) => create(c, a).await,
        VmCmd::Stats(a) => stats(c, &a).await,
        VmCmd::Set(a) => set(c, a).await,
        VmCmd::Prune(a) => prune(c, a).await,
        VmCmd::List(a) => list(c, &a).await,
        VmCmd::Show(a) => show(c, &a).await,
        VmCmd::Start(a) => start(c, &a).await,
        VmCmd::Stop(a) => stop(c, &a, false).await,
        VmCmd::Restart(a) => stop(c, &a, true).await,
        VmCmd::Pause(a) => simple(c, &a, true, "paused").await,
        VmCmd::Resume(a) => simple(c, &a, false, "resumed").await,
        VmCmd::Kill(a) => kill(c, &a).await,
        VmCmd::Logs(a) => logs(c, &a).await,
        VmCmd::Exec(a) => exec(c, a).await,
        VmCmd::Ssh(a) => super::ssh::ssh(c, a).await,
        VmCmd::Run(a) => super::run::run(c, a).await,
        VmCmd::Workspace(w) => super::workspace::run(c, w).await,
        VmCmd::Cp(a) => super::cp::run(c, a).await,
        VmCmd::Forward(a) => super::forward::run(c, a).await,
        VmCmd::Proxy(a) => super::ssh::proxy(c, a).await,
        VmCmd::Ports(a) => ports(c, &a).await,
        VmCmd::Delete(a) => {
            delete_each(c, &a.vms).await.report(a.json, |vm| format!("deleted VM {} ({})", vm.name, vm.id))
        }
    }
}

async fn set(client: &Client, a: SetArgs) -> anyhow::Result<i32> {
    let req = banger_api::SetVmRequest {
        vcpu: a.vcpu,
        memory_mib: a.memory,
        nat: if a.nat {
            Some(true)
        } else if a.no_nat {
            Some(false)
        } else {
            None
        },
    };
    let vm: Vm = client.set_vm(&a.vm, &req).await?;
    if a.json {
        output::json(&vm)?;
    } else {
        println!(
            "{}: {} vCPU, {}, NAT {}",
            vm.name,
            vm.vcpu,
            validate::format_mib(vm.memory_mib),
            if vm.nat { "on" } else { "off" }
        );
    }
    Ok(0)
}

async fn show(client: &Client, a: &ShowArgs) -> anyhow::Result<i32> {
    let vm: Vm = client.vm(&a.vm).await?;
    if a.json {
        output::json(&vm)?;
    } else {
        print_vm(&vm);
    }
    Ok(0)
}

async fn start(client: &Client, a: &RefsArgs) -> anyhow::Result<i32> {
    let quiet = a.vms.len() > 1;
    for_each_ref(&a.vms, |r| {
        let c = client.clone();
        async move {
            let mut view = ProgressView::new(quiet);
            c.start_vm(&r, |e| view.event(e)).await
        }
    })
    .await
    .report(a.json, did("started"))
}

/// `vm stop`, or with `restart` `vm restart` (a stop, then a start).
async fn stop(client: &Client, a: &StopArgs, restart: bool) -> anyhow::Result<i32> {
    let body = banger_api::StopVmRequest { timeout_secs: Some(a.timeout) };
    let quiet = a.vms.len() > 1;
    for_each_ref(&a.vms, |r| {
        let (c, body) = (client.clone(), body.clone());
        async move {
            if restart {
                let mut view = ProgressView::new(quiet);
                c.restart_vm(&r, &body, |e| view.event(e)).await
            } else {
                c.stop_vm(&r, &body).await
            }
        }
    })
    .await
    .report(a.json, did(if restart { "restarted" } else { "stopped" }))
}

async fn kill(client: &Client, a: &RefsArgs) -> anyhow::Result<i32> {
    for_each_ref(&a.vms, |r| {
        let c = client.clone();
        async move { c.kill_vm(&r).await }
    })
    .await
    .report(a.json, did("killed"))
}

async fn logs(client: &Client, a: &LogsArgs) -> anyhow::Result<i32> {
    client.vm_logs(&a.vm, a.follow, &mut std::io::stdout().lock()).await?;
    Ok(0)
}

/// `vm exec`: in the VM's workspace unless `--cwd` says otherwise, with
/// the image's defaults.
async fn exec(client: &Client, a: super::exec::ExecArgs) -> anyhow::Result<i32> {
    let vm: Vm = client.vm(&a.vm).await?;
    let cwd = vm.workspace.as_ref().map(|w| w.guest_path.clone());
    super::exec::run(client, a, cwd, vm.exec_defaults.as_ref()).await
}

async fn ports(client: &Client, a: &ShowArgs) -> anyhow::Result<i32> {
    let mut s = client.agent(&a.vm).await?;
    let v = banger_agent_proto::client::call(&mut s, banger_agent_proto::Op::Ports).await?;
    let ports: Vec<banger_agent_proto::PortInfo> = serde_json::from_value(v)?;
    if a.json {
        output::json(&ports)?;
    } else {
        let rows: Vec<Vec<String>> = ports
            .iter()
            .map(|p| {
                vec![
                    p.proto.clone(),
                    p.address.clone(),
                    p.port.to_string(),
                    p.pid.map(|x| x.to_string()).unwrap_or_else(|| "-".into()),
                    p.process.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        output::table(&["PROTO", "ADDRESS", "PORT", "PID", "PROCESS"], &rows);
    }
    Ok(0)
}

async fn create(client: &Client, a: CreateArgs) -> anyhow::Result<i32> {
    let req = a.spec.request(a.no_start)?;
    let mut view = ProgressView::new(false);
    let vm: Vm = client.create_vm(&req, |e| view.event(e)).await?;
    view.finish();
    if a.json {
        output::json(&vm)?;
    } else {
        println!(
            "{} {} ({}, {})",
            if a.no_start { "created" } else { "started" },
            vm.name,
            vm.id,
            vm.guest_ip
        );
    }
    Ok(0)
}

pub async fn list(client: &Client, a: &ListArgs) -> anyhow::Result<i32> {
    let vms: Vec<Vm> = client.vms().await?;
    if a.json {
        output::json(&vms)?;
        return Ok(0);
    }
    let rows: Vec<Vec<String>> = vms
        .iter()
        .map(|v| {
            vec![
                v.id.clone(),
                v.name.clone(),
                v.state.to_string(),
                v.image.clone(),
                v.vcpu.to_string(),
                format_mib(v.memory_mib),
                format_mib(v.disk_size_mib),
                v.guest_ip.clone(),
                v.workspace.as_ref().map(|w| w.guest_path.clone()).unwrap_or_else(|| "-".into()),
                output::age(&v.created_at),
            ]
        })
        .collect();
    output::table(
        &["ID", "NAME", "STATE", "IMAGE", "VCPU", "MEMORY", "DISK", "IP", "WORKSPACE", "CREATED"],
        &rows,
    );
    Ok(0)
}

/// Pauses (`pause`) or resumes each VM and reports.
async fn simple(client: &Client, a: &RefsArgs, pause: bool, verb: &str) -> anyhow::Result<i32> {
    for_each_ref(&a.vms, |r| {
        let c = client.clone();
        async move {
            if pause {
                c.pause_vm(&r).await
            } else {
                c.resume_vm(&r).await
            }
        }
    })
    .await
    .report(a.json, did(verb))
}

/// The line saying what `verb` did to a VM.
fn did(verb: &str) -> impl Fn(&Vm) -> String + '_ {
    move |vm| match &vm.last_error {
        Some(e) => format!("{verb} {} ({}): {e}", vm.name, vm.state),
        None => format!("{verb} {} ({}, {})", vm.name, vm.state, vm.guest_ip),
    }
}

fn print_vm(v: &Vm) {
    let mut pairs = vec![
        ("id", v.id.clone()),
        ("name", v.name.clone()),
        ("state", v.state.to_string()),
        ("image", format!("{} ({})", v.image, v.image_id)),
        ("kernel", v.kernel.clone()),
        ("vcpu", v.vcpu.to_string()),
        ("memory", format_mib(v.memory_mib)),
        ("disk", format_mib(v.disk_size_mib)),
        ("ip", v.guest_ip.clone()),
        ("engine", format!("{} ({})", v.engine, v.engine_reason)),
        ("nat", if v.nat { "on" } else { "off" }.into()),
        ("dir", v.vm_dir.clone()),
        ("created", v.created_at.clone()),
    ];
    if let Some(rt) = &v.runtime {
        pairs.push(("pid", rt.pid.to_string()));
        pairs.push(("accel", rt.accel.clone()));
        pairs.push(("tap", rt.tap.clone().unwrap_or_else(|| "-".into())));
        pairs.push(("started", rt.started_at.clone()));
        pairs.push(("console", rt.console_log.clone()));
    }
    if let Some(w) = &v.workspace {
        pairs.push(("workspace", w.guest_path.clone()));
        pairs.push(("  from", w.host_path.clone()));
        pairs.push(("  head", w.head.clone()));
        if let Some(b) = &w.branch {
            pairs.push(("  branch", b.clone()));
        }
        pairs.push(("  prepared", w.prepared_at.clone()));
    }
    for f in &v.forwards {
        pairs.push(("forward", format!("{}:{} -> {}", f.host_addr, f.host_port, f.guest_port)));
    }
    if let Some(e) = &v.last_error {
        pairs.push(("last error", e.clone()));
    }
    output::fields(&pairs);
}

async fn stats(client: &Client, a: &ShowArgs) -> anyhow::Result<i32> {
    let st: banger_api::VmStats = client.vm_stats(&a.vm).await?;
    if a.json {
        output::json(&st)?;
        return Ok(0);
    }
    let or_dash = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    output::fields(&[
        ("name", st.name.clone()),
        ("state", st.state.as_str().to_string()),
        ("vcpu", st.vcpu.to_string()),
        (
            "cpu",
            or_dash(
                st.cpu_percent
                    .map(|c| format!("{c:.1}% of one core ({:.1} s used)", st.cpu_seconds.unwrap_or(0.0))),
            ),
        ),
        (
            "memory",
            or_dash(st.rss_bytes.map(|r| {
                format!("{} resident of {}", output::bytes(r), validate::format_mib(st.memory_mib))
            })),
        ),
        (
            "disk",
            format!(
                "{} allocated of {}",
                output::bytes(st.disk_allocated_bytes),
                output::bytes(st.disk_size_bytes)
            ),
        ),
        (
            "uptime",
            or_dash(
                st.uptime_secs
                    .map(|s| humantime::format_duration(std::time::Duration::from_secs(s)).to_string()),
            ),
        ),
    ]);
    Ok(0)
}

async fn prune(client: &Client, a: PruneArgs) -> anyhow::Result<i32> {
    let vms: Vec<Vm> = client.vms().await?;
    let victims: Vec<&Vm> =
        vms.iter().filter(|v| matches!(v.state, VmState::Stopped | VmState::Error)).collect();
    if victims.is_empty() {
        if a.json {
            output::json(&Vec::<Vm>::new())?;
        } else {
            eprintln!("no stopped VMs");
        }
        return Ok(0);
    }
    if !a.force {
        use std::io::{BufRead, IsTerminal, Write};
        if !std::io::stdin().is_terminal() {
            anyhow::bail!(
                "refusing to delete {} VM(s) without asking; pass -f to skip the question",
                victims.len()
            );
        }
        eprintln!("These VMs are not running and will be deleted with their disks:");
        for v in &victims {
            eprintln!("  {} ({}, {})", v.name, v.state.as_str(), v.image);
        }
        eprint!("Delete {} VM(s)? [y/N] ", victims.len());
        std::io::stderr().flush()?;
        let mut answer = String::new();
        std::io::stdin().lock().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            eprintln!("nothing deleted");
            return Ok(1);
        }
    }
    let names: Vec<String> = victims.iter().map(|v| v.id.clone()).collect();
    delete_each(client, &names).await.report(a.json, |v| format!("deleted {}", v.name))
}

/// Deletes each VM (concurrently; a failure does not stop the others).
async fn delete_each(client: &Client, refs: &[String]) -> super::Each<Vm> {
    for_each_ref(refs, |r| {
        let c = client.clone();
        async move { c.delete_vm(&r).await }
    })
    .await
}
