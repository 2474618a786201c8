//! Input rules shared by the CLI (to fail fast) and the daemon (to enforce).

use crate::ApiError;

/// Longest VM, image or kernel name: one DNS label.
pub const MAX_NAME_LEN: usize = 63;

/// Bounds for VM sizing. Firecracker allows at most 32 vCPUs; memory and disk
/// limits only catch typos (a forgotten unit, an extra digit).
pub const VCPU_RANGE: std::ops::RangeInclusive<u32> = 1..=32;
pub const MEMORY_MIB_RANGE: std::ops::RangeInclusive<u64> = 128..=256 * 1024;
pub const DISK_MIB_RANGE: std::ops::RangeInclusive<u64> = 256..=4 * 1024 * 1024;

/// Checks a VM name: 1–63 of `[a-z0-9-]`, no leading or trailing `-`. VM
/// names become host names and `<name>.vm` DNS labels, hence the DNS rules.
pub fn vm_name(name: &str) -> Result<(), ApiError> {
    label(name, "VM name", |c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Checks an image or kernel name: like a VM name, but `.` and `_` are also
/// allowed inside (`debian-12.7`, `vmlinux_6.1`).
pub fn object_name(name: &str, what: &str) -> Result<(), ApiError> {
    label(name, what, |c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_'))
}

fn label(name: &str, what: &str, allowed: impl Fn(char) -> bool) -> Result<(), ApiError> {
    let hint = "use 1-63 lowercase letters, digits and dashes, starting and ending with a letter or digit";
    if name.is_empty() {
        return Err(ApiError::invalid(format!("{what} is empty")).with_hint(hint));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(ApiError::invalid(format!(
            "{what} {name:?} is {} characters long; the limit is {MAX_NAME_LEN}",
            name.len()
        ))
        .with_hint(hint));
    }
    if let Some(bad) = name.chars().find(|&c| !allowed(c)) {
        return Err(ApiError::invalid(format!("{what} {name:?} contains {bad:?}")).with_hint(hint));
    }
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge_ok(name.chars().next()) || !edge_ok(name.chars().last()) {
        return Err(ApiError::invalid(format!("{what} {name:?} must start and end with a letter or digit"))
            .with_hint(hint));
    }
    Ok(())
}

/// Parses a size into MiB. A bare number means MiB; `K`, `M`, `G`, `T` and
/// `KiB`, `MiB`, `GiB`, `TiB` are binary units (case-insensitive). The
/// result must be a whole, non-zero number of MiB.
pub fn parse_size_mib(input: &str) -> Result<u64, ApiError> {
    let hint = "write a size like 512, 512M, 2G or 2GiB (a bare number means MiB)";
    let s = input.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (digits, unit) = s.split_at(split);
    if digits.is_empty() {
        return Err(ApiError::invalid(format!("size {input:?} does not start with a number")).with_hint(hint));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| ApiError::invalid(format!("size {input:?} is too large")).with_hint(hint))?;
    let kib_per_unit: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "k" | "kib" => 1,
        "" | "m" | "mib" => 1024,
        "g" | "gib" => 1024 * 1024,
        "t" | "tib" => 1024 * 1024 * 1024,
        other => {
            return Err(
                ApiError::invalid(format!("size {input:?} has an unknown unit {other:?}")).with_hint(hint)
            )
        }
    };
    let kib = n
        .checked_mul(kib_per_unit)
        .ok_or_else(|| ApiError::invalid(format!("size {input:?} is too large")).with_hint(hint))?;
    if kib == 0 {
        return Err(ApiError::invalid(format!("size {input:?} is zero")).with_hint(hint));
    }
    if !kib.is_multiple_of(1024) {
        return Err(ApiError::invalid(format!("size {input:?} is not a whole number of MiB")).with_hint(hint));
    }
    Ok(kib / 1024)
}

/// Formats MiB for people: `512M`, `2G`, `1.5G`.
pub fn format_mib(mib: u64) -> String {
    if mib >= 1024 && mib.is_multiple_of(1024) {
        format!("{}G", mib / 1024)
    } else if mib >= 1024 {
        format!("{:.1}G", mib as f64 / 1024.0)
    } else {
        format!("{mib}M")
    }
}

pub fn vcpu(n: u32) -> Result<(), ApiError> {
    in_range(u64::from(n), 1, 32, "vCPU count", "")
}

pub fn memory_mib(mib: u64) -> Result<(), ApiError> {
    in_range(mib, *MEMORY_MIB_RANGE.start(), *MEMORY_MIB_RANGE.end(), "memory size", " MiB")
}

pub fn disk_size_mib(mib: u64) -> Result<(), ApiError> {
    in_range(mib, *DISK_MIB_RANGE.start(), *DISK_MIB_RANGE.end(), "disk size", " MiB")
}

fn in_range(v: u64, lo: u64, hi: u64, what: &str, unit: &str) -> Result<(), ApiError> {
    if v < lo || v > hi {
        return Err(ApiError::invalid(format!("{what} {v}{unit} is out of range"))
            .with_hint(format!("choose between {lo}{unit} and {hi}{unit}")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_names() {
        for ok in ["a", "web-1", "0abc", &"a".repeat(63)] {
            assert!(vm_name(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "a-", "A", "a_b", "a.b", "ä", "a b", &"a".repeat(64)] {
            assert!(vm_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn object_names_allow_dots() {
        assert!(object_name("debian-12.7", "image name").is_ok());
        assert!(object_name("vmlinux_6.1", "kernel name").is_ok());
        assert!(object_name(".x", "image name").is_err());
        assert!(object_name("../x", "image name").is_err());
        assert!(object_name("a/b", "image name").is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size_mib("512").unwrap(), 512);
        assert_eq!(parse_size_mib("512M").unwrap(), 512);
        assert_eq!(parse_size_mib("512MiB").unwrap(), 512);
        assert_eq!(parse_size_mib("2G").unwrap(), 2048);
        assert_eq!(parse_size_mib("2gib").unwrap(), 2048);
        assert_eq!(parse_size_mib("1T").unwrap(), 1024 * 1024);
        assert_eq!(parse_size_mib("2048K").unwrap(), 2);
        assert_eq!(parse_size_mib(" 8G ").unwrap(), 8192);
        for bad in [
            "",
            "0",
            "0G",
            "-1",
            "1.5G",
            "G",
            "12MB",
            "1000K",
            "99999999999999999999",
            "18446744073709551615T",
        ] {
            assert!(parse_size_mib(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ranges() {
        assert!(vcpu(0).is_err());
        assert!(vcpu(33).is_err());
        assert!(vcpu(2).is_ok());
        assert!(memory_mib(64).is_err());
        assert!(memory_mib(1024).is_ok());
        assert!(disk_size_mib(100).is_err());
        assert!(disk_size_mib(8192).is_ok());
        assert!(disk_size_mib(u64::MAX).is_err());
    }

    #[test]
    fn formats() {
        assert_eq!(format_mib(512), "512M");
        assert_eq!(format_mib(2048), "2G");
        assert_eq!(format_mib(1536), "1.5G");
    }

    /// The property version of the `api_bodies` fuzz target.
    mod props {
        use proptest::prelude::*;

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(500))]
            #[test]
            fn any_body_parses_and_validates_or_fails(body in "\\{(\"(name|image|vcpu|memory_mib|disk_size_mib|engine|nat|forwards)\": ?(\"[^\"]{0,20}\"|-?[0-9]{1,22}|true|null|\\[\\]),? ?){0,5}\\}?") {
                if let Ok(r) = serde_json::from_str::<crate::CreateVmRequest>(&body) {
                    if let Some(n) = &r.name {
                        let _ = super::super::vm_name(n);
                    }
                    let _ = r.vcpu.map(super::super::vcpu);
                    let _ = r.memory_mib.map(super::super::memory_mib);
                    let _ = r.disk_size_mib.map(super::super::disk_size_mib);
                }
                let _ = super::super::parse_size_mib(&body);
            }
        }
    }
}
