//! Names for host keys, from OpenSSH known_hosts files: plain names and
//! `[host]:port`, hashed entries (matched when asked about an exact name),
//! `@cert-authority` lines with the certificate's principals, and `@revoked`
//! keys, which never match.
//!
//! Invariants: a bad line is skipped with a warning, never fatal; the parsed
//! files are cached and re-read when a file's size or mtime changes.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use base64::Engine as _;
use tracing::warn;

use crate::ssh::pattern::match_pattern;
use crate::trust::binding::Hop;

mod learning;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Pattern {
    Plain(String),
    Negated(String),
    Hashed { salt: Vec<u8>, hash: Vec<u8> },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Marker {
    None,
    CertAuthority,
    Revoked,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    marker: Marker,
    patterns: Vec<Pattern>,
    key_blob: Vec<u8>,
}

fn parse_patterns(field: &str) -> Option<Vec<Pattern>> {
    field
        .split(',')
        .map(|p| {
            if let Some(hashed) = p.strip_prefix("|1|") {
                let (salt, hash) = hashed.split_once('|')?;
                let b64 = base64::engine::general_purpose::STANDARD;
                Some(Pattern::Hashed {
                    salt: b64.decode(salt).ok()?,
                    hash: b64.decode(hash).ok()?,
                })
            } else if let Some(neg) = p.strip_prefix('!') {
                Some(Pattern::Negated(neg.to_ascii_lowercase()))
            } else if p.is_empty() {
                None
            } else {
                Some(Pattern::Plain(p.to_ascii_lowercase()))
            }
        })
        .collect()
}

fn parse_line(line: &str) -> Result<Option<Entry>, &'static str> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let mut fields = line.split_whitespace();
    let mut first = fields.next().ok_or("empty line")?;
    let marker = match first {
        "@cert-authority" => Marker::CertAuthority,
        "@revoked" => Marker::Revoked,
        m if m.starts_with('@') => return Err("unknown marker"),
        _ => Marker::None,
    };
    if marker != Marker::None {
        first = fields.next().ok_or("missing host patterns")?;
    }
    let patterns = parse_patterns(first).ok_or("bad host pattern")?;
    let key_type = fields.next().ok_or("missing key type")?;
    let key_b64 = fields.next().ok_or("missing key")?;
    let key_blob = base64::engine::general_purpose::STANDARD
        .decode(key_b64)
        .map_err(|_| "key is not base64")?;
    let key = crate::ssh::key::PublicKey::parse(&key_blob).map_err(|_| "unsupported or bad key")?;
    if key.parts.key_type().name() != key_type && !key.is_cert {
        return Err("key type does not match the key");
    }
    Ok(Some(Entry {
        marker,
        patterns,
        key_blob,
    }))
}

/// Parses a known_hosts file's text, skipping bad lines with a warning.
fn parse_text(text: &str, file: &str) -> Vec<Entry> {
    let mut entries = Vec::new();
    for (n, line) in text.lines().enumerate() {
        match parse_line(line) {
            Ok(Some(entry)) => entries.push(entry),
            Ok(None) => {}
            Err(why) => warn!("skipping {file}:{}: {why}", n + 1),
        }
    }
    entries
}

/// How many usable entries a known_hosts text has (fuzzing).
#[cfg(feature = "testing")]
pub fn count_entries(text: &str) -> usize {
    parse_text(text, "(text)").len()
}

fn hashed_name_matches(salt: &[u8], hash: &[u8], name: &str) -> bool {
    use aws_lc_rs::hmac;
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
    hmac::verify(&key, name.as_bytes(), hash).is_ok()
}

/// Whether `name` matches an entry's host patterns: some positive pattern
/// matches and no negated one does.
fn patterns_match(patterns: &[Pattern], name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    let mut positive = false;
    for p in patterns {
        match p {
            Pattern::Negated(neg) if match_pattern(&name, neg) => return false,
            Pattern::Plain(plain) if match_pattern(&name, plain) => positive = true,
            Pattern::Hashed { salt, hash } if hashed_name_matches(salt, hash, &name) => {
                positive = true
            }
            _ => {}
        }
    }
    positive
}

/// Whether a negated pattern of an entry matches `name`.
fn negated(patterns: &[Pattern], name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    patterns
        .iter()
        .any(|p| matches!(p, Pattern::Negated(neg) if match_pattern(&name, neg)))
}

