//! ext4 images without mounting: recognise them, and place files into them
//! with `debugfs -w` (from e2fsprogs).
//!
//! `debugfs` exits 0 even when a command fails, so every edit is verified by
//! reading the result back.

use anyhow::{bail, Context};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Offset of the ext2/3/4 superblock magic (superblock at 1024, field at 56).
const MAGIC_OFFSET: u64 = 1024 + 56;
const EXT_MAGIC: u16 = 0xEF53;

/// Whether `path` holds an ext2/3/4 filesystem (by its superblock magic).
pub fn is_ext4(path: &Path) -> anyhow::Result<bool> {
    let mut f = std::fs::File::open(path).with_context(|| format!("Cannot open {}", path.display()))?;
    let mut magic = [0u8; 2];
    if f.seek(SeekFrom::Start(MAGIC_OFFSET)).is_err() || f.read_exact(&mut magic).is_err() {
        return Ok(false);
    }
    Ok(u16::from_le_bytes(magic) == EXT_MAGIC)
}

/// Finds an e2fsprogs tool (`debugfs`, `mkfs.ext4`, …) on PATH or in the
/// sbin directories, which ordinary users' PATH often lacks.
pub fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let system = ["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from);
    banger_paths::find_executable(None, name, &system)
        .with_context(|| format!("{name} not found; install e2fsprogs (apt-get install e2fsprogs)"))
}

/// One file to place into an image.
#[derive(Debug, Clone)]
pub struct Inject {
    /// The file on the host to copy in.
    pub host: PathBuf,
    /// Absolute destination inside the image.
    pub guest: String,
    /// Permission bits, e.g. 0o755.
    pub mode: u32,
}

/// Places `files` into the ext4 image at `image` (owned by root, with the
/// given modes), creating missing parent directories. Symlinked directories
/// on the way (`/sbin -> usr/sbin` on merged-/usr systems) are followed.
pub fn inject(image: &Path, files: &[Inject]) -> anyhow::Result<()> {
    let debugfs = tool("debugfs")?;
    let mut script = String::new();
    let mut resolved = Vec::new();
    for f in files {
        if !f.guest.starts_with('/')
            || f.guest.contains("/../")
            || f.guest.contains('\n')
            || f.guest.contains(' ')
        {
            bail!("invalid destination {:?} inside the image", f.guest);
        }
        let (parent, name) = f.guest.rsplit_once('/').context("destination has no parent")?;
        let parent = resolve_dir(&debugfs, image, if parent.is_empty() { "/" } else { parent })?;
        let dest = format!("{}/{name}", parent.trim_end_matches('/'));
        // mkdir -p, one component at a time; "already exists" is fine.
        let mut cur = String::new();
        for comp in parent.split('/').filter(|c| !c.is_empty()) {
            cur.push('/');
            cur.push_str(comp);
            script.push_str(&format!("mkdir {cur}\n"));
        }
        let host = f.host.to_str().context("host path is not UTF-8")?;
        if host.contains(['\n', ' ', '"']) {
            bail!("host path {host:?} contains characters debugfs cannot take");
        }
        script.push_str(&format!("rm {dest}\n"));
        script.push_str(&format!("write {host} {dest}\n"));
        script.push_str(&format!("sif {dest} mode 0{:o}\n", 0o100000 | (f.mode & 0o7777)));
        script.push_str(&format!("sif {dest} uid 0\nsif {dest} gid 0\n"));
        let size =
            std::fs::metadata(&f.host).with_context(|| format!("Cannot read {}", f.host.display()))?.len();
        resolved.push((dest, size));
    }
    let out = run_debugfs(&debugfs, image, &["-w", "-f", "-"], Some(&script))?;
    for line in out.stderr.lines() {
        let benign = line.starts_with("debugfs ")
            || line.contains("already exists")
            || line.contains("File not found by ext2_lookup")
            || line.trim().is_empty();
        if !benign {
            bail!("debugfs could not edit {}: {line}", image.display());
        }
    }
    for (dest, size) in resolved {
        let stat = stat(&debugfs, image, &dest)?
            .with_context(|| format!("{dest} is missing from {} after writing it", image.display()))?;
        if !stat.contains(&format!("Size: {size}")) {
            bail!("{dest} in {} has the wrong size after writing it (is the image full?)", image.display());
        }
    }
    Ok(())
}

