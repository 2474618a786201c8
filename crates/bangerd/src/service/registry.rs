//! `banger image pull REGISTRY/REPO[:TAG|@DIGEST]`: OCI images from a
//! registry.
//!
//! The linux/amd64 manifest is fetched (credentials from
//! `~/.docker/config.json` when it has some for the registry, else
//! anonymous; the bearer-token dance is the client's), then each layer blob
//! into the cache by digest (`cache/oci/blobs/sha256/<hex>`, verified, kept
//! for the next pull), then the layers are flattened like an imported
//! archive.

use super::{Daemon, Progress};
use crate::error::{OrInternal, Result};
use banger_api::{validate, ApiError, Image, PullImageRequest};
use banger_image::oci;
use futures_util::StreamExt;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::Reference;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

impl Daemon {
    pub(super) async fn pull_oci(
        self: &Arc<Self>,
        req: PullImageRequest,
        progress: &Progress,
    ) -> Result<Image> {
        let reference: Reference = req.reference.parse().map_err(|e| {
            ApiError::invalid(format!("{:?} is not an image reference: {e}", req.reference))
                .with_hint("use REGISTRY/REPO[:TAG|@DIGEST], e.g. docker.io/library/debian:bookworm")
        })?;
        let name = match &req.name {
            Some(n) => n.clone(),
            None => derived_name(&reference),
        };
        validate::object_name(&name, "image name").map_err(|e| e.with_hint("pass a name with --name"))?;
        let kernel = self.oci_kernel(req.kernel.as_deref())?;
        let source = format!("oci:{}", reference.whole());
        let _guard = self.name_locks.lock(&format!("image/{name}")).await;
        if let Some(existing) = self.store.get_image_by_name(&name).map_err(crate::error::store_err)? {
            if existing.source == source {
                return Ok(super::images::to_api(&existing)); // a concurrent pull finished first
            }
            return Err(ApiError::conflict(format!("Image {name:?} already exists")).with_hint(format!(
                "pull under another name with --name, or delete it first with `banger image delete {name}`"
            )));
        }
        let registry = reference.resolve_registry().to_string();
        // oci-client builds its HTTP client the same way and panics where
        // that fails: fail first, with the hint.
        self.http()?;
        let client = oci_client::Client::new(ClientConfig {
            protocol: self.protocol_for(&registry),
            platform_resolver: Some(Box::new(oci_client::client::linux_amd64_resolver)),
            connect_timeout: Some(Duration::from_secs(15)),
            read_timeout: Some(Duration::from_secs(60)),
            ..Default::default()
        });
        let auth = docker_auth(&registry);
        progress.phase("manifest", format!("fetching the manifest of {}", reference.whole()));
        let unreachable = |e: &dyn std::fmt::Display| {
            ApiError::unavailable(format!("Cannot pull {}: {e}", reference.whole())).with_hint(
                "check the reference and the network; private registries need `docker login` (~/.docker/config.json)",
            )
        };
        let (manifest, digest, config) =
            client.pull_manifest_and_config(&reference, &auth).await.map_err(|e| unreachable(&e))?;
        let config = oci::parse_config(config.as_bytes())
            .map_err(|e| ApiError::invalid(format!("Cannot use {}: {e:#}", reference.whole())))?;
        let blobs = self.paths.cache_dir.join("oci").join("blobs").join("sha256");
        std::fs::create_dir_all(&blobs).or_internal(|| format!("Cannot create {}", blobs.display()))?;
        let total: u64 = manifest.layers.iter().map(|l| l.size.max(0) as u64).sum();
        let cap = self.config.max_download_mib << 20;
        let too_big = |n: u64| {
            super::pull::over_download_limit(&format!("The layers of {}", reference.whole()), cap, n)
        };
        if total > cap {
            return Err(too_big(total));
        }
        let mut layers = Vec::new();
        let mut done = 0u64;
        let t0 = Instant::now();
        let label = format!("pulling {}", reference.whole());
        for layer in &manifest.layers {
            let hex = oci::digest_hex(&layer.digest).map_err(|e| {
                ApiError::invalid(format!("The manifest of {} is bad: {e:#}", reference.whole()))
            })?;
            let path = blobs.join(hex);
            if !path.is_file() {
                let part = blobs.join(format!("{hex}.part"));
                let mut f = tokio::fs::File::create(&part)
                    .await
                    .or_internal(|| format!("Cannot create {}", part.display()))?;
                let mut stream =
                    client.pull_blob_stream(&reference, layer).await.map_err(|e| unreachable(&e))?;
                let mut last = Instant::now();
                let mut got = 0u64;
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| unreachable(&e))?;
                    got += chunk.len() as u64;
                    done += chunk.len() as u64;
                    // A blob longer than the manifest says is not that blob.
                    if got > layer.size.max(0) as u64 || done > cap {
                        drop(f);
                        let _ = std::fs::remove_file(&part);
                        if done > cap {
                            return Err(too_big(done));
                        }
                        return Err(ApiError::invalid(format!(
                            "A layer of {} is larger than its manifest says ({} bytes); refusing it",
                            reference.whole(),
                            layer.size
                        )));
                    }
                    f.write_all(&chunk).await.or_internal(|| format!("Cannot write {}", part.display()))?;
                    if last.elapsed() >= Duration::from_millis(100) {
                        progress.progress(&label, done, Some(total));
                        last = Instant::now();
                    }
                }
                f.sync_all().await.or_internal(|| format!("Cannot sync {}", part.display()))?;
                drop(f);
                let (p2, d2) = (part.clone(), layer.digest.clone());
                let ok = tokio::task::spawn_blocking(move || oci::verify_blob(&p2, &d2))
                    .await
                    .or_internal(|| "verify task".into())?;
                if let Err(e) = ok {
                    let _ = std::fs::remove_file(&part);
                    return Err(ApiError::invalid(format!("Layer of {}: {e:#}", reference.whole())));
                }
                std::fs::rename(&part, &path)
                    .or_internal(|| format!("Cannot move {} into place", part.display()))?;
            } else {
                done += layer.size.max(0) as u64;
            }
            progress.progress(&label, done, Some(total));
            layers.push(path);
        }
        tracing::info!(reference = %reference.whole(), layers = layers.len(), ms = t0.elapsed().as_millis() as u64, "layers fetched");
        let extra = serde_json::json!({ "reference": reference.whole(), "digest": digest });
        self.publish_layers(&name, &kernel, layers, config, req.size_mib, &source, extra, progress).await
    }

    /// Plain HTTP for loopback registries and those listed in
    /// `insecure_registries`; HTTPS otherwise.
    fn protocol_for(&self, registry: &str) -> ClientProtocol {
        let host = registry.rsplit_once(':').map(|(h, _)| h).unwrap_or(registry);
        let loopback =
            host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if loopback || self.config.insecure_registries.iter().any(|r| r == registry) {
            ClientProtocol::Http
        } else {
            ClientProtocol::Https
        }
    }
}

