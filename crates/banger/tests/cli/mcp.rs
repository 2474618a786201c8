//! `banger mcp` spoken to as raw JSON-RPC over its stdio: the handshake,
//! the tool list, and every kind of bad input answered without the server
//! going away. (The e2e tier drives it with the official Python client
//! against real sandboxes.)

use crate::env::Env;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, ChildStdout, Stdio};

struct Server {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    next_id: u64,
}

impl Server {
    fn start(e: &Env, allow: &std::path::Path) -> Server {
        let mut child = e
            .cmd()
            .args(["mcp", "--allow-path", allow.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        Server { child, stdin, stdout, next_id: 1 }
    }

    fn send_line(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").unwrap();
        self.stdin.flush().unwrap();
    }

    /// The next message from the server that answers a request.
    fn answer(&mut self) -> Value {
        loop {
            let mut line = String::new();
            let n = self.stdout.read_line(&mut line).unwrap();
            assert!(n > 0, "banger mcp closed stdout");
            let v: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
            if v.get("id").is_some() {
                return v;
            }
        }
    }

    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_line(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string());
        let v = self.answer();
        assert_eq!(v["id"], id, "{v}");
        v
    }

    fn call(&mut self, tool: &str, args: Value) -> Value {
        self.request("tools/call", json!({"name": tool, "arguments": args}))
    }

    /// A tool error: the call answered, flagged isError, with its text.
    fn tool_error(&mut self, tool: &str, args: Value) -> String {
        let v = self.call(tool, args.clone());
        let r = &v["result"];
        assert_eq!(r["isError"], true, "{tool} {args} should fail: {v}");
        r["content"][0]["text"].as_str().unwrap().to_string()
    }

    fn initialize(&mut self) -> Value {
        let v = self.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "cli-test", "version": "0"}
            }),
        );
        self.send_line(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string());
        v
    }
}

const TOOLS: [&str; 7] = [
    "sandbox_create",
    "sandbox_delete",
    "sandbox_exec",
    "sandbox_list",
    "sandbox_read_file",
    "sandbox_run_repo",
    "sandbox_write_file",
];

