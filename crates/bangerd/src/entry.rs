//! The `bangerd` executable's entry point. Usually started by the `banger`
//! CLI on first use; run it by hand to watch its log in the foreground.

use crate::{config::Config, paths::Paths, Server};
use anyhow::Context;
use tracing_subscriber::EnvFilter;

/// Runs the daemon process: parses its few flags, sets up logging, serves
/// until SIGTERM/SIGINT or an API shutdown request.
pub fn main() {
    // Everything the daemon (or the root helper) creates is its own alone,
    // whatever umask it was started with: guest disks, memory, logs, the
    // database. Modes that must differ are set explicitly.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "system") {
        // `banger system …`, which the CLI execs as `bangerd system …`.
        std::process::exit(crate::install::main(&args[1..]));
    }
    if args.iter().any(|a| a == "--version" || a == "-V") {
        println!("bangerd {}", banger_api::build_id());
        return;
    }
    if args.first().is_some_and(|a| a == "root-helper") {
        init_logging();
        if let Err(e) = crate::helper::main(&args[1..]) {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
        return;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!(
            "bangerd: the banger daemon (one per user).\n\n\
             Usage: bangerd [--version]\n\
             \x20      bangerd root-helper [--install-file PATH] [--socket PATH]\n\
             \x20      bangerd system install|status|uninstall ...   (what `banger system` runs)\n\n\
             The banger CLI starts it on first use. It serves its API on\n\
             $XDG_RUNTIME_DIR/banger/bangerd.sock and keeps its state under\n\
             $XDG_STATE_HOME/banger. Set RUST_LOG=debug for more detail.\n\n\
             `root-helper` is the small root process that `banger system install`\n\
             sets up (bangerd-root.service): it does the daemon's privileged\n\
             network work, for banger's owner only, within the install file's policy."
        );
        return;
    }
    if let Some(bad) = args.first() {
        eprintln!("error: unexpected argument {bad:?}\nhint: run `bangerd --help`");
        std::process::exit(2);
    }
    init_logging();
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(run()) {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

async fn run() -> anyhow::Result<()> {
    let paths = Paths::from_env()?;
    let config = Config::load(&paths.config_file())?;
    let server = Server::bind(paths, config).await.context("bangerd cannot start")?;
    let shutdown = async {
        use tokio::signal::unix::{signal, SignalKind};
        let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
        else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = term.recv() => {},
            _ = int.recv() => {},
        }
        tracing::info!("signal received; stopping the daemon (VMs keep running)");
    };
    server.run(shutdown).await
}
