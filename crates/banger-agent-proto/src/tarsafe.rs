//! Unpacking tar streams that come from the other side, under rules both
//! sides share: the agent applies them to archives from the host, the host to
//! archives from a guest (which may be hostile).
//!
//! An entry whose path or hardlink target is absolute or contains `..`
//! fails the whole unpack (nothing is silently skipped), and no entry is
//! ever written through a symlink that leads out of the destination (the
//! `tar` crate's `unpack_in` checks every parent). Modes, symlinks and mtimes
//! are kept; ownership is the unpacking user's, or `owner`.

use std::io::Read;
use std::path::{Component, Path};

/// What was unpacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unpacked {
    pub entries: u64,
    pub bytes: u64,
}

/// Checks that a path from an archive stays inside the destination.
pub fn safe_relative(p: &Path) -> Result<(), String> {
    for c in p.components() {
        match c {
            Component::Normal(_) | Component::CurDir => {}
            Component::ParentDir => return Err(format!("archive entry {} contains '..'", p.display())),
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("archive entry {} is an absolute path", p.display()))
            }
        }
    }
    Ok(())
}

/// Unpacks `reader` into the directory `dest` (created if missing).
/// `rename_top` renames the archive's first path component (how `cp` gives
/// a copy a new name).
pub fn unpack(
    dest: &Path,
    reader: impl Read,
    owner: Option<(u32, u32)>,
    rename_top: Option<&str>,
) -> Result<Unpacked, String> {
    if !dest.is_absolute() {
        return Err(format!("destination {} is not absolute", dest.display()));
    }
    if let Some(n) = rename_top {
        if n.is_empty() || n.contains('/') || n == "." || n == ".." {
            return Err(format!("invalid name {n:?}"));
        }
    }
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let mut archive = tar::Archive::new(reader);
    archive.set_preserve_permissions(true);
    archive.set_preserve_mtime(true);
    archive.set_preserve_ownerships(false);
    archive.set_overwrite(true);
    let mut done = Unpacked::default();
    let mut dirs = Vec::new();
    for entry in archive.entries().map_err(|e| format!("not a tar stream: {e}"))? {
        let mut entry = entry.map_err(|e| format!("corrupt tar stream: {e}"))?;
        let raw = entry.path().map_err(|e| format!("bad entry path: {e}"))?.into_owned();
        safe_relative(&raw)?;
        let path = match rename_top {
            Some(n) => {
                let rest: std::path::PathBuf =
                    raw.components().filter(|c| !matches!(c, Component::CurDir)).skip(1).collect();
                if rest.as_os_str().is_empty() {
                    std::path::PathBuf::from(n)
                } else {
                    std::path::PathBuf::from(n).join(rest)
                }
            }
            None => raw.clone(),
        };
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            if let Ok(Some(target)) = entry.link_name() {
                safe_relative(&target)?;
                if rename_top.is_some() {
                    return Err(format!(
                        "archive entry {} is a hard link; refusing to rename it",
                        raw.display()
                    ));
                }
            }
        }
        done.bytes += entry.size();
        let target = dest.join(&path);
        // unpack_in refuses to write through symlinks that leave `dest`; for
        // a renamed entry the same check is made here on its parent.
        let inside = if rename_top.is_some() {
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
                let real = parent.canonicalize().map_err(|e| format!("{}: {e}", parent.display()))?;
                let root = dest.canonicalize().map_err(|e| format!("{}: {e}", dest.display()))?;
                if !real.starts_with(&root) {
                    return Err(format!(
                        "archive entry {} would land outside {}",
                        raw.display(),
                        dest.display()
                    ));
                }
            }
            entry.unpack(&target).map(|_| true)
        } else {
            entry.unpack_in(dest)
        }
        .map_err(|e| format!("cannot unpack {}: {e}", raw.display()))?;
        if !inside {
            return Err(format!("archive entry {} would land outside {}", raw.display(), dest.display()));
        }
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::lchown(&target, Some(uid), Some(gid))
                .map_err(|e| format!("cannot chown {}: {e}", target.display()))?;
        }
        if kind.is_dir() {
            if let Ok(m) = entry.header().mtime() {
                dirs.push((target, m));
            }
        }
        done.entries += 1;
    }
    // Directory mtimes last: unpacking their contents touched them.
    for (d, m) in dirs {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_secs(m);
        let _ = std::fs::File::open(&d).and_then(|f| f.set_modified(t));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_only() {
        assert!(safe_relative(Path::new("a/b/c")).is_ok());
        assert!(safe_relative(Path::new("./a")).is_ok());
        assert!(safe_relative(Path::new("../a")).is_err());
        assert!(safe_relative(Path::new("a/../../b")).is_err());
        assert!(safe_relative(Path::new("/etc/passwd")).is_err());
    }

    /// A tar whose single entry has exactly `path` (bypassing the tar
    /// crate's own checks on the writing side).
    fn hostile(path: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
        let mut h = tar::Header::new_gnu();
        {
            let raw = h.as_old_mut();
            raw.name[..path.len()].copy_from_slice(path.as_bytes());
            if let Some(l) = link {
                raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
            }
        }
        h.set_entry_type(kind);
        h.set_mode(0o644);
        h.set_size(if kind == tar::EntryType::Regular { 5 } else { 0 });
        h.set_cksum();
        let mut out = h.as_bytes().to_vec();
        if kind == tar::EntryType::Regular {
            let mut block = [0u8; 512];
            block[..5].copy_from_slice(b"pwned");
            out.extend_from_slice(&block);
        }
        out.extend_from_slice(&[0u8; 1024]);
        out
    }

    #[test]
    fn hostile_archives_write_nothing_outside() {
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("dest");
        let outside = root.path().join("outside");
        std::fs::create_dir_all(&outside).unwrap();
        let abs = format!("{}/evil", outside.display());
        for t in [
            hostile("../outside/evil", tar::EntryType::Regular, None),
            hostile("a/../../outside/evil", tar::EntryType::Regular, None),
            hostile(&abs, tar::EntryType::Regular, None),
            hostile("hard", tar::EntryType::Link, Some("../outside/target")),
        ] {
            assert!(unpack(&dest, t.as_slice(), None, None).is_err());
            assert!(unpack(&dest, t.as_slice(), None, Some("renamed")).is_err());
        }
        // A symlink out of dest, then a file written through it.
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        b.append_link(&mut h, "esc", &outside).unwrap();
        let mut h = tar::Header::new_gnu();
        h.set_size(5);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, "esc/evil", &b"pwned"[..]).unwrap();
        let t = b.into_inner().unwrap();
        assert!(unpack(&dest, t.as_slice(), None, None).is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "something landed outside");
    }

    #[test]
    fn renames_the_top_entry() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join("dir/sub")).unwrap();
        std::fs::write(src.path().join("dir/sub/f"), b"x").unwrap();
        let mut b = tar::Builder::new(Vec::new());
        b.append_dir_all("dir", src.path().join("dir")).unwrap();
        let t = b.into_inner().unwrap();
        let dst = tempfile::tempdir().unwrap();
        let r = unpack(dst.path(), t.as_slice(), None, Some("copy")).unwrap();
        assert!(r.entries >= 3);
        assert_eq!(std::fs::read(dst.path().join("copy/sub/f")).unwrap(), b"x");
        assert!(!dst.path().join("dir").exists());
        // A single file under a new name.
        let mut b = tar::Builder::new(Vec::new());
        b.append_path_with_name(src.path().join("dir/sub/f"), "f").unwrap();
        let t = b.into_inner().unwrap();
        unpack(dst.path(), t.as_slice(), None, Some("renamed.txt")).unwrap();
        assert_eq!(std::fs::read(dst.path().join("renamed.txt")).unwrap(), b"x");
    }
}
