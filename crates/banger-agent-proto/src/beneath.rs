//! Opening paths beneath a directory with no symlink followed, for paths
//! whose components an untrusted party (an image, a guest, another local
//! user) may have turned into links.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag};

/// Opens `rel` beneath the directory `root` (`openat2` with
/// `RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS`): a symlink anywhere on the way,
/// the last component included, or a path that leaves `root` fails
/// (`ELOOP`, `EXDEV`). An empty `rel` opens `root` itself.
pub fn open_beneath(root: &impl AsFd, rel: &Path, flags: OFlag) -> nix::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW).resolve(
        ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS,
    );
    nix::fcntl::openat2(root, rel, how)
}

/// Whether an [`open_beneath`] error means "not there, or only through a
/// link" rather than a real failure.
pub fn is_gone_or_link(e: Errno) -> bool {
    matches!(e, Errno::ENOENT | Errno::ENOTDIR | Errno::ELOOP | Errno::EXDEV)
}