/// The host of a `[host]:port` name.
fn bare_host(name: &str) -> Option<&str> {
    let (host, port) = name.strip_prefix('[')?.split_once("]:")?;
    (!host.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(host)
}

/// Host names first, then addresses, then `[host]:port` forms, so a
/// prompt shows `target`, not `[127.0.0.1]:22202`. Stable within each.
fn sort_for_people(names: &mut [String]) {
    names.sort_by_key(|n| {
        if n.starts_with('[') {
            2
        } else if n.parse::<std::net::IpAddr>().is_ok() {
            1
        } else {
            0
        }
    });
}

#[derive(Debug, Default)]
struct Cache {
    stamps: Vec<Option<(SystemTime, u64)>>,
    /// When the files were last looked at; they are looked at again at
    /// most once per [`RECHECK`].
    checked: Option<std::time::Instant>,
    /// Bumped whenever the entries are re-read.
    generation: u64,
    entries: Vec<Entry>,
    /// Entry indexes by key blob, so a lookup never scans the whole file.
    by_key: std::collections::HashMap<Vec<u8>, Vec<usize>>,
}

impl Cache {
    /// Entries whose key is the hop's key, its certificate's CA, or (for
    /// `@revoked`) either of them.
    fn relevant<'a>(&'a self, hop: &Hop) -> impl Iterator<Item = &'a Entry> + 'a {
        let mut keys = vec![hop.host_key.parts.blob(), hop.host_key.blob.clone()];
        if let Some(cert) = &hop.host_cert {
            keys.push(cert.signature_key.clone());
        }
        keys.dedup();
        let idx: Vec<usize> = keys
            .iter()
            .filter_map(|k| self.by_key.get(k))
            .flatten()
            .copied()
            .collect();
        idx.into_iter().map(move |i| &self.entries[i])
    }

    fn revoked(&self, hop: &Hop) -> bool {
        self.relevant(hop).any(|e| e.marker == Marker::Revoked)
    }
}

/// known_hosts files, read lazily and re-read when they change.
#[derive(Debug)]
pub struct KnownHosts {
    files: Mutex<Vec<PathBuf>>,
    cache: Mutex<Cache>,
    /// For a rule's host name (lower-cased), the other names ssh may have
    /// recorded it under: `[name]:port`, or what ssh_config makes of it
    /// (see [`crate::trust::ssh_config`]).
    lookups: Mutex<std::collections::HashMap<String, Vec<String>>>,
    /// Names ssh reported for host keys (see [`crate::trust::learned`]),
    /// and the file they are kept in, if any.
    learned: Mutex<crate::trust::learned::Learned>,
    learned_file: Mutex<Option<PathBuf>>,
}

/// How often the files' size and mtime are checked for changes.
const RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// The files the daemon reads: `$HOPWARD_KNOWN_HOSTS` (colon-separated)
/// if set, else OpenSSH's defaults. `policy check` and `explain` use the
/// same list, so they see the names the daemon sees.
pub fn configured_files() -> Vec<PathBuf> {
    match std::env::var_os("HOPWARD_KNOWN_HOSTS") {
        Some(list) if !list.is_empty() => std::env::split_paths(&list).collect(),
        _ => default_files(),
    }
}

/// The default files: `~/.ssh/known_hosts` and `/etc/ssh/ssh_known_hosts`.
pub(crate) fn default_files() -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        files.push(PathBuf::from(home).join(".ssh/known_hosts"));
    }
    files.push(PathBuf::from("/etc/ssh/ssh_known_hosts"));
    files
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

impl KnownHosts {
    pub fn new(files: Vec<PathBuf>) -> Self {
        KnownHosts {
            files: Mutex::new(files),
            cache: Mutex::new(Cache::default()),
            lookups: Mutex::new(Default::default()),
            learned: Mutex::new(Default::default()),
            learned_file: Mutex::new(None),
        }
    }

    /// Sets the other names each rule name is looked up under (policy
    /// load); see [`crate::trust::ssh_config::lookup_names`].
    pub fn set_lookup_names(&self, lookups: std::collections::HashMap<String, Vec<String>>) {
        *self.lookups.lock().unwrap_or_else(|e| e.into_inner()) = lookups;
    }

