//! OCI images end to end: an image the test builds (a busybox userland in
//! two layers, with a whiteout, an opaque dir, a hard link, a non-root
//! owner, ENV/WORKDIR/USER) pushed with skopeo to a real registry on the
//! namespace's loopback, pulled with `banger image pull`, booted (no
//! systemd in it: banger-init stays PID 1) and exec'd into; the same image
//! imported from an OCI layout archive and a `docker save`-style archive;
//! a broken archive leaving nothing behind.

use crate::harness::E2e;
use sha2::Digest;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Layer {
    /// The blob as stored (maybe gzip), and the uncompressed tar's digest.
    blob: Vec<u8>,
    diff_id: String,
    media_type: &'static str,
}

fn sha(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(data)))
}

enum Item<'a> {
    Dir(&'a str, u32, u64),
    File(&'a str, u32, u64, &'a [u8]),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
}

fn tar_of(items: &[Item]) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    for it in items {
        let mut h = tar::Header::new_gnu();
        match it {
            Item::Dir(p, mode, uid) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*uid);
                h.set_size(0);
                t.append_data(&mut h, p, &[][..]).unwrap();
            }
            Item::File(p, mode, uid, data) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(*mode);
                h.set_uid(*uid);
                h.set_gid(*uid);
                h.set_size(data.len() as u64);
                t.append_data(&mut h, p, *data).unwrap();
            }
            Item::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                t.append_link(&mut h, p, target).unwrap();
            }
            Item::Hardlink(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_size(0);
                t.append_link(&mut h, p, target).unwrap();
            }
        }
    }
    t.into_inner().unwrap()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    g.write_all(data).unwrap();
    g.finish().unwrap()
}

/// Writes an OCI image layout for the test image into `dir`; returns the
/// digests of (config, layers) for a docker-save manifest.
fn build_layout(dir: &Path) -> (String, Vec<String>) {
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let mut base = vec![
        Item::Dir("bin", 0o755, 0),
        Item::File("bin/busybox", 0o755, 0, &busybox),
        Item::Dir("etc", 0o755, 0),
        Item::File(
            "etc/passwd",
            0o644,
            0,
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n",
        ),
        Item::File("etc/group", 0o644, 0, b"root:x:0:\napp:x:1000:\n"),
        Item::Dir("root", 0o700, 0),
        Item::Dir("tmp", 0o1777, 0),
        Item::Dir("home", 0o755, 0),
        Item::Dir("home/app", 0o750, 1000),
        Item::Dir("opt", 0o755, 0),
        Item::File("opt/a", 0o644, 0, b"a\n"),
        Item::File("opt/b", 0o644, 1000, b"b\n"),
        Item::Dir("data", 0o755, 0),
        Item::File("data/old", 0o644, 0, b"old\n"),
    ];
    let applets =
        ["sh", "ls", "cat", "id", "env", "stat", "sleep", "mkdir", "rm", "uname", "sync", "mount", "sort"];
    for a in applets {
        base.push(Item::Symlink(Box::leak(format!("bin/{a}").into_boxed_str()), "busybox"));
    }
    let l1 = tar_of(&base);
    let l2 = tar_of(&[
        Item::File("opt/.wh.a", 0o644, 0, b""),
        Item::Dir("data", 0o755, 0),
        Item::File("data/.wh..wh..opq", 0o644, 0, b""),
        Item::File("data/new", 0o644, 0, b"new\n"),
        Item::Hardlink("opt/c", "opt/b"),
    ]);
    let layers = [
        Layer {
            blob: gzip(&l1),
            diff_id: sha(&l1),
            media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
        },
        Layer { blob: l2.clone(), diff_id: sha(&l2), media_type: "application/vnd.oci.image.layer.v1.tar" },
    ];
    let config = serde_json::json!({
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "FOO=bar"],
        "WorkingDir": "/opt",
        "User": "app"
    });
    write_layout(dir, &layers, config)
}

