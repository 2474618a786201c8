//! A VM's own cgroup, capped from its size: CPU time worth its vCPUs and
//! its memory plus the engine's overhead. The jailer makes Firecracker's
//! (`firecracker/<vm id>`, see [`crate::firecracker::jail`]); QEMU's
//! processes are moved into `banger-qemu/<vm id>` after they start. Both
//! cgroup v2 (one unified hierarchy) and v1 (a `cpu` and a `memory`
//! hierarchy) are handled. Root only.

use std::path::{Path, PathBuf};

/// The CPU period the quota is counted in, in microseconds.
const PERIOD_US: u64 = 100_000;

/// Places a VM's engine processes in a cgroup of their own and removes it
/// afterwards; implemented by the daemon (in-process when root, through
/// the root helper otherwise).
pub trait Confiner: std::fmt::Debug + Send + Sync {
    /// Moves `procs` into the VM's group, capped at `vcpu` CPUs' time and
    /// `memory_bytes`.
    fn place(
        &self,
        vm_id: &str,
        procs: &[crate::ProcessRef],
        vcpu: u32,
        memory_bytes: u64,
    ) -> Result<(), String>;
    /// Removes the VM's group (its processes gone); missing is fine.
    fn remove(&self, vm_id: &str) -> Result<(), String>;
}

/// The cgroup hierarchy of this host: 2 (unified) or 1 (per controller).
pub fn version() -> u8 {
    const CGROUP2_SUPER_MAGIC: i64 = 0x6367_7270;
    match nix::sys::statfs::statfs("/sys/fs/cgroup") {
        Ok(s) if s.filesystem_type().0 == CGROUP2_SUPER_MAGIC => 2,
        _ => 1,
    }
}

/// Where cgroup v1 mounts `controller` (from /proc/self/mounts).
fn v1_mount(controller: &str) -> Option<PathBuf> {
    let mounts = std::fs::read_to_string("/proc/self/mounts").ok()?;
    mounts.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 3 && f[2] == "cgroup" && f[3].split(',').any(|o| o == controller))
            .then(|| PathBuf::from(f[1]))
    })
}

/// The directories of cgroup `<parent>/<id>` (one on v2; the cpu and the
/// memory one on v1), with the limit files each takes.
fn dirs(
    version: u8,
    parent: &str,
    id: &str,
    vcpu: u32,
    memory_bytes: u64,
) -> Vec<(PathBuf, Vec<(String, String)>)> {
    let quota = u64::from(vcpu.max(1)) * PERIOD_US;
    if version == 2 {
        let d = Path::new("/sys/fs/cgroup").join(parent).join(id);
        vec![(
            d,
            vec![
                ("cpu.max".into(), format!("{quota} {PERIOD_US}")),
                ("memory.max".into(), memory_bytes.to_string()),
            ],
        )]
    } else {
        let mut out = Vec::new();
        if let Some(m) = v1_mount("cpu") {
            out.push((
                m.join(parent).join(id),
                vec![
                    ("cpu.cfs_period_us".into(), PERIOD_US.to_string()),
                    ("cpu.cfs_quota_us".into(), quota.to_string()),
                ],
            ));
        }
        if let Some(m) = v1_mount("memory") {
            out.push((
                m.join(parent).join(id),
                vec![("memory.limit_in_bytes".into(), memory_bytes.to_string())],
            ));
        }
        out
    }
}

/// The jailer's `--cgroup-version` and `--cgroup FILE=VALUE` arguments for
/// these limits on this host.
pub fn jailer_args(vcpu: u32, memory_bytes: u64) -> Vec<String> {
    let v = version();
    let mut a = vec!["--cgroup-version".to_string(), v.to_string()];
    for (_, limits) in dirs(v, "x", "x", vcpu, memory_bytes) {
        for (file, value) in limits {
            a.extend(["--cgroup".to_string(), format!("{file}={value}")]);
        }
    }
    a
}

