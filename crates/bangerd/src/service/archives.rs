//! Images and kernels as files: bundles of local ones written out
//! (`image bundle`, `kernel bundle`), and `docker save` / OCI archives
//! imported (`image import`).

use super::images::{stage_image, StagedImage};
use super::{Daemon, Progress};
use crate::catalog::{self, Kind};
use crate::error::{OrInternal, Result};
use crate::util::new_id;
use banger_api::{validate, ApiError, Bundle, BundleRequest, Image, ImportImageRequest};
use banger_image::{bundle, ext4, flatten, oci};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

impl Daemon {
    /// `POST /v1/images/{image}/bundle`.
    pub async fn bundle_image(&self, reference: &str, req: BundleRequest) -> Result<Bundle> {
        let img = self.image_record(reference)?;
        let manifest = serde_json::json!({
            "name": img.name,
            "kernel": img.kernel,
            "rootfs_sha256": img.sha256,
            "source": img.source,
            "manifest": img.manifest,
        });
        let members = vec![("rootfs.ext4", PathBuf::from(&img.rootfs_path))];
        self.write_bundle(req, Kind::Image, &img.name, Some(&img.kernel), manifest, members).await
    }

    /// `POST /v1/kernels/{name}/bundle`.
    pub async fn bundle_kernel(&self, name: &str, req: BundleRequest) -> Result<Bundle> {
        let k = self.kernel_record(name)?;
        let manifest = serde_json::json!({ "name": k.name, "sha256": k.sha256, "source": k.source });
        let mut members = vec![("vmlinux", PathBuf::from(&k.vmlinux_path))];
        if let Some(i) = &k.initrd_path {
            members.push(("initrd", PathBuf::from(i)));
        }
        self.write_bundle(req, Kind::Kernel, &k.name, None, manifest, members).await
    }

