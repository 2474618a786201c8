//! The CLI's way to the daemon: [`banger_client`], reached at the paths of
//! this user's banger (or of its system install).

pub use banger_client::{Client, Endpoint};
use banger_paths::Paths;

/// A client of a daemon of this build, started (or replaced) as needed.
pub async fn connect(paths: &Paths) -> anyhow::Result<Client> {
    if !paths.is_service() {
        // The log of a daemon we may start goes there.
        banger_paths::ensure_private_dir(&paths.state_dir)?;
    }
    Ok(Client::connect(Endpoint::for_paths(paths)).await?)
}
