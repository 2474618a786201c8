//! One method per API operation (the daemon's `server::routes`, and
//! `api/openapi.json`). Long operations take an `on_event` callback that
//! sees their progress; the rest answer once.

use crate::{seg, AgentStream, Client, Result};
use banger_api::*;
use bytes::Bytes;
use serde::Serialize;

/// The body of an operation that takes none.
#[derive(Serialize)]
pub(crate) struct NoBody {}

impl Client {
    // --- the daemon ----------------------------------------------------

    /// `GET /v1/version`.
    pub async fn version(&self) -> Result<DaemonInfo> {
        self.get("/v1/version").await
    }

    /// `GET /v1/config`: the effective configuration and where each value
    /// came from.
    pub async fn config(&self) -> Result<ConfigView> {
        self.get("/v1/config").await
    }

    /// `GET /v1/doctor`: what this host can and cannot do.
    pub async fn doctor(&self) -> Result<Vec<DoctorCheck>> {
        self.get("/v1/doctor").await
    }

    /// `GET /v1/ssh`: banger's SSH key pair and known_hosts, made on first
    /// use.
    pub async fn ssh(&self) -> Result<SshInfo> {
        self.get("/v1/ssh").await
    }

    /// `POST /v1/ssh/config`: writes the `Host *.vm` ssh_config whose
    /// ProxyCommand runs `banger` (an absolute path).
    pub async fn write_ssh_config(&self, banger: &str) -> Result<SshConfigWritten> {
        self.post("/v1/ssh/config", &SshConfigRequest { banger: banger.into() }).await
    }

    // --- kernels -------------------------------------------------------

    pub async fn kernels(&self) -> Result<Vec<Kernel>> {
        self.get("/v1/kernels").await
    }

    pub async fn kernel(&self, name: &str) -> Result<Kernel> {
        self.get(&format!("/v1/kernels/{}", seg(name))).await
    }

    pub async fn import_kernel(&self, req: &ImportKernelRequest) -> Result<Kernel> {
        self.post("/v1/kernels", req).await
    }

    pub async fn build_kernel(
        &self,
        req: &BuildKernelRequest,
        on_event: impl FnMut(&Event),
    ) -> Result<Kernel> {
        self.post_stream("/v1/kernels/build", req, on_event).await
    }

    pub async fn pull_kernel(&self, req: &PullKernelRequest, on_event: impl FnMut(&Event)) -> Result<Kernel> {
        self.post_stream("/v1/kernels/pull", req, on_event).await
    }

    pub async fn bundle_kernel(&self, name: &str, req: &BundleRequest) -> Result<Bundle> {
        self.post(&format!("/v1/kernels/{}/bundle", seg(name)), req).await
    }

    pub async fn delete_kernel(&self, name: &str) -> Result<Kernel> {
        self.delete(&format!("/v1/kernels/{}", seg(name))).await
    }

    // --- images --------------------------------------------------------

    pub async fn images(&self) -> Result<Vec<Image>> {
        self.get("/v1/images").await
    }

    pub async fn image(&self, reference: &str) -> Result<Image> {
        self.get(&format!("/v1/images/{}", seg(reference))).await
    }

    pub async fn register_image(&self, req: &RegisterImageRequest) -> Result<Image> {
        self.post("/v1/images", req).await
    }

    pub async fn build_image(&self, req: &BuildImageRequest, on_event: impl FnMut(&Event)) -> Result<Image> {
        self.post_stream("/v1/images/build", req, on_event).await
    }

    pub async fn pull_image(&self, req: &PullImageRequest, on_event: impl FnMut(&Event)) -> Result<Image> {
        self.post_stream("/v1/images/pull", req, on_event).await
    }

    pub async fn import_image(
        &self,
        req: &ImportImageRequest,
        on_event: impl FnMut(&Event),
    ) -> Result<Image> {
        self.post_stream("/v1/images/import", req, on_event).await
    }

    pub async fn bundle_image(&self, reference: &str, req: &BundleRequest) -> Result<Bundle> {
        self.post(&format!("/v1/images/{}/bundle", seg(reference)), req).await
    }

    pub async fn prune_image_cache(&self, req: &PruneCacheRequest) -> Result<PruneCacheResult> {
        self.post("/v1/images/cache/prune", req).await
    }

    /// `GET /v1/catalog`: the images the configured catalogs offer.
    pub async fn catalog(&self) -> Result<CatalogView> {
        self.get("/v1/catalog").await
    }

