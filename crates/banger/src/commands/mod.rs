//! The command tree, one module per command group.

mod completion;
mod config;
mod context;
mod cp;
mod daemon;
mod doctor;
pub(crate) mod exec;
mod forward;
mod image;
mod kernel;
mod run;
mod ssh;
mod vm;
mod workspace;

use crate::client;
use crate::output;
use banger_paths::Paths;
use clap::{Args, Parser, Subcommand};
use tokio::io::AsyncWriteExt;

const ABOUT: &str = "One-command development sandboxes on Firecracker microVMs";

const LONG_ABOUT: &str = "\
One-command development sandboxes on Firecracker microVMs.

banger creates VMs from an image (a read-only ext4 root filesystem) and a
kernel; each VM gets its own disk, network address and name. VMs persist:
stopping one keeps its disk. A per-user daemon, bangerd, owns all state and
is started automatically on first use.";

const EXAMPLES: &str = "\
Examples:
  banger vm create --name web            create and boot a VM
  banger vm create --no-start --memory 2G
  banger ps                              list VMs
  banger vm show web --json              one VM as JSON
  banger vm delete web                   delete it (disk included)
  banger kernel import k1 --vmlinux ./vmlinux
  banger image register --name deb --rootfs ./rootfs.ext4 --kernel k1

Every list/show/create/delete command takes --json for scripts.";

#[derive(Debug, Parser)]
#[command(name = "banger", version = banger_api::VERSION_STRING, about = ABOUT, long_about = LONG_ABOUT, after_help = EXAMPLES)]
pub struct Cli {
    /// The daemon to talk to: ssh://[user@]host[:port] (banger runs there over ssh);
    /// default: the current context (`banger context`), else this machine
    #[arg(long, global = true, env = "BANGER_HOST", value_name = "URL")]
    host: Option<String>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Create, inspect and manage VMs
    #[command(subcommand)]
    Vm(vm::VmCmd),
    /// List VMs (same as `banger vm list`)
    Ps(vm::ListArgs),
    /// Manage images: read-only root filesystems VMs boot from
    #[command(subcommand)]
    Image(image::ImageCmd),
    /// Manage guest kernels
    #[command(subcommand)]
    Kernel(kernel::KernelCmd),
    /// Control the bangerd daemon
    #[command(subcommand)]
    Daemon(daemon::DaemonCmd),
    /// Show banger's configuration
    #[command(subcommand)]
    Config(config::ConfigCmd),
    /// Print banger's ssh_config (`Host *.vm`), or install/uninstall it in ~/.ssh/config
    SshConfig(ssh::SshConfigArgs),
    /// Check the host and banger's setup: PASS/WARN/FAIL with a fix per line (exit 1 on FAIL)
    Doctor(JsonFlag),
    /// Print the version and commit of this build
    Version(JsonFlag),
    /// Install banger as system services: the daemon as a user plus a small root helper
    /// (install, status, uninstall; `banger system --help` for more)
    #[command(disable_help_flag = true)]
    System(SystemArgs),
    /// Print a shell completion script (with live VM, image and kernel names)
    Completion(completion::CompletionArgs),
    /// Serve banger to AI agents: a Model Context Protocol server on stdio
    Mcp(crate::mcp::McpArgs),
    /// Name remote hosts (ssh://) and choose the one commands go to
    #[command(subcommand)]
    Context(context::ContextCmd),
}

/// `banger system …`: handed whole to `bangerd system …`, which owns the
/// host-side install (it acts as root with the daemon's own policy).
#[derive(Debug, Args)]
pub struct SystemArgs {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, value_name = "ARGS")]
    args: Vec<std::ffi::OsString>,
}

/// Replaces this process with `bangerd system ARGS`, telling it which CLI
/// to install.
fn system(a: SystemArgs) -> anyhow::Result<i32> {
    use std::os::unix::process::CommandExt;
    if a.args.first().is_some_and(|s| s == "dial-stdio") {
        anyhow::bail!("unreachable: dial-stdio is served by the CLI");
    }
    let bangerd = banger_client::daemon_binary().ok_or_else(|| {
        anyhow::anyhow!("Cannot find bangerd (looked next to banger, in $BANGER_DAEMON_BIN and on PATH)")
    })?;
    let err = std::process::Command::new(&bangerd)
        .arg("system")
        .args(&a.args)
        .env("BANGER_CLI_BIN", std::env::current_exe()?)
        .exec();
    Err(anyhow::anyhow!("Cannot run {}: {err}", bangerd.display()))
}

/// `banger system dial-stdio`: this machine's daemon (started as any
/// command starts it) spliced to stdin/stdout, for a `banger --host ssh://…`
/// on another machine. It ends when either side closes.
async fn dial_stdio(paths: &Paths) -> anyhow::Result<i32> {
    let c = client::connect(paths).await?;
    let sock = tokio::net::UnixStream::connect(&c.endpoint().socket).await?;
    let (mut rd, mut wr) = sock.into_split();
    let up = async {
        let _ = tokio::io::copy(&mut tokio::io::stdin(), &mut wr).await;
        let _ = wr.shutdown().await;
    };
    let down = async {
        let mut out = tokio::io::stdout();
        let _ = tokio::io::copy(&mut rd, &mut out).await;
        let _ = out.flush().await;
    };
    // Done when the daemon closes its side; our stdin ending first only
    // passes the end on.
    tokio::select! {
        _ = async { up.await; std::future::pending::<()>().await } => {}
        _ = down => {}
    }
    Ok(0)
}

