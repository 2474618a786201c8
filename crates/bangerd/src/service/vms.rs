//! VMs as records: create, find, list, show, delete.
//!
//! Create runs in three phases, as the seed test pins down:
//! 1. validate the request and resolve the image — an unknown image fails
//!    here, before anything is written;
//! 2. under the short reservation lock: settle the name, allocate the first
//!    free guest IP, create `vms/<id>/`, insert the row in state `stopped`;
//! 3. unless `no_start`, start the VM under its per-VM lock
//!    (see [`super::lifecycle`]).

use super::{Daemon, Progress};
use crate::error::{join_errors, store_err, Result};
use crate::util::{new_id, now_ms, rfc3339};
use banger_api::{validate, ApiError, CreateVmRequest, PortForward, Vm, VmState};
use banger_store::{NewVm, StoreError, VmRecord};
use std::net::Ipv4Addr;
use std::sync::Arc;

impl Daemon {
    /// Converts a record to its API form, adding live runtime facts.
    pub fn vm_to_api(&self, r: &VmRecord) -> Vm {
        Vm {
            id: r.id.clone(),
            name: r.name.clone(),
            state: r.state,
            image: r.image_name.clone(),
            image_id: r.image_id.clone(),
            kernel: r.kernel.clone(),
            vcpu: r.vcpu,
            memory_mib: r.memory_mib,
            disk_size_mib: r.disk_size_mib,
            guest_ip: r.guest_ip.to_string(),
            vm_dir: r.vm_dir.clone(),
            created_at: rfc3339(r.created_at_ms),
            last_error: r.last_error.clone(),
            engine: r.engine.as_str().into(),
            engine_reason: r.engine_reason.clone(),
            nat: r.nat,
            runtime: self.runtime_view(&r.id),
            workspace: r.workspace.clone(),
            forwards: r.forwards.clone(),
            exec_defaults: self.exec_defaults(&r.image_id),
        }
    }

    /// The image config's ENV/WORKDIR/USER (OCI images), if any.
    fn exec_defaults(&self, image_id: &str) -> Option<banger_api::ExecDefaults> {
        let img = self.store.get_image_by_id(image_id).ok()??;
        let cfg = img.manifest.as_ref()?.get("config")?;
        let d: banger_api::ExecDefaults = serde_json::from_value(cfg.clone()).ok()?;
        (d != banger_api::ExecDefaults::default()).then_some(d)
    }

    pub fn list_vms(&self) -> Result<Vec<Vm>> {
        Ok(self.store.list_vms().map_err(store_err)?.iter().map(|r| self.vm_to_api(r)).collect())
    }

