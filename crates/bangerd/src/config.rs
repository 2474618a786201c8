//! `config.toml`: typed, unknown-key-rejecting, with built-in defaults.
//!
//! The file is optional. Each effective value remembers whether it came from
//! the file or from the built-in default, so `banger config show` can say.

use anyhow::Context;
use banger_api::validate;
use banger_api::{ConfigEntry, ConfigView};
use ipnet::Ipv4Net;
use serde::Deserialize;
use std::path::{Path, PathBuf};

pub use banger_engine::host::EngineChoice;

/// A size in config: a number of MiB or a string such as `"2G"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum SizeValue {
    Mib(u64),
    Text(String),
}

impl SizeValue {
    fn mib(&self) -> Result<u64, banger_api::ApiError> {
        match self {
            SizeValue::Mib(n) => Ok(*n),
            SizeValue::Text(s) => validate::parse_size_mib(s),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    firecracker_bin: Option<PathBuf>,
    jailer_enabled: Option<bool>,
    jailer_bin: Option<PathBuf>,
    qemu_bin: Option<PathBuf>,
    vhost_vsock_bin: Option<PathBuf>,
    agent_bin: Option<PathBuf>,
    engine: Option<EngineChoice>,
    default_image: Option<String>,
    default_kernel: Option<String>,
    boot_timeout_secs: Option<u64>,
    console_log_max_mib: Option<u64>,
    max_download_mib: Option<u64>,
    max_unpacked_mib: Option<u64>,
    network: Option<FileNetwork>,
    vm_defaults: Option<FileVmDefaults>,
    mcp: Option<FileMcp>,
    #[serde(default)]
    file_sync: Vec<FileFileSync>,
    #[serde(default)]
    catalog: Vec<FileCatalog>,
    #[serde(default)]
    insecure_registries: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileCatalog {
    url: Option<String>,
    file: Option<PathBuf>,
}

/// Where a catalog comes from: `[[catalog]]` with `url` or `file`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogSource {
    Url(String),
    File(PathBuf),
}

impl std::fmt::Display for CatalogSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CatalogSource::Url(u) => f.write_str(u),
            CatalogSource::File(p) => write!(f, "{}", p.display()),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileFileSync {
    host: String,
    guest: String,
    #[serde(default)]
    mode: Option<ModeValue>,
}

/// A file mode in config: `"0600"` or `384`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum ModeValue {
    Number(u32),
    Text(String),
}

/// One `[[file_sync]]` entry: a host file copied into every guest at start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSync {
    /// Absolute, inside the user's home.
    pub host: PathBuf,
    /// Absolute path in the guest.
    pub guest: String,
    pub mode: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNetwork {
    bridge: Option<String>,
    cidr: Option<String>,
    tap_pool: Option<usize>,
    dns_port: Option<u16>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileVmDefaults {
    vcpu: Option<u32>,
    memory: Option<SizeValue>,
    disk_size: Option<SizeValue>,
}

/// `[mcp]`: what `banger mcp` lets a model ask for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileMcp {
    max_vcpu: Option<u32>,
    max_memory: Option<SizeValue>,
    max_output_kib: Option<u64>,
}

/// The effective configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Explicit firecracker binary; `None`: look it up on PATH.
    pub firecracker_bin: Option<PathBuf>,
    /// Firecracker runs under its jailer (chroot, own uid, cgroup, new
    /// PID and mount namespaces). Needs root: a root daemon or a system
    /// install. Default: on for system installs (`None` until decided).
    pub jailer_enabled: Option<bool>,
    /// The jailer binary (default: `jailer` on PATH).
    pub jailer_bin: Option<PathBuf>,
    pub qemu_bin: Option<PathBuf>,
    pub vhost_vsock_bin: Option<PathBuf>,
    /// Explicit guest agent binary; `None`: next to the daemon's executable.
    pub agent_bin: Option<PathBuf>,
    pub engine: EngineChoice,
    pub default_image: String,
    pub default_kernel: String,
    /// How long a start waits for the guest agent.
    pub boot_timeout_secs: u64,
    /// A VM's `console.log` is rotated (to `console.log.1`) past this size.
    pub console_log_max_mib: u64,
    /// A bundle download or an image's registry layers, in all.
    pub max_download_mib: u64,
    /// What a bundle or an image's layers unpack to, in all.
    pub max_unpacked_mib: u64,
    pub bridge: String,
    pub cidr: Ipv4Net,
    /// Taps kept ready on the bridge so a start never waits for one.
    pub tap_pool: usize,
    /// UDP port on 127.0.0.1 answering `<vm>.vm`; 0: off.
    pub dns_port: u16,
    pub vcpu: u32,
    pub memory_mib: u64,
    pub disk_size_mib: u64,
    /// `banger mcp` refuses sandboxes larger than these.
    pub mcp_max_vcpu: u32,
    pub mcp_max_memory_mib: u64,
    /// `sandbox_exec` keeps at most this much of stdout and of stderr.
    pub mcp_max_output_kib: u64,
    /// Files copied into every guest at each start.
    pub file_sync: Vec<FileSync>,
    /// Extra catalogs, searched before the embedded one.
    pub catalogs: Vec<CatalogSource>,
    /// Registries spoken to over plain HTTP (loopback ones always are).
    pub insecure_registries: Vec<String>,
    /// Where the config was read from, and which keys it set.
    pub path: PathBuf,
    pub file_exists: bool,
    set_keys: Vec<String>,
}

