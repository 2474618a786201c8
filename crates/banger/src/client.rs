//! The CLI's way to the daemon: [`banger_client`], reached at the paths of
//! this user's banger (or of its system install), or on another machine
//! over ssh (`--host`, `BANGER_HOST`, or the current context).

use banger_client::remote::Remote;
use banger_client::RemoteEndpoint;
pub use banger_client::{Client, Endpoint};
use banger_paths::Paths;
use std::sync::OnceLock;

/// The remote daemon this run talks to, chosen once at start.
static HOST: OnceLock<Option<Remote>> = OnceLock::new();

/// Chooses where the daemon is for this run (`None`: this machine).
pub fn set_host(remote: Option<Remote>) {
    let _ = HOST.set(remote);
}

/// The remote host of this run, if any.
pub fn host() -> Option<&'static Remote> {
    HOST.get().and_then(|h| h.as_ref())
}

/// Where the daemon of this run answers.
pub fn endpoint(paths: &Paths) -> anyhow::Result<Endpoint> {
    let mut ep = Endpoint::for_paths(paths);
    if let Some(remote) = host() {
        // ssh's shared connections live in a private directory of ours.
        let control_dir = paths.runtime_dir.join("ssh");
        banger_paths::ensure_private_dir(&paths.runtime_dir)?;
        banger_paths::ensure_private_dir(&control_dir)?;
        ep.remote = Some(RemoteEndpoint { remote: remote.clone(), control_dir });
    }
    Ok(ep)
}

/// A client of a daemon of this build, started (or replaced) as needed;
/// a remote one is checked for its version instead.
pub async fn connect(paths: &Paths) -> anyhow::Result<Client> {
    if !paths.is_service() && host().is_none() {
        // The log of a daemon we may start goes there.
        banger_paths::ensure_private_dir(&paths.state_dir)?;
    }
    Ok(Client::connect(endpoint(paths)?).await?)
}
