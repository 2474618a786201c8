//! Workspaces: a host git repository copied into a guest as a real checkout.
//!
//! What the guest gets, in `/root/<repo-name>`:
//! - a `.git` holding a shallow slice of history (HEAD and a few ancestors),
//!   with the same HEAD commit and branch as the host, and `origin` pointing
//!   at the host repository's origin URL;
//! - the host's working tree: tracked files as they are on disk (so
//!   uncommitted changes show up as such in `git status`), untracked but not
//!   ignored files with `--include-untracked`, ignored files never.
//!   Submodules are copied as plain directories (their tracked files), with
//!   a note: their history stays on the host.
//!
//! Everything travels as one tar stream through the guest agent. Every
//! check (a git repo, not bare, has commits, every file readable) runs
//! before any VM is touched.

use crate::client::Client;
use anyhow::{bail, Context};
use banger_agent_proto::client::{exec_collect, put_tar};
use banger_agent_proto::ExecRequest;
use banger_api::ApiError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Ancestors of HEAD copied along (the shallow depth).
pub const HISTORY_DEPTH: u32 = 5;

/// What a workspace copy will send, computed on the host.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The repository's top level (canonical).
    pub root: PathBuf,
    /// Its directory name, which names the guest directory.
    pub name: String,
    pub head: String,
    /// The checked-out branch, or `None` when HEAD is detached.
    pub branch: Option<String>,
    pub origin: Option<String>,
    /// Working-tree paths to copy, relative to `root` (files and symlinks).
    pub files: Vec<PathBuf>,
    pub bytes: u64,
    pub submodules: Vec<PathBuf>,
    /// `--branch`: a guest-only branch to create.
    pub new_branch: Option<String>,
    /// `--from`: the commit that branch starts at (no working tree is copied).
    pub from: Option<(String, String)>,
}

impl Plan {
    pub fn guest_path(&self) -> String {
        format!("/root/{}", self.name)
    }
}

fn usage_error(message: String, hint: &str) -> anyhow::Error {
    ApiError::invalid(message).with_hint(hint).into()
}

/// Runs git in `dir`; `Ok(stdout)` on success, `Err(stderr)` otherwise.
fn git(dir: &Path, args: &[&str]) -> Result<Vec<u8>, String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_TERMINAL_PROMPT", "0")
        .output()
        .map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(out.stdout)
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

fn git_line(dir: &Path, args: &[&str]) -> Option<String> {
    git(dir, args).ok().map(|o| String::from_utf8_lossy(&o).trim().to_string()).filter(|s| !s.is_empty())
}

