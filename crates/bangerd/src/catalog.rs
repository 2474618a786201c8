//! Catalogs: images and kernels known by name, with where to get them.
//!
//! One catalog is compiled in (`catalog.toml`); more come from config
//! (`[[catalog]]` with a `url` or a `file`) and are searched first. A
//! bundle URL may be relative: it is resolved against the catalog's own
//! location, so a catalog and its bundles can sit side by side on any
//! static file server or shared directory.

use crate::config::CatalogSource;
use anyhow::{bail, Context};
use serde::Deserialize;
use std::time::Duration;

const EMBEDDED: &str = include_str!("catalog.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    version: u32,
    #[serde(default)]
    image: Vec<RawEntry>,
    #[serde(default)]
    kernel: Vec<RawEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    name: String,
    #[serde(default)]
    description: String,
    url: Option<String>,
    sha256: Option<String>,
    size_bytes: Option<u64>,
    kernel: Option<String>,
    #[serde(default)]
    build: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Image,
    Kernel,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Image => "image",
            Kind::Kernel => "kernel",
        }
    }
}

/// A catalog entry with its URL resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    pub name: String,
    pub description: String,
    /// `https://…`, `http://…` or `file:///…`, with its sha256.
    pub bundle: Option<(String, String)>,
    pub size_bytes: Option<u64>,
    pub kernel: Option<String>,
    pub buildable: bool,
    pub origin: String,
}

/// Parses one catalog's text; `base` resolves relative bundle URLs.
pub fn parse(text: &str, origin: &str, base: Option<&str>) -> anyhow::Result<Vec<Entry>> {
    let f: File = toml::from_str(text).with_context(|| format!("catalog {origin} is malformed"))?;
    if f.version != 1 {
        bail!("catalog {origin} has version {}; this banger reads version 1", f.version);
    }
    let mut out = Vec::new();
    for (kind, list) in [(Kind::Image, f.image), (Kind::Kernel, f.kernel)] {
        for e in list {
            banger_api::validate::object_name(&e.name, "catalog entry name")
                .map_err(|err| anyhow::anyhow!("catalog {origin}: {}", err.message))?;
            if let Some(k) = &e.kernel {
                banger_api::validate::object_name(k, "kernel name")
                    .map_err(|err| anyhow::anyhow!("catalog {origin}: {}", err.message))?;
            }
            let bundle = match (e.url, e.sha256) {
                (Some(u), Some(sha)) => {
                    if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()) {
                        bail!("catalog {origin}: {} has a malformed sha256", e.name);
                    }
                    let url = resolve(&u, base).with_context(|| format!("catalog {origin}: {}", e.name))?;
                    // A catalog from the network may not make the daemon
                    // read the host's own files.
                    if base.is_some_and(|b| !b.starts_with("file:")) && url.starts_with("file:") {
                        bail!(
                            "catalog {origin}: {} names a local file ({url}); only local catalogs may",
                            e.name
                        );
                    }
                    Some((url, sha.to_lowercase()))
                }
                (None, None) => None,
                _ => bail!("catalog {origin}: {} needs both url and sha256", e.name),
            };
            if bundle.is_none() && !e.build {
                bail!("catalog {origin}: {} has neither a bundle (url, sha256) nor build = true", e.name);
            }
            out.push(Entry {
                kind,
                name: e.name,
                description: e.description,
                bundle,
                size_bytes: e.size_bytes,
                kernel: e.kernel,
                buildable: e.build,
                origin: origin.to_string(),
            });
        }
    }
    Ok(out)
}

/// Resolves a bundle URL against its catalog's location.
fn resolve(url: &str, base: Option<&str>) -> anyhow::Result<String> {
    if url.starts_with("https://") || url.starts_with("http://") || url.starts_with("file:///") {
        return Ok(url.to_string());
    }
    if url.contains("://") {
        bail!("unsupported URL {url:?}: use https://, http:// or file://");
    }
    let base = base.with_context(|| format!("relative URL {url:?} in a catalog without a location"))?;
    let joined = reqwest::Url::parse(base)
        .and_then(|b| b.join(url))
        .with_context(|| format!("cannot resolve {url:?} against {base}"))?;
    Ok(joined.to_string())
}

/// The embedded catalog.
pub fn embedded() -> Vec<Entry> {
    parse(EMBEDDED, "embedded", None).expect("the embedded catalog parses (tested)")
}

/// Reads one configured catalog.
pub async fn load(src: &CatalogSource, http: &reqwest::Client) -> anyhow::Result<Vec<Entry>> {
    match src {
        CatalogSource::File(p) => {
            let text = tokio::fs::read_to_string(p)
                .await
                .with_context(|| format!("Cannot read catalog {}", p.display()))?;
            let base = reqwest::Url::from_file_path(p).ok().map(|u| u.to_string());
            parse(&text, &p.display().to_string(), base.as_deref())
        }
        CatalogSource::Url(u) => {
            let resp = http
                .get(u)
                .timeout(Duration::from_secs(15))
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .with_context(|| format!("Cannot fetch catalog {u}"))?;
            let text = resp.text().await.with_context(|| format!("Cannot read catalog {u}"))?;
            parse(&text, u, Some(u))
        }
    }
}

