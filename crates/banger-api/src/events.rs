//! Progress of long operations (boot, builds, pulls).
//!
//! Such endpoints answer with `application/x-ndjson`: one [`Event`] per line,
//! ending with exactly one `done` or `failed`. The CLI renders `phase` and
//! `progress` on stderr and prints the `done` value as the command's output,
//! so scripts see the same result whether or not they watch progress.

use crate::ApiError;
use serde::{Deserialize, Serialize};

/// Content type of an event stream.
pub const NDJSON: &str = "application/x-ndjson";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A new step began, e.g. `boot` with "waiting for the guest agent".
    Phase { phase: String, message: String },
    /// Measurable progress of the current step.
    Progress {
        label: String,
        current: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
    /// A line of output from a tool the daemon runs (a build log, say).
    Log { line: String },
    /// The operation succeeded; `result` is what the plain endpoint returns.
    Done { result: serde_json::Value },
    /// The operation failed.
    Failed { error: ApiError },
}
