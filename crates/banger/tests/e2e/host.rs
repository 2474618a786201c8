//! Host integration: opt-in NAT (rules with the VM, after a daemon crash,
//! forwarding only while needed), `vm set`, `vm stats`, `vm prune`, and
//! completion with live names.
//!
//! "Beyond the host" is a second namespace joined to the test's by a veth
//! pair, with a web server on it: nothing leaves the test's namespaces.

use crate::harness::E2e;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Outside {
    ns: String,
    server: Child,
}

impl Drop for Outside {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
    }
}

fn sh(args: &[&str]) {
    let ok = Command::new(args[0]).args(&args[1..]).status().unwrap().success();
    assert!(ok, "{args:?} failed");
}

/// A namespace at 10.99.0.2 serving HTTP on :8080, reachable from the
/// test's namespace (10.99.0.1) only.
fn outside(e: &E2e) -> Outside {
    let ns = format!("{}-out", e.netns);
    sh(&["ip", "netns", "add", &ns]);
    sh(&["ip", "-n", &e.netns, "link", "add", "vo-a", "type", "veth", "peer", "name", "vo-b", "netns", &ns]);
    sh(&["ip", "-n", &e.netns, "addr", "add", "10.99.0.1/24", "dev", "vo-a"]);
    sh(&["ip", "-n", &e.netns, "link", "set", "vo-a", "up"]);
    sh(&["ip", "-n", &ns, "addr", "add", "10.99.0.2/24", "dev", "vo-b"]);
    sh(&["ip", "-n", &ns, "link", "set", "vo-b", "up"]);
    sh(&["ip", "-n", &ns, "link", "set", "lo", "up"]);
    let dir = e.dir.path().join("www");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("index.html"), "outside\n").unwrap();
    let server = Command::new("ip")
        .args(["netns", "exec", &ns, "python3", "-m", "http.server", "-b", "10.99.0.2", "8080", "-d"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    Outside { ns, server }
}

fn in_ns(e: &E2e, args: &[&str]) -> String {
    let o = Command::new("ip").args(["netns", "exec", &e.netns]).args(args).output().unwrap();
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn reaches_outside(e: &E2e, vm: &str) -> bool {
    let r = e.run(&["vm", "exec", vm, "--", "curl", "-s", "-m", "4", "http://10.99.0.2:8080/"]);
    r.code == 0 && r.stdout == "outside\n"
}

#[test]
fn nat_is_opt_in_and_follows_the_vm() {
    let Some(e) = E2e::new("nat") else { return };
    if !Command::new("nft").arg("--version").stdout(Stdio::null()).status().is_ok_and(|s| s.success()) {
        banger_testkit::skip("e2e test nat", "nft not installed (apt-get install nftables)");
        return;
    }
    let out = outside(&e);
    e.ok(&["vm", "create", "--name", "withnat", "--nat"]);
    e.ok(&["vm", "create", "--name", "plain"]);
    let ip = e.vm("withnat")["guest_ip"].as_str().unwrap().to_string();
    assert!(reaches_outside(&e, "withnat"), "the NAT VM cannot reach the outside namespace");
    assert!(!reaches_outside(&e, "plain"), "a VM without NAT reached beyond the host");

    // Issue 14, item 9: the VM without NAT takes the NAT VM's address;
    // nothing it sends from it gets out (the outside counts what arrives).
    let count = |ns: &str| -> u64 {
        let o = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "list", "table", "ip", "seen"])
            .output()
            .unwrap();
        let t = String::from_utf8_lossy(&o.stdout).into_owned();
        t.split("packets ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap()
    };
    for rule in [
        "add table ip seen",
        "add chain ip seen input { type filter hook input priority 0; }",
        "add rule ip seen input tcp dport 8080 counter",
    ] {
        let ok = Command::new("ip")
            .args(["netns", "exec", &out.ns, "sh", "-c"])
            .arg(format!("nft '{rule}'"))
            .status()
            .unwrap()
            .success();
        assert!(ok, "nft {rule} in the outside namespace");
    }
    let before = count(&out.ns);
    let spoof = format!(
        "ip addr add {ip}/32 dev eth0; curl -s -m 3 --interface {ip} http://10.99.0.2:8080/; ip addr del {ip}/32 dev eth0; true"
    );
    e.run(&["vm", "exec", "plain", "--", "sh", "-c", &spoof]);
    assert_eq!(count(&out.ns), before, "packets from a borrowed address got out");
    assert!(reaches_outside(&e, "withnat"), "the NAT VM lost its address to the other VM");
    // Both still reach the host itself.
    let r = e.ok(&["vm", "exec", "plain", "--", "sh", "-c", "ip route | head -1"]);
    assert!(r.stdout.starts_with("default via"), "{}", r.stdout);

    let table = in_ns(&e, &["nft", "list", "table", "ip", "banger"]);
    assert!(table.contains(&format!("ip saddr {ip} oifname != \"banger0\" masquerade")), "{table}");
    assert_eq!(in_ns(&e, &["cat", "/proc/sys/net/ipv4/ip_forward"]), "1\n");

    // The daemon dies and its table is wiped: the next daemon rebuilds it.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(e.daemon_pid().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    in_ns(&e, &["nft", "delete", "table", "ip", "banger"]);
    e.ok(&["ps"]);
    assert!(in_ns(&e, &["nft", "list", "table", "ip", "banger"]).contains(&ip));
    assert!(reaches_outside(&e, "withnat"));

    // vm set: refused while running; NAT on for the plain VM after a stop.
    let r = e.run(&["vm", "set", "plain", "--nat"]);
    assert_eq!(r.code, 1);
    assert!(r.stderr.contains("stop it first"), "{}", r.stderr);
    e.ok(&["vm", "stop", "plain"]);
    let set = e.ok(&["vm", "set", "plain", "--nat", "--vcpu", "1", "--memory", "384M", "--json"]).json();
    assert_eq!(
        (set["nat"].as_bool(), set["vcpu"].as_u64(), set["memory_mib"].as_u64()),
        (Some(true), Some(1), Some(384))
    );
    e.ok(&["vm", "start", "plain"]);
    assert!(reaches_outside(&e, "plain"));
    let nproc = e.ok(&["vm", "exec", "plain", "--", "nproc"]);
    assert_eq!(nproc.stdout, "1\n");

    // Stats of a running VM.
    let st = e.ok(&["vm", "stats", "plain", "--json"]).json();
    assert!(st["rss_bytes"].as_u64().unwrap() > 16 << 20, "{st}");
    assert!(st["disk_allocated_bytes"].as_u64().unwrap() > 0, "{st}");
    assert!(st["uptime_secs"].is_u64() && st["cpu_percent"].is_f64(), "{st}");

    // Rules go with the VMs; forwarding goes back off with the last NAT VM.
    e.ok(&["vm", "stop", "withnat", "plain"]);
    assert!(!in_ns(&e, &["nft", "list", "tables"]).contains("banger"));
    assert_eq!(in_ns(&e, &["cat", "/proc/sys/net/ipv4/ip_forward"]), "0\n");

    // Completion offers the live names; prune deletes what is not running.
    let comp = Command::new("ip")
        .args(["netns", "exec", &e.netns])
        .arg(crate::harness::banger_exe())
        .args(["--", "banger", "vm", "start", ""])
        .env("COMPLETE", "fish")
        .env("XDG_RUNTIME_DIR", e.dir.path().join("run"))
        .output()
        .unwrap();
    let comp = String::from_utf8_lossy(&comp.stdout);
    assert!(comp.contains("withnat") && comp.contains("plain"), "{comp}");
    let r = e.run(&["vm", "prune"]);
    assert_eq!(r.code, 1, "prune without a terminal must ask for -f");
    let pruned = e.ok(&["vm", "prune", "-f", "--json"]).json();
    assert_eq!(pruned.as_array().unwrap().len(), 2);
    assert_eq!(e.ok(&["ps", "--json"]).json(), serde_json::json!([]));
}

fn pool(e: &E2e) -> Vec<String> {
    let mut p: Vec<String> = e.links().into_iter().filter(|l| l.starts_with("bgpool")).collect();
    p.sort();
    p
}

fn wait_pool(e: &E2e, n: usize) -> Vec<String> {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let p = pool(e);
        if p.len() == n || std::time::Instant::now() > deadline {
            return p;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn tap_pool_stays_warm_and_never_leaks() {
    let Some(e) = E2e::new("tappool") else { return };
    // The first start finds the bridge made by the daemon's start-up refill
    // (then it takes a warm tap) or makes it and its own tap; either way the
    // pool is back at 4 free taps afterwards.
    e.ok(&["vm", "create", "--name", "p1"]);
    let pooled = |vm: &str| e.vm(vm)["runtime"]["tap"].as_str().is_some_and(|t| t.starts_with("bgpool"));
    let p1_pooled = usize::from(pooled("p1"));
    assert_eq!(wait_pool(&e, 4 + p1_pooled).len(), 4 + p1_pooled, "pool not filled: {:?}", e.links());
    // The next start takes a warm tap; the pool is topped up again.
    e.ok(&["vm", "create", "--name", "p2"]);
    let tap = e.vm("p2")["runtime"]["tap"].as_str().unwrap().to_string();
    assert!(tap.starts_with("bgpool"), "p2 did not get a pool tap: {tap}");
    assert!(e.ok(&["vm", "exec", "p2", "--", "true"]).code == 0);
    let in_use = 1 + p1_pooled;
    assert_eq!(wait_pool(&e, 4 + in_use).len(), 4 + in_use, "4 free + {in_use} in use: {:?}", e.links());
    // A daemon crash: the new daemon keeps p2's tap and re-adopts the rest.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(e.daemon_pid().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    e.ok(&["ps"]);
    assert_eq!(e.vm("p2")["runtime"]["tap"], tap.as_str());
    assert_eq!(wait_pool(&e, 4 + in_use).len(), 4 + in_use, "{:?}", e.links());
    // Deleting both: p2's tap goes back or away; no VM tap is left, the pool stays at 4.
    let p1 = e.vm("p1")["id"].as_str().unwrap().to_string();
    e.ok(&["vm", "delete", "p1", "p2"]);
    let links = e.links();
    assert!(!links.contains(&format!("bg{p1}")), "{links:?}");
    assert_eq!(wait_pool(&e, 4).len(), 4, "{:?}", e.links());
}

/// Asks the daemon's DNS (127.0.0.1:53535 in the test's namespace) for
/// `name`; returns the response code and the A records.
fn resolve(e: &E2e, name: &str) -> (String, Vec<String>) {
    use hickory_proto::op::{Message, Query};
    use hickory_proto::rr::{Name, RData, RecordType};
    let ns_path = format!("/var/run/netns/{}", e.netns);
    let name = name.to_string();
    std::thread::spawn(move || {
        let f = std::fs::File::open(&ns_path).unwrap();
        nix::sched::setns(f, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let mut q = Message::query();
        q.metadata.id = 42;
        q.add_query(Query::query(Name::from_ascii(&name).unwrap(), RecordType::A));
        sock.send_to(&q.to_vec().unwrap(), "127.0.0.1:53535").unwrap();
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).unwrap();
        let r = Message::from_vec(&buf[..n]).unwrap();
        assert_eq!(r.metadata.id, 42);
        let ips = r
            .answers
            .iter()
            .filter_map(|a| match &a.data {
                RData::A(a) => Some(a.0.to_string()),
                _ => None,
            })
            .collect();
        (format!("{:?}", r.metadata.response_code), ips)
    })
    .join()
    .unwrap()
}

#[test]
fn vm_names_resolve_while_running() {
    let Some(e) = E2e::new("dns") else { return };
    e.ok(&["vm", "create", "--name", "named"]);
    let ip = e.vm("named")["guest_ip"].as_str().unwrap().to_string();
    assert_eq!(resolve(&e, "named.vm."), ("NoError".to_string(), vec![ip.clone()]));
    assert_eq!(resolve(&e, "NAMED.vm.").1, vec![ip.clone()], "names are case-insensitive");
    assert_eq!(resolve(&e, "other.vm.").0, "NXDomain");
    assert_eq!(resolve(&e, "example.com.").0, "Refused");
    // A new daemon answers the same at once.
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(e.daemon_pid().unwrap()),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    e.ok(&["ps"]);
    assert_eq!(resolve(&e, "named.vm.").1, vec![ip]);
    // Stopped: the name is gone.
    e.ok(&["vm", "stop", "named"]);
    assert_eq!(resolve(&e, "named.vm.").0, "NXDomain");
    e.ok(&["vm", "delete", "named"]);
}
