//! `banger mcp` driven by the official MCP Python client against real
//! sandboxes (`mcp_client.py` holds the steps), and the cost it adds to an
//! exec beside `banger vm exec`.

use crate::harness::E2e;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The test environment's python (scripts/python-env), when it exists.
pub fn python() -> Option<PathBuf> {
    let p = std::env::var_os("BANGER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/cache/banger-python/bin/python"));
    p.exists().then_some(p)
}

/// The server's argv and environment as the harness runs banger (inside
/// the test's network namespace, with its own XDG dirs).
pub fn banger_argv(e: &E2e, args: &[&str]) -> (Vec<String>, Vec<(String, String)>) {
    let mut c = e.cmd();
    c.args(args);
    let mut argv = vec![c.get_program().to_string_lossy().into_owned()];
    argv.extend(c.get_args().map(|a| a.to_string_lossy().into_owned()));
    let env = c
        .get_envs()
        .filter_map(|(k, v)| Some((k.to_string_lossy().into_owned(), v?.to_string_lossy().into_owned())))
        .collect();
    (argv, env)
}

fn git(dir: &Path, args: &[&str]) {
    let o = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
    assert!(o.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&o.stderr));
}

fn median_ms(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

#[test]
fn an_mcp_client_creates_runs_reads_and_deletes_sandboxes() {
    let Some(py) = python() else {
        banger_testkit::skip(
            "e2e test mcp::an_mcp_client_creates_runs_reads_and_deletes_sandboxes",
            "no Python test environment (run scripts/python-env)",
        );
        return;
    };
    let Some(e) = E2e::with(
        "mcp::an_mcp_client_creates_runs_reads_and_deletes_sandboxes",
        &crate::harness::engine(),
        "boot_timeout_secs = 120\n[mcp]\nmax_output_kib = 16",
    ) else {
        return;
    };
    let repo = e.dir.path().join("proj");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.email", "t@example.com"]);
    git(&repo, &["config", "user.name", "T"]);
    std::fs::write(repo.join("marker.txt"), "from-the-repo\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-qm", "one"]);

    // The same command through the CLI, for the benchmark beside MCP's.
    e.ok(&["vm", "create", "--name", "bench"]);
    let cli: Vec<f64> = (0..20)
        .map(|_| {
            let t = std::time::Instant::now();
            e.ok(&["vm", "exec", "bench", "--", "true"]);
            t.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    println!("BENCH cli_vm_exec_true_ms {:.1}", median_ms(cli));

    let (argv, env) = banger_argv(&e, &["mcp", "--allow-path", e.dir.path().to_str().unwrap()]);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/e2e/mcp_client.py");
    let out = Command::new(&py)
        .arg(&script)
        .envs(env)
        .env("BANGER_MCP_COMMAND", serde_json::to_string(&argv).unwrap())
        .env("BANGER_MCP_REPO", &repo)
        .env("BANGER_MCP_BENCH_VM", "bench")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    assert!(
        out.status.success() && stdout.contains("MCP-CLIENT-OK"),
        "the MCP client failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    let vms = e.ok(&["vm", "list", "--json"]).json();
    let names: Vec<&str> = vms.as_array().unwrap().iter().map(|v| v["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["bench"], "only the CLI's VM is left");
    e.ok(&["vm", "delete", "bench"]);
}
