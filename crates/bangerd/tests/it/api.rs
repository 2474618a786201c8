//! The HTTP boundary: status codes, the error envelope, malformed input,
//! and the OpenAPI document kept in step with the router.

use crate::harness::TestDaemon;
use std::collections::BTreeSet;

#[tokio::test]
async fn version_and_errors_over_http() {
    let t = TestDaemon::start().await;
    let (s, v) = t.request("GET", "/v1/version", None).await;
    assert_eq!(s, 200);
    assert_eq!(v["build_id"], banger_api::build_id());
    assert_eq!(v["pid"], std::process::id());

    let (s, v) = t.request("GET", "/v1/vms/nope", None).await;
    assert_eq!(s, 404);
    assert_eq!(v["code"], "not_found");
    assert!(v["message"].as_str().unwrap().contains("nope"));
    assert!(v["hint"].is_string());

    let (s, v) = t.request("GET", "/v1/no/such/route", None).await;
    assert_eq!((s, v["code"].as_str()), (404, Some("not_found")));
    let (s, v) = t.request("PUT", "/v1/vms", Some("{}")).await;
    assert_eq!((s, v["code"].as_str()), (405, Some("invalid_argument")));
    t.stop().await;
}

#[tokio::test]
async fn malformed_bodies_are_4xx_and_the_daemon_survives() {
    let t = TestDaemon::start().await;
    t.seed_image("img");
    for body in [
        "",
        "not json",
        "[1,2]",
        "{\"name\": 5}",
        "{\"name\": \"ok\", \"bogus\": 1}",
        "{\"vcpu\": -1}",
        "{\"memory_mib\": 1e99}",
        "{\"name\": \"ok\"",
    ] {
        let (s, v) = t.request("POST", "/v1/vms", Some(body)).await;
        assert!((400..500).contains(&s), "{body:?} gave {s}");
        assert_eq!(v["code"], "invalid_argument", "{body:?}");
    }
    for body in [
        r#"{"name": "Bad_Name", "image": "img", "no_start": true}"#,
        r#"{"name": "-x", "image": "img", "no_start": true}"#,
        r#"{"name": "ok", "image": "img", "vcpu": 0, "no_start": true}"#,
        r#"{"name": "ok", "image": "img", "vcpu": 1000, "no_start": true}"#,
        r#"{"name": "ok", "image": "img", "memory_mib": 1, "no_start": true}"#,
        r#"{"name": "ok", "image": "img", "disk_size_mib": 99999999999, "no_start": true}"#,
        r#"{"name": "ok", "image": "img", "engine": "vmware", "no_start": true}"#,
        r#"{"name": "ok", "image": "img", "no_start": true, "forwards": [{"host_addr": "x", "host_port": 1, "guest_port": 2}]}"#,
    ] {
        let (s, v) = t.request("POST", "/v1/vms", Some(body)).await;
        assert_eq!((s, v["code"].as_str()), (400, Some("invalid_argument")), "{body}: {v}");
    }
    for (path, body) in [
        ("/v1/kernels", r#"{"name": "k", "vmlinux": "relative/path"}"#),
        ("/v1/kernels", r#"{"name": "k", "vmlinux": "/does/not/exist"}"#),
        ("/v1/kernels", r#"{"name": "../k", "vmlinux": "/etc/hostname"}"#),
        ("/v1/kernels", r#"{"name": "k", "vmlinux": "/etc"}"#),
        ("/v1/kernels", r#"{"name": "k", "vmlinux": "/etc/hostname"}"#),
        ("/v1/images", r#"{"name": "i", "rootfs": "/does/not/exist", "kernel": "img-kernel"}"#),
        ("/v1/images", r#"{"name": "i", "rootfs": "/etc/hostname", "kernel": "img-kernel"}"#),
        ("/v1/images", r#"{"name": "i/x", "rootfs": "/etc/hostname", "kernel": "img-kernel"}"#),
    ] {
        let (s, v) = t.request("POST", path, Some(body)).await;
        assert_eq!((s, v["code"].as_str()), (400, Some("invalid_argument")), "{path} {body}: {v}");
    }
    // Nothing was created by any of that, and the daemon still answers.
    assert!(t.daemon.list_vms().unwrap().is_empty());
    assert_eq!(t.daemon.list_kernels().unwrap().len(), 1);
    assert_eq!(t.daemon.list_images().unwrap().len(), 1);
    let (s, _) = t.request("GET", "/v1/version", None).await;
    assert_eq!(s, 200);
    t.stop().await;
}

#[tokio::test]
async fn create_streams_progress_when_asked() {
    let t = TestDaemon::start().await;
    t.seed_image("img");
    let body = r#"{"name": "streamed", "image": "img", "no_start": true}"#;
    let (s, bytes) =
        t.request_raw("POST", "/v1/vms", Some(body), &[("accept", "application/x-ndjson")]).await;
    assert_eq!(s, 200);
    let text = String::from_utf8(bytes).unwrap();
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(events.first().unwrap()["event"], "phase");
    let last = events.last().unwrap();
    assert_eq!(last["event"], "done");
    assert_eq!(last["result"]["name"], "streamed");
    // A failing operation ends its stream with `failed`.
    let (_, bytes) =
        t.request_raw("POST", "/v1/vms", Some(body), &[("accept", "application/x-ndjson")]).await;
    let text = String::from_utf8(bytes).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(last["event"], "failed");
    assert_eq!(last["error"]["code"], "conflict");
    t.stop().await;
}

#[tokio::test]
async fn json_field_names_are_stable() {
    let t = TestDaemon::start().await;
    t.seed_image("img");
    let (s, vm) =
        t.request("POST", "/v1/vms", Some(r#"{"name": "f", "image": "img", "no_start": true}"#)).await;
    assert_eq!(s, 200);
    for key in [
        "id",
        "name",
        "state",
        "image",
        "kernel",
        "vcpu",
        "memory_mib",
        "disk_size_mib",
        "guest_ip",
        "vm_dir",
        "created_at",
        "last_error",
    ] {
        assert!(vm.as_object().unwrap().contains_key(key), "VM JSON lacks {key}: {vm}");
    }
    let (_, images) = t.request("GET", "/v1/images", None).await;
    for key in ["id", "name", "kernel", "rootfs_path", "size_bytes", "sha256", "created_at"] {
        assert!(images[0].as_object().unwrap().contains_key(key), "image JSON lacks {key}");
    }
    let (_, kernels) = t.request("GET", "/v1/kernels", None).await;
    for key in ["name", "vmlinux_path", "initrd_path", "sha256", "created_at"] {
        assert!(kernels[0].as_object().unwrap().contains_key(key), "kernel JSON lacks {key}");
    }
    t.stop().await;
}

/// Every route the router serves is documented in api/openapi.json, and the
/// document describes no route the router lacks.
#[test]
fn openapi_matches_router() {
    let text =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../api/openapi.json")).unwrap();
    let doc: serde_json::Value = serde_json::from_str(&text).unwrap();
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                documented.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    let served: BTreeSet<(String, String)> = bangerd::server::route_list().into_iter().collect();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let unserved: Vec<_> = documented.difference(&served).collect();
    assert!(undocumented.is_empty(), "routes missing from api/openapi.json: {undocumented:?}");
    assert!(unserved.is_empty(), "api/openapi.json documents routes the daemon lacks: {unserved:?}");
    // Every response schema reference resolves.
    for r in text.match_indices("#/components/schemas/") {
        let rest = &text[r.0 + r.1.len()..];
        let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
        assert!(doc["components"]["schemas"].get(&name).is_some(), "dangling schema reference {name}");
    }
}

/// Issue 14, item 15: creates at once that forward one host port: exactly
/// one gets it (the port check is made again under the reservation lock).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_never_share_a_forwarded_port() {
    let t = std::sync::Arc::new(TestDaemon::start().await);
    t.seed_image("img");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let tasks: Vec<_> = (0..8)
        .map(|i| {
            let t = t.clone();
            tokio::spawn(async move {
                let body = format!(
                    r#"{{"name": "f{i}", "image": "img", "no_start": true, "forwards": [{{"host_addr": "127.0.0.1", "host_port": {port}, "guest_port": 80}}]}}"#
                );
                t.request("POST", "/v1/vms", Some(&body)).await
            })
        })
        .collect();
    let mut ok = 0;
    for task in tasks {
        let (s, v) = task.await.unwrap();
        match s {
            200 => ok += 1,
            409 => assert!(v["message"].as_str().unwrap().contains("already forwarded"), "{v}"),
            _ => panic!("unexpected {s}: {v}"),
        }
    }
    assert_eq!(ok, 1, "{ok} VMs forward host port {port}");
    assert_eq!(t.daemon.list_vms().unwrap().len(), 1);
}
