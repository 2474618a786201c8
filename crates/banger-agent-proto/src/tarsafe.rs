//! Unpacking tar streams that come from the other side, under rules both
//! sides share: the agent applies them to archives from the host, the host to
//! archives from a guest (which may be hostile).
//!
//! Every file operation is made relative to a directory descriptor opened
//! beneath the destination with no symlink followed
//! ([`crate::beneath::open_beneath`]), so nothing, not even an intermediate
//! directory, is ever created outside the destination, whatever the
//! archive holds:
//! - an entry whose path or hard-link target is absolute or contains `..`
//!   fails the whole unpack (nothing is silently skipped);
//! - an entry under a symlink (`link/file`) fails it too: archives made by
//!   banger never need one, and following it is how archives escape;
//! - a symlink entry is written as the link it is (like `cp -a` or `tar`),
//!   never followed afterwards by the unpacking;
//! - a hard link must name a file this same archive placed;
//! - device nodes and FIFOs are skipped and counted.
//!
//! Modes, symlinks and mtimes are kept; ownership is the unpacking user's,
//! or `owner`. Archives from a guest ([`unpack_from_guest`]) must hold
//! exactly the name that was asked for and lose setuid and setgid bits.

use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag};
use nix::sys::stat::{Mode, SFlag};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags};

use crate::beneath::{is_gone_or_link, open_beneath};

/// What was unpacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Unpacked {
    pub entries: u64,
    pub bytes: u64,
    /// Device nodes and FIFOs, which are not copied.
    #[serde(default)]
    pub skipped: u64,
}

/// How an archive is unpacked.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rules<'a> {
    /// The owner of everything unpacked; else the unpacking user.
    pub owner: Option<(u32, u32)>,
    /// A new name for the archive's first path component (how `cp` gives
    /// a copy a new name).
    pub rename_top: Option<&'a str>,
    /// Every entry must be this top-level name or lie under it: what the
    /// other side was asked for, nothing beside it.
    pub only_top: Option<&'a str>,
    /// Clears setuid and setgid bits.
    pub drop_setid: bool,
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
/// `rename_top` renames the archive's first path component.
pub fn unpack(
    dest: &Path,
    reader: impl Read,
    owner: Option<(u32, u32)>,
    rename_top: Option<&str>,
) -> Result<Unpacked, String> {
    unpack_with(dest, reader, &Rules { owner, rename_top, ..Rules::default() })
}

/// Unpacks an archive a guest sent for path `asked` (`vm cp VM:PATH DIR`):
/// only entries named like `asked`'s last component, or under it, are
/// accepted; setuid and setgid bits are dropped.
pub fn unpack_from_guest(
    dest: &Path,
    reader: impl Read,
    asked: &str,
    rename_top: Option<&str>,
) -> Result<Unpacked, String> {
    let top = Path::new(asked).file_name().and_then(|n| n.to_str());
    let top = match top {
        Some(t) => Some(t),
        None if Path::new(asked).components().all(|c| c == Component::RootDir) => None,
        None => return Err(format!("cannot copy {asked:?}: name the file or directory itself")),
    };
    unpack_with(dest, reader, &Rules { only_top: top, rename_top, drop_setid: true, owner: None })
}

fn check_name(n: &str) -> Result<(), String> {
    if n.is_empty() || n.contains('/') || n == "." || n == ".." {
        return Err(format!("invalid name {n:?}"));
    }
    Ok(())
}

