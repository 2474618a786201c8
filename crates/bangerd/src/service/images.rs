//! Images: register an existing ext4 rootfs, list, show, delete.
//!
//! An image lives in `images/<id>/rootfs.ext4` and is immutable once
//! published: VMs attach it read-only and keep their changes on their own
//! disk. On the way in, banger's init and agent are placed into it with
//! `debugfs` (no mount), so any Linux userland boots under banger.

use super::kernels::input_file;
use super::Daemon;
use crate::error::{store_err, OrInternal, Result};
use crate::util::{new_id, now_ms, rfc3339};
use banger_api::{validate, ApiError, Image, RegisterImageRequest};
use banger_image::ext4;
use banger_store::ImageRecord;
use std::path::{Path, PathBuf};

/// Where banger's init lives inside every image (the kernel's `init=`).
pub const GUEST_INIT_PATH: &str = "/sbin/banger-init";
/// Where the agent lives inside every image.
pub const GUEST_AGENT_PATH: &str = "/usr/local/bin/banger-agent";

pub fn to_api(i: &ImageRecord) -> Image {
    Image {
        id: i.id.clone(),
        name: i.name.clone(),
        kernel: i.kernel.clone(),
        rootfs_path: i.rootfs_path.clone(),
        size_bytes: i.size_bytes,
        sha256: i.sha256.clone(),
        created_at: rfc3339(i.created_at_ms),
        source: i.source.clone(),
        manifest: i.manifest.clone(),
    }
}

impl Daemon {
    pub fn list_images(&self) -> Result<Vec<Image>> {
        Ok(self.store.list_images().map_err(store_err)?.iter().map(to_api).collect())
    }

    /// Finds an image by exact id, then exact name, then unique id prefix.
    pub fn image_record(&self, reference: &str) -> Result<ImageRecord> {
        if let Some(i) = self.store.get_image_by_id(reference).map_err(store_err)? {
            return Ok(i);
        }
        if let Some(i) = self.store.get_image_by_name(reference).map_err(store_err)? {
            return Ok(i);
        }
        let all = self.store.list_images().map_err(store_err)?;
        let mut hits = all.into_iter().filter(|i| !reference.is_empty() && i.id.starts_with(reference));
        match (hits.next(), hits.next()) {
            (Some(i), None) => Ok(i),
            (Some(_), Some(_)) => {
                Err(ApiError::invalid(format!("Image reference {reference:?} is ambiguous"))
                    .with_hint("use the full image name or id"))
            }
            _ => Err(ApiError::not_found(format!("Image {reference:?} not found")).with_hint(
                "list images with `banger image list`; build the default one with `banger image build`",
            )),
        }
    }

    pub fn show_image(&self, reference: &str) -> Result<Image> {
        Ok(to_api(&self.image_record(reference)?))
    }

    /// Fails with `conflict` when an image of that name exists.
    pub fn ensure_image_absent(&self, name: &str) -> Result<()> {
        if self.store.get_image_by_name(name).map_err(store_err)?.is_some() {
            return Err(ApiError::conflict(format!("Image {name:?} already exists")).with_hint(format!(
                "pick another name, or remove it first with `banger image delete {name}`"
            )));
        }
        Ok(())
    }

    /// Copies an ext4 rootfs into the store, places banger's init and agent
    /// in it, and records it.
    pub async fn register_image(&self, req: RegisterImageRequest) -> Result<Image> {
        validate::object_name(&req.name, "image name")?;
        let rootfs = input_file(&req.rootfs, "rootfs")?;
        let is_ext4 = ext4::is_ext4(&rootfs).or_internal(|| format!("Cannot read {}", rootfs.display()))?;
        if !is_ext4 {
            return Err(ApiError::invalid(format!("{} is not an ext4 filesystem image", rootfs.display()))
                .with_hint("create one with `mkfs.ext4 -d DIR FILE SIZE`, or use `banger image build`"));
        }
        self.kernel_record(&req.kernel)?;
        let agent = self.agent_binary()?;
        let _guard = self.name_locks.lock(&format!("image/{}", req.name)).await;
        self.ensure_image_absent(&req.name)?;
        let id = new_id();
        let images_dir = self.paths.images_dir();
        let manifest = serde_json::json!({
            "registered_from": rootfs.display().to_string(),
            "agent_version": banger_api::build_id(),
        });
        let staged = tokio::task::spawn_blocking({
            let id = id.clone();
            move || {
                stage_image(
                    &images_dir,
                    &id,
                    |dst| Ok(banger_fs::sparse_copy(&rootfs, dst).map(drop)?),
                    &agent,
                )
            }
        })
        .await
        .or_internal(|| "image register task".into())?
        .or_internal(|| format!("Cannot register image {:?}", req.name))?;
        self.record_image(&id, &req.name, &req.kernel, staged, "register", Some(manifest))
    }

    /// Inserts the row for an image already published under `images/<id>/`;
    /// removes the files if the insert fails.
    pub fn record_image(
        &self,
        id: &str,
        name: &str,
        kernel: &str,
        staged: StagedImage,
        source: &str,
        manifest: Option<serde_json::Value>,
    ) -> Result<Image> {
        let rec = ImageRecord {
            id: id.to_string(),
            name: name.to_string(),
            kernel: kernel.to_string(),
            rootfs_path: staged.rootfs.display().to_string(),
            size_bytes: staged.size_bytes,
            sha256: staged.sha256,
            source: source.to_string(),
            manifest,
            created_at_ms: now_ms(),
        };
        if let Err(e) = self.store.insert_image(&rec) {
            let _ = std::fs::remove_dir_all(self.paths.images_dir().join(id));
            return Err(store_err(e));
        }
        tracing::info!(image = name, id, source, "image registered");
        Ok(to_api(&rec))
    }

