//! `banger config show`.

use super::JsonFlag;
use crate::client::Client;
use crate::output;
use banger_api::{ConfigView, DaemonInfo};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective configuration and where each value came from
    Show(JsonFlag),
}

pub async fn run(client: Client, cmd: ConfigCmd) -> anyhow::Result<i32> {
    let ConfigCmd::Show(f) = cmd;
    let view: ConfigView = client.config().await?;
    if f.json {
        output::json(&view)?;
        return Ok(0);
    }
    println!(
        "# config file: {} ({})",
        view.path,
        if view.file_exists { "read" } else { "not present; built-in defaults" }
    );
    let rows: Vec<Vec<String>> = view
        .entries
        .iter()
        .map(|e| {
            let v = match &e.value {
                serde_json::Value::Null => "(unset)".to_string(),
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            vec![e.key.clone(), v, e.source.clone()]
        })
        .collect();
    output::table(&["KEY", "VALUE", "SOURCE"], &rows);
    // The daemon reads the file when it starts; say so if it changed since.
    let info: DaemonInfo = client.version().await?;
    let changed = std::fs::metadata(&view.path)
        .and_then(|m| m.modified())
        .ok()
        .zip(humantime::parse_rfc3339(&info.started_at).ok());
    if let Some((modified, started)) = changed {
        if modified > started + std::time::Duration::from_secs(1) {
            eprintln!(
                "note: {} changed after the daemon started; run `banger daemon stop` to apply it",
                view.path
            );
        }
    }
    Ok(0)
}
