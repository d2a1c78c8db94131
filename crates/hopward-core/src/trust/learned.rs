//! Host names learned from ssh itself: under `HashKnownHosts yes` a
//! known_hosts line hides its names, so ssh's `KnownHostsCommand` (written
//! by `hopward ssh-config`) reports the name it is verifying and the key it
//! was offered, and the name is kept for that key.
//!
//! Invariants: this module only stores; [`crate::trust::known_hosts::KnownHosts`]
//! keeps a name only when a known_hosts entry confirms that exact name with
//! that key, when it is reported, when the file is loaded and at every use,
//! so nothing a client sends can teach a false name. The store is bounded
//! ([`MAX_NAMES`], [`MAX_NAMES_PER_KEY`], [`MAX_NAME_LEN`]; the oldest name
//! goes first), names are a strict character set, and the file is 0600 in
//! the state directory.

use std::collections::VecDeque;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use base64::Engine as _;

/// Names kept in all: a few thousand hosts is more than one person logs
/// in to, and each costs about a hundred bytes.
pub(crate) const MAX_NAMES: usize = 4096;
/// Names kept for one host key (its names, addresses and `[name]:port`
/// forms); a key reported under more names keeps the newest.
pub(crate) const MAX_NAMES_PER_KEY: usize = 32;
/// The longest name kept (a DNS name is at most 253 characters).
pub(crate) const MAX_NAME_LEN: usize = 255;

/// The file the daemon keeps learned names in.
pub fn default_file() -> Option<PathBuf> {
    crate::paths::state_dir().map(|d| d.join("learned_hosts"))
}

/// One learned name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LearnedName {
    /// The plain host key blob (of the key inside a certificate).
    pub key: Vec<u8>,
    /// The key as ssh reported it (a certificate stays one, so its
    /// `@cert-authority` line can confirm the name again on load).
    pub(crate) reported: Vec<u8>,
    /// Lower-cased, as ssh looks names up.
    pub name: String,
}

/// A name as ssh passes it in `%H` (a host name, an address, `[host]:port`
/// or a `HostKeyAlias`), lower-cased; `None` for anything else. ssh itself
/// refuses to record names with `@?*#|'"\` and spaces; the set here is
/// narrower still, so a name can never carry a pattern, a separator of
/// the file, or terminal control.
pub(crate) fn valid_name(name: &str) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:[]%".contains(&b));
    ok.then(|| name.to_ascii_lowercase())
}

/// Learned names, oldest first.
#[derive(Debug, Default)]
pub(crate) struct Learned {
    entries: VecDeque<LearnedName>,
    /// Bumped on every change, so views cached on it are rebuilt.
    generation: u64,
}

impl Learned {
    pub(crate) fn generation(&self) -> u64 {
        self.generation
    }

    /// The names kept for a plain host key blob, oldest first.
    pub(crate) fn names_for(&self, key: &[u8]) -> Vec<String> {
        self.entries
            .iter()
            .filter(|e| e.key == key)
            .map(|e| e.name.clone())
            .collect()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &LearnedName> {
        self.entries.iter()
    }

    /// Keeps `entry` (already confirmed by the caller); true if it is new.
    /// A name learned again moves to the newest place.
    pub(crate) fn insert(&mut self, entry: LearnedName) -> bool {
        let before = self.entries.len();
        self.entries
            .retain(|e| !(e.key == entry.key && e.name == entry.name));
        let new = self.entries.len() == before;
        let same_key = self.entries.iter().filter(|e| e.key == entry.key).count();
        if same_key >= MAX_NAMES_PER_KEY {
            if let Some(oldest) = self.entries.iter().position(|e| e.key == entry.key) {
                self.entries.remove(oldest);
            }
        }
        while self.entries.len() >= MAX_NAMES {
            self.entries.pop_front();
        }
        self.entries.push_back(entry);
        self.generation += 1;
        new
    }

    /// The file's text: a comment, then `NAME BASE64-KEY` per line.
    pub(crate) fn to_text(&self) -> String {
        let b64 = base64::engine::general_purpose::STANDARD;
        let mut text = String::from(
            "# Host names hopward learned from ssh (KnownHostsCommand), each confirmed by a\n\
             # known_hosts entry for that key; checked again on load and on every use.\n",
        );
        for e in &self.entries {
            text.push_str(&format!("{} {}\n", e.name, b64.encode(&e.reported)));
        }
        text
    }
}

/// Parses the file's text; bad lines are skipped (each is counted in the
/// second value), never fatal. The names still need confirming.
pub fn parse(text: &str) -> (Vec<LearnedName>, usize) {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = Vec::new();
    let mut bad = 0;
    for line in text.lines().take(MAX_NAMES * 2) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let parsed = line.split_once(' ').and_then(|(name, key)| {
            let name = valid_name(name)?;
            let reported = b64.decode(key.trim()).ok()?;
            let key = crate::ssh::key::PublicKey::parse(&reported).ok()?;
            Some(LearnedName {
                key: key.parts.blob(),
                reported,
                name,
            })
        });
        match parsed {
            Some(entry) => out.push(entry),
            None => bad += 1,
        }
    }
    (out, bad)
}

/// Reads the file; a missing file is an empty store.
pub fn read(path: &Path) -> std::io::Result<String> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        other => other,
    }
}

/// Writes the file whole (a temporary file renamed over it, 0600), in a
/// directory created 0700, so a crash never leaves half a file.
pub(crate) fn write(path: &Path, text: &str) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::paths::ensure_private_dir(dir)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: u8, name: &str) -> LearnedName {
        LearnedName {
            key: vec![key],
            reported: vec![key],
            name: name.into(),
        }
    }

    #[test]
    fn names_are_a_strict_set_and_lower_cased() {
        assert_eq!(
            valid_name("DB1.Prod.example.com").as_deref(),
            Some("db1.prod.example.com")
        );
        assert_eq!(valid_name("[db1]:2222").as_deref(), Some("[db1]:2222"));
        assert_eq!(valid_name("fe80::1%eth0").as_deref(), Some("fe80::1%eth0"));
        for bad in [
            "",
            "*.prod",
            "a b",
            "a,b",
            "a\u{1b}[31m",
            "|1|x|y",
            "!db",
            "a\n",
        ] {
            assert_eq!(valid_name(bad), None, "{bad:?}");
        }
        assert_eq!(valid_name(&"a".repeat(MAX_NAME_LEN + 1)), None);
    }

    #[test]
    fn the_store_is_bounded_per_key_and_in_all() {
        let mut learned = Learned::default();
        assert!(learned.insert(entry(1, "a")));
        assert!(
            !learned.insert(entry(1, "a")),
            "the same name again is not new"
        );
        for i in 0..MAX_NAMES_PER_KEY + 5 {
            learned.insert(entry(2, &format!("n{i}")));
        }
        assert_eq!(learned.names_for(&[2]).len(), MAX_NAMES_PER_KEY);
        assert!(
            !learned.names_for(&[2]).contains(&"n0".to_string()),
            "oldest goes"
        );
        for i in 0..MAX_NAMES + 10 {
            learned.insert(entry((i % 200) as u8 + 10, &format!("h{i}")));
        }
        assert!(learned.iter().count() <= MAX_NAMES);
    }
}