    pub async fn delete_image(&self, reference: &str) -> Result<Image> {
        self.delete(&format!("/v1/images/{}", seg(reference))).await
    }

    // --- VMs -----------------------------------------------------------

    pub async fn vms(&self) -> Result<Vec<Vm>> {
        self.get("/v1/vms").await
    }

    /// One VM by name, id or unique id prefix.
    pub async fn vm(&self, reference: &str) -> Result<Vm> {
        self.get(&format!("/v1/vms/{}", seg(reference))).await
    }

    /// Creates a VM and, unless the request says not to, boots it until its
    /// agent answers.
    pub async fn create_vm(&self, req: &CreateVmRequest, on_event: impl FnMut(&Event)) -> Result<Vm> {
        self.post_stream("/v1/vms", req, on_event).await
    }

    pub async fn start_vm(&self, reference: &str, on_event: impl FnMut(&Event)) -> Result<Vm> {
        self.post_stream(&format!("/v1/vms/{}/start", seg(reference)), &NoBody {}, on_event).await
    }

    pub async fn stop_vm(&self, reference: &str, req: &StopVmRequest) -> Result<Vm> {
        self.post(&format!("/v1/vms/{}/stop", seg(reference)), req).await
    }

    pub async fn restart_vm(
        &self,
        reference: &str,
        req: &StopVmRequest,
        on_event: impl FnMut(&Event),
    ) -> Result<Vm> {
        self.post_stream(&format!("/v1/vms/{}/restart", seg(reference)), req, on_event).await
    }

    pub async fn kill_vm(&self, reference: &str) -> Result<Vm> {
        self.post(&format!("/v1/vms/{}/kill", seg(reference)), &NoBody {}).await
    }

    pub async fn pause_vm(&self, reference: &str) -> Result<Vm> {
        self.post(&format!("/v1/vms/{}/pause", seg(reference)), &NoBody {}).await
    }

    pub async fn resume_vm(&self, reference: &str) -> Result<Vm> {
        self.post(&format!("/v1/vms/{}/resume", seg(reference)), &NoBody {}).await
    }

    pub async fn delete_vm(&self, reference: &str) -> Result<Vm> {
        self.delete(&format!("/v1/vms/{}", seg(reference))).await
    }

    /// Changes a VM's settings (resources, forwards, NAT).
    pub async fn set_vm(&self, reference: &str, req: &SetVmRequest) -> Result<Vm> {
        self.post(&format!("/v1/vms/{}/set", seg(reference)), req).await
    }

    pub async fn vm_stats(&self, reference: &str) -> Result<VmStats> {
        self.get(&format!("/v1/vms/{}/stats", seg(reference))).await
    }

    /// Copies the VM's serial console into `sink`; with `follow`, new
    /// output too, until the VM stops or the caller drops the future.
    pub async fn vm_logs(
        &self,
        reference: &str,
        follow: bool,
        sink: &mut (impl std::io::Write + ?Sized),
    ) -> Result<()> {
        self.get_streamed(&format!("/v1/vms/{}/logs?follow={follow}", seg(reference)), sink).await
    }

    /// Forgets the SSH host key banger pinned for the VM.
    pub async fn forget_host_key(&self, reference: &str) -> Result<HostKeyForgotten> {
        self.post(&format!("/v1/vms/{}/forget-host-key", seg(reference)), &NoBody {}).await
    }

    /// Records what `vm run ./repo` copied in, for `workspace export`.
    pub async fn set_workspace(&self, reference: &str, req: &SetWorkspaceRequest) -> Result<Vm> {
        self.put(&format!("/v1/vms/{}/workspace", seg(reference)), req).await
    }

    /// Writes a tar stream (chunks on `rx`) into a stopped VM's disk.
    pub async fn seed_vm(&self, reference: &str, rx: tokio::sync::mpsc::Receiver<Bytes>) -> Result<Vm> {
        self.put_streamed(&format!("/v1/vms/{}/seed", seg(reference)), "application/x-tar", rx).await
    }

    /// A raw stream to a running VM's guest agent, speaking
    /// `banger_agent_proto`.
    pub async fn agent(&self, reference: &str) -> Result<AgentStream> {
        self.upgrade(&format!("/v1/vms/{}/agent", seg(reference)), "banger-agent").await
    }
}
