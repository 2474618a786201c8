//! A typed client for `bangerd`'s API: HTTP/1.1 over the daemon's Unix
//! socket, one method per operation, requests and answers from
//! [`banger_api`], one [`Error`].
//!
//! ```text
//! Client::connect(endpoint)   reach the daemon; start it (or replace one
//!                             of another build) unless systemd runs it
//! client.create_vm(&req, |event| …)      long operations stream progress
//! client.vm("name"), client.stop_vm(…)   short ones answer once
//! client.agent("name")                   a raw stream to the guest agent
//! ```
//!
//! The crate knows the API's paths and the daemon's start protocol, and
//! nothing of the daemon's internals: where the socket is, whether systemd
//! runs the daemon and where a daemon it starts logs come in an
//! [`Endpoint`] from the caller.

mod launch;
mod ops;
pub mod print;
pub mod remote;
mod transport;

use banger_api::ApiError;
use std::path::PathBuf;

pub use launch::daemon_binary;
pub use transport::AgentStream;

/// Where the daemon answers, and how to start one.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The daemon's Unix socket.
    pub socket: PathBuf,
    /// A daemon systemd runs (`banger system install`): a client never
    /// starts or replaces it.
    pub service: bool,
    /// Where a daemon this client starts writes its output. Its directory
    /// must exist, private to the user: the caller makes it.
    pub daemon_log: PathBuf,
    /// A daemon on another machine, over ssh: then `socket` is unused and
    /// nothing is ever started or replaced here.
    pub remote: Option<RemoteEndpoint>,
}

/// Where a remote daemon is, and where ssh keeps its shared connections
/// (a private directory of the caller's).
#[derive(Debug, Clone)]
pub struct RemoteEndpoint {
    pub remote: remote::Remote,
    pub control_dir: PathBuf,
}

impl Endpoint {
    /// The daemon of a banger installation at `paths` (a user's own, or
    /// the service of a system install).
    pub fn for_paths(paths: &banger_paths::Paths) -> Endpoint {
        Endpoint {
            socket: paths.socket(),
            service: paths.is_service(),
            daemon_log: paths.daemon_log(),
            remote: None,
        }
    }
}

/// A client of one daemon. Each request uses a fresh connection, so a
/// client is cheap to clone and to share between tasks.
#[derive(Debug, Clone)]
pub struct Client {
    endpoint: Endpoint,
}

/// Everything a call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The daemon refused or failed the operation, with its code,
    /// message and hint.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// Nothing answers on the socket.
    #[error("Cannot reach bangerd at {}: {source}", .socket.display())]
    Unreachable { socket: PathBuf, source: std::io::Error },
    /// The HTTP exchange broke (the daemon went away mid-answer, say).
    #[error("the connection to bangerd failed: {0}")]
    Http(#[from] hyper::Error),
    /// The daemon answered something this client does not understand.
    #[error("bangerd sent an unexpected answer: {0}")]
    Protocol(String),
    /// Starting or stopping the daemon failed.
    #[error("{0}")]
    Daemon(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl Error {
    /// The daemon's own error, when that is what this is.
    pub fn api(&self) -> Option<&ApiError> {
        match self {
            Error::Api(e) => Some(e),
            _ => None,
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Percent-encodes one path segment (a VM, image or kernel reference), so
/// that no name can reach another endpoint.
fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests;
