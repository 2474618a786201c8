//! `banger image`: pull, import, bundle, build, register, list, show,
//! delete, cache prune.

use super::{absolute, for_each_ref};
use crate::client::Client;
use crate::output;
use banger_api::{
    Bundle, BundleRequest, CatalogView, Image, ImportImageRequest, PruneCacheRequest, PruneCacheResult,
    PullImageRequest, RegisterImageRequest,
};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
    /// Get an image: a catalog name, or an OCI image from a registry
    #[command(
        after_help = "Examples:\n  banger image pull debian-bookworm                     (catalog: see `banger image list --available`)\n  banger image pull docker.io/library/debian:bookworm   (OCI registry, linux/amd64)\n  banger image pull 127.0.0.1:5000/team/app:1 --name app\n\nOCI images are flattened into an ext4 image with banger's init and agent placed in; they\nboot with banger's kernel. Images without systemd boot too (banger-init stays PID 1):\n`vm exec` works in any image; `vm ssh` needs sshd in the image. The image's ENV, WORKDIR\nand USER become the defaults for `vm exec`. Private registries: `docker login` first\n(~/.docker/config.json). Layers are cached by digest; free them with `banger image cache prune`."
    )]
    Pull(PullArgs),
    /// Import a `docker save` tarball or an OCI image layout archive
    #[command(
        after_help = "Examples:\n  docker save app:1 -o app.tar && banger image import app.tar --name app\n  skopeo copy docker://alpine:3.20 oci-archive:alpine.tar && banger image import alpine.tar --name alpine"
    )]
    Import(ImportArgs),
    /// Write a .tar.zst bundle of an image, to serve from your own catalog
    #[command(
        after_help = "Prints the catalog entry to put in a catalog.toml (`version = 1`, then the entries)\nnext to the bundle on any static file server; users add it with\n  [[catalog]]\n  url = \"https://files.example.com/banger/catalog.toml\"\nin config.toml. Bundle the kernel too: `banger kernel bundle`."
    )]
    Bundle(BundleArgs),
    /// Manage the OCI layer cache
    #[command(subcommand)]
    Cache(CacheCmd),
    /// Copy an existing ext4 root filesystem into banger's store
    #[command(
        after_help = "The file is copied (holes kept); banger places its init and guest agent into the copy."
    )]
    Register(RegisterArgs),
    /// Build the Debian bookworm golden image with debootstrap (needs root)
    #[command(
        after_help = "Packages: images/debian-bookworm.packages in the banger repository.\nThe image pairs with a kernel (default: the configured default kernel; build it with `banger kernel build`)."
    )]
    Build(BuildArgs),
    /// List images (with --available: what the catalogs offer)
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one image
    Show(ShowArgs),
    /// Delete images (refused while a VM uses one)
    #[command(visible_alias = "rm")]
    Delete(DeleteArgs),
}

#[derive(Debug, Subcommand)]
pub enum CacheCmd {
    /// Remove cached OCI layers and downloaded bundles
    Prune(PruneArgs),
}

