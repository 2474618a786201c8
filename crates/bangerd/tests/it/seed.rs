//! The seed contract (`lifecycle_flow_test.go`), rewritten for our daemon:
//! create without start → find → duplicate rejected → delete; an unknown
//! image fails before any state changes.

use crate::harness::TestDaemon;
use banger_api::{CreateVmRequest, ErrorCode, VmState};
use bangerd::service::Progress;

fn create(name: &str, image: &str) -> CreateVmRequest {
    CreateVmRequest {
        name: Some(name.into()),
        image: Some(image.into()),
        no_start: true,
        ..Default::default()
    }
}

#[tokio::test]
async fn vm_create_no_start_delete_flow() {
    let t = TestDaemon::start().await;
    let d = &t.daemon;
    let image = t.seed_image("flow-img");

    // Create with no_start: reserves name + IP, makes the dir, persists a
    // stopped row.
    let created = d.create_vm(create("flow-vm", &image.name), &Progress::none()).await.unwrap();
    assert_eq!(created.name, "flow-vm");
    assert_eq!(created.image_id, image.id);
    assert_eq!(created.image, "flow-img");
    assert_eq!(created.state, VmState::Stopped);
    assert!(!created.guest_ip.is_empty(), "no IP was allocated");
    assert_eq!(created.guest_ip, "172.30.213.2", "first free address after the gateway");
    assert!(!created.vm_dir.is_empty());
    let meta = std::fs::metadata(&created.vm_dir).expect("VM dir exists after create");
    assert!(meta.is_dir());

    // Store round trip by id, by name and by prefix.
    let by_id = d.find_vm(&created.id).unwrap();
    assert_eq!((by_id.id.as_str(), by_id.name.as_str()), (created.id.as_str(), "flow-vm"));
    assert_eq!(d.find_vm("flow-vm").unwrap().id, created.id);
    assert_eq!(d.find_vm("flow").unwrap().id, created.id);
    assert_eq!(d.find_vm(&created.id[..4]).unwrap().id, created.id);

    // Duplicate name: rejected with conflict, and no second row.
    let err = d.create_vm(create("flow-vm", &image.name), &Progress::none()).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::Conflict, "{err:?}");
    assert!(err.message.contains("flow-vm"));
    assert!(err.hint.is_some());
    assert_eq!(d.list_vms().unwrap().len(), 1);
    assert_eq!(std::fs::read_dir(d.paths.vms_dir()).unwrap().count(), 1, "a second VM dir was left behind");

    // Delete a never-started VM: row and dir gone, IP free again.
    let deleted = d.delete_vm(&created.id).await.unwrap();
    assert_eq!(deleted.id, created.id);
    assert_eq!(d.find_vm(&created.id).unwrap_err().code, ErrorCode::NotFound);
    assert!(!std::path::Path::new(&created.vm_dir).exists(), "VM dir still present after delete");
    let again = d.create_vm(create("flow-vm-2", &image.name), &Progress::none()).await.unwrap();
    assert_eq!(again.guest_ip, created.guest_ip, "the deleted VM's IP was not freed");
    t.stop().await;
}

#[tokio::test]
async fn vm_create_with_unknown_image_fails() {
    let t = TestDaemon::start().await;
    let d = &t.daemon;
    let err =
        d.create_vm(create("ghostly", "nothing-called-this-image"), &Progress::none()).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::NotFound);
    assert!(err.message.contains("nothing-called-this-image"));
    assert!(d.find_vm("ghostly").is_err(), "a VM row exists for a create that failed");
    assert!(d.list_vms().unwrap().is_empty());
    assert_eq!(std::fs::read_dir(d.paths.vms_dir()).unwrap().count(), 0, "a VM dir was created");
    t.stop().await;
}

#[tokio::test]
async fn parallel_creates_get_distinct_ips() {
    let t = TestDaemon::start().await;
    t.seed_image("img");
    let tasks: Vec<_> = (0..20)
        .map(|i| {
            let d = t.daemon.clone();
            tokio::spawn(
                async move { d.create_vm(create(&format!("vm-{i}"), "img"), &Progress::none()).await },
            )
        })
        .collect();
    let mut ips = std::collections::HashSet::new();
    for task in tasks {
        let vm = task.await.unwrap().unwrap();
        assert!(ips.insert(vm.guest_ip.clone()), "IP {} given twice", vm.guest_ip);
    }
    assert_eq!(ips.len(), 20);
    t.stop().await;
}

#[tokio::test]
async fn parallel_creates_of_one_name_yield_one_vm() {
    let t = TestDaemon::start().await;
    t.seed_image("img");
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let d = t.daemon.clone();
            tokio::spawn(async move { d.create_vm(create("same", "img"), &Progress::none()).await })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => ok += 1,
            Err(e) => assert_eq!(e.code, ErrorCode::Conflict, "{e:?}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(t.daemon.list_vms().unwrap().len(), 1);
    assert_eq!(std::fs::read_dir(t.daemon.paths.vms_dir()).unwrap().count(), 1);
    t.stop().await;
}

#[tokio::test]
async fn generated_names_and_ambiguous_prefixes() {
    let t = TestDaemon::start().await;
    t.seed_image("img");
    let d = &t.daemon;
    let req = CreateVmRequest { image: Some("img".into()), no_start: true, ..Default::default() };
    let vm = d.create_vm(req, &Progress::none()).await.unwrap();
    banger_api::validate::vm_name(&vm.name).unwrap();
    d.create_vm(create("web-1", "img"), &Progress::none()).await.unwrap();
    d.create_vm(create("web-2", "img"), &Progress::none()).await.unwrap();
    let err = d.find_vm("web").unwrap_err();
    assert_eq!(err.code, ErrorCode::InvalidArgument);
    assert!(err.message.contains("web-1") && err.message.contains("web-2"), "{}", err.message);
    // An exact name wins over being a prefix of another name.
    d.create_vm(create("web", "img"), &Progress::none()).await.unwrap();
    assert_eq!(d.find_vm("web").unwrap().name, "web");
    t.stop().await;
}

#[tokio::test]
async fn image_and_kernel_in_use_are_protected() {
    let t = TestDaemon::start().await;
    let image = t.seed_image("img");
    let d = &t.daemon;
    d.create_vm(create("user", "img"), &Progress::none()).await.unwrap();
    let err = d.delete_image("img").await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InUse);
    assert!(err.message.contains("user"));
    let err = d.delete_kernel(&image.kernel).await.unwrap_err();
    assert_eq!(err.code, ErrorCode::InUse);
    d.delete_vm("user").await.unwrap();
    d.delete_image("img").await.unwrap();
    d.delete_kernel(&image.kernel).await.unwrap();
    t.stop().await;
}

#[tokio::test]
async fn state_survives_a_daemon_restart() {
    let t = TestDaemon::start().await;
    t.seed_image("img");
    let vm = t.daemon.create_vm(create("keeper", "img"), &Progress::none()).await.unwrap();
    let t = t.restart().await;
    let found = t.daemon.find_vm("keeper").unwrap();
    assert_eq!(found.id, vm.id);
    assert_eq!(found.guest_ip.to_string(), vm.guest_ip);
    assert_eq!(found.state, banger_api::VmState::Stopped);
    t.stop().await;
}
