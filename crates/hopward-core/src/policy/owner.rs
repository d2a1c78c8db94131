//! Who could have written a policy file: a file, or a directory on the way
//! to it, that another user can write is refused, as OpenSSH's StrictModes
//! refuses such an `authorized_keys` (`safe_path` in its misc.c).
//!
//! The file and every directory above it (up to and including `$HOME`, or
//! up to `/`) must be owned by this user or root and not be writable by
//! group or others, both along the path as named (a symlink's directory
//! decides who can swap the link) and along the path it resolves to. One
//! allowance OpenSSH does not make: a directory with the sticky bit (`/tmp`)
//! may be writable by all, since others cannot rename or delete what is in
//! it, so a private directory inside it stays private.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// Why a policy file may not be used, and how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unsafe {
    /// The file or directory at fault.
    pub path: PathBuf,
    pub message: String,
    /// A command that makes it safe.
    pub fix: String,
}

impl std::fmt::Display for Unsafe {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}; fix: {}", self.message, self.fix)
    }
}

/// Checks `path` for the user running hopward. `Ok` also when the file does
/// not exist: reading it reports that.
pub(crate) fn check(path: &Path) -> Result<(), Unsafe> {
    check_for(path, crate::sys::effective_uid(), home().as_deref())
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .map(|h| std::fs::canonicalize(&h).unwrap_or(h))
}

/// [`check`] for a given uid and home directory.
pub(crate) fn check_for(path: &Path, uid: u32, home: Option<&Path>) -> Result<(), Unsafe> {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let meta = match std::fs::metadata(&absolute) {
        Ok(meta) => meta,
        Err(_) => return Ok(()),
    };
    if !meta.is_file() {
        return Err(Unsafe {
            path: absolute.clone(),
            message: format!("{} is not a regular file", absolute.display()),
            fix: format!("point the policy at a file, not {}", absolute.display()),
        });
    }
    judge(&absolute, &meta, uid, false)?;
    // Who can replace the file: anyone who can write a directory above it,
    // along the name used and along the name it resolves to.
    let resolved = std::fs::canonicalize(&absolute).unwrap_or_else(|_| absolute.clone());
    for start in [&absolute, &resolved] {
        for dir in start.ancestors().skip(1) {
            if dir.as_os_str().is_empty() {
                break;
            }
            let meta = std::fs::metadata(dir).map_err(|e| Unsafe {
                path: dir.to_path_buf(),
                message: format!("cannot check directory {}: {e}", dir.display()),
                fix: format!("make {} readable", dir.display()),
            })?;
            judge(dir, &meta, uid, true)?;
            if home.is_some_and(|h| h == dir) {
                break;
            }
        }
    }
    Ok(())
}

fn judge(path: &Path, meta: &std::fs::Metadata, uid: u32, is_dir: bool) -> Result<(), Unsafe> {
    let what = if is_dir { "directory " } else { "" };
    let owner = meta.uid();
    if owner != uid && owner != 0 {
        return Err(Unsafe {
            path: path.to_path_buf(),
            message: format!(
                "{what}{} is owned by uid {owner}, not by you (uid {uid}) or root, \
                 so another user decides what it says: refused",
                path.display()
            ),
            fix: format!(
                "check what it says, then replace it with one of your own \
                 (or, as root: chown {uid} {})",
                path.display()
            ),
        });
    }
    let mode = meta.mode();
    let sticky = is_dir && mode & 0o1000 != 0;
    if mode & 0o022 != 0 && !sticky {
        return Err(Unsafe {
            path: path.to_path_buf(),
            message: format!(
                "{what}{} is writable by group or others (mode {:04o}), \
                 so another user could rewrite the policy: refused",
                path.display(),
                mode & 0o7777
            ),
            fix: format!("chmod go-w {}", path.display()),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn writable_by_others_or_owned_by_another_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let home = std::fs::canonicalize(dir.path()).unwrap();
        mode(&home, 0o700);
        let file = home.join("policy.toml");
        std::fs::write(&file, "").unwrap();
        let me = crate::sys::effective_uid();
        mode(&file, 0o600);
        assert_eq!(check_for(&file, me, Some(&home)), Ok(()));

        mode(&file, 0o666);
        let e = check_for(&file, me, Some(&home)).unwrap_err();
        assert_eq!(e.fix, format!("chmod go-w {}", file.display()));
        assert!(e.message.contains("mode 0666"), "{e}");
        mode(&file, 0o620);
        assert!(check_for(&file, me, Some(&home)).is_err(), "group-writable");

        // Owned by someone else: as root, give the file away; otherwise ask
        // as a user whose uid is not ours.
        mode(&file, 0o600);
        let (owner, asking) = if me == 0 {
            std::os::unix::fs::chown(&file, Some(4242), None).unwrap();
            (4242, me)
        } else {
            (me, me + 4242)
        };
        let e = check_for(&file, asking, Some(&home)).unwrap_err();
        assert!(e.message.contains(&format!("owned by uid {owner}")), "{e}");
        if me == 0 {
            std::os::unix::fs::chown(&file, Some(0), None).unwrap();
        }

        // A directory on the way that others can write.
        let sub = home.join("conf");
        std::fs::create_dir(&sub).unwrap();
        let inner = sub.join("policy.toml");
        std::fs::write(&inner, "").unwrap();
        mode(&inner, 0o600);
        mode(&sub, 0o777);
        let e = check_for(&inner, me, Some(&home)).unwrap_err();
        assert_eq!(e.path, sub);
        assert_eq!(e.fix, format!("chmod go-w {}", sub.display()));
        // Sticky, like /tmp: others cannot replace what is in it.
        mode(&sub, 0o1777);
        assert_eq!(check_for(&inner, me, Some(&home)), Ok(()));

        // A symlink is judged by its own directory and by its target's.
        let link = home.join("link.toml");
        std::os::unix::fs::symlink(&inner, &link).unwrap();
        mode(&sub, 0o777);
        assert_eq!(check_for(&link, me, Some(&home)).unwrap_err().path, sub);
    }
}