pub const DEFAULT_BRIDGE: &str = "banger0";
pub const DEFAULT_CIDR: &str = "172.30.213.0/24";
pub const DEFAULT_IMAGE: &str = "debian-bookworm";
pub const DEFAULT_KERNEL: &str = "banger-6.1";

impl Config {
    /// The engines' binaries as configured (unset ones are looked up).
    pub fn binaries(&self) -> banger_engine::host::Binaries {
        banger_engine::host::Binaries {
            firecracker: self.firecracker_bin.clone(),
            jailer: self.jailer_bin.clone(),
            qemu: self.qemu_bin.clone(),
            vhost_vsock: self.vhost_vsock_bin.clone(),
        }
    }

    /// Built-in defaults only.
    pub fn defaults(path: PathBuf) -> Config {
        Config {
            firecracker_bin: None,
            jailer_enabled: None,
            jailer_bin: None,
            qemu_bin: None,
            vhost_vsock_bin: None,
            agent_bin: None,
            engine: EngineChoice::Auto,
            default_image: DEFAULT_IMAGE.into(),
            default_kernel: DEFAULT_KERNEL.into(),
            // Generous: a systemd guest under TCG takes 10-15 s to settle.
            boot_timeout_secs: 120,
            console_log_max_mib: 16,
            max_download_mib: 16 << 10,
            max_unpacked_mib: 64 << 10,
            bridge: DEFAULT_BRIDGE.into(),
            cidr: DEFAULT_CIDR.parse().expect("the default CIDR parses"),
            tap_pool: 4,
            dns_port: 53535,
            vcpu: 2,
            memory_mib: 1024,
            disk_size_mib: 8192,
            mcp_max_vcpu: 4,
            mcp_max_memory_mib: 4096,
            mcp_max_output_kib: 256,
            file_sync: Vec::new(),
            catalogs: Vec::new(),
            insecure_registries: Vec::new(),
            path,
            file_exists: false,
            set_keys: Vec::new(),
        }
    }

