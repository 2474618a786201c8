//! Forward-only schema migrations. Each entry moves the schema from version
//! `index` to `index + 1`; `PRAGMA user_version` records where a database is.
//! Never edit a released migration: append a new one.

use crate::{Result, StoreError};
use rusqlite::Connection;

const MIGRATIONS: &[&str] = &[
    // 1: kernels, images, vms.
    "CREATE TABLE kernels (
        name         TEXT PRIMARY KEY,
        vmlinux_path TEXT NOT NULL,
        initrd_path  TEXT,
        sha256       TEXT NOT NULL,
        source       TEXT NOT NULL,
        created_at   INTEGER NOT NULL
    );
    CREATE TABLE images (
        id          TEXT PRIMARY KEY,
        name        TEXT NOT NULL UNIQUE,
        kernel      TEXT NOT NULL REFERENCES kernels(name) ON DELETE RESTRICT,
        rootfs_path TEXT NOT NULL,
        size_bytes  INTEGER NOT NULL,
        sha256      TEXT NOT NULL,
        source      TEXT NOT NULL,
        manifest    TEXT,
        created_at  INTEGER NOT NULL
    );
    CREATE TABLE vms (
        id            TEXT PRIMARY KEY,
        name          TEXT NOT NULL UNIQUE,
        image_id      TEXT NOT NULL REFERENCES images(id) ON DELETE RESTRICT,
        vcpu          INTEGER NOT NULL,
        memory_mib    INTEGER NOT NULL,
        disk_size_mib INTEGER NOT NULL,
        guest_ip      TEXT NOT NULL UNIQUE,
        vm_dir        TEXT NOT NULL,
        state         TEXT NOT NULL,
        engine        TEXT NOT NULL,
        engine_reason TEXT NOT NULL,
        nat           INTEGER NOT NULL DEFAULT 0,
        last_error    TEXT,
        workspace     TEXT,
        forwards      TEXT NOT NULL DEFAULT '[]',
        created_at    INTEGER NOT NULL,
        updated_at    INTEGER NOT NULL
    );
    CREATE INDEX vms_image ON vms(image_id);",
];

/// Schema version this build writes.
pub const LATEST: i64 = MIGRATIONS.len() as i64;

pub fn apply(conn: &mut Connection, path: &str) -> Result<()> {
    let found: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > LATEST {
        return Err(StoreError::TooNew { path: path.to_string(), found, known: LATEST });
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(found as usize) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i as i64 + 1)?;
        tx.commit()?;
    }
    Ok(())
}
