//! Issue 14, item 8: what a daemon killed at the wrong moment leaves
//! behind — an engine it launched but never recorded, staging and scratch
//! dirs, dirs with no row — is gone after the next start, and nothing that
//! a row names is touched.

use crate::harness::TestDaemon;
use std::path::Path;
use std::time::{Duration, Instant};

#[tokio::test]
async fn a_restart_sweeps_what_a_crash_left() {
    let t = TestDaemon::start().await;
    let image = t.seed_image("kept");
    let (s, vm) =
        t.request("POST", "/v1/vms", Some(r#"{"name": "kept", "image": "kept", "no_start": true}"#)).await;
    assert_eq!(s, 200, "{vm}");
    let vm_id = vm["id"].as_str().unwrap().to_string();
    let p = t.daemon.paths.clone();
    let kept = [p.images_dir().join(&image.id), p.vm_dir(&vm_id)];
    std::fs::create_dir_all(&kept[0]).unwrap();
    let leftovers = [
        p.images_dir().join(".staging-0123456789ab"),
        p.images_dir().join("0123456789ab"),
        p.vms_dir().join("ba9876543210"),
        p.vm_run_dir("ba9876543210"),
        p.cache_dir.join("unpack/tree-0123456789ab"),
        p.cache_dir.join("disk-templates/.512M.x1y2z3"),
    ];
    for d in &leftovers {
        std::fs::create_dir_all(d).unwrap();
        std::fs::write(d.join("f"), b"x").unwrap();
    }
    let blobs = p.cache_dir.join("oci/blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let (blob, part) = (blobs.join("ab".repeat(32)), blobs.join(format!("{}.part", "cd".repeat(32))));
    std::fs::write(&blob, b"layer").unwrap();
    std::fs::write(&part, b"lay").unwrap();
    // An "engine" (a shell called firecracker) running a VM from this
    // daemon's dirs that no handles.json records, and one that runs
    // something else under the same name.
    let fake = t.dir.path().join("firecracker");
    std::fs::copy("/bin/sh", &fake).unwrap();
    let spawn = |arg: &Path| {
        std::process::Command::new(&fake)
            .args(["-c", "read x; true"])
            .arg(arg)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    let mut orphan = spawn(&p.vm_run_dir("ba9876543210").join("fc.sock"));
    let mut other = spawn(Path::new("/etc/hostname"));

    let t = t.restart().await;
    for d in &leftovers {
        assert!(!d.exists(), "{} is left", d.display());
    }
    for d in &kept {
        assert!(d.exists(), "{} was removed", d.display());
    }
    assert!(blob.exists() && !part.exists(), "a cached layer was removed or a cut-off one kept");
    let deadline = Instant::now() + Duration::from_secs(5);
    while orphan.try_wait().unwrap().is_none() {
        assert!(Instant::now() < deadline, "the orphaned engine still runs");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(other.try_wait().unwrap().is_none(), "a process outside banger's dirs was killed");
    other.kill().unwrap();
    other.wait().unwrap();
    assert_eq!(t.daemon.list_vms().unwrap().len(), 1);
    t.stop().await;
}

/// A daemon killed while a delete removed the VM's files (the row already
/// marked `deleting`, the dir half gone) finishes that delete at its next
/// start: neither row nor dir is left, and the VM beside it is untouched.
/// Before the mark existed, the row came back `stopped` with no dir.
#[tokio::test]
async fn a_restart_finishes_a_delete_a_crash_cut_short() {
    let t = TestDaemon::start().await;
    t.seed_image("img");
    let mut ids = Vec::new();
    for name in ["doomed", "bystander"] {
        let body = format!(r#"{{"name": "{name}", "image": "img", "no_start": true}}"#);
        let (s, vm) = t.request("POST", "/v1/vms", Some(&body)).await;
        assert_eq!(s, 200, "{vm}");
        ids.push(vm["id"].as_str().unwrap().to_string());
    }
    let p = t.daemon.paths.clone();
    for id in &ids {
        std::fs::create_dir_all(p.vm_dir(id)).unwrap();
        std::fs::write(p.vm_dir(id).join("rootfs.ext4"), b"disk").unwrap();
    }
    // What delete_vm had done when the daemon died: the mark, part of the dir.
    t.daemon.store.set_vm_state(&ids[0], banger_api::VmState::Deleting, None, 0).unwrap();
    std::fs::remove_file(p.vm_dir(&ids[0]).join("rootfs.ext4")).unwrap();
    std::fs::write(p.vm_dir(&ids[0]).join("console.log"), b"left").unwrap();
    let (s, listed) = t.request("GET", "/v1/vms", None).await;
    assert_eq!(s, 200);
    assert!(listed.to_string().contains("\"deleting\""), "the mark is not shown: {listed}");

    let t = t.restart().await;
    let names: Vec<String> = t.daemon.list_vms().unwrap().into_iter().map(|v| v.name).collect();
    assert_eq!(names, ["bystander"]);
    assert!(!p.vm_dir(&ids[0]).exists(), "the deleted VM's dir is left");
    assert!(p.vm_dir(&ids[1]).join("rootfs.ext4").exists(), "the other VM's disk was touched");
    t.stop().await;
}