/// Checks the repository and lists what would be copied.
pub fn plan(
    path: &Path,
    include_untracked: bool,
    new_branch: Option<String>,
    from: Option<String>,
) -> anyhow::Result<Plan> {
    if !path.exists() {
        return Err(usage_error(
            format!("{} does not exist", path.display()),
            "pass the path of a git working tree",
        ));
    }
    let dir = path.canonicalize()?;
    let dir = if dir.is_dir() { dir } else { dir.parent().unwrap_or(Path::new("/")).to_path_buf() };
    match git(&dir, &["rev-parse", "--is-bare-repository"]) {
        Ok(o) if String::from_utf8_lossy(&o).trim() == "true" => {
            return Err(usage_error(
                format!("{} is a bare git repository; it has no working tree to copy", path.display()),
                "clone it first (`git clone REPO dir`) and pass the clone",
            ))
        }
        Ok(_) => {}
        Err(_) => {
            return Err(usage_error(
                format!("{} is not inside a git working tree", path.display()),
                "banger copies git repositories: run `git init` and commit, or pass another path",
            ))
        }
    }
    let root = PathBuf::from(git_line(&dir, &["rev-parse", "--show-toplevel"]).ok_or_else(|| {
        usage_error(format!("{} is not inside a git working tree", path.display()), "pass a repository")
    })?);
    let head = git_line(&root, &["rev-parse", "--verify", "-q", "HEAD"]).ok_or_else(|| {
        usage_error(
            format!("the repository {} has no commits yet", root.display()),
            "commit something first (`git commit`)",
        )
    })?;
    let name = root.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "repo".into());
    let branch = git_line(&root, &["symbolic-ref", "-q", "--short", "HEAD"]);
    let origin = git_line(&root, &["remote", "get-url", "origin"]);
    if let Some(b) = &new_branch {
        if git(&root, &["check-ref-format", "--branch", b]).is_err() {
            return Err(usage_error(
                format!("{b:?} is not a valid branch name"),
                "use a name like feature/x",
            ));
        }
    }
    let from = match from {
        None => None,
        Some(r) => {
            let sha = git_line(&root, &["rev-parse", "--verify", "-q", &format!("{r}^{{commit}}")])
                .ok_or_else(|| {
                    usage_error(
                        format!("--from {r:?} does not name a commit in {}", root.display()),
                        "pass a branch, tag or commit id",
                    )
                })?;
            Some((r, sha))
        }
    };
    let mut plan = Plan {
        root: root.clone(),
        name,
        head,
        branch,
        origin,
        files: Vec::new(),
        bytes: 0,
        submodules: Vec::new(),
        new_branch,
        from,
    };
    if plan.from.is_some() {
        return Ok(plan); // the guest checks out --from itself
    }
    let staged =
        git(&root, &["ls-files", "-z", "-s"]).map_err(|e| anyhow::anyhow!("git ls-files failed: {e}"))?;
    let mut files = Vec::new();
    for rec in staged.split(|b| *b == 0).filter(|r| !r.is_empty()) {
        let rec = String::from_utf8_lossy(rec);
        let (meta, path) = rec.split_once('\t').context("unexpected git ls-files output")?;
        if meta.starts_with("160000") {
            plan.submodules.push(PathBuf::from(path));
            let sub = root.join(path);
            if let Ok(o) = git(&sub, &["ls-files", "-z"]) {
                for f in o.split(|b| *b == 0).filter(|r| !r.is_empty()) {
                    files.push(Path::new(path).join(String::from_utf8_lossy(f).as_ref()));
                }
            }
        } else {
            files.push(PathBuf::from(path));
        }
    }
    if include_untracked {
        let o = git(&root, &["ls-files", "-z", "--others", "--exclude-standard"])
            .map_err(|e| anyhow::anyhow!("git ls-files failed: {e}"))?;
        files.extend(
            o.split(|b| *b == 0)
                .filter(|r| !r.is_empty())
                .map(|r| PathBuf::from(String::from_utf8_lossy(r).as_ref())),
        );
    }
    files.sort();
    files.dedup();
    for f in files {
        let full = root.join(&f);
        let meta = match std::fs::symlink_metadata(&full) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue, // deleted in the working tree
            Err(e) => bail!("cannot read {}: {e}", full.display()),
        };
        if meta.is_file() {
            std::fs::File::open(&full).map_err(|e| {
                usage_error(
                    format!("cannot read {}: {e}", full.display()),
                    "fix its permissions, or add it to .gitignore",
                )
            })?;
            plan.bytes += meta.len();
        } else if meta.is_dir() {
            continue; // an empty submodule directory
        }
        plan.files.push(f);
    }
    Ok(plan)
}

/// Prints what `--dry-run` promises: the exact file list and totals.
pub fn print_dry_run(p: &Plan) {
    for f in &p.files {
        println!("{}", f.display());
    }
    eprintln!(
        "{} files, {} bytes, from {} at {} ({}) -> {}",
        p.files.len(),
        p.bytes,
        p.root.display(),
        &p.head[..12.min(p.head.len())],
        p.branch.as_deref().unwrap_or("detached HEAD"),
        p.guest_path()
    );
    eprintln!("plus .git with HEAD and up to {HISTORY_DEPTH} ancestors; dry run: nothing was created");
    for s in &p.submodules {
        eprintln!("note: submodule {} is copied as a plain directory (no history)", s.display());
    }
}

