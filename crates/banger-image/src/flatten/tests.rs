use super::*;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum E {
    Dir(String),
    File(String, Vec<u8>),
    Symlink(String, String),
    Hardlink(String, String),
}

/// A tar layer written byte by byte, so hostile names get through.
fn layer(entries: &[E]) -> Vec<u8> {
    let mut t = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_old();
        let (name, kind, data, link): (&str, _, &[u8], Option<&str>) = match e {
            E::Dir(n) => (n, tar::EntryType::Directory, b"", None),
            E::File(n, d) => (n, tar::EntryType::Regular, d, None),
            E::Symlink(n, l) => (n, tar::EntryType::Symlink, b"", Some(l)),
            E::Hardlink(n, l) => (n, tar::EntryType::Link, b"", Some(l)),
        };
        let old = h.as_old_mut();
        old.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            old.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_entry_type(kind);
        h.set_size(data.len() as u64);
        h.set_mode(if kind == tar::EntryType::Directory { 0o750 } else { 0o644 });
        h.set_cksum();
        t.append(&h, data).unwrap();
    }
    t.into_inner().unwrap()
}

fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(root).unwrap().display().to_string();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                stack.push(e.path());
                out.push(format!("{rel}/"));
            } else if ft.is_symlink() {
                out.push(format!("{rel} -> {}", std::fs::read_link(e.path()).unwrap().display()));
            } else {
                out.push(rel);
            }
        }
    }
    out.sort();
    out
}

/// Issue 14, item 12: a layer that inflates past the limit is refused
/// (here 1 MiB of zeros, 64 KiB allowed), and so is one with too much
/// in total over several layers.
#[test]
fn a_decompression_bomb_is_refused() {
    let d = tempfile::tempdir().unwrap();
    let big = {
        use std::io::Write;
        let data = layer(&[E::File("zeros".into(), vec![0u8; 1 << 20])]);
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        g.write_all(&data).unwrap();
        g.finish().unwrap()
    };
    assert!(big.len() < 8 << 10, "the bomb is small: {}", big.len());
    let mut f = Flattener::with_limit(d.path(), 64 << 10);
    let e = f.apply_layer(&big[..]).unwrap_err();
    assert!(format!("{e:#}").contains("max_unpacked_mib"), "{e:#}");
    let d = tempfile::tempdir().unwrap();
    let mut f = Flattener::with_limit(d.path(), 100);
    f.apply_layer(&layer(&[E::File("a".into(), vec![1u8; 60])])[..]).unwrap();
    assert!(f.apply_layer(&layer(&[E::File("b".into(), vec![1u8; 60])])[..]).is_err());
}

#[test]
fn whiteouts_and_opaque_dirs() {
    let d = tempfile::tempdir().unwrap();
    let mut f = Flattener::new(d.path());
    f.apply_layer(
        &layer(&[
            E::Dir("opt".into()),
            E::File("opt/a".into(), b"a".to_vec()),
            E::File("opt/b".into(), b"b".to_vec()),
            E::Dir("data".into()),
            E::File("data/old".into(), b"old".to_vec()),
            E::Symlink("lib".into(), "usr/lib".into()),
            E::Dir("usr/lib".into()),
        ])[..],
    )
    .unwrap();
    let gz = {
        use std::io::Write;
        let mut g = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        g.write_all(&layer(&[
            E::File("opt/.wh.a".into(), vec![]),
            E::Dir("data".into()),
            E::File("data/.wh..wh..opq".into(), vec![]),
            E::File("data/new".into(), b"new".to_vec()),
            E::File("lib/libx.so".into(), b"x".to_vec()),
            E::Hardlink("opt/c".into(), "opt/b".into()),
        ]))
        .unwrap();
        g.finish().unwrap()
    };
    let st = f.apply_layer(&gz[..]).unwrap();
    assert_eq!(st.whiteouts, 2);
    f.finish().unwrap();
    assert_eq!(
        tree(d.path()),
        vec![
            "data/",
            "data/new",
            "lib -> usr/lib",
            "opt/",
            "opt/b",
            "opt/c",
            "usr/",
            "usr/lib/",
            "usr/lib/libx.so"
        ]
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        std::fs::metadata(d.path().join("opt/b")).unwrap().ino(),
        std::fs::metadata(d.path().join("opt/c")).unwrap().ino()
    );
}

#[test]
fn escapes_are_refused_or_contained() {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut f = Flattener::new(&root);
    assert!(f.apply_layer(&layer(&[E::File("../x".into(), b"x".to_vec())])[..]).is_err());
    assert!(f.apply_layer(&layer(&[E::File("/x".into(), b"x".to_vec())])[..]).is_err());
    assert!(f.apply_layer(&layer(&[E::Hardlink("h".into(), "../../etc/passwd".into())])[..]).is_err());
    // A symlink to / or far up is followed inside the root only.
    f.apply_layer(
        &layer(&[
            E::Symlink("up".into(), "../../..".into()),
            E::Symlink("abs".into(), d.path().display().to_string()),
            E::File("up/etc-x".into(), b"1".to_vec()),
            E::File("abs/y".into(), b"2".to_vec()),
            E::Symlink("loop".into(), "loop".into()),
        ])[..],
    )
    .unwrap();
    assert!(f.apply_layer(&layer(&[E::File("loop/z".into(), vec![])])[..]).is_err());
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 1, "something was written beside the root");
    assert!(root.join("etc-x").is_file());
    assert!(root.join(d.path().strip_prefix("/").unwrap()).join("y").is_file());
}

