//! The JSON messages carried in `Request`, `Response`, `Exit`, `Resize`
//! and `Signal` frames.

use serde::{Deserialize, Serialize};

/// The first frame of every connection.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    /// [`crate::PROTOCOL_VERSION`] of the sender.
    pub v: u32,
    #[serde(flatten)]
    pub op: Op,
}

impl Request {
    pub fn new(op: Op) -> Request {
        Request { v: crate::PROTOCOL_VERSION, op }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Is the agent up, and which version is it?
    Health,
    /// Run a process.
    Exec(ExecRequest),
    /// Unpack the tar stream that follows into `dest` (a directory).
    PutFiles(PutFiles),
    /// Send `path` (a file or directory) as a tar stream.
    GetFiles(GetFiles),
    /// List listening TCP and UDP sockets.
    Ports,
    /// Flush filesystems to disk.
    Sync,
    /// Sync, then shut the guest down (ending the VM).
    Shutdown,
    /// Connect to a TCP port inside the guest; after an ok `Response` the
    /// connection carries raw bytes both ways (no more frames).
    Connect(ConnectRequest),
    /// Make sure a file contains a line (appending it if missing), creating
    /// the file and its parent directories with the given modes.
    EnsureLine(EnsureLine),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnsureLine {
    /// Absolute path in the guest.
    pub path: String,
    /// The line, without its newline.
    pub line: String,
    /// Mode for a new file, e.g. 0o600.
    pub mode: u32,
    /// Mode for directories created on the way, e.g. 0o700.
    pub dir_mode: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectRequest {
    /// TCP port on the guest's loopback (127.0.0.1, then ::1).
    pub port: u16,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ExecRequest {
    /// Program and arguments; the program is looked up on PATH.
    pub argv: Vec<String>,
    /// Extra environment, applied over the agent's defaults.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory; default: the user's home.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Run under a pseudo-terminal (stdout carries the terminal output and
    /// there is no separate stderr).
    #[serde(default)]
    pub tty: bool,
    #[serde(default)]
    pub size: Option<WindowSize>,
    /// Kill the process group after this long; the exit says `timed_out`.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Run as this user (name or uid); default root.
    #[serde(default)]
    pub user: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PutFiles {
    /// Absolute directory to unpack into; created if missing.
    pub dest: String,
    /// Owner for unpacked files (uid, gid); default: root, ignoring the
    /// archive's owners.
    #[serde(default)]
    pub owner: Option<(u32, u32)>,
    /// Give the archive's top entry this name (`cp a VM:/dir/b`).
    #[serde(default)]
    pub rename: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GetFiles {
    /// Absolute path of a file or directory in the guest.
    pub path: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub rows: u16,
    pub cols: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalRequest {
    pub signal: i32,
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitStatus {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
    /// Whether the agent killed it because `timeout_ms` passed.
    #[serde(default)]
    pub timed_out: bool,
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + the signal, or 124 for a
    /// timeout (as `timeout(1)` does).
    pub fn shell_code(&self) -> i32 {
        if self.timed_out {
            124
        } else if let Some(c) = self.code {
            c
        } else if let Some(s) = self.signal {
            128 + s
        } else {
            255
        }
    }
}

/// The agent's answer to a request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Response {
    /// The operation succeeded; `data` depends on it.
    Ok {
        #[serde(default)]
        data: serde_json::Value,
    },
    /// The operation failed; nothing more follows.
    Error { message: String },
}

impl Response {
    pub fn ok(data: impl Serialize) -> Response {
        Response::Ok { data: serde_json::to_value(data).unwrap_or_default() }
    }
    pub fn error(message: impl Into<String>) -> Response {
        Response::Error { message: message.into() }
    }
}

/// `health` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub agent_version: String,
    pub protocol: u32,
    /// `systemd` (the image's init runs) or `banger-init` (ours is PID 1).
    pub init: String,
    pub hostname: String,
    pub uptime_ms: u64,
}

/// One listening socket, as `ports` reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortInfo {
    /// `tcp` or `udp`.
    pub proto: String,
    pub address: String,
    pub port: u16,
    pub pid: Option<u32>,
    pub process: Option<String>,
}

/// `put_files` answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PutResult {
    pub entries: u64,
    pub bytes: u64,
}
