//! `banger vm cp`: files and directories between host and guest, as tar
//! streams through the guest agent. Modes, symlinks and mtimes are kept;
//! files land owned by root in the guest and by you on the host. Archives
//! from the guest are unpacked under the same rules the agent applies:
//! nothing may land outside the destination.

use crate::client::Client;
use crate::output::ByteBar;
use banger_agent_proto::client::{exec_collect, get_tar, put_tar_renamed};
use banger_agent_proto::ExecRequest;
use clap::Args;
use std::path::{Path, PathBuf};

#[derive(Debug, Args)]
#[command(
    after_help = "One side is VM:PATH (VM name, id or prefix; PATH absolute).\nExamples:\n  banger vm cp ./src web:/root/src        host directory into the guest\n  banger vm cp web:/var/log/syslog .      guest file into the current directory\n  banger vm cp notes.txt web:/tmp/n.txt   copy under a new name"
)]
pub struct CpArgs {
    /// Source: a host path or VM:PATH
    pub src: String,
    /// Destination: a host path or VM:PATH
    pub dst: String,
}

/// `VM:PATH` → (VM, PATH). A host path with a colon can be written `./a:b`.
fn remote(arg: &str) -> Option<(&str, &str)> {
    let (vm, path) = arg.split_once(':')?;
    let ok = !vm.is_empty() && vm.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    ok.then_some((vm, path))
}

pub async fn run(client: &Client, a: CpArgs) -> anyhow::Result<i32> {
    match (remote(&a.src), remote(&a.dst)) {
        (None, Some((vm, dst))) => upload(client, Path::new(&a.src), vm, dst).await,
        (Some((vm, src)), None) => download(client, vm, src, Path::new(&a.dst)).await,
        (Some(_), Some(_)) => {
            anyhow::bail!("copying between two VMs is not supported; copy through the host")
        }
        (None, None) => anyhow::bail!("one side must be VM:PATH (e.g. web:/root/file)"),
    }
}

async fn upload(client: &Client, src: &Path, vm: &str, dst: &str) -> anyhow::Result<i32> {
    if !dst.starts_with('/') {
        anyhow::bail!("guest path {dst:?} must be absolute");
    }
    let meta = std::fs::symlink_metadata(src).map_err(|e| anyhow::anyhow!("{}: {e}", src.display()))?;
    let name = src
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .ok_or_else(|| anyhow::anyhow!("{} has no file name", src.display()))?;
    // Into an existing guest directory, or under a new name?
    let (dir, rename) = if dst.ends_with('/') || dst == "/" {
        (dst.to_string(), None)
    } else {
        let probe = ExecRequest { argv: vec!["test".into(), "-d".into(), dst.into()], ..Default::default() };
        let (_, _, st) = exec_collect(client.agent(vm).await?, probe, b"").await?;
        if st.code == Some(0) {
            (dst.to_string(), None)
        } else {
            let p = Path::new(dst);
            let parent = p.parent().map(|p| p.display().to_string()).unwrap_or_else(|| "/".into());
            let new = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            (parent, Some(new))
        }
    };
    let total = super::cp_tree_size(src);
    // Small copies are over before a bar would mean anything.
    let bar = ByteBar::new("", Some(total), total >= 1 << 20);
    let (reader, writer) = tokio::io::duplex(1 << 20);
    let src2 = src.to_path_buf();
    let packer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let w = tokio_util::io::SyncIoBridge::new(writer);
        let mut b = tar::Builder::new(w);
        b.follow_symlinks(false);
        if meta.is_dir() {
            b.append_dir_all(&name, &src2)?;
        } else {
            b.append_path_with_name(&src2, &name)?;
        }
        b.into_inner()?.shutdown()
    });
    let stream = client.agent(vm).await?;
    let r = put_tar_renamed(stream, &dir, None, rename, reader, bar.updater()).await;
    bar.finish();
    let packed = packer.await?;
    let r = r.map_err(|e| anyhow::anyhow!("copy into {vm}:{dst} failed: {e}"))?;
    packed.map_err(|e| anyhow::anyhow!("cannot read {}: {e}", src.display()))?;
    eprintln!("copied {} ({} entries, {} bytes) to {vm}:{dst}", src.display(), r.entries, r.bytes);
    Ok(0)
}

async fn download(client: &Client, vm: &str, src: &str, dst: &Path) -> anyhow::Result<i32> {
    if !src.starts_with('/') {
        anyhow::bail!("guest path {src:?} must be absolute");
    }
    let (dir, rename): (PathBuf, Option<String>) = if dst.is_dir() {
        (dst.to_path_buf(), None)
    } else {
        let parent = dst.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if !parent.is_dir() {
            anyhow::bail!("{} does not exist", parent.display());
        }
        (parent.to_path_buf(), dst.file_name().map(|n| n.to_string_lossy().into_owned()))
    };
    let dir = dir.canonicalize()?;
    let bar = ByteBar::new("", None, true);
    let (reader, writer) = tokio::io::duplex(1 << 20);
    let d2 = dir.clone();
    let asked = src.to_string();
    // The guest may be hostile: only the name asked for lands in `dir`.
    let unpacker = tokio::task::spawn_blocking(move || {
        let r = tokio_util::io::SyncIoBridge::new(reader);
        banger_agent_proto::tarsafe::unpack_from_guest(&d2, r, &asked, rename.as_deref())
    });
    let stream = client.agent(vm).await?;
    let got = get_tar(stream, src, writer, bar.updater()).await;
    bar.finish();
    let unpacked = unpacker.await?;
    got.map_err(|e| anyhow::anyhow!("copy from {vm}:{src} failed: {e}"))?;
    let u = unpacked.map_err(|e| anyhow::anyhow!("refused the archive from {vm}: {e}"))?;
    eprintln!("copied {vm}:{src} ({} entries, {} bytes) to {}", u.entries, u.bytes, dst.display());
    if u.skipped > 0 {
        eprintln!("skipped {} device node(s) and FIFO(s): they are not copied", u.skipped);
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn remote_specs() {
        assert_eq!(super::remote("web:/root"), Some(("web", "/root")));
        assert_eq!(super::remote("./a:b"), None);
        assert_eq!(super::remote("/abs:x"), None);
        assert_eq!(super::remote("plain"), None);
    }
}