    /// Reads `path` if it exists; a missing file means all defaults.
    pub fn load(path: &Path) -> anyhow::Result<Config> {
        match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(&text, path.to_path_buf()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Config::defaults(path.to_path_buf())),
            Err(e) => Err(e).with_context(|| format!("Cannot read config file {}", path.display())),
        }
    }

    /// Parses config text; errors name the file and the offending key.
    pub fn parse(text: &str, path: PathBuf) -> anyhow::Result<Config> {
        let file: FileConfig =
            toml::from_str(text).with_context(|| format!("Invalid config file {}", path.display()))?;
        let bad = |key: &str, e: banger_api::ApiError| {
            anyhow::anyhow!("Invalid config file {}: {key}: {}", path.display(), e.message)
        };
        let mut c = Config::defaults(path.clone());
        c.file_exists = true;
        let mut set_keys: Vec<String> = Vec::new();
        let mut mark = |key: &str, present: bool| {
            if present {
                set_keys.push(key.to_string());
            }
        };
        let net = file.network.unwrap_or_default();
        let vmd = file.vm_defaults.unwrap_or_default();
        let mcp = file.mcp.unwrap_or_default();
        mark("firecracker_bin", file.firecracker_bin.is_some());
        mark("jailer_enabled", file.jailer_enabled.is_some());
        mark("jailer_bin", file.jailer_bin.is_some());
        mark("qemu_bin", file.qemu_bin.is_some());
        mark("vhost_vsock_bin", file.vhost_vsock_bin.is_some());
        mark("agent_bin", file.agent_bin.is_some());
        mark("engine", file.engine.is_some());
        mark("default_image", file.default_image.is_some());
        mark("default_kernel", file.default_kernel.is_some());
        mark("boot_timeout_secs", file.boot_timeout_secs.is_some());
        mark("console_log_max_mib", file.console_log_max_mib.is_some());
        mark("max_download_mib", file.max_download_mib.is_some());
        mark("max_unpacked_mib", file.max_unpacked_mib.is_some());
        mark("network.bridge", net.bridge.is_some());
        mark("network.cidr", net.cidr.is_some());
        mark("network.tap_pool", net.tap_pool.is_some());
        mark("network.dns_port", net.dns_port.is_some());
        mark("vm_defaults.vcpu", vmd.vcpu.is_some());
        mark("vm_defaults.memory", vmd.memory.is_some());
        mark("vm_defaults.disk_size", vmd.disk_size.is_some());
        mark("mcp.max_vcpu", mcp.max_vcpu.is_some());
        mark("mcp.max_memory", mcp.max_memory.is_some());
        mark("mcp.max_output_kib", mcp.max_output_kib.is_some());
        mark("file_sync", !file.file_sync.is_empty());
        mark("catalog", !file.catalog.is_empty());
        mark("insecure_registries", !file.insecure_registries.is_empty());
        c.set_keys = set_keys;

        let firecracker_bin = file.firecracker_bin.or(c.firecracker_bin.take());
        let qemu_bin = file.qemu_bin.or(c.qemu_bin.take());
        let vhost_vsock_bin = file.vhost_vsock_bin.or(c.vhost_vsock_bin.take());
        let agent_bin = file.agent_bin.or(c.agent_bin.take());
        let engine = file.engine.unwrap_or(c.engine);
        let default_image = file.default_image.unwrap_or_else(|| c.default_image.clone());
        let default_kernel = file.default_kernel.unwrap_or_else(|| c.default_kernel.clone());
        let boot_timeout_secs = file.boot_timeout_secs.unwrap_or(c.boot_timeout_secs);
        let bridge = net.bridge.unwrap_or_else(|| c.bridge.clone());
        let cidr_text = net.cidr;
        if let Some(p) = net.dns_port {
            c.dns_port = p;
        }
        if let Some(n) = net.tap_pool {
            if n > 64 {
                anyhow::bail!("Invalid config file {}: network.tap_pool must be at most 64", path.display());
            }
            c.tap_pool = n;
        }
        let vcpu = vmd.vcpu.unwrap_or(c.vcpu);
        let memory = vmd.memory;
        let disk = vmd.disk_size;

        c.firecracker_bin = firecracker_bin;
        c.jailer_enabled = file.jailer_enabled.or(c.jailer_enabled);
        c.jailer_bin = file.jailer_bin.or(c.jailer_bin.take());
        c.qemu_bin = qemu_bin;
        c.vhost_vsock_bin = vhost_vsock_bin;
        c.agent_bin = agent_bin;
        c.engine = engine;
        validate::object_name(&default_image, "image name").map_err(|e| bad("default_image", e))?;
        c.default_image = default_image;
        validate::object_name(&default_kernel, "kernel name").map_err(|e| bad("default_kernel", e))?;
        c.default_kernel = default_kernel;
        if boot_timeout_secs == 0 || boot_timeout_secs > 3600 {
            anyhow::bail!(
                "Invalid config file {}: boot_timeout_secs must be between 1 and 3600",
                path.display()
            );
        }
        c.boot_timeout_secs = boot_timeout_secs;
        let console_max = file.console_log_max_mib.unwrap_or(c.console_log_max_mib);
        if console_max == 0 || console_max > 4096 {
            anyhow::bail!(
                "Invalid config file {}: console_log_max_mib must be between 1 and 4096",
                path.display()
            );
        }
        c.console_log_max_mib = console_max;
        for (key, value, slot) in [
            ("max_download_mib", file.max_download_mib, &mut c.max_download_mib),
            ("max_unpacked_mib", file.max_unpacked_mib, &mut c.max_unpacked_mib),
        ] {
            let v = value.unwrap_or(*slot);
            if v == 0 || v > 1 << 20 {
                anyhow::bail!("Invalid config file {}: {key} must be between 1 and 1048576", path.display());
            }
            *slot = v;
        }
        banger_net::check_bridge_name(&bridge)
            .map_err(|m| anyhow::anyhow!("Invalid config file {}: network.bridge: {m}", path.display()))?;
        c.bridge = bridge;
        if let Some(text) = cidr_text {
            c.cidr = parse_cidr(&text)
                .map_err(|m| anyhow::anyhow!("Invalid config file {}: network.cidr: {m}", path.display()))?;
        }
        validate::vcpu(vcpu).map_err(|e| bad("vm_defaults.vcpu", e))?;
        c.vcpu = vcpu;
        if let Some(m) = memory {
            let mib = m.mib().map_err(|e| bad("vm_defaults.memory", e))?;
            validate::memory_mib(mib).map_err(|e| bad("vm_defaults.memory", e))?;
            c.memory_mib = mib;
        }
        if let Some(n) = mcp.max_vcpu {
            validate::vcpu(n).map_err(|e| bad("mcp.max_vcpu", e))?;
            c.mcp_max_vcpu = n;
        }
        if let Some(m) = mcp.max_memory {
            let mib = m.mib().map_err(|e| bad("mcp.max_memory", e))?;
            validate::memory_mib(mib).map_err(|e| bad("mcp.max_memory", e))?;
            c.mcp_max_memory_mib = mib;
        }
        if let Some(k) = mcp.max_output_kib {
            if k == 0 || k > 64 << 10 {
                anyhow::bail!(
                    "Invalid config file {}: mcp.max_output_kib must be between 1 and 65536",
                    path.display()
                );
            }
            c.mcp_max_output_kib = k;
        }
        for (i, f) in file.file_sync.iter().enumerate() {
            let entry = parse_file_sync(f).map_err(|m| {
                anyhow::anyhow!("Invalid config file {}: file_sync[{i}]: {m}", path.display())
            })?;
            c.file_sync.push(entry);
        }
        for (i, cat) in file.catalog.iter().enumerate() {
            let bad_cat =
                |m: &str| anyhow::anyhow!("Invalid config file {}: catalog[{i}]: {m}", path.display());
            c.catalogs.push(match (&cat.url, &cat.file) {
                (Some(u), None) if u.starts_with("https://") || u.starts_with("http://") => {
                    CatalogSource::Url(u.clone())
                }
                (Some(u), None) if u.starts_with("file://") => CatalogSource::File(PathBuf::from(&u[7..])),
                (Some(_), None) => return Err(bad_cat("url must start with https://, http:// or file://")),
                (None, Some(f)) if f.is_absolute() => CatalogSource::File(f.clone()),
                (None, Some(_)) => return Err(bad_cat("file must be an absolute path")),
                _ => return Err(bad_cat("give exactly one of url or file")),
            });
        }
        for r in &file.insecure_registries {
            if r.is_empty() || r.contains(['/', ' ']) {
                anyhow::bail!(
                    "Invalid config file {}: insecure_registries: {r:?} is not a host[:port]",
                    path.display()
                );
            }
        }
        c.insecure_registries = file.insecure_registries;
        if let Some(d) = disk {
            let mib = d.mib().map_err(|e| bad("vm_defaults.disk_size", e))?;
            validate::disk_size_mib(mib).map_err(|e| bad("vm_defaults.disk_size", e))?;
            c.disk_size_mib = mib;
        }
        Ok(c)
    }

    /// Every effective value with its origin, for `banger config show`.
    pub fn view(&self) -> ConfigView {
        use serde_json::json;
        let path_or_null = |p: &Option<PathBuf>| match p {
            Some(p) => json!(p.display().to_string()),
            None => serde_json::Value::Null,
        };
        let entries = [
            ("firecracker_bin", path_or_null(&self.firecracker_bin)),
            ("jailer_enabled", json!(self.jailer_enabled)),
            ("jailer_bin", path_or_null(&self.jailer_bin)),
            ("qemu_bin", path_or_null(&self.qemu_bin)),
            ("vhost_vsock_bin", path_or_null(&self.vhost_vsock_bin)),
            ("agent_bin", path_or_null(&self.agent_bin)),
            ("engine", json!(self.engine.as_str())),
            ("default_image", json!(self.default_image)),
            ("default_kernel", json!(self.default_kernel)),
            ("boot_timeout_secs", json!(self.boot_timeout_secs)),
            ("console_log_max_mib", json!(self.console_log_max_mib)),
            ("max_download_mib", json!(self.max_download_mib)),
            ("max_unpacked_mib", json!(self.max_unpacked_mib)),
            ("network.bridge", json!(self.bridge)),
            ("network.cidr", json!(self.cidr.to_string())),
            ("network.tap_pool", json!(self.tap_pool)),
            ("network.dns_port", json!(self.dns_port)),
            ("vm_defaults.vcpu", json!(self.vcpu)),
            ("vm_defaults.memory", json!(validate::format_mib(self.memory_mib))),
            ("vm_defaults.disk_size", json!(validate::format_mib(self.disk_size_mib))),
            ("mcp.max_vcpu", json!(self.mcp_max_vcpu)),
            ("mcp.max_memory", json!(validate::format_mib(self.mcp_max_memory_mib))),
            ("mcp.max_output_kib", json!(self.mcp_max_output_kib)),
            (
                "file_sync",
                json!(self
                    .file_sync
                    .iter()
                    .map(|f| json!({"host": f.host.display().to_string(), "guest": f.guest, "mode": format!("{:04o}", f.mode)}))
                    .collect::<Vec<_>>()),
            ),
            ("catalog", json!(self.catalogs.iter().map(|c| c.to_string()).collect::<Vec<_>>())),
            ("insecure_registries", json!(self.insecure_registries)),
        ];
        ConfigView {
            path: self.path.display().to_string(),
            file_exists: self.file_exists,
            entries: entries
                .into_iter()
                .map(|(key, value)| ConfigEntry {
                    key: key.to_string(),
                    value,
                    source: if self.set_keys.iter().any(|k| k == key) { "file" } else { "default" }.into(),
                })
                .collect(),
        }
    }

    /// The bridge's own address: the first host address of the CIDR.
    pub fn gateway(&self) -> std::net::Ipv4Addr {
        banger_net::gateway(&self.cidr).expect("a CIDR of /30 or larger has hosts")
    }
}

