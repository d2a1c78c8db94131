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
use crate::binding::{Chain, SignedData};
use crate::cert::unix_now;
use crate::confirm::{Prompt, clean};
use crate::context::RequestContext;
use crate::destination;
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
    /// The hosts this connection came through, from session-bind.
    chain: Chain,
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
        Session {
            agent,
            peer,
            id,
            chain: Chain::default(),
        }
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
                // A key this connection cannot see cannot be removed through it.
                let visible = self
                    .agent
                    .keystore
                    .find(key_blob, Instant::now())
                    .is_some_and(|id| self.visible(&id));
                let removed = visible && self.agent.keystore.remove(key_blob);
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
            Request::Extension {
                name: "session-bind@openssh.com",
                body,
            } => self.session_bind(body),
            Request::Extension { name, .. } => {
                debug!(conn = self.id, "unsupported extension {}", clean(name, 80));
                failure()
            }
        }
    }

    fn session_bind(&mut self, body: &[u8]) -> Vec<u8> {
        match self.chain.bind(body, unix_now()) {
            Ok(()) => {
                if let Some(hop) = self.chain.last() {
                    debug!(
                        conn = self.id,
                        host = %hop.fingerprint(),
                        forwarding = hop.forwarding,
                        hops = self.chain.hops().len(),
                        "session bound"
                    );
                }
                status(true)
            }
            Err(e) => {
                warn!(conn = self.id, peer = %self.peer, "session-bind refused, connection poisoned: {e}");
                failure()
            }
        }
    }

    /// Whether a key may be listed (or removed) on this connection: OpenSSH's
    /// `identity_permitted` without a user.
    fn visible(&self, identity: &Identity) -> bool {
        destination::identity_permitted(
            &identity.constraints.destinations,
            &self.chain,
            None,
            unix_now(),
        )
        .is_ok()
    }

    fn list(&self) -> Vec<u8> {
        let identities: Vec<_> = self
            .agent
            .keystore
            .list(Instant::now())
            .into_iter()
            .filter(|id| self.visible(id))
            .collect();
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
        let signed_data = SignedData::parse(data);
        let context = RequestContext::new(
            &identity.fingerprint,
            &identity.comment,
            &self.chain,
            &signed_data,
            &self.peer,
            &self.agent.known_hosts,
        );
        debug!(conn = self.id, "request context: {context}");
        if let Err(refusal) = destination::check_sign(
            &identity.constraints.destinations,
            &self.chain,
            key_blob,
            &signed_data,
            unix_now(),
        ) {
            warn!(conn = self.id, key = %identity.fingerprint, "sign refused by destination constraint: {refusal}");
            return failure();
        }
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
                Constraint::RestrictDestination(body) => {
                    match destination::parse_constraints(body) {
                        Ok(list) if parsed.destinations.is_empty() => parsed.destinations = list,
                        Ok(_) => {
                            warn!(
                                conn = self.id,
                                "refused to add key: destination constraint given twice"
                            );
                            return failure();
                        }
                        Err(e) => {
                            warn!(
                                conn = self.id,
                                "refused to add key: bad destination constraint: {e}"
                            );
                            return failure();
                        }
                    }
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
