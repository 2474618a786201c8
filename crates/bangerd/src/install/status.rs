//! `banger system status`: every piece of the install checked, OK or FAIL
//! with why.

use super::*;

/// One line of `system status`.
#[derive(serde::Serialize)]
struct Check {
    name: String,
    ok: bool,
    detail: String,
}

impl Check {
    /// OK with what was found, or FAIL with why.
    fn new(name: &str, r: anyhow::Result<String>) -> Check {
        let (ok, detail) = match r {
            Ok(d) => (true, d),
            Err(e) => (false, format!("{e:#}")),
        };
        Check { name: name.into(), ok, detail }
    }
}

pub(super) async fn run(a: StatusArgs) -> anyhow::Result<i32> {
    let layout = Layout::new(a.root.as_deref(), Path::new("/usr/local"));
    let path = layout.install_file();
    let file = match InstallFile::load(&path) {
        Ok(f) => f,
        Err(e) => {
            if a.json {
                json(&serde_json::json!({"installed": false, "install_file": path}))?;
            } else {
                println!("banger is not installed as a system service ({e:#})");
                eprintln!("hint: `sudo banger system install --owner $USER`");
            }
            return Ok(1);
        }
    };
    let mut checks: Vec<Check> = Vec::new();
    if layout.is_real() && systemd_running() {
        for unit in [HELPER_UNIT, DAEMON_UNIT] {
            let out = Command::new("systemctl").args(["is-active", unit]).output();
            let state =
                out.map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()).unwrap_or_default();
            let active = state == "active";
            checks.push(Check { name: unit.into(), ok: active, detail: state });
        }
    }
    let sock = file.helper.socket.clone();
    checks.push(Check::new("helper socket", socket_check(&sock, file.uid, 0o600)));
    let ops = crate::privileged::PrivOps::Helper(sock);
    checks.push(Check::new(
        "helper answers",
        tokio::task::spawn_blocking(move || ops.call(&Request::Ping)).await?,
    ));
    let paths = owner_paths(&file.home, &layout.daemon_runtime());
    checks.push(Check::new("daemon socket", socket_check(&paths.socket(), file.uid, 0o600)));
    let info = Client::new(Endpoint::for_paths(&paths))
        .info()
        .await
        .map_err(anyhow::Error::from)
        .and_then(|i| i.context("no answer"));
    checks.push(Check::new("daemon answers", info.map(|i| format!("pid {}, build {}", i.pid, i.build_id))));
    let all_ok = checks.iter().all(|c| c.ok);
    if a.json {
        json(&serde_json::json!({"installed": true, "install": file, "checks": checks, "ok": all_ok}))?;
    } else {
        fields(&[
            ("owner", format!("{} (uid {})", file.owner, file.uid)),
            ("version", file.version.clone()),
            ("installed", file.installed_at.clone()),
            ("bridge", format!("{} ({})", file.helper.bridge, file.helper.cidr)),
        ]);
        for c in &checks {
            println!("{:<5} {:<16} {}", if c.ok { "OK" } else { "FAIL" }, c.name, c.detail);
        }
    }
    Ok(if all_ok { 0 } else { 1 })
}

/// A socket exists, is a socket, owned by `uid` with exactly `mode`;
/// returns its path.
fn socket_check(p: &Path, uid: u32, mode: u32) -> anyhow::Result<String> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let m = std::fs::symlink_metadata(p).with_context(|| format!("{} is missing", p.display()))?;
    if !m.file_type().is_socket() {
        bail!("{} is not a socket", p.display());
    }
    if m.uid() != uid || m.mode() & 0o777 != mode {
        bail!(
            "{} is uid {} mode {:o}, expected uid {uid} mode {mode:o}",
            p.display(),
            m.uid(),
            m.mode() & 0o777
        );
    }
    Ok(p.display().to_string())
}
