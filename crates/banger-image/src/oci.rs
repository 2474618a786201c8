//! OCI and Docker image archives on disk, and the image config.
//!
//! `banger image import FILE` takes either a `docker save` tarball
//! (`manifest.json` naming a config and layer files) or an OCI image layout
//! archive (`oci-layout`, `index.json`, `blobs/sha256/…`). The archive is
//! unpacked into a scratch dir (regular files and directories only, nothing
//! outside it), then read from there: every blob named by digest is checked
//! against its sha256 before use.

use anyhow::{bail, Context};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What banger uses from an image's config: the defaults for `vm exec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cmd: Vec<String>,
}

#[derive(Deserialize)]
struct RawConfig {
    #[serde(default)]
    architecture: Option<String>,
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    config: Option<RawInner>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RawInner {
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
}

/// Parses an image config blob; refuses images for another platform.
pub fn parse_config(json: &[u8]) -> anyhow::Result<ImageConfig> {
    let raw: RawConfig = serde_json::from_slice(json).context("The image config is not valid JSON")?;
    if let Some(os) = raw.os.as_deref().filter(|o| *o != "linux") {
        bail!("the image is for {os}, not linux");
    }
    if let Some(arch) = raw.architecture.as_deref().filter(|a| *a != "amd64") {
        bail!("the image is for {arch}; banger runs linux/amd64 images");
    }
    let inner = raw.config.unwrap_or(RawInner {
        env: None,
        working_dir: None,
        user: None,
        entrypoint: None,
        cmd: None,
    });
    Ok(ImageConfig {
        env: inner.env.unwrap_or_default(),
        workdir: inner.working_dir.filter(|w| !w.is_empty()),
        user: inner.user.filter(|u| !u.is_empty()),
        entrypoint: inner.entrypoint.unwrap_or_default(),
        cmd: inner.cmd.unwrap_or_default(),
    })
}

/// A `sha256:<64 hex>` digest, checked.
pub fn digest_hex(digest: &str) -> anyhow::Result<&str> {
    let hex = digest.strip_prefix("sha256:").with_context(|| format!("unsupported digest {digest:?}"))?;
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        bail!("malformed digest {digest:?}");
    }
    Ok(hex)
}

