//! Learning host names from ssh (`KnownHostsCommand`, see
//! [`crate::trust::learned`]) into [`KnownHosts`]: every name is confirmed
//! by the known_hosts files when reported, when loaded and when used.

use std::path::{Path, PathBuf};

use tracing::warn;

use super::{KnownHosts, Marker, Pattern, bare_host, patterns_match, sort_for_people};
use crate::ssh::pattern::match_pattern;
use crate::trust::binding::Hop;

impl KnownHosts {
    pub(super) fn learned_generation(&self) -> u64 {
        self.learned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .generation()
    }

    /// A hop for a key as ssh reported it (`%K`): a host certificate must
    /// be one and carry a valid CA signature, as a bind's must.
    fn reported_hop(blob: &[u8]) -> Result<Hop, String> {
        let host_key = crate::ssh::key::PublicKey::parse(blob)
            .map_err(|e| format!("the reported host key does not parse: {e}"))?;
        let host_cert = if host_key.is_cert {
            let cert = crate::ssh::cert::Certificate::parse(blob)
                .map_err(|e| format!("the reported host certificate does not parse: {e}"))?;
            if cert.cert_type != crate::ssh::cert::HOST_CERT || !cert.ca_signature_valid(blob) {
                return Err(
                    "the reported certificate is not a validly signed host certificate".into(),
                );
            }
            Some(cert)
        } else {
            None
        };
        Ok(Hop {
            host_key,
            host_cert,
            session_id: Vec::new(),
            forwarding: false,
        })
    }

    /// Keeps `name` for the host key `blob` if a known_hosts entry confirms
    /// exactly that name (a `[host]:port` form as it is) with that key.
    /// `Ok(true)` when it is new; `Err` says why it was not kept.
    pub fn learn(&self, blob: &[u8], name: &str) -> Result<bool, String> {
        let Some(name) = crate::trust::learned::valid_name(name) else {
            return Err(format!(
                "{} is not a host name, address or [host]:port",
                crate::text::quoted(name, 80)
            ));
        };
        let hop = Self::reported_hop(blob)?;
        if !self.knows_exactly(&hop, &name) {
            return Err(format!(
                "no known_hosts entry names {name} with the key {}",
                hop.fingerprint()
            ));
        }
        let entry = crate::trust::learned::LearnedName {
            key: hop.host_key.parts.blob(),
            reported: blob.to_vec(),
            name,
        };
        let new = self
            .learned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(entry);
        if new {
            self.save_learned();
        }
        Ok(new)
    }

