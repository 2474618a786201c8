//! banger's durable state: what VMs, images and kernels exist, and what each
//! VM should be doing.
//!
//! The store holds intent only. Transient facts about a running VM (engine
//! PID, sockets, tap device) live in the daemon's memory and in the VM dir's
//! `handles.json`, because they must be rediscovered from the host after a
//! crash anyway.
//!
//! One SQLite file in WAL mode, opened once per daemon. Calls are synchronous
//! and short (single-row reads and writes, a few milliseconds at most), so
//! the daemon calls them directly from its async tasks behind one mutex.
//! Schema changes are forward-only migrations keyed by `PRAGMA user_version`.

mod migrations;
mod records;

pub use records::{ImageRecord, KernelRecord, NewVm, VmRecord};

use banger_api::{PortForward, VmState, Workspace};
use banger_engine::EngineKind;
use rusqlite::{params, Connection, OptionalExtension};
use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Everything that can go wrong talking to the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("Cannot open the state database {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error(
        "The state database {path} has schema version {found}, newer than this banger understands ({known})"
    )]
    TooNew { path: String, found: i64, known: i64 },
    #[error("A {kind} named {name:?} already exists")]
    Duplicate { kind: &'static str, name: String },
    #[error("Guest IP {0} is already taken")]
    IpTaken(Ipv4Addr),
    #[error("State database query failed")]
    Sql(#[from] rusqlite::Error),
    #[error("Stored JSON is malformed")]
    Json(#[from] serde_json::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Handle to the state database. Cheap to share behind an `Arc`.
pub struct Store {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").finish_non_exhaustive()
    }
}

impl Store {
    /// Opens (creating if needed) and migrates the database at `path`.
    /// Refuses a database written by a newer schema rather than guessing.
    pub fn open(path: &Path) -> Result<Store> {
        let display = path.display().to_string();
        let open_err = |source| StoreError::Open { path: display.clone(), source };
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(5)).map_err(open_err)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(open_err)?;
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", "ON").map_err(open_err)?;
        migrations::apply(&mut conn, &display)?;
        Ok(Store { conn: Mutex::new(conn) })
    }

    /// Schema version this build writes.
    pub fn schema_version() -> i64 {
        migrations::LATEST
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves SQLite itself consistent
        // (every write is one statement or one transaction), so a poisoned
        // lock is safe to take over.
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    // ---- kernels -------------------------------------------------------

    pub fn insert_kernel(&self, k: &KernelRecord) -> Result<()> {
        let r = self.conn().execute(
            "INSERT INTO kernels (name, vmlinux_path, initrd_path, sha256, source, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![k.name, k.vmlinux_path, k.initrd_path, k.sha256, k.source, k.created_at_ms],
        );
        map_unique(r, "kernel", &k.name).map(|_| ())
    }

    pub fn get_kernel(&self, name: &str) -> Result<Option<KernelRecord>> {
        Ok(self
            .conn()
            .query_row(
                &format!("SELECT {} FROM kernels WHERE name = ?1", KernelRecord::COLUMNS),
                [name],
                KernelRecord::from_row,
            )
            .optional()?)
    }

    pub fn list_kernels(&self) -> Result<Vec<KernelRecord>> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare(&format!("SELECT {} FROM kernels ORDER BY name", KernelRecord::COLUMNS))?;
        let rows = stmt.query_map([], KernelRecord::from_row)?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Names of images that boot with `kernel`.
    pub fn images_using_kernel(&self, kernel: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name FROM images WHERE kernel = ?1 ORDER BY name")?;
        let rows = stmt.query_map([kernel], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Deletes a kernel row; `false` when there was none.
    pub fn delete_kernel(&self, name: &str) -> Result<bool> {
        Ok(self.conn().execute("DELETE FROM kernels WHERE name = ?1", [name])? > 0)
    }

    // ---- images --------------------------------------------------------

    pub fn insert_image(&self, i: &ImageRecord) -> Result<()> {
        let manifest = i.manifest.as_ref().map(serde_json::to_string).transpose()?;
        let r = self.conn().execute(
            "INSERT INTO images (id, name, kernel, rootfs_path, size_bytes, sha256, source, manifest, created_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                i.id, i.name, i.kernel, i.rootfs_path, i.size_bytes as i64, i.sha256, i.source,
                manifest, i.created_at_ms
            ],
        );
        map_unique(r, "image", &i.name).map(|_| ())
    }

    pub fn get_image_by_name(&self, name: &str) -> Result<Option<ImageRecord>> {
        self.image_where("name = ?1", name)
    }

    pub fn get_image_by_id(&self, id: &str) -> Result<Option<ImageRecord>> {
        self.image_where("id = ?1", id)
    }

    fn image_where(&self, cond: &str, arg: &str) -> Result<Option<ImageRecord>> {
        let row = self
            .conn()
            .query_row(
                &format!("SELECT {} FROM images WHERE {cond}", ImageRecord::COLUMNS),
                [arg],
                ImageRecord::from_row,
            )
            .optional()?;
        row.map(ImageRecord::finish).transpose()
    }

    pub fn list_images(&self) -> Result<Vec<ImageRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("SELECT {} FROM images ORDER BY name", ImageRecord::COLUMNS))?;
        let rows = stmt.query_map([], ImageRecord::from_row)?;
        rows.map(|r| ImageRecord::finish(r?)).collect()
    }

    /// Names of VMs created from image `id`.
    pub fn vms_using_image(&self, id: &str) -> Result<Vec<String>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT name FROM vms WHERE image_id = ?1 ORDER BY name")?;
        let rows = stmt.query_map([id], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn delete_image(&self, id: &str) -> Result<bool> {
        Ok(self.conn().execute("DELETE FROM images WHERE id = ?1", [id])? > 0)
    }

    // ---- vms -----------------------------------------------------------

    /// Inserts a new VM row. A taken name or IP is reported as such, so two
    /// racing creates can never both succeed.
    pub fn insert_vm(&self, v: &NewVm) -> Result<()> {
        let forwards = serde_json::to_string(&v.forwards)?;
        let r = self.conn().execute(
            "INSERT INTO vms (id, name, image_id, vcpu, memory_mib, disk_size_mib, guest_ip, vm_dir,
                              state, engine, engine_reason, nat, forwards, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?14)",
            params![
                v.id,
                v.name,
                v.image_id,
                v.vcpu,
                v.memory_mib as i64,
                v.disk_size_mib as i64,
                v.guest_ip.to_string(),
                v.vm_dir,
                v.state.as_str(),
                v.engine.as_str(),
                v.engine_reason,
                v.nat,
                forwards,
                v.created_at_ms
            ],
        );
        match r {
            Err(rusqlite::Error::SqliteFailure(e, Some(msg)))
                if e.code == rusqlite::ErrorCode::ConstraintViolation && msg.contains("guest_ip") =>
            {
                Err(StoreError::IpTaken(v.guest_ip))
            }
            r => map_unique(r, "VM", &v.name).map(|_| ()),
        }
    }

    pub fn get_vm(&self, id: &str) -> Result<Option<VmRecord>> {
        let row = self
            .conn()
            .query_row(&format!("{} WHERE v.id = ?1", VmRecord::SELECT), [id], VmRecord::from_row)
            .optional()?;
        row.map(VmRecord::finish).transpose()
    }

    pub fn list_vms(&self) -> Result<Vec<VmRecord>> {
        let conn = self.conn();
        let mut stmt = conn.prepare(&format!("{} ORDER BY v.created_at, v.name", VmRecord::SELECT))?;
        let rows = stmt.query_map([], VmRecord::from_row)?;
        rows.map(|r| VmRecord::finish(r?)).collect()
    }

    /// Guest IPs currently allocated to any VM.
    pub fn used_ips(&self) -> Result<Vec<Ipv4Addr>> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT guest_ip FROM vms")?;
        let rows = stmt.query_map([], |r| records::text_as(r, 0, |s| s.parse().ok()))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records a VM's state and last error (`None` clears it).
    pub fn set_vm_state(
        &self,
        id: &str,
        state: VmState,
        last_error: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        self.conn().execute(
            "UPDATE vms SET state = ?2, last_error = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, state.as_str(), last_error, now_ms],
        )?;
        Ok(())
    }

    /// Records the engine chosen for a VM's next start.
    pub fn set_vm_engine(&self, id: &str, engine: EngineKind, reason: &str, now_ms: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE vms SET engine = ?2, engine_reason = ?3, updated_at = ?4 WHERE id = ?1",
            params![id, engine.as_str(), reason, now_ms],
        )?;
        Ok(())
    }

    /// Updates a stopped VM's sizing and NAT flag (`vm set`).
    pub fn set_vm_spec(&self, id: &str, vcpu: u32, memory_mib: u64, nat: bool, now_ms: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE vms SET vcpu = ?2, memory_mib = ?3, nat = ?4, updated_at = ?5 WHERE id = ?1",
            params![id, vcpu, memory_mib as i64, nat, now_ms],
        )?;
        Ok(())
    }

    /// Records (or clears) the workspace copied into a VM.
    pub fn set_vm_workspace(&self, id: &str, workspace: Option<&Workspace>, now_ms: i64) -> Result<()> {
        let ws = workspace.map(serde_json::to_string).transpose()?;
        self.conn().execute(
            "UPDATE vms SET workspace = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, ws, now_ms],
        )?;
        Ok(())
    }

    /// Replaces a VM's recorded port forwards.
    pub fn set_vm_forwards(&self, id: &str, forwards: &[PortForward], now_ms: i64) -> Result<()> {
        self.conn().execute(
            "UPDATE vms SET forwards = ?2, updated_at = ?3 WHERE id = ?1",
            params![id, serde_json::to_string(forwards)?, now_ms],
        )?;
        Ok(())
    }

    pub fn delete_vm(&self, id: &str) -> Result<bool> {
        Ok(self.conn().execute("DELETE FROM vms WHERE id = ?1", [id])? > 0)
    }
}

fn map_unique(r: rusqlite::Result<usize>, kind: &'static str, name: &str) -> Result<usize> {
    match r {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation
                && (e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
                    || e.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY) =>
        {
            Err(StoreError::Duplicate { kind, name: name.to_string() })
        }
        r => Ok(r?),
    }
}

#[cfg(test)]
mod tests;
