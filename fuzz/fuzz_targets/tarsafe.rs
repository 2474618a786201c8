//! Tar streams from a guest (`vm cp VM:PATH DIR`) and from the host (the
//! agent's side): whatever the archive, nothing is written beside the
//! destination.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let d = tempfile::tempdir().unwrap();
    let dest = d.path().join("dest");
    let _ = banger_agent_proto::tarsafe::unpack_from_guest(&dest, data, "/root/proj", None);
    let _ = banger_agent_proto::tarsafe::unpack_from_guest(&dest, data, "/root/proj", Some("copy"));
    let _ = banger_agent_proto::tarsafe::unpack(&dest, data, None, None);
    let beside: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(beside.iter().all(|n| n == "dest"), "written beside the destination: {beside:?}");
});