/// Checks one `[[file_sync]]` entry: the guest path absolute without `..`,
/// the host path (`~/` allowed) inside the user's home, the mode octal.
fn parse_file_sync(f: &FileFileSync) -> Result<FileSync, String> {
    let home = std::env::var_os("HOME").map(PathBuf::from).ok_or("HOME is not set")?;
    let host = match f.host.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(&f.host),
    };
    if !host.is_absolute() {
        return Err(format!("host path {:?} must be absolute or start with ~/", f.host));
    }
    if !within(&host, &home) {
        return Err(format!(
            "host path {:?} is outside your home {}; banger only copies files from there",
            f.host,
            home.display()
        ));
    }
    if !f.guest.starts_with('/') || f.guest.split('/').any(|c| c == "..") || f.guest.ends_with('/') {
        return Err(format!("guest path {:?} must be an absolute file path without '..'", f.guest));
    }
    let mode = match &f.mode {
        None => 0o600,
        Some(ModeValue::Number(n)) => *n,
        Some(ModeValue::Text(t)) => u32::from_str_radix(t.trim_start_matches("0o"), 8)
            .map_err(|_| format!("mode {t:?} is not octal"))?,
    };
    if mode > 0o7777 {
        return Err(format!("mode {mode:o} is out of range"));
    }
    Ok(FileSync { host, guest: f.guest.clone(), mode })
}