/// Sets owners inside an image without mounting it (`debugfs set_inode_field`),
/// for files an unprivileged flatten could not chown. Returns how many paths
/// were skipped because debugfs cannot quote their names.
pub fn set_owners(image: &Path, fixes: &[crate::flatten::OwnerFix]) -> anyhow::Result<usize> {
    if fixes.is_empty() {
        return Ok(0);
    }
    let debugfs = tool("debugfs")?;
    let mut script = String::new();
    let mut skipped = 0;
    for f in fixes {
        if f.path.contains(['"', '\n', '\\']) {
            skipped += 1;
            continue;
        }
        script.push_str(&format!(
            "sif \"/{p}\" uid {u}\nsif \"/{p}\" gid {g}\n",
            p = f.path,
            u = f.uid,
            g = f.gid
        ));
    }
    let out = run_debugfs(&debugfs, image, &["-w", "-f", "-"], Some(&script))?;
    if let Some(line) = out.stderr.lines().find(|l| !l.starts_with("debugfs ") && !l.trim().is_empty()) {
        bail!("debugfs could not set owners in {}: {line}", image.display());
    }
    Ok(skipped)
}

/// Follows a symlinked directory inside the image (one level per component),
/// returning the real absolute path.
fn resolve_dir(debugfs: &Path, image: &Path, dir: &str) -> anyhow::Result<String> {
    let mut real = String::new();
    for comp in dir.split('/').filter(|c| !c.is_empty()) {
        let candidate = format!("{real}/{comp}");
        match stat(debugfs, image, &candidate)? {
            Some(s) if s.contains("Type: symlink") => {
                let target = s
                    .lines()
                    .find_map(|l| l.trim().strip_prefix("Fast link dest: "))
                    .map(|t| t.trim_matches('"').to_string())
                    .with_context(|| format!("cannot read the symlink {candidate} in {}", image.display()))?;
                real = if target.starts_with('/') {
                    target.trim_end_matches('/').to_string()
                } else {
                    format!("{real}/{}", target.trim_end_matches('/'))
                };
                if real.contains("..") {
                    bail!("symlink {candidate} in {} leaves the image root", image.display());
                }
            }
            _ => real = candidate,
        }
    }
    Ok(if real.is_empty() { "/".into() } else { real })
}

/// `debugfs -R "stat PATH"`; `None` when the path does not exist.
fn stat(debugfs: &Path, image: &Path, path: &str) -> anyhow::Result<Option<String>> {
    let out = run_debugfs(debugfs, image, &["-R", &format!("stat {path}")], None)?;
    if out.stderr.contains("File not found") || !out.stdout.contains("Inode:") {
        return Ok(None);
    }
    Ok(Some(out.stdout))
}

struct Output {
    stdout: String,
    stderr: String,
}

