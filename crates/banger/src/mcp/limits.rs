//! What a model may ask for: the `[mcp]` caps from the daemon's effective
//! config, and the checks every tool input passes before anything happens.

use banger_api::validate;
use banger_api::{ApiError, ConfigView};
use std::path::{Component, Path, PathBuf};

/// The largest file `sandbox_read_file` returns and `sandbox_write_file`
/// takes: tool results travel whole in one JSON-RPC message.
pub const MAX_FILE_BYTES: usize = 1 << 20;
/// The longest `sandbox_exec` may run, and its default.
pub const MAX_TIMEOUT_SECS: u64 = 3600;
pub const DEFAULT_TIMEOUT_SECS: u64 = 120;
/// The most stdin `sandbox_exec` passes on.
pub const MAX_STDIN_BYTES: usize = 1 << 20;
/// Bounds on a command line and its environment.
pub const MAX_ARGS: usize = 4096;
pub const MAX_ENV: usize = 256;

/// The `[mcp]` caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub max_vcpu: u32,
    pub max_memory_mib: u64,
    pub max_output_bytes: usize,
}

impl Default for Caps {
    /// The daemon's built-in defaults, for a daemon too old to say.
    fn default() -> Caps {
        Caps { max_vcpu: 4, max_memory_mib: 4096, max_output_bytes: 256 << 10 }
    }
}

impl Caps {
    /// The caps as the daemon's config has them.
    pub fn from_config(view: &ConfigView) -> Caps {
        let get = |k: &str| view.entries.iter().find(|e| e.key == k).map(|e| &e.value);
        let d = Caps::default();
        Caps {
            max_vcpu: get("mcp.max_vcpu").and_then(|v| v.as_u64()).map_or(d.max_vcpu, |n| n as u32),
            max_memory_mib: get("mcp.max_memory")
                .and_then(|v| v.as_str())
                .and_then(|s| validate::parse_size_mib(s).ok())
                .unwrap_or(d.max_memory_mib),
            max_output_bytes: get("mcp.max_output_kib")
                .and_then(|v| v.as_u64())
                .map_or(d.max_output_bytes, |k| (k as usize).saturating_mul(1024)),
        }
    }

    /// Checks a requested vCPU count against the cap.
    pub fn vcpu(&self, n: u32) -> Result<u32, ApiError> {
        validate::vcpu(n)?;
        if n > self.max_vcpu {
            return Err(ApiError::invalid(format!(
                "vcpu {n} is more than banger mcp allows ({})",
                self.max_vcpu
            ))
            .with_hint("ask for fewer, or raise [mcp] max_vcpu in banger's config.toml"));
        }
        Ok(n)
    }

    /// Parses a memory size ("512M", "2G") and checks it against the cap.
    pub fn memory(&self, text: &str) -> Result<u64, ApiError> {
        let mib = validate::parse_size_mib(text)?;
        validate::memory_mib(mib)?;
        if mib > self.max_memory_mib {
            return Err(ApiError::invalid(format!(
                "memory {text} is more than banger mcp allows ({})",
                validate::format_mib(self.max_memory_mib)
            ))
            .with_hint("ask for less, or raise [mcp] max_memory in banger's config.toml"));
        }
        Ok(mib)
    }
}

/// A guest path: absolute, without `..`, NUL or a trailing slash.
pub fn guest_path(p: &str) -> Result<&str, ApiError> {
    let hint = "give an absolute path in the sandbox, e.g. /root/notes.txt";
    if !p.starts_with('/') {
        return Err(ApiError::invalid(format!("path {p:?} is not absolute")).with_hint(hint));
    }
    if p.contains('\0') || p.len() > 4096 {
        return Err(
            ApiError::invalid("the path holds a NUL byte or is longer than 4096 bytes").with_hint(hint)
        );
    }
    if p.split('/').any(|c| c == "..") {
        return Err(ApiError::invalid(format!("path {p:?} contains '..'")).with_hint(hint));
    }
    if p.len() > 1 && p.ends_with('/') || p == "/" {
        return Err(ApiError::invalid(format!("path {p:?} names a directory, not a file")).with_hint(hint));
    }
    Ok(p)
}