#[derive(Debug, Args)]
pub struct PruneArgs {
    /// Only report what would be removed
    #[arg(long)]
    pub dry_run: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Show the catalogs' entries with their state here (pulled/available)
    #[arg(long)]
    pub available: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Catalog name or REGISTRY/REPO[:TAG|@DIGEST]
    pub reference: String,
    /// Name to register the image under (default: catalog name, or e.g. debian-bookworm from the reference)
    #[arg(long)]
    pub name: Option<String>,
    /// Size of the ext4 image for OCI images, e.g. 4G (default: content × 1.5, at least 1G)
    #[arg(long, value_parser = super::vm::parse_size)]
    pub size: Option<u64>,
    /// Kernel for OCI images (default: the configured default kernel)
    #[arg(long)]
    pub kernel: Option<String>,
    /// No progress output
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The archive file
    pub archive: PathBuf,
    /// Name for the image
    #[arg(long)]
    pub name: String,
    /// Size of the ext4 image, e.g. 4G (default: content × 1.5, at least 1G)
    #[arg(long, value_parser = super::vm::parse_size)]
    pub size: Option<u64>,
    /// Kernel to boot it with (default: the configured default kernel)
    #[arg(long)]
    pub kernel: Option<String>,
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    /// Image name or id
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::images))]
    pub image: String,
    /// The bundle file to write (.tar.zst)
    #[arg(short, long)]
    pub output: PathBuf,
    /// URL the bundle will be served from (default: its file name, relative to the catalog)
    #[arg(long)]
    pub url: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Name for the image
    #[arg(long)]
    pub name: String,
    /// Path of the ext4 image file
    #[arg(long)]
    pub rootfs: PathBuf,
    /// Kernel to boot it with (see `banger kernel list`)
    #[arg(long)]
    pub kernel: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Name of the image (default: the configured default image, debian-bookworm)
    #[arg(long)]
    pub name: Option<String>,
    /// Size of the ext4 image, e.g. 4G (default: content × 1.5, at least 2G)
    #[arg(long, value_parser = super::vm::parse_size)]
    pub size: Option<u64>,
    /// Kernel to pair the image with
    #[arg(long)]
    pub kernel: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    /// Image name or id
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::images))]
    pub image: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::images))]
    pub images: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: Client, cmd: ImageCmd) -> anyhow::Result<i32> {
    match cmd {
        ImageCmd::Pull(a) => {
            let mut view = crate::output::ProgressView::new(a.quiet);
            let req =
                PullImageRequest { reference: a.reference, name: a.name, size_mib: a.size, kernel: a.kernel };
            let i: Image = client.pull_image(&req, |e| view.event(e)).await?;
            view.finish();
            print_one(&i, a.json)?;
            Ok(0)
        }
        ImageCmd::Import(a) => {
            let mut view = crate::output::ProgressView::new(a.quiet);
            let req = ImportImageRequest {
                archive: absolute(&a.archive)?,
                name: a.name,
                size_mib: a.size,
                kernel: a.kernel,
            };
            let i: Image = client.import_image(&req, |e| view.event(e)).await?;
            view.finish();
            print_one(&i, a.json)?;
            Ok(0)
        }
        ImageCmd::Bundle(a) => {
            let req = BundleRequest { output: absolute(&a.output)?, url: a.url };
            let b: Bundle = client.bundle_image(&a.image, &req).await?;
            print_bundle(&b, a.json)
        }
        ImageCmd::Cache(CacheCmd::Prune(a)) => {
            let r: PruneCacheResult =
                client.prune_image_cache(&PruneCacheRequest { dry_run: a.dry_run }).await?;
            if a.json {
                output::json(&r)?;
            } else {
                let verb = if r.dry_run { "would free" } else { "freed" };
                println!("{verb} {} in {} files", output::bytes(r.bytes), r.files);
            }
            Ok(0)
        }
        ImageCmd::List(f) if f.available => list_available(&client, "image", f.json).await,
        ImageCmd::Register(a) => {
            let req = RegisterImageRequest { name: a.name, rootfs: absolute(&a.rootfs)?, kernel: a.kernel };
            let i: Image = client.register_image(&req).await?;
            print_one(&i, a.json)?;
            Ok(0)
        }
        ImageCmd::Build(a) => {
            let mut view = crate::output::ProgressView::new(false);
            let req = banger_api::BuildImageRequest { name: a.name, size_mib: a.size, kernel: a.kernel };
            let i: Image = client.build_image(&req, |e| view.event(e)).await?;
            view.finish();
            print_one(&i, a.json)?;
            Ok(0)
        }
        ImageCmd::List(f) => {
            let is: Vec<Image> = client.images().await?;
            if f.json {
                output::json(&is)?;
            } else {
                let rows = is
                    .iter()
                    .map(|i| {
                        vec![
                            i.id.clone(),
                            i.name.clone(),
                            i.kernel.clone(),
                            banger_api::validate::format_mib(i.size_bytes >> 20),
                            i.source.clone(),
                            output::age(&i.created_at),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(&["ID", "NAME", "KERNEL", "SIZE", "SOURCE", "CREATED"], &rows);
            }
            Ok(0)
        }
        ImageCmd::Show(a) => {
            let i: Image = client.image(&a.image).await?;
            print_one(&i, a.json)?;
            Ok(0)
        }
        ImageCmd::Delete(a) => for_each_ref(&a.images, |r| {
            let c = client.clone();
            async move { c.delete_image(&r).await }
        })
        .await
        .report(a.json, |i| format!("deleted image {} ({})", i.name, i.id)),
    }
}

fn print_one(i: &Image, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(i);
    }
    let mut pairs = vec![
        ("id", i.id.clone()),
        ("name", i.name.clone()),
        ("kernel", i.kernel.clone()),
        ("rootfs", i.rootfs_path.clone()),
        (
            "size",
            format!("{} ({} bytes)", banger_api::validate::format_mib(i.size_bytes >> 20), i.size_bytes),
        ),
        ("sha256", i.sha256.clone()),
        ("source", i.source.clone()),
        ("created", i.created_at.clone()),
    ];
    if let Some(m) = &i.manifest {
        pairs.push(("manifest", serde_json::to_string(m)?));
    }
    output::fields(&pairs);
    Ok(())
}

/// Prints a written bundle and its catalog entry.
pub fn print_bundle(b: &Bundle, json: bool) -> anyhow::Result<i32> {
    if json {
        output::json(b)?;
    } else {
        eprintln!("wrote {} ({}, sha256 {})", b.path, output::bytes(b.size_bytes), b.sha256);
        eprintln!("catalog entry (add it to a catalog.toml that starts with `version = 1`):");
        print!("{}", b.catalog_entry);
    }
    Ok(0)
}

/// `image list --available` / `kernel list --available`.
pub async fn list_available(client: &Client, kind: &str, json: bool) -> anyhow::Result<i32> {
    let v: CatalogView = client.catalog().await?;
    let entries: Vec<_> = v.entries.into_iter().filter(|e| e.kind == kind).collect();
    for w in &v.warnings {
        eprintln!("warning: {w}");
    }
    if json {
        output::json(&entries)?;
        return Ok(0);
    }
    let rows = entries
        .iter()
        .map(|e| {
            let how = match (&e.url, e.buildable) {
                (Some(_), _) => e.size_bytes.map(output::bytes).unwrap_or_else(|| "bundle".into()),
                (None, true) => "built here".into(),
                (None, false) => "-".into(),
            };
            vec![e.name.clone(), e.state.clone(), how, e.origin.clone(), e.description.clone()]
        })
        .collect::<Vec<_>>();
    output::table(&["NAME", "STATE", "GET", "CATALOG", "DESCRIPTION"], &rows);
    Ok(0)
}
