//! A daemon started in-process on throwaway XDG dirs, plus a raw HTTP client
//! for its socket.

use bangerd::config::Config;
use bangerd::paths::Paths;
use bangerd::service::Daemon;
use bangerd::Server;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use std::sync::Arc;

pub struct TestDaemon {
    pub daemon: Arc<Daemon>,
    pub dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// A 64-byte ELF header with no program headers: "static" as far as the
/// image code can tell, which is all these tests need of an agent binary.
pub fn fake_agent(dir: &std::path::Path) -> std::path::PathBuf {
    let mut elf = vec![0u8; 64];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[16] = 2;
    elf[18] = 62;
    let p = dir.join("fake-agent");
    std::fs::write(&p, elf).unwrap();
    p
}

/// A minimal x86-64 ELF "vmlinux" (`dir/vmlinux`): enough for the kernel
/// checks, never booted.
pub fn fake_vmlinux(dir: &std::path::Path) -> std::path::PathBuf {
    let mut elf = vec![0u8; 4096];
    elf[..4].copy_from_slice(b"\x7fELF");
    elf[4] = 2;
    elf[16] = 2;
    elf[18] = 62;
    let p = dir.join("vmlinux");
    std::fs::write(&p, elf).unwrap();
    p
}

/// Whether the e2fsprogs tools the image code runs are installed.
pub fn e2fsprogs() -> bool {
    banger_image::ext4::tool("mkfs.ext4").is_ok() && banger_image::ext4::tool("debugfs").is_ok()
}

impl TestDaemon {
    pub async fn start() -> TestDaemon {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut Config)) -> TestDaemon {
        let dir = tempfile::tempdir().unwrap();
        let paths = Paths {
            config_dir: dir.path().join("config/banger"),
            state_dir: dir.path().join("state/banger"),
            cache_dir: dir.path().join("cache/banger"),
            runtime_dir: dir.path().join("run/banger"),
        };
        let mut config = Config::defaults(paths.config_file());
        config.agent_bin = Some(fake_agent(dir.path()));
        // Never touch the host network from these tests.
        config.engine = bangerd::config::EngineChoice::Qemu;
        // Tests in the host's namespace run side by side: no shared port.
        config.dns_port = 0;
        tweak(&mut config);
        Self::serve(dir, paths, config).await
    }

    async fn serve(dir: tempfile::TempDir, paths: Paths, config: Config) -> TestDaemon {
        let server = Server::bind(paths, config).await.unwrap();
        let daemon = server.daemon.clone();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            server
                .run(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        TestDaemon { daemon, dir, stop: Some(tx), task: Some(task) }
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
    }

    /// Stops this daemon and starts a new one on the same dirs, as after a
    /// daemon restart.
    pub async fn restart(mut self) -> TestDaemon {
        let paths = self.daemon.paths.clone();
        let config = self.daemon.config.clone();
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            t.await.unwrap();
        }
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        drop(self);
        Self::serve(dir, paths, config).await
    }

    /// One raw request; returns status and parsed JSON body.
    pub async fn request(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let (status, bytes) = self.request_raw(method, path, body, &[]).await;
        let v = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| panic!("non-JSON answer {status}: {}", String::from_utf8_lossy(&bytes)));
        (status, v)
    }

    pub async fn request_raw(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<u8>) {
        let stream = tokio::net::UnixStream::connect(self.daemon.paths.socket()).await.unwrap();
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let mut req = http::Request::builder().method(method).uri(path).header("host", "bangerd");
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or("").to_string()))).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.into_body().collect().await.unwrap().to_bytes().to_vec())
    }

    /// Records a kernel and an image directly in the store, as the seed test
    /// does, so VM tests need no real files.
    pub fn seed_image(&self, name: &str) -> banger_store::ImageRecord {
        let kernel = format!("{name}-kernel");
        self.daemon
            .store
            .insert_kernel(&banger_store::KernelRecord {
                name: kernel.clone(),
                vmlinux_path: "/nonexistent/vmlinux".into(),
                initrd_path: None,
                sha256: "0".repeat(64),
                source: "test".into(),
                created_at_ms: 1,
            })
            .unwrap();
        let image = banger_store::ImageRecord {
            id: format!("{name}-id"),
            name: name.into(),
            kernel,
            rootfs_path: "/nonexistent/rootfs.ext4".into(),
            size_bytes: 1 << 30,
            sha256: "0".repeat(64),
            source: "test".into(),
            manifest: None,
            created_at_ms: 1,
        };
        self.daemon.store.insert_image(&image).unwrap();
        image
    }
}
