//! What banger's test tiers (unit, in-process daemon, CLI, end-to-end)
//! share.
//!
//! - [`skip`]: a test that cannot run on this host says so in one
//!   `SKIPPED` line and is recorded in `$BANGER_SKIP_LOG`, so
//!   `scripts/test` ends with a summary of what did not run and why
//!   instead of counting it as a pass.
//! - [`Run`]: what a banger command printed and how it exited.
//! - [`bangerd_beside`]: the daemon binary that goes with a CLI binary.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Output;

/// Reports that `test` did not run, and why: one `SKIPPED test: why` line
/// on stderr, and a `test\twhy` line appended to `$BANGER_SKIP_LOG` when
/// it is set. The caller then returns.
pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why}");
    let Some(log) = std::env::var_os("BANGER_SKIP_LOG").filter(|l| !l.is_empty()) else { return };
    let line = format!("{}\t{}\n", one_line(test), one_line(why));
    // One write of a short line to an O_APPEND file: lines from tests
    // running at once do not interleave.
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|mut f| f.write_all(line.as_bytes()));
    if let Err(e) = written {
        eprintln!("warning: cannot record the skip in {}: {e}", Path::new(&log).display());
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ").replace('\t', " ")
}

/// How a command exited and what it printed.
#[derive(Debug, Clone)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn from_output(out: &Output) -> Run {
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Stdout parsed as JSON; panics with both streams when it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\n{}", self.stdout, self.stderr))
    }
}

/// The `bangerd` Cargo builds beside the `banger` at `banger`; panics with
/// what to do when it is missing (the daemon is another package's binary,
/// built by `cargo build --workspace`).
pub fn bangerd_beside(banger: &Path) -> PathBuf {
    let p = banger.with_file_name("bangerd");
    assert!(p.is_file(), "{} is missing: build the workspace first (`cargo build --workspace`)", p.display());
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Skips land in the log one per line, whatever their text holds.
    #[test]
    fn skips_are_logged_one_per_line() {
        let d = std::env::temp_dir().join(format!("banger-testkit-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        let log = d.join("skips");
        // Only this test sets the variable in this process.
        std::env::set_var("BANGER_SKIP_LOG", &log);
        skip("a_test", "needs root");
        skip("another", "two\nlines\tand a tab");
        std::env::remove_var("BANGER_SKIP_LOG");
        let text = std::fs::read_to_string(&log).unwrap();
        std::fs::remove_dir_all(&d).unwrap();
        assert_eq!(text, "a_test\tneeds root\nanother\ttwo lines and a tab\n");
    }
}