/// An OCI layout archive (for `image import`) of one layer: a static
/// busybox as `/bin/busybox` with `applets` linked to it, a root user and
/// nothing else — no init, so banger-init stays PID 1.
pub(crate) fn busybox_archive(dir: &Path, applets: &[&str]) -> PathBuf {
    let busybox = std::fs::read("/bin/busybox").unwrap();
    let mut items = vec![
        Item::Dir("bin", 0o755, 0),
        Item::File("bin/busybox", 0o755, 0, &busybox),
        Item::Dir("etc", 0o755, 0),
        Item::File("etc/passwd", 0o644, 0, b"root:x:0:0:root:/root:/bin/sh\n"),
        Item::File("etc/group", 0o644, 0, b"root:x:0:\ntty:x:5:\n"),
        Item::Dir("root", 0o700, 0),
        Item::Dir("tmp", 0o1777, 0),
    ];
    let links: Vec<String> = applets.iter().map(|a| format!("bin/{a}")).collect();
    items.extend(links.iter().map(|l| Item::Symlink(l, "busybox")));
    let layer = tar_of(&items);
    let layers = [Layer {
        blob: gzip(&layer),
        diff_id: sha(&layer),
        media_type: "application/vnd.oci.image.layer.v1.tar+gzip",
    }];
    let layout = dir.join("busybox-layout");
    write_layout(&layout, &layers, serde_json::json!({"Env": ["PATH=/bin"]}));
    let archive = dir.join("busybox.tar");
    tar_dir(&layout, &archive);
    archive
}

/// Writes an OCI image layout of `layers` with image config `config` into
/// `dir`; returns the digests of (config, layers) for a docker-save manifest.
fn write_layout(dir: &Path, layers: &[Layer], config: serde_json::Value) -> (String, Vec<String>) {
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    let put = |data: &[u8]| -> String {
        let d = sha(data);
        std::fs::write(blobs.join(d.trim_start_matches("sha256:")), data).unwrap();
        d
    };
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>()}
    });
    let config_bytes = serde_json::to_vec(&config).unwrap();
    let config_digest = put(&config_bytes);
    let mut layer_digests = Vec::new();
    let mut descs = Vec::new();
    for l in layers {
        let d = put(&l.blob);
        descs.push(serde_json::json!({"mediaType": l.media_type, "digest": d, "size": l.blob.len()}));
        layer_digests.push(d);
    }
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": config_bytes.len()},
        "layers": descs,
    });
    let mbytes = serde_json::to_vec(&manifest).unwrap();
    let mdigest = put(&mbytes);
    let index = serde_json::json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": mdigest,
            "size": mbytes.len(),
            "annotations": {"org.opencontainers.image.ref.name": "1"}
        }]
    });
    std::fs::write(dir.join("index.json"), serde_json::to_vec(&index).unwrap()).unwrap();
    std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
    (config_digest, layer_digests)
}

fn tar_dir(dir: &Path, out: &Path) {
    let ok = Command::new("tar").arg("-C").arg(dir).arg("-cf").arg(out).arg(".").status().unwrap().success();
    assert!(ok, "tar failed");
}