/// `--json` alone.
#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print JSON instead of text
    #[arg(long)]
    pub json: bool,
}

/// Runs a command and returns the process exit code.
pub async fn run(cli: Cli) -> i32 {
    match dispatch(cli).await {
        Ok(code) => code,
        Err(e) => {
            output::error(&e);
            1
        }
    }
}

async fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let paths = Paths::from_env()?;
    match &cli.cmd {
        // These always act on this machine.
        Cmd::Completion(_) | Cmd::Version(_) | Cmd::Context(_) | Cmd::System(_) => {}
        _ => client::set_host(context::resolve(&paths, cli.host.as_deref())?),
    }
    if let (Some(remote), Cmd::Daemon(_)) = (client::host(), &cli.cmd) {
        return Err(banger_api::ApiError::invalid("`banger daemon` acts on this machine's daemon only")
            .with_hint(format!("run it there: `ssh {} banger daemon status`", remote.host))
            .into());
    }
    match cli.cmd {
        Cmd::Completion(a) => completion::run(a),
        Cmd::Context(c) => context::run(&paths, c),
        Cmd::System(a) if a.args.first().is_some_and(|s| s == "dial-stdio") => dial_stdio(&paths).await,
        Cmd::System(a) => system(a),
        Cmd::Version(f) => {
            if f.json {
                output::json(&serde_json::json!({
                    "version": banger_api::VERSION,
                    "commit": banger_api::GIT_COMMIT,
                    "build_id": banger_api::build_id(),
                }))?;
            } else {
                println!("banger {}", banger_api::VERSION_STRING);
            }
            Ok(0)
        }
        Cmd::Daemon(c) => daemon::run(&paths, c).await,
        Cmd::Mcp(a) => crate::mcp::run(&paths, a).await,
        Cmd::SshConfig(a) => ssh::ssh_config(&client::connect(&paths).await?, a).await,
        Cmd::Doctor(f) => doctor::run(&client::connect(&paths).await?, f).await,
        Cmd::Config(c) => config::run(client::connect(&paths).await?, c).await,
        Cmd::Vm(c) => vm::run(client::connect(&paths).await?, c).await,
        Cmd::Ps(a) => vm::list(&client::connect(&paths).await?, &a).await,
        Cmd::Image(c) => image::run(client::connect(&paths).await?, c).await,
        Cmd::Kernel(c) => kernel::run(client::connect(&paths).await?, c).await,
    }
}

/// Makes a path from the command line absolute, since the daemon's working
/// directory is not the user's.
pub fn absolute(path: &std::path::Path) -> anyhow::Result<String> {
    let abs = if path.is_absolute() { path.to_path_buf() } else { std::env::current_dir()?.join(path) };
    Ok(abs.display().to_string())
}

/// Runs `op` for each reference concurrently, printing each failure as it
/// comes; returns the successes in the order given and whether all succeeded.
pub async fn for_each_ref<T, E, F, Fut>(refs: &[String], op: F) -> Each<T>
where
    F: Fn(String) -> Fut,
    Fut: std::future::Future<Output = Result<T, E>>,
    E: Into<anyhow::Error>,
{
    let mut seen = Vec::new();
    for r in refs {
        if !seen.contains(r) {
            seen.push(r.clone());
        }
    }
    let results = futures_util::future::join_all(seen.iter().map(|r| op(r.clone()))).await;
    let mut ok = Vec::new();
    let mut all_ok = true;
    for (r, res) in seen.iter().zip(results) {
        match res {
            Ok(v) => ok.push(v),
            Err(e) => {
                all_ok = false;
                if refs.len() > 1 {
                    eprint!("{r}: ");
                }
                output::error(&e.into());
            }
        }
    }
    Each { done: ok, ok: all_ok }
}

/// What [`for_each_ref`] got done, and whether everything was.
pub struct Each<T> {
    pub done: Vec<T>,
    pub ok: bool,
}

impl<T: serde::Serialize> Each<T> {
    /// Prints what was done as a JSON array, or one `line` each; returns
    /// the exit code (1 when any reference failed).
    pub fn report(&self, json: bool, line: impl Fn(&T) -> String) -> anyhow::Result<i32> {
        if json {
            output::json(&self.done)?;
        } else {
            for t in &self.done {
                println!("{}", line(t));
            }
        }
        Ok(if self.ok { 0 } else { 1 })
    }
}

/// Total size of the files under `p` (or of `p` itself), not following
/// symlinks.
pub fn cp_tree_size(p: &std::path::Path) -> u64 {
    let Ok(m) = std::fs::symlink_metadata(p) else { return 0 };
    if m.is_dir() {
        std::fs::read_dir(p).map(|rd| rd.flatten().map(|e| cp_tree_size(&e.path())).sum()).unwrap_or(0)
    } else {
        m.len()
    }
}
