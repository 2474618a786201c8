//! Flattening OCI/Docker image layers into one directory tree.
//!
//! Layers are applied oldest first. Each is a tar stream (plain, gzip or
//! zstd). Whiteouts are honoured: `.wh.NAME` deletes NAME from the layers
//! below, `.wh..wh..opq` empties its directory of what the layers below put
//! there.
//!
//! Nothing is ever written outside the root, whatever the archive says:
//! - entry names must be relative and free of `..` (else the layer is
//!   refused, naming the entry);
//! - parent directories are resolved inside the root with symlinks followed
//!   *as the guest would see them* (an absolute target restarts at the root,
//!   `..` stops at the root), like `chroot` would, never on the host;
//! - the last component is never followed: whatever is there is replaced;
//! - hard links must point at a non-directory inside the root, resolved the
//!   same way.
//!
//! Owners, modes, mtimes, symlinks, hard links, device nodes and xattrs
//! survive when running as root; otherwise owners are collected for
//! [`crate::ext4::set_owners`] and device nodes are skipped (and counted).

use anyhow::{bail, Context};
use std::collections::{HashMap, HashSet};
use std::ffi::{OsStr, OsString};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";
const MAX_LINKS: usize = 40;

/// What a layer did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct LayerStats {
    pub entries: u64,
    pub bytes: u64,
    pub whiteouts: u64,
    pub skipped_devices: u64,
}

/// An owner that could not be set on the host (not root), to be applied to
/// the ext4 image afterwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnerFix {
    /// Relative to the root, `/`-separated.
    pub path: String,
    pub uid: u64,
    pub gid: u64,
}

/// Applies layers to `root`, which must exist and be empty at the start.
pub struct Flattener {
    root: PathBuf,
    as_root: bool,
    /// Owners to apply later when not running as root.
    pub owner_fixes: Vec<OwnerFix>,
    /// Directory modes applied at the end (a 0555 directory must stay
    /// writable while later layers fill it).
    dir_modes: HashMap<PathBuf, u32>,
    /// File content and entries left before the image is refused as too
    /// large (a decompression bomb), over all layers.
    bytes_left: u64,
    entries_left: u64,
}

/// Entries (files, dirs, links) an image may hold over all its layers.
pub const MAX_ENTRIES: u64 = 5_000_000;

/// A tar stream, decompressed according to its magic bytes.
pub fn decompressed<'a, R: Read + 'a>(r: R) -> anyhow::Result<Box<dyn Read + 'a>> {
    let mut br = BufReader::with_capacity(1 << 20, r);
    let head = br.fill_buf().context("Cannot read the layer")?;
    Ok(if head.starts_with(&[0x1f, 0x8b]) {
        Box::new(flate2::read::MultiGzDecoder::new(br))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Box::new(zstd::stream::read::Decoder::with_buffer(br)?)
    } else {
        Box::new(br)
    })
}

/// Checks an entry name and returns its normal components: relative, no
/// `..`, `.` and empty parts dropped. `None` for the root itself.
pub fn entry_components(raw: &[u8]) -> anyhow::Result<Option<Vec<OsString>>> {
    let p = Path::new(OsStr::from_bytes(raw));
    if raw.contains(&0) {
        bail!("entry {:?} has a NUL byte in its name", p);
    }
    let mut out = Vec::new();
    for c in p.components() {
        match c {
            Component::Normal(n) => out.push(n.to_os_string()),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                bail!("entry {:?} has an absolute path; layers hold paths relative to the root", p)
            }
            Component::ParentDir => bail!("entry {:?} climbs out with `..`", p),
        }
    }
    Ok((!out.is_empty()).then_some(out))
}

impl Flattener {
    pub fn new(root: &Path) -> Flattener {
        Flattener {
            root: root.to_path_buf(),
            as_root: nix::unistd::geteuid().is_root(),
            owner_fixes: Vec::new(),
            dir_modes: HashMap::new(),
            bytes_left: u64::MAX,
            entries_left: MAX_ENTRIES,
        }
    }

    /// At most `max_bytes` of file content over all layers.
    pub fn with_limit(root: &Path, max_bytes: u64) -> Flattener {
        Flattener { bytes_left: max_bytes, ..Flattener::new(root) }
    }

