//! `banger doctor`.

use super::JsonFlag;
use crate::client::Client;
use crate::output;
use banger_api::{CheckLevel as Level, DoctorCheck as Check};

pub async fn run(client: &Client, f: JsonFlag) -> anyhow::Result<i32> {
    let checks: Vec<Check> = client.doctor().await?;
    let failed = checks.iter().any(|c| c.level == Level::Fail);
    if f.json {
        output::json(&checks)?;
    } else {
        let w = checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        for c in &checks {
            let tag = match c.level {
                Level::Pass => "PASS",
                Level::Warn => "WARN",
                Level::Fail => "FAIL",
            };
            println!("{tag}  {:<w$}  {}", c.name, c.detail);
            if c.level != Level::Pass {
                if let Some(h) = &c.hint {
                    println!("      {:<w$}  hint: {h}", "");
                }
            }
        }
    }
    Ok(if failed { 1 } else { 0 })
}
