//! Catalog pulls from a local HTTP server: good, corrupt, truncated (then
//! resumed), slow (concurrent pulls coalesce), hostile bundles; bundles made
//! by `image bundle` / `kernel bundle` round-trip through a catalog.

use crate::harness::{e2fsprogs, fake_vmlinux, TestDaemon};
use axum::body::Body;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use banger_api::{BundleRequest, ErrorCode, ImportKernelRequest, PullImageRequest, PullKernelRequest};
use bangerd::config::CatalogSource;
use bangerd::service::Progress;
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Normal,
    /// Sends this many bytes of a full-length response, then breaks.
    Truncate(usize),
    /// 1 KiB at a time with a pause.
    Slow,
}

#[derive(Default)]
struct Files {
    files: HashMap<String, (Vec<u8>, Mode)>,
    /// (path, Range header) of every request.
    log: Vec<(String, Option<String>)>,
}

type Shared = Arc<Mutex<Files>>;

async fn serve(State(s): State<Shared>, UrlPath(name): UrlPath<String>, headers: HeaderMap) -> Response {
    let range = headers.get("range").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (data, mode) = {
        let mut f = s.lock().unwrap();
        f.log.push((name.clone(), range.clone()));
        match f.files.get(&name) {
            Some(x) => x.clone(),
            None => return Response::builder().status(404).body(Body::empty()).unwrap(),
        }
    };
    let start = range
        .as_deref()
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    let (status, body) = match start {
        Some(n) if n >= data.len() => return Response::builder().status(416).body(Body::empty()).unwrap(),
        Some(n) => (StatusCode::PARTIAL_CONTENT, data[n..].to_vec()),
        None => (StatusCode::OK, data.clone()),
    };
    let len = body.len();
    let stream = async_stream(body, mode);
    Response::builder()
        .status(status)
        .header("content-length", len)
        .header("accept-ranges", "bytes")
        .body(Body::from_stream(stream))
        .unwrap()
}

fn async_stream(
    body: Vec<u8>,
    mode: Mode,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send {
    let chunks: Vec<Vec<u8>> = body.chunks(1 << 10).map(|c| c.to_vec()).collect();
    futures_util::stream::unfold((chunks.into_iter(), 0usize), move |(mut it, sent)| async move {
        let c = it.next()?;
        match mode {
            Mode::Truncate(n) if sent + c.len() > n => {
                Some((Err(std::io::Error::other("cut")), (Vec::new().into_iter(), usize::MAX / 2)))
            }
            Mode::Slow | Mode::Truncate(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                Some((Ok(bytes::Bytes::from(c.clone())), (it, sent + c.len())))
            }
            _ => Some((Ok(bytes::Bytes::from(c.clone())), (it, sent + c.len()))),
        }
    })
}

async fn start_server(files: Shared) -> String {
    let app = axum::Router::new().route("/b/{name}", axum::routing::get(serve)).with_state(files);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    format!("http://{addr}/b")
}

/// An image bundle and a kernel bundle made with the real commands on a
/// throwaway daemon.
async fn make_bundles(out: &Path) -> ((Vec<u8>, String), (Vec<u8>, String)) {
    let t = TestDaemon::start().await;
    let d = &t.daemon;
    let v = fake_vmlinux(t.dir.path());
    d.import_kernel(ImportKernelRequest { name: "k".into(), vmlinux: v.display().to_string(), initrd: None })
        .await
        .unwrap();
    let root = t.dir.path().join("root");
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=test\n").unwrap();
    let rootfs = t.dir.path().join("r.ext4");
    banger_image::ext4::mkfs_from_dir(&rootfs, Some(&root), 64, "t").unwrap();
    d.register_image(banger_api::RegisterImageRequest {
        name: "img".into(),
        rootfs: rootfs.display().to_string(),
        kernel: "k".into(),
    })
    .await
    .unwrap();
    let ib = d
        .bundle_image(
            "img",
            BundleRequest { output: out.join("img.tar.zst").display().to_string(), url: None },
        )
        .await
        .unwrap();
    assert!(ib.catalog_entry.contains("url = \"img.tar.zst\""), "{}", ib.catalog_entry);
    let kb = d
        .bundle_kernel("k", BundleRequest { output: out.join("k.tar.zst").display().to_string(), url: None })
        .await
        .unwrap();
    assert_eq!(
        d.bundle_image(
            "img",
            BundleRequest { output: out.join("img.tar.zst").display().to_string(), url: None }
        )
        .await
        .unwrap_err()
        .code,
        ErrorCode::Conflict
    );
    t.stop().await;
    (
        (std::fs::read(out.join("img.tar.zst")).unwrap(), ib.sha256),
        (std::fs::read(out.join("k.tar.zst")).unwrap(), kb.sha256),
    )
}

/// Nothing but published entries in the store's image dir.
fn no_staging(d: &bangerd::service::Daemon) {
    for dir in [d.paths.images_dir(), d.paths.kernels_dir()] {
        for e in std::fs::read_dir(&dir).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!n.starts_with('.'), "left behind: {}/{n}", dir.display());
        }
    }
    if let Ok(rd) = std::fs::read_dir(d.paths.cache_dir.join("unpack")) {
        assert_eq!(rd.count(), 0, "scratch dirs left in the cache");
    }
}