    /// Resolves `parts` (a directory path) inside the root the way the guest
    /// would, creating missing directories when `create` is set. The result
    /// is always the root or below it.
    fn resolve_dir(&self, parts: &[OsString], create: bool) -> anyhow::Result<PathBuf> {
        let mut todo: Vec<OsString> = parts.iter().rev().cloned().collect();
        let mut cur: Vec<OsString> = Vec::new();
        let mut links = 0;
        while let Some(c) = todo.pop() {
            if c == "." || c.is_empty() {
                continue;
            }
            if c == ".." {
                cur.pop();
                continue;
            }
            let mut p = self.root.clone();
            p.extend(&cur);
            p.push(&c);
            match std::fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_symlink() => {
                    links += 1;
                    if links > MAX_LINKS {
                        bail!("too many levels of symbolic links under {}", p.display());
                    }
                    let target = std::fs::read_link(&p)?;
                    if target.is_absolute() {
                        cur.clear();
                    }
                    for t in target.components().rev() {
                        match t {
                            Component::Normal(n) => todo.push(n.to_os_string()),
                            Component::ParentDir => todo.push("..".into()),
                            _ => {}
                        }
                    }
                }
                Ok(m) if m.is_dir() => cur.push(c),
                Ok(_) => bail!("{} is not a directory", self.rel(&p)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => {
                    std::fs::DirBuilder::new()
                        .mode(0o755)
                        .create(&p)
                        .with_context(|| format!("Cannot create {}", p.display()))?;
                    // The image's modes never depend on the daemon's umask.
                    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))?;
                    cur.push(c);
                }
                Err(e) => return Err(e).with_context(|| format!("Cannot resolve {}", self.rel(&p))),
            }
        }
        let mut out = self.root.clone();
        out.extend(cur);
        Ok(out)
    }

    fn rel(&self, p: &Path) -> String {
        p.strip_prefix(&self.root).unwrap_or(p).display().to_string()
    }

    /// Applies one layer (a tar stream, possibly compressed).
    pub fn apply_layer(&mut self, layer: impl Read) -> anyhow::Result<LayerStats> {
        let mut ar = tar::Archive::new(decompressed(layer)?);
        let mut stats = LayerStats::default();
        // What this layer itself made: an opaque marker only hides what the
        // layers below put in the directory.
        let mut made: HashSet<PathBuf> = HashSet::new();
        for entry in ar.entries().context("Cannot read the layer as tar")? {
            let mut entry = entry.context("Corrupt tar entry in layer")?;
            stats.entries += 1;
            self.entries_left = self
                .entries_left
                .checked_sub(1)
                .with_context(|| format!("the image holds more than {MAX_ENTRIES} entries; refusing it"))?;
            let raw = entry.path_bytes().into_owned();
            let Some(parts) = entry_components(&raw)? else {
                continue; // the root directory itself
            };
            let (name, parents) = parts.split_last().expect("non-empty");
            let name_bytes = name.as_bytes();
            let dir = self.resolve_dir(parents, true)?;
            if name == OPAQUE {
                stats.whiteouts += 1;
                for child in std::fs::read_dir(&dir)? {
                    let child = child?.path();
                    if !made.contains(&child) {
                        self.remove(&child)?;
                    }
                }
                continue;
            }
            if let Some(hidden) = name_bytes.strip_prefix(WHITEOUT.as_bytes()) {
                stats.whiteouts += 1;
                let victim = dir.join(OsStr::from_bytes(hidden));
                if hidden.is_empty() || hidden == b"." || hidden == b".." {
                    bail!("entry {:?} is a malformed whiteout", Path::new(OsStr::from_bytes(&raw)));
                }
                self.remove(&victim)?;
                continue;
            }
            let dest = dir.join(name);
            self.apply_entry(&mut entry, &dest, &mut stats)
                .with_context(|| format!("Cannot apply {:?}", Path::new(OsStr::from_bytes(&raw))))?;
            made.insert(dest);
        }
        Ok(stats)
    }

    fn apply_entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<R>,
        dest: &Path,
        stats: &mut LayerStats,
    ) -> anyhow::Result<()> {
        let h = entry.header();
        let kind = h.entry_type();
        let mode = h.mode().unwrap_or(0o644) & 0o7777;
        let (uid, gid) = (h.uid().unwrap_or(0), h.gid().unwrap_or(0));
        let mtime = h.mtime().unwrap_or(0) as i64;
        let existing = std::fs::symlink_metadata(dest).ok();
        use tar::EntryType as T;
        match kind {
            T::Directory => {
                match existing {
                    Some(m) if m.is_dir() => {}
                    Some(_) => {
                        self.remove(dest)?;
                        std::fs::DirBuilder::new().mode(0o755).create(dest)?;
                    }
                    None => std::fs::DirBuilder::new().mode(0o755).create(dest)?,
                }
                self.dir_modes.insert(dest.to_path_buf(), mode);
            }
            T::Regular | T::Continuous | T::GNUSparse => {
                if existing.is_some() {
                    self.remove(dest)?;
                }
                let mut f = std::fs::File::options()
                    .write(true)
                    .create_new(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .mode(0o600)
                    .open(dest)?;
                let n = std::io::copy(&mut entry.take(self.bytes_left.saturating_add(1)), &mut f)?;
                self.bytes_left = self.bytes_left.checked_sub(n).context(
                    "the image's files are larger than the configured limit (max_unpacked_mib); refusing it",
                )?;
                stats.bytes += n;
                f.set_permissions(std::fs::Permissions::from_mode(mode))?;
            }
            T::Symlink => {
                if existing.is_some() {
                    self.remove(dest)?;
                }
                let target = entry.link_name_bytes().context("symlink without a target")?.into_owned();
                std::os::unix::fs::symlink(OsStr::from_bytes(&target), dest)?;
            }
            T::Link => {
                let target_raw = entry.link_name_bytes().context("hard link without a target")?.into_owned();
                let Some(tparts) = entry_components(&target_raw)? else {
                    bail!("hard link to the root directory");
                };
                let (tname, tparents) = tparts.split_last().expect("non-empty");
                let tdir = self.resolve_dir(tparents, false)?;
                let target = tdir.join(tname);
                let tm = std::fs::symlink_metadata(&target).with_context(|| {
                    format!("hard link target {:?} does not exist", Path::new(OsStr::from_bytes(&target_raw)))
                })?;
                if tm.is_dir() {
                    bail!("hard link to a directory");
                }
                if target == dest {
                    return Ok(());
                }
                if existing.is_some() {
                    self.remove(dest)?;
                }
                std::fs::hard_link(&target, dest)?;
                return Ok(()); // shares the target's inode: owner and mode too
            }
            T::Char | T::Block | T::Fifo => {
                if existing.is_some() {
                    self.remove(dest)?;
                }
                let sflag = match kind {
                    T::Char => nix::sys::stat::SFlag::S_IFCHR,
                    T::Block => nix::sys::stat::SFlag::S_IFBLK,
                    _ => nix::sys::stat::SFlag::S_IFIFO,
                };
                let dev = nix::sys::stat::makedev(
                    h.device_major().ok().flatten().unwrap_or(0) as u64,
                    h.device_minor().ok().flatten().unwrap_or(0) as u64,
                );
                let perm = nix::sys::stat::Mode::from_bits_truncate(mode);
                if let Err(e) = nix::sys::stat::mknod(dest, sflag, perm, dev) {
                    if kind == T::Fifo || self.as_root {
                        return Err(e).context("mknod");
                    }
                    stats.skipped_devices += 1;
                    return Ok(());
                }
            }
            // Metadata-only records (pax, GNU long names) are folded into
            // the next entry by the tar crate; anything else is not a file.
            _ => return Ok(()),
        }
        self.set_owner(dest, uid, gid)?;
        if kind != T::Symlink {
            if self.as_root {
                if let Ok(Some(exts)) = entry.pax_extensions() {
                    for ext in exts.flatten() {
                        if let Some(attr) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                            let _ = xattr_set(dest, attr, ext.value_bytes());
                        }
                    }
                }
            }
            let t = nix::sys::time::TimeSpec::new(mtime, 0);
            let _ = nix::sys::stat::utimensat(
                nix::fcntl::AT_FDCWD,
                dest,
                &t,
                &t,
                nix::sys::stat::UtimensatFlags::NoFollowSymlink,
            );
        }
        Ok(())
    }

    fn set_owner(&mut self, dest: &Path, uid: u64, gid: u64) -> anyhow::Result<()> {
        if self.as_root {
            nix::unistd::fchownat(
                nix::fcntl::AT_FDCWD,
                dest,
                Some(nix::unistd::Uid::from_raw(uid as u32)),
                Some(nix::unistd::Gid::from_raw(gid as u32)),
                nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
            )
            .context("chown")?;
        } else if uid != 0 || gid != 0 {
            self.owner_fixes.push(OwnerFix { path: self.rel(dest), uid, gid });
        }
        Ok(())
    }

    /// Removes what is at `p` (see [`remove_any`]) and forgets the modes
    /// saved for directories at or under it: they were theirs alone.
    fn remove(&mut self, p: &Path) -> anyhow::Result<()> {
        self.dir_modes.retain(|d, _| !d.starts_with(p));
        remove_any(p)
    }

    /// Applies directory modes (deepest first) once all layers are in. Each
    /// directory is opened beneath the root with no symlink followed on the
    /// way: one that a later entry replaced by a link (to anywhere, the
    /// host's `/etc` included) or a file is skipped, never chmodded through.
    pub fn finish(&mut self) -> anyhow::Result<()> {
        let root = std::fs::File::open(&self.root)
            .with_context(|| format!("Cannot open {}", self.root.display()))?;
        // The image's `/`, whatever umask made the directory.
        root.set_permissions(std::fs::Permissions::from_mode(0o755))?;
        let mut dirs: Vec<_> = self.dir_modes.drain().collect();
        dirs.sort_by_key(|(p, _)| std::cmp::Reverse(p.components().count()));
        for (p, mode) in dirs {
            let Ok(rel) = p.strip_prefix(&self.root) else { continue };
            let dir =
                match banger_agent_proto::beneath::open_beneath(&root, rel, nix::fcntl::OFlag::O_DIRECTORY) {
                    Ok(fd) => fd,
                    Err(e) if banger_agent_proto::beneath::is_gone_or_link(e) => continue,
                    Err(e) => return Err(e).with_context(|| format!("Cannot open {}", self.rel(&p))),
                };
            nix::sys::stat::fchmod(&dir, nix::sys::stat::Mode::from_bits_truncate(mode))
                .with_context(|| format!("Cannot set the mode of {}", self.rel(&p)))?;
        }
        Ok(())
    }
}