fn run_debugfs(debugfs: &Path, image: &Path, args: &[&str], stdin: Option<&str>) -> anyhow::Result<Output> {
    let mut child = Command::new(debugfs)
        .args(args)
        .arg(image)
        .stdin(if stdin.is_some() { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("Cannot run {}", debugfs.display()))?;
    if let Some(input) = stdin {
        child.stdin.take().context("debugfs stdin")?.write_all(input.as_bytes())?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("debugfs failed on {}: {}", image.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(Output {
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

/// Makes an ext4 image of `size_mib` MiB at `image` from the contents of
/// `dir` (or empty), without mounting (`mkfs.ext4 -d`). The file starts as
/// all holes, so mkfs may assume zeroed storage (e2fsprogs 1.47+): nothing
/// is written for inode tables and journal, now or at first mount, and the
/// file stays sparse.
pub fn mkfs_from_dir(image: &Path, dir: Option<&Path>, size_mib: u64, label: &str) -> anyhow::Result<()> {
    let mkfs = tool("mkfs.ext4")?;
    let f = std::fs::File::options()
        .write(true)
        .create_new(true)
        .open(image)
        .with_context(|| format!("Cannot create {}", image.display()))?;
    f.set_len(size_mib << 20)?;
    drop(f);
    let run = |extended: &str| {
        let mut cmd = Command::new(&mkfs);
        cmd.args(["-q", "-F", "-t", "ext4", "-L", label, "-m", "0", "-E", extended]);
        if let Some(d) = dir {
            cmd.arg("-d").arg(d);
        }
        cmd.arg(image).stdin(Stdio::null()).output()
    };
    let mut out = run("lazy_itable_init=1,lazy_journal_init=1,assume_storage_prezeroed=1")
        .context("Cannot run mkfs.ext4")?;
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("assume_storage_prezeroed") {
        // Older e2fsprogs: lazy init only.
        out = run("lazy_itable_init=1,lazy_journal_init=1").context("Cannot run mkfs.ext4")?;
    }
    if !out.status.success() {
        let _ = std::fs::remove_file(image);
        bail!("mkfs.ext4 failed on {}: {}", image.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}

/// Creates a VM's own disk: a sparse ext4 file of `size_mib` MiB. The file
/// is all holes, so the inode tables are already zero: telling mkfs so
/// (`assume_storage_prezeroed`, e2fsprogs 1.47+) keeps the kernel from
/// writing them out on first mount, and the disk stays a few MiB.
pub fn create_vm_disk(path: &Path, size_mib: u64) -> anyhow::Result<()> {
    mkfs_from_dir(path, None, size_mib, "banger-disk")
}

/// Creates a VM disk by cloning a formatted template of the same size from
/// `templates` (made with [`create_vm_disk`] on first use). The clone is a
/// sparse copy of a few MiB of metadata instead of a run of mkfs. All clones
/// share the template's filesystem UUID, which is harmless: each guest
/// mounts its disk by device.
pub fn clone_vm_disk(templates: &Path, path: &Path, size_mib: u64) -> anyhow::Result<()> {
    std::fs::create_dir_all(templates).with_context(|| format!("Cannot create {}", templates.display()))?;
    let template = templates.join(format!("{size_mib}M.ext4"));
    if !template.exists() {
        // A directory of its own per attempt: racing first uses (threads of
        // one daemon included) never share a file; the last rename wins,
        // and every contender's template is whole.
        let work = tempfile::Builder::new()
            .prefix(&format!(".{size_mib}M."))
            .tempdir_in(templates)
            .with_context(|| format!("Cannot create a temporary directory in {}", templates.display()))?;
        let tmp = work.path().join("disk.ext4");
        create_vm_disk(&tmp, size_mib)?;
        std::fs::rename(&tmp, &template).with_context(|| format!("Cannot publish {}", template.display()))?;
    }
    banger_fs::sparse_copy(&template, path)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn have_e2fsprogs() -> bool {
        tool("mkfs.ext4").is_ok() && tool("debugfs").is_ok()
    }

    /// Issue 14, item 5: first uses of one size at once, in one process,
    /// each get a good disk and leave one good template.
    #[test]
    fn concurrent_first_clones_share_no_temp_file() {
        if !have_e2fsprogs() {
            banger_testkit::skip(
                "concurrent_first_clones_share_no_temp_file",
                "e2fsprogs (mkfs.ext4, debugfs) not installed",
            );
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let templates = d.path().join("templates");
        let disks: Vec<PathBuf> = (0..6).map(|i| d.path().join(format!("disk{i}.ext4"))).collect();
        std::thread::scope(|s| {
            let handles: Vec<_> =
                disks.iter().map(|p| s.spawn(|| clone_vm_disk(&templates, p, 64))).collect();
            for h in handles {
                h.join().unwrap().unwrap();
            }
        });
        let fsck = tool("e2fsck").unwrap();
        for p in disks.iter().chain([&templates.join("64M.ext4")]) {
            let out = Command::new(&fsck).arg("-fn").arg(p).output().unwrap();
            assert!(
                out.status.success(),
                "{} is not a clean ext4: {}",
                p.display(),
                String::from_utf8_lossy(&out.stdout)
            );
        }
        let left: Vec<_> = std::fs::read_dir(&templates).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left, vec![std::ffi::OsString::from("64M.ext4")], "temporary files left");
    }

    #[test]
    fn mkfs_inject_and_read_back() {
        if !have_e2fsprogs() {
            banger_testkit::skip("mkfs_inject_and_read_back", "e2fsprogs (mkfs.ext4, debugfs) not installed");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        std::fs::create_dir_all(root.join("usr/sbin")).unwrap();
        std::os::unix::fs::symlink("usr/sbin", root.join("sbin")).unwrap();
        let img = d.path().join("img.ext4");
        mkfs_from_dir(&img, Some(&root), 64, "test").unwrap();
        assert!(is_ext4(&img).unwrap());
        let payload = d.path().join("payload");
        std::fs::write(&payload, b"#!/bin/sh\necho hi\n").unwrap();
        inject(
            &img,
            &[
                Inject { host: payload.clone(), guest: "/sbin/banger-init".into(), mode: 0o755 },
                Inject { host: payload.clone(), guest: "/usr/local/bin/banger-agent".into(), mode: 0o755 },
            ],
        )
        .unwrap();
        let debugfs = tool("debugfs").unwrap();
        // /sbin is a symlink, so the file landed in /usr/sbin.
        let s = stat(&debugfs, &img, "/usr/sbin/banger-init").unwrap().unwrap();
        assert!(s.contains("Mode:  0755") || s.contains("Mode:  0755"), "{s}");
        assert!(stat(&debugfs, &img, "/usr/local/bin/banger-agent").unwrap().is_some());
        // Injecting again replaces the file.
        inject(&img, &[Inject { host: payload, guest: "/sbin/banger-init".into(), mode: 0o700 }]).unwrap();
    }

    #[test]
    fn vm_disk_is_sparse_and_quick() {
        if !have_e2fsprogs() {
            banger_testkit::skip("vm_disk_is_sparse_and_quick", "e2fsprogs (mkfs.ext4) not installed");
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("disk.ext4");
        let t = std::time::Instant::now();
        create_vm_disk(&p, 8192).unwrap();
        let took = t.elapsed();
        assert!(is_ext4(&p).unwrap());
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 8192 << 20);
        let alloc = banger_fs::allocated_bytes(&p).unwrap();
        assert!(alloc < 50 << 20, "8 GiB disk allocates {alloc} bytes");
        eprintln!("8 GiB VM disk: {took:?}, {} KiB allocated", alloc >> 10);
        assert!(create_vm_disk(&p, 16).is_err(), "must not overwrite an existing disk");
    }

    #[test]
    fn cloned_disks_are_independent_filesystems() {
        if !have_e2fsprogs() {
            banger_testkit::skip(
                "cloned_disks_are_independent_filesystems",
                "e2fsprogs (mkfs.ext4) not installed",
            );
            return;
        }
        let d = tempfile::tempdir().unwrap();
        let t = std::time::Instant::now();
        clone_vm_disk(&d.path().join("t"), &d.path().join("a.ext4"), 1024).unwrap();
        let first = t.elapsed();
        let t = std::time::Instant::now();
        clone_vm_disk(&d.path().join("t"), &d.path().join("b.ext4"), 1024).unwrap();
        eprintln!("first disk (template made) {first:?}, clone {:?}", t.elapsed());
        for f in ["a.ext4", "b.ext4"] {
            let p = d.path().join(f);
            assert!(is_ext4(&p).unwrap());
            assert_eq!(std::fs::metadata(&p).unwrap().len(), 1024 << 20);
            assert!(banger_fs::allocated_bytes(&p).unwrap() < 16 << 20);
            let out = Command::new(tool("e2fsck").unwrap()).args(["-fn"]).arg(&p).output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        }
    }

    #[test]
    fn not_ext4() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x");
        std::fs::write(&p, vec![0u8; 4096]).unwrap();
        assert!(!is_ext4(&p).unwrap());
        std::fs::write(&p, b"tiny").unwrap();
        assert!(!is_ext4(&p).unwrap());
    }
}