    /// Resolves a VM reference: exact id, then exact name, then a unique
    /// prefix of an id or a name.
    pub fn find_vm(&self, reference: &str) -> Result<VmRecord> {
        if reference.is_empty() {
            return Err(ApiError::invalid("VM reference is empty"));
        }
        if let Some(v) = self.store.get_vm(reference).map_err(store_err)? {
            return Ok(v);
        }
        let all = self.store.list_vms().map_err(store_err)?;
        if let Some(v) = all.iter().find(|v| v.name == reference) {
            return Ok(v.clone());
        }
        let hits: Vec<&VmRecord> =
            all.iter().filter(|v| v.id.starts_with(reference) || v.name.starts_with(reference)).collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(ApiError::not_found(format!("VM {reference:?} not found"))
                .with_hint("list VMs with `banger vm list`")),
            many => Err(ApiError::invalid(format!(
                "VM reference {reference:?} is ambiguous: it matches {}",
                many.iter().map(|v| v.name.as_str()).collect::<Vec<_>>().join(", ")
            ))
            .with_hint("use more characters, the full name, or the id")),
        }
    }

    pub fn show_vm(&self, reference: &str) -> Result<Vm> {
        Ok(self.vm_to_api(&self.find_vm(reference)?))
    }

    /// Creates a VM; see the module docs for the three phases.
    pub async fn create_vm(self: &Arc<Self>, req: CreateVmRequest, progress: &Progress) -> Result<Vm> {
        // Phase 1: validate and resolve. Nothing is written before this ends.
        if let Some(n) = &req.name {
            validate::vm_name(n)?;
        }
        let vcpu = req.vcpu.unwrap_or(self.config.vcpu);
        validate::vcpu(vcpu)?;
        let memory_mib = req.memory_mib.unwrap_or(self.config.memory_mib);
        validate::memory_mib(memory_mib)?;
        let disk_size_mib = req.disk_size_mib.unwrap_or(self.config.disk_size_mib);
        validate::disk_size_mib(disk_size_mib)?;
        validate_forwards(&req.forwards)?;
        self.check_forward_ports(&req.forwards)?;
        let selection = self.choose_engine(req.engine.as_deref())?;
        let image_ref = req.image.clone().unwrap_or_else(|| self.config.default_image.clone());
        progress.phase("resolve", format!("resolving image {image_ref}"));
        if image_ref == self.config.default_image {
            // A fresh host: the default appears on its own (pulled or built).
            self.ensure_default_image(progress).await?;
        }
        let image = self.image_record(&image_ref)?;
        self.kernel_record(&image.kernel)?;

        // Phase 2: reserve name + IP + dir and persist, under the short lock.
        let vm = {
            let _reserve = self.reserve_lock.lock().await;
            // Again under the lock: two creates at once must not both take
            // one host port (the check above only fails early).
            self.check_forward_ports(&req.forwards)?;
            let name = match &req.name {
                Some(n) => n.clone(),
                None => {
                    let taken: Vec<String> =
                        self.store.list_vms().map_err(store_err)?.into_iter().map(|v| v.name).collect();
                    super::names::generate(&|n| taken.iter().any(|t| t == n))
                }
            };
            let ip = self.allocate_ip()?;
            let id = loop {
                let id = new_id();
                if self.store.get_vm(&id).map_err(store_err)?.is_none() {
                    break id;
                }
            };
            let vm_dir = self.paths.vm_dir(&id);
            std::fs::create_dir_all(&vm_dir)
                .map_err(|e| ApiError::internal(format!("Cannot create VM dir {}: {e}", vm_dir.display())))?;
            let row = NewVm {
                id: id.clone(),
                name: name.clone(),
                image_id: image.id.clone(),
                vcpu,
                memory_mib,
                disk_size_mib,
                guest_ip: ip,
                vm_dir: vm_dir.display().to_string(),
                state: VmState::Stopped,
                engine: selection.kind,
                engine_reason: selection.to_string(),
                nat: req.nat,
                forwards: req.forwards.clone(),
                created_at_ms: now_ms(),
            };
            if let Err(e) = self.store.insert_vm(&row) {
                let _ = std::fs::remove_dir_all(&vm_dir);
                return Err(match e {
                    StoreError::Duplicate { .. } => {
                        ApiError::conflict(format!("A VM named {name:?} already exists")).with_hint(format!(
                            "pick another name, or delete it first with `banger vm delete {name}`"
                        ))
                    }
                    e => store_err(e),
                });
            }
            tracing::info!(vm = %name, id = %id, ip = %ip, "VM created");
            // Lets a client that is interrupted during the boot delete it.
            progress.phase("reserved", format!("{id} {name}"));
            self.store.get_vm(&id).map_err(store_err)?.ok_or_else(|| ApiError::internal("VM row vanished"))?
        };

        // Phase 3: start unless asked not to.
        if req.no_start {
            return Ok(self.vm_to_api(&vm));
        }
        self.start_vm(&vm.id, progress).await
    }

    /// The first address of the CIDR not used by the bridge or any VM.
    fn allocate_ip(&self) -> Result<Ipv4Addr> {
        let used = self.store.used_ips().map_err(store_err)?;
        let gateway = self.config.gateway();
        self.config.cidr.hosts().find(|ip| *ip != gateway && !used.contains(ip)).ok_or_else(|| {
            ApiError::conflict(format!("No free guest IP left in {}", self.config.cidr))
                .with_hint("delete unused VMs (`banger vm prune`) or configure a larger network.cidr")
        })
    }

    /// Deletes a VM: stops it if needed, runs every runtime cleanup step
    /// (joining their errors), then marks it `deleting` and removes its
    /// dirs and its row. A daemon killed after the mark finishes the
    /// delete when it restarts (`reconcile`), so no row outlives its dir.
    pub async fn delete_vm(self: &Arc<Self>, reference: &str) -> Result<Vm> {
        let vm = self.find_vm(reference)?;
        self.cancel_boot(&vm);
        let _lock = self.vm_locks.lock(&vm.id).await;
        // Re-read under the lock: another operation may have changed it.
        let vm = self.store.get_vm(&vm.id).map_err(store_err)?.ok_or_else(|| {
            ApiError::not_found(format!("VM {reference:?} not found"))
                .with_hint("list VMs with `banger vm list`")
        })?;
        let before = self.vm_to_api(&vm);
        let mut errors = Vec::new();
        if let Err(e) = self.teardown_for_delete(&vm).await {
            errors.push(e);
        }
        if errors.is_empty() {
            // Persisted before the first file goes.
            self.store.set_vm_state(&vm.id, VmState::Deleting, None, now_ms()).map_err(store_err)?;
            errors.extend(self.remove_vm_dirs(&vm.id));
        }
        if let Some(msg) = join_errors(errors) {
            // Keep the row so the user can see what is left and retry.
            let _ = self.store.set_vm_state(&vm.id, VmState::Error, Some(&msg), now_ms());
            return Err(ApiError::internal(format!(
                "Deleting VM {:?} left something behind: {msg}",
                vm.name
            ))
            .with_hint(format!("fix the cause and run `banger vm delete {}` again", vm.name)));
        }
        self.store.delete_vm(&vm.id).map_err(store_err)?;
        self.forget_host_key(&vm.name);
        tracing::info!(vm = %vm.name, id = %vm.id, "VM deleted");
        Ok(before)
    }

    /// Removes a VM's state and runtime dirs; returns what could not go.
    pub(crate) fn remove_vm_dirs(&self, id: &str) -> Vec<String> {
        let mut errors = Vec::new();
        for dir in [self.paths.vm_dir(id), self.paths.vm_run_dir(id)] {
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => errors.push(format!("cannot remove {}: {e}", dir.display())),
            }
        }
        errors
    }
}