/// Builds, on the host, the `.git` the guest gets: a shallow slice of history
/// (HEAD, and `--from`, with up to [`HISTORY_DEPTH`] ancestors), refs like
/// the host's, an index whose entries already carry the stat data of the
/// copied files, and the workspace as prepared at `refs/banger/prepared`.
///
/// All the hashing happens here, natively: the guest only unpacks files.
/// The index is written for `core.checkStat=minimal` (size, mtime and mode;
/// inode, device and owner differ in the guest) and `core.trustctime=false`,
/// so `git status` in the guest trusts it; entries of files modified on the
/// host keep no stat data and are re-read there, so they show as modified.
fn shallow_git(p: &Plan) -> anyhow::Result<tempfile::TempDir> {
    let tmp = tempfile::Builder::new().prefix("banger-ws-").tempdir()?;
    let t = tmp.path();
    let gitdir = t.join(".git");
    let run = |args: &[&str]| git(t, args).map_err(|e| anyhow::anyhow!("git {}: {e}", args.join(" ")));
    run(&["init", "-q"])?;
    // Packing for a local fetch: no delta search and no zlib (the pack is
    // only copied into the guest, and both cost seconds for a large tree).
    // `-c` options do not reach the upload-pack side of a local fetch (git
    // scrubs them from its environment), but a global config file does; it
    // includes the user's own first.
    let cfg = t.join("fetch.gitconfig");
    let user_cfg = std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".gitconfig"));
    let include = user_cfg.map(|u| format!("[include]\n\tpath = {}\n", u.display())).unwrap_or_default();
    std::fs::write(
        &cfg,
        format!("{include}[pack]\n\twindow = 0\n\tcompression = 0\n[core]\n\tcompression = 0\n[uploadpack]\n\tallowAnySHA1InWant = true\n"),
    )?;
    let url = format!("file://{}", p.root.display());
    let depth = format!("--depth={HISTORY_DEPTH}");
    let mut fetch = Command::new("git");
    fetch
        .arg("-C")
        .arg(t)
        .args(["fetch", "-q", "--no-tags", &depth, &url, &p.head])
        .env("GIT_CONFIG_GLOBAL", &cfg);
    if let Some((_, sha)) = &p.from {
        fetch.arg(sha);
    }
    let out = fetch.output().map_err(|e| anyhow::anyhow!("cannot run git: {e}"))?;
    if !out.status.success() {
        bail!("git fetch from {}: {}", p.root.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    let _ = std::fs::remove_file(&cfg);
    // The branch the guest is on: --branch (at --from or HEAD), else the
    // host's branch, else a detached HEAD.
    let tip = p.from.as_ref().map(|(_, sha)| sha.as_str()).unwrap_or(&p.head);
    match p.new_branch.as_ref().or(p.branch.as_ref()) {
        Some(b) => {
            if let (Some(host_branch), Some(_)) = (&p.branch, &p.new_branch) {
                run(&["update-ref", &format!("refs/heads/{host_branch}"), &p.head])?;
            }
            run(&["update-ref", &format!("refs/heads/{b}"), tip])?;
            run(&["symbolic-ref", "HEAD", &format!("refs/heads/{b}")])?;
        }
        None => {
            run(&["update-ref", "--no-deref", "HEAD", &p.head])?;
        }
    }
    if let Some(o) = &p.origin {
        run(&["remote", "add", "origin", o])?;
    }
    run(&["config", "core.checkStat", "minimal"])?;
    run(&["config", "core.trustctime", "false"])?;
    let _ = std::fs::remove_file(gitdir.join("FETCH_HEAD"));
    if p.from.is_some() {
        return Ok(tmp); // the guest checks out --from and records the state itself
    }

    // The index: HEAD's tree, refreshed against the host's working tree.
    let host = |index: &Path, args: &[&str]| -> Result<Vec<u8>, String> {
        let out = Command::new("git")
            .arg("--git-dir")
            .arg(&gitdir)
            .arg("--work-tree")
            .arg(&p.root)
            .args(args)
            .env("GIT_INDEX_FILE", index)
            .output()
            .map_err(|e| format!("cannot run git: {e}"))?;
        // `update-index --refresh` exits 1 when files need updating: normal.
        if out.status.success() || args.first() == Some(&"update-index") {
            Ok(out.stdout)
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    };
    let index = gitdir.join("index");
    host(&index, &["read-tree", "HEAD"]).map_err(|e| anyhow::anyhow!("git read-tree: {e}"))?;
    host(&index, &["update-index", "-q", "--refresh"])
        .map_err(|e| anyhow::anyhow!("git update-index: {e}"))?;

    // The prepared state: HEAD plus exactly what is copied (edits, untracked
    // files taken along, deletions), as a commit on no branch. After the
    // refresh only the files that differ need updating: those diff-files
    // reports (modified or deleted), and the copied files the index lacks.
    let scratch = t.join("prepared-index");
    std::fs::copy(&index, &scratch)?;
    let differing = host(&index, &["diff-files", "--name-only", "-z"])
        .map_err(|e| anyhow::anyhow!("git diff-files: {e}"))?;
    let tracked: std::collections::HashSet<Vec<u8>> = host(&index, &["ls-files", "-z"])
        .map_err(|e| anyhow::anyhow!("git ls-files: {e}"))?
        .split(|b| *b == 0)
        .filter(|r| !r.is_empty())
        .map(|r| r.to_vec())
        .collect();
    let mut paths: Vec<u8> = differing;
    for f in &p.files {
        let b = f.to_string_lossy().as_bytes().to_vec();
        if !tracked.contains(&b) {
            paths.extend_from_slice(&b);
            paths.push(0);
        }
    }
    if !paths.is_empty() {
        let mut up = Command::new("git")
            .arg("--git-dir")
            .arg(&gitdir)
            .arg("--work-tree")
            .arg(&p.root)
            .args(["update-index", "--add", "--remove", "-z", "--stdin"])
            .env("GIT_INDEX_FILE", &scratch)
            .stdin(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()?;
        {
            use std::io::Write;
            up.stdin.take().context("stdin")?.write_all(&paths)?;
        }
        let out = up.wait_with_output()?;
        if !out.status.success() {
            bail!("git update-index: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
    }
    let tree = String::from_utf8_lossy(
        &host(&scratch, &["write-tree"]).map_err(|e| anyhow::anyhow!("git write-tree: {e}"))?,
    )
    .trim()
    .to_string();
    let commit = Command::new("git")
        .arg("--git-dir")
        .arg(&gitdir)
        .args(["commit-tree", &tree, "-p", &p.head, "-m", "banger: the workspace as prepared"])
        .env("GIT_AUTHOR_NAME", "banger")
        .env("GIT_AUTHOR_EMAIL", "banger@localhost")
        .env("GIT_COMMITTER_NAME", "banger")
        .env("GIT_COMMITTER_EMAIL", "banger@localhost")
        .output()?;
    if !commit.status.success() {
        bail!("git commit-tree: {}", String::from_utf8_lossy(&commit.stderr).trim());
    }
    let commit = String::from_utf8_lossy(&commit.stdout).trim().to_string();
    run(&["update-ref", "refs/banger/prepared", &commit])?;
    let _ = std::fs::remove_file(&scratch);
    Ok(tmp)
}

/// Writes the workspace as a tar stream to `w`: directory entries for
/// `prefix`'s ancestors (with `ancestor_mode`, how `/root` must look), the
/// working-tree files, then `<prefix>/.git` from the prepared `gitdir`.
/// (Preparing `.git` while the files stream was measured slower on two
/// cores: git, the packer and the unpacker compete for them.)
fn write_tar(
    w: impl std::io::Write,
    prefix: &Path,
    ancestor_mode: u32,
    gitdir: &Path,
    root: &Path,
    files: &[PathBuf],
) -> std::io::Result<()> {
    let mut b = tar::Builder::new(w);
    b.follow_symlinks(false);
    let mut acc = PathBuf::new();
    let comps: Vec<_> = prefix.components().collect();
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    for c in &comps[..comps.len().saturating_sub(1)] {
        acc.push(c);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(ancestor_mode);
        h.set_size(0);
        h.set_mtime(now);
        h.set_cksum();
        b.append_data(&mut h, &acc, std::io::empty())?;
    }
    for f in files {
        b.append_path_with_name(root.join(f), prefix.join(f))?;
    }
    b.append_dir_all(prefix.join(".git"), gitdir.join(".git"))?;
    b.into_inner()?.flush()
}

/// After the files landed: `--from` needs a checkout in the guest (its tree
/// is not the host's working tree) and the prepared state recorded there.
fn guest_setup_script(p: &Plan) -> Option<String> {
    let (_, sha) = p.from.as_ref()?;
    let b = p.new_branch.as_deref().unwrap_or("banger");
    Some(format!("set -e; cd \"$1\"; git checkout -q -f -B '{b}' {sha}{PREPARED_SNAPSHOT}"))
}

/// Copies the workspace into a running VM (replacing an earlier copy) and
/// records it with the daemon. Returns the guest path.
pub async fn copy(client: &Client, vm: &str, p: &Plan, quiet: bool) -> anyhow::Result<String> {
    let guest = p.guest_path();
    for s in &p.submodules {
        eprintln!("note: submodule {} is copied as a plain directory (no history)", s.display());
    }
    let gitdir = shallow_git(p)?;
    // A fresh copy: remove an earlier one first.
    let rm = ExecRequest { argv: vec!["rm".into(), "-rf".into(), guest.clone()], ..Default::default() };
    let (_, err, st) = exec_collect(client.agent(vm).await?, rm, b"").await?;
    if st.code != Some(0) {
        bail!("cannot clear {guest} in the guest: {}", String::from_utf8_lossy(&err).trim());
    }
    // About the size of the files once more for the history.
    let total = p.bytes * 2;
    let bar = crate::output::ByteBar::new("copying workspace ", Some(total), !quiet);
    if !bar.is_shown() && !quiet {
        eprintln!("copying workspace: {} files, {} bytes, to {guest}", p.files.len(), p.bytes);
    }
    let (reader, writer) = tokio::io::duplex(1 << 20);
    let (root, name, files) = (p.root.clone(), p.name.clone(), p.files.clone());
    let packer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut w = tokio_util::io::SyncIoBridge::new(writer);
        write_tar(&mut w, Path::new(&name), 0o700, gitdir.path(), &root, &files)?;
        w.shutdown()
    });
    let sent = put_tar(client.agent(vm).await?, "/root", None, reader, bar.updater()).await;
    bar.finish();
    // The packer's error is the cause when both failed (a stream cut short).
    let packed = packer.await?;
    packed.map_err(|e| anyhow::anyhow!("cannot prepare the workspace: {e}"))?;
    sent.map_err(|e| anyhow::anyhow!("copying the workspace into {vm} failed: {e}"))?;
    finish_in_guest(client, vm, p).await?;
    record(client, vm, p).await?;
    Ok(guest)
}

/// Seeds a new, never-booted VM's disk with the workspace (through the
/// daemon, which builds the disk on the host): the fast path of `vm run`.
pub async fn seed(client: &Client, vm: &str, p: &Plan) -> anyhow::Result<()> {
    for s in &p.submodules {
        eprintln!("note: submodule {} is copied as a plain directory (no history)", s.display());
    }
    let gitdir = shallow_git(p)?;
    eprintln!("placing the workspace ({} files, {} bytes) on the VM's disk", p.files.len(), p.bytes);
    let (tx, rx) = tokio::sync::mpsc::channel::<bytes::Bytes>(16);
    let (root, files) = (p.root.clone(), p.files.clone());
    let prefix = Path::new("root").join(&p.name);
    let packer = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        write_tar(ChunkWriter { tx, buf: Vec::new() }, &prefix, 0o700, gitdir.path(), &root, &files)
    });
    let seeded = client.seed_vm(vm, rx).await;
    // The packer's error is the cause when both failed (a stream cut short).
    let packed = packer.await?;
    packed.map_err(|e| anyhow::anyhow!("cannot prepare the workspace: {e}"))?;
    seeded.map_err(|e| anyhow::anyhow!("placing the workspace on the disk of {vm} failed: {e:#}"))?;
    Ok(())
}

/// After the VM seeded by [`seed`] booted: finish in the guest, record.
pub async fn seeded_boot_done(client: &Client, vm: &str, p: &Plan) -> anyhow::Result<String> {
    finish_in_guest(client, vm, p).await?;
    record(client, vm, p).await?;
    Ok(p.guest_path())
}

/// A blocking `Write` that ships chunks over a channel.
struct ChunkWriter {
    tx: tokio::sync::mpsc::Sender<bytes::Bytes>,
    buf: Vec<u8>,
}

impl std::io::Write for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= 256 * 1024 {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = bytes::Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the daemon stopped reading"))
    }
}

