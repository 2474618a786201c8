//! API request bodies: whatever a local client sends, parsing and the
//! checks the daemon applies first give a value or an error, never a panic.
#![no_main]
use banger_api::validate;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = serde_json::from_slice::<banger_api::CreateVmRequest>(data) {
        if let Some(n) = &r.name {
            let _ = validate::vm_name(n);
        }
        if let Some(i) = &r.image {
            let _ = validate::object_name(i, "image");
        }
        let _ = r.vcpu.map(validate::vcpu);
        let _ = r.memory_mib.map(validate::memory_mib);
        let _ = r.disk_size_mib.map(validate::disk_size_mib);
    }
    let _ = serde_json::from_slice::<banger_api::SetVmRequest>(data);
    let _ = serde_json::from_slice::<banger_api::PullImageRequest>(data);
    let _ = serde_json::from_slice::<banger_api::RegisterImageRequest>(data);
    let _ = serde_json::from_slice::<banger_api::ImportKernelRequest>(data);
    let _ = serde_json::from_slice::<banger_api::BuildKernelRequest>(data);
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = validate::parse_size_mib(s);
    }
});