#[test]
fn mcp_lists_its_tools_and_survives_bad_input() {
    let e = Env::new();
    e.with_fake_agent();
    let allowed = tempfile::tempdir().unwrap();
    let mut s = Server::start(&e, allowed.path());

    let init = s.initialize();
    assert_eq!(init["result"]["serverInfo"]["name"], "banger", "{init}");
    assert!(init["result"]["capabilities"]["tools"].is_object(), "{init}");
    assert!(init["result"]["instructions"].as_str().unwrap().contains("sandbox_create"));

    let list = s.request("tools/list", json!({}));
    let tools = list["result"]["tools"].as_array().unwrap();
    let mut names: Vec<&str> = tools.iter().map(|t| t["name"].as_str().unwrap()).collect();
    names.sort();
    assert_eq!(names, TOOLS);
    for t in tools {
        assert!(t["description"].as_str().unwrap().len() > 60, "a description that teaches: {t}");
        assert_eq!(t["inputSchema"]["type"], "object", "{t}");
    }
    let exec = tools.iter().find(|t| t["name"] == "sandbox_exec").unwrap();
    assert_eq!(exec["inputSchema"]["properties"]["command"]["type"], "array", "{exec}");
    assert!(exec["outputSchema"]["properties"]["exit_code"].is_object(), "{exec}");

    // Arguments of the wrong type or shape: a JSON-RPC error, not a crash.
    for bad in [
        json!({"sandbox": "x", "command": "ls -la"}),
        json!({"sandbox": 7, "command": ["ls"]}),
        json!({"command": ["ls"]}),
        json!({"sandbox": "x", "command": ["ls"], "shell": true}),
    ] {
        let v = s.call("sandbox_exec", bad.clone());
        assert!(v["error"].is_object() || v["result"]["isError"] == true, "{bad} accepted: {v}");
    }
    // A malformed line and an unknown method leave the server answering.
    s.send_line("{this is not json");
    let v = s.request("no/such/method", json!({}));
    assert!(v["error"].is_object(), "{v}");
    let v = s.call("no_such_tool", json!({}));
    assert!(v["error"].is_object() || v["result"]["isError"] == true, "{v}");

    // Inputs checked before anything happens, each with a hint.
    let t = s.tool_error("sandbox_read_file", json!({"sandbox": "web", "path": "etc/passwd"}));
    assert!(t.contains("not absolute") && t.contains("hint:"), "{t}");
    let t = s
        .tool_error("sandbox_write_file", json!({"sandbox": "web", "path": "/root/../etc/x", "content": ""}));
    assert!(t.contains("'..'"), "{t}");
    let t = s.tool_error("sandbox_exec", json!({"sandbox": "../../v1/vms", "command": ["true"]}));
    assert!(t.contains("not a sandbox name"), "{t}");
    let t = s.tool_error("sandbox_run_repo", json!({"path": "/etc", "command": ["true"]}));
    assert!(t.contains("outside what banger mcp may copy from") && t.contains("--allow-path"), "{t}");
    let t = s.tool_error("sandbox_create", json!({"vcpu": 16}));
    assert!(t.contains("more than banger mcp allows (4)") && t.contains("max_vcpu"), "{t}");
    let t = s.tool_error("sandbox_create", json!({"memory": "64G"}));
    assert!(t.contains("allows (4G)"), "{t}");
    let t = s.tool_error("sandbox_create", json!({"memory": "lots"}));
    assert!(t.contains("does not start with a number"), "{t}");
    let t = s.tool_error("sandbox_create", json!({"name": "Not A Name"}));
    assert!(t.contains("VM name"), "{t}");
    let t = s.tool_error("sandbox_exec", json!({"sandbox": "web", "command": []}));
    assert!(t.contains("command is empty"), "{t}");
    let t = s.tool_error("sandbox_exec", json!({"sandbox": "web", "command": ["true"], "timeout_secs": 0}));
    assert!(t.contains("timeout_secs"), "{t}");

    // The daemon's own errors come back as tool errors with its hint.
    let t = s.tool_error("sandbox_exec", json!({"sandbox": "nope", "command": ["true"]}));
    assert!(t.starts_with("error: ") && t.contains("nope"), "{t}");
    let t = s.tool_error("sandbox_delete", json!({"sandbox": "nope"}));
    assert!(t.contains("nope"), "{t}");

    // Structured content for scripts and models alike.
    let v = s.call("sandbox_list", json!({}));
    assert_eq!(v["result"]["structuredContent"], json!({"sandboxes": []}), "{v}");

    // Closing stdin ends the server cleanly.
    drop(s.stdin);
    let status = s.child.wait().unwrap();
    assert!(status.success(), "banger mcp exited with {status}");
}

#[test]
fn mcp_caps_come_from_config() {
    let e = Env::new();
    e.with_fake_agent();
    let cfg = std::fs::read_to_string(e.config_dir().join("config.toml")).unwrap();
    e.config(&format!("{cfg}[mcp]\nmax_vcpu = 1\nmax_memory = \"256M\"\n"));
    let shown = e.ok(&["config", "show", "--json"]).json();
    let entries = shown["entries"].as_array().unwrap();
    let get = |k: &str| entries.iter().find(|x| x["key"] == k).unwrap()["value"].clone();
    assert_eq!(get("mcp.max_memory"), "256M");
    let allowed = tempfile::tempdir().unwrap();
    let mut s = Server::start(&e, allowed.path());
    s.initialize();
    let t = s.tool_error("sandbox_create", json!({"vcpu": 2}));
    assert!(t.contains("allows (1)"), "{t}");
    let t = s.tool_error("sandbox_create", json!({"memory": "512M"}));
    assert!(t.contains("allows (256M)"), "{t}");
    drop(s.stdin);
    assert!(s.child.wait().unwrap().success());
}

#[test]
fn mcp_refuses_an_allow_path_that_does_not_exist() {
    let e = Env::new();
    let r = e.fails(&["mcp", "--allow-path", "/no/such/dir"]);
    assert!(r.stderr.contains("--allow-path /no/such/dir"), "{}", r.stderr);
}