/// Runs what is left to do in the guest (only `--from` has anything).
async fn finish_in_guest(client: &Client, vm: &str, p: &Plan) -> anyhow::Result<()> {
    let Some(script) = guest_setup_script(p) else { return Ok(()) };
    let guest = p.guest_path();
    let req = ExecRequest {
        argv: vec!["sh".into(), "-c".into(), script, "sh".into(), guest.clone()],
        ..Default::default()
    };
    let (_, err, st) = exec_collect(client.agent(vm).await?, req, b"").await?;
    if st.code != Some(0) {
        let e = String::from_utf8_lossy(&err);
        if e.contains("git: not found") || st.code == Some(127) {
            eprintln!("warning: the guest has no git; the files are in {guest}, without the --from checkout");
        } else {
            bail!("setting up the git checkout in {guest} failed: {}", e.trim());
        }
    }
    Ok(())
}

/// Tells the daemon which workspace the VM holds.
async fn record(client: &Client, vm: &str, p: &Plan) -> anyhow::Result<()> {
    let guest = p.guest_path();
    let req = banger_api::SetWorkspaceRequest {
        guest_path: guest,
        host_path: p.root.display().to_string(),
        head: p.head.clone(),
        branch: p.new_branch.clone().or(p.branch.clone()),
    };
    client.set_workspace(vm, &req).await?;
    Ok(())
}

