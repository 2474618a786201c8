//! The QEMU engine: `qemu-system-x86_64 -M microvm` with virtio-mmio
//! devices like Firecracker's, a QMP socket for control, the serial console
//! to a file, and vsock through a vhost-device-vsock backend speaking
//! Firecracker's hybrid-vsock protocol.
//!
//! Under TCG (no usable KVM) the microvm machine has no timer to calibrate
//! the TSC against, so the kernel is told its frequency (`tsc_early_khz=`).
//! The machine has ACPI tables, as a Firecracker VM has: its DSDT describes
//! the virtio-mmio devices, so kernels made for Firecracker (whose x86
//! guests always get ACPI) boot here unchanged. A clean stop goes through
//! the guest agent, as on Firecracker.
//! With vhost-user vsock attached QEMU refuses migration, and QMP stop/cont
//! can wedge the backend (see docs), so this engine offers no pause or
//! snapshot.

use crate::process::{self, spawn_detached, tail, wait_for_path};
use crate::{Accel, Engine, EngineError, EngineKind, Handles, VmSpec};
use std::path::PathBuf;
use std::time::Duration;

/// Kernel arguments QEMU's microvm needs under TCG.
pub const TCG_CMDLINE: &str = "tsc_early_khz=2400000";

#[derive(Debug, Clone)]
pub struct Qemu {
    pub qemu_bin: PathBuf,
    pub vhost_vsock_bin: PathBuf,
    /// Set: each VM's processes go in a cgroup of their own
    /// (`banger-qemu/<vm id>`, see [`crate::cgroup`]) capped from its size.
    pub confine: Option<std::sync::Arc<dyn crate::cgroup::Confiner>>,
}

/// The cgroup under which each confined VM's QEMU gets `<vm id>`.
pub const QEMU_CGROUP: &str = "banger-qemu";

/// Memory QEMU may use beyond its guest's: under TCG the translation cache
/// grows up to 1 GiB; under KVM the device model needs far less.
fn memory_overhead_mib(accel: Accel) -> u64 {
    match accel {
        Accel::Tcg => 1024,
        Accel::Kvm => 256,
    }
}

impl Qemu {
    /// The full QEMU argument list for `spec` (without the binary).
    pub fn args(
        &self,
        spec: &VmSpec,
        vhost_sock: &std::path::Path,
        qmp_sock: &std::path::Path,
    ) -> Vec<String> {
        let mem = format!("{}M", spec.machine.memory_mib);
        let mut cmdline = spec.boot.cmdline.clone();
        if spec.accel == Accel::Tcg && !cmdline.contains("tsc_early_khz") {
            cmdline.push(' ');
            cmdline.push_str(TCG_CMDLINE);
        }
        let mut a: Vec<String> = vec![
            "-name".into(),
            format!("banger-{},debug-threads=on", spec.id),
            "-M".into(),
            // With ACPI, as under Firecracker: the DSDT announces the
            // virtio-mmio devices, so the same kernels boot on both engines.
            "microvm,acpi=on,memory-backend=mem".into(),
        ];
        match spec.accel {
            Accel::Kvm => a.extend(["-accel".into(), "kvm".into(), "-cpu".into(), "host".into()]),
            Accel::Tcg => a.extend(["-accel".into(), "tcg,thread=multi".into(), "-cpu".into(), "max".into()]),
        }
        a.extend([
            "-smp".into(),
            spec.machine.vcpu.to_string(),
            "-m".into(),
            mem.clone(),
            // vhost-user needs guest memory it can map: a shared memfd.
            "-object".into(),
            format!("memory-backend-memfd,id=mem,size={mem},share=on"),
            "-nodefaults".into(),
            "-no-user-config".into(),
            // QEMU's seccomp filter: no privilege changes, no new
            // processes, no obsolete system calls, no resource control —
            // a guest that takes over QEMU gets no more than it has.
            "-sandbox".into(),
            "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny".into(),
            "-nographic".into(),
            "-display".into(),
            "none".into(),
            // A guest reboot ends the VM, as it does under Firecracker.
            "-no-reboot".into(),
            "-chardev".into(),
            // Appending, so that the daemon can truncate a log grown too
            // large under QEMU's feet (see bangerd's `rotate_console`).
            format!("file,id=con,path={},append=on", spec.console_log().display()),
            "-serial".into(),
            "chardev:con".into(),
            "-kernel".into(),
            spec.boot.kernel.display().to_string(),
            "-append".into(),
            cmdline,
        ]);
        if let Some(i) = &spec.boot.initrd {
            a.extend(["-initrd".into(), i.display().to_string()]);
        }
        for d in &spec.drives {
            let mut drive = format!("id={},file={},format=raw,if=none", d.id, d.path.display());
            if d.read_only {
                drive.push_str(",readonly=on");
            } else {
                drive.push_str(",discard=unmap");
            }
            a.extend(["-drive".into(), drive, "-device".into(), format!("virtio-blk-device,drive={}", d.id)]);
        }
        for n in &spec.interfaces {
            a.extend([
                "-netdev".into(),
                format!("tap,id={},ifname={},script=no,downscript=no", n.id, n.tap),
                "-device".into(),
                format!("virtio-net-device,netdev={},mac={}", n.id, n.mac),
            ]);
        }
        a.extend([
            "-chardev".into(),
            format!("socket,id=vsock,path={}", vhost_sock.display()),
            "-device".into(),
            "vhost-user-vsock-device,chardev=vsock".into(),
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", qmp_sock.display()),
        ]);
        a
    }
}