/// Makes cgroup `<parent>/<id>` with the limits and moves `pids` into it.
pub fn place(parent: &str, id: &str, pids: &[u32], vcpu: u32, memory_bytes: u64) -> Result<(), String> {
    let v = version();
    let groups = dirs(v, parent, id, vcpu, memory_bytes);
    if groups.is_empty() {
        return Err("no cgroup hierarchy with the cpu and memory controllers is mounted".into());
    }
    for (dir, limits) in groups {
        std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create cgroup {}: {e}", dir.display()))?;
        if v == 2 {
            // The controllers must be on for the parent's children.
            for d in [Path::new("/sys/fs/cgroup"), dir.parent().unwrap_or(&dir)] {
                let _ = std::fs::write(d.join("cgroup.subtree_control"), "+cpu +memory");
            }
        }
        for (file, value) in limits {
            std::fs::write(dir.join(&file), &value)
                .map_err(|e| format!("cannot set {file} = {value} in {}: {e}", dir.display()))?;
        }
        for pid in pids {
            std::fs::write(dir.join("cgroup.procs"), pid.to_string())
                .map_err(|e| format!("cannot move pid {pid} into {}: {e}", dir.display()))?;
        }
    }
    Ok(())
}

/// The groups under `parent` (by name), on any hierarchy.
pub fn children(parent: &str) -> Vec<String> {
    let mut out: Vec<String> = dirs(version(), parent, "x", 1, 0)
        .into_iter()
        .filter_map(|(d, _)| d.parent().map(Path::to_path_buf))
        .flat_map(|p| std::fs::read_dir(p).into_iter().flatten().flatten())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Removes cgroup `<parent>/<id>` (its processes gone); missing is fine.
/// A group whose last process is still exiting is busy for a moment: that
/// is waited out, up to 3 s.
pub fn remove(parent: &str, id: &str) -> Result<(), String> {
    let mut errors = Vec::new();
    for (dir, _) in dirs(version(), parent, id, 1, 0) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            match std::fs::remove_dir(&dir) {
                Ok(()) => break,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) && std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(20));
                }
                Err(e) => {
                    errors.push(format!("cannot remove cgroup {}: {e}", dir.display()));
                    break;
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_follow_the_vm_on_either_hierarchy() {
        let v2 = dirs(2, "banger-qemu", "0123456789ab", 2, 640 << 20);
        assert_eq!(v2[0].0, Path::new("/sys/fs/cgroup/banger-qemu/0123456789ab"));
        assert_eq!(
            v2[0].1,
            [("cpu.max".to_string(), "200000 100000".to_string()), ("memory.max".into(), "671088640".into())]
        );
        for (_, limits) in dirs(1, "p", "i", 1, 1 << 20) {
            for (file, value) in limits {
                let want = match file.as_str() {
                    "cpu.cfs_period_us" | "cpu.cfs_quota_us" => "100000",
                    "memory.limit_in_bytes" => "1048576",
                    other => panic!("unexpected {other}"),
                };
                assert_eq!(value, want, "{file}");
            }
        }
    }

    #[test]
    fn a_process_is_placed_limited_and_the_group_removed() {
        if !nix::unistd::geteuid().is_root() {
            banger_testkit::skip("a_process_is_placed_limited_and_the_group_removed", "needs root");
            return;
        }
        let mut child = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let id = format!("test-{}", std::process::id());
        if let Err(e) = place("banger-test", &id, &[child.id()], 1, 256 << 20) {
            let _ = child.kill();
            let _ = child.wait();
            // Hosts without a writable hierarchy (a container) cannot run this.
            banger_testkit::skip("a_process_is_placed_limited_and_the_group_removed", &e.to_string());
            return;
        }
        let cgroup = std::fs::read_to_string(format!("/proc/{}/cgroup", child.id())).unwrap();
        assert!(cgroup.lines().any(|l| l.ends_with(&format!("/banger-test/{id}"))), "{cgroup}");
        child.kill().unwrap();
        child.wait().unwrap();
        remove("banger-test", &id).unwrap();
        assert!(dirs(version(), "banger-test", &id, 1, 0).iter().all(|(d, _)| !d.exists()));
        for (d, _) in dirs(version(), "banger-test", "x", 1, 0) {
            let _ = std::fs::remove_dir(d.parent().unwrap());
        }
    }
}