    /// `name`, then the other names it may be recorded under.
    fn forms(&self, name: &str) -> Vec<String> {
        let name = name.to_ascii_lowercase();
        let more = self
            .lookups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&name)
            .cloned()
            .unwrap_or_default();
        std::iter::once(name).chain(more).collect()
    }

    /// Whether some entry is hashed (its names cannot be listed).
    pub fn has_hashed(&self) -> bool {
        self.with_entries(|cache| {
            cache.entries.iter().any(|e| {
                e.patterns
                    .iter()
                    .any(|p| matches!(p, Pattern::Hashed { .. }))
            })
        })
    }

    pub(crate) fn files(&self) -> Vec<PathBuf> {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Replaces the list of files (policy reload).
    pub fn set_files(&self, files: Vec<PathBuf>) {
        *self.files.lock().unwrap_or_else(|e| e.into_inner()) = files;
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.stamps.clear();
        cache.checked = None;
    }

    fn with_entries<T>(&self, f: impl FnOnce(&Cache) -> T) -> T {
        let files = self.files();
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.checked.is_some_and(|at| at.elapsed() < RECHECK) {
            return f(&cache);
        }
        cache.checked = Some(std::time::Instant::now());
        let stamps: Vec<_> = files.iter().map(|f| stamp(f)).collect();
        if stamps != cache.stamps || cache.stamps.is_empty() {
            cache.generation += 1;
            cache.entries = Self::load(&files);
            let mut by_key: std::collections::HashMap<Vec<u8>, Vec<usize>> = Default::default();
            for (i, e) in cache.entries.iter().enumerate() {
                by_key.entry(e.key_blob.clone()).or_default().push(i);
            }
            cache.by_key = by_key;
            cache.stamps = stamps;
        }
        f(&cache)
    }

    fn load(files: &[PathBuf]) -> Vec<Entry> {
        let mut entries = Vec::new();
        for file in files {
            let Ok(text) = std::fs::read_to_string(file) else {
                continue;
            };
            entries.extend(parse_text(&text, &file.display().to_string()));
        }
        entries
    }

    /// The plain names under which this hop's host key is known (hashed
    /// entries cannot be listed; ask [`KnownHosts::knows`] about a name).
    pub(crate) fn names(&self, hop: &Hop) -> Vec<String> {
        self.with_entries(|cache| {
            if cache.revoked(hop) {
                return Vec::new();
            }
            let plain = hop.host_key.parts.blob();
            let mut names = Vec::new();
            for e in cache.relevant(hop) {
                match e.marker {
                    Marker::None if e.key_blob == plain => {
                        for p in &e.patterns {
                            let Pattern::Plain(name) = p else { continue };
                            // As OpenSSH reads the line: a name a negated
                            // pattern on it excludes (`db1,!db1`) is not one.
                            if name.contains(['*', '?']) || !patterns_match(&e.patterns, name) {
                                continue;
                            }
                            // ssh records a host on another port as
                            // `[host]:port`; it is still that host, and a
                            // rule for `host` must see it.
                            let bare = bare_host(name).filter(|b| !negated(&e.patterns, b));
                            for n in std::iter::once(name.as_str()).chain(bare) {
                                if !names.iter().any(|known| known == n) {
                                    names.push(n.to_string());
                                }
                            }
                        }
                    }
                    Marker::CertAuthority => {
                        if let Some(cert) = &hop.host_cert {
                            if cert.signature_key == e.key_blob
                                && !cert.has_critical_options
                                && cert.ca_algorithm_allowed()
                            {
                                // A principal with wildcards is a pattern, not
                                // a name to list: it names the hosts it
                                // matches, which `knows` answers for.
                                for principal in &cert.principals {
                                    if !principal.contains(['*', '?'])
                                        && patterns_match(&e.patterns, principal)
                                        && !names.contains(principal)
                                    {
                                        names.push(principal.clone());
                                    }
                                }
                            }
                        }
                    }
                    _ => {}
                }
            }
            sort_for_people(&mut names);
            names
        })
    }

    /// Whether this hop's host key is known as exactly `name` (hashed
    /// entries included), or under a name ssh records `name` as: on a port
    /// of `[known_hosts] ports`, or as its ssh_config says.
    pub(crate) fn knows(&self, hop: &Hop, name: &str) -> bool {
        // The name itself first: no lock and no copy on the common path.
        self.knows_exactly(hop, name)
            || self
                .forms(name)
                .iter()
                .skip(1)
                .any(|form| self.knows_exactly(hop, form))
    }

    fn knows_exactly(&self, hop: &Hop, name: &str) -> bool {
        self.with_entries(|cache| {
            if cache.revoked(hop) {
                return false;
            }
            let plain = hop.host_key.parts.blob();
            cache.relevant(hop).any(|e| match e.marker {
                Marker::None => e.key_blob == plain && patterns_match(&e.patterns, name),
                // As ssh checks a host certificate against a host name
                // (OpenSSH 10.3+): the principals are patterns, matched
                // against the lower-cased name ssh would use.
                Marker::CertAuthority => hop.host_cert.as_ref().is_some_and(|cert| {
                    cert.signature_key == e.key_blob
                        && cert.names_host(&name.to_ascii_lowercase())
                        && !cert.has_critical_options
                        && cert.ca_algorithm_allowed()
                        && patterns_match(&e.patterns, name)
                }),
                Marker::Revoked => false,
            })
        })
    }

    /// A number that changes whenever the files were re-read; callers cache
    /// names under it.
    pub fn generation(&self) -> u64 {
        // Both only grow, so their sum changes whenever either does.
        self.with_entries(|cache| cache.generation) + self.learned_generation()
    }

    /// The names of a hop: its plain names, plus those of `exact_names` that
    /// hashed entries for its key confirm.
    pub fn describe(&self, hop: &Hop, exact_names: &[String]) -> Vec<String> {
        let mut names = self.names(hop);
        let learned = self.learned_names(hop);
        if !learned.is_empty() {
            for name in learned {
                if !names.contains(&name) {
                    names.push(name);
                }
            }
            sort_for_people(&mut names);
        }
        let hashed = self.with_entries(|cache| {
            cache.relevant(hop).any(|e| {
                e.patterns
                    .iter()
                    .any(|p| matches!(p, Pattern::Hashed { .. }))
            })
        });
        // Names that only a pattern confirms (a hashed entry, or a host
        // certificate's wildcard principal) are checked one by one.
        let wildcard_principal = hop
            .host_cert
            .as_ref()
            .is_some_and(|cert| cert.principals.iter().any(|p| p.contains(['*', '?'])));
        let recorded_otherwise = !self
            .lookups
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_empty();
        if hashed || wildcard_principal || recorded_otherwise {
            for name in exact_names {
                if !names.contains(name) && self.knows(hop, name) {
                    names.push(name.clone());
                }
            }
        }
        names
    }

    /// Whether any entry names `name` at all (for `policy check` warnings).
    pub fn mentions(&self, name: &str) -> bool {
        let forms = self.forms(name);
        self.with_entries(|cache| {
            cache.entries.iter().any(|e| {
                e.marker != Marker::Revoked
                    && forms.iter().any(|form| patterns_match(&e.patterns, form))
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ssh::key::{PublicKey, PublicParts};
    use crate::trust::binding::Hop;

    pub(super) fn hop(seed: u8) -> Hop {
        let parts = PublicParts::Ed25519(crate::ssh::key::ed25519_public(&[seed; 32]));
        Hop {
            host_key: PublicKey {
                blob: parts.blob(),
                parts,
                is_cert: false,
            },
            host_cert: None,
            session_id: vec![1],
            forwarding: false,
        }
    }

    pub(super) fn line(patterns: &str, h: &Hop) -> String {
        format!(
            "{patterns} ssh-ed25519 {}\n",
            base64::engine::general_purpose::STANDARD.encode(&h.host_key.blob)
        )
    }

    pub(super) fn hashed(name: &str, salt: &[u8]) -> String {
        use aws_lc_rs::hmac;
        let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, salt);
        let tag = hmac::sign(&key, name.as_bytes());
        let b64 = base64::engine::general_purpose::STANDARD;
        format!("|1|{}|{}", b64.encode(salt), b64.encode(tag.as_ref()))
    }

    /// As OpenSSH reads known_hosts: a negated pattern takes a name away,
    /// `[host]:port` still names `host`, and names come before addresses.
    #[test]
    fn negations_ports_and_the_order_names_are_shown_in() {
        let dir = std::env::temp_dir().join(format!("hopward-kh9-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("known_hosts");
        let (a, b, c) = (hop(4), hop(5), hop(6));
        let mut text = line("db1,!db1", &a);
        text.push_str(&line("[db2]:2222", &b));
        text.push_str(&line("[127.0.0.1]:22202,127.0.0.1,target", &c));
        std::fs::write(&file, &text).unwrap();
        let kh = KnownHosts::new(vec![file]);
        assert!(kh.names(&a).is_empty(), "{:?}", kh.names(&a));
        assert!(!kh.knows(&a, "db1"));
        assert_eq!(kh.names(&b), vec!["db2", "[db2]:2222"]);
        assert_eq!(
            kh.names(&c),
            vec!["target", "127.0.0.1", "[127.0.0.1]:22202"]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A host on another port, in a file hashed by the real `ssh-keygen -H`:
    /// ssh hashed `[db2]:2222`, so the name `db2` alone cannot find it (a
    /// deny rule for `db2` missed it); looked up on the policy's ports, or
    /// under the name ssh_config makes of it, it is found.
    #[test]
    fn hashed_host_port_entries_are_found_on_known_ports() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let (db2, web) = (hop(11), hop(12));
        let mut text = line("[db2]:2222", &db2);
        text.push_str(&line("[10.0.0.7]:2200", &web));
        std::fs::write(&file, &text).unwrap();
        let out = std::process::Command::new("ssh-keygen")
            .arg("-H")
            .arg("-f")
            .arg(&file)
            .output()
            .expect("ssh-keygen (the test script installs OpenSSH)");
        assert!(out.status.success(), "{out:?}");
        let hashed = std::fs::read_to_string(&file).unwrap();
        assert!(
            hashed.starts_with("|1|") && !hashed.contains("db2"),
            "{hashed}"
        );

        let kh = KnownHosts::new(vec![file]);
        assert!(kh.has_hashed());
        assert!(!kh.knows(&db2, "db2"), "the name alone cannot find it");
        assert!(!kh.mentions("db2"));
        assert!(kh.describe(&db2, &["db2".into()]).is_empty());

        // `[known_hosts] ports = [2222]`, and ssh_config saying `web` is
        // 10.0.0.7 on port 2200.
        let mut lookups = crate::trust::ssh_config::lookup_names(&["db2".into()], &[2222], false);
        lookups.insert("web".into(), vec!["[10.0.0.7]:2200".into()]);
        kh.set_lookup_names(lookups);
        assert!(kh.knows(&db2, "db2"));
        assert!(kh.knows(&db2, "DB2"), "names are case-insensitive");
        assert!(kh.mentions("db2"));
        assert_eq!(
            kh.describe(&db2, &["db2".into(), "web".into()]),
            vec!["db2"]
        );
        assert_eq!(
            kh.describe(&web, &["db2".into(), "web".into()]),
            vec!["web"]
        );
        assert!(
            !kh.knows(&web, "db2"),
            "a port does not make another host's key db2's"
        );
    }

    #[test]
    fn names_hashed_revoked_bad_lines_and_refresh() {
        let dir = std::env::temp_dir().join(format!("hopward-kh-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("known_hosts");
        let (a, b, c) = (hop(1), hop(2), hop(3));
        let mut text = line("bastion,[bastion]:2222,*.wild", &a);
        text.push_str("this line is garbage\n");
        text.push_str(&line(&hashed("secret-host", b"0123456789abcdefghij"), &b));
        text.push_str(&line("gone", &c));
        text.push_str(&format!(
            "@revoked * ssh-ed25519 {}\n",
            base64::engine::general_purpose::STANDARD.encode(&c.host_key.blob)
        ));
        std::fs::write(&file, &text).unwrap();
        let kh = KnownHosts::new(vec![file.clone()]);
        assert_eq!(kh.names(&a), vec!["bastion", "[bastion]:2222"]);
        assert!(kh.knows(&a, "BASTION"));
        assert!(kh.names(&b).is_empty());
        assert!(kh.knows(&b, "secret-host"));
        assert_eq!(
            kh.describe(&b, &["secret-host".into(), "other".into()]),
            vec!["secret-host"]
        );
        assert!(!kh.knows(&b, "other-host"));
        assert!(kh.names(&c).is_empty(), "revoked keys never match");
        assert!(!kh.knows(&c, "gone"));

        // Editing the file is picked up without a restart (within RECHECK).
        std::thread::sleep(RECHECK + std::time::Duration::from_millis(50));
        std::fs::write(&file, line("renamed", &a)).unwrap();
        assert_eq!(kh.names(&a), vec!["renamed"]);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
