//! `banger kernel`: pull, import, bundle, build, list, show, rm.

use super::image::ListArgs;
use super::{absolute, for_each_ref};
use crate::client::Client;
use crate::output;
use anyhow::Context;
use banger_api::{Bundle, BundleRequest, ImportKernelRequest, Kernel, PullKernelRequest};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum KernelCmd {
    /// Get a kernel from a catalog (see `banger kernel list --available`)
    Pull(PullArgs),
    /// Write a .tar.zst bundle of a kernel, to serve from your own catalog
    Bundle(BundleArgs),
    /// Copy a kernel (an uncompressed ELF vmlinux) into banger's store
    Import(ImportArgs),
    /// List kernels (with --available: what the catalogs offer)
    #[command(visible_alias = "ls")]
    List(ListArgs),
    /// Show one kernel
    Show(ShowArgs),
    /// Build a guest kernel from Debian's linux-source-6.1 with banger's config
    #[command(
        after_help = "Needs linux-source-6.1 and a compiler (installed with apt when run as root).\nThe source tree is cached, so a rebuild is quick. The full log is kept in the cache dir.\n\nExamples:\n  banger kernel build\n  banger kernel build --name fc-ci --config microvm-kernel-ci-x86_64-6.1.config"
    )]
    Build(BuildArgs),
    /// Remove kernels (refused while an image uses one)
    #[command(visible_alias = "delete")]
    Rm(RmArgs),
}

#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Name to register the kernel under
    pub name: String,
    /// Path of the vmlinux (ELF, x86-64)
    #[arg(long)]
    pub vmlinux: PathBuf,
    /// Optional initrd to boot with it
    #[arg(long)]
    pub initrd: Option<PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Catalog name of the kernel
    pub name: String,
    #[arg(short, long)]
    pub quiet: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct BundleArgs {
    pub name: String,
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
pub struct BuildArgs {
    /// Name to register the kernel under (default: the configured default kernel)
    #[arg(long)]
    pub name: Option<String>,
    /// Build with this whole kernel .config instead of banger's (e.g.
    /// Firecracker's resources/guest_configs/microvm-kernel-ci-x86_64-6.1.config)
    #[arg(long, value_name = "FILE")]
    pub config: Option<std::path::PathBuf>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShowArgs {
    pub name: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    #[arg(required = true)]
    #[arg(add = clap_complete::engine::ArgValueCandidates::new(super::completion::kernels))]
    pub names: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: Client, cmd: KernelCmd) -> anyhow::Result<i32> {
    match cmd {
        KernelCmd::Pull(a) => {
            let mut view = crate::output::ProgressView::new(a.quiet);
            let k: Kernel =
                client.pull_kernel(&PullKernelRequest { name: a.name }, |e| view.event(e)).await?;
            view.finish();
            print_one(&k, a.json)?;
            Ok(0)
        }
        KernelCmd::Bundle(a) => {
            let req = BundleRequest { output: absolute(&a.output)?, url: a.url };
            let b: Bundle = client.bundle_kernel(&a.name, &req).await?;
            super::image::print_bundle(&b, a.json)
        }
        KernelCmd::List(f) if f.available => super::image::list_available(&client, "kernel", f.json).await,
        KernelCmd::Import(a) => {
            let req = ImportKernelRequest {
                name: a.name,
                vmlinux: absolute(&a.vmlinux)?,
                initrd: a.initrd.as_deref().map(absolute).transpose()?,
            };
            let k: Kernel = client.import_kernel(&req).await?;
            print_one(&k, a.json)?;
            Ok(0)
        }
        KernelCmd::Build(a) => {
            let mut view = crate::output::ProgressView::new(false);
            let config = match &a.config {
                Some(path) => Some(read_config(path)?),
                None => None,
            };
            let req = banger_api::BuildKernelRequest { name: a.name, config };
            let k: Kernel = client.build_kernel(&req, |e| view.event(e)).await?;
            view.finish();
            print_one(&k, a.json)?;
            Ok(0)
        }
        KernelCmd::List(f) => {
            let ks: Vec<Kernel> = client.kernels().await?;
            if f.json {
                output::json(&ks)?;
            } else {
                let rows = ks
                    .iter()
                    .map(|k| {
                        vec![
                            k.name.clone(),
                            k.source.clone(),
                            k.sha256[..12.min(k.sha256.len())].to_string(),
                            output::age(&k.created_at),
                            k.vmlinux_path.clone(),
                        ]
                    })
                    .collect::<Vec<_>>();
                output::table(&["NAME", "SOURCE", "SHA256", "CREATED", "VMLINUX"], &rows);
            }
            Ok(0)
        }
        KernelCmd::Show(a) => {
            let k: Kernel = client.kernel(&a.name).await?;
            print_one(&k, a.json)?;
            Ok(0)
        }
        KernelCmd::Rm(a) => for_each_ref(&a.names, |n| {
            let c = client.clone();
            async move { c.delete_kernel(&n).await }
        })
        .await
        .report(a.json, |k| format!("removed kernel {}", k.name)),
    }
}

/// A kernel config file's text, bounded.
fn read_config(path: &std::path::Path) -> anyhow::Result<String> {
    use std::io::Read;
    let f = std::fs::File::open(path).with_context(|| format!("Cannot open {}", path.display()))?;
    let mut text = String::new();
    f.take(banger_api::MAX_KERNEL_CONFIG_BYTES as u64 + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("{} is not a text file", path.display()))?;
    if text.len() > banger_api::MAX_KERNEL_CONFIG_BYTES {
        anyhow::bail!("{} is larger than a kernel config can be (1 MiB)", path.display());
    }
    Ok(text)
}

fn print_one(k: &Kernel, json: bool) -> anyhow::Result<()> {
    if json {
        return output::json(k);
    }
    output::fields(&[
        ("name", k.name.clone()),
        ("vmlinux", k.vmlinux_path.clone()),
        ("initrd", k.initrd_path.clone().unwrap_or_else(|| "-".into())),
        ("sha256", k.sha256.clone()),
        ("source", k.source.clone()),
        ("created", k.created_at.clone()),
    ]);
    Ok(())
}
