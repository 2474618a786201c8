//! Guest kernels: recognising a usable vmlinux.

use anyhow::{bail, Context};
use std::io::Read;
use std::path::Path;

/// Checks that `path` is an uncompressed x86-64 ELF kernel (`vmlinux`), the
/// format Firecracker loads and QEMU microvm boots through its PVH note.
pub fn check_vmlinux(path: &Path) -> anyhow::Result<()> {
    let mut head = [0u8; 64];
    let mut f = std::fs::File::open(path).with_context(|| format!("Cannot open {}", path.display()))?;
    let n = f.read(&mut head).with_context(|| format!("Cannot read {}", path.display()))?;
    if n < 64 || &head[..4] != b"\x7fELF" {
        if n >= 0x206 || is_bzimage(path) {
            bail!(
                "{} is not an ELF vmlinux (a compressed bzImage? extract it with the kernel's scripts/extract-vmlinux)",
                path.display()
            );
        }
        bail!("{} is not an ELF vmlinux", path.display());
    }
    // e_ident[EI_CLASS] = 2 (64-bit); e_machine = 62 (x86-64), little endian.
    let machine = u16::from_le_bytes([head[18], head[19]]);
    if head[4] != 2 || machine != 62 {
        bail!(
            "{} is an ELF file but not an x86-64 kernel (class {}, machine {machine})",
            path.display(),
            head[4]
        );
    }
    // A kernel is a fixed-address executable (ET_EXEC); programs and
    // libraries are ET_DYN.
    let e_type = u16::from_le_bytes([head[16], head[17]]);
    if e_type != 2 {
        bail!("{} is an ELF program or library, not a kernel image", path.display());
    }
    Ok(())
}

fn is_bzimage(path: &Path) -> bool {
    let mut buf = [0u8; 0x206];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut buf)).is_ok()
        && &buf[0x202..0x206] == b"HdrS"
}

/// Whether the ELF executable at `path` is statically linked (has no
/// `PT_INTERP` program header). The guest agent must be: it runs in images
/// whose libc, if any, we know nothing about.
pub fn elf_is_static(path: &Path) -> anyhow::Result<bool> {
    let data = std::fs::read(path).with_context(|| format!("Cannot read {}", path.display()))?;
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        bail!("{} is not a 64-bit ELF executable", path.display());
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let phoff = u64::from_le_bytes(data[32..40].try_into().expect("8 bytes")) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    for i in 0..phnum {
        let off = phoff + i * phentsize;
        let Some(ph) = data.get(off..off + 4) else {
            bail!("{} has a truncated program header table", path.display());
        };
        if u32::from_le_bytes(ph.try_into().expect("4 bytes")) == 3 {
            return Ok(false); // PT_INTERP
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn elf_checks() {
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("vmlinux");
        let mut elf = vec![0u8; 128];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[18] = 62;
        elf[16] = 2;
        std::fs::write(&good, &elf).unwrap();
        check_vmlinux(&good).unwrap();
        let pie = d.path().join("pie");
        elf[16] = 3;
        std::fs::write(&pie, &elf).unwrap();
        assert!(check_vmlinux(&pie).is_err());
        elf[16] = 2;
        check_vmlinux(&good).unwrap();
        let arm = d.path().join("arm");
        elf[18] = 183;
        std::fs::write(&arm, &elf).unwrap();
        assert!(check_vmlinux(&arm).is_err());
        let txt = d.path().join("txt");
        std::fs::write(&txt, b"hello").unwrap();
        assert!(check_vmlinux(&txt).is_err());
        assert!(check_vmlinux(&d.path().join("missing")).is_err());
    }
}