    /// Loads the names kept in `path` and keeps them there from now on;
    /// names no known_hosts entry confirms any more are dropped. Returns
    /// how many are kept.
    pub fn load_learned(&self, path: PathBuf) -> Result<usize, String> {
        let text = crate::trust::learned::read(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let (entries, bad) = crate::trust::learned::parse(&text);
        if bad > 0 {
            warn!("{}: skipped {bad} unreadable lines", path.display());
        }
        let mut kept = 0;
        {
            let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
            for entry in entries {
                let confirmed = Self::reported_hop(&entry.reported)
                    .is_ok_and(|hop| self.knows_exactly(&hop, &entry.name));
                if confirmed {
                    learned.insert(entry);
                    kept += 1;
                }
            }
        }
        *self.learned_file.lock().unwrap_or_else(|e| e.into_inner()) = Some(path);
        Ok(kept)
    }

    /// Only reads the names kept in `path` (`policy explain` and `check`
    /// see what the daemon sees, and never write).
    pub fn read_learned(&self, path: &Path) {
        let text = crate::trust::learned::read(path).unwrap_or_default();
        let (entries, _) = crate::trust::learned::parse(&text);
        let mut learned = self.learned.lock().unwrap_or_else(|e| e.into_inner());
        for entry in entries {
            learned.insert(entry);
        }
    }

    /// Writes the names out. The names' lock is held only to take their
    /// text: every decision reads them, and none may wait on a disk's
    /// fsync. The file's lock keeps two saves from crossing.
    fn save_learned(&self) {
        let file = self.learned_file.lock().unwrap_or_else(|e| e.into_inner());
        let Some(path) = file.as_ref() else {
            return;
        };
        let text = self
            .learned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .to_text();
        if let Err(e) = crate::trust::learned::write(path, &text) {
            warn!(
                "cannot keep learned host names in {}: {e} (they last until a restart)",
                path.display()
            );
        }
    }

    /// The learned names of this hop's key that known_hosts still confirms
    /// for it as it is now, each `[host]:port` with its bare host too.
    pub(crate) fn learned_names(&self, hop: &Hop) -> Vec<String> {
        let kept = self
            .learned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .names_for(&hop.host_key.parts.blob());
        let mut names: Vec<String> = Vec::new();
        for name in kept {
            if !self.knows_exactly(hop, &name) {
                continue;
            }
            let bare = bare_host(&name).map(str::to_string);
            for n in std::iter::once(name).chain(bare) {
                if !names.contains(&n) {
                    names.push(n);
                }
            }
        }
        sort_for_people(&mut names);
        names
    }

    /// Every learned name with its key's fingerprint (for `status`).
    pub fn learned_list(&self) -> Vec<(String, String)> {
        self.learned
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .map(|e| (e.name.clone(), crate::ssh::key::fingerprint_of(&e.key)))
            .collect()
    }

    /// Whether this hop's key is on a hashed known_hosts line (and not
    /// revoked): a host known under a name that cannot be read until ssh
    /// reports it.
    pub(crate) fn on_hashed_line(&self, hop: &Hop) -> bool {
        self.with_entries(|cache| {
            !cache.revoked(hop)
                && cache.relevant(hop).any(|e| {
                    e.marker == Marker::None
                        && e.patterns
                            .iter()
                            .any(|p| matches!(p, Pattern::Hashed { .. }))
                })
        })
    }

    /// Whether `names` (a hop's, as [`KnownHosts::describe`] made them)
    /// rest on a hashed entry: the first name is not on a plain line, or
    /// there is none and the key is on a hashed line.
    pub fn named_through_hashed(&self, hop: &Hop, names: &[String]) -> bool {
        match names.first() {
            Some(first) => !self.names(hop).contains(first) && self.on_hashed_line(hop),
            None => self.on_hashed_line(hop),
        }
    }

    /// The keys of the entries that name `name` (plain or hashed, not
    /// `@revoked` or `@cert-authority`), in file order: what `policy
    /// explain` takes a named hop's key to be.
    pub fn keys_named(&self, name: &str) -> Vec<Vec<u8>> {
        let forms = self.forms(name);
        self.with_entries(|cache| {
            let mut keys: Vec<Vec<u8>> = Vec::new();
            for e in &cache.entries {
                if e.marker == Marker::None
                    && forms.iter().any(|f| patterns_match(&e.patterns, f))
                    && !keys.contains(&e.key_blob)
                {
                    keys.push(e.key_blob.clone());
                }
            }
            keys
        })
    }

    /// A hop with this plain key blob, as a bind from this machine would
    /// make it (for `policy explain`).
    pub fn hop_for_key(blob: &[u8], forwarding: bool) -> Option<Hop> {
        let mut hop = Self::reported_hop(blob).ok()?;
        hop.forwarding = forwarding;
        Some(hop)
    }

    /// Whether a plain or learned name matches the glob `pattern` (for
    /// `policy check` and `doctor`: a host glob can only ever match those).
    pub(crate) fn some_name_matches(&self, pattern: &str) -> bool {
        let pattern = pattern.to_ascii_lowercase();
        let plain = self.with_entries(|cache| {
            cache.entries.iter().any(|e| {
                e.marker == Marker::None
                    && e.patterns
                        .iter()
                        .any(|p| matches!(p, Pattern::Plain(n) if match_pattern(n, &pattern)))
            })
        });
        plain
            || self
                .learned
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .iter()
                .any(|e| {
                    match_pattern(&e.name, &pattern)
                        || bare_host(&e.name).is_some_and(|b| match_pattern(b, &pattern))
                })
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{hashed, hop, line};
    use super::*;

    /// A name is learned only with the key a known_hosts entry pairs it
    /// with; it survives a restart through the file (0600), and a name
    /// whose entry is gone is dropped on load and never used.
    #[test]
    fn learned_names_are_confirmed_kept_and_checked_again() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("known_hosts");
        let (db, other) = (hop(21), hop(22));
        let mut text = line(&hashed("db1.prod.example.com", b"salt-one-0123456789"), &db);
        text.push_str(&line(
            &hashed("[db9.prod.example.com]:2222", b"salt-two-0123456789"),
            &other,
        ));
        std::fs::write(&file, &text).unwrap();
        let kh = KnownHosts::new(vec![file.clone()]);
        let kept = dir.path().join("state/learned_hosts");
        assert_eq!(kh.load_learned(kept.clone()).unwrap(), 0);
        assert!(kh.describe(&db, &[]).is_empty());
        assert!(kh.on_hashed_line(&db) && kh.named_through_hashed(&db, &[]));

        // The other host's key, a pattern, and a name no entry holds.
        assert!(
            kh.learn(&other.host_key.blob, "db1.prod.example.com")
                .is_err()
        );
        assert!(kh.learn(&db.host_key.blob, "*.prod.example.com").is_err());
        assert!(kh.learn(&db.host_key.blob, "db2.prod.example.com").is_err());
        assert!(!kept.exists(), "nothing learned, nothing written");
        let generation = kh.generation();
        assert_eq!(
            kh.learn(&db.host_key.blob, "DB1.prod.example.com"),
            Ok(true)
        );
        assert_eq!(
            kh.learn(&db.host_key.blob, "db1.prod.example.com"),
            Ok(false)
        );
        assert_ne!(kh.generation(), generation, "cached views are rebuilt");
        // `[host]:port` as ssh reports a host on another port: both forms.
        assert_eq!(
            kh.learn(&other.host_key.blob, "[db9.prod.example.com]:2222"),
            Ok(true)
        );
        let names = kh.describe(&db, &[]);
        assert_eq!(names, vec!["db1.prod.example.com"]);
        assert!(kh.named_through_hashed(&db, &names));
        assert_eq!(
            kh.describe(&other, &[]),
            vec!["db9.prod.example.com", "[db9.prod.example.com]:2222"]
        );
        assert!(kh.some_name_matches("*.PROD.example.com"));
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&kept).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);

        // A restart reads them back.
        let again = KnownHosts::new(vec![file.clone()]);
        assert_eq!(again.load_learned(kept.clone()).unwrap(), 2);
        assert_eq!(again.describe(&db, &[]), vec!["db1.prod.example.com"]);

        // The entry goes: the name is no longer used, nor loaded.
        std::fs::write(&file, line("unrelated", &hop(23))).unwrap();
        let gone = KnownHosts::new(vec![file.clone()]);
        assert_eq!(gone.load_learned(kept.clone()).unwrap(), 0);
        assert!(gone.describe(&db, &[]).is_empty());
        // ...and one already loaded stops naming the host once the files
        // are read again (as on a change, or a policy reload).
        again.set_files(vec![file.clone()]);
        assert!(again.describe(&db, &[]).is_empty());
        assert!(!again.on_hashed_line(&db));
    }
}