/// Hashes a file and compares it with `digest`.
pub fn verify_blob(path: &Path, digest: &str) -> anyhow::Result<()> {
    let want = digest_hex(digest)?;
    let mut f = std::fs::File::open(path).with_context(|| format!("Cannot open {}", path.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    let got = hex::encode(h.finalize());
    if got != want {
        bail!("blob {digest} is corrupt: its content hashes to sha256:{got}");
    }
    Ok(())
}

/// An image read from an unpacked archive: layers oldest first.
#[derive(Debug)]
pub struct LocalImage {
    pub layers: Vec<PathBuf>,
    pub config: ImageConfig,
    /// `docker-save` or `oci-layout`.
    pub format: &'static str,
}

/// Unpacks an archive into `scratch` (which must exist, empty): regular
/// files and directories only; links and devices are dropped.
pub fn unpack_archive(archive: &Path, scratch: &Path) -> anyhow::Result<()> {
    let f = std::fs::File::open(archive).with_context(|| format!("Cannot open {}", archive.display()))?;
    let mut ar = tar::Archive::new(crate::flatten::decompressed(f)?);
    for e in ar.entries().with_context(|| format!("{} is not a tar archive", archive.display()))? {
        let mut e = e.with_context(|| format!("{} is a corrupt tar archive", archive.display()))?;
        let kind = e.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        let raw = e.path_bytes().into_owned();
        if crate::flatten::entry_components(&raw)?.is_none() {
            continue;
        }
        if !e.unpack_in(scratch)? {
            bail!("{} holds an entry outside its root", archive.display());
        }
    }
    Ok(())
}

/// A file named by the archive, which must be a regular file inside `dir`.
fn inside(dir: &Path, rel: &str) -> anyhow::Result<PathBuf> {
    let parts = crate::flatten::entry_components(rel.as_bytes())?.context("empty path")?;
    let mut p = dir.to_path_buf();
    p.extend(parts);
    let m = std::fs::symlink_metadata(&p).with_context(|| format!("the archive lacks {rel}"))?;
    if !m.is_file() {
        bail!("{rel} in the archive is not a regular file");
    }
    Ok(p)
}

fn blob(dir: &Path, digest: &str) -> anyhow::Result<PathBuf> {
    let p = inside(dir, &format!("blobs/sha256/{}", digest_hex(digest)?))?;
    verify_blob(&p, digest)?;
    Ok(p)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifest {
    config: String,
    layers: Vec<String>,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub platform: Option<Platform>,
}

#[derive(Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
}

#[derive(Deserialize)]
struct Index {
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

/// Reads an unpacked `docker save` or OCI layout archive.
pub fn read_unpacked(dir: &Path) -> anyhow::Result<LocalImage> {
    if dir.join("manifest.json").is_file() {
        let text = std::fs::read(dir.join("manifest.json"))?;
        let list: Vec<DockerManifest> =
            serde_json::from_slice(&text).context("manifest.json of the docker archive is malformed")?;
        let m = match list.as_slice() {
            [m] => m,
            [] => bail!("the docker archive holds no image"),
            more => bail!(
                "the docker archive holds {} images ({}); save one image per archive",
                more.len(),
                more.iter()
                    .flat_map(|m| m.repo_tags.clone().unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        let config = parse_config(&std::fs::read(inside(dir, &m.config)?)?)?;
        let layers = m.layers.iter().map(|l| inside(dir, l)).collect::<anyhow::Result<Vec<_>>>()?;
        // Content-addressed names (newer docker) are checked like OCI blobs.
        for (rel, path) in m.layers.iter().zip(&layers) {
            if let Some(hex) = rel.strip_prefix("blobs/sha256/") {
                verify_blob(path, &format!("sha256:{hex}"))?;
            }
        }
        return Ok(LocalImage { layers, config, format: "docker-save" });
    }
    if dir.join("index.json").is_file() {
        let index: Index = serde_json::from_slice(&std::fs::read(dir.join("index.json"))?)
            .context("index.json of the OCI layout is malformed")?;
        let manifest = pick_manifest(dir, &index.manifests, 0)?;
        let config = parse_config(&std::fs::read(blob(dir, &manifest.config.digest)?)?)?;
        let layers =
            manifest.layers.iter().map(|l| blob(dir, &l.digest)).collect::<anyhow::Result<Vec<_>>>()?;
        return Ok(LocalImage { layers, config, format: "oci-layout" });
    }
    bail!(
        "the archive is neither a `docker save` tarball (manifest.json) nor an OCI image layout (index.json)"
    )
}

fn pick_manifest(dir: &Path, list: &[Descriptor], depth: usize) -> anyhow::Result<Manifest> {
    if depth > 2 {
        bail!("the OCI index nests too deeply");
    }
    let amd64 =
        |d: &&Descriptor| d.platform.as_ref().is_none_or(|p| p.os == "linux" && p.architecture == "amd64");
    let candidates: Vec<&Descriptor> = list.iter().filter(amd64).collect();
    let d = match candidates.as_slice() {
        [d] => *d,
        [] => bail!("the archive has no linux/amd64 image"),
        [d, ..] => *d,
    };
    let bytes = std::fs::read(blob(dir, &d.digest)?)?;
    if d.media_type.contains("index") || d.media_type.contains("manifest.list") {
        let inner: Index = serde_json::from_slice(&bytes).context("malformed OCI index")?;
        return pick_manifest(dir, &inner.manifests, depth + 1);
    }
    serde_json::from_slice(&bytes).context("malformed OCI manifest")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_and_platform() {
        let c = parse_config(
            br#"{"architecture":"amd64","os":"linux","config":{"Env":["A=1"],"WorkingDir":"/w","User":"app"}}"#,
        )
        .unwrap();
        assert_eq!(c.env, vec!["A=1"]);
        assert_eq!(c.workdir.as_deref(), Some("/w"));
        assert_eq!(c.user.as_deref(), Some("app"));
        assert!(parse_config(br#"{"architecture":"arm64","os":"linux"}"#).is_err());
        assert_eq!(parse_config(b"{}").unwrap(), ImageConfig::default());
    }

    #[test]
    fn digests_are_checked() {
        assert!(digest_hex("sha256:../../etc/passwd").is_err());
        assert!(digest_hex("md5:abc").is_err());
        assert!(digest_hex(&format!("sha256:{}", "a".repeat(64))).is_ok());
    }
}
