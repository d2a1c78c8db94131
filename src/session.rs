//! One client connection: decodes each request, applies it to the shared
//! agent and produces the reply body.
//!
//! Invariants: every request gets exactly one reply; a request that does not
//! decode, has bytes left over, or is of an unknown type gets
//! `SSH_AGENT_FAILURE` and the connection stays usable; waiting (a
//! confirmation, an unlock delay) happens on this connection's task only.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::agent::Agent;
use crate::confirm::{Prompt, clean};
use crate::keystore::{self, Constraints, Identity};
use crate::peer::Peer;
use crate::proto::{
    self, Constraint, NewKey, Passphrase, Request, SSH_AGENT_FAILURE, SSH_AGENT_SUCCESS,
};

/// The state of one connection.
#[derive(Debug)]
pub struct Session {
    agent: Arc<Agent>,
    peer: Peer,
    id: u64,
}

fn status(ok: bool) -> Vec<u8> {
    vec![if ok {
        SSH_AGENT_SUCCESS
    } else {
        SSH_AGENT_FAILURE
    }]
}

fn failure() -> Vec<u8> {
    status(false)
}

impl Session {
    pub fn new(agent: Arc<Agent>, peer: Peer, id: u64) -> Self {
        Session { agent, peer, id }
    }

    pub fn peer(&self) -> &Peer {
        &self.peer
    }

    /// Handles one frame body and returns the reply body.
    pub async fn handle(&mut self, body: &[u8]) -> Vec<u8> {
        match Request::decode(body) {
            Ok(request) => self.dispatch(request).await,
            Err(e) => {
                let kind = body.first().copied().unwrap_or_default();
                warn!(conn = self.id, peer = %self.peer, "refused request of type {kind}: {e}");
                failure()
            }
        }
    }

    async fn dispatch(&mut self, request: Request<'_>) -> Vec<u8> {
        match request {
            Request::RequestIdentities => self.list(),
            Request::Sign {
                key_blob,
                data,
                flags,
            } => self.sign(key_blob, data, flags).await,
            Request::Add { key, constraints } => self.add(&key, &constraints),
            Request::Remove { key_blob } => {
                let removed = self.agent.keystore.remove(key_blob);
                if removed {
                    info!(conn = self.id, "removed key {}", describe_blob(key_blob));
                }
                status(removed)
            }
            Request::RemoveAll => self.remove_all(),
            Request::Lock(passphrase) => self.lock(passphrase).await,
            Request::Unlock(passphrase) => self.unlock(passphrase).await,
            Request::Smartcard => {
                warn!(
                    conn = self.id,
                    "refused PKCS#11 request: hopward does not load providers"
                );
                failure()
            }
            Request::Extension { name, .. } => {
                debug!(conn = self.id, "unsupported extension {}", clean(name, 80));
                failure()
            }
        }
    }

    fn list(&self) -> Vec<u8> {
        let identities = self.agent.keystore.list(Instant::now());
        proto::identities_answer(identities.iter().map(|id| (id.blob(), id.comment.as_str())))
    }

    async fn sign(&mut self, key_blob: &[u8], data: &[u8], flags: u32) -> Vec<u8> {
        let Some(identity) = self.agent.keystore.find(key_blob, Instant::now()) else {
            debug!(
                conn = self.id,
                "sign: no such key {}",
                describe_blob(key_blob)
            );
            return failure();
        };
        if identity.constraints.confirm && !self.confirm(&identity).await {
            return failure();
        }
        let signed = if identity.key_type() == proto::KeyType::Rsa {
            // RSA takes milliseconds: keep it off the async workers so other
            // connections are not stalled behind it.
            let identity = Arc::clone(&identity);
            let data = data.to_vec();
            tokio::task::spawn_blocking(move || identity.sign(&data, flags))
                .await
                .unwrap_or(Err(crate::sign::SignError::Failed))
        } else {
            identity.sign(data, flags)
        };
        match signed {
            Ok(sig) => {
                debug!(conn = self.id, key = %identity.fingerprint, alg = sig.algorithm, "signed");
                proto::sign_response(sig.algorithm, &sig.blob)
            }
            Err(e) => {
                warn!(conn = self.id, key = %identity.fingerprint, "sign failed: {e}");
                failure()
            }
        }
    }

