//! The vocabulary the banger CLI and the `bangerd` daemon share.
//!
//! Everything that crosses the daemon's Unix socket is defined here: request
//! bodies, the objects the daemon returns, the progress events of long
//! operations and the error envelope. The crate does no I/O, so both sides
//! (and tests) can depend on it without pulling in a runtime.
//!
//! Validation of user input that both sides need (VM names, sizes) also lives
//! here: the CLI uses it to fail fast with a good message, and the daemon uses
//! the very same functions at its API boundary, because a client other than
//! our CLI may call it.

pub mod error;
pub mod events;
pub mod types;
pub mod validate;

pub use error::{ApiError, ErrorCode};
pub use events::Event;
pub use types::*;

/// Version of this build, e.g. `0.1.0`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Git commit this build came from (`git describe --always --dirty`), or
/// `unknown` when built outside a git checkout.
pub const GIT_COMMIT: &str = env!("BANGER_GIT_COMMIT");

/// Identifies one build of banger. The CLI compares it with the daemon's and
/// replaces a daemon of a different build, so that a freshly installed CLI
/// never talks to a stale daemon.
pub fn build_id() -> String {
    format!("{VERSION}+{GIT_COMMIT}")
}

/// `0.1.0 (commit)`, for `--version` output.
pub const VERSION_STRING: &str = concat!(env!("CARGO_PKG_VERSION"), " (", env!("BANGER_GIT_COMMIT"), ")");

/// Path prefix of every API route; bumped when the API breaks compatibility.
pub const API_PREFIX: &str = "/v1";
