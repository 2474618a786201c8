//! Running long external builds (make, debootstrap) with their output in a
//! log file and a line at a time to a progress callback.

use anyhow::{bail, Context};
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// Runs `cmd`, appending its stdout and stderr to `log` and passing each
/// line to `on_line`. Fails naming the log file when the command fails.
pub fn run_logged(
    mut cmd: Command,
    what: &str,
    log: &Path,
    mut on_line: impl FnMut(&str),
) -> anyhow::Result<()> {
    let mut logf = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .with_context(|| format!("Cannot open the build log {}", log.display()))?;
    writeln!(logf, "$ {cmd:?}")?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("Cannot run {what}"))?;
    let stderr = child.stderr.take().context("stderr")?;
    let mut errlog = logf.try_clone()?;
    let err_thread = std::thread::spawn(move || {
        let mut tail = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = writeln!(errlog, "{line}");
            tail.push(line);
            if tail.len() > 20 {
                tail.remove(0);
            }
        }
        tail
    });
    let stdout = child.stdout.take().context("stdout")?;
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        let _ = writeln!(logf, "{line}");
        on_line(&line);
    }
    let status = child.wait()?;
    let tail = err_thread.join().unwrap_or_default();
    if !status.success() {
        let last = tail.iter().rev().take(5).rev().cloned().collect::<Vec<_>>().join("\n");
        bail!("{what} failed ({status}); full log: {}\n{last}", log.display());
    }
    Ok(())
}

/// Whether a program is on PATH (or in the sbin directories).
pub fn have(program: &str) -> bool {
    crate::ext4::tool(program).is_ok()
}
