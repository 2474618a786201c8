//! Rows as the store reads and writes them. Times are Unix milliseconds.

use crate::Result;
use banger_api::{PortForward, VmState, Workspace};
use banger_engine::EngineKind;
use rusqlite::types::Type;
use rusqlite::Row;
use std::net::Ipv4Addr;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRecord {
    pub name: String,
    pub vmlinux_path: String,
    pub initrd_path: Option<String>,
    pub sha256: String,
    pub source: String,
    pub created_at_ms: i64,
}

impl KernelRecord {
    pub(crate) const COLUMNS: &'static str = "name, vmlinux_path, initrd_path, sha256, source, created_at";

    pub(crate) fn from_row(r: &Row<'_>) -> rusqlite::Result<Self> {
        Ok(KernelRecord {
            name: r.get(0)?,
            vmlinux_path: r.get(1)?,
            initrd_path: r.get(2)?,
            sha256: r.get(3)?,
            source: r.get(4)?,
            created_at_ms: r.get(5)?,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ImageRecord {
    pub id: String,
    pub name: String,
    pub kernel: String,
    pub rootfs_path: String,
    pub size_bytes: u64,
    pub sha256: String,
    pub source: String,
    pub manifest: Option<serde_json::Value>,
    pub created_at_ms: i64,
}

/// An image row before its JSON column is parsed.
pub(crate) struct RawImage(ImageRecord, Option<String>);

impl ImageRecord {
    pub(crate) const COLUMNS: &'static str =
        "id, name, kernel, rootfs_path, size_bytes, sha256, source, manifest, created_at";

    pub(crate) fn from_row(r: &Row<'_>) -> rusqlite::Result<RawImage> {
        Ok(RawImage(
            ImageRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                kernel: r.get(2)?,
                rootfs_path: r.get(3)?,
                size_bytes: r.get::<_, i64>(4)? as u64,
                sha256: r.get(5)?,
                source: r.get(6)?,
                manifest: None,
                created_at_ms: r.get(8)?,
            },
            r.get(7)?,
        ))
    }

    pub(crate) fn finish(raw: RawImage) -> Result<Self> {
        let RawImage(mut rec, manifest) = raw;
        rec.manifest = manifest.as_deref().map(serde_json::from_str).transpose()?;
        Ok(rec)
    }
}

/// What `insert_vm` needs to persist a new VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVm {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub vcpu: u32,
    pub memory_mib: u64,
    pub disk_size_mib: u64,
    pub guest_ip: Ipv4Addr,
    pub vm_dir: String,
    pub state: VmState,
    pub engine: EngineKind,
    pub engine_reason: String,
    pub nat: bool,
    pub forwards: Vec<PortForward>,
    pub created_at_ms: i64,
}

/// A VM row joined with the names of its image and kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct VmRecord {
    pub id: String,
    pub name: String,
    pub image_id: String,
    pub image_name: String,
    pub kernel: String,
    pub vcpu: u32,
    pub memory_mib: u64,
    pub disk_size_mib: u64,
    pub guest_ip: Ipv4Addr,
    pub vm_dir: String,
    pub state: VmState,
    pub engine: EngineKind,
    pub engine_reason: String,
    pub nat: bool,
    pub last_error: Option<String>,
    pub workspace: Option<Workspace>,
    pub forwards: Vec<PortForward>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

pub(crate) struct RawVm(VmRecord, Option<String>, String);

impl VmRecord {
    pub(crate) const SELECT: &'static str = "SELECT v.id, v.name, v.image_id, i.name, i.kernel,
        v.vcpu, v.memory_mib, v.disk_size_mib, v.guest_ip, v.vm_dir, v.state, v.engine,
        v.engine_reason, v.nat, v.last_error, v.workspace, v.forwards, v.created_at, v.updated_at
        FROM vms v JOIN images i ON i.id = v.image_id";

    pub(crate) fn from_row(r: &Row<'_>) -> rusqlite::Result<RawVm> {
        Ok(RawVm(
            VmRecord {
                id: r.get(0)?,
                name: r.get(1)?,
                image_id: r.get(2)?,
                image_name: r.get(3)?,
                kernel: r.get(4)?,
                vcpu: r.get(5)?,
                memory_mib: r.get::<_, i64>(6)? as u64,
                disk_size_mib: r.get::<_, i64>(7)? as u64,
                guest_ip: text_as(r, 8, |s| s.parse().ok())?,
                vm_dir: r.get(9)?,
                state: text_as(r, 10, VmState::parse)?,
                engine: text_as(r, 11, EngineKind::parse)?,
                engine_reason: r.get(12)?,
                nat: r.get(13)?,
                last_error: r.get(14)?,
                workspace: None,
                forwards: Vec::new(),
                created_at_ms: r.get(17)?,
                updated_at_ms: r.get(18)?,
            },
            r.get(15)?,
            r.get(16)?,
        ))
    }

    pub(crate) fn finish(raw: RawVm) -> Result<Self> {
        let RawVm(mut rec, workspace, forwards) = raw;
        rec.workspace = workspace.as_deref().map(serde_json::from_str).transpose()?;
        rec.forwards = serde_json::from_str(&forwards)?;
        Ok(rec)
    }
}

/// Column `i` as text turned into a `T` by `parse`; a value it refuses is
/// a conversion error naming the column and the value, never a default.
pub(crate) fn text_as<T>(r: &Row<'_>, i: usize, parse: impl Fn(&str) -> Option<T>) -> rusqlite::Result<T> {
    let text: String = r.get(i)?;
    parse(&text).ok_or_else(|| {
        let name = r.as_ref().column_name(i).unwrap_or("?").to_string();
        rusqlite::Error::FromSqlConversionFailure(
            i,
            Type::Text,
            format!("column {name} holds {text:?}, which this banger does not know").into(),
        )
    })
}
