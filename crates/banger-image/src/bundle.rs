//! Bundles: one image or kernel as a `.tar.zst`, for catalogs.
//!
//! An image bundle holds exactly `rootfs.ext4` and `manifest.json`; a kernel
//! bundle `vmlinux`, optionally `initrd`, and `manifest.json`. Unpacking
//! accepts nothing else: only those names (optionally `./`-prefixed), only
//! regular files, each once, all required ones present. The rootfs is
//! written sparse (zero blocks become holes).

use anyhow::{bail, Context};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;

pub const IMAGE_MEMBERS: &[(&str, bool)] = &[("rootfs.ext4", true), ("manifest.json", true)];
pub const KERNEL_MEMBERS: &[(&str, bool)] = &[("vmlinux", true), ("initrd", false), ("manifest.json", true)];

/// A bundle written to disk: what a catalog entry needs.
#[derive(Debug, Clone)]
pub struct Written {
    pub sha256: String,
    pub size_bytes: u64,
}

/// Writes `members` (name in the bundle, file on disk) as a zstd tar to
/// `out` (created new), returning its sha256 and size.
pub fn write(out: &Path, members: &[(&str, &Path)]) -> anyhow::Result<Written> {
    let f = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(out)
        .with_context(|| format!("Cannot create {}", out.display()))?;
    let result = (|| {
        let mut enc = zstd::stream::write::Encoder::new(f, 3)?;
        enc.multithread(std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1))?;
        let mut tar = tar::Builder::new(enc);
        for (name, path) in members {
            let mut src =
                std::fs::File::open(path).with_context(|| format!("Cannot open {}", path.display()))?;
            let mut h = tar::Header::new_gnu();
            h.set_size(src.metadata()?.len());
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_mtime(0);
            tar.append_data(&mut h, name, &mut src).with_context(|| format!("Cannot add {name}"))?;
        }
        let enc = tar.into_inner()?;
        let f = enc.finish()?;
        f.sync_all()?;
        anyhow::Ok(())
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(out);
        return Err(e);
    }
    let size_bytes = std::fs::metadata(out)?.len();
    Ok(Written { sha256: banger_fs::sha256_file(out)?, size_bytes })
}

/// Unpacks a bundle into `dest` (an existing empty dir), allowing only
/// `members` (name, required) and at most `max_bytes` of them in all.
/// Returns the names unpacked.
pub fn unpack(
    bundle: &Path,
    dest: &Path,
    members: &[(&str, bool)],
    max_bytes: u64,
) -> anyhow::Result<Vec<String>> {
    let mut left = max_bytes;
    let f = std::fs::File::open(bundle).with_context(|| format!("Cannot open {}", bundle.display()))?;
    let dec = zstd::stream::read::Decoder::new(f).context("the bundle is not zstd-compressed")?;
    let mut ar = tar::Archive::new(dec);
    let mut seen: Vec<String> = Vec::new();
    for e in ar.entries().context("the bundle is not a tar archive")? {
        let mut e = e.context("the bundle is corrupt")?;
        let raw = e.path_bytes().into_owned();
        let name = String::from_utf8_lossy(&raw);
        let name = name.strip_prefix("./").unwrap_or(&name).to_string();
        if name.is_empty() || name == "." {
            continue;
        }
        let Some((allowed, _)) = members.iter().find(|(m, _)| *m == name) else {
            bail!(
                "the bundle holds an unexpected member {name:?}; a bundle holds only {}",
                members.iter().map(|(m, _)| *m).collect::<Vec<_>>().join(", ")
            );
        };
        if e.header().entry_type() != tar::EntryType::Regular {
            bail!("bundle member {name} is not a regular file");
        }
        if seen.iter().any(|s| s == allowed) {
            bail!("bundle member {name} appears twice");
        }
        let out = dest.join(allowed);
        let n = write_sparse(&mut (&mut e).take(left.saturating_add(1)), &out)
            .with_context(|| format!("Cannot unpack {name}"))?;
        left = left.checked_sub(n).with_context(|| {
            format!("the bundle unpacks to more than {} MiB (max_unpacked_mib); refusing it", max_bytes >> 20)
        })?;
        seen.push(name);
    }
    for (m, required) in members {
        if *required && !seen.iter().any(|s| s == m) {
            bail!("the bundle lacks {m}");
        }
    }
    Ok(seen)
}

