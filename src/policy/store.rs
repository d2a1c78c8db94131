//! The policy in force, swapped whole on reload; and where it comes from.
//!
//! Invariant: a reload that fails keeps the last good policy; the outcome of
//! the last reload is kept for `status`.

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
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    let path = config.join("hopward/policy.toml");
    path.exists().then_some(path)
}

/// Loads the policy at `path`, or the built-in one.
pub fn load(path: Option<&std::path::Path>) -> Result<Policy, Vec<PolicyError>> {
    match path {
        Some(p) => parse_file(p),
        None => Ok(Policy::builtin()),
    }
}

/// The outcome of the last (re)load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadStatus {
    Loaded,
    Kept { errors: Vec<String> },
}

#[derive(Debug)]
pub struct PolicyStore {
    path: Option<PathBuf>,
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
            current: RwLock::new((0, Arc::new(policy))),
            status: RwLock::new(ReloadStatus::Loaded),
        }
    }

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

    /// Re-reads the file. On error the last good policy stays.
    pub fn reload(&self) -> Result<Arc<Policy>, Vec<PolicyError>> {
        match load(self.path.as_deref()) {
            Ok(policy) => {
                let policy = Arc::new(policy);
                let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
                *current = (current.0 + 1, Arc::clone(&policy));
                *self.status.write().unwrap_or_else(|e| e.into_inner()) = ReloadStatus::Loaded;
                Ok(policy)
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
