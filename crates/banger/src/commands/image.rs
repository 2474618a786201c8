//! `banger image`: register, list, show, delete.

use super::{absolute, for_each_ref, seg, JsonFlag};
use crate::client::Client;
use crate::output;
use banger_api::{Image, RegisterImageRequest};
use clap::{Args, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Subcommand)]
pub enum ImageCmd {
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
    /// List images
    #[command(visible_alias = "ls")]
    List(JsonFlag),
    /// Show one image
    Show(ShowArgs),
    /// Delete images (refused while a VM uses one)
    #[command(visible_alias = "rm")]
    Delete(DeleteArgs),
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
    pub image: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    #[arg(required = true)]
    pub images: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

pub async fn run(client: Client, cmd: ImageCmd) -> anyhow::Result<i32> {
    match cmd {
        ImageCmd::Register(a) => {
            let req = RegisterImageRequest { name: a.name, rootfs: absolute(&a.rootfs)?, kernel: a.kernel };
            let i: Image = client.post("/v1/images", &req).await?;
            print_one(&i, a.json)?;
            Ok(0)
        }
        ImageCmd::Build(a) => {
            let mut view = crate::output::ProgressView::new(false);
            let req = banger_api::BuildImageRequest { name: a.name, size_mib: a.size, kernel: a.kernel };
            let i: Image = client.post_stream("/v1/images/build", &req, |e| view.event(e)).await?;
            view.finish();
            print_one(&i, a.json)?;
            Ok(0)
        }
        ImageCmd::List(f) => {
            let is: Vec<Image> = client.get("/v1/images").await?;
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
            let i: Image = client.get(&format!("/v1/images/{}", seg(&a.image))).await?;
            print_one(&i, a.json)?;
            Ok(0)
        }
        ImageCmd::Delete(a) => {
            let (done, ok) = for_each_ref(&a.images, |r| {
                let c = client.clone();
                async move { c.delete::<Image>(&format!("/v1/images/{}", seg(&r))).await }
            })
            .await;
            if a.json {
                output::json(&done)?;
            } else {
                for i in &done {
                    println!("deleted image {} ({})", i.name, i.id);
                }
            }
            Ok(if ok { 0 } else { 1 })
        }
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