/// Copies `r` into a new file, seeking over all-zero 64 KiB blocks.
fn write_sparse(r: &mut impl Read, out: &Path) -> anyhow::Result<u64> {
    let mut f = std::fs::File::options().write(true).create_new(true).open(out)?;
    let mut buf = vec![0u8; 64 << 10];
    let mut len = 0u64;
    loop {
        let mut filled = 0;
        while filled < buf.len() {
            let n = r.read(&mut buf[filled..])?;
            if n == 0 {
                break;
            }
            filled += n;
        }
        if filled == 0 {
            break;
        }
        if buf[..filled].iter().all(|b| *b == 0) {
            f.seek(SeekFrom::Current(filled as i64))?;
        } else {
            f.write_all(&buf[..filled])?;
        }
        len += filled as u64;
        if filled < buf.len() {
            break;
        }
    }
    f.set_len(len)?;
    f.sync_all()?;
    Ok(len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw_bundle(dir: &Path, entries: &[(&str, tar::EntryType, &[u8])]) -> std::path::PathBuf {
        let p = dir.join("b.tar.zst");
        let enc = zstd::stream::write::Encoder::new(std::fs::File::create(&p).unwrap(), 1).unwrap();
        let mut t = tar::Builder::new(enc);
        for (name, kind, data) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(*kind);
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            if *kind == tar::EntryType::Symlink {
                h.set_size(0);
                t.append_link(&mut h, name, "/etc/passwd").unwrap();
            } else {
                // Bypass the builder's path checks to write hostile names.
                let bytes = name.as_bytes();
                h.as_old_mut().name[..bytes.len()].copy_from_slice(bytes);
                h.set_cksum();
                t.append(&h, *data).unwrap();
            }
        }
        t.into_inner().unwrap().finish().unwrap();
        p
    }

    #[test]
    fn round_trip_keeps_bytes_and_holes() {
        let d = tempfile::tempdir().unwrap();
        let rootfs = d.path().join("in.ext4");
        let mut data = vec![0u8; 4 << 20];
        data[1 << 20] = 7;
        std::fs::write(&rootfs, &data).unwrap();
        let manifest = d.path().join("m.json");
        std::fs::write(&manifest, b"{}").unwrap();
        let out = d.path().join("x.tar.zst");
        let w = write(&out, &[("rootfs.ext4", &rootfs), ("manifest.json", &manifest)]).unwrap();
        assert_eq!(w.sha256, banger_fs::sha256_file(&out).unwrap());
        let dest = d.path().join("dest");
        std::fs::create_dir(&dest).unwrap();
        unpack(&out, &dest, IMAGE_MEMBERS, u64::MAX).unwrap();
        assert_eq!(std::fs::read(dest.join("rootfs.ext4")).unwrap(), data);
        assert!(banger_fs::allocated_bytes(&dest.join("rootfs.ext4")).unwrap() < 1 << 20);
        // Issue 14, item 12: the same 4 MiB bundle (a few KiB compressed)
        // under a 1 MiB limit is refused.
        let small = d.path().join("small");
        std::fs::create_dir(&small).unwrap();
        let e = unpack(&out, &small, IMAGE_MEMBERS, 1 << 20).unwrap_err();
        assert!(format!("{e:#}").contains("max_unpacked_mib"), "{e:#}");
    }

    #[test]
    fn hostile_bundles_are_refused() {
        use tar::EntryType::*;
        type Entries<'a> = Vec<(&'a str, tar::EntryType, &'a [u8])>;
        let cases: Vec<(&str, Entries)> = vec![
            (
                "unexpected",
                vec![
                    ("rootfs.ext4", Regular, b"x"),
                    ("manifest.json", Regular, b"{}"),
                    ("evil", Regular, b"x"),
                ],
            ),
            ("traversal", vec![("../rootfs.ext4", Regular, b"x")]),
            ("symlink", vec![("rootfs.ext4", Symlink, b"")]),
            ("missing", vec![("manifest.json", Regular, b"{}")]),
            ("twice", vec![("rootfs.ext4", Regular, b"x"), ("./rootfs.ext4", Regular, b"y")]),
        ];
        for (what, entries) in cases {
            let d = tempfile::tempdir().unwrap();
            let b = raw_bundle(d.path(), &entries);
            let dest = d.path().join("dest");
            std::fs::create_dir(&dest).unwrap();
            assert!(unpack(&b, &dest, IMAGE_MEMBERS, u64::MAX).is_err(), "{what} was accepted");
            assert!(
                !d.path().join("rootfs.ext4").exists()
                    && !d.path().parent().unwrap().join("rootfs.ext4").exists()
            );
        }
    }
}