impl Engine for Qemu {
    fn kind(&self) -> EngineKind {
        EngineKind::Qemu
    }

    async fn launch(&self, spec: &VmSpec) -> Result<Handles, EngineError> {
        let vhost_sock = spec.run_dir.join("vhost.sock");
        let qmp_sock = spec.run_dir.join("qmp.sock");
        let vsock_uds = spec.vsock_uds();
        for s in [&vhost_sock, &qmp_sock, &vsock_uds] {
            let _ = std::fs::remove_file(s);
        }
        // The backend serves the vhost-user socket QEMU connects to, and the
        // hybrid-vsock socket the host side uses.
        let backend_log = spec.vm_dir.join("vhost-vsock.log");
        let mut backend = tokio::process::Command::new(&self.vhost_vsock_bin);
        backend.arg("--vm").arg(format!(
            "guest-cid={},socket={},uds-path={}",
            spec.vsock_cid,
            vhost_sock.display(),
            vsock_uds.display()
        ));
        let (_backend_child, backend_ref) = spawn_detached(&mut backend, &backend_log, "vhost-device-vsock")
            .map_err(|e| {
                EngineError::Launch(format!("Cannot start {}: {e}", self.vhost_vsock_bin.display()))
            })?;
        if let Err(e) = wait_for_path(&vhost_sock, &backend_ref, Duration::from_secs(10)).await {
            let _ = process::kill(&backend_ref, nix::sys::signal::Signal::SIGKILL);
            return Err(EngineError::Launch(format!("{e}: {}", tail(&backend_log, 3))));
        }

        let qemu_log = spec.vm_dir.join("qemu.log");
        let mut qemu = tokio::process::Command::new(&self.qemu_bin);
        qemu.args(self.args(spec, &vhost_sock, &qmp_sock));
        let (_qemu_child, qemu_ref) = match spawn_detached(&mut qemu, &qemu_log, "qemu") {
            Ok(x) => x,
            Err(e) => {
                let _ = process::kill(&backend_ref, nix::sys::signal::Signal::SIGKILL);
                return Err(EngineError::Launch(format!("Cannot start {}: {e}", self.qemu_bin.display())));
            }
        };
        let handles = Handles {
            engine: EngineKind::Qemu,
            accel: spec.accel,
            vmm: qemu_ref.clone(),
            helpers: vec![backend_ref],
            control_socket: qmp_sock.clone(),
            vsock_uds,
            run_dir: spec.run_dir.clone(),
            tap: spec.interfaces.first().map(|n| n.tap.clone()),
            console_log: spec.console_log(),
            started_at_ms: crate::now_ms(),
            jail: None,
        };
        // QEMU creates the QMP socket once its devices are set up; before
        // that, a bad argument or a missing tap makes it exit.
        if let Err(e) = wait_for_path(&qmp_sock, &qemu_ref, Duration::from_secs(10)).await {
            self.kill(&handles);
            return Err(EngineError::Launch(format!("QEMU failed to start ({e}): {}", tail(&qemu_log, 4))));
        }
        let mut handles = handles;
        if let Some(c) = &self.confine {
            let procs = [handles.vmm.clone(), handles.helpers[0].clone()];
            let memory = (spec.machine.memory_mib + memory_overhead_mib(spec.accel)) << 20;
            let (c2, id, vcpu) = (c.clone(), spec.id.clone(), spec.machine.vcpu);
            let placed = tokio::task::spawn_blocking(move || c2.place(&id, &procs, vcpu, memory))
                .await
                .unwrap_or_else(|e| Err(format!("confine task: {e}")));
            if let Err(e) = placed {
                self.kill(&handles);
                let _ = c.remove(&spec.id);
                return Err(EngineError::Launch(format!("Cannot confine the VM's QEMU: {e}")));
            }
            handles.jail = Some(spec.id.clone());
        }
        Ok(handles)
    }

