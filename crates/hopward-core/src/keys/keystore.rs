//! The keys the agent holds: identities, their OpenSSH constraints and
//! lifetimes, and the lock.
//!
//! Invariants: secrets live only inside [`Identity`], sealed by
//! [`ShieldedKey`] and opened only to sign; the lock keeps a salted Argon2id hash of the passphrase,
//! never the passphrase; while locked no identity is listed or usable; an
//! identity past its deadline is never returned, even before the reaper runs.
//! The store's mutex is held only for short, non-blocking sections.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::Notify;

use crate::protocol::request::{NewKey, SecretParts};

use crate::keys::shield::ShieldedKey;
use crate::keys::sign::{KeyError, SignError, SigningKey, SshSignature};
use crate::keys::sk::{Provider, SecurityKey};
use crate::ssh::key::{KeyType, PublicKey};

/// OpenSSH constraints attached to a key by `ssh-add -c/-t/-h`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Constraints {
    /// Ask before every use (`ssh-add -c`).
    pub confirm: bool,
    /// Seconds the key lives after it was added (`ssh-add -t`).
    pub lifetime: Option<u32>,
    /// Where the key may be used (`ssh-add -h`); empty = anywhere.
    pub destinations: Vec<crate::trust::destination::DestinationConstraint>,
    /// The FIDO provider a security key signs through
    /// (`sk-provider@openssh.com`, resolved against `-P`); `None` for a
    /// security key means the built-in one.
    pub sk_provider: Option<Provider>,
}

/// What signs for an identity.
#[derive(Debug)]
enum Holder {
    /// A private key held (sealed) here.
    Software(ShieldedKey),
    /// A key on a FIDO token: its sealed handle and provider.
    Token(SecurityKey),
    /// A key on a PKCS#11 token, signed through its provider's helper.
    Pkcs11(Arc<crate::keys::pkcs11::Pkcs11Provider>),
}

/// One key held by the agent.
pub struct Identity {
    /// The key or certificate; requests name it by `public.blob`.
    pub public: PublicKey,
    pub comment: String,
    /// `SHA256:...` of the underlying public key (certificates: of their key).
    pub fingerprint: String,
    pub constraints: Constraints,
    pub expires: Option<Instant>,
    /// A certificate's validity window: past `valid_before` it never signs,
    /// past the grace after it it is dropped ([`crate::keys::expiry`]).
    pub cert: Option<crate::keys::expiry::CertValidity>,
    /// A certificate that was past its grace already when it was added
    /// (`ssh-add -N`, to sign files with it): whoever added it wanted it
    /// as it is, so it is kept, as ssh-agent keeps it. It still never signs
    /// a login.
    pub(crate) added_expired: bool,
    key: Holder,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("fingerprint", &self.fingerprint)
            .field("comment", &self.comment)
            .field("key", &self.key)
            .field("constraints", &self.constraints)
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Builds an identity from a key sent by `ssh-add`, validating it.
    pub fn new(new: &NewKey<'_>, constraints: Constraints, now: Instant) -> Result<Self, KeyError> {
        let key = match new.secret {
            SecretParts::SecurityKey { flags, key_handle } => {
                if !new.public.parts.key_type().is_security_key() {
                    return Err(KeyError::Mismatch);
                }
                let provider = constraints
                    .sk_provider
                    .clone()
                    .unwrap_or(Provider::Internal);
                Holder::Token(SecurityKey::new(provider, flags, key_handle)?)
            }
            _ => {
                let material = SigningKey::material(&new.public.parts, &new.secret)?;
                Holder::Software(ShieldedKey::seal(&new.public.parts, &material)?)
            }
        };
        let expires = constraints
            .lifetime
            .map(|secs| now + Duration::from_secs(u64::from(secs)));
        Ok(Identity {
            fingerprint: new.public.fingerprint(),
            public: new.public.clone(),
            comment: new.comment.clone(),
            constraints,
            expires,
            cert: crate::keys::expiry::CertValidity::of(&new.public),
            added_expired: crate::keys::expiry::CertValidity::of(&new.public)
                .is_some_and(|c| c.dropped(crate::ssh::cert::unix_now())),
            key,
        })
    }