/// A layer that makes `a/x` 0777 and then turns `a` into a symlink to a
/// host directory must leave that directory's `x` alone: modes are
/// applied inside the root, never through a link (issue 14, item 1).
#[test]
fn a_directory_mode_never_lands_through_a_later_symlink() {
    let d = tempfile::tempdir().unwrap();
    let (root, host) = (d.path().join("root"), d.path().join("host"));
    std::fs::create_dir(&root).unwrap();
    std::fs::create_dir_all(host.join("x")).unwrap();
    std::fs::set_permissions(host.join("x"), std::fs::Permissions::from_mode(0o700)).unwrap();
    let mut f = Flattener::new(&root);
    let mut t = tar::Builder::new(Vec::new());
    for (name, kind, mode, link) in [
        ("a/", tar::EntryType::Directory, 0o755, None),
        ("a/x/", tar::EntryType::Directory, 0o777, None),
        ("a", tar::EntryType::Symlink, 0o777, Some(host.display().to_string())),
    ] {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(0);
        if let Some(l) = link {
            h.set_link_name(l).unwrap();
        }
        t.append_data(&mut h, name, &[][..]).unwrap();
    }
    f.apply_layer(&t.into_inner().unwrap()[..]).unwrap();
    f.finish().unwrap();
    let mode = std::fs::metadata(host.join("x")).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o700, "the host directory's mode was changed through the symlink");
    assert!(std::fs::symlink_metadata(root.join("a")).unwrap().file_type().is_symlink());
}

/// Entry names: mostly a few short ones, so that entries meet (a
/// directory, then a link in its place), and any of the hostile forms.
fn name() -> impl Strategy<Value = String> {
    let short = prop_oneof!["a", "a/x", "x", "b"].prop_map(String::from);
    prop_oneof![2 => short, 1 => any_name()]
}

fn any_name() -> impl Strategy<Value = String> {
    let comp = prop_oneof!["a", "b", "x", "..", ".", "evil", ".wh.a", ".wh..wh..opq"];
    (any::<bool>(), prop::collection::vec(comp, 1..4)).prop_map(|(abs, c)| {
        let p = c.join("/");
        if abs {
            format!("/{p}")
        } else {
            p
        }
    })
}

fn entry() -> impl Strategy<Value = E> {
    let target = prop_oneof![
        Just("/".to_string()),
        Just("..".to_string()),
        Just("../../..".to_string()),
        Just("/outside".to_string()),
        Just("../outside".to_string()),
        // The host path of the directory beside the root (see
        // `hostile_layers_never_write_outside`).
        Just(OUTSIDE.to_string()),
        Just(format!("{OUTSIDE}/x")),
        Just("a".to_string()),
        name()
    ];
    prop_oneof![
        name().prop_map(E::Dir),
        name().prop_map(|n| E::File(n, b"data".to_vec())),
        (name(), target.clone()).prop_map(|(n, t)| E::Symlink(n, t)),
        (name(), target).prop_map(|(n, t)| E::Hardlink(n, t)),
    ]
}

/// Stands for the host path of the directory beside the root in
/// symlink targets.
const OUTSIDE: &str = "@OUTSIDE";

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    /// Whatever the layers say, nothing outside the root changes: no
    /// entry, no content, no mode, even through symlinks that name the
    /// host directory beside the root.
    #[test]
    fn hostile_layers_never_write_outside(layers in prop::collection::vec(prop::collection::vec(entry(), 1..12), 1..4)) {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("root");
        let outside = d.path().join("outside");
        std::fs::create_dir(&root).unwrap();
        std::fs::create_dir_all(outside.join("x")).unwrap();
        std::fs::write(outside.join("keep"), b"keep").unwrap();
        for (p, mode) in [(outside.join("x"), 0o700), (outside.join("keep"), 0o600)] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let host = outside.display().to_string();
        let mut f = Flattener::new(&root);
        for l in &layers {
            let l: Vec<E> = l
                .iter()
                .map(|e| match e {
                    E::Symlink(n, t) => E::Symlink(n.clone(), t.replace(OUTSIDE, &host)),
                    e => e.clone(),
                })
                .collect();
            let _ = f.apply_layer(&layer(&l)[..]);
        }
        let _ = f.finish();
        prop_assert_eq!(tree(&outside), vec!["keep".to_string(), "x/".to_string()]);
        prop_assert_eq!(std::fs::read(outside.join("keep")).unwrap(), b"keep");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        prop_assert_eq!(mode(&outside.join("x")), 0o700);
        prop_assert_eq!(mode(&outside.join("keep")), 0o600);
        prop_assert_eq!(mode(&outside), 0o755);
        let mut beside: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        beside.sort();
        prop_assert_eq!(beside, vec![OsString::from("outside"), OsString::from("root")]);
    }
}
