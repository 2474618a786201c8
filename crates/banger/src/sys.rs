//! The CLI's few raw system calls.

use std::os::unix::process::CommandExt;

/// Makes `cmd` start in a new session, detached from our terminal and
/// process group, so the daemon outlives this CLI and ignores its Ctrl-C.
pub fn detach(cmd: &mut std::process::Command) {
    // SAFETY: the closure runs in the forked child before exec and only
    // calls setsid(2), which is async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            nix::unistd::setsid().map_err(std::io::Error::from)?;
            Ok(())
        });
    }
}
