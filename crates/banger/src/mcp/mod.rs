//! `banger mcp`: a Model Context Protocol server over stdio (rmcp), so an
//! AI agent can make sandboxes, run commands in them and move files, with
//! the daemon of this user (or of `--host`) behind it.
//!
//! ```text
//! MCP client ──stdio JSON-RPC──▶ banger mcp ──banger_client──▶ bangerd
//!                                   │ tools.rs: one method per tool
//!                                   │ limits.rs: caps from [mcp] config
//!                                   └ guest.rs: exec capture, file read/write
//! ```
//!
//! Every tool input is checked before anything happens (sizes against the
//! `[mcp]` caps, guest paths absolute and clean, host paths inside the
//! allowed roots); a failure is a tool error (`isError`) carrying the
//! daemon's message and hint, never a crashed server.

mod guest;
mod limits;
mod tools;

use banger_paths::Paths;
use clap::Args;
use rmcp::ServiceExt;
use std::path::PathBuf;

#[derive(Debug, Args)]
#[command(after_help = "\
Speaks MCP on stdin/stdout; add it to an MCP client's configuration, e.g.:
  {\"mcpServers\": {\"banger\": {\"command\": \"banger\", \"args\": [\"mcp\"]}}}

Tools: sandbox_create, sandbox_list, sandbox_delete, sandbox_exec,
sandbox_read_file, sandbox_write_file, sandbox_run_repo.
Caps on what a model may ask for are in config.toml's [mcp] section
(max_vcpu, max_memory, max_output_kib); `banger config show` prints them.")]
pub struct McpArgs {
    /// A host directory sandbox_run_repo may copy from (repeatable;
    /// default: the directory banger mcp was started in)
    #[arg(long = "allow-path", value_name = "DIR")]
    pub allow_paths: Vec<PathBuf>,
}

/// Serves MCP on stdio until the client closes it.
pub async fn run(paths: &Paths, a: McpArgs) -> anyhow::Result<i32> {
    let roots = if a.allow_paths.is_empty() { vec![std::env::current_dir()?] } else { a.allow_paths };
    let roots = roots
        .iter()
        .map(|r| std::fs::canonicalize(r).map_err(|e| anyhow::anyhow!("--allow-path {}: {e}", r.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let server = tools::Sandboxes::new(paths.clone(), roots);
    let service = server
        .serve(rmcp::transport::stdio())
        .await
        .map_err(|e| anyhow::anyhow!("the MCP client did not initialize the session: {e}"))?;
    service.waiting().await.map_err(|e| anyhow::anyhow!("the MCP session ended with an error: {e}"))?;
    Ok(0)
}
