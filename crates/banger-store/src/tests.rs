use super::*;
use banger_api::{PortForward, VmState, Workspace};
use banger_engine::EngineKind;

fn kernel(name: &str) -> KernelRecord {
    KernelRecord {
        name: name.into(),
        vmlinux_path: format!("/k/{name}/vmlinux"),
        initrd_path: None,
        sha256: "ab".repeat(32),
        source: "import".into(),
        created_at_ms: 1,
    }
}

fn image(id: &str, name: &str, kernel: &str) -> ImageRecord {
    ImageRecord {
        id: id.into(),
        name: name.into(),
        kernel: kernel.into(),
        rootfs_path: format!("/i/{id}/rootfs.ext4"),
        size_bytes: 1 << 30,
        sha256: "cd".repeat(32),
        source: "register".into(),
        manifest: Some(serde_json::json!({"distro": "debian"})),
        created_at_ms: 2,
    }
}

fn vm(id: &str, name: &str, ip: &str) -> NewVm {
    NewVm {
        id: id.into(),
        name: name.into(),
        image_id: "img1".into(),
        vcpu: 2,
        memory_mib: 1024,
        disk_size_mib: 8192,
        guest_ip: ip.parse().unwrap(),
        vm_dir: format!("/vms/{id}"),
        state: VmState::Stopped,
        engine: EngineKind::Qemu,
        engine_reason: "test".into(),
        nat: false,
        forwards: vec![PortForward { host_addr: "127.0.0.1".into(), host_port: 8080, guest_port: 80 }],
        created_at_ms: 3,
    }
}

fn seeded() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("banger.db")).unwrap();
    store.insert_kernel(&kernel("k1")).unwrap();
    store.insert_image(&image("img1", "deb", "k1")).unwrap();
    (dir, store)
}

#[test]
fn round_trips_and_joins() {
    let (_d, s) = seeded();
    s.insert_vm(&vm("v1", "alpha", "10.0.0.2")).unwrap();
    let got = s.get_vm("v1").unwrap().unwrap();
    assert_eq!(got.name, "alpha");
    assert_eq!(got.image_name, "deb");
    assert_eq!(got.kernel, "k1");
    assert_eq!(got.forwards, vm("v1", "alpha", "10.0.0.2").forwards);
    assert_eq!((got.state, got.engine), (VmState::Stopped, EngineKind::Qemu));
    assert_eq!(s.get_image_by_name("deb").unwrap().unwrap().manifest, image("img1", "deb", "k1").manifest);
    assert_eq!(s.list_vms().unwrap().len(), 1);
    assert_eq!(s.used_ips().unwrap(), vec![std::net::Ipv4Addr::new(10, 0, 0, 2)]);
}

#[test]
fn duplicates_are_named() {
    let (_d, s) = seeded();
    s.insert_vm(&vm("v1", "alpha", "10.0.0.2")).unwrap();
    assert!(matches!(s.insert_vm(&vm("v2", "alpha", "10.0.0.3")), Err(StoreError::Duplicate { .. })));
    assert!(matches!(s.insert_vm(&vm("v3", "beta", "10.0.0.2")), Err(StoreError::IpTaken(_))));
    assert!(matches!(s.insert_kernel(&kernel("k1")), Err(StoreError::Duplicate { .. })));
    assert_eq!(s.list_vms().unwrap().len(), 1);
}

#[test]
fn references_are_enforced() {
    let (_d, s) = seeded();
    s.insert_vm(&vm("v1", "alpha", "10.0.0.2")).unwrap();
    assert_eq!(s.vms_using_image("img1").unwrap(), vec!["alpha".to_string()]);
    assert_eq!(s.images_using_kernel("k1").unwrap(), vec!["deb".to_string()]);
    // The foreign keys hold even if a caller forgets to check.
    assert!(s.delete_image("img1").is_err());
    assert!(s.delete_kernel("k1").is_err());
    assert!(s.delete_vm("v1").unwrap());
    assert!(s.delete_image("img1").unwrap());
    assert!(s.delete_kernel("k1").unwrap());
}

#[test]
fn state_updates() {
    let (_d, s) = seeded();
    s.insert_vm(&vm("v1", "alpha", "10.0.0.2")).unwrap();
    s.set_vm_state("v1", VmState::Error, Some("boom"), 9).unwrap();
    let got = s.get_vm("v1").unwrap().unwrap();
    assert_eq!((got.state, got.last_error.as_deref(), got.updated_at_ms), (VmState::Error, Some("boom"), 9));
    let ws = Workspace {
        guest_path: "/root/x".into(),
        host_path: "/home/u/x".into(),
        head: "0123456789abcdef".into(),
        branch: Some("main".into()),
        prepared_at: "2026-11-29T00:00:00Z".into(),
    };
    s.set_vm_workspace("v1", Some(&ws), 10).unwrap();
    assert_eq!(s.get_vm("v1").unwrap().unwrap().workspace, Some(ws));
    s.set_vm_engine("v1", EngineKind::Firecracker, "asked", 11).unwrap();
    assert_eq!(s.get_vm("v1").unwrap().unwrap().engine, EngineKind::Firecracker);
    s.set_vm_forwards("v1", &[], 12).unwrap();
    assert!(s.get_vm("v1").unwrap().unwrap().forwards.is_empty());
}

/// A value no variant matches (a hand-edited or corrupted row) is an error
/// naming the column and the value, not a default state or engine.
#[test]
fn unknown_stored_values_are_errors_not_defaults() {
    let (_d, s) = seeded();
    s.insert_vm(&vm("v1", "alpha", "10.0.0.2")).unwrap();
    for (column, value) in [("state", "exploded"), ("engine", "bochs"), ("guest_ip", "10.0.0.999")] {
        s.conn().execute(&format!("UPDATE vms SET {column} = ?1 WHERE id = 'v1'"), [value]).unwrap();
        let err = s.get_vm("v1").unwrap_err().to_string();
        let source = format!("{:?}", s.list_vms().unwrap_err());
        assert!(source.contains(column) && source.contains(value), "{column}: {err} / {source}");
        s.conn().execute("DELETE FROM vms WHERE id = 'v1'", []).unwrap();
        s.insert_vm(&vm("v1", "alpha", "10.0.0.2")).unwrap();
    }
}

#[test]
fn refuses_newer_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("banger.db");
    drop(Store::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.pragma_update(None, "user_version", LATEST_PLUS_ONE).unwrap();
    drop(conn);
    let err = Store::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::TooNew { .. }), "{err}");
    assert!(err.to_string().contains("newer than this banger"));
}

const LATEST_PLUS_ONE: i64 = migrations::LATEST + 1;

#[test]
fn reopen_keeps_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("banger.db");
    {
        let s = Store::open(&path).unwrap();
        s.insert_kernel(&kernel("k1")).unwrap();
    }
    let s = Store::open(&path).unwrap();
    assert_eq!(s.list_kernels().unwrap().len(), 1);
}
