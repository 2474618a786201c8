//! The real agent binary, serving on a Unix socket on the host, driven with
//! the same client code the daemon and CLI use.

use banger_agent_proto::client::{call, exec_collect, get_tar, put_tar, CallError};
use banger_agent_proto::{
    read_frame, write_frame, write_json, ExecRequest, Health, Kind, Op, PortInfo, Request, SignalRequest,
};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;
use tokio::net::UnixStream;

struct Agent {
    child: Child,
    sock: PathBuf,
    _dir: tempfile::TempDir,
}

impl Agent {
    fn start() -> Agent {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("agent.sock");
        let child =
            Command::new(env!("CARGO_BIN_EXE_banger-agent")).arg("--listen-unix").arg(&sock).spawn().unwrap();
        // Generous: under a loaded test run, starting a process can be slow.
        for _ in 0..1000 {
            if sock.exists() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Agent { child, sock, _dir: dir }
    }

    async fn conn(&self) -> UnixStream {
        // The socket file appears at bind(), a moment before listen().
        let mut tries = 0;
        loop {
            match UnixStream::connect(&self.sock).await {
                Ok(s) => return s,
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused && tries < 500 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Err(e) => panic!("connect {}: {e}", self.sock.display()),
            }
        }
    }

    async fn exec(&self, argv: &[&str], stdin: &[u8]) -> (Vec<u8>, Vec<u8>, i32) {
        let req = ExecRequest { argv: argv.iter().map(|s| s.to_string()).collect(), ..Default::default() };
        let (o, e, s) = exec_collect(self.conn().await, req, stdin)
            .await
            .unwrap_or_else(|e| panic!("exec {argv:?}: {e}"));
        (o, e, s.shell_code())
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn health_and_version_check() {
    let a = Agent::start();
    let h: Health = serde_json::from_value(call(&mut a.conn().await, Op::Health).await.unwrap()).unwrap();
    assert_eq!(h.protocol, banger_agent_proto::PROTOCOL_VERSION);
    // A request of another protocol version is refused with a message.
    let mut s = a.conn().await;
    write_json(&mut s, Kind::Request, &Request { v: 99, op: Op::Health }).await.unwrap();
    let f = read_frame(&mut s).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&f.payload).contains("protocol version 99"));
    // Garbage does not kill the agent.
    let mut s = a.conn().await;
    write_frame(&mut s, Kind::Request, b"{nonsense").await.unwrap();
    let f = read_frame(&mut s).await.unwrap().unwrap();
    assert!(String::from_utf8_lossy(&f.payload).contains("bad request"));
    call(&mut a.conn().await, Op::Health).await.unwrap();
}

#[tokio::test]
async fn exit_codes_and_streams() {
    let a = Agent::start();
    assert_eq!(a.exec(&["true"], b"").await.2, 0);
    assert_eq!(a.exec(&["false"], b"").await.2, 1);
    assert_eq!(a.exec(&["sh", "-c", "exit 3"], b"").await.2, 3);
    assert_eq!(a.exec(&["sh", "-c", "kill -9 $$"], b"").await.2, 137);
    let (out, err, code) = a.exec(&["sh", "-c", "echo out; echo err >&2; echo out2"], b"").await;
    assert_eq!((out.as_slice(), err.as_slice(), code), (&b"out\nout2\n"[..], &b"err\n"[..], 0));
    let (out, _, _) = a.exec(&["sha256sum"], b"data").await;
    assert!(String::from_utf8_lossy(&out)
        .starts_with("3a6eb0790f39ac87c94f3856b2dd2c5d110e6811602261a9a923d3bb23adc8b7"));
    // A missing command is an error answer, not a hang.
    let req = ExecRequest { argv: vec!["no-such-command-here".into()], ..Default::default() };
    match exec_collect(a.conn().await, req, b"").await {
        Err(CallError::Agent(m)) => assert!(m.contains("not found"), "{m}"),
        other => panic!("expected an agent error, got {other:?}"),
    }
    let req =
        ExecRequest { argv: vec!["true".into()], cwd: Some("/no/such/dir".into()), ..Default::default() };
    assert!(matches!(exec_collect(a.conn().await, req, b"").await, Err(CallError::Agent(_))));
}

#[tokio::test]
async fn large_output_arrives_whole_and_in_order() {
    let a = Agent::start();
    // 64 MiB through stdout, checked against its digest taken in the guest.
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("blob");
    let script = format!("head -c 67108864 /dev/urandom > {0}; cat {0}; sha256sum < {0} >&2", f.display());
    let (out, err, code) = a.exec(&["sh", "-c", &script], b"").await;
    assert_eq!(code, 0);
    assert_eq!(out.len(), 64 << 20);
    use sha2::Digest;
    let digest = hex::encode(sha2::Sha256::digest(&out));
    assert!(String::from_utf8_lossy(&err).starts_with(&digest), "stdout was corrupted in transit");
    // Large stdin round trip.
    let input: Vec<u8> = (0..(8u32 << 20)).map(|i| (i * 7 % 251) as u8).collect();
    let (out, _, _) = a.exec(&["cat"], &input).await;
    assert!(out == input, "stdin/stdout round trip corrupted {} bytes", input.len());
}

#[tokio::test]
async fn env_cwd_timeout_and_signals() {
    let a = Agent::start();
    let req = ExecRequest {
        argv: vec!["sh".into(), "-c".into(), "echo $FOO; pwd".into()],
        env: vec![("FOO".into(), "bar baz".into())],
        cwd: Some("/tmp".into()),
        ..Default::default()
    };
    let (out, _, _) = exec_collect(a.conn().await, req, b"").await.unwrap();
    assert_eq!(String::from_utf8_lossy(&out), "bar baz\n/tmp\n");

    let req =
        ExecRequest { argv: vec!["sleep".into(), "30".into()], timeout_ms: Some(200), ..Default::default() };
    let t = std::time::Instant::now();
    let (_, _, status) = exec_collect(a.conn().await, req, b"").await.unwrap();
    assert!(status.timed_out);
    assert_eq!(status.shell_code(), 124);
    assert!(t.elapsed() < Duration::from_secs(5));

    // A Signal frame reaches the process group.
    let s = a.conn().await;
    let (mut rd, mut wr) = tokio::io::split(s);
    let req = ExecRequest { argv: vec!["sleep".into(), "30".into()], ..Default::default() };
    write_json(&mut wr, Kind::Request, &Request::new(Op::Exec(req))).await.unwrap();
    let _started = read_frame(&mut rd).await.unwrap().unwrap();
    write_json(&mut wr, Kind::Signal, &SignalRequest { signal: 15 }).await.unwrap();
    loop {
        let f = read_frame(&mut rd).await.unwrap().unwrap();
        if f.kind == Kind::Exit {
            let st: banger_agent_proto::ExitStatus = f.json().unwrap();
            assert_eq!(st.shell_code(), 143);
            break;
        }
    }
}

#[tokio::test]
async fn pty_exec_sees_a_terminal() {
    let a = Agent::start();
    let req = ExecRequest {
        argv: vec!["sh".into(), "-c".into(), "test -t 0 && test -t 1 && stty size".into()],
        tty: true,
        size: Some(banger_agent_proto::WindowSize { rows: 33, cols: 101 }),
        ..Default::default()
    };
    let (out, err, status) = exec_collect(a.conn().await, req, b"").await.unwrap();
    assert!(err.is_empty());
    assert_eq!(status.shell_code(), 0, "{}", String::from_utf8_lossy(&out));
    assert!(String::from_utf8_lossy(&out).contains("33 101"), "{}", String::from_utf8_lossy(&out));
}

fn tar_of(dir: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    b.follow_symlinks(false);
    b.append_dir_all("tree", dir).unwrap();
    b.into_inner().unwrap()
}

#[tokio::test]
async fn files_round_trip_with_modes_symlinks_and_mtimes() {
    use std::os::unix::fs::PermissionsExt;
    let a = Agent::start();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/run.sh"), "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(src.path().join("sub/run.sh"), std::fs::Permissions::from_mode(0o750)).unwrap();
    std::fs::write(src.path().join("data"), vec![5u8; 3 << 20]).unwrap();
    std::os::unix::fs::symlink("sub/run.sh", src.path().join("link")).unwrap();
    let old = std::time::UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    std::fs::File::options().write(true).open(src.path().join("data")).unwrap().set_modified(old).unwrap();

    let dest = tempfile::tempdir().unwrap();
    let tarball = tar_of(src.path());
    let r = put_tar(a.conn().await, dest.path().to_str().unwrap(), None, tarball.as_slice(), |_| {})
        .await
        .unwrap();
    assert!(r.entries >= 5);
    let t = dest.path().join("tree");
    assert_eq!(std::fs::metadata(t.join("sub/run.sh")).unwrap().permissions().mode() & 0o777, 0o750);
    assert_eq!(std::fs::read_link(t.join("link")).unwrap(), Path::new("sub/run.sh"));
    assert_eq!(std::fs::metadata(t.join("data")).unwrap().modified().unwrap(), old);
    assert_eq!(std::fs::read(t.join("data")).unwrap(), vec![5u8; 3 << 20]);

    // And back out again.
    let mut out = Vec::new();
    get_tar(a.conn().await, t.to_str().unwrap(), &mut out, |_| {}).await.unwrap();
    let back = tempfile::tempdir().unwrap();
    tar::Archive::new(out.as_slice()).unpack(back.path()).unwrap();
    assert_eq!(std::fs::read(back.path().join("tree/data")).unwrap().len(), 3 << 20);
    assert!(std::fs::symlink_metadata(back.path().join("tree/link")).unwrap().file_type().is_symlink());
    // A missing path is an error answer.
    assert!(matches!(
        get_tar(a.conn().await, "/no/such/path", Vec::new(), |_| {}).await,
        Err(CallError::Agent(_))
    ));
}

/// Builds a tar whose single entry has exactly `path` (bypassing the tar
/// crate's own checks on the writing side).
fn hostile_tar(path: &str, kind: tar::EntryType, link: Option<&str>) -> Vec<u8> {
    let mut h = tar::Header::new_gnu();
    {
        let raw = h.as_old_mut();
        raw.name[..path.len()].copy_from_slice(path.as_bytes());
        if let Some(l) = link {
            raw.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    let body = b"pwned";
    h.set_size(if kind == tar::EntryType::Regular { body.len() as u64 } else { 0 });
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    if kind == tar::EntryType::Regular {
        let mut block = [0u8; 512];
        block[..body.len()].copy_from_slice(body);
        out.extend_from_slice(&block);
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

#[tokio::test]
async fn hostile_archives_are_refused_and_write_nothing_outside() {
    let a = Agent::start();
    let root = tempfile::tempdir().unwrap();
    let dest = root.path().join("dest");
    let outside = root.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    let cases = [
        hostile_tar("../outside/evil", tar::EntryType::Regular, None),
        hostile_tar("a/../../outside/evil", tar::EntryType::Regular, None),
        hostile_tar(&format!("{}/evil", outside.display()), tar::EntryType::Regular, None),
        hostile_tar("hard", tar::EntryType::Link, Some("../outside/target")),
    ];
    for t in cases {
        let r = put_tar(a.conn().await, dest.to_str().unwrap(), None, t.as_slice(), |_| {}).await;
        assert!(matches!(r, Err(CallError::Agent(_))), "hostile archive accepted: {r:?}");
    }
    // A symlink pointing out, then a file written through it.
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Symlink);
    h.set_size(0);
    h.set_mode(0o777);
    b.append_link(&mut h, "esc", &outside).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_size(5);
    h.set_mode(0o644);
    h.set_cksum();
    b.append_data(&mut h, "esc/evil", &b"pwned"[..]).unwrap();
    let t = b.into_inner().unwrap();
    let r = put_tar(a.conn().await, dest.to_str().unwrap(), None, t.as_slice(), |_| {}).await;
    assert!(r.is_err(), "write through an escaping symlink was accepted");
    assert_eq!(
        std::fs::read_dir(&outside).unwrap().count(),
        0,
        "something was written outside the destination"
    );
}

#[tokio::test]
async fn ports_lists_a_listener() {
    let a = Agent::start();
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let ports: Vec<PortInfo> =
        serde_json::from_value(call(&mut a.conn().await, Op::Ports).await.unwrap()).unwrap();
    let mine = ports.iter().find(|p| p.port == port && p.proto == "tcp").expect("listener not reported");
    assert_eq!(mine.address, "127.0.0.1");
    assert_eq!(mine.pid, Some(std::process::id()));
}
