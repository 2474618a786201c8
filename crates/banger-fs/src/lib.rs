//! File helpers banger shares: sparse-aware copy, streaming sha256, atomic
//! writes. Every failure names the file and what was being done to it,
//! with the OS error as its source.

use nix::unistd::{lseek, Whence};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

/// A file operation that failed.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("Cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} changed size while it was being read", path.display())]
    Shrank { path: PathBuf },
    #[error("{} has no parent directory or no file name", path.display())]
    NotAFilePath { path: PathBuf },
}

pub type Result<T, E = FsError> = std::result::Result<T, E>;

/// Maps an I/O error to [`FsError::Io`] for `path`.
fn io<'a, E: Into<std::io::Error>>(action: &'static str, path: &'a Path) -> impl FnOnce(E) -> FsError + 'a {
    move |e| FsError::Io { action, path: path.to_path_buf(), source: e.into() }
}

/// Copies `src` to a new file `dst`, keeping holes: only the data extents are
/// copied (with `copy_file_range`), so a 2 GiB image with 300 MiB of data
/// costs 300 MiB of I/O and of disk. Returns the apparent size.
pub fn sparse_copy(src: &Path, dst: &Path) -> Result<u64> {
    let from = File::open(src).map_err(io("open", src))?;
    let len = from.metadata().map_err(io("stat", src))?.len();
    let to = File::options().write(true).create_new(true).open(dst).map_err(io("create", dst))?;
    to.set_len(len).map_err(io("size", dst))?;
    let mut pos: i64 = 0;
    let end = len as i64;
    while pos < end {
        let data = match lseek(from.as_fd(), pos, Whence::SeekData) {
            Ok(off) => off,
            Err(nix::errno::Errno::ENXIO) => break, // only a hole remains
            Err(e) => return Err(io("find the data of", src)(e)),
        };
        let hole = lseek(from.as_fd(), data, Whence::SeekHole).map_err(io("find the holes of", src))?;
        copy_range(&from, &to, data, hole - data).map_err(|e| match e {
            CopyError::Shrank => FsError::Shrank { path: src.to_path_buf() },
            CopyError::Io(e) => io("copy to", dst)(e),
        })?;
        pos = hole;
    }
    to.sync_all().map_err(io("sync", dst))?;
    Ok(len)
}

enum CopyError {
    Shrank,
    Io(std::io::Error),
}

impl From<std::io::Error> for CopyError {
    fn from(e: std::io::Error) -> Self {
        CopyError::Io(e)
    }
}

fn copy_range(from: &File, to: &File, offset: i64, len: i64) -> Result<(), CopyError> {
    let mut off_in = offset;
    let mut off_out = offset;
    let mut left = len as usize;
    while left > 0 {
        let n = match nix::fcntl::copy_file_range(
            from.as_fd(),
            Some(&mut off_in),
            to.as_fd(),
            Some(&mut off_out),
            left,
        ) {
            Ok(n) => n,
            // Since Linux 5.19 copy_file_range refuses files on two
            // different filesystems (EXDEV), and some filesystems never
            // supported it: copy through memory instead.
            Err(nix::errno::Errno::EXDEV | nix::errno::Errno::EOPNOTSUPP | nix::errno::Errno::ENOSYS) => {
                return copy_range_buffered(from, to, off_in, left);
            }
            Err(e) => return Err(CopyError::Io(e.into())),
        };
        if n == 0 {
            return Err(CopyError::Shrank);
        }
        left -= n;
    }
    Ok(())
}

/// `len` bytes at `offset` of `from` to the same offset of `to`, through a
/// buffer.
fn copy_range_buffered(from: &File, to: &File, offset: i64, len: usize) -> Result<(), CopyError> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; 1 << 20];
    let mut off = offset as u64;
    let mut left = len;
    while left > 0 {
        let want = left.min(buf.len());
        let n = from.read_at(&mut buf[..want], off)?;
        if n == 0 {
            return Err(CopyError::Shrank);
        }
        to.write_all_at(&buf[..n], off)?;
        off += n as u64;
        left -= n;
    }
    Ok(())
}

/// Hex sha256 of a file's contents. Holes are hashed as the zeros they read
/// as, from memory, without reading them: a 2 GiB image with 500 MiB of data
/// costs 500 MiB of reads.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(io("open", path))?;
    let len = f.metadata().map_err(io("stat", path))?.len() as i64;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let zeros = vec![0u8; 1 << 20];
    let mut pos: i64 = 0;
    while pos < len {
        // The next data extent; no SEEK_DATA support means all data.
        let data = match lseek(f.as_fd(), pos, Whence::SeekData) {
            Ok(off) => off,
            Err(nix::errno::Errno::ENXIO) => len,
            Err(_) => pos,
        };
        let mut hole = data - pos;
        while hole > 0 {
            let n = hole.min(zeros.len() as i64) as usize;
            h.update(&zeros[..n]);
            hole -= n as i64;
        }
        if data >= len {
            break;
        }
        let end = lseek(f.as_fd(), data, Whence::SeekHole).unwrap_or(len).min(len);
        lseek(f.as_fd(), data, Whence::SeekSet).map_err(io("seek in", path))?;
        let mut left = (end - data) as usize;
        while left > 0 {
            let want = left.min(buf.len());
            let n = f.read(&mut buf[..want]).map_err(io("read", path))?;
            if n == 0 {
                return Err(FsError::Shrank { path: path.to_path_buf() });
            }
            h.update(&buf[..n]);
            left -= n;
        }
        pos = end;
    }
    Ok(hex::encode(h.finalize()))
}

