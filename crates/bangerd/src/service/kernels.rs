//! Kernels: import from files, list, show, remove.
//!
//! A kernel lives in `kernels/<name>/` (`vmlinux`, optional `initrd`). Files
//! are copied into a staging dir first and renamed into place, then the row
//! is inserted, so a failed import leaves neither files nor a record.

use super::Daemon;
use crate::error::{store_err, OrInternal, Result};
use crate::util::{now_ms, rfc3339};
use banger_api::{validate, ApiError, ImportKernelRequest, Kernel};
use banger_image::kernel::check_vmlinux;
use banger_store::KernelRecord;
use std::path::{Path, PathBuf};

pub fn to_api(k: &KernelRecord) -> Kernel {
    Kernel {
        name: k.name.clone(),
        vmlinux_path: k.vmlinux_path.clone(),
        initrd_path: k.initrd_path.clone(),
        sha256: k.sha256.clone(),
        created_at: rfc3339(k.created_at_ms),
        source: k.source.clone(),
    }
}

/// Checks that a path from a request is absolute and names a regular file.
pub fn input_file(path: &str, what: &str) -> Result<PathBuf> {
    let p = PathBuf::from(path);
    if !p.is_absolute() {
        return Err(ApiError::invalid(format!("{what} path {path:?} is not absolute"))
            .with_hint("pass an absolute path (the CLI does this for you)"));
    }
    let meta = std::fs::metadata(&p).map_err(|e| {
        ApiError::invalid(format!("{what} {path} cannot be read: {e}"))
            .with_hint("check the path and its permissions")
    })?;
    if !meta.is_file() {
        return Err(ApiError::invalid(format!("{what} {path} is not a regular file")));
    }
    Ok(p)
}

impl Daemon {
    pub fn list_kernels(&self) -> Result<Vec<Kernel>> {
        Ok(self.store.list_kernels().map_err(store_err)?.iter().map(to_api).collect())
    }

    pub fn kernel_record(&self, name: &str) -> Result<KernelRecord> {
        self.store.get_kernel(name).map_err(store_err)?.ok_or_else(|| {
            ApiError::not_found(format!("Kernel {name:?} not found"))
                .with_hint("list kernels with `banger kernel list`, or build one with `banger kernel build`")
        })
    }

    pub fn show_kernel(&self, name: &str) -> Result<Kernel> {
        Ok(to_api(&self.kernel_record(name)?))
    }

    /// Copies a vmlinux (and initrd) into the store and records it.
    pub async fn import_kernel(&self, req: ImportKernelRequest) -> Result<Kernel> {
        validate::object_name(&req.name, "kernel name")?;
        let vmlinux = input_file(&req.vmlinux, "vmlinux")?;
        let initrd = req.initrd.as_deref().map(|p| input_file(p, "initrd")).transpose()?;
        check_vmlinux(&vmlinux).map_err(|e| {
            ApiError::invalid(format!("{e:#}")).with_hint("pass an uncompressed ELF kernel built for x86-64")
        })?;
        let _guard = self.name_locks.lock(&format!("kernel/{}", req.name)).await;
        self.ensure_kernel_absent(&req.name)?;
        let name = req.name.clone();
        let kernels_dir = self.paths.kernels_dir();
        let (vmlinux_path, initrd_path, sha256) = tokio::task::spawn_blocking(move || {
            publish_kernel_files(&kernels_dir, &name, &vmlinux, initrd.as_deref())
        })
        .await
        .or_internal(|| "kernel import task".into())?
        .or_internal(|| format!("Cannot import kernel {:?}", req.name))?;
        self.record_kernel(&req.name, vmlinux_path, initrd_path, sha256, "import")
    }

    /// Fails with `conflict` when a kernel of that name exists.
    pub fn ensure_kernel_absent(&self, name: &str) -> Result<()> {
        if self.store.get_kernel(name).map_err(store_err)?.is_some() {
            return Err(ApiError::conflict(format!("Kernel {name:?} already exists"))
                .with_hint(format!("pick another name, or remove it first with `banger kernel rm {name}`")));
        }
        Ok(())
    }

    /// Inserts the row for kernel files already published under
    /// `kernels/<name>/`; removes the files if the insert fails.
    pub fn record_kernel(
        &self,
        name: &str,
        vmlinux: PathBuf,
        initrd: Option<PathBuf>,
        sha256: String,
        source: &str,
    ) -> Result<Kernel> {
        let rec = KernelRecord {
            name: name.to_string(),
            vmlinux_path: vmlinux.display().to_string(),
            initrd_path: initrd.map(|p| p.display().to_string()),
            sha256,
            source: source.to_string(),
            created_at_ms: now_ms(),
        };
        if let Err(e) = self.store.insert_kernel(&rec) {
            let _ = std::fs::remove_dir_all(self.paths.kernels_dir().join(name));
            return Err(store_err(e));
        }
        tracing::info!(kernel = name, source, "kernel registered");
        Ok(to_api(&rec))
    }

    /// Removes a kernel unless an image boots with it.
    pub async fn delete_kernel(&self, name: &str) -> Result<Kernel> {
        let _guard = self.name_locks.lock(&format!("kernel/{name}")).await;
        let rec = self.kernel_record(name)?;
        let users = self.store.images_using_kernel(name).map_err(store_err)?;
        if !users.is_empty() {
            return Err(ApiError::in_use(format!(
                "Kernel {name:?} is used by image(s) {}",
                users.join(", ")
            ))
            .with_hint("delete those images first with `banger image delete`"));
        }
        self.store.delete_kernel(name).map_err(store_err)?;
        let dir = self.paths.kernels_dir().join(name);
        if let Err(e) = std::fs::remove_dir_all(&dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!("kernel {name} removed, but not its files in {}: {e}", dir.display());
            }
        }
        Ok(to_api(&rec))
    }
}

/// Copies the files into `kernels/.staging-*`, then renames the staging dir
/// to `kernels/<name>`. Returns the published paths and the vmlinux sha256.
pub fn publish_kernel_files(
    kernels_dir: &Path,
    name: &str,
    vmlinux: &Path,
    initrd: Option<&Path>,
) -> anyhow::Result<(PathBuf, Option<PathBuf>, String)> {
    let staging = kernels_dir.join(format!(".staging-{}", crate::util::new_id()));
    std::fs::create_dir_all(&staging)?;
    let result = (|| {
        let sha = banger_fs::copy_with_sha256(vmlinux, &staging.join("vmlinux"))?;
        if let Some(i) = initrd {
            banger_fs::copy_with_sha256(i, &staging.join("initrd"))?;
        }
        let dest = kernels_dir.join(name);
        std::fs::rename(&staging, &dest)
            .map_err(|e| anyhow::anyhow!("Cannot publish {}: {e}", dest.display()))?;
        Ok((dest.join("vmlinux"), initrd.map(|_| dest.join("initrd")), sha))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&staging);
    }
    result
}
