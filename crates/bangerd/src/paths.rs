//! Where banger keeps things: [`banger_paths`], shared with the CLI.

pub use banger_paths::*;