/// Every catalog, configured ones first; unreadable ones become warnings.
pub async fn all(sources: &[CatalogSource], http: &reqwest::Client) -> (Vec<Entry>, Vec<String>) {
    let mut entries = Vec::new();
    let mut warnings = Vec::new();
    for s in sources {
        match load(s, http).await {
            Ok(e) => entries.extend(e),
            Err(e) => warnings.push(format!("{e:#}")),
        }
    }
    entries.extend(embedded());
    (entries, warnings)
}

/// The first entry of `kind` named `name`.
pub fn find<'a>(entries: &'a [Entry], kind: Kind, name: &str) -> Option<&'a Entry> {
    entries.iter().find(|e| e.kind == kind && e.name == name)
}

/// A catalog entry for a bundle, as TOML to paste into a catalog file.
pub fn entry_toml(
    kind: Kind,
    name: &str,
    url: &str,
    sha256: &str,
    size: u64,
    kernel: Option<&str>,
) -> String {
    let mut s = format!(
        "[[{}]]\nname = {}\nurl = {}\nsha256 = \"{sha256}\"\nsize_bytes = {size}\n",
        kind.as_str(),
        toml_str(name),
        toml_str(url)
    );
    if let Some(k) = kernel {
        s.push_str(&format!("kernel = {}\n", toml_str(k)));
    }
    s
}

fn toml_str(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// Whether a path is a local file URL's target, for file:// bundles.
pub fn file_url_path(url: &str) -> Option<std::path::PathBuf> {
    reqwest::Url::parse(url).ok().filter(|u| u.scheme() == "file").and_then(|u| u.to_file_path().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    /// Issue 14, item 12: a remote catalog cannot point at the host's files.
    #[test]
    fn remote_catalogs_cannot_name_local_files() {
        let sha = "ab".repeat(32);
        let text = format!(
            "version = 1\n[[image]]\nname = \"x\"\nurl = \"file:///etc/shadow\"\nsha256 = \"{sha}\"\n"
        );
        let e = parse(&text, "t", Some("https://example.org/catalog.toml")).unwrap_err();
        assert!(format!("{e:#}").contains("local file"), "{e:#}");
        assert!(parse(&text, "t", Some("file:///srv/catalog.toml")).is_ok());
        assert!(parse(&text, "t", None).is_ok(), "the user's own config may name files");
    }

    #[test]
    fn embedded_parses_and_pairs() {
        let e = embedded();
        let img = find(&e, Kind::Image, crate::config::DEFAULT_IMAGE).expect("default image listed");
        assert_eq!(img.kernel.as_deref(), Some(crate::config::DEFAULT_KERNEL));
        assert!(find(&e, Kind::Kernel, crate::config::DEFAULT_KERNEL).is_some());
    }

    #[test]
    fn relative_urls_and_bad_entries() {
        let sha = "a".repeat(64);
        let text = format!("version = 1\n[[image]]\nname = \"x\"\nurl = \"x.tar.zst\"\nsha256 = \"{sha}\"\n");
        let e = parse(&text, "t", Some("https://h.example/cat/catalog.toml")).unwrap();
        assert_eq!(e[0].bundle.as_ref().unwrap().0, "https://h.example/cat/x.tar.zst");
        let e = parse(&text, "t", Some("file:///srv/cat/catalog.toml")).unwrap();
        assert_eq!(file_url_path(&e[0].bundle.as_ref().unwrap().0).unwrap(), Path::new("/srv/cat/x.tar.zst"));
        assert!(parse("version = 2\n", "t", None).is_err());
        assert!(parse("version = 1\n[[image]]\nname = \"x\"\n", "t", None).is_err(), "no bundle, no build");
        assert!(parse("version = 1\n[[image]]\nname = \"../x\"\nbuild = true\n", "t", None).is_err());
        let bad_sha = "version = 1\n[[image]]\nname = \"x\"\nurl = \"https://a/b\"\nsha256 = \"zz\"\n";
        assert!(parse(bad_sha, "t", None).is_err());
        assert!(parse(
            "version = 1\n[[image]]\nname = \"x\"\nurl = \"ftp://a/b\"\nsha256 = \"x\"\n",
            "t",
            None
        )
        .is_err());
    }

    #[test]
    fn entry_toml_round_trips() {
        let t = entry_toml(Kind::Image, "team-img", "https://h/x.tar.zst", &"b".repeat(64), 12, Some("k"));
        let e = parse(&format!("version = 1\n{t}"), "t", None).unwrap();
        assert_eq!(e[0].size_bytes, Some(12));
        assert_eq!(e[0].kernel.as_deref(), Some("k"));
    }

    /// The property version of the `catalog` fuzz target.
    mod props {
        use super::super::parse;
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(300))]
            #[test]
            fn any_text_parses_or_fails(text in "(version = 1\n)?(\\[\\[(image|kernel)\\]\\]\n)?((name|url|sha256|kernel|build|size_bytes) = (\"[a-z0-9:/._-]{0,70}\"|[0-9]{1,3}|true)\n){0,6}") {
                if let Ok(entries) = parse(&text, "prop", Some("https://example.org/c.toml")) {
                    for e in entries {
                        if let Some((url, _)) = e.bundle {
                            prop_assert!(!url.starts_with("file:"));
                        }
                    }
                }
            }
        }
    }
}