/// Unpacks `reader` into `dest` under `rules`.
pub fn unpack_with(dest: &Path, reader: impl Read, rules: &Rules) -> Result<Unpacked, String> {
    if !dest.is_absolute() {
        return Err(format!("destination {} is not absolute", dest.display()));
    }
    for n in [rules.rename_top, rules.only_top].into_iter().flatten() {
        check_name(n)?;
    }
    std::fs::create_dir_all(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let root = nix::fcntl::open(dest, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| format!("cannot open {}: {e}", dest.display()))?;
    let mut archive = tar::Archive::new(reader);
    let mut done = Unpacked::default();
    // Directory modes and mtimes are set last: a read-only directory must
    // take its contents first, and unpacking them touches its mtime.
    let mut dirs: Vec<(PathBuf, u32, u64)> = Vec::new();
    for entry in archive.entries().map_err(|e| format!("not a tar stream: {e}"))? {
        let mut entry = entry.map_err(|e| format!("corrupt tar stream: {e}"))?;
        let raw = entry.path().map_err(|e| format!("bad entry path: {e}"))?.into_owned();
        let Some(rel) = place(&raw, rules)? else { continue };
        let fail = |e: &dyn std::fmt::Display| format!("cannot unpack {}: {e}", raw.display());
        let h = entry.header();
        let kind = h.entry_type();
        let mask = if rules.drop_setid { 0o1777 } else { 0o7777 };
        let mode = h.mode().unwrap_or(0o644) & mask;
        let mtime = h.mtime().unwrap_or(0);
        let name = rel.file_name().expect("a placed entry has a name").to_owned();
        let parent =
            make_dirs(&root, rel.parent().unwrap_or(Path::new("")), rules.owner).map_err(|e| fail(&e))?;
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                match kind_at(&parent, &name) {
                    Some(k) if k == SFlag::S_IFDIR => {}
                    Some(_) => {
                        remove_file(&parent, &name).map_err(|e| fail(&e))?;
                        nix::sys::stat::mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700))
                            .map_err(|e| fail(&e))?;
                    }
                    None => {
                        nix::sys::stat::mkdirat(&parent, name.as_os_str(), Mode::from_bits_truncate(0o700))
                            .map_err(|e| fail(&e))?
                    }
                }
                chown_at(&parent, &name, rules.owner).map_err(|e| fail(&e))?;
                dirs.push((rel, mode, mtime));
            }
            T::Regular | T::Continuous => {
                remove_file(&parent, &name).map_err(|e| fail(&e))?;
                let flags =
                    OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
                let fd =
                    nix::fcntl::openat(&parent, name.as_os_str(), flags, Mode::from_bits_truncate(0o600))
                        .map_err(|e| fail(&e))?;
                let mut f = std::fs::File::from(fd);
                done.bytes += std::io::copy(&mut entry, &mut f).map_err(|e| fail(&e))?;
                if let Some((u, g)) = rules.owner {
                    nix::unistd::fchown(&f, Some(Uid::from_raw(u)), Some(Gid::from_raw(g)))
                        .map_err(|e| fail(&e))?;
                }
                nix::sys::stat::fchmod(&f, Mode::from_bits_truncate(mode)).map_err(|e| fail(&e))?;
                let t = TimeSpec::new(mtime as i64, 0);
                let _ = nix::sys::stat::futimens(&f, &t, &t);
            }
            T::Symlink => {
                let target = entry.link_name().map_err(|e| fail(&e))?.ok_or_else(|| fail(&"no target"))?;
                remove_file(&parent, &name).map_err(|e| fail(&e))?;
                nix::unistd::symlinkat(target.as_ref(), &parent, name.as_os_str()).map_err(|e| fail(&e))?;
                chown_at(&parent, &name, rules.owner).map_err(|e| fail(&e))?;
                let t = TimeSpec::new(mtime as i64, 0);
                let no_follow = nix::sys::stat::UtimensatFlags::NoFollowSymlink;
                let _ = nix::sys::stat::utimensat(&parent, name.as_os_str(), &t, &t, no_follow);
            }
            T::Link => {
                let target = entry.link_name().map_err(|e| fail(&e))?.ok_or_else(|| fail(&"no target"))?;
                let Some(trel) = place(&target, rules)? else {
                    return Err(fail(&"a hard link to the top directory"));
                };
                let tname = trel.file_name().expect("a placed entry has a name");
                let tdir = trel.parent().unwrap_or(Path::new(""));
                let tparent =
                    open_beneath(&root, tdir, OFlag::O_DIRECTORY | OFlag::O_RDONLY).map_err(|e| {
                        fail(&format!("its target {} is not in the archive ({e})", target.display()))
                    })?;
                if kind_at(&tparent, tname) != Some(SFlag::S_IFREG) {
                    return Err(fail(&format!(
                        "its target {} is not a file in the archive",
                        target.display()
                    )));
                }
                remove_file(&parent, &name).map_err(|e| fail(&e))?;
                nix::unistd::linkat(&tparent, tname, &parent, name.as_os_str(), AtFlags::empty())
                    .map_err(|e| fail(&e))?;
            }
            T::Char | T::Block | T::Fifo => {
                done.skipped += 1;
                continue;
            }
            // Metadata records (pax, GNU long names) are folded into the
            // next entry by the tar crate; nothing else is a file.
            _ => continue,
        }
        done.entries += 1;
    }
    for (rel, mode, mtime) in dirs.iter().rev() {
        match open_beneath(&root, rel, OFlag::O_DIRECTORY | OFlag::O_RDONLY) {
            Ok(d) => {
                nix::sys::stat::fchmod(&d, Mode::from_bits_truncate(*mode))
                    .map_err(|e| format!("cannot set the mode of {}: {e}", rel.display()))?;
                let t = TimeSpec::new(*mtime as i64, 0);
                let _ = nix::sys::stat::futimens(&d, &t, &t);
            }
            // Replaced by a later entry: its mode was its own.
            Err(e) if is_gone_or_link(e) => {}
            Err(e) => return Err(format!("cannot open {}: {e}", rel.display())),
        }
    }
    Ok(done)
}

