//! `banger daemon`: status and stop. These never start a daemon.

use super::JsonFlag;
use crate::client::{Client, Endpoint};
use crate::output;
use banger_paths::Paths;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum DaemonCmd {
    /// Show whether bangerd runs, its PID, socket, log and version (exit 3 when it does not run)
    Status(JsonFlag),
    /// Start bangerd unless it runs (replacing one of another build), and print
    /// its socket: what SDKs and scripts call before speaking the API
    Start(JsonFlag),
    /// Stop bangerd; running VMs keep running and the next command restarts it
    Stop,
}

pub async fn run(paths: &Paths, cmd: DaemonCmd) -> anyhow::Result<i32> {
    let client = Client::new(Endpoint::for_paths(paths));
    let service = paths.is_service();
    match cmd {
        DaemonCmd::Status(f) => match client.info().await? {
            Some(info) => {
                if f.json {
                    output::json(&serde_json::json!({"running": true, "daemon": info}))?;
                } else {
                    output::fields(&[
                        ("status", "running".into()),
                        ("pid", info.pid.to_string()),
                        ("socket", info.socket),
                        ("log", info.log_path),
                        ("state", info.state_dir),
                        ("version", info.build_id.clone()),
                        ("started", format!("{} ({})", info.started_at, output::age(&info.started_at))),
                    ]);
                    if info.build_id != banger_api::build_id() {
                        eprintln!(
                            "note: this CLI is build {}; the next command will replace the daemon",
                            banger_api::build_id()
                        );
                    }
                }
                Ok(0)
            }
            None => {
                let sock = paths.socket().display().to_string();
                if f.json {
                    output::json(&serde_json::json!({"running": false, "socket": sock}))?;
                } else {
                    println!("bangerd is not running (socket {sock})");
                    if service {
                        eprintln!("hint: it is bangerd.service: `sudo systemctl start bangerd-root bangerd`");
                    } else {
                        eprintln!("hint: any banger command starts it, e.g. `banger ps`");
                    }
                }
                Ok(3)
            }
        },
        DaemonCmd::Start(f) => {
            let client = crate::client::connect(paths).await?;
            let info = client.info().await?.ok_or_else(|| {
                anyhow::anyhow!("bangerd started but does not answer on {}", paths.socket().display())
            })?;
            if f.json {
                output::json(&serde_json::json!({"running": true, "daemon": info}))?;
            } else {
                println!("{}", info.socket);
            }
            Ok(0)
        }
        DaemonCmd::Stop => match client.info().await? {
            Some(info) => {
                client.stop_daemon().await?;
                println!("bangerd (pid {}) stopped; running VMs keep running", info.pid);
                if service {
                    eprintln!(
                        "note: it is bangerd.service; start it again with `sudo systemctl start bangerd`"
                    );
                }
                Ok(0)
            }
            None => {
                println!("bangerd is not running");
                Ok(0)
            }
        },
    }
}