#[tokio::test]
async fn catalog_pulls_verify_resume_and_coalesce() {
    if !e2fsprogs() {
        banger_testkit::skip("catalog_pulls_verify_resume_and_coalesce", "e2fsprogs not installed");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ((img, img_sha), (kern, kern_sha)) = make_bundles(work.path()).await;
    let files: Shared = Arc::default();
    let base = start_server(files.clone()).await;
    {
        let mut f = files.lock().unwrap();
        f.files.insert("img.tar.zst".into(), (img.clone(), Mode::Normal));
        f.files.insert("slow.tar.zst".into(), (img.clone(), Mode::Slow));
        f.files.insert("cut.tar.zst".into(), (img.clone(), Mode::Truncate(img.len() / 2)));
        f.files.insert("k.tar.zst".into(), (kern.clone(), Mode::Normal));
        let mut bad = img.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0xff;
        f.files.insert("corrupt.tar.zst".into(), (bad, Mode::Normal));
    }
    // A hostile bundle: an extra member next to the expected ones.
    let hostile = {
        let p = work.path().join("hostile.tar.zst");
        let enc = zstd::stream::write::Encoder::new(std::fs::File::create(&p).unwrap(), 1).unwrap();
        let mut t = tar::Builder::new(enc);
        for name in ["rootfs.ext4", "manifest.json", "../../evil"] {
            let mut h = tar::Header::new_old();
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(1);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_cksum();
            t.append(&h, &b"x"[..]).unwrap();
        }
        t.into_inner().unwrap().finish().unwrap();
        std::fs::read(&p).unwrap()
    };
    let hostile_sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&hostile));
    files.lock().unwrap().files.insert("hostile.tar.zst".into(), (hostile, Mode::Normal));

    let cat = work.path().join("catalog.toml");
    let entry = |name: &str, file: &str, sha: &str, kernel: Option<&str>| {
        format!(
            "[[{}]]\nname = \"{name}\"\nurl = \"{base}/{file}\"\nsha256 = \"{sha}\"\n{}",
            if kernel.is_some() { "image" } else { "kernel" },
            kernel.map(|k| format!("kernel = \"{k}\"\n")).unwrap_or_default()
        )
    };
    let text = [
        "version = 1\n".to_string(),
        entry("team-k", "k.tar.zst", &kern_sha, None),
        entry("good", "img.tar.zst", &img_sha, Some("team-k")),
        entry("slow", "slow.tar.zst", &img_sha, Some("team-k")),
        entry("cut", "cut.tar.zst", &img_sha, Some("team-k")),
        entry("corrupt", "corrupt.tar.zst", &img_sha, Some("team-k")),
        entry("hostile", "hostile.tar.zst", &hostile_sha, Some("team-k")),
        entry("gone", "missing.tar.zst", &img_sha, Some("team-k")),
    ]
    .concat();
    std::fs::write(&cat, text).unwrap();
    let t = TestDaemon::start_with(|c| {
        c.catalogs = vec![
            CatalogSource::File(cat.clone()),
            CatalogSource::Url("http://127.0.0.1:9/unreachable.toml".into()),
        ];
    })
    .await;
    let d = &t.daemon;
    let p = Progress::none();

    // The catalog lists everything as available; an unreachable catalog is a warning.
    let view = d.list_catalog().await.unwrap();
    let good = view.entries.iter().find(|e| e.name == "good").unwrap();
    assert_eq!((good.state.as_str(), good.kind.as_str()), ("available", "image"));
    assert!(view.entries.iter().any(|e| e.name == "debian-bookworm" && e.origin == "embedded"));
    assert_eq!(view.warnings.len(), 1, "{:?}", view.warnings);

    // A good pull brings its kernel along.
    let pull = |r: &str| PullImageRequest { reference: r.into(), ..Default::default() };
    let i = d.pull_image(pull("good"), &p).await.unwrap();
    assert_eq!(i.kernel, "team-k");
    assert!(i.source.starts_with("catalog:"));
    assert_eq!(
        d.show_kernel("team-k").unwrap().sha256,
        banger_fs::sha256_file(&fake_vmlinux(work.path())).unwrap()
    );
    assert!(banger_image::ext4::is_ext4(Path::new(&i.rootfs_path)).unwrap());
    let view = d.list_catalog().await.unwrap();
    assert_eq!(view.entries.iter().find(|e| e.name == "good").unwrap().state, "pulled");
    // Pulling again returns the same image.
    assert_eq!(d.pull_image(pull("good"), &p).await.unwrap().id, i.id);

    // Corrupt: checksum refused, nothing published, the bad download gone.
    let e = d.pull_image(pull("corrupt"), &p).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::InvalidArgument, "{e:?}");
    assert!(e.message.contains("sha256"), "{}", e.message);
    assert!(d.show_image("corrupt").is_err());

    // Hostile members: refused, nothing published, nothing written outside.
    let e = d.pull_image(pull("hostile"), &p).await.unwrap_err();
    assert!(e.message.contains("unexpected member"), "{}", e.message);
    assert!(d.show_image("hostile").is_err());
    assert!(!t.dir.path().join("evil").exists() && !d.paths.state_dir.join("evil").exists());

    // Missing on the server: unavailable, with the URL.
    let e = d.pull_image(pull("gone"), &p).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable);
    assert!(e.message.contains("missing.tar.zst"), "{}", e.message);

    // Truncated: fails, keeps the part; the next pull resumes with a Range.
    let e = d.pull_image(pull("cut"), &p).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::Unavailable, "{e:?}");
    assert!(d.show_image("cut").is_err());
    files.lock().unwrap().files.get_mut("cut.tar.zst").unwrap().1 = Mode::Normal;
    d.pull_image(pull("cut"), &p).await.unwrap();
    let ranges: Vec<_> =
        files.lock().unwrap().log.iter().filter(|(n, _)| n == "cut.tar.zst").cloned().collect();
    assert_eq!(ranges.len(), 2);
    let resumed_at: usize =
        ranges[1].1.as_deref().unwrap().trim_start_matches("bytes=").trim_end_matches('-').parse().unwrap();
    assert!(resumed_at > 0 && resumed_at <= img.len() / 2, "resumed at {resumed_at}");

    // Two concurrent pulls of one name download once and agree.
    let (a, b) = tokio::join!(d.pull_image(pull("slow"), &p), d.pull_image(pull("slow"), &p));
    assert_eq!(a.unwrap().id, b.unwrap().id);
    let gets = files.lock().unwrap().log.iter().filter(|(n, _)| n == "slow.tar.zst").count();
    assert_eq!(gets, 1);

    // Kernel pulls by name; unknown names say where to look.
    d.delete_image("good").await.unwrap();
    let e = d.pull_kernel(PullKernelRequest { name: "nope".into() }, &p).await;
    assert_eq!(e.unwrap_err().code, ErrorCode::NotFound);
    let e = d.pull_image(pull("nope"), &p).await.unwrap_err();
    assert_eq!(e.code, ErrorCode::NotFound);
    assert!(e.hint.unwrap().contains("--available"));

    no_staging(d);
    // Successful downloads are not kept; prune reports what is left.
    let pr = d.prune_image_cache(banger_api::PruneCacheRequest { dry_run: true }).await.unwrap();
    assert_eq!(pr.files, 0, "{pr:?}");
    t.stop().await;
}