/// `docker.io/library/debian:bookworm` → `debian-bookworm`;
/// `…/app@sha256:abcd…` → `app-abcd1234abcd`.
pub fn derived_name(r: &Reference) -> String {
    let repo = r.repository().rsplit('/').next().unwrap_or("image");
    let suffix = match (r.tag(), r.digest()) {
        (Some(t), _) => t.to_string(),
        (None, Some(d)) => d.trim_start_matches("sha256:").chars().take(12).collect(),
        (None, None) => "latest".into(),
    };
    let raw = format!("{repo}-{suffix}");
    let mut s: String = raw
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.' { c } else { '-' })
        .collect();
    s.truncate(63);
    s
}

/// Credentials for `registry` from `~/.docker/config.json` (`auth` as
/// base64 `user:password`, or `username`/`password`); anonymous otherwise.
fn docker_auth(registry: &str) -> RegistryAuth {
    let Some(home) = std::env::var_os("HOME") else { return RegistryAuth::Anonymous };
    let path = PathBuf::from(home).join(".docker/config.json");
    let Ok(text) = std::fs::read(&path) else { return RegistryAuth::Anonymous };
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(&text) else { return RegistryAuth::Anonymous };
    auth_from_config(&v, registry).unwrap_or(RegistryAuth::Anonymous)
}

fn auth_from_config(v: &serde_json::Value, registry: &str) -> Option<RegistryAuth> {
    let auths = v.get("auths")?.as_object()?;
    let keys: Vec<String> = if registry == "docker.io" || registry == "index.docker.io" {
        vec!["https://index.docker.io/v1/".into(), "docker.io".into(), "index.docker.io".into()]
    } else {
        vec![registry.into(), format!("https://{registry}"), format!("http://{registry}")]
    };
    let entry = keys.iter().find_map(|k| auths.get(k))?;
    if let Some(b64) = entry.get("auth").and_then(|a| a.as_str()) {
        use base64::Engine;
        let raw = base64::engine::general_purpose::STANDARD.decode(b64).ok()?;
        let text = String::from_utf8(raw).ok()?;
        let (u, p) = text.split_once(':')?;
        return Some(RegistryAuth::Basic(u.into(), p.into()));
    }
    let u = entry.get("username")?.as_str()?;
    let p = entry.get("password")?.as_str()?;
    Some(RegistryAuth::Basic(u.into(), p.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_references() {
        let r: Reference = "docker.io/library/debian:bookworm".parse().unwrap();
        assert_eq!(derived_name(&r), "debian-bookworm");
        let r: Reference = "127.0.0.1:5000/team/app:1.2".parse().unwrap();
        assert_eq!(derived_name(&r), "app-1.2");
        let r: Reference = format!("quay.io/x/app@sha256:{}", "ab".repeat(32)).parse().unwrap();
        assert_eq!(derived_name(&r), "app-abababababab");
    }

    #[test]
    fn docker_config_credentials() {
        let v = serde_json::json!({"auths": {
            "reg.example:5000": {"auth": "dXNlcjpwYXNz"},
            "https://index.docker.io/v1/": {"username": "hub", "password": "pw"}
        }});
        assert!(
            matches!(auth_from_config(&v, "reg.example:5000"), Some(RegistryAuth::Basic(u, p)) if u == "user" && p == "pass")
        );
        assert!(matches!(auth_from_config(&v, "docker.io"), Some(RegistryAuth::Basic(u, _)) if u == "hub"));
        assert!(auth_from_config(&v, "other.example").is_none());
    }
}