/// Whether `path` is inside `dir`, following symlinks where the path exists
/// and refusing `..` where it does not.
pub fn within(path: &Path, dir: &Path) -> bool {
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    match path.canonicalize() {
        Ok(real) => real.starts_with(&dir),
        Err(_) => {
            !path.components().any(|c| matches!(c, std::path::Component::ParentDir)) && path.starts_with(&dir)
        }
    }
}

/// A private IPv4 network between /16 and /29, normalised to its network
/// address.
pub fn parse_cidr(text: &str) -> Result<Ipv4Net, String> {
    let net: Ipv4Net =
        text.parse().map_err(|_| format!("{text:?} is not an IPv4 CIDR such as 172.30.213.0/24"))?;
    if !(16..=29).contains(&net.prefix_len()) {
        return Err(format!("{text:?} must have a prefix length between /16 and /29"));
    }
    if !net.network().is_private() {
        return Err(format!("{text:?} is not a private network (10/8, 172.16/12, 192.168/16)"));
    }
    Ok(net.trunc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        Config::parse(text, PathBuf::from("/x/config.toml"))
    }

    #[test]
    fn defaults_when_empty() {
        let c = parse("").unwrap();
        assert_eq!(c.bridge, DEFAULT_BRIDGE);
        assert_eq!(c.gateway().to_string(), "172.30.213.1");
        assert!(c.view().entries.iter().all(|e| e.source == "default"));
    }

    #[test]
    fn file_values_are_marked() {
        let c = parse(
            r#"
            firecracker_bin = "/opt/fc"
            engine = "qemu"
            [network]
            cidr = "10.9.8.0/24"
            [vm_defaults]
            vcpu = 4
            memory = "2G"
            disk_size = 4096
            "#,
        )
        .unwrap();
        assert_eq!(c.engine, EngineChoice::Qemu);
        assert_eq!((c.vcpu, c.memory_mib, c.disk_size_mib), (4, 2048, 4096));
        let v = c.view();
        let src = |k: &str| v.entries.iter().find(|e| e.key == k).unwrap().source.clone();
        assert_eq!(src("engine"), "file");
        assert_eq!(src("vm_defaults.memory"), "file");
        assert_eq!(src("network.bridge"), "default");
    }

    #[test]
    fn mcp_limits() {
        let c = parse("").unwrap();
        assert_eq!((c.mcp_max_vcpu, c.mcp_max_memory_mib, c.mcp_max_output_kib), (4, 4096, 256));
        let c = parse("[mcp]\nmax_vcpu = 2\nmax_memory = \"1G\"\nmax_output_kib = 64").unwrap();
        assert_eq!((c.mcp_max_vcpu, c.mcp_max_memory_mib, c.mcp_max_output_kib), (2, 1024, 64));
        let v = c.view();
        let entry = |k: &str| v.entries.iter().find(|e| e.key == k).unwrap().clone();
        assert_eq!(entry("mcp.max_memory").value, serde_json::json!("1G"));
        assert_eq!(entry("mcp.max_vcpu").source, "file");
        for bad in [
            "[mcp]\nmax_vcpu = 0",
            "[mcp]\nmax_memory = \"1K\"",
            "[mcp]\nmax_output_kib = 0",
            "[mcp]\nnat = true",
        ] {
            let e = format!("{:#}", parse(bad).unwrap_err());
            assert!(e.contains("mcp") || e.contains("unknown field"), "{bad}: {e}");
        }
    }

    #[test]
    fn file_sync_entries() {
        let home = std::env::var("HOME").unwrap();
        let c = parse(&format!(
            "[[file_sync]]\nhost = \"~/.npmrc\"\nguest = \"/root/.npmrc\"\n[[file_sync]]\nhost = \"{home}/x\"\nguest = \"/etc/x\"\nmode = \"0644\"\n"
        ))
        .unwrap();
        assert_eq!(c.file_sync.len(), 2);
        assert_eq!(c.file_sync[0].mode, 0o600);
        assert_eq!(c.file_sync[1].mode, 0o644);
        assert!(c.file_sync[0].host.starts_with(&home));
        for bad in [
            "[[file_sync]]\nhost = \"/etc/shadow\"\nguest = \"/x\"",
            "[[file_sync]]\nhost = \"~/../../etc/shadow\"\nguest = \"/x\"",
            "[[file_sync]]\nhost = \"~/a\"\nguest = \"relative\"",
            "[[file_sync]]\nhost = \"~/a\"\nguest = \"/a/../b\"",
            "[[file_sync]]\nhost = \"~/a\"\nguest = \"/a\"\nmode = \"9\"",
            "[[file_sync]]\nhost = \"~/a\"\nguest = \"/a\"\nbogus = 1",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn rejects_unknown_and_bad_values() {
        for bad in [
            "bogus = 1",
            "[network]\nbridgee = \"x\"",
            "[vm_defaults]\nvcpu = 0",
            "[vm_defaults]\nmemory = \"12MB\"",
            "[network]\ncidr = \"8.8.8.0/24\"",
            "[network]\ncidr = \"10.0.0.0/8\"",
            "[network]\nbridge = \"a-very-long-bridge-name\"",
            "[network]\nbridge = \"docker0\"",
            "engine = \"vmware\"",
            "default_image = \"../etc\"",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(format!("{err:#}").contains("/x/config.toml"), "{bad}: {err:#}");
        }
        let err = parse("[network]\nbridge = \"br0\"").unwrap_err();
        assert!(format!("{err:#}").contains("bridge names start with \"banger\""), "{err:#}");
        assert_eq!(parse("[network]\nbridge = \"banger-dev\"").unwrap().bridge, "banger-dev");
    }
}
