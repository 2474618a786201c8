//! `banger`: one-command development sandboxes on Firecracker microVMs.
//!
//! The CLI is thin: it parses arguments, talks to the per-user daemon
//! `bangerd` over its Unix socket (starting it on first use), and renders
//! the answers. It never touches banger's state files itself. `banger mcp`
//! serves the same operations to AI agents over the Model Context Protocol.

mod client;
mod commands;
mod mcp;
mod output;
mod sys;
mod workspace;

use clap::{CommandFactory, Parser};

fn main() {
    // Shell completion requests (`COMPLETE=bash banger …`) end here.
    clap_complete::CompleteEnv::with_factory(commands::Cli::command).complete();
    let cli = commands::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(commands::run(cli));
    // Exit without shutting the runtime down: a task blocked reading stdin
    // (exec's forwarder) can never finish, and waiting for it would only add
    // latency to every command.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    std::process::exit(code);
}
