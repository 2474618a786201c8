//! Images and kernels from elsewhere: catalog bundles, OCI registries and
//! archives, bundles of local ones, and the default that appears on its own.
//!
//! Every path ends like a local build: files made in a staging dir, the
//! agent placed in, the dir renamed into the store, then the row inserted.
//! A failure anywhere removes the staging dir; nothing half-made is
//! published. Pulls of one name hold that name's lock, so two concurrent
//! pulls download once and the second returns what the first published.

use super::images::{stage_image, StagedImage};
use super::kernels::publish_kernel_files;
use super::{Daemon, Progress};
use crate::catalog::{self, Kind};
use crate::error::{store_err, OrInternal, Result};
use crate::util::new_id;
use banger_api::{
    validate, ApiError, BuildImageRequest, BuildKernelRequest, CatalogEntry, CatalogView, Image, Kernel,
    PruneCacheRequest, PruneCacheResult, PullImageRequest, PullKernelRequest,
};
use banger_image::bundle;
use futures_util::StreamExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// How often download progress is reported.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// The error for a download past `max_download_mib` (`cap` bytes), of which
/// at least `seen` bytes were announced or received.
pub(super) fn over_download_limit(what: &str, cap: u64, seen: u64) -> ApiError {
    ApiError::invalid(format!(
        "{what} is larger than the download limit ({} MiB, max_download_mib; at least {} MiB)",
        cap >> 20,
        seen.div_ceil(1 << 20)
    ))
    .with_hint("raise max_download_mib in config.toml if you trust the source")
}