/// A host directory for `sandbox_run_repo`: it must resolve (symlinks
/// followed) to somewhere inside one of `roots`.
pub fn host_dir(p: &str, roots: &[PathBuf]) -> Result<PathBuf, ApiError> {
    let allowed = || roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", ");
    let path = Path::new(p);
    if !path.is_absolute() || path.components().any(|c| c == Component::ParentDir) {
        return Err(ApiError::invalid(format!("path {p:?} must be absolute, without '..'"))
            .with_hint(format!("give a directory inside {}", allowed())));
    }
    let real =
        std::fs::canonicalize(path).map_err(|e| ApiError::not_found(format!("host path {p:?}: {e}")))?;
    if !roots.iter().any(|r| real.starts_with(r)) {
        return Err(ApiError::invalid(format!("host path {p:?} is outside what banger mcp may copy from"))
            .with_hint(format!(
                "banger mcp copies only from {}; start it with --allow-path DIR to allow more",
                allowed()
            )));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use banger_api::ConfigEntry;

    #[test]
    fn caps_come_from_the_config_view() {
        let entry = |key: &str, value: serde_json::Value| ConfigEntry {
            key: key.into(),
            value,
            source: "file".into(),
        };
        let view = ConfigView {
            path: "/x".into(),
            file_exists: true,
            entries: vec![
                entry("mcp.max_vcpu", serde_json::json!(2)),
                entry("mcp.max_memory", serde_json::json!("1G")),
                entry("mcp.max_output_kib", serde_json::json!(8)),
            ],
        };
        let caps = Caps::from_config(&view);
        assert_eq!(caps, Caps { max_vcpu: 2, max_memory_mib: 1024, max_output_bytes: 8192 });
        assert_eq!(caps.vcpu(2).unwrap(), 2);
        let e = caps.vcpu(3).unwrap_err();
        assert!(e.message.contains("allows (2)") && e.hint.unwrap().contains("max_vcpu"));
        assert_eq!(caps.memory("512M").unwrap(), 512);
        assert!(caps.memory("2G").unwrap_err().message.contains("allows (1G)"));
        assert!(caps.memory("lots").is_err());
        let empty = ConfigView { path: "/x".into(), file_exists: false, entries: vec![] };
        assert_eq!(Caps::from_config(&empty), Caps::default());
    }

    #[test]
    fn guest_paths_are_absolute_and_clean() {
        assert_eq!(guest_path("/root/a.txt").unwrap(), "/root/a.txt");
        for bad in ["root/a", "/root/../etc/shadow", "/", "/root/", "/a\0b", ""] {
            assert!(guest_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn host_dirs_stay_inside_the_roots() {
        let root = tempfile::tempdir().unwrap();
        let root_real = std::fs::canonicalize(root.path()).unwrap();
        let inside = root_real.join("repo");
        std::fs::create_dir(&inside).unwrap();
        let other = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(other.path(), root_real.join("escape")).unwrap();
        let roots = vec![root_real.clone()];
        assert_eq!(host_dir(inside.to_str().unwrap(), &roots).unwrap(), inside);
        let e = host_dir(root_real.join("escape").to_str().unwrap(), &roots).unwrap_err();
        assert!(e.message.contains("outside") && e.hint.unwrap().contains("--allow-path"), "{}", e.message);
        assert!(host_dir("repo", &roots).is_err());
        assert!(host_dir(&format!("{}/repo/../..", root_real.display()), &roots).is_err());
        assert!(host_dir(other.path().to_str().unwrap(), &roots).is_err());
        assert!(host_dir(&format!("{}/missing", root_real.display()), &roots).is_err());
    }
}
