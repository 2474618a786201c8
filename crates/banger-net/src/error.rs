//! What can go wrong with the host network, typed: a name or address
//! banger refuses, a tool that cannot be run or that fails, and what was
//! being done when it happened (kept as the error's source).

use std::process::Output;

/// An interface name banger refuses to create or touch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("interface name {0:?} must be 1-15 characters")]
    Length(String),
    #[error("interface name {0:?} may only contain letters, digits, '-' and '_'")]
    Characters(String),
    #[error("interface {0:?} is not banger's: bridge names start with {prefix:?}", prefix = crate::BRIDGE_PREFIX)]
    NotABangerBridge(String),
    #[error("interface {0:?} is not a banger tap (bg<12 hex digits> or bgpool<n>)")]
    NotABangerTap(String),
}

/// A host network operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error(transparent)]
    Name(#[from] NameError),
    #[error("{0:?} is not a MAC address (six lowercase hex pairs)")]
    Mac(String),
    /// A tool (ip, nft, resolvectl) could not be started.
    #[error("Cannot run {tool} ({install})")]
    Spawn {
        tool: String,
        install: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A tool ran and failed; `stderr` is what it said.
    #[error("{command} failed: {stderr}")]
    Failed { command: String, stderr: String },
    /// A file of the kernel's (`ip_forward`) or of banger's could not be
    /// read or written.
    #[error("Cannot {action}")]
    Io {
        action: String,
        #[source]
        source: std::io::Error,
    },
    /// What was being done when `source` happened.
    #[error("Cannot {action}")]
    Step {
        action: String,
        #[source]
        source: Box<NetError>,
    },
}

pub type Result<T, E = NetError> = std::result::Result<T, E>;

/// Names what was being done when an operation failed.
pub(crate) trait Step<T> {
    fn step(self, action: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Step<T> for Result<T> {
    fn step(self, action: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| NetError::Step { action: action(), source: Box::new(e) })
    }
}

/// `Ok` when `out` says the command succeeded, else [`NetError::Failed`].
pub(crate) fn succeeded(command: impl FnOnce() -> String, out: &Output) -> Result<()> {
    if out.status.success() {
        Ok(())
    } else {
        Err(NetError::Failed {
            command: command(),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        })
    }
}

/// Maps an I/O error to [`NetError::Io`].
pub(crate) fn io(action: impl Into<String>) -> impl FnOnce(std::io::Error) -> NetError {
    let action = action.into();
    move |source| NetError::Io { action, source }
}
