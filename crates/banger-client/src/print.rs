//! How every banger program prints for people and scripts: pretty JSON
//! on stdout, aligned `key: value` blocks, and errors as one `error:` line
//! naming what failed and a `hint:` line with the next step. Shared by the
//! CLI and `bangerd system` (which the CLI's `banger system` runs).

use crate::Error;
use banger_api::ApiError;
use serde::Serialize;

/// Prints `value` as pretty JSON on stdout.
pub fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Prints `key: value` lines with aligned values.
pub fn fields(pairs: &[(&str, String)]) {
    let w = pairs.iter().map(|(k, _)| k.len()).max().unwrap_or(0) + 1;
    for (k, v) in pairs {
        println!("{:<w$} {v}", format!("{k}:"));
    }
}

/// Prints an error on stderr as [`describe`] words it.
pub fn error(err: &anyhow::Error) {
    let (message, hint) = describe(err);
    eprintln!("error: {message}");
    if let Some(h) = hint {
        eprintln!("hint: {h}");
    }
}

/// An error as one message and maybe a hint: the daemon's message and hint
/// when the error is the daemon's (raised there or here), else the whole
/// chain of causes and the hint of any API error inside it.
pub fn describe(err: &anyhow::Error) -> (String, Option<String>) {
    let top = err.downcast_ref::<ApiError>();
    if let Some(api) = top.or_else(|| err.downcast_ref::<Error>().and_then(|c| c.api())) {
        return (api.message.clone(), api.hint.clone());
    }
    (format!("{err:#}"), err.chain().find_map(as_api).and_then(|api| api.hint.clone()))
}

/// The daemon's error (code, message, hint), raised here or by the client.
fn as_api<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a ApiError> {
    e.downcast_ref::<ApiError>().or_else(|| e.downcast_ref::<Error>().and_then(|c| c.api()))
}