/// Copies `src` to `dst` (a new file) and returns the sha256 of what was
/// copied, reading the source once.
pub fn copy_with_sha256(src: &Path, dst: &Path) -> Result<String> {
    let mut from = File::open(src).map_err(io("open", src))?;
    let mut to = File::options().write(true).create_new(true).open(dst).map_err(io("create", dst))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = from.read(&mut buf).map_err(io("read", src))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(io("write", dst))?;
    }
    to.sync_all().map_err(io("sync", dst))?;
    Ok(hex::encode(h.finalize()))
}

/// Writes `data` to `path` atomically: a temp file in the same directory,
/// fsync, rename, fsync of the directory. Readers see the old or the new
/// file, never a torn one, even across a crash.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(FsError::NotAFilePath { path: path.to_path_buf() });
    };
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(io("write", path))
}

/// Bytes actually allocated on disk for `path` (not its apparent size).
pub fn allocated_bytes(path: &Path) -> std::io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)?.blocks() * 512)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Seek, SeekFrom};

    #[test]
    fn sparse_copy_keeps_holes_and_content() {
        let d = tempfile::tempdir().unwrap();
        check_sparse_copy(d.path(), d.path());
    }

    /// `image register --rootfs` from another filesystem (a second disk, a
    /// tmpfs): copy_file_range says EXDEV there.
    #[test]
    fn sparse_copy_across_filesystems() {
        use std::os::unix::fs::MetadataExt;
        let (Ok(a), Ok(b)) = (tempfile::tempdir_in("/dev/shm"), tempfile::tempdir_in("/var/tmp")) else {
            banger_testkit::skip("sparse_copy_across_filesystems", "needs /dev/shm and /var/tmp");
            return;
        };
        let dev = |p: &Path| std::fs::metadata(p).unwrap().dev();
        if dev(a.path()) == dev(b.path()) {
            banger_testkit::skip(
                "sparse_copy_across_filesystems",
                "/dev/shm and /var/tmp are one filesystem here",
            );
            return;
        }
        check_sparse_copy(a.path(), b.path());
        check_sparse_copy(b.path(), a.path());
    }

    fn check_sparse_copy(src_dir: &Path, dst_dir: &Path) {
        let src = src_dir.join("src");
        {
            let mut f = File::create(&src).unwrap();
            f.set_len(64 << 20).unwrap();
            f.seek(SeekFrom::Start(1 << 20)).unwrap();
            f.write_all(&[7u8; 4096]).unwrap();
            f.seek(SeekFrom::Start(40 << 20)).unwrap();
            f.write_all(b"tail").unwrap();
        }
        let dst = dst_dir.join("dst");
        assert_eq!(sparse_copy(&src, &dst).unwrap(), 64 << 20);
        assert_eq!(sha256_file(&src).unwrap(), sha256_file(&dst).unwrap());
        assert!(allocated_bytes(&dst).unwrap() < 4 << 20, "copy is not sparse");
        // Refuses to overwrite.
        assert!(sparse_copy(&src, &dst).is_err());
    }

    #[test]
    fn atomic_write_replaces() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("h.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn sparse_hash_equals_plain_hash() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("s");
        let mut f = File::create(&p).unwrap();
        f.set_len(9 << 20).unwrap();
        f.seek(SeekFrom::Start(3 << 20)).unwrap();
        f.write_all(&[5u8; 70_000]).unwrap();
        f.seek(SeekFrom::Start((9 << 20) - 10)).unwrap();
        f.write_all(b"tail bytes").unwrap();
        drop(f);
        let plain = hex::encode(Sha256::digest(std::fs::read(&p).unwrap()));
        assert_eq!(sha256_file(&p).unwrap(), plain);
        std::fs::write(&p, b"").unwrap();
        assert_eq!(sha256_file(&p).unwrap(), hex::encode(Sha256::digest(b"")));
    }

    #[test]
    fn copy_hashes() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        std::fs::write(&a, b"hello").unwrap();
        let sum = copy_with_sha256(&a, &d.path().join("b")).unwrap();
        assert_eq!(sum, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824");
    }
}
