//! What the host can do: KVM, engines, tools. Read-only probes used for the
//! engine choice, `vm show` and `banger doctor`.

use std::path::{Path, PathBuf};

/// Whether KVM can run an ordinary guest: `/dev/kvm` opens read-write and
/// the CPU offers hardware virtualisation (VMX or SVM). A paravirtual-only
/// KVM such as kvm_pvm exposes `/dev/kvm` without either flag, and ordinary
/// guest kernels die in its instruction emulator, so it does not count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmStatus {
    pub usable: bool,
    pub reason: String,
}

pub fn kvm_status() -> KvmStatus {
    let dev = std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm");
    if let Err(e) = dev {
        return KvmStatus { usable: false, reason: format!("/dev/kvm cannot be opened ({e})") };
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let flags: Vec<&str> = cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let hw = flags.iter().any(|f| *f == "vmx" || *f == "svm");
    if !hw {
        let pvm = Path::new("/sys/module/kvm_pvm").exists();
        let why = if pvm {
            "/dev/kvm is paravirtual (kvm_pvm) and the CPU has no VMX/SVM; ordinary guests cannot run on it"
        } else {
            "the CPU offers no VMX/SVM, so KVM cannot run ordinary guests"
        };
        return KvmStatus { usable: false, reason: why.into() };
    }
    KvmStatus { usable: true, reason: "/dev/kvm is usable and the CPU has hardware virtualisation".into() }
}

/// Finds an executable: the configured path if given, else `name` on PATH,
/// else in the extra directories.
pub fn find_binary(configured: Option<&Path>, name: &str, extra: &[PathBuf]) -> Option<PathBuf> {
    if let Some(p) = configured {
        return is_executable(p).then(|| p.to_path_buf());
    }
    let path_dirs: Vec<PathBuf> =
        std::env::var_os("PATH").map(|p| std::env::split_paths(&p).collect()).unwrap_or_default();
    path_dirs.iter().chain(extra).map(|d| d.join(name)).find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0).unwrap_or(false)
}

/// `~/.cargo/bin`, where `cargo install vhost-device-vsock` puts its binary.
pub fn cargo_bin_dir() -> Vec<PathBuf> {
    std::env::var_os("HOME").map(|h| vec![PathBuf::from(h).join(".cargo/bin")]).unwrap_or_default()
}
