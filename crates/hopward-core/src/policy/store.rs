//! The policy in force, swapped whole on reload; and where it comes from.
//!
//! Invariants: a reload that fails keeps the last good policy; a reload that
//! reads the same text changes nothing (same generation, so remembered
//! approvals stay); the outcome of the last reload is kept for `status`.

use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use super::Policy;
use super::file::{PolicyError, parse_file};

/// `--policy FILE`, then `$HOPWARD_POLICY`, then
/// `$XDG_CONFIG_HOME/hopward/policy.toml` (default `~/.config/...`) if it
/// exists; `None` means the built-in policy.
pub fn resolve_path(flag: Option<PathBuf>) -> Option<PathBuf> {
    if flag.is_some() {
        return flag;
    }
    if let Some(env) = std::env::var_os("HOPWARD_POLICY").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(env));
    }
    let path = default_path()?;
    path.exists().then_some(path)
}

/// Where the daemon looks for its policy: [`resolve_path`], else the
/// default location even though no file is there yet (`optional`), so the
/// first policy a user writes after starting the agent is picked up.
pub fn resolve_watched(flag: Option<PathBuf>) -> (Option<PathBuf>, bool) {
    match resolve_path(flag) {
        Some(path) => (Some(path), false),
        None => (default_path(), true),
    }
}

/// `$XDG_CONFIG_HOME/hopward/policy.toml` (default `~/.config/...`),
/// whether or not it exists.
pub fn default_path() -> Option<PathBuf> {
    std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))
        .map(|config| config.join("hopward/policy.toml"))
}

/// Loads the policy at `path`, or the built-in one.
pub fn load(path: Option<&std::path::Path>) -> Result<Policy, Vec<PolicyError>> {
    match path {
        Some(p) => parse_file(p),
        None => Ok(Policy::builtin()),
    }
}

/// The daemon's store: the policy file it would use, loaded, or the
/// built-in policy while the default file does not exist yet (it is
/// watched and read on SIGHUP all the same). A file that cannot be used
/// (it does not parse, or another user could have written it) does not stop
/// the start: the store then runs [`Policy::refusing_forwarded`] until a
/// good file loads, and [`PolicyStore::status`] holds the errors.
pub fn open(flag: Option<PathBuf>) -> PolicyStore {
    let (path, awaiting) = resolve_watched(flag);
    // Absolute, because a forked agent leaves its starting directory (as
    // ssh-agent does) and still reloads the file.
    let path = path.map(|p| std::path::absolute(&p).unwrap_or(p));
    if awaiting {
        return PolicyStore::awaiting(path);
    }
    match load(path.as_deref()) {
        Ok(policy) => PolicyStore::new(path, policy),
        Err(errors) => {
            let store = PolicyStore::new(path, Policy::refusing_forwarded());
            *store.status.write().unwrap_or_else(|e| e.into_inner()) = ReloadStatus::Kept {
                errors: errors.iter().map(ToString::to_string).collect(),
            };
            store
        }
    }
}

/// The outcome of the last (re)load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadStatus {
    Loaded,
    Kept { errors: Vec<String> },
}

/// What a successful reload did.
#[derive(Debug, Clone)]
pub struct Reloaded {
    pub policy: Arc<Policy>,
    /// False when the files held the same text as the policy in force.
    pub changed: bool,
}

#[derive(Debug)]
pub struct PolicyStore {
    path: Option<PathBuf>,
    /// The path is the default location, which may not exist yet: while no
    /// file was ever loaded from it, its absence means the built-in policy.
    optional: bool,
    /// The policy in force and its generation, which changes with every
    /// successful reload: what is cached per policy is keyed on it (an
    /// address could be reused by the next policy).
    current: RwLock<(u64, Arc<Policy>)>,
    status: RwLock<ReloadStatus>,
}

impl PolicyStore {
    pub fn new(path: Option<PathBuf>, policy: Policy) -> Self {
        PolicyStore {
            path,
            optional: false,
            current: RwLock::new((0, Arc::new(policy))),
            status: RwLock::new(ReloadStatus::Loaded),
        }
    }

    /// A store for the default location, where no file exists yet: the
    /// built-in policy is in force until one appears.
    pub(crate) fn awaiting(path: Option<PathBuf>) -> Self {
        PolicyStore {
            optional: true,
            ..PolicyStore::new(path, Policy::builtin())
        }
    }

    /// The file watched and re-read on reload (it may not exist yet).
    pub fn path(&self) -> Option<&std::path::Path> {
        self.path.as_deref()
    }

    /// The policy in force now (cheap: one Arc clone).
    pub fn current(&self) -> Arc<Policy> {
        self.snapshot().1
    }

    /// The policy in force with its generation, read together.
    pub fn snapshot(&self) -> (u64, Arc<Policy>) {
        let current = self.current.read().unwrap_or_else(|e| e.into_inner());
        (current.0, Arc::clone(&current.1))
    }

