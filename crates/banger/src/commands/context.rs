//! `banger context`: named remote hosts, as Docker's contexts. The current
//! one applies when neither `--host` nor `BANGER_HOST` is given; `default`
//! is this machine.
//!
//! Kept in `$XDG_CONFIG_HOME/banger/contexts.toml`, written atomically and
//! private to the user:
//! ```toml
//! current = "box"
//! [contexts.box]
//! host = "ssh://me@build-box"
//! ```

use crate::output;
use banger_api::ApiError;
use banger_client::remote::Remote;
use banger_paths::Paths;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

pub const DEFAULT: &str = "default";

#[derive(Debug, Subcommand)]
pub enum ContextCmd {
    /// Name a remote host: `banger context create box --host ssh://me@box`
    Create(CreateArgs),
    /// Make a context current for every later command (`default`: this machine)
    Use(NameArg),
    /// List contexts; the current one is marked with *
    #[command(alias = "list")]
    Ls(super::JsonFlag),
    /// Forget a context
    Rm(NameArg),
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// 1-63 of a-z, 0-9 and '-'
    pub name: String,
    /// ssh://[user@]host[:port]
    #[arg(long)]
    pub host: String,
}

#[derive(Debug, Args)]
pub struct NameArg {
    pub name: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Contexts {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current: Option<String>,
    #[serde(default)]
    pub contexts: BTreeMap<String, Context>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Context {
    pub host: String,
}

fn file(paths: &Paths) -> PathBuf {
    paths.config_dir.join("contexts.toml")
}

impl Contexts {
    pub fn load(paths: &Paths) -> anyhow::Result<Contexts> {
        let path = file(paths);
        match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str(&text).map_err(|e| anyhow::anyhow!("Invalid {}: {e}", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Contexts::default()),
            Err(e) => Err(anyhow::anyhow!("Cannot read {}: {e}", path.display())),
        }
    }

    fn save(&self, paths: &Paths) -> anyhow::Result<()> {
        banger_paths::ensure_private_dir(&paths.config_dir)?;
        let text = toml::to_string(self)?;
        // The directory is private to the user (0700).
        banger_fs::write_atomic(&file(paths), text.as_bytes())?;
        Ok(())
    }

    /// The current context's host, if it names one.
    pub fn current_host(&self) -> Option<&str> {
        let name = self.current.as_deref()?;
        self.contexts.get(name).map(|c| c.host.as_str())
    }
}

/// The remote host of this run: `--host`/`BANGER_HOST` (clap folds the two),
/// else the current context. `local` or `default` mean this machine.
pub fn resolve(paths: &Paths, flag: Option<&str>) -> anyhow::Result<Option<Remote>> {
    let host = match flag {
        Some(h) => Some(h.to_string()),
        None => Contexts::load(paths)?.current_host().map(str::to_string),
    };
    match host.as_deref() {
        None | Some("") | Some("local") | Some(DEFAULT) => Ok(None),
        Some(h) => Ok(Some(Remote::parse(h)?)),
    }
}

pub fn run(paths: &Paths, cmd: ContextCmd) -> anyhow::Result<i32> {
    let mut c = Contexts::load(paths)?;
    match cmd {
        ContextCmd::Create(a) => {
            banger_api::validate::vm_name(&a.name)
                .map_err(|e| ApiError::invalid(e.message.replace("VM name", "context name")))?;
            if a.name == DEFAULT {
                return Err(ApiError::invalid("`default` is this machine's context")
                    .with_hint("choose another name")
                    .into());
            }
            if c.contexts.contains_key(&a.name) {
                return Err(ApiError::conflict(format!("context {:?} exists", a.name))
                    .with_hint(format!("remove it first with `banger context rm {}`", a.name))
                    .into());
            }
            let remote = Remote::parse(&a.host)?;
            c.contexts.insert(a.name.clone(), Context { host: remote.display() });
            c.save(paths)?;
            println!("{}", a.name);
            eprintln!(
                "context {} -> {}; make it current with `banger context use {}`",
                a.name,
                remote.display(),
                a.name
            );
            Ok(0)
        }
        ContextCmd::Use(a) => {
            if a.name == DEFAULT {
                c.current = None;
            } else if c.contexts.contains_key(&a.name) {
                c.current = Some(a.name.clone());
            } else {
                return Err(unknown(&a.name));
            }
            c.save(paths)?;
            println!("{}", a.name);
            Ok(0)
        }
        ContextCmd::Rm(a) => {
            if c.contexts.remove(&a.name).is_none() {
                return Err(unknown(&a.name));
            }
            if c.current.as_deref() == Some(a.name.as_str()) {
                c.current = None;
                eprintln!("{} was the current context; `default` (this machine) is now", a.name);
            }
            c.save(paths)?;
            println!("{}", a.name);
            Ok(0)
        }
        ContextCmd::Ls(f) => {
            let current = c.current.clone().unwrap_or_else(|| DEFAULT.into());
            let mut rows = vec![(DEFAULT.to_string(), "this machine".to_string())];
            rows.extend(c.contexts.iter().map(|(n, x)| (n.clone(), x.host.clone())));
            if f.json {
                let list: Vec<_> = rows
                    .iter()
                    .map(|(n, h)| serde_json::json!({"name": n, "host": if n == DEFAULT { None } else { Some(h) }, "current": *n == current}))
                    .collect();
                output::json(&list)?;
            } else {
                let table: Vec<Vec<String>> = rows
                    .into_iter()
                    .map(|(n, h)| vec![if n == current { format!("{n} *") } else { n }, h])
                    .collect();
                output::table(&["NAME", "HOST"], &table);
            }
            Ok(0)
        }
    }
}

fn unknown(name: &str) -> anyhow::Error {
    ApiError::not_found(format!("no context named {name:?}"))
        .with_hint("list them with `banger context ls`")
        .into()
}