/// Where an entry named `raw` lands, relative to the destination, under
/// `rules`; `None` for the archive's root (`.`).
fn place(raw: &Path, rules: &Rules) -> Result<Option<PathBuf>, String> {
    safe_relative(raw)?;
    let mut parts: Vec<&std::ffi::OsStr> = raw
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            _ => None,
        })
        .collect();
    let Some(first) = parts.first_mut() else { return Ok(None) };
    if let Some(top) = rules.only_top {
        if *first != top {
            return Err(format!(
                "archive entry {} is not {top} or under it; refusing what was not asked for",
                raw.display()
            ));
        }
    }
    if let Some(n) = rules.rename_top {
        *first = n.as_ref();
    }
    Ok(Some(parts.iter().collect()))
}

/// Opens the directory `rel` beneath `root`, creating what is missing one
/// level at a time (0755, owned by `owner`); a symlink on the way fails.
fn make_dirs(root: &OwnedFd, rel: &Path, owner: Option<(u32, u32)>) -> Result<OwnedFd, String> {
    let mut cur = open_beneath(root, Path::new(""), OFlag::O_DIRECTORY | OFlag::O_RDONLY)
        .map_err(|e| format!("cannot open the destination: {e}"))?;
    for c in rel.components() {
        let flags = OFlag::O_DIRECTORY | OFlag::O_RDONLY;
        cur = match open_beneath(&cur, Path::new(c.as_os_str()), flags) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                nix::sys::stat::mkdirat(&cur, c.as_os_str(), Mode::from_bits_truncate(0o755))
                    .map_err(|e| format!("cannot create {}: {e}", rel.display()))?;
                chown_at(&cur, c.as_os_str(), owner).map_err(|e| e.to_string())?;
                let made = open_beneath(&cur, Path::new(c.as_os_str()), flags)
                    .map_err(|e| format!("cannot open {}: {e}", rel.display()))?;
                // 0755 whatever the unpacking process's umask.
                nix::sys::stat::fchmod(&made, Mode::from_bits_truncate(0o755)).map_err(|e| e.to_string())?;
                made
            }
            Err(Errno::ELOOP | Errno::ENOTDIR | Errno::EXDEV) => {
                return Err(format!("{} is a symlink or not a directory", rel.display()))
            }
            Err(e) => return Err(format!("cannot open {}: {e}", rel.display())),
        };
    }
    Ok(cur)
}

/// The file type at `name` in `dir`, symlinks not followed.
fn kind_at(dir: &impl AsFd, name: &std::ffi::OsStr) -> Option<SFlag> {
    let st = nix::sys::stat::fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).ok()?;
    Some(SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()))
}

