//! Kernel import and image register with real files.

use crate::harness::{e2fsprogs, fake_vmlinux, TestDaemon};
use banger_api::{ErrorCode, ImportKernelRequest, RegisterImageRequest};

#[tokio::test]
async fn kernel_import_show_rm() {
    let t = TestDaemon::start().await;
    let d = &t.daemon;
    let src = fake_vmlinux(t.dir.path());
    let req = ImportKernelRequest { name: "k1".into(), vmlinux: src.display().to_string(), initrd: None };
    let k = d.import_kernel(req.clone()).await.unwrap();
    assert_eq!(k.sha256, banger_fs::sha256_file(&src).unwrap());
    assert!(k.vmlinux_path.starts_with(&d.paths.kernels_dir().display().to_string()));
    assert_eq!(std::fs::read(&k.vmlinux_path).unwrap(), std::fs::read(&src).unwrap());
    assert_eq!(d.import_kernel(req).await.unwrap_err().code, ErrorCode::Conflict);
    assert_eq!(d.show_kernel("k1").unwrap().name, "k1");
    d.delete_kernel("k1").await.unwrap();
    assert!(!std::path::Path::new(&k.vmlinux_path).exists());
    assert_eq!(d.show_kernel("k1").unwrap_err().code, ErrorCode::NotFound);
    // No staging dirs are left behind.
    assert_eq!(std::fs::read_dir(d.paths.kernels_dir()).unwrap().count(), 0);
    t.stop().await;
}

#[tokio::test]
async fn image_register_copies_injects_and_hashes() {
    if !e2fsprogs() {
        banger_testkit::skip("image_register_copies_injects_and_hashes", "e2fsprogs not installed");
        return;
    }
    let t = TestDaemon::start().await;
    let d = &t.daemon;
    let src = fake_vmlinux(t.dir.path());
    d.import_kernel(ImportKernelRequest {
        name: "k1".into(),
        vmlinux: src.display().to_string(),
        initrd: None,
    })
    .await
    .unwrap();
    let rootdir = t.dir.path().join("root");
    std::fs::create_dir_all(rootdir.join("etc")).unwrap();
    std::fs::write(rootdir.join("etc/hostname"), "x\n").unwrap();
    let rootfs = t.dir.path().join("rootfs.ext4");
    banger_image::ext4::mkfs_from_dir(&rootfs, Some(&rootdir), 64, "t").unwrap();
    let before = banger_fs::sha256_file(&rootfs).unwrap();

    let req = RegisterImageRequest {
        name: "img".into(),
        rootfs: rootfs.display().to_string(),
        kernel: "k1".into(),
    };
    let img = d.register_image(req.clone()).await.unwrap();
    assert_eq!(img.size_bytes, 64 << 20);
    // The source is untouched; the copy got the agent, so its hash differs
    // and matches what was recorded.
    assert_eq!(banger_fs::sha256_file(&rootfs).unwrap(), before);
    assert_ne!(img.sha256, before);
    assert_eq!(banger_fs::sha256_file(std::path::Path::new(&img.rootfs_path)).unwrap(), img.sha256);
    let alloc = banger_fs::allocated_bytes(std::path::Path::new(&img.rootfs_path)).unwrap();
    assert!(alloc < 32 << 20, "copy is not sparse: {alloc} bytes allocated");
    assert_eq!(d.register_image(req).await.unwrap_err().code, ErrorCode::Conflict);

    // Unknown kernel and non-ext4 files are refused and leave nothing.
    let bad = RegisterImageRequest {
        name: "img2".into(),
        rootfs: rootfs.display().to_string(),
        kernel: "nope".into(),
    };
    assert_eq!(d.register_image(bad).await.unwrap_err().code, ErrorCode::NotFound);
    let junk = t.dir.path().join("junk.img");
    std::fs::write(&junk, vec![0u8; 1 << 20]).unwrap();
    let bad =
        RegisterImageRequest { name: "img3".into(), rootfs: junk.display().to_string(), kernel: "k1".into() };
    let err = d.register_image(bad).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(err.message.contains("not an ext4"), "{}", err.message);
    assert_eq!(d.list_images().unwrap().len(), 1);
    assert_eq!(std::fs::read_dir(d.paths.images_dir()).unwrap().count(), 1, "staging dirs left behind");

    d.delete_image("img").await.unwrap();
    assert!(!std::path::Path::new(&img.rootfs_path).exists());
    t.stop().await;
}

#[tokio::test]
async fn register_without_an_agent_is_refused_cleanly() {
    if !e2fsprogs() {
        banger_testkit::skip("register_without_an_agent_is_refused_cleanly", "e2fsprogs not installed");
        return;
    }
    let t = TestDaemon::start_with(|c| c.agent_bin = Some("/nonexistent/banger-agent".into())).await;
    let d = &t.daemon;
    let src = fake_vmlinux(t.dir.path());
    d.import_kernel(ImportKernelRequest {
        name: "k1".into(),
        vmlinux: src.display().to_string(),
        initrd: None,
    })
    .await
    .unwrap();
    let rootfs = t.dir.path().join("rootfs.ext4");
    banger_image::ext4::mkfs_from_dir(&rootfs, None, 16, "t").unwrap();
    let req = RegisterImageRequest {
        name: "img".into(),
        rootfs: rootfs.display().to_string(),
        kernel: "k1".into(),
    };
    let err = d.register_image(req).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Unavailable, "{err:?}");
    assert!(d.list_images().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(d.paths.images_dir()).unwrap().count(), 0);
    t.stop().await;
}
