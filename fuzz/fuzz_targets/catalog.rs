//! Catalog TOML from the network: any text parses or fails, never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(entries) = bangerd::catalog::parse(text, "fuzz", Some("https://example.org/catalog.toml")) {
            for e in entries {
                if let Some((url, _)) = e.bundle {
                    assert!(!url.starts_with("file:"), "a remote catalog named a local file: {url}");
                }
            }
        }
    }
});
