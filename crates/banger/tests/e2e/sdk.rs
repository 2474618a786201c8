//! The Python SDK (sdk/python) against a real daemon and real guests: its
//! pytest suite, with `BANGER_BIN` pointing at this test's banger.

use crate::harness::E2e;
use crate::mcp::{banger_argv, python};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

/// Single-quotes `s` for sh.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn the_python_sdk_drives_real_sandboxes() {
    let test = "e2e test sdk::the_python_sdk_drives_real_sandboxes";
    let Some(py) = python() else {
        banger_testkit::skip(test, "no Python test environment (run scripts/python-env)");
        return;
    };
    let Some(e) = E2e::new("sdk::the_python_sdk_drives_real_sandboxes") else { return };
    // The SDK finds the daemon by running `banger daemon start --json`:
    // this wrapper is that banger, in the test's namespace and dirs.
    let (argv, env) = banger_argv(&e, &[]);
    let mut script = String::from("#!/bin/sh\n");
    for (k, v) in &env {
        script.push_str(&format!("export {k}={}\n", sh_quote(v)));
    }
    script.push_str("exec");
    for a in &argv {
        script.push(' ');
        script.push_str(&sh_quote(a));
    }
    script.push_str(" \"$@\"\n");
    let wrapper = e.dir.path().join("banger-wrapper");
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();

    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk/python");
    let out = Command::new(&py)
        .args(["-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", "tests"])
        .current_dir(&sdk)
        .env("PYTHONPATH", &sdk)
        .env("BANGER_SDK_LIVE", "1")
        .env("BANGER_BIN", &wrapper)
        .env_remove("BANGER_SOCKET")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the SDK's tests failed:\n{stdout}");
    assert!(!stdout.contains("skipped"), "the live tests must run here:\n{stdout}");
    let left = e.ok(&["vm", "list", "--json"]).json();
    assert_eq!(left, serde_json::json!([]), "the SDK tests delete what they make");
}