fn xattr_set(path: &Path, name: &[u8], value: &[u8]) -> std::io::Result<()> {
    let p = std::ffi::CString::new(path.as_os_str().as_bytes())?;
    let n = std::ffi::CString::new(name)?;
    // SAFETY: both strings are NUL-terminated and live across the call; the
    // value pointer and length describe a valid slice.
    let rc = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Removes a file, symlink or whole directory tree; a missing path is fine.
/// Never follows a symlink.
fn remove_any(p: &Path) -> anyhow::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => {
            // Directories may have been made read-only by their layer.
            make_writable(p);
            std::fs::remove_dir_all(p).with_context(|| format!("Cannot remove {}", p.display()))
        }
        Ok(_) => std::fs::remove_file(p).with_context(|| format!("Cannot remove {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e.into()),
    }
}

fn make_writable(dir: &Path) {
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                make_writable(&e.path());
            }
        }
    }
}

/// Creates what any banger guest needs at the root and many container
/// images lack: the mount points banger-init uses (the kernel mounts the
/// image read-only, so they cannot be made at boot), a /tmp and a home for
/// root. Existing entries (even symlinks) are left alone.
pub fn ensure_guest_dirs(root: &Path) -> anyhow::Result<()> {
    for (dir, mode) in [
        ("dev", 0o755),
        ("proc", 0o555),
        ("sys", 0o555),
        ("run", 0o755),
        ("tmp", 0o1777),
        ("root", 0o700),
        ("etc", 0o755),
    ] {
        let p = root.join(dir);
        if std::fs::symlink_metadata(&p).is_err() {
            std::fs::DirBuilder::new()
                .mode(0o755)
                .create(&p)
                .with_context(|| format!("Cannot create /{dir}"))?;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

/// Bytes of file content under `root` (symlinks not followed), for sizing
/// the image.
pub fn content_bytes(root: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let m = e.metadata()?;
            total += 4096;
            if m.is_dir() {
                stack.push(e.path());
            } else if m.is_file() {
                total += m.len();
            }
        }
    }
    Ok(total)
}

#[cfg(test)]
mod tests;
