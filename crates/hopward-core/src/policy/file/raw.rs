//! The policy file as the TOML reader sees it: every table and field, each
//! with the span it was written at, before anything is checked.
//!
//! Unknown fields are errors (`deny_unknown_fields`), so a misspelt key is
//! reported where it is, never silently ignored.

use serde::Deserialize;
use toml::Spanned;

pub(super) type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    pub(super) include: Option<Vec<S<String>>>,
    pub(super) defaults: Option<RawDefaults>,
    pub(super) confirm: Option<RawConfirm>,
    pub(super) forwarded: Option<RawForwarded>,
    pub(super) audit: Option<RawAudit>,
    pub(super) known_hosts: Option<RawKnownHosts>,
    pub(super) lock: Option<RawLock>,
    pub(super) upstream: Option<RawUpstream>,
    #[serde(default)]
    pub(super) rule: Vec<S<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLock {
    pub(super) idle: Option<S<String>>,
    pub(super) on_screen_lock: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawDefaults {
    pub(super) local: Option<S<String>>,
    pub(super) forwarded: Option<S<String>>,
    pub(super) forwarded_unknown: Option<S<String>>,
    pub(super) forwarded_unverified: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfirm {
    pub(super) method: Option<S<String>>,
    pub(super) command: Option<S<Vec<String>>>,
    pub(super) timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawForwarded {
    pub(super) add: Option<S<String>>,
    pub(super) remove: Option<S<String>>,
    pub(super) remove_all: Option<S<String>>,
    pub(super) lock: Option<S<String>>,
    pub(super) unlock: Option<S<String>>,
    pub(super) brake: Option<S<RawBrake>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBrake {
    pub(super) hosts: S<i64>,
    pub(super) per: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    pub(super) path: Option<S<String>>,
    pub(super) max_bytes: Option<S<u64>>,
    pub(super) journald: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
    pub(super) socket: Option<S<String>>,
    pub(super) timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKnownHosts {
    #[serde(default)]
    pub(super) files: Vec<S<String>>,
    /// Ports ssh may record a rule's host name under (`[name]:port`), for
    /// hashed entries, which cannot be read back.
    #[serde(default)]
    pub(super) ports: Vec<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) name: Option<S<String>>,
    pub(super) keys: Option<S<Vec<S<String>>>>,
    pub(super) host: Option<S<Vec<S<String>>>>,
    pub(super) via: Option<S<Vec<S<String>>>>,
    pub(super) jump: Option<S<Vec<S<String>>>>,
    pub(super) user: Option<S<Vec<S<String>>>>,
    pub(super) purpose: Option<S<String>>,
    pub(super) action: S<String>,
    pub(super) remember: Option<S<String>>,
    pub(super) caller: Option<S<Vec<S<String>>>>,
    pub(super) ancestor: Option<S<Vec<S<String>>>>,
    pub(super) cwd: Option<S<Vec<S<String>>>>,
}
