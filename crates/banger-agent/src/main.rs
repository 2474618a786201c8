//! `banger-agent`: the one binary banger places into every image.
//!
//! - As `/sbin/banger-init` (the kernel's `init=`, PID 1) it assembles the
//!   root filesystem — the image read-only below, the VM's own disk above,
//!   joined with overlayfs — starts the agent, and hands PID 1 over to the
//!   image's init (systemd) or stays PID 1 itself when the image has none.
//!   See [`init`].
//! - As `banger-agent` it serves the host over vsock: health, exec, file
//!   transfer, listening ports, sync and shutdown. See [`server`].
//!
//! It is built static (glibc, `crt-static`) because it must run in images
//! whose libc, if any, is unknown.

mod exec;
mod files;
mod init;
mod nomem;
mod ports;
mod server;
mod supervise;
mod sys;
mod users;

fn main() {
    let argv0 = std::env::args().next().unwrap_or_default();
    let args: Vec<String> = std::env::args().skip(1).collect();
    if std::process::id() == 1 || argv0.ends_with("banger-init") {
        init::main();
    }
    if args.iter().any(|a| a == "--supervise") {
        supervise::run();
    }
    if args.iter().any(|a| a == "--version") {
        println!("banger-agent {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    // `--listen-unix PATH` serves on a Unix socket instead of vsock: how the
    // host-side tests drive the real agent without a VM.
    let unix = match args.as_slice() {
        [] => None,
        [flag, path] if flag == "--listen-unix" => Some(std::path::PathBuf::from(path)),
        _ => {
            eprintln!("usage: banger-agent [--listen-unix PATH]");
            std::process::exit(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("banger-agent: cannot start the runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = rt.block_on(server::run(unix)) {
        eprintln!("banger-agent: {e}");
        std::process::exit(1);
    }
}
