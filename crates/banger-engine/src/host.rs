//! What the host offers the engines, and which engine a new VM gets: KVM's
//! status, where each engine's binaries are, the engine selection with its
//! reason, and the acceleration an engine runs with. Read-only probes, used
//! at create, at boot and by `banger doctor`.

use crate::{Accel, EngineError, EngineKind};
use banger_paths::find_executable;
use serde::Deserialize;
use std::fmt;
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

/// How a QEMU guest's CPU is provided on this host.
pub fn accel(kind: EngineKind, kvm: &KvmStatus) -> Accel {
    match kind {
        EngineKind::Qemu if !kvm.usable => Accel::Tcg,
        _ => Accel::Kvm,
    }
}

/// The engine asked for, in config (`engine = …`) or by `--engine`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineChoice {
    /// Firecracker when KVM can run an ordinary guest and firecracker is
    /// installed; QEMU otherwise.
    Auto,
    Firecracker,
    Qemu,
}

impl EngineChoice {
    pub fn parse(s: &str) -> Option<EngineChoice> {
        match s {
            "auto" => Some(EngineChoice::Auto),
            "firecracker" => Some(EngineChoice::Firecracker),
            "qemu" => Some(EngineChoice::Qemu),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            EngineChoice::Auto => "auto",
            EngineChoice::Firecracker => "firecracker",
            EngineChoice::Qemu => "qemu",
        }
    }
}

/// Paths the user configured for the engines' binaries; each one not set
/// is looked up on PATH (vhost-device-vsock also in `~/.cargo/bin`, where
/// `cargo install` puts it; the jailer also beside firecracker).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binaries {
    pub firecracker: Option<PathBuf>,
    pub jailer: Option<PathBuf>,
    pub qemu: Option<PathBuf>,
    pub vhost_vsock: Option<PathBuf>,
}

impl Binaries {
    pub fn find_firecracker(&self) -> Option<PathBuf> {
        find_executable(self.firecracker.as_deref(), "firecracker", &[])
    }

    pub fn firecracker(&self) -> Result<PathBuf, EngineError> {
        self.find_firecracker().ok_or_else(|| EngineError::Missing {
            what: "firecracker".into(),
            hint: "install firecracker from its GitHub releases and put it on PATH, or set firecracker_bin"
                .into(),
        })
    }

    /// The jailer that goes with `firecracker`.
    pub fn find_jailer(&self, firecracker: &Path) -> Option<PathBuf> {
        let beside: Vec<PathBuf> = firecracker.parent().map(|d| vec![d.to_path_buf()]).unwrap_or_default();
        find_executable(self.jailer.as_deref(), "jailer", &beside)
    }

    pub fn find_qemu(&self) -> Option<PathBuf> {
        find_executable(self.qemu.as_deref(), "qemu-system-x86_64", &[])
    }

    pub fn qemu(&self) -> Result<PathBuf, EngineError> {
        self.find_qemu().ok_or_else(|| EngineError::Missing {
            what: "qemu-system-x86_64".into(),
            hint: "install it with `apt-get install qemu-system-x86`, or set qemu_bin".into(),
        })
    }

    pub fn find_vhost_vsock(&self) -> Option<PathBuf> {
        let cargo_bin: Vec<PathBuf> =
            std::env::var_os("HOME").map(|h| vec![PathBuf::from(h).join(".cargo/bin")]).unwrap_or_default();
        find_executable(self.vhost_vsock.as_deref(), "vhost-device-vsock", &cargo_bin)
    }

    pub fn vhost_vsock(&self) -> Result<PathBuf, EngineError> {
        self.find_vhost_vsock().ok_or_else(|| EngineError::Missing {
            what: "vhost-device-vsock (QEMU VMs need it for the agent channel)".into(),
            hint: "install it with `cargo install vhost-device-vsock`, or set vhost_vsock_bin".into(),
        })
    }
}

/// The engine a new VM gets, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub kind: EngineKind,
    pub reason: Reason,
}

/// Why [`select`] chose what it chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Asked for by name; `firecracker` is the binary when it was.
    Requested { firecracker: Option<PathBuf>, kvm: KvmStatus },
    /// `auto`, and firecracker can run here.
    AutoFirecracker { firecracker: PathBuf },
    /// `auto`, KVM is usable, but firecracker is not installed.
    AutoNoFirecracker,
    /// `auto`, and KVM cannot run an ordinary guest.
    AutoNoKvm { kvm: KvmStatus },
}