    /// Asks about a key added with `ssh-add -c`.
    async fn confirm(&self, identity: &Identity) -> bool {
        let prompt = Prompt {
            key_fingerprint: identity.fingerprint.clone(),
            key_comment: identity.comment.clone(),
            peer_pid: self.peer.pid,
        };
        let answer = self
            .agent
            .confirmer
            .confirm(&prompt, self.agent.options.confirm_timeout)
            .await;
        if !answer.allowed() {
            info!(
                conn = self.id,
                key = %identity.fingerprint,
                "sign denied: confirmation {} ({answer:?})",
                answer.reason()
            );
        }
        answer.allowed()
    }

    fn add(&mut self, key: &NewKey<'_>, constraints: &[Constraint<'_>]) -> Vec<u8> {
        let mut parsed = Constraints::default();
        for constraint in constraints {
            match constraint {
                Constraint::Lifetime(secs) => parsed.lifetime = Some(*secs),
                Constraint::Confirm => parsed.confirm = true,
                Constraint::RestrictDestination(_) => {
                    warn!(
                        conn = self.id,
                        "refused to add key {}: destination constraints (ssh-add -h) are not supported",
                        key.public.fingerprint()
                    );
                    return failure();
                }
            }
        }
        if parsed.lifetime.is_none() {
            parsed.lifetime = self
                .agent
                .options
                .default_lifetime
                .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        }
        let identity = match Identity::new(key, parsed, Instant::now()) {
            Ok(identity) => identity,
            Err(e) => {
                warn!(
                    conn = self.id,
                    "refused to add key {}: {e}",
                    key.public.fingerprint()
                );
                return failure();
            }
        };
        let (fp, comment) = (identity.fingerprint.clone(), clean(&identity.comment, 80));
        let (confirm, lifetime) = (identity.constraints.confirm, identity.constraints.lifetime);
        match self.agent.keystore.add(identity) {
            Ok(()) => {
                info!(conn = self.id, key = %fp, %comment, confirm, lifetime = ?lifetime, "added key");
                status(true)
            }
            Err(e) => {
                warn!(conn = self.id, "refused to add key {fp}: {e}");
                failure()
            }
        }
    }

    fn remove_all(&mut self) -> Vec<u8> {
        match self.agent.keystore.remove_all() {
            Some(n) => {
                info!(conn = self.id, "removed all {n} keys");
                status(true)
            }
            None => failure(),
        }
    }

    async fn lock(&mut self, passphrase: Passphrase<'_>) -> Vec<u8> {
        if self.agent.keystore.is_locked() {
            return failure();
        }
        // The hash is slow on purpose; compute it off the async workers. The
        // copy is wiped when the closure drops it.
        let secret = zeroize::Zeroizing::new(passphrase.0.to_vec());
        let hashed = tokio::task::spawn_blocking(move || keystore::hash_passphrase(&secret)).await;
        let locked = match hashed {
            Ok(Ok(hash)) => self.agent.keystore.lock(hash).is_ok(),
            _ => false,
        };
        match locked {
            true => {
                info!(conn = self.id, "agent locked");
                status(true)
            }
            false => {
                warn!(conn = self.id, "lock failed");
                failure()
            }
        }
    }

    async fn unlock(&mut self, passphrase: Passphrase<'_>) -> Vec<u8> {
        let Some(hash) = self.agent.keystore.lock_hash() else {
            return failure();
        };
        let expected = hash.clone();
        let secret = zeroize::Zeroizing::new(passphrase.0.to_vec());
        let verified =
            tokio::task::spawn_blocking(move || keystore::verify_passphrase(&secret, &hash))
                .await
                .unwrap_or(false);
        match self.agent.keystore.finish_unlock(&expected, verified) {
            Ok(()) => {
                info!(conn = self.id, "agent unlocked");
                status(true)
            }
            Err(delay) => {
                warn!(conn = self.id, peer = %self.peer, "unlock failed: incorrect passphrase");
                // Slows guessing on this connection only.
                tokio::time::sleep(delay.min(Duration::from_secs(10))).await;
                failure()
            }
        }
    }
}

/// A key blob for log lines: its fingerprint, or that it did not parse.
fn describe_blob(blob: &[u8]) -> String {
    proto::PublicKey::parse(blob)
        .map(|k| k.fingerprint())
        .unwrap_or_else(|_| "(unparsable key)".into())
}
