//! The Firecracker engine. (Its API client and launch arrive with the
//! Firecracker step; until then launching reports that it is unavailable.)

use crate::{Engine, EngineError, EngineKind, Handles, VmSpec};
use std::path::PathBuf;

#[derive(Debug, Clone)]
pub struct Firecracker {
    pub bin: PathBuf,
}

impl Engine for Firecracker {
    fn kind(&self) -> EngineKind {
        EngineKind::Firecracker
    }

    async fn launch(&self, _spec: &VmSpec) -> Result<Handles, EngineError> {
        Err(EngineError::Unsupported("the Firecracker engine is not available in this build yet".into()))
    }

    async fn request_stop(&self, _h: &Handles) -> Result<(), EngineError> {
        Err(EngineError::Unsupported("the Firecracker engine is not available in this build yet".into()))
    }
}