/// docker-registry on the namespace's loopback, killed on drop.
struct Registry(Child);

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_registry(e: &E2e, storage: &Path) -> Registry {
    let cfg = e.dir.path().join("registry.yml");
    std::fs::write(
        &cfg,
        format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:5000\n",
            storage.display()
        ),
    )
    .unwrap();
    let log = std::fs::File::create(e.dir.path().join("registry.log")).unwrap();
    let child = Command::new("ip")
        .args(["netns", "exec", &e.netns, "docker-registry", "serve"])
        .arg(&cfg)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    let reg = Registry(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let up = Command::new("ip")
            .args(["netns", "exec", &e.netns, "curl", "-sf", "http://127.0.0.1:5000/v2/"])
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success();
        if up {
            return reg;
        }
        assert!(
            Instant::now() < deadline,
            "docker-registry did not come up; see {}/registry.log",
            e.dir.path().display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn images_left(e: &E2e) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(e.dir.path().join("state/banger/images"))
        .map(|rd| rd.flatten().map(|x| x.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn oci_images_pull_boot_and_import() {
    for tool in ["docker-registry", "skopeo", "curl"] {
        if !have(tool) || !Path::new("/bin/busybox").exists() {
            banger_testkit::skip("e2e test oci-images", "needs docker-registry, skopeo, curl and busybox-static (apt-get install docker-registry skopeo curl busybox-static)");
            return;
        }
    }
    let Some(e) = E2e::new("oci-images") else { return };
    let layout = e.dir.path().join("layout");
    let (config_digest, layer_digests) = build_layout(&layout);
    let _reg = start_registry(&e, &e.dir.path().join("registry"));
    let push = Command::new("ip")
        .args([
            "netns",
            "exec",
            &e.netns,
            "skopeo",
            "--insecure-policy",
            "copy",
            "-q",
            "--dest-tls-verify=false",
        ])
        .arg(format!("oci:{}:1", layout.display()))
        .arg("docker://127.0.0.1:5000/team/bb:1")
        .output()
        .unwrap();
    assert!(push.status.success(), "skopeo copy failed: {}", String::from_utf8_lossy(&push.stderr));

    // Pull, boot, exec.
    let img = e.ok(&["image", "pull", "127.0.0.1:5000/team/bb:1", "--json"]).json();
    assert_eq!(img["name"], "bb-1");
    assert_eq!(img["source"], "oci:127.0.0.1:5000/team/bb:1");
    assert_eq!(img["manifest"]["config"]["workdir"], "/opt");
    // Pulling again is a no-op returning the same image; the layers are cached.
    assert_eq!(e.ok(&["image", "pull", "127.0.0.1:5000/team/bb:1", "--json"]).json()["id"], img["id"]);
    e.ok(&["vm", "create", "--image", "bb-1", "--name", "bb"]);
    let out = e.ok(&[
        "vm",
        "exec",
        "bb",
        "--",
        "sh",
        "-c",
        "pwd; echo $FOO; id -u; ls /opt; ls /data; stat -c '%u %a' /home/app /opt/b; stat -c %h /opt/c; cat /proc/1/comm; stat -c %a /",
    ]);
    // `/` is 0755 whatever the daemon's (private) umask.
    assert_eq!(
        out.stdout, "/opt\nbar\n1000\nb\nc\nnew\n1000 750\n1000 644\n2\nbanger-init\n755\n",
        "stderr: {}",
        out.stderr
    );
    assert_eq!(e.ok(&["vm", "exec", "--user", "root", "bb", "--", "id", "-u"]).stdout, "0\n");
    let show = e.vm("bb");
    assert_eq!(show["exec_defaults"]["user"], "app", "{show}");
    e.ok(&["vm", "delete", "bb"]);

    // Unknown tags and registries say what failed.
    let r = e.run(&["image", "pull", "127.0.0.1:5000/team/bb:nope"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("127.0.0.1:5000/team/bb:nope"), "{}", r.stderr);

    // The same image from archives: OCI layout, and docker-save style.
    let oci_tar = e.dir.path().join("bb-oci.tar");
    tar_dir(&layout, &oci_tar);
    let i2 = e.ok(&["image", "import", oci_tar.to_str().unwrap(), "--name", "bb-oci", "--json"]).json();
    assert_eq!(i2["manifest"]["format"], "oci-layout");
    let docker_manifest = serde_json::json!([{
        "Config": format!("blobs/sha256/{}", config_digest.trim_start_matches("sha256:")),
        "RepoTags": ["bb:1"],
        "Layers": layer_digests.iter().map(|d| format!("blobs/sha256/{}", d.trim_start_matches("sha256:"))).collect::<Vec<_>>(),
    }]);
    std::fs::write(layout.join("manifest.json"), serde_json::to_vec(&docker_manifest).unwrap()).unwrap();
    let docker_tar = e.dir.path().join("bb-docker.tar");
    tar_dir(&layout, &docker_tar);
    let i3 = e.ok(&["image", "import", docker_tar.to_str().unwrap(), "--name", "bb-docker", "--json"]).json();
    assert_eq!(i3["manifest"]["format"], "docker-save");
    assert_eq!(i3["manifest"]["config"]["user"], "app");

    // A broken archive: refused, nothing registered, no staging left.
    let before = images_left(&e);
    let bad = e.dir.path().join("bad.tar");
    std::fs::write(&bad, b"this is not a tar archive at all").unwrap();
    let r = e.run(&["image", "import", bad.to_str().unwrap(), "--name", "bad"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("bad.tar"), "{}", r.stderr);
    // An archive whose blob does not match its digest.
    let blob = layout.join("blobs/sha256").join(layer_digests[1].trim_start_matches("sha256:"));
    let mut data = std::fs::read(&blob).unwrap();
    data[600] ^= 1;
    std::fs::write(&blob, data).unwrap();
    std::fs::remove_file(layout.join("manifest.json")).unwrap();
    let corrupt = e.dir.path().join("corrupt.tar");
    tar_dir(&layout, &corrupt);
    let r = e.run(&["image", "import", corrupt.to_str().unwrap(), "--name", "corrupt"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("corrupt"), "{}", r.stderr);
    assert_eq!(images_left(&e), before);
    let unpack: Vec<PathBuf> = std::fs::read_dir(e.dir.path().join("cache/banger/unpack"))
        .map(|rd| rd.flatten().map(|x| x.path()).collect())
        .unwrap_or_default();
    assert!(unpack.is_empty(), "scratch left: {unpack:?}");

    // The layer cache is reported and freed.
    let pr = e.ok(&["image", "cache", "prune", "--dry-run", "--json"]).json();
    assert!(pr["files"].as_u64().unwrap() >= 2, "{pr}");
    e.ok(&["image", "cache", "prune"]);
    let pr = e.ok(&["image", "cache", "prune", "--dry-run", "--json"]).json();
    assert_eq!(pr["files"], 0);
}

/// A kernel users bring, built from Firecracker's CI guest config: it finds
/// its virtio devices only through ACPI (no `virtio_mmio.device=` support),
/// so it boots on QEMU only because banger runs microvm with ACPI, and on
/// Firecracker (the nested tier) with Firecracker's own tables.
#[test]
fn a_kernel_built_from_firecrackers_ci_config_boots() {
    let vmlinux = crate::harness::fixtures_dir().join("fc-ci-vmlinux");
    if !vmlinux.is_file() {
        banger_testkit::skip(
            "e2e test fc-ci-kernel",
            &format!(
                "no {} (scripts/e2e-fixtures builds it when BANGER_E2E_FC_CONFIG \
             names Firecracker's resources/guest_configs/microvm-kernel-ci-x86_64-6.1.config)",
                vmlinux.display()
            ),
        );
        return;
    }
    let Some(e) = E2e::new("fc-ci-kernel") else { return };
    e.ok(&["kernel", "import", "fc-ci", "--vmlinux", vmlinux.to_str().unwrap()]);
    let rootfs = crate::harness::fixtures_dir().join("rootfs.ext4");
    e.ok(&[
        "image",
        "register",
        "--name",
        "deb-fc",
        "--rootfs",
        rootfs.to_str().unwrap(),
        "--kernel",
        "fc-ci",
    ]);
    e.ok(&["vm", "create", "--name", "k", "--image", "deb-fc"]);
    let r =
        e.ok(&["vm", "exec", "k", "--", "sh", "-c", "ls /dev/vda /dev/vdb; tty -s || echo no-tty; hostname"]);
    assert_eq!(r.stdout, "/dev/vda\n/dev/vdb\nno-tty\nk\n", "{}", r.stderr);
    e.ok(&["vm", "stop", "k"]);
}