    pub fn status(&self) -> ReloadStatus {
        self.status
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Whether the file now says something else than what is in force (or
    /// than the errors kept): it changed between the load at start and the
    /// moment a watch was put on it, which no watch event will report.
    pub fn differs_on_disk(&self) -> bool {
        let in_force = self.current().digest;
        match (self.read(), self.status()) {
            (Ok(now), ReloadStatus::Loaded) => now.digest != in_force,
            (Err(now), ReloadStatus::Kept { errors }) => {
                now.iter().map(ToString::to_string).ne(errors)
            }
            _ => true,
        }
    }

    /// Re-reads the file. On error the last good policy stays; the same
    /// text as before leaves everything as it is. (The agent reads and
    /// adopts in two steps, see [`PolicyStore::read`].)
    #[cfg(any(test, feature = "testing"))]
    pub fn reload(&self) -> Result<Reloaded, Vec<PolicyError>> {
        self.adopt(self.read())
    }

    /// What a reload would load now, without putting it in force (the
    /// watcher reads twice and adopts only what did not change between).
    pub fn read(&self) -> Result<Policy, Vec<PolicyError>> {
        let never_loaded = self.current().source.is_none();
        let missing = self.path.as_deref().is_some_and(|p| {
            matches!(std::fs::symlink_metadata(p), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
        });
        // Only while the built-in policy is in force does a missing default
        // file mean "built in"; once a file was loaded, deleting it keeps
        // the last good policy, as for any other unreadable file.
        if self.optional && never_loaded && missing {
            Ok(Policy::builtin())
        } else {
            load(self.path.as_deref())
        }
    }

    /// Puts what [`PolicyStore::read`] returned in force, or keeps the last
    /// good policy and records the errors.
    pub fn adopt(
        &self,
        loaded: Result<Policy, Vec<PolicyError>>,
    ) -> Result<Reloaded, Vec<PolicyError>> {
        match loaded {
            Ok(policy) => {
                let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
                *self.status.write().unwrap_or_else(|e| e.into_inner()) = ReloadStatus::Loaded;
                if current.1.digest == policy.digest {
                    return Ok(Reloaded {
                        policy: Arc::clone(&current.1),
                        changed: false,
                    });
                }
                let policy = Arc::new(policy);
                *current = (current.0 + 1, Arc::clone(&policy));
                Ok(Reloaded {
                    policy,
                    changed: true,
                })
            }
            Err(errors) => {
                *self.status.write().unwrap_or_else(|e| e.into_inner()) = ReloadStatus::Kept {
                    errors: errors.iter().map(ToString::to_string).collect(),
                };
                Err(errors)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bug 2 (SIGHUP's path): a store for the default location with no file
    /// yet serves the built-in policy, and a reload reads the file once it
    /// is written. Bug 1: reading the same text again changes nothing.
    #[test]
    fn a_file_written_later_is_read_and_the_same_text_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hopward/policy.toml");
        let store = PolicyStore::awaiting(Some(path.clone()));
        assert!(store.current().source.is_none());
        let r = store.reload().unwrap();
        assert!(!r.changed, "still no file: still built in, nothing changed");
        assert_eq!(store.snapshot().0, 0);

        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "[[rule]]\nname = \"x\"\naction = \"deny\"\n").unwrap();
        let r = store.reload().unwrap();
        assert!(r.changed);
        assert_eq!(r.policy.rules.len(), 1);
        assert_eq!(store.current().source.as_deref(), Some(path.as_path()));
        let generation = store.snapshot().0;
        assert!(!store.reload().unwrap().changed);
        assert_eq!(store.snapshot().0, generation, "same text, same generation");

        // Once a file was loaded, deleting it keeps the last good policy.
        std::fs::remove_file(&path).unwrap();
        assert!(store.reload().is_err());
        assert_eq!(store.current().rules.len(), 1);
        assert!(matches!(store.status(), ReloadStatus::Kept { .. }));
    }

    /// A file that does not parse, or that others can write, does not stop
    /// the start: local use as built in, everything forwarded refused, and
    /// the errors (with the fix) kept for `status`. A good file then loads.
    #[test]
    fn an_unusable_file_at_start_refuses_forwarded_use_until_a_good_one_loads() {
        use crate::policy::Action;
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.toml");
        std::fs::write(&path, "[defaults]\nforwarded = \"allow\"\n").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        let store = open(Some(path.clone()));
        let policy = store.current();
        assert_eq!(policy.defaults.local, Action::Allow);
        for action in [
            policy.defaults.forwarded,
            policy.defaults.forwarded_unknown,
            policy.defaults.forwarded_unverified,
            policy.forwarded.add,
            policy.forwarded.unlock,
        ] {
            assert_eq!(action, Action::Deny);
        }
        let ReloadStatus::Kept { errors } = store.status() else {
            panic!("the refusal is kept for status");
        };
        assert!(
            errors[0].contains(&format!("fix: chmod go-w {}", path.display())),
            "{errors:?}"
        );
        assert!(store.reload().is_err(), "still writable by others");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        let r = store.reload().unwrap();
        assert!(r.changed);
        assert_eq!(store.current().defaults.forwarded, Action::Allow);
    }

    /// A file written between the load at start and the watch being put on
    /// it raised no event: the watcher asks whether the file says something
    /// else than what is in force, and nothing else makes it look.
    #[test]
    fn a_change_before_the_watch_is_seen_and_no_change_is_not() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hopward/policy.toml");
        let awaiting = PolicyStore::awaiting(Some(path.clone()));
        assert!(
            !awaiting.differs_on_disk(),
            "no file yet: built in, as in force"
        );
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "[[rule]]\nname = \"x\"\naction = \"deny\"\n").unwrap();
        assert!(awaiting.differs_on_disk(), "a file appeared");

        let loaded = open(Some(path.clone()));
        assert!(!loaded.differs_on_disk(), "the same text");
        std::fs::write(&path, "[[rule]]\nname = \"y\"\naction = \"deny\"\n").unwrap();
        assert!(loaded.differs_on_disk(), "rewritten");

        std::fs::write(&path, "[[rule]]\nname = 1\n").unwrap();
        let broken = open(Some(path.clone()));
        assert!(!broken.differs_on_disk(), "the same errors as kept");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
        assert!(broken.differs_on_disk(), "other errors than kept");
    }
}