impl Daemon {
    /// Refuses host ports another VM forwards, or that something on the
    /// host already listens on — before anything is written.
    fn check_forward_ports(&self, forwards: &[PortForward]) -> Result<()> {
        let taken: Vec<(String, PortForward)> = self
            .store
            .list_vms()
            .map_err(store_err)?
            .into_iter()
            .flat_map(|v| {
                let name = v.name;
                v.forwards.into_iter().map(move |f| (name.clone(), f))
            })
            .collect();
        for (i, f) in forwards.iter().enumerate() {
            if forwards[..i].iter().any(|o| o.host_port == f.host_port) {
                return Err(ApiError::invalid(format!("Host port {} is forwarded twice", f.host_port)));
            }
            if let Some((vm, _)) = taken.iter().find(|(_, o)| o.host_port == f.host_port) {
                return Err(ApiError::conflict(format!(
                    "Host port {} is already forwarded to VM {vm:?}",
                    f.host_port
                ))
                .with_hint("pick another host port"));
            }
            if let Err(e) = std::net::TcpListener::bind((f.host_addr.as_str(), f.host_port)) {
                return Err(ApiError::conflict(format!(
                    "Cannot use host port {}:{}: {e}",
                    f.host_addr, f.host_port
                ))
                .with_hint("something on the host already uses it; pick another host port"));
            }
        }
        Ok(())
    }
}

impl Daemon {
    /// Records the workspace a client copied into a VM.
    pub async fn set_workspace(&self, reference: &str, ws: SetWorkspace) -> Result<Vm> {
        let vm = self.find_vm(reference)?;
        let _lock = self.vm_locks.lock(&vm.id).await;
        let guest_ok = ws.guest_path.starts_with('/') && !ws.guest_path.split('/').any(|c| c == "..");
        if !guest_ok {
            return Err(ApiError::invalid(format!("Workspace path {:?} must be absolute", ws.guest_path)));
        }
        if !ws.host_path.starts_with('/') {
            return Err(ApiError::invalid(format!("Host path {:?} must be absolute", ws.host_path)));
        }
        if ws.head.len() < 7 || !ws.head.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(ApiError::invalid(format!("HEAD {:?} is not a commit id", ws.head)));
        }
        let record = banger_api::Workspace {
            guest_path: ws.guest_path,
            host_path: ws.host_path,
            head: ws.head,
            branch: ws.branch,
            prepared_at: rfc3339(now_ms()),
        };
        self.store.set_vm_workspace(&vm.id, Some(&record), now_ms()).map_err(store_err)?;
        self.show_vm(&vm.id)
    }
}