    /// An identity for a key found on a PKCS#11 token (`ssh-add -s`).
    pub fn on_pkcs11_token(
        public: PublicKey,
        comment: String,
        constraints: Constraints,
        provider: Arc<crate::keys::pkcs11::Pkcs11Provider>,
        now: Instant,
    ) -> Self {
        let expires = constraints
            .lifetime
            .map(|secs| now + Duration::from_secs(u64::from(secs)));
        let cert = crate::keys::expiry::CertValidity::of(&public);
        Identity {
            fingerprint: public.fingerprint(),
            cert,
            added_expired: cert.is_some_and(|c| c.dropped(crate::ssh::cert::unix_now())),
            public,
            comment,
            constraints,
            expires,
            key: Holder::Pkcs11(provider),
        }
    }

    /// The PKCS#11 provider behind a token key; `None` for other keys.
    pub fn pkcs11(&self) -> Option<&Arc<crate::keys::pkcs11::Pkcs11Provider>> {
        match &self.key {
            Holder::Pkcs11(provider) => Some(provider),
            _ => None,
        }
    }

    /// The provider a hardware key signs through, as the audit names it
    /// (a library path, or `internal`); `None` for keys held here.
    pub fn provider_name(&self) -> Option<String> {
        match &self.key {
            Holder::Software(_) => None,
            Holder::Token(key) => Some(key.provider.describe()),
            Holder::Pkcs11(provider) => Some(provider.path.display().to_string()),
        }
    }

    pub fn blob(&self) -> &[u8] {
        &self.public.blob
    }

    pub fn key_type(&self) -> KeyType {
        self.public.parts.key_type()
    }

    /// Signs with a key held here; a token key signs through
    /// [`crate::keys::sk::sign`] with [`Identity::security_key`] instead.
    pub fn sign(&self, data: &[u8], flags: u32) -> Result<SshSignature, SignError> {
        match &self.key {
            Holder::Software(key) => key.sign(data, flags),
            Holder::Token(_) | Holder::Pkcs11(_) => Err(SignError::Failed),
        }
    }

    /// The token and provider behind a FIDO key; `None` for other keys.
    pub fn security_key(&self) -> Option<&SecurityKey> {
        match &self.key {
            Holder::Token(key) => Some(key),
            _ => None,
        }
    }

    /// Whether the sealed key is locked out of swap (see `hopward status`).
    pub fn is_locked_in_memory(&self) -> bool {
        match &self.key {
            Holder::Software(key) => key.is_locked_in_memory(),
            Holder::Token(key) => key.is_locked_in_memory(),
            // Nothing secret of a PKCS#11 key is in the agent at all.
            Holder::Pkcs11(_) => true,
        }
    }

    fn expired(&self, now: Instant) -> bool {
        self.expires.is_some_and(|deadline| deadline <= now) || self.cert_dropped()
    }

    /// A certificate past OpenSSH's grace after its `valid_before`, by the
    /// wall clock: gone as if its lifetime had ended.
    pub(crate) fn cert_dropped(&self) -> bool {
        !self.added_expired
            && self
                .cert
                .is_some_and(|cert| cert.dropped(crate::ssh::cert::unix_now()))
    }

    /// A certificate past its `valid_before`, by the wall clock: it is
    /// still listed until the grace passes, and never signs.
    pub fn cert_expired(&self) -> bool {
        self.cert
            .is_some_and(|cert| cert.expired(crate::ssh::cert::unix_now()))
    }