impl fmt::Display for Selection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let qemu_accel = |f: &mut fmt::Formatter<'_>, kvm: &KvmStatus| {
            if kvm.usable {
                f.write_str("qemu with KVM")
            } else {
                write!(f, "{}; qemu with TCG emulation", kvm.reason)
            }
        };
        match (&self.reason, self.kind) {
            (Reason::Requested { kvm, .. }, EngineKind::Qemu) => {
                f.write_str("requested; ")?;
                qemu_accel(f, kvm)
            }
            (Reason::Requested { firecracker, kvm }, EngineKind::Firecracker) => {
                let bin = firecracker.as_deref().unwrap_or(Path::new("firecracker")).display();
                if kvm.usable {
                    write!(f, "requested; using {bin}")
                } else {
                    write!(f, "requested; using {bin} although {}", kvm.reason)
                }
            }
            (Reason::AutoFirecracker { firecracker }, _) => {
                write!(f, "auto: KVM runs ordinary guests and firecracker is at {}", firecracker.display())
            }
            (Reason::AutoNoFirecracker, _) => {
                f.write_str("auto: firecracker is not installed; qemu with KVM")
            }
            (Reason::AutoNoKvm { kvm }, _) => {
                f.write_str("auto: ")?;
                qemu_accel(f, kvm)
            }
        }
    }
}

/// Chooses the engine for `choice` on a host with `kvm`, where firecracker
/// is at `firecracker` (if installed). Firecracker asked for by name but
/// not installed is the one refusal; asked for where KVM cannot run it, it
/// is still chosen (the reason says so) and its boot will say why it fails.
pub fn select(
    choice: EngineChoice,
    kvm: KvmStatus,
    firecracker: Option<PathBuf>,
) -> Result<Selection, EngineError> {
    let (kind, reason) = match choice {
        EngineChoice::Qemu => (EngineKind::Qemu, Reason::Requested { firecracker: None, kvm }),
        EngineChoice::Firecracker => match firecracker {
            Some(p) => (EngineKind::Firecracker, Reason::Requested { firecracker: Some(p), kvm }),
            None => return Err(EngineError::Missing {
                what: "firecracker (requested)".into(),
                hint:
                    "install firecracker from its GitHub releases and put it on PATH, or set firecracker_bin"
                        .into(),
            }),
        },
        EngineChoice::Auto => match (kvm.usable, firecracker) {
            (true, Some(p)) => (EngineKind::Firecracker, Reason::AutoFirecracker { firecracker: p }),
            (true, None) => (EngineKind::Qemu, Reason::AutoNoFirecracker),
            (false, _) => (EngineKind::Qemu, Reason::AutoNoKvm { kvm }),
        },
    };
    Ok(Selection { kind, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kvm(usable: bool) -> KvmStatus {
        KvmStatus { usable, reason: if usable { "ok".into() } else { "no VMX/SVM".into() } }
    }

    #[test]
    fn auto_takes_firecracker_only_where_kvm_runs_it() {
        let fc = Some(PathBuf::from("/usr/local/bin/firecracker"));
        let s = select(EngineChoice::Auto, kvm(true), fc.clone()).unwrap();
        assert_eq!(s.kind, EngineKind::Firecracker);
        assert_eq!(
            s.to_string(),
            "auto: KVM runs ordinary guests and firecracker is at /usr/local/bin/firecracker"
        );
        let s = select(EngineChoice::Auto, kvm(false), fc).unwrap();
        assert_eq!(
            (s.kind, s.to_string()),
            (EngineKind::Qemu, "auto: no VMX/SVM; qemu with TCG emulation".into())
        );
        let s = select(EngineChoice::Auto, kvm(true), None).unwrap();
        assert_eq!(
            (s.kind, s.to_string()),
            (EngineKind::Qemu, "auto: firecracker is not installed; qemu with KVM".into())
        );
    }

    #[test]
    fn a_requested_engine_is_taken_and_a_missing_firecracker_refused() {
        let s = select(EngineChoice::Qemu, kvm(true), Some("/fc".into())).unwrap();
        assert_eq!((s.kind, s.to_string()), (EngineKind::Qemu, "requested; qemu with KVM".into()));
        let s = select(EngineChoice::Firecracker, kvm(false), Some("/fc".into())).unwrap();
        assert_eq!(
            (s.kind, s.to_string()),
            (EngineKind::Firecracker, "requested; using /fc although no VMX/SVM".into())
        );
        let e = select(EngineChoice::Firecracker, kvm(true), None).unwrap_err();
        assert!(matches!(&e, EngineError::Missing { hint, .. } if hint.contains("firecracker_bin")), "{e}");
    }

    #[test]
    fn qemu_emulates_only_without_kvm() {
        assert_eq!(accel(EngineKind::Qemu, &kvm(false)), Accel::Tcg);
        assert_eq!(accel(EngineKind::Qemu, &kvm(true)), Accel::Kvm);
        assert_eq!(accel(EngineKind::Firecracker, &kvm(false)), Accel::Kvm);
    }
}