    /// Removes an image unless a VM uses it.
    pub async fn delete_image(&self, reference: &str) -> Result<Image> {
        let rec = self.image_record(reference)?;
        let _guard = self.name_locks.lock(&format!("image/{}", rec.name)).await;
        let users = self.store.vms_using_image(&rec.id).map_err(store_err)?;
        if !users.is_empty() {
            return Err(ApiError::in_use(format!(
                "Image {:?} is used by VM(s) {}",
                rec.name,
                users.join(", ")
            ))
            .with_hint("delete those VMs first with `banger vm delete`"));
        }
        self.store.delete_image(&rec.id).map_err(store_err)?;
        let dir = self.paths.images_dir().join(&rec.id);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("image {} removed, but not its files in {}: {e}", rec.name, dir.display());
            }
        }
        Ok(to_api(&rec))
    }

    /// The guest agent binary placed into images: `agent_bin` from config,
    /// `$BANGER_AGENT_BIN`, `banger-agent` next to the daemon, or the static
    /// build in the same cargo target dir.
    pub fn agent_binary(&self) -> Result<PathBuf> {
        let found = locate_agent(self.config.agent_bin.as_deref());
        let path = found.ok_or_else(|| {
            ApiError::unavailable("The banger guest agent binary (banger-agent) was not found").with_hint(
                "build it with `scripts/build` (a static binary: cargo build --release -p banger-agent \
                 --target x86_64-unknown-linux-gnu with RUSTFLAGS='-C target-feature=+crt-static'), \
                 or set agent_bin in config.toml",
            )
        })?;
        match banger_image::kernel::elf_is_static(&path) {
            Ok(true) => Ok(path),
            Ok(false) => Err(ApiError::unavailable(format!(
                "The guest agent {} is dynamically linked; images without a matching libc could not run it",
                path.display()
            ))
            .with_hint("build it with RUSTFLAGS='-C target-feature=+crt-static' and --target x86_64-unknown-linux-gnu")),
            Err(e) => Err(ApiError::unavailable(format!("{e:#}")).with_hint("set agent_bin in config.toml")),
        }
    }
}

/// Searches the places an agent binary can be; see [`Daemon::agent_binary`].
pub fn locate_agent(configured: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = configured {
        return Some(p.to_path_buf());
    }
    if let Some(p) = std::env::var_os("BANGER_AGENT_BIN").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(p));
    }
    let exe = std::env::current_exe().ok()?;
    let dir = exe.parent()?;
    let beside = dir.join("banger-agent");
    // Next to the daemon is the installed layout, but in a cargo target dir
    // that file is the dynamically linked host build: prefer the static one.
    let mut candidates = Vec::new();
    for anc in dir.ancestors() {
        if anc.file_name().is_some_and(|n| n == "target") {
            for profile in ["release", "debug"] {
                candidates.push(anc.join("x86_64-unknown-linux-gnu").join(profile).join("banger-agent"));
            }
            break;
        }
    }
    candidates.push(beside);
    candidates.into_iter().find(|p| p.is_file())
}

/// An image's files, published under `images/<id>/`.
#[derive(Debug)]
pub struct StagedImage {
    pub rootfs: PathBuf,
    pub size_bytes: u64,
    pub sha256: String,
}

/// Produces `rootfs.ext4` in a staging dir with `fill`, injects the agent,
/// hashes it and renames the staging dir to `images/<id>`. On any failure
/// the staging dir is removed: nothing half-made is ever published.
pub fn stage_image(
    images_dir: &Path,
    id: &str,
    fill: impl FnOnce(&Path) -> anyhow::Result<()>,
    agent: &Path,
) -> anyhow::Result<StagedImage> {
    let staging = images_dir.join(format!(".staging-{id}"));
    std::fs::create_dir_all(&staging)?;
    let result = (|| {
        let rootfs = staging.join("rootfs.ext4");
        let t0 = std::time::Instant::now();
        fill(&rootfs)?;
        if !ext4::is_ext4(&rootfs)? {
            anyhow::bail!("the produced rootfs is not ext4");
        }
        let t1 = std::time::Instant::now();
        inject_agent(&rootfs, agent)?;
        let t2 = std::time::Instant::now();
        let size_bytes = std::fs::metadata(&rootfs)?.len();
        let sha256 = banger_fs::sha256_file(&rootfs)?;
        tracing::info!(
            id,
            fill_ms = (t1 - t0).as_millis() as u64,
            inject_ms = (t2 - t1).as_millis() as u64,
            hash_ms = t2.elapsed().as_millis() as u64,
            "image staged"
        );
        let dest = images_dir.join(id);
        std::fs::rename(&staging, &dest)?;
        Ok(StagedImage { rootfs: dest.join("rootfs.ext4"), size_bytes, sha256 })
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}

/// Places the agent into an image as both init and agent.
pub fn inject_agent(rootfs: &Path, agent: &Path) -> anyhow::Result<()> {
    ext4::inject(
        rootfs,
        &[
            ext4::Inject { host: agent.to_path_buf(), guest: GUEST_INIT_PATH.into(), mode: 0o755 },
            ext4::Inject { host: agent.to_path_buf(), guest: GUEST_AGENT_PATH.into(), mode: 0o755 },
        ],
    )
}