/// Shell run in the guest after a copy: records the working tree as it was
/// prepared as a commit at `refs/banger/prepared`.
const PREPARED_SNAPSHOT: &str = "; tmp=$(mktemp); trap 'rm -f \"$tmp\"' EXIT; \
    GIT_INDEX_FILE=\"$tmp\" git read-tree HEAD; GIT_INDEX_FILE=\"$tmp\" git add -A; \
    tree=$(GIT_INDEX_FILE=\"$tmp\" git write-tree); \
    base=$(GIT_AUTHOR_NAME=banger GIT_AUTHOR_EMAIL=banger@localhost GIT_COMMITTER_NAME=banger \
    GIT_COMMITTER_EMAIL=banger@localhost git commit-tree \"$tree\" -p HEAD -m 'banger: the workspace as prepared'); \
    git update-ref refs/banger/prepared \"$base\"";

/// Shell run in the guest by `export`: the working tree (tracked, untracked,
/// not ignored) against the prepared state, through a temporary index and a
/// temporary object directory, so nothing in the guest's repository changes.
const EXPORT: &str = "set -e; cd \"$1\"; base=\"$2\"; \
    git rev-parse --git-dir >/dev/null 2>&1 || { echo \"$1 is not a git checkout\" >&2; exit 3; }; \
    if git rev-parse -q --verify refs/banger/prepared >/dev/null; then base=refs/banger/prepared; fi; \
    objects=$(realpath \"$(git rev-parse --git-path objects)\"); tmp=$(mktemp -d); trap 'rm -rf \"$tmp\"' EXIT; \
    mkdir \"$tmp/objects\"; export GIT_INDEX_FILE=\"$tmp/index\" GIT_OBJECT_DIRECTORY=\"$tmp/objects\" \
    GIT_ALTERNATE_OBJECT_DIRECTORIES=\"$objects\"; git read-tree HEAD; git add -A; \
    git diff --cached --binary --full-index \"$base\"";

/// The patch of everything changed in the guest checkout since it was
/// prepared: commits made in the guest, uncommitted edits, new untracked (not
/// ignored) files, deletions — one binary-safe diff for `git apply` on the
/// host. Read-only in the guest: no index, ref or object is written.
pub async fn export(client: &Client, vm: &str, guest_path: &str, base: &str) -> anyhow::Result<Vec<u8>> {
    let req = ExecRequest {
        argv: vec!["sh".into(), "-c".into(), EXPORT.into(), "sh".into(), guest_path.into(), base.into()],
        ..Default::default()
    };
    let (out, err, st) = exec_collect(client.agent(vm).await?, req, b"").await?;
    if st.code != Some(0) {
        bail!("exporting the workspace from {vm} failed: {}", String::from_utf8_lossy(&err).trim());
    }
    Ok(out)
}
