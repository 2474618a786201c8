//! OCI layers from a registry: whatever the layer, nothing outside the
//! image root changes, and the size limit holds.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let d = tempfile::tempdir().unwrap();
    let root = d.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let mut f = banger_image::flatten::Flattener::with_limit(&root, 1 << 20);
    let _ = f.apply_layer(data);
    let _ = f.apply_layer(data);
    let _ = f.finish();
    let beside: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(beside.iter().all(|n| n == "root"), "written beside the root: {beside:?}");
});
