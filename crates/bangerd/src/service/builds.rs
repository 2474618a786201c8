//! `kernel build` and `image build`: long operations that produce store
//! entries from Debian's packages, with progress and a log file.

use super::images::stage_image;
use super::kernels::publish_kernel_files;
use super::{Daemon, Progress};
use crate::error::{OrInternal, Result};
use crate::privileged::Request;
use crate::util::new_id;
use anyhow::Context;
use banger_api::{validate, ApiError, BuildImageRequest, BuildKernelRequest, Image, Kernel};
use banger_image::{golden, kernel_build};
use std::path::PathBuf;
use std::sync::Arc;

impl Daemon {
    fn build_log(&self, what: &str) -> Result<PathBuf> {
        let dir = self.paths.cache_dir.join("logs");
        std::fs::create_dir_all(&dir).or_internal(|| format!("Cannot create {}", dir.display()))?;
        let stamp =
            humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string().replace(':', "");
        Ok(dir.join(format!("{what}-{stamp}.log")))
    }

    /// Builds a guest kernel from Debian's linux-source and registers it.
    pub async fn build_kernel(
        self: &Arc<Self>,
        req: BuildKernelRequest,
        progress: &Progress,
    ) -> Result<Kernel> {
        let name = req.name.unwrap_or_else(|| self.config.default_kernel.clone());
        validate::object_name(&name, "kernel name")?;
        if let Some(c) = &req.config {
            if c.len() > banger_api::MAX_KERNEL_CONFIG_BYTES || !c.lines().any(|l| l.starts_with("CONFIG_")) {
                return Err(ApiError::invalid(format!(
                    "The kernel config is not a kernel .config of at most {} KiB",
                    banger_api::MAX_KERNEL_CONFIG_BYTES >> 10
                ))
                .with_hint("pass a whole .config (lines like CONFIG_VIRTIO_MMIO=y)"));
            }
        }
        self.ensure_kernel_absent(&name)?;
        let _guard = self.name_locks.lock(&format!("kernel/{name}")).await;
        self.ensure_kernel_absent(&name)?;
        let log = self.build_log("kernel-build")?;
        let missing = kernel_build::missing_packages();
        if !missing.is_empty() {
            if !nix::unistd::geteuid().is_root() {
                return Err(ApiError::unavailable(format!(
                    "Building a kernel needs these packages: {}",
                    missing.join(" ")
                ))
                .with_hint(format!("install them with `{}`", kernel_build::install_hint())));
            }
            progress.phase("install", format!("installing {}", missing.join(" ")));
            let (log2, p) = (log.clone(), progress.clone());
            tokio::task::spawn_blocking(move || kernel_build::apt_install(&missing, &log2, |l| p.log(l)))
                .await
                .or_internal(|| "apt task".into())?
                .map_err(|e| {
                    ApiError::unavailable(format!("{e:#}")).with_hint(kernel_build::install_hint())
                })?;
        }
        let cache = self.paths.cache_dir.clone();
        let jobs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2);
        let p = progress.clone();
        let log2 = log.clone();
        let t0 = std::time::Instant::now();
        let config = req.config;
        let vmlinux = tokio::task::spawn_blocking(move || {
            let config = match &config {
                Some(text) => kernel_build::Config::Full(text),
                None => kernel_build::Config::Banger,
            };
            kernel_build::build(&cache, &log2, jobs, config, |step| match step {
                kernel_build::Step::Phase(m) => p.phase("kernel", m),
                kernel_build::Step::Compiled(n, total) => p.progress("compiling", n, Some(total)),
            })
        })
        .await
        .or_internal(|| "kernel build task".into())?
        .map_err(|e| {
            ApiError::internal(format!("Kernel build failed: {e:#}"))
                .with_hint(format!("see {}", log.display()))
        })?;
        tracing::info!(secs = t0.elapsed().as_secs(), "kernel built");
        progress.phase("register", format!("registering kernel {name}"));
        let kernels_dir = self.paths.kernels_dir();
        let n = name.clone();
        let (vmlinux, initrd, sha) =
            tokio::task::spawn_blocking(move || publish_kernel_files(&kernels_dir, &n, &vmlinux, None))
                .await
                .or_internal(|| "kernel publish task".into())?
                .or_internal(|| format!("Cannot store kernel {name:?}"))?;
        self.record_kernel(&name, vmlinux, initrd, sha, "build")
    }

    /// Builds the Debian golden image with debootstrap and registers it.
    pub async fn build_image(self: &Arc<Self>, req: BuildImageRequest, progress: &Progress) -> Result<Image> {
        let name = req.name.unwrap_or_else(|| self.config.default_image.clone());
        validate::object_name(&name, "image name")?;
        if let Some(s) = req.size_mib {
            validate::disk_size_mib(s)?;
        }
        let kernel = req.kernel.unwrap_or_else(|| self.config.default_kernel.clone());
        self.kernel_record(&kernel).map_err(|e| {
            e.with_hint(format!(
                "the image pairs with kernel {kernel:?}; build it first with `banger kernel build`"
            ))
        })?;
        let agent = self.agent_binary()?;
        self.ensure_image_absent(&name)?;
        // debootstrap needs root: a daemon running as its user asks the
        // root helper, which builds in its own directory and hands the
        // finished file over.
        let via_helper = !nix::unistd::geteuid().is_root();
        if via_helper && !self.privops.available() {
            return Err(ApiError::unavailable("Building an image runs debootstrap, which needs root")
                .with_hint(format!(
                    "{}; or pull or import an image instead (`banger image pull REGISTRY/REPO:TAG`)",
                    self.privops.unavailable_hint()
                )));
        }
        let _guard = self.name_locks.lock(&format!("image/{name}")).await;
        self.ensure_image_absent(&name)?;
        let log = self.build_log("image-build")?;
        if !via_helper && !banger_image::build::have("debootstrap") {
            progress.phase("install", "installing debootstrap");
            let (log2, p) = (log.clone(), progress.clone());
            tokio::task::spawn_blocking(move || {
                kernel_build::apt_install(&["debootstrap"], &log2, |l| p.log(l))
            })
            .await
            .or_internal(|| "apt task".into())?
            .map_err(|e| {
                ApiError::unavailable(format!("{e:#}")).with_hint("sudo apt-get install debootstrap")
            })?;
        }
        let id = new_id();
        let work = self.paths.cache_dir.join("image-build").join(&id);
        let debs = self.paths.cache_dir.join("debs");
        let images_dir = self.paths.images_dir();
        let p = progress.clone();
        let size_req = req.size_mib;
        let (log2, id2, work2, ops) = (log.clone(), id.clone(), work.clone(), self.privops.clone());
        let t0 = std::time::Instant::now();
        let result = tokio::task::spawn_blocking(
            move || -> anyhow::Result<(super::images::StagedImage, serde_json::Value)> {
                let mut packages: Vec<String> = Vec::new();
                let fill = |dst: &std::path::Path| -> anyhow::Result<()> {
                    if via_helper {
                        p.phase("build", "the root helper builds the image: debootstrap, config, mkfs (minutes)");
                        let out = ops.call_full(&Request::BuildRootfs { size_mib: size_req })?;
                        packages = serde_json::from_str(&out.detail).context("the helper's package list")?;
                        let file = out.file.context("the root helper handed no image over")?;
                        p.phase("copy", "taking the image over from the root helper");
                        let src = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
                        banger_fs::sparse_copy(std::path::Path::new(&src), dst)?;
                    } else {
                        packages = golden::build_rootfs(&work2, &debs, &log2, size_req, dst, |ph, m| p.phase(ph, m))?;
                    }
                    Ok(())
                };
                let staged = stage_image(&images_dir, &id2, fill, &agent)?;
                let manifest = serde_json::json!({
                    "distro": "debian",
                    "release": "bookworm",
                    "variant": "minbase",
                    "packages": packages,
                    "built_at": humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
                    "agent_version": banger_api::build_id(),
                    "builder": if via_helper { "banger image build (root helper)" } else { "banger image build" },
                });
                Ok((staged, manifest))
            },
        )
        .await;
        // The staging tree is large; never keep it.
        let _ = std::fs::remove_dir_all(&work);
        let (staged, manifest) = result.or_internal(|| "image build task".into())?.map_err(|e| {
            ApiError::internal(format!("Image build failed: {e:#}"))
                .with_hint(format!("see {}", log.display()))
        })?;
        tracing::info!(secs = t0.elapsed().as_secs(), image = %name, "image built");
        self.record_image(&id, &name, &kernel, staged, "build", Some(manifest))
    }
}