/// Removes a non-directory at `name` in `dir`, if any (how an entry
/// replaces what an earlier one, or the destination, had there).
fn remove_file(dir: &impl AsFd, name: &std::ffi::OsStr) -> Result<(), String> {
    match kind_at(dir, name) {
        None => Ok(()),
        Some(SFlag::S_IFDIR) => Err("a directory is in the way".into()),
        Some(_) => nix::unistd::unlinkat(dir, name, UnlinkatFlags::NoRemoveDir).map_err(|e| e.to_string()),
    }
}

fn chown_at(dir: &impl AsFd, name: &std::ffi::OsStr, owner: Option<(u32, u32)>) -> nix::Result<()> {
    let Some((u, g)) = owner else { return Ok(()) };
    nix::unistd::fchownat(
        dir,
        name,
        Some(Uid::from_raw(u)),
        Some(Gid::from_raw(g)),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    )
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

    /// One entry: name, kind, mode, link target, data.
    type Entry<'a> = (&'a str, tar::EntryType, u32, Option<&'a str>, &'a [u8]);

    /// A tar built entry by entry.
    fn archive(entries: &[Entry]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, mode, link, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_mode(*mode);
            h.set_size(data.len() as u64);
            match link {
                Some(l) => b.append_link(&mut h, name, l).unwrap(),
                None => b.append_data(&mut h, name, *data).unwrap(),
            }
        }
        b.into_inner().unwrap()
    }

    /// Issue 14, item 2: a directory made through a symlink before any
    /// containment check is a write outside.
    #[test]
    fn no_directory_is_made_through_a_symlink() {
        use tar::EntryType as T;
        let root = tempfile::tempdir().unwrap();
        let (dest, outside) = (root.path().join("dest"), root.path().join("outside"));
        std::fs::create_dir_all(&outside).unwrap();
        let out = outside.display().to_string();
        let t = archive(&[
            ("top/", T::Directory, 0o755, None, b""),
            ("top/esc", T::Symlink, 0o777, Some(&out), b""),
            ("top/esc/made/evil", T::Regular, 0o644, None, b"pwned"),
        ]);
        for rename in [None, Some("renamed")] {
            assert!(unpack(&dest, t.as_slice(), None, rename).is_err());
            assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "a directory was made outside");
        }
    }

    /// Issue 14, item 2: what a guest sends for `vm cp VM:/root/proj DIR`
    /// may only be `proj` and what is under it, with no setuid bits and no
    /// hard link out of it.
    #[test]
    fn a_guest_gets_to_write_only_what_was_asked() {
        use std::os::unix::fs::PermissionsExt;
        use tar::EntryType as T;
        let root = tempfile::tempdir().unwrap();
        let dest = root.path().join("repo");
        let hook = archive(&[
            ("proj/", T::Directory, 0o755, None, b""),
            ("proj/a", T::Regular, 0o644, None, b"a"),
            (".git/hooks/post-checkout", T::Regular, 0o755, None, b"#!/bin/sh\necho pwned"),
        ]);
        let e = unpack_from_guest(&dest, hook.as_slice(), "/root/proj", None).unwrap_err();
        assert!(e.contains(".git/hooks/post-checkout") && e.contains("not proj"), "{e}");
        assert!(!dest.join(".git").exists(), "the hook landed beside the copy");
        // Renamed (`vm cp VM:/root/proj ./copy`): the check is on the name sent.
        let e = unpack_from_guest(&dest, hook.as_slice(), "/root/proj", Some("copy")).unwrap_err();
        assert!(e.contains("not proj"), "{e}");
        assert!(!dest.join(".git").exists() && !dest.join("copy/hooks").exists());

        let setuid = archive(&[
            ("proj/", T::Directory, 0o2775, None, b""),
            ("proj/su", T::Regular, 0o4755, None, b"x"),
            ("proj/link", T::Symlink, 0o777, Some("/etc/passwd"), b""),
        ]);
        let u = unpack_from_guest(&dest, setuid.as_slice(), "/root/proj", None).unwrap();
        assert_eq!(u.entries, 3);
        let mode = |p: &str| std::fs::symlink_metadata(dest.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("proj/su"), 0o755);
        assert_eq!(mode("proj"), 0o775);
        // A link out is kept as the link it is, and never followed.
        assert_eq!(std::fs::read_link(dest.join("proj/link")).unwrap(), Path::new("/etc/passwd"));
        let through = archive(&[("proj/link/x", T::Regular, 0o644, None, b"x")]);
        assert!(unpack_from_guest(&dest, through.as_slice(), "/root/proj", None).is_err());

        std::fs::write(root.path().join("secret"), b"s").unwrap();
        let hard = archive(&[("proj/h", T::Link, 0o644, Some("secret"), b"")]);
        assert!(unpack_from_guest(&dest, hard.as_slice(), "/root/proj", None).is_err());
        assert!(!dest.join("proj/h").exists());
        // The host-side agent rules still allow hard links within the copy.
        let inside = archive(&[("proj/h2", T::Link, 0o644, Some("proj/a"), b"")]);
        unpack_from_guest(&dest, inside.as_slice(), "/root/proj", None).unwrap();
        assert_eq!(std::fs::read(dest.join("proj/h2")).unwrap(), b"a");
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

    /// The property version of the `tarsafe` fuzz target: hostile entries
    /// (climbing names, links out, entries under links, hard links to
    /// anywhere) never write beside the destination.
    mod props {
        use super::*;
        use proptest::prelude::*;
        use tar::EntryType as T;

        fn name() -> impl Strategy<Value = String> {
            let comp = prop_oneof!["proj", "a", "x", "..", ".", "esc", "@OUT"];
            (any::<bool>(), prop::collection::vec(comp, 1..4)).prop_map(|(abs, c)| {
                let p = c.join("/");
                if abs {
                    format!("/{p}")
                } else {
                    p
                }
            })
        }

        fn entry() -> impl Strategy<Value = (String, u8, String)> {
            (name(), 0u8..4, name())
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            #[test]
            fn hostile_archives_never_write_beside(entries in prop::collection::vec(entry(), 1..10)) {
                let d = tempfile::tempdir().unwrap();
                let (dest, outside) = (d.path().join("dest"), d.path().join("outside"));
                std::fs::create_dir_all(outside.join("x")).unwrap();
                let host = outside.display().to_string();
                let mut b = tar::Builder::new(Vec::new());
                for (n, kind, link) in &entries {
                    let (n, link) = (n.replace("@OUT", &host), link.replace("@OUT", &host));
                    let mut h = tar::Header::new_gnu();
                    h.set_mode(0o755);
                    h.set_size(if *kind == 0 { 1 } else { 0 });
                    let kind = [T::Regular, T::Directory, T::Symlink, T::Link][*kind as usize];
                    h.set_entry_type(kind);
                    {
                        let raw = h.as_old_mut();
                        let nb = n.as_bytes();
                        raw.name[..nb.len().min(100)].copy_from_slice(&nb[..nb.len().min(100)]);
                        let lb = link.as_bytes();
                        raw.linkname[..lb.len().min(100)].copy_from_slice(&lb[..lb.len().min(100)]);
                    }
                    h.set_cksum();
                    b.append(&h, if kind == T::Regular { &b"x"[..] } else { &b""[..] }).unwrap();
                }
                let t = b.into_inner().unwrap();
                let _ = unpack_from_guest(&dest, t.as_slice(), "/root/proj", None);
                let _ = unpack(&dest, t.as_slice(), None, Some("copy"));
                let _ = unpack(&dest, t.as_slice(), None, None);
                let beside: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
                prop_assert_eq!(beside.len(), 2, "{:?}", beside);
                let inside: Vec<_> = std::fs::read_dir(&outside).unwrap().map(|e| e.unwrap().file_name()).collect();
                prop_assert_eq!(inside, vec![std::ffi::OsString::from("x")]);
                prop_assert_eq!(std::fs::read_dir(outside.join("x")).unwrap().count(), 0);
            }
        }
    }
}