impl Daemon {
    /// Builds a never-booted VM's disk from a tar stream of files to place
    /// in the guest (paths relative to `/`), on the host: the files become
    /// the overlay's upper layer, so they are in the guest from its first
    /// boot without being copied through it. `vm run PATH` seeds the
    /// workspace this way.
    pub async fn seed_vm_disk(
        self: &Arc<Self>,
        reference: &str,
        tar: impl std::io::Read + Send + 'static,
    ) -> Result<Vm> {
        let vm = self.find_vm(reference)?;
        let _lock = self.vm_locks.lock(&vm.id).await;
        let vm = self
            .store
            .get_vm(&vm.id)
            .map_err(store_err)?
            .ok_or_else(|| ApiError::not_found("VM vanished"))?;
        let disk = std::path::Path::new(&vm.vm_dir).join("disk.ext4");
        if self.runtime(&vm.id).is_some() || disk.exists() {
            return Err(ApiError::conflict(format!(
                "VM {:?} has booted before; only a new VM's disk can be seeded",
                vm.name
            ))
            .with_hint(format!(
                "copy files into it with `banger vm workspace prepare {}` or `banger vm cp`",
                vm.name
            )));
        }
        let staging = std::path::Path::new(&vm.vm_dir).join(".seed");
        let size = vm.disk_size_mib;
        let (st, d) = (staging.clone(), disk.clone());
        let owner = nix::unistd::geteuid().is_root().then_some((0, 0));
        let result = tokio::task::spawn_blocking(move || -> anyhow::Result<(u64, u128, u128)> {
            let _ = std::fs::remove_dir_all(&st);
            std::fs::create_dir_all(st.join("work"))?;
            let t = std::time::Instant::now();
            let done = banger_agent_proto::tarsafe::unpack(&st.join("upper"), tar, owner, None)
                .map_err(anyhow::Error::msg)?;
            // The disk's root and the overlay's dirs: the guest's `/` takes
            // the upper dir's mode, which must not be the daemon's umask.
            for dir in [st.clone(), st.join("work"), st.join("upper")] {
                std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
            }
            let unpacked = t.elapsed().as_millis();
            banger_image::ext4::mkfs_from_dir(&d, Some(&st), size, "banger-disk")?;
            Ok((done.bytes, unpacked, t.elapsed().as_millis() - unpacked))
        })
        .await
        .map_err(|e| ApiError::internal(format!("seed task: {e}")))?;
        let _ = std::fs::remove_dir_all(&staging);
        match result {
            Ok((bytes, unpack_ms, mkfs_ms)) => {
                tracing::info!(vm = %vm.name, bytes, unpack_ms, mkfs_ms, "disk seeded");
                self.show_vm(&vm.id)
            }
            Err(e) => {
                let _ = std::fs::remove_file(&disk);
                Err(ApiError::invalid(format!("Cannot seed the disk of VM {:?}: {e:#}", vm.name)))
            }
        }
    }
}

pub use banger_api::SetWorkspaceRequest as SetWorkspace;

fn validate_forwards(forwards: &[PortForward]) -> Result<()> {
    for f in forwards {
        if f.host_port == 0 || f.guest_port == 0 {
            return Err(ApiError::invalid(format!(
                "Port forward {}:{} uses port 0",
                f.host_port, f.guest_port
            )));
        }
        if f.host_addr.parse::<std::net::IpAddr>().is_err() {
            return Err(ApiError::invalid(format!(
                "Port forward address {:?} is not an IP address",
                f.host_addr
            )));
        }
    }
    Ok(())
}
