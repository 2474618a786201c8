//! Users from /etc/passwd, read directly: the static agent must not call
//! glibc's NSS functions (`getpwnam`), which cannot load modules when static.

/// One /etc/passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

impl User {
    pub fn root() -> User {
        User { name: "root".into(), uid: 0, gid: 0, home: "/root".into(), shell: "/bin/sh".into() }
    }
}

/// Finds a user by name or numeric uid in `passwd` (the file's text).
pub fn lookup(passwd: &str, who: &str) -> Option<User> {
    let by_uid: Option<u32> = who.parse().ok();
    passwd.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        if f.len() < 7 {
            return None;
        }
        let uid: u32 = f[2].parse().ok()?;
        let gid: u32 = f[3].parse().ok()?;
        if f[0] == who || by_uid == Some(uid) {
            Some(User { name: f[0].into(), uid, gid, home: f[5].into(), shell: f[6].into() })
        } else {
            None
        }
    })
}

/// Resolves `who` (default root) against the guest's /etc/passwd.
pub fn resolve(who: Option<&str>) -> Result<User, String> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    match who {
        None | Some("root") | Some("0") => Ok(lookup(&passwd, "root").unwrap_or_else(User::root)),
        Some(w) => lookup(&passwd, w).ok_or_else(|| format!("no user {w:?} in the guest's /etc/passwd")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_passwd() {
        let p = "root:x:0:0:root:/root:/bin/bash\n# c\ndev:x:1000:100:Dev:/home/dev:/bin/zsh\nbad line\n";
        assert_eq!(lookup(p, "dev").unwrap().home, "/home/dev");
        assert_eq!(lookup(p, "1000").unwrap().name, "dev");
        assert_eq!(lookup(p, "root").unwrap().shell, "/bin/bash");
        assert!(lookup(p, "nobody").is_none());
    }
}