impl Daemon {
    pub(crate) fn http(&self) -> Result<reqwest::Client> {
        reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(15))
            .read_timeout(Duration::from_secs(60))
            .user_agent(concat!("banger/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
                // Seen on hosts without the CA bundle: the TLS verifier is
                // built with the client, even for plain-HTTP registries.
                ApiError::unavailable(format!("Cannot set up the HTTP client: {e}")).with_hint(
                    "banger verifies HTTPS with the system's CA certificates: install them \
                     (`apt-get install ca-certificates`)",
                )
            })
    }

    async fn catalog_entries(&self) -> Result<(Vec<catalog::Entry>, Vec<String>)> {
        Ok(catalog::all(&self.config.catalogs, &self.http()?).await)
    }

    /// `GET /v1/catalog`: every entry with whether it is here already.
    pub async fn list_catalog(&self) -> Result<CatalogView> {
        let (entries, warnings) = self.catalog_entries().await?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for e in entries {
            if !seen.insert((e.kind, e.name.clone())) {
                continue; // shadowed by an earlier catalog
            }
            let pulled = match e.kind {
                Kind::Image => self.store.get_image_by_name(&e.name).map_err(store_err)?.is_some(),
                Kind::Kernel => self.store.get_kernel(&e.name).map_err(store_err)?.is_some(),
            };
            out.push(CatalogEntry {
                kind: e.kind.as_str().into(),
                name: e.name,
                description: e.description,
                url: e.bundle.as_ref().map(|b| b.0.clone()),
                sha256: e.bundle.as_ref().map(|b| b.1.clone()),
                size_bytes: e.size_bytes,
                kernel: e.kernel,
                buildable: e.buildable,
                origin: e.origin,
                state: if pulled { "pulled" } else { "available" }.into(),
            });
        }
        Ok(CatalogView { entries: out, warnings })
    }

    /// `POST /v1/images/pull`: a catalog name, else an OCI reference.
    pub async fn pull_image(self: &Arc<Self>, req: PullImageRequest, progress: &Progress) -> Result<Image> {
        if req.reference.trim().is_empty() || req.reference.len() > 512 {
            return Err(ApiError::invalid("The image reference is empty or too long")
                .with_hint("pass a catalog name (`banger image list --available`) or a registry reference such as docker.io/library/debian:bookworm"));
        }
        if let Some(s) = req.size_mib {
            validate::disk_size_mib(s)?;
        }
        let (entries, warnings) = self.catalog_entries().await?;
        if let Some(e) = catalog::find(&entries, Kind::Image, &req.reference) {
            if req.size_mib.is_some() {
                return Err(ApiError::invalid("--size applies to OCI images; catalog bundles come sized"));
            }
            let name = req.name.clone().unwrap_or_else(|| e.name.clone());
            return self.pull_catalog_image(e.clone(), &name, &entries, progress).await;
        }
        let looks_oci = req.reference.contains(['/', ':', '@']);
        if !looks_oci {
            let mut hint = "see `banger image list --available`, or pass a registry reference such as docker.io/library/alpine:3.20".to_string();
            if !warnings.is_empty() {
                hint.push_str(&format!(" (catalogs not read: {})", warnings.join("; ")));
            }
            return Err(ApiError::not_found(format!("No catalog lists an image named {:?}", req.reference))
                .with_hint(hint));
        }
        self.pull_oci(req, progress).await
    }

    /// `POST /v1/kernels/pull`.
    pub async fn pull_kernel(
        self: &Arc<Self>,
        req: PullKernelRequest,
        progress: &Progress,
    ) -> Result<Kernel> {
        validate::object_name(&req.name, "kernel name")?;
        let (entries, warnings) = self.catalog_entries().await?;
        let e = catalog::find(&entries, Kind::Kernel, &req.name).cloned().ok_or_else(|| {
            let mut hint = "see `banger kernel list --available`".to_string();
            if !warnings.is_empty() {
                hint.push_str(&format!(" (catalogs not read: {})", warnings.join("; ")));
            }
            ApiError::not_found(format!("No catalog lists a kernel named {:?}", req.name)).with_hint(hint)
        })?;
        self.pull_catalog_kernel(&e, progress).await
    }

    async fn pull_catalog_kernel(
        self: &Arc<Self>,
        e: &catalog::Entry,
        progress: &Progress,
    ) -> Result<Kernel> {
        let _guard = self.name_locks.lock(&format!("kernel/{}", e.name)).await;
        if let Some(k) = self.store.get_kernel(&e.name).map_err(store_err)? {
            return Ok(super::kernels::to_api(&k));
        }
        let Some((url, sha)) = &e.bundle else {
            drop(_guard);
            return self.build_kernel_instead(e, "no bundle is published for it", progress).await;
        };
        let file = match self.download(url, sha, e.size_bytes, &format!("kernel {}", e.name), progress).await
        {
            Ok(f) => f,
            Err(err) if e.buildable && err.code == banger_api::ErrorCode::Unavailable => {
                drop(_guard);
                let why = format!("its bundle cannot be fetched ({})", err.message);
                return self.build_kernel_instead(e, &why, progress).await;
            }
            Err(err) => return Err(err),
        };
        progress.phase("unpack", format!("unpacking kernel {}", e.name));
        let kernels_dir = self.paths.kernels_dir();
        let scratch = self.paths.cache_dir.join("unpack").join(new_id());
        let (name, file2, scratch2) = (e.name.clone(), file.clone(), scratch.clone());
        let max = self.config.max_unpacked_mib << 20;
        let published = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&scratch2)?;
            bundle::unpack(&file2, &scratch2, bundle::KERNEL_MEMBERS, max)?;
            let vmlinux = scratch2.join("vmlinux");
            banger_image::kernel::check_vmlinux(&vmlinux)?;
            let initrd = scratch2.join("initrd");
            publish_kernel_files(&kernels_dir, &name, &vmlinux, initrd.exists().then_some(initrd.as_path()))
        })
        .await
        .or_internal(|| "kernel unpack task".into())?;
        let _ = std::fs::remove_dir_all(&scratch);
        // Verified but used (or unusable): either way not kept.
        let _ = std::fs::remove_file(&file);
        let (vmlinux, initrd, sha256) = published.map_err(|err| {
            ApiError::invalid(format!("The bundle for kernel {} is unusable: {err:#}", e.name))
                .with_hint(format!("the catalog {} serves a bad bundle; tell its maintainers", e.origin))
        })?;
        self.record_kernel(&e.name, vmlinux, initrd, sha256, &format!("catalog:{}", e.origin))
    }

    async fn pull_catalog_image(
        self: &Arc<Self>,
        e: catalog::Entry,
        name: &str,
        entries: &[catalog::Entry],
        progress: &Progress,
    ) -> Result<Image> {
        validate::object_name(name, "image name")?;
        let kernel_name = e.kernel.clone().unwrap_or_else(|| self.config.default_kernel.clone());
        if self.store.get_kernel(&kernel_name).map_err(store_err)?.is_none() {
            let k = catalog::find(entries, Kind::Kernel, &kernel_name).cloned().ok_or_else(|| {
                ApiError::not_found(format!(
                    "Image {} pairs with kernel {kernel_name:?}, which is neither here nor in a catalog",
                    e.name
                ))
                .with_hint("import it with `banger kernel import`, or fix the catalog entry")
            })?;
            progress.phase("kernel", format!("image {} needs kernel {kernel_name}", e.name));
            self.pull_catalog_kernel(&k, progress).await?;
        }
        let guard = self.name_locks.lock(&format!("image/{name}")).await;
        if let Some(existing) = self.store.get_image_by_name(name).map_err(store_err)? {
            let same = existing.source == format!("catalog:{}", e.origin)
                && existing.manifest.as_ref().and_then(|m| m.get("catalog_name")).and_then(|v| v.as_str())
                    == Some(e.name.as_str());
            if same {
                return Ok(super::images::to_api(&existing)); // a concurrent pull finished first
            }
            return Err(ApiError::conflict(format!("Image {name:?} already exists")).with_hint(format!(
                "pull under another name with --name, or delete it first with `banger image delete {name}`"
            )));
        }
        let Some((url, sha)) = e.bundle.clone() else {
            drop(guard);
            return self.build_image_instead(&e, "no bundle is published for it", progress).await;
        };
        let file = match self.download(&url, &sha, e.size_bytes, &format!("image {}", e.name), progress).await
        {
            Ok(f) => f,
            Err(err) if e.buildable && err.code == banger_api::ErrorCode::Unavailable && name == e.name => {
                drop(guard);
                let why = format!("its bundle cannot be fetched ({})", err.message);
                return self.build_image_instead(&e, &why, progress).await;
            }
            Err(err) => return Err(err),
        };
        progress.phase("unpack", format!("unpacking image {}", e.name));
        let agent = self.agent_binary()?;
        let id = new_id();
        let images_dir = self.paths.images_dir();
        let (file2, id2) = (file.clone(), id.clone());
        let max = self.config.max_unpacked_mib << 20;
        let staged =
            tokio::task::spawn_blocking(move || -> anyhow::Result<(StagedImage, serde_json::Value)> {
                let mut manifest = serde_json::Value::Null;
                let staged = stage_image(
                    &images_dir,
                    &id2,
                    |dst| {
                        let dir = dst.parent().expect("staging dir");
                        bundle::unpack(&file2, dir, bundle::IMAGE_MEMBERS, max)?;
                        manifest = serde_json::from_slice(&std::fs::read(dir.join("manifest.json"))?)
                            .map_err(|e| anyhow::anyhow!("manifest.json in the bundle is not JSON: {e}"))?;
                        Ok(())
                    },
                    &agent,
                )?;
                Ok((staged, manifest))
            })
            .await
            .or_internal(|| "image unpack task".into())?;
        let _ = std::fs::remove_file(&file);
        let (staged, bundle_manifest) = staged.map_err(|err| {
            ApiError::invalid(format!("The bundle for image {} is unusable: {err:#}", e.name))
                .with_hint(format!("the catalog {} serves a bad bundle; tell its maintainers", e.origin))
        })?;
        let manifest = serde_json::json!({
            "catalog_name": e.name,
            "catalog": e.origin,
            "url": url,
            "bundle_sha256": sha,
            "bundle": bundle_manifest,
            "agent_version": banger_api::build_id(),
        });
        self.record_image(&id, name, &kernel_name, staged, &format!("catalog:{}", e.origin), Some(manifest))
    }

    /// Refuses a local build of an entry that is not marked buildable.
    fn check_buildable(kind: Kind, e: &catalog::Entry, why: &str) -> Result<()> {
        if e.buildable {
            return Ok(());
        }
        Err(ApiError::unavailable(format!("{} {} cannot be pulled: {why}", kind.as_str(), e.name)))
    }

    /// Builds a catalog kernel locally, saying why.
    async fn build_kernel_instead(
        self: &Arc<Self>,
        e: &catalog::Entry,
        why: &str,
        progress: &Progress,
    ) -> Result<Kernel> {
        Self::check_buildable(Kind::Kernel, e, why)?;
        progress.phase(
            "build",
            format!("kernel {}: {why}; building it here instead (about 12 minutes on 2 cores)", e.name),
        );
        let _guard = self.name_locks.lock(&format!("kernel-build/{}", e.name)).await;
        if let Some(k) = self.store.get_kernel(&e.name).map_err(store_err)? {
            return Ok(super::kernels::to_api(&k));
        }
        self.build_kernel(BuildKernelRequest { name: Some(e.name.clone()), config: None }, progress).await
    }

    /// Builds a catalog image locally, saying why.
    async fn build_image_instead(
        self: &Arc<Self>,
        e: &catalog::Entry,
        why: &str,
        progress: &Progress,
    ) -> Result<Image> {
        Self::check_buildable(Kind::Image, e, why)?;
        progress
            .phase("build", format!("image {}: {why}; building it here instead (about 2 minutes)", e.name));
        let _guard = self.name_locks.lock(&format!("image-build/{}", e.name)).await;
        if let Some(i) = self.store.get_image_by_name(&e.name).map_err(store_err)? {
            return Ok(super::images::to_api(&i));
        }
        let req = BuildImageRequest { name: Some(e.name.clone()), size_mib: None, kernel: e.kernel.clone() };
        self.build_image(req, progress).await
    }

    /// The default image (and its kernel) for `vm create`, pulled or built
    /// when missing. Other names are left to the normal lookup.
    pub async fn ensure_default_image(self: &Arc<Self>, progress: &Progress) -> Result<()> {
        let name = self.config.default_image.clone();
        if self.store.get_image_by_name(&name).map_err(store_err)?.is_some() {
            return Ok(());
        }
        let (entries, _) = self.catalog_entries().await?;
        if catalog::find(&entries, Kind::Image, &name).is_none() {
            return Ok(()); // not ours to make: the lookup reports it missing
        }
        progress.phase("default", format!("the default image {name} is not here yet; getting it"));
        let req = PullImageRequest { reference: name, ..Default::default() };
        self.pull_image(req, progress).await.map(|_| ())
    }

    /// Downloads a bundle into the cache, resuming a partial download when
    /// the server supports ranges, and checks its sha256 before anything is
    /// unpacked. Network trouble is `unavailable`; a bad checksum `invalid`.
    async fn download(
        &self,
        url: &str,
        sha256: &str,
        expected: Option<u64>,
        what: &str,
        progress: &Progress,
    ) -> Result<PathBuf> {
        let dir = self.paths.cache_dir.join("downloads");
        std::fs::create_dir_all(&dir).or_internal(|| format!("Cannot create {}", dir.display()))?;
        let done = dir.join(format!("{sha256}.tar.zst"));
        let part = dir.join(format!("{sha256}.part"));
        let label = format!("downloading {what}");
        if let Some(src) = catalog::file_url_path(url) {
            progress.phase("download", format!("copying {what} from {}", src.display()));
            let (src2, part2) = (src.clone(), part.clone());
            let got = tokio::task::spawn_blocking(move || {
                let _ = std::fs::remove_file(&part2);
                banger_fs::copy_with_sha256(&src2, &part2)
            })
            .await
            .or_internal(|| "copy task".into())?
            .map_err(|e| {
                ApiError::unavailable(format!("Cannot read the bundle {}: {e:#}", src.display()))
                    .with_hint("check the catalog's file path")
            })?;
            return self.finish_download(&part, &done, sha256, &got, url);
        }
        let http = self.http()?;
        let mut offset = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        let mut rq = http.get(url);
        if offset > 0 {
            rq = rq.header(reqwest::header::RANGE, format!("bytes={offset}-"));
        }
        let unreachable = |e: &dyn std::fmt::Display| {
            ApiError::unavailable(format!("Cannot download {url}: {e}"))
                .with_hint("check the network and the catalog URL; run the pull again to resume")
        };
        let resp = rq.send().await.map_err(|e| unreachable(&e))?;
        let status = resp.status();
        let mut file = match status.as_u16() {
            206 if offset > 0 => {
                progress.phase("download", format!("resuming {what} at {} MiB", offset >> 20));
                tokio::fs::OpenOptions::new().append(true).open(&part).await
            }
            200 => {
                offset = 0;
                progress.phase("download", format!("downloading {what} from {url}"));
                tokio::fs::File::create(&part).await
            }
            416 if offset > 0 => {
                // Everything is there already; check it.
                let got = hash_file(&part).await?;
                return self.finish_download(&part, &done, sha256, &got, url);
            }
            _ => return Err(unreachable(&format!("the server answered {status}"))),
        }
        .or_internal(|| format!("Cannot write {}", part.display()))?;
        let total = resp.content_length().map(|n| n + offset).or(expected);
        let cap = self.config.max_download_mib << 20;
        let too_big = |n: u64| over_download_limit(&format!("{what} from {url}"), cap, n);
        if let Some(t) = total.filter(|t| *t > cap) {
            drop(file);
            let _ = std::fs::remove_file(&part);
            return Err(too_big(t));
        }
        let mut have = offset;
        let mut last = Instant::now();
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk =
                chunk.map_err(|e| unreachable(&format!("the transfer broke after {have} bytes: {e}")))?;
            file.write_all(&chunk).await.map_err(|e| {
                ApiError::internal(format!("Cannot write {}: {e}", part.display()))
                    .with_hint("free some space in the cache dir and pull again; the download resumes")
            })?;
            have += chunk.len() as u64;
            if have > cap {
                drop(file);
                let _ = std::fs::remove_file(&part);
                return Err(too_big(have));
            }
            if last.elapsed() >= PROGRESS_EVERY {
                progress.progress(&label, have, total);
                last = Instant::now();
            }
        }
        file.flush().await.or_internal(|| format!("Cannot write {}", part.display()))?;
        file.sync_all().await.or_internal(|| format!("Cannot sync {}", part.display()))?;
        drop(file);
        progress.progress(&label, have, total);
        if let Some(t) = total {
            if have < t {
                return Err(unreachable(&format!("the transfer stopped after {have} of {t} bytes")));
            }
        }
        progress.phase("verify", format!("checking the sha256 of {what}"));
        let got = hash_file(&part).await?;
        self.finish_download(&part, &done, sha256, &got, url)
    }

    fn finish_download(&self, part: &Path, done: &Path, want: &str, got: &str, url: &str) -> Result<PathBuf> {
        if got != want {
            let _ = std::fs::remove_file(part);
            return Err(ApiError::invalid(format!(
                "The bundle from {url} has sha256 {got}, but the catalog says {want}; nothing was unpacked"
            ))
            .with_hint("the file on the server changed or is corrupt; tell the catalog's maintainers"));
        }
        std::fs::rename(part, done).or_internal(|| format!("Cannot move {} into place", part.display()))?;
        Ok(done.to_path_buf())
    }

    /// `POST /v1/images/cache/prune`: the OCI blob cache and downloads.
    pub async fn prune_image_cache(&self, req: PruneCacheRequest) -> Result<PruneCacheResult> {
        let dirs = [self.paths.cache_dir.join("oci"), self.paths.cache_dir.join("downloads")];
        let _guard = self.name_locks.lock("cache").await;
        let dry = req.dry_run;
        tokio::task::spawn_blocking(move || {
            let (mut files, mut bytes) = (0, 0);
            for d in dirs {
                let mut stack = vec![d.clone()];
                while let Some(dir) = stack.pop() {
                    let Ok(rd) = std::fs::read_dir(&dir) else { continue };
                    for e in rd.flatten() {
                        let Ok(m) = e.metadata() else { continue };
                        if m.is_dir() {
                            stack.push(e.path());
                        } else {
                            files += 1;
                            bytes += m.len();
                        }
                    }
                }
                if !dry {
                    // Renamed aside first, so a pull never sees half a cache.
                    let aside = d.with_extension(format!("prune-{}", new_id()));
                    if std::fs::rename(&d, &aside).is_ok() {
                        let _ = std::fs::remove_dir_all(&aside);
                    }
                }
            }
            PruneCacheResult { files, bytes, dry_run: dry }
        })
        .await
        .or_internal(|| "prune task".into())
    }
}

async fn hash_file(p: &Path) -> Result<String> {
    let p2 = p.to_path_buf();
    tokio::task::spawn_blocking(move || banger_fs::sha256_file(&p2))
        .await
        .or_internal(|| "hash task".into())?
        .or_internal(|| format!("Cannot hash {}", p.display()))
}
