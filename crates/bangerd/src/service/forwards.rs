//! Port forwards the daemon keeps for a VM's life (`vm create -p`): host
//! listeners opened when the VM is running, each connection spliced to the
//! guest port through the agent's `connect`. They are recorded in the VM's
//! row, re-opened after a daemon restart, and closed when the VM stops.

use super::lifecycle::Runtime;
use super::Daemon;
use crate::error::Result;
use banger_agent_proto::{read_frame, write_json, ConnectRequest, Kind, Op, Request, Response};
use banger_api::ApiError;
use banger_store::VmRecord;
use std::sync::Arc;

impl Daemon {
    /// Opens the VM's recorded forwards. A port that cannot be bound fails
    /// the whole set (the listeners already opened are closed).
    pub(crate) async fn open_forwards(self: &Arc<Self>, vm: &VmRecord, rt: &Runtime) -> Result<()> {
        let mut listeners = Vec::new();
        for f in &vm.forwards {
            let l =
                tokio::net::TcpListener::bind((f.host_addr.as_str(), f.host_port)).await.map_err(|e| {
                    ApiError::conflict(format!(
                        "VM {:?}: cannot forward {}:{} to guest port {}: {e}",
                        vm.name, f.host_addr, f.host_port, f.guest_port
                    ))
                    .with_hint("free the host port, or delete and re-create the VM with another -p")
                })?;
            listeners.push((l, f.clone()));
        }
        let mut tasks = rt.forwards.lock().unwrap_or_else(|e| e.into_inner());
        for (l, f) in listeners {
            let d = self.clone();
            let id = vm.id.clone();
            tasks.push(tokio::spawn(async move {
                while let Ok((conn, _)) = l.accept().await {
                    let d = d.clone();
                    let id = id.clone();
                    tokio::spawn(async move {
                        if let Err(e) = d.splice_to_guest(&id, f.guest_port, conn).await {
                            tracing::debug!(vm = %id, port = f.guest_port, "forwarded connection failed: {}", e.message);
                        }
                    });
                }
            }));
            tracing::info!(vm = %vm.name, "forwarding {}:{} to guest port {}", f.host_addr, f.host_port, f.guest_port);
        }
        Ok(())
    }

    async fn splice_to_guest(&self, vm_id: &str, port: u16, mut conn: tokio::net::TcpStream) -> Result<()> {
        let stream = self.agent_stream(vm_id).await?;
        let (mut rd, mut wr) = tokio::io::split(stream);
        let io = |e: std::io::Error| ApiError::unavailable(format!("agent stream: {e}"));
        write_json(&mut wr, Kind::Request, &Request::new(Op::Connect(ConnectRequest { port })))
            .await
            .map_err(io)?;
        let f =
            read_frame(&mut rd).await.map_err(io)?.ok_or_else(|| ApiError::unavailable("agent closed"))?;
        if let Response::Error { message } = f.json::<Response>().map_err(io)? {
            return Err(ApiError::unavailable(message));
        }
        let mut guest = rd.unsplit(wr);
        let _ = conn.set_nodelay(true);
        let _ = tokio::io::copy_bidirectional(&mut conn, &mut guest).await;
        Ok(())
    }
}

/// Closes a runtime's forward listeners.
pub(crate) fn close_forwards(rt: &Runtime) {
    for t in rt.forwards.lock().unwrap_or_else(|e| e.into_inner()).drain(..) {
        t.abort();
    }
}