    /// When the reaper should look at it next: its `-t` deadline or a
    /// certificate's drop time, whichever comes first.
    fn deadline(&self, now: Instant) -> Option<Instant> {
        // A certificate kept past its drop time is never due again (the
        // reaper would wake at once, forever).
        let cert = self.cert.filter(|_| !self.added_expired);
        let cert = cert
            .and_then(|cert| cert.drop_at())
            .map(|at| crate::keys::expiry::instant_of(at, crate::ssh::cert::unix_now(), now));
        match (self.expires, cert) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Why a key captured before a wait (a prompt) can no longer sign after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Its `ssh-add -t` lifetime ended.
    Expired,
    /// It was removed (`ssh-add -d`, `-D`, `-e`, SIGUSR1) or replaced by a
    /// new add of the same key.
    Removed,
    /// The agent was locked (`ssh-add -x`), even if unlocked again since.
    Locked,
}

impl Gone {
    /// The audit reason of a signature refused for it.
    pub fn reason(self) -> &'static str {
        match self {
            Gone::Expired => "key-expired",
            Gone::Removed => "key-removed",
            Gone::Locked => "locked",
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LockError {
    #[error("the agent is already locked")]
    AlreadyLocked,
    #[error("could not hash the passphrase")]
    Hash,
}

#[derive(Default)]
struct State {
    identities: Vec<Arc<Identity>>,
    /// PHC string of the lock passphrase's Argon2id hash.
    lock: Option<String>,
    /// Consecutive failed unlocks; drives the escalating delay.
    failed_unlocks: u32,
    /// Locks since start: a wait that saw this number change saw a lock,
    /// even one undone before it ended.
    locks: u64,
}

/// All identities and the lock state, shared by every connection.
#[derive(Default)]
pub struct Keystore {
    state: Mutex<State>,
    /// Woken when a deadline may have moved earlier, so the reaper re-plans.
    deadline_changed: Notify,
}

impl fmt::Debug for Keystore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = self.lock_state();
        f.debug_struct("Keystore")
            .field("identities", &state.identities.len())
            .field("locked", &state.lock.is_some())
            .finish()
    }
}

impl Keystore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave State inconsistent
        // (every mutation is a single Vec operation), so recover from poison.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn is_locked(&self) -> bool {
        self.lock_state().lock.is_some()
    }

    /// The usable identities, in the order they were added; empty while locked.
    pub fn list(&self, now: Instant) -> Vec<Arc<Identity>> {
        let state = self.lock_state();
        if state.lock.is_some() {
            return Vec::new();
        }
        state
            .identities
            .iter()
            .filter(|id| !id.expired(now))
            .cloned()
            .collect()
    }

    /// How many times the agent was locked so far (see [`Keystore::still_holds`]).
    pub fn locks(&self) -> u64 {
        self.lock_state().locks
    }

    /// Whether what was true before a wait still is: `identity` (taken from
    /// this store) is still the one held for its key and not expired, and
    /// the agent was not locked since `locks` was read. Without an identity
    /// (a key of the upstream agent, a key operation) only a lock since is
    /// checked, since a locked agent passes nothing to its upstream either.
    pub fn still_holds(
        &self,
        identity: Option<&Identity>,
        locks: u64,
        now: Instant,
    ) -> Result<(), Gone> {
        let state = self.lock_state();
        if let Some(identity) = identity {
            if identity.expired(now) {
                return Err(Gone::Expired);
            }
            // The same allocation, not merely the same key: a key removed
            // and added again is a new identity with its own constraints.
            if !state
                .identities
                .iter()
                .any(|held| std::ptr::eq(Arc::as_ptr(held), identity))
            {
                return Err(Gone::Removed);
            }
        }
        // A key operation asked about while locked (an unlock) is not
        // stale for that lock: only a lock since counts.
        if state.locks != locks || (identity.is_some() && state.lock.is_some()) {
            return Err(Gone::Locked);
        }
        Ok(())
    }

    /// The identity whose public blob is `blob`, unless locked or expired.
    pub fn find(&self, blob: &[u8], now: Instant) -> Option<Arc<Identity>> {
        let state = self.lock_state();
        if state.lock.is_some() {
            return None;
        }
        state
            .identities
            .iter()
            .find(|id| id.blob() == blob && !id.expired(now))
            .cloned()
    }

    /// Adds an identity; one with the same public key is replaced, as
    /// OpenSSH does (new comment and constraints). Fails while locked.
    pub fn add(&self, identity: Identity) -> Result<(), LockError> {
        let mut state = self.lock_state();
        if state.lock.is_some() {
            return Err(LockError::AlreadyLocked);
        }
        let has_deadline = identity.expires.is_some() || identity.cert.is_some();
        let identity = Arc::new(identity);
        match state
            .identities
            .iter_mut()
            .find(|id| id.blob() == identity.blob())
        {
            Some(slot) => *slot = identity,
            None => state.identities.push(identity),
        }
        drop(state);
        if has_deadline {
            self.deadline_changed.notify_one();
        }
        Ok(())
    }

    /// Removes the identity with this blob; false if none (or locked).
    pub fn remove(&self, blob: &[u8]) -> bool {
        let mut state = self.lock_state();
        if state.lock.is_some() {
            return false;
        }
        let before = state.identities.len();
        state.identities.retain(|id| id.blob() != blob);
        state.identities.len() != before
    }

    /// Removes every identity loaded from the PKCS#11 provider at `path`
    /// (`ssh-add -e`) and returns them; `None` while locked.
    pub fn remove_provider(&self, path: &std::path::Path) -> Option<Vec<Arc<Identity>>> {
        let mut state = self.lock_state();
        if state.lock.is_some() {
            return None;
        }
        let (gone, kept) = std::mem::take(&mut state.identities)
            .into_iter()
            .partition(|id| id.pkcs11().is_some_and(|p| p.path == path));
        state.identities = kept;
        Some(gone)
    }

    /// Removes every identity and returns them; `None` while locked.
    pub fn remove_all(&self) -> Option<Vec<Arc<Identity>>> {
        let mut state = self.lock_state();
        if state.lock.is_some() {
            return None;
        }
        Some(std::mem::take(&mut state.identities))
    }

    /// Drops every identity whatever the lock state (shutdown, SIGUSR1);
    /// returns how many there were.
    pub fn clear(&self) -> usize {
        let mut state = self.lock_state();
        let dropped = state.identities.len();
        state.identities.clear();
        dropped
    }

    /// Deletes identities whose deadline has passed; returns them.
    pub fn expire(&self, now: Instant) -> Vec<Arc<Identity>> {
        let mut state = self.lock_state();
        let (gone, kept): (Vec<_>, Vec<_>) =
            state.identities.drain(..).partition(|id| id.expired(now));
        state.identities = kept;
        gone
    }

    pub fn next_deadline(&self) -> Option<Instant> {
        let now = Instant::now();
        self.lock_state()
            .identities
            .iter()
            .filter_map(|id| id.deadline(now))
            .min()
    }

    /// Whether a certificate with an end is held: its deadline is on the
    /// wall clock, which a suspended machine moves past while the
    /// monotonic one stands still, so the reaper looks again now and then.
    pub fn holds_expiring_certificates(&self) -> bool {
        self.lock_state()
            .identities
            .iter()
            .any(|id| id.cert.is_some_and(|c| c.expires().is_some()))
    }

    /// Resolves when a newly added key may carry an earlier deadline.
    pub async fn deadline_changed(&self) {
        self.deadline_changed.notified().await;
    }

    /// Locks with a precomputed hash (see [`hash_passphrase`]).
    pub fn lock(&self, hash: String) -> Result<(), LockError> {
        let mut state = self.lock_state();
        if state.lock.is_some() {
            return Err(LockError::AlreadyLocked);
        }
        state.lock = Some(hash);
        state.locks += 1;
        Ok(())
    }

    /// The stored hash to verify an unlock against, outside the mutex.
    pub fn lock_hash(&self) -> Option<String> {
        self.lock_state().lock.clone()
    }

    /// Records the outcome of a verified unlock attempt; returns how long the
    /// failing connection must wait (0 on success).
    pub fn finish_unlock(&self, expected_hash: &str, verified: bool) -> Result<(), Duration> {
        let mut state = self.lock_state();
        if verified && state.lock.as_deref() == Some(expected_hash) {
            state.lock = None;
            state.failed_unlocks = 0;
            return Ok(());
        }
        state.failed_unlocks = state.failed_unlocks.saturating_add(1).min(100);
        // As OpenSSH: 0.1 s more per consecutive failure, capped at 10 s.
        Err(Duration::from_millis(100) * state.failed_unlocks)
    }
}

