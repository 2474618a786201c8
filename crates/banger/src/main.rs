//! `banger`: one-command development sandboxes on Firecracker microVMs.
//!
//! The CLI is thin: it parses arguments, talks to the per-user daemon
//! `bangerd` over its Unix socket (starting it on first use), and renders
//! the answers. It never touches banger's state files itself.

mod client;
mod commands;
mod output;
mod sys;

use clap::Parser;

fn main() {
    let cli = commands::Cli::parse();
    let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let code = rt.block_on(commands::run(cli));
    // Do not wait for stray tasks (a reaper thread, a half-read stream).
    rt.shutdown_timeout(std::time::Duration::from_millis(100));
    std::process::exit(code);
}