#[tokio::test]
async fn default_image_appears_on_its_own() {
    if !e2fsprogs() {
        banger_testkit::skip("default_image_appears_on_its_own", "e2fsprogs not installed");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let ((img, img_sha), (kern, kern_sha)) = make_bundles(work.path()).await;
    // A file catalog with bundles beside it (relative URLs).
    std::fs::write(work.path().join("i.tar.zst"), &img).unwrap();
    std::fs::write(work.path().join("k2.tar.zst"), &kern).unwrap();
    let cat = work.path().join("catalog.toml");
    std::fs::write(
        &cat,
        format!(
            "version = 1\n[[kernel]]\nname = \"dk\"\nurl = \"k2.tar.zst\"\nsha256 = \"{kern_sha}\"\n\
             [[image]]\nname = \"dimg\"\nurl = \"i.tar.zst\"\nsha256 = \"{img_sha}\"\nkernel = \"dk\"\n"
        ),
    )
    .unwrap();
    let t = TestDaemon::start_with(|c| {
        c.catalogs = vec![CatalogSource::File(cat.clone())];
        c.default_image = "dimg".into();
        c.default_kernel = "dk".into();
    })
    .await;
    let d = &t.daemon;
    let req = banger_api::CreateVmRequest { name: Some("v".into()), no_start: true, ..Default::default() };
    let vm = d.create_vm(req, &Progress::none()).await.unwrap();
    assert_eq!((vm.image.as_str(), vm.kernel.as_str()), ("dimg", "dk"));
    assert!(d.show_image("dimg").unwrap().source.starts_with("catalog:"));
    // A missing non-default image still fails before anything changes.
    let req =
        banger_api::CreateVmRequest { image: Some("nope".into()), no_start: true, ..Default::default() };
    assert_eq!(d.create_vm(req, &Progress::none()).await.unwrap_err().code, ErrorCode::NotFound);
    assert_eq!(d.list_vms().unwrap().len(), 1);
    t.stop().await;
}
