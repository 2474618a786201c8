//! The CLI replaces a daemon of another build.

use crate::env::Env;
use std::io::{BufRead, BufReader, Write};

/// A stand-in for an old daemon: answers /v1/version with a foreign build id
/// and exits on /v1/daemon/shutdown, as a real one would.
fn fake_old_daemon(sock: std::path::PathBuf) -> std::thread::JoinHandle<bool> {
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let mut conn = conn.unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            reader.read_line(&mut request_line).unwrap();
            let mut len = 0usize;
            loop {
                let mut h = String::new();
                reader.read_line(&mut h).unwrap();
                if h == "\r\n" || h.is_empty() {
                    break;
                }
                if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0u8; len];
            std::io::Read::read_exact(&mut reader, &mut body).unwrap();
            let shutdown = request_line.contains("/v1/daemon/shutdown");
            let json = if shutdown {
                "{\"stopping\":true}".to_string()
            } else {
                format!(
                    "{{\"version\":\"0.0.1\",\"commit\":\"old\",\"build_id\":\"0.0.1+old\",\"pid\":1,\"socket\":\"{}\",\"log_path\":\"x\",\"state_dir\":\"x\",\"started_at\":\"2020-01-01T00:00:00Z\"}}",
                    sock.display()
                )
            };
            write!(conn, "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{json}", json.len()).unwrap();
            if shutdown {
                std::fs::remove_file(&sock).unwrap();
                return true;
            }
        }
        false
    })
}

#[test]
fn a_daemon_of_another_build_is_replaced() {
    let e = Env::new();
    banger_paths::ensure_private_dir(&e.runtime_dir()).unwrap();
    let old = fake_old_daemon(e.runtime_dir().join("bangerd.sock"));
    let r = e.ok(&["daemon", "status", "--json"]);
    assert_eq!(r.json()["daemon"]["build_id"], "0.0.1+old", "status must not replace anything");
    let r = e.ok(&["ps"]);
    assert!(r.stderr.contains("replacing daemon of build 0.0.1+old"), "{}", r.stderr);
    assert!(old.join().unwrap(), "the old daemon was not asked to shut down");
    let st = e.ok(&["daemon", "status", "--json"]).json();
    assert_eq!(st["daemon"]["build_id"], banger_api::build_id());
}