/// Salted Argon2id hash of a lock passphrase (slow on purpose: run it off the
/// async workers).
pub fn hash_passphrase(passphrase: &[u8]) -> Result<String, LockError> {
    use argon2::password_hash::{PasswordHasher as _, SaltString};
    let salt = SaltString::generate(&mut rand_core::OsRng);
    argon2::Argon2::default()
        .hash_password(passphrase, &salt)
        .map(|h| h.to_string())
        .map_err(|_| LockError::Hash)
}

/// Checks a passphrase against a hash from [`hash_passphrase`].
pub fn verify_passphrase(passphrase: &[u8], hash: &str) -> bool {
    use argon2::password_hash::{PasswordHash, PasswordVerifier as _};
    PasswordHash::new(hash)
        .map(|parsed| {
            argon2::Argon2::default()
                .verify_password(passphrase, &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::request::SecretParts;
    use crate::ssh::key::PublicParts;

    fn identity(seed: u8, comment: &str, lifetime: Option<u32>, now: Instant) -> Identity {
        let secret = [seed; 32];
        let pk = crate::ssh::key::ed25519_public(&secret);
        let parts = PublicParts::Ed25519(pk);
        let new = NewKey {
            public: PublicKey {
                blob: parts.blob(),
                parts,
                is_cert: false,
            },
            secret: SecretParts::Ed25519(&secret),
            comment: comment.into(),
        };
        let constraints = Constraints {
            lifetime,
            ..Constraints::default()
        };
        Identity::new(&new, constraints, now).unwrap()
    }

    #[test]
    fn re_adding_replaces_comment_and_constraints() {
        let now = Instant::now();
        let store = Keystore::new();
        store.add(identity(1, "first", None, now)).unwrap();
        store.add(identity(1, "second", Some(60), now)).unwrap();
        let list = store.list(now);
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].comment, "second");
        assert_eq!(list[0].constraints.lifetime, Some(60));
    }

    #[test]
    fn expired_keys_are_invisible_before_and_removed_by_reaper() {
        let now = Instant::now();
        let store = Keystore::new();
        store.add(identity(1, "short", Some(5), now)).unwrap();
        store.add(identity(2, "forever", None, now)).unwrap();
        let later = now + Duration::from_secs(6);
        assert_eq!(store.list(later).len(), 1);
        let blob = store.list(now)[0].blob().to_vec();
        assert!(store.find(&blob, later).is_none());
        assert_eq!(store.expire(later).len(), 1);
        assert_eq!(store.list(now).len(), 1);
        assert_eq!(store.next_deadline(), None);
    }

    #[test]
    fn locked_store_lists_nothing_and_refuses_changes() {
        let now = Instant::now();
        let store = Keystore::new();
        store.add(identity(1, "k", None, now)).unwrap();
        let blob = store.list(now)[0].blob().to_vec();
        let hash = hash_passphrase(b"secret").unwrap();
        assert!(!hash.contains("secret"));
        store.lock(hash.clone()).unwrap();
        assert_eq!(store.lock("x".into()), Err(LockError::AlreadyLocked));
        assert!(store.list(now).is_empty());
        assert!(store.find(&blob, now).is_none());
        assert!(!store.remove(&blob));
        assert!(store.remove_all().is_none());
        assert!(store.add(identity(2, "k2", None, now)).is_err());

        assert!(!verify_passphrase(b"wrong", &hash));
        assert_eq!(
            store.finish_unlock(&hash, false),
            Err(Duration::from_millis(100))
        );
        assert_eq!(
            store.finish_unlock(&hash, false),
            Err(Duration::from_millis(200))
        );
        assert!(verify_passphrase(b"secret", &hash));
        assert_eq!(store.finish_unlock(&hash, true), Ok(()));
        assert_eq!(store.list(now).len(), 1);
    }

    /// What a wait (a prompt) must find unchanged after it, checked
    /// without the store's lock ever being held across the wait.
    #[test]
    fn a_key_holds_only_while_it_is_the_same_unexpired_unlocked_key() {
        let now = Instant::now();
        let store = Keystore::new();
        store.add(identity(1, "k", Some(5), now)).unwrap();
        let held = store.list(now)[0].clone();
        let locks = store.locks();
        assert_eq!(store.still_holds(Some(&held), locks, now), Ok(()));
        let later = now + Duration::from_secs(6);
        assert_eq!(
            store.still_holds(Some(&held), locks, later),
            Err(Gone::Expired),
            "past its lifetime, before the reaper ran"
        );
        // Added again: the same key, another identity.
        store.add(identity(1, "k", Some(5), now)).unwrap();
        assert_eq!(
            store.still_holds(Some(&held), locks, now),
            Err(Gone::Removed)
        );
        let held = store.list(now)[0].clone();
        store.lock("hash".into()).unwrap();
        assert_eq!(
            store.still_holds(Some(&held), locks, now),
            Err(Gone::Locked)
        );
        store.finish_unlock("hash", true).unwrap();
        assert_eq!(
            store.still_holds(Some(&held), locks, now),
            Err(Gone::Locked),
            "a lock undone since still counts"
        );
        assert_eq!(store.still_holds(None, store.locks(), now), Ok(()));
        // An unlock asked about while locked: the lock it undoes is no
        // change.
        store.lock("hash".into()).unwrap();
        assert_eq!(store.still_holds(None, store.locks(), now), Ok(()));
        assert_eq!(
            store.still_holds(Some(&held), store.locks(), now),
            Err(Gone::Locked)
        );
        store.finish_unlock("hash", true).unwrap();
        store.clear();
        assert_eq!(
            store.still_holds(Some(&held), store.locks(), now),
            Err(Gone::Removed)
        );
    }

    #[test]
    fn debug_shows_no_key_material() {
        let now = Instant::now();
        let id = identity(0x41, "c", None, now);
        let text = format!("{id:?}");
        assert!(text.contains("ShieldedKey(ssh-ed25519)"), "{text}");
        assert!(!text.contains("65, 65"));
    }
}