    fn release(&self, h: &Handles) -> Result<(), EngineError> {
        match (&h.jail, &self.confine) {
            (Some(id), Some(c)) => c.remove(id).map_err(EngineError::Launch),
            (Some(id), None) => Err(EngineError::Launch(format!(
                "VM {id}'s QEMU ran in a cgroup of its own, and jailer_enabled is off now: banger-qemu/{id} stays"
            ))),
            (None, _) => Ok(()),
        }
    }

    async fn request_stop(&self, _h: &Handles) -> Result<(), EngineError> {
        Err(EngineError::Unsupported(
            "a microvm without ACPI has no power button; stop it through the agent".into(),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::*;

    fn spec(accel: Accel) -> VmSpec {
        VmSpec {
            id: "abc123".into(),
            boot: BootSource { kernel: "/k/vmlinux".into(), initrd: None, cmdline: "console=ttyS0".into() },
            drives: vec![
                Drive { id: "root".into(), path: "/i/rootfs.ext4".into(), read_only: true },
                Drive { id: "disk".into(), path: "/v/disk.ext4".into(), read_only: false },
            ],
            interfaces: vec![NetworkInterface {
                id: "eth0".into(),
                tap: "bgabc".into(),
                mac: "02:00:00:00:00:01".into(),
            }],
            machine: MachineConfig { vcpu: 2, memory_mib: 512 },
            vsock_cid: 3,
            accel,
            run_dir: "/r".into(),
            vm_dir: "/v".into(),
        }
    }

    #[test]
    fn command_line() {
        let q = Qemu { qemu_bin: "qemu".into(), vhost_vsock_bin: "vhost".into(), confine: None };
        let a = q.args(&spec(Accel::Tcg), "/r/vhost.sock".as_ref(), "/r/qmp.sock".as_ref()).join(" ");
        assert!(a.contains("-name banger-abc123"), "{a}");
        assert!(a.contains("tcg,thread=multi"));
        assert!(a.contains("console=ttyS0 tsc_early_khz=2400000"));
        assert!(a.contains("memory-backend-memfd,id=mem,size=512M,share=on"));
        assert!(a.contains("file=/i/rootfs.ext4,format=raw,if=none,readonly=on"));
        assert!(a.contains("file=/v/disk.ext4,format=raw,if=none,discard=unmap"));
        assert!(a.contains("ifname=bgabc"));
        assert!(a.contains("vhost-user-vsock-device"));
        assert!(a.contains("-no-reboot"));
        assert!(a.contains("-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny"), "{a}");
        let k = q.args(&spec(Accel::Kvm), "/r/vhost.sock".as_ref(), "/r/qmp.sock".as_ref()).join(" ");
        assert!(k.contains("-accel kvm -cpu host"));
        assert!(!k.contains("tsc_early_khz"));
    }
}
