//! The MCP tools, one method each. Descriptions are written for a model:
//! what the tool is for, when to use it, what it returns.

use super::guest;
use super::limits::{self, Caps};
use crate::client::Client;
use crate::commands::exec::apply_image_defaults;
use crate::workspace;
use banger_agent_proto::client::{Capture, Captured};
use banger_agent_proto::ExecRequest;
use banger_api::validate::format_mib;
use banger_api::{ApiError, CreateVmRequest, Vm};
use banger_paths::Paths;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{Implementation, ServerCapabilities, ServerConfig};
use rmcp::{schemars, tool, tool_handler, tool_router, Json, ServerHandler};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tokio::sync::OnceCell;

/// Each tool answers `Result<Json<T>, String>` (spelled out: rmcp's macro
/// reads the output schema off that type): structured content, or a tool
/// error (`isError`) whose text is the message and, on a second line, the
/// hint.
fn tool_error(e: anyhow::Error) -> String {
    let (message, hint) = banger_client::print::describe(&e);
    match hint {
        Some(h) => format!("error: {message}\nhint: {h}"),
        None => format!("error: {message}"),
    }
}

/// The server: the daemon it talks to (connected on first use) and what it
/// lets a model touch.
#[derive(Clone)]
pub struct Sandboxes {
    paths: Paths,
    client: std::sync::Arc<OnceCell<(Client, Caps)>>,
    roots: Vec<PathBuf>,
    tool_router: ToolRouter<Self>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    /// Name for the sandbox: 1-63 of a-z, 0-9 and '-'. Omitted: a generated name.
    pub name: Option<String>,
    /// Image to boot (see the user's `banger image list`). Omitted: the default Debian image.
    pub image: Option<String>,
    /// Virtual CPUs (default 2; capped by banger's [mcp] max_vcpu).
    pub vcpu: Option<u32>,
    /// Memory as a size string such as "512M" or "2G" (default 1G; capped by [mcp] max_memory).
    pub memory: Option<String>,
    /// Let the sandbox reach the internet (default false: it reaches only the host).
    pub nat: Option<bool>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxParam {
    /// The sandbox's name (or id).
    pub sandbox: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecParams {
    /// The sandbox's name (or id).
    pub sandbox: String,
    /// The program and its arguments, e.g. ["make", "test"]. No shell runs unless you ask
    /// for one: ["sh", "-c", "cd src && ls | wc -l"].
    pub command: Vec<String>,
    /// Working directory in the sandbox (default: the copied repository for sandboxes made
    /// by sandbox_run_repo, else /root).
    pub cwd: Option<String>,
    /// Extra environment variables.
    pub env: Option<BTreeMap<String, String>>,
    /// Kill the command after this many seconds (default 120, at most 3600); exit code 124.
    pub timeout_secs: Option<u64>,
    /// Text passed to the command's standard input (at most 1 MiB).
    pub stdin: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadParams {
    /// The sandbox's name (or id).
    pub sandbox: String,
    /// Absolute path of a text file in the sandbox, e.g. /root/app/README.md.
    pub path: String,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WriteParams {
    /// The sandbox's name (or id).
    pub sandbox: String,
    /// Absolute path of the file to write; missing directories are made.
    pub path: String,
    /// The whole new content of the file (UTF-8 text, at most 1 MiB).
    pub content: String,
    /// File mode as an octal string such as "0755" (default "0644").
    pub mode: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRepoParams {
    /// Absolute path of a git working tree on the host (inside the directories banger mcp
    /// allows). Its tracked files, as they are on disk, and recent history are copied in.
    pub path: String,
    /// The command to run in the copied repository, e.g. ["make", "test"].
    pub command: Vec<String>,
    /// Image to boot. Omitted: the default Debian image.
    pub image: Option<String>,
    /// Virtual CPUs (capped by [mcp] max_vcpu).
    pub vcpu: Option<u32>,
    /// Memory as a size string such as "2G" (capped by [mcp] max_memory).
    pub memory: Option<String>,
    /// Kill the command after this many seconds (default 120, at most 3600).
    pub timeout_secs: Option<u64>,
    /// Keep the sandbox after the command so you can go on with sandbox_exec (default false:
    /// it is deleted).
    pub keep: Option<bool>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Sandbox {
    pub name: String,
    pub id: String,
    pub state: String,
    pub ip: String,
    pub image: String,
    pub vcpu: u32,
    pub memory: String,
    pub nat: bool,
}

impl From<&Vm> for Sandbox {
    fn from(vm: &Vm) -> Sandbox {
        Sandbox {
            name: vm.name.clone(),
            id: vm.id.clone(),
            state: vm.state.to_string(),
            ip: vm.guest_ip.clone(),
            image: vm.image.clone(),
            vcpu: vm.vcpu,
            memory: format_mib(vm.memory_mib),
            nat: vm.nat,
        }
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct SandboxList {
    pub sandboxes: Vec<Sandbox>,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Deleted {
    pub deleted: String,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct ExecOutput {
    /// The command's exit code (128+N for signal N, 124 when it timed out).
    pub exit_code: i32,
    pub stdout: String,
    pub stderr: String,
    pub timed_out: bool,
    /// Whether stdout/stderr were cut at banger's output cap; *_bytes are the full sizes.
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub stdout_bytes: u64,
    pub stderr_bytes: u64,
}

impl From<Capture> for ExecOutput {
    fn from(c: Capture) -> ExecOutput {
        let text = |s: &Captured| {
            let mut t = String::from_utf8_lossy(&s.kept).into_owned();
            if s.truncated() {
                t.push_str(&format!(
                    "\n[banger: output truncated: {} of {} bytes shown]",
                    s.kept.len(),
                    s.total
                ));
            }
            t
        };
        ExecOutput {
            exit_code: c.status.shell_code(),
            stdout: text(&c.stdout),
            stderr: text(&c.stderr),
            timed_out: c.status.timed_out,
            stdout_truncated: c.stdout.truncated(),
            stderr_truncated: c.stderr.truncated(),
            stdout_bytes: c.stdout.total,
            stderr_bytes: c.stderr.total,
        }
    }
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct FileContent {
    pub path: String,
    pub content: String,
    pub bytes: usize,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct Written {
    pub path: String,
    pub bytes: usize,
}

#[derive(Debug, Serialize, schemars::JsonSchema)]
pub struct RunRepoOutput {
    /// The sandbox's name; it exists only if `kept` is true.
    pub sandbox: String,
    /// Where the repository is in the sandbox.
    pub workspace: String,
    pub kept: bool,
    #[serde(flatten)]
    pub result: ExecOutput,
}

/// Checks a command line and its timeout; returns the timeout in seconds.
fn check_command(command: &[String], timeout_secs: Option<u64>) -> Result<u64, ApiError> {
    if command.is_empty() || command[0].is_empty() {
        return Err(ApiError::invalid("command is empty")
            .with_hint("give the program and its arguments, e.g. [\"ls\", \"-la\"]"));
    }
    if command.len() > limits::MAX_ARGS || command.iter().any(|a| a.contains('\0')) {
        return Err(ApiError::invalid("command has more than 4096 arguments or a NUL byte"));
    }
    let timeout = timeout_secs.unwrap_or(limits::DEFAULT_TIMEOUT_SECS);
    if timeout == 0 || timeout > limits::MAX_TIMEOUT_SECS {
        return Err(ApiError::invalid(format!("timeout_secs {timeout} is not between 1 and 3600")));
    }
    Ok(timeout)
}

/// Checks the tool's cwd and env and turns them, with a command and timeout
/// [`check_command`] passed, into a request; the workspace is the default
/// cwd, and the image's defaults (ENV, WORKDIR, USER) go under it all.
fn exec_request(
    command: Vec<String>,
    cwd: Option<String>,
    env: Option<BTreeMap<String, String>>,
    timeout_secs: u64,
    vm: &Vm,
) -> Result<ExecRequest, ApiError> {
    let env = env.unwrap_or_default();
    if env.len() > limits::MAX_ENV || env.keys().any(|k| k.is_empty() || k.contains(['=', '\0'])) {
        return Err(ApiError::invalid(
            "env has more than 256 entries, or a name that is empty or holds '=' or NUL",
        ));
    }
    if let Some(c) = &cwd {
        if !c.starts_with('/') || c.contains('\0') {
            return Err(ApiError::invalid(format!("cwd {c:?} is not an absolute path")));
        }
    }
    let mut req = ExecRequest {
        argv: command,
        env: env.into_iter().collect(),
        cwd: cwd.or_else(|| vm.workspace.as_ref().map(|w| w.guest_path.clone())),
        tty: false,
        size: None,
        timeout_ms: Some(timeout_secs * 1000),
        user: None,
    };
    apply_image_defaults(&mut req, vm.exec_defaults.as_ref());
    Ok(req)
}

/// A sandbox name given by the model: checked before it reaches the daemon.
fn sandbox_ref(s: &str) -> Result<&str, ApiError> {
    if s.is_empty() || s.len() > 64 || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(ApiError::invalid(format!("{s:?} is not a sandbox name"))
            .with_hint("use a name from sandbox_list"));
    }
    Ok(s)
}

#[tool_router]
impl Sandboxes {
    pub fn new(paths: Paths, roots: Vec<PathBuf>) -> Sandboxes {
        Sandboxes { paths, client: Default::default(), roots, tool_router: Self::tool_router() }
    }

    /// The daemon's client and the caps, fetched once.
    async fn client(&self) -> anyhow::Result<&(Client, Caps)> {
        self.client
            .get_or_try_init(|| async {
                let client = crate::client::connect(&self.paths).await?;
                let caps = Caps::from_config(&client.config().await?);
                Ok::<_, anyhow::Error>((client, caps))
            })
            .await
    }

    /// A running sandbox by name.
    async fn running(&self, client: &Client, sandbox: &str) -> anyhow::Result<Vm> {
        let vm = client.vm(sandbox_ref(sandbox)?).await?;
        if vm.state != banger_api::VmState::Running {
            return Err(ApiError::precondition(format!(
                "sandbox {:?} is not running ({})",
                vm.name, vm.state
            ))
            .with_hint(format!(
                "start it with `banger vm start {}`, or make a new one with sandbox_create",
                vm.name
            ))
            .into());
        }
        Ok(vm)
    }

    fn create_request(
        caps: &Caps,
        name: Option<String>,
        image: Option<String>,
        vcpu: Option<u32>,
        memory: Option<String>,
        nat: bool,
        no_start: bool,
    ) -> anyhow::Result<CreateVmRequest> {
        if let Some(n) = &name {
            banger_api::validate::vm_name(n)?;
        }
        if let Some(i) = &image {
            banger_api::validate::object_name(i, "image name")?;
        }
        Ok(CreateVmRequest {
            name,
            image,
            vcpu: vcpu.map(|n| caps.vcpu(n)).transpose()?,
            memory_mib: memory.map(|m| caps.memory(&m)).transpose()?,
            disk_size_mib: None,
            no_start,
            engine: None,
            nat,
            forwards: Vec::new(),
        })
    }

    #[tool(
        description = "Create a new isolated Linux sandbox (a Debian microVM with its own kernel, disk and \
        network) and boot it; it is ready for sandbox_exec when this returns (a few seconds). Use one \
        sandbox per task and delete it with sandbox_delete when done. It cannot reach the internet unless \
        nat is true. Returns its name, IP address and state."
    )]
    async fn sandbox_create(&self, Parameters(p): Parameters<CreateParams>) -> Result<Json<Sandbox>, String> {
        let work = async {
            let (client, caps) = self.client().await?;
            let req =
                Self::create_request(caps, p.name, p.image, p.vcpu, p.memory, p.nat.unwrap_or(false), false)?;
            let vm = client.create_vm(&req, |_| {}).await?;
            Ok::<_, anyhow::Error>(Sandbox::from(&vm))
        };
        work.await.map(Json).map_err(tool_error)
    }

    #[tool(
        description = "List the sandboxes that exist (running or stopped), with name, state, IP and image."
    )]
    async fn sandbox_list(&self) -> Result<Json<SandboxList>, String> {
        let work = async {
            let (client, _) = self.client().await?;
            let vms = client.vms().await?;
            Ok::<_, anyhow::Error>(SandboxList { sandboxes: vms.iter().map(Sandbox::from).collect() })
        };
        work.await.map(Json).map_err(tool_error)
    }

    #[tool(
        description = "Delete a sandbox: it stops and its disk and everything in it are gone. Do this when \
        a task is finished."
    )]
    async fn sandbox_delete(&self, Parameters(p): Parameters<SandboxParam>) -> Result<Json<Deleted>, String> {
        let work = async {
            let (client, _) = self.client().await?;
            let vm = client.delete_vm(sandbox_ref(&p.sandbox)?).await?;
            Ok::<_, anyhow::Error>(Deleted { deleted: vm.name })
        };
        work.await.map(Json).map_err(tool_error)
    }

    #[tool(description = "Run a command in a sandbox and wait for it: returns exit_code, stdout and stderr \
        (each cut at banger's output cap, which the result states). The command is an argv array run \
        without a shell; use [\"sh\", \"-c\", \"...\"] for pipes or cd. A non-zero exit code is a normal \
        result, not a tool error. Runs as root in /root unless cwd is given.")]
    async fn sandbox_exec(&self, Parameters(p): Parameters<ExecParams>) -> Result<Json<ExecOutput>, String> {
        let work = async {
            let stdin = p.stdin.unwrap_or_default();
            if stdin.len() > limits::MAX_STDIN_BYTES {
                return Err(ApiError::invalid("stdin is larger than 1 MiB")
                    .with_hint("write large input to a file with sandbox_write_file and redirect it")
                    .into());
            }
            let timeout = check_command(&p.command, p.timeout_secs)?;
            let (client, caps) = self.client().await?;
            let vm = self.running(client, &p.sandbox).await?;
            let req = exec_request(p.command, p.cwd, p.env, timeout, &vm)?;
            let capture = guest::exec(client, &vm, req, stdin.as_bytes(), caps.max_output_bytes).await?;
            Ok::<_, anyhow::Error>(ExecOutput::from(capture))
        };
        work.await.map(Json).map_err(tool_error)
    }

    #[tool(description = "Read a UTF-8 text file from a sandbox (at most 1 MiB). Binary files, directories \
        and larger files are refused with a hint; use sandbox_exec for those (e.g. ls, head, base64).")]
    async fn sandbox_read_file(
        &self,
        Parameters(p): Parameters<ReadParams>,
    ) -> Result<Json<FileContent>, String> {
        let work = async {
            let path = limits::guest_path(&p.path)?;
            let (client, _) = self.client().await?;
            let vm = self.running(client, &p.sandbox).await?;
            let bytes = guest::read_file(client, &vm, path, limits::MAX_FILE_BYTES).await?;
            let size = bytes.len();
            let content = String::from_utf8(bytes).map_err(|_| {
                ApiError::invalid(format!("{path} is not UTF-8 text"))
                    .with_hint("read binary files with sandbox_exec, e.g. [\"base64\", PATH]")
            })?;
            Ok::<_, anyhow::Error>(FileContent { path: path.to_string(), content, bytes: size })
        };
        work.await.map(Json).map_err(tool_error)
    }

    #[tool(
        description = "Write a text file in a sandbox, replacing it if it exists (missing directories are \
        made). Use it to put code or config in place before running it with sandbox_exec."
    )]
    async fn sandbox_write_file(
        &self,
        Parameters(p): Parameters<WriteParams>,
    ) -> Result<Json<Written>, String> {
        let work = async {
            let path = limits::guest_path(&p.path)?;
            if p.content.len() > limits::MAX_FILE_BYTES {
                return Err(ApiError::invalid("content is larger than 1 MiB").into());
            }
            let mode = match &p.mode {
                None => 0o644,
                Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
                    .ok()
                    .filter(|m| *m <= 0o7777)
                    .ok_or_else(|| {
                    ApiError::invalid(format!("mode {m:?} is not an octal file mode like \"0644\""))
                })?,
            };
            let (client, _) = self.client().await?;
            let vm = self.running(client, &p.sandbox).await?;
            guest::write_file(client, &vm, path, p.content.as_bytes(), mode).await?;
            Ok::<_, anyhow::Error>(Written { path: path.to_string(), bytes: p.content.len() })
        };
        work.await.map(Json).map_err(tool_error)
    }

    #[tool(description = "Copy a git repository from the host into a fresh sandbox and run a command in it \
        (like `banger vm run PATH -- CMD`): the way to run a project's tests or build in isolation. \
        Returns the command's exit_code, stdout and stderr. The sandbox is deleted afterwards unless keep \
        is true.")]
    async fn sandbox_run_repo(
        &self,
        Parameters(p): Parameters<RunRepoParams>,
    ) -> Result<Json<RunRepoOutput>, String> {
        let work = async {
            let dir = limits::host_dir(&p.path, &self.roots)?;
            let plan = workspace::plan(&dir, false, None, None)?;
            let (client, caps) = self.client().await?;
            let req = Self::create_request(caps, None, p.image, p.vcpu, p.memory, false, true)?;
            let timeout = check_command(&p.command, p.timeout_secs)?;
            let vm = client.create_vm(&req, |_| {}).await?;
            let keep = p.keep.unwrap_or(false);
            let result = async {
                workspace::seed(client, &vm.id, &plan).await?;
                client.start_vm(&vm.id, |_| {}).await?;
                workspace::seeded_boot_done(client, &vm.id, &plan).await?;
                let vm = client.vm(&vm.id).await?;
                let req = exec_request(p.command, Some(plan.guest_path()), None, timeout, &vm)?;
                guest::exec(client, &vm, req, &[], caps.max_output_bytes).await
            }
            .await;
            if !keep || result.is_err() {
                if let Err(e) = client.delete_vm(&vm.id).await {
                    note(&format!("could not delete sandbox {}: {e}", vm.name));
                }
            }
            let capture = result?;
            Ok::<_, anyhow::Error>(RunRepoOutput {
                sandbox: vm.name,
                workspace: plan.guest_path(),
                kept: keep,
                result: ExecOutput::from(capture),
            })
        };
        work.await.map(Json).map_err(tool_error)
    }
}

/// stderr is the MCP client's log of this server.
fn note(message: &str) {
    eprintln!("banger mcp: {message}");
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for Sandboxes {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
            .with_server_info(Implementation::new("banger", banger_api::VERSION))
            .with_instructions(
                "banger gives you disposable Linux sandboxes (microVMs). Make one with sandbox_create, \
                 run commands with sandbox_exec, move text files with sandbox_read_file and \
                 sandbox_write_file, and delete it with sandbox_delete. To test a host repository, \
                 use sandbox_run_repo.",
            )
    }
}
