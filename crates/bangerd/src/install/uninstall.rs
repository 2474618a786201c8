//! `banger system uninstall`: the VMs stopped, the services, units, helper
//! state and binaries removed; with `--purge` the owner's banger data too.

use super::*;

pub(super) async fn run(a: UninstallArgs) -> anyhow::Result<i32> {
    need_root("uninstall")?;
    let layout = Layout::new(a.root.as_deref(), Path::new("/usr/local"));
    let file =
        InstallFile::load(&layout.install_file()).context("banger is not installed as a system service")?;
    let paths = owner_paths(&file.home, &layout.daemon_runtime());
    let mut errors: Vec<String> = Vec::new();
    let mut note = |r: anyhow::Result<()>, what: &str| {
        if let Err(e) = r {
            errors.push(format!("{what}: {e:#}"));
        }
    };

    // 1. The owner's VMs, through the daemon while it runs.
    let client = Client::new(Endpoint::for_paths(&paths));
    if client.info().await.ok().flatten().is_some() {
        note(stop_all_vms(&client).await, "stopping VMs");
        note(client.stop_daemon().await.map_err(anyhow::Error::from), "stopping the daemon");
    }
    // Engines the daemon could not stop (or that ran without it).
    for refused in crate::service::reconcile::kill_recorded_engines(&paths.vms_dir(), &file.policy()) {
        eprintln!("warning: not killed: {refused}");
    }
    // 2. The services.
    if layout.is_real() && systemd_running() {
        note(systemctl(&["disable", "--now", DAEMON_UNIT, HELPER_UNIT]), "stopping the services");
    }
    // 3. Network leftovers, in-process under the installation's policy.
    errors.extend(crate::privileged::purge_network(&file.policy()));
    // 4. Files.
    let mut remove = |p: PathBuf| {
        let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
        match r {
            Ok(()) => println!("removed {}", p.display()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => errors.push(format!("cannot remove {}: {e}", p.display())),
        }
    };
    for name in ["banger", "bangerd", "banger-agent"] {
        remove(file.prefix.join("bin").join(name));
    }
    for unit in [HELPER_UNIT, DAEMON_UNIT] {
        remove(layout.unit(unit));
    }
    remove(layout.install_file());
    if let Some(dir) = layout.install_file().parent() {
        let _ = std::fs::remove_dir(dir); // only if empty
    }
    remove(file.helper.state_dir.clone());
    remove(layout.helper_runtime());
    remove(layout.daemon_runtime());
    if a.purge {
        // The owner's files go as the owner (see `as_owner`).
        for d in [&paths.state_dir, &paths.cache_dir] {
            match as_owner("rm -rf -- \"$1\"", d, file.uid, file.gid) {
                Ok(()) => println!("removed {}", d.display()),
                Err(e) => errors.push(format!("cannot remove {}: {e:#}", d.display())),
            }
        }
    }
    if layout.is_real() && systemd_running() {
        let _ = systemctl(&["daemon-reload"]);
    }
    if errors.is_empty() {
        println!("banger uninstalled{}", if a.purge { " and purged" } else { "" });
        Ok(0)
    } else {
        for e in &errors {
            eprintln!("error: {e}");
        }
        Ok(1)
    }
}

async fn stop_all_vms(client: &Client) -> anyhow::Result<()> {
    let vms: Vec<banger_api::Vm> = client.vms().await?;
    let mut failed = Vec::new();
    for vm in vms.iter().filter(|v| v.state == banger_api::VmState::Running) {
        match client.stop_vm(&vm.id, &banger_api::StopVmRequest::default()).await {
            Ok(_) => println!("stopped VM {}", vm.name),
            Err(e) => failed.push(format!("{}: {e:#}", vm.name)),
        }
    }
    if !failed.is_empty() {
        bail!("{}", failed.join("; "));
    }
    Ok(())
}