    /// Writes `members` plus `manifest.json` as a bundle at `req.output` and
    /// returns it with the catalog entry that serves it.
    async fn write_bundle(
        &self,
        req: BundleRequest,
        kind: Kind,
        name: &str,
        kernel: Option<&str>,
        manifest: serde_json::Value,
        members: Vec<(&'static str, PathBuf)>,
    ) -> Result<Bundle> {
        let out = output_path(&req.output)?;
        let scratch = self.paths.cache_dir.join("unpack").join(new_id());
        let (out2, scratch2) = (out.clone(), scratch.clone());
        let written = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&scratch2)?;
            let m = scratch2.join("manifest.json");
            std::fs::write(&m, serde_json::to_vec_pretty(&manifest)?)?;
            let mut all: Vec<(&str, &Path)> = members.iter().map(|(n, p)| (*n, p.as_path())).collect();
            all.push(("manifest.json", &m));
            bundle::write(&out2, &all)
        })
        .await
        .or_internal(|| "bundle task".into())?;
        let _ = std::fs::remove_dir_all(&scratch);
        let w = written.or_internal(|| format!("Cannot write the bundle {}", out.display()))?;
        let url =
            req.url.unwrap_or_else(|| out.file_name().unwrap_or_default().to_string_lossy().into_owned());
        Ok(Bundle {
            path: out.display().to_string(),
            catalog_entry: catalog::entry_toml(kind, name, &url, &w.sha256, w.size_bytes, kernel),
            sha256: w.sha256,
            size_bytes: w.size_bytes,
        })
    }

    /// `POST /v1/images/import`: a `docker save` tarball or OCI layout.
    pub async fn import_image(
        self: &Arc<Self>,
        req: ImportImageRequest,
        progress: &Progress,
    ) -> Result<Image> {
        validate::object_name(&req.name, "image name")?;
        if let Some(s) = req.size_mib {
            validate::disk_size_mib(s)?;
        }
        let archive = super::kernels::input_file(&req.archive, "archive")?;
        let kernel = self.oci_kernel(req.kernel.as_deref())?;
        let _guard = self.name_locks.lock(&format!("image/{}", req.name)).await;
        self.ensure_image_absent(&req.name)?;
        let scratch = self.paths.cache_dir.join("unpack").join(new_id());
        progress.phase("unpack", format!("reading {}", archive.display()));
        let (a2, s2) = (archive.clone(), scratch.clone());
        let read = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&s2)?;
            oci::unpack_archive(&a2, &s2)?;
            oci::read_unpacked(&s2)
        })
        .await
        .or_internal(|| "archive task".into())?;
        let local = match read {
            Ok(l) => l,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(ApiError::invalid(format!("Cannot import {}: {e:#}", archive.display()))
                    .with_hint("pass a `docker save` tarball or an OCI image layout archive (`skopeo copy … oci-archive:FILE`)"));
            }
        };
        let source = format!("import:{}", archive.display());
        let extra = serde_json::json!({ "archive": archive.display().to_string(), "format": local.format });
        let result = self
            .publish_layers(
                &req.name,
                &kernel,
                local.layers.clone(),
                local.config,
                req.size_mib,
                &source,
                extra,
                progress,
            )
            .await;
        let _ = std::fs::remove_dir_all(&scratch);
        result
    }

    pub(super) fn oci_kernel(&self, requested: Option<&str>) -> Result<String> {
        let kernel = requested.map(str::to_string).unwrap_or_else(|| self.config.default_kernel.clone());
        self.kernel_record(&kernel).map_err(|e| {
            e.with_hint(format!(
                "OCI images boot with banger's kernel {kernel:?}: get it with `banger kernel pull {kernel}`, or pass --kernel"
            ))
        })?;
        Ok(kernel)
    }

    /// Flattens layers into a tree, makes the ext4 image, places the agent,
    /// publishes and records it.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn publish_layers(
        &self,
        name: &str,
        kernel: &str,
        layers: Vec<PathBuf>,
        config: oci::ImageConfig,
        size_mib: Option<u64>,
        source: &str,
        extra: serde_json::Value,
        progress: &Progress,
    ) -> Result<Image> {
        let agent = self.agent_binary()?;
        let id = new_id();
        let tree = self.paths.cache_dir.join("unpack").join(format!("tree-{id}"));
        let images_dir = self.paths.images_dir();
        let (p, tree2, id2) = (progress.clone(), tree.clone(), id.clone());
        let n = layers.len();
        let t0 = Instant::now();
        let max = self.config.max_unpacked_mib << 20;
        let result = tokio::task::spawn_blocking(move || -> anyhow::Result<(StagedImage, u64, usize)> {
            std::fs::create_dir_all(&tree2)?;
            let mut f = flatten::Flattener::with_limit(&tree2, max);
            for (i, layer) in layers.iter().enumerate() {
                p.phase("flatten", format!("applying layer {}/{n}", i + 1));
                let file = std::fs::File::open(layer)?;
                f.apply_layer(file).map_err(|e| anyhow::anyhow!("layer {}: {e:#}", i + 1))?;
            }
            f.finish()?;
            flatten::ensure_guest_dirs(&tree2)?;
            let content = flatten::content_bytes(&tree2)?;
            let size = size_mib.unwrap_or_else(|| ((content * 3 / 2) >> 20).max(1024).next_multiple_of(64));
            if content >> 20 >= size {
                anyhow::bail!(
                    "the image content ({} MiB) does not fit in {size} MiB; pass a larger --size",
                    content >> 20
                );
            }
            p.phase("mkfs", format!("making a {} ext4 image", validate::format_mib(size)));
            let fixes = std::mem::take(&mut f.owner_fixes);
            let staged = stage_image(
                &images_dir,
                &id2,
                |dst| {
                    ext4::mkfs_from_dir(dst, Some(&tree2), size, "banger-root")?;
                    let skipped = ext4::set_owners(dst, &fixes)?;
                    if skipped > 0 {
                        tracing::warn!(skipped, "owners not set on files whose names debugfs cannot quote");
                    }
                    Ok(())
                },
                &agent,
            )?;
            Ok((staged, content, fixes.len()))
        })
        .await;
        let _ = std::fs::remove_dir_all(&tree);
        let (staged, content, _) = result
            .or_internal(|| "flatten task".into())?
            .map_err(|e| ApiError::invalid(format!("Cannot make image {name:?}: {e:#}")))?;
        tracing::info!(image = name, ms = t0.elapsed().as_millis() as u64, content, "layers flattened");
        let mut manifest = serde_json::json!({
            "config": config,
            "layers": n,
            "content_bytes": content,
            "agent_version": banger_api::build_id(),
        });
        if let (Some(m), Some(x)) = (manifest.as_object_mut(), extra.as_object()) {
            m.extend(x.clone());
        }
        self.record_image(&id, name, kernel, staged, source, Some(manifest))
    }
}

fn output_path(p: &str) -> Result<PathBuf> {
    let out = PathBuf::from(p);
    if !out.is_absolute() {
        return Err(ApiError::invalid(format!("Output path {p:?} is not absolute")));
    }
    if out.exists() {
        return Err(
            ApiError::conflict(format!("{p} already exists")).with_hint("pick another file or remove it")
        );
    }
    match out.parent() {
        Some(d) if d.is_dir() => Ok(out),
        _ => Err(ApiError::invalid(format!("The directory of {p} does not exist"))),
    }
}
