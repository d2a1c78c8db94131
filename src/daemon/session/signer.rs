//! Where the key of a sign request lives, found once: in memory, on a FIDO
//! token, on a PKCS#11 token, or in the upstream agent. Each [`Signer`]
//! names its key for the decision and makes the signature, so signing is
//! the same three steps whichever it is (see [`super::sign`]).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tracing::{debug, info, warn};

use crate::daemon::authorize::SignKey;
use crate::daemon::upstream::{UpstreamError, UpstreamKey};
use crate::keys::keystore::Identity;
use crate::protocol::reply::Reply;

use super::Session;
use super::refusal::{Audit, Refusal, Said};

/// The key a sign request names, and what signs with it.
#[derive(Debug)]
pub(super) enum Signer {
    /// A key held in this process's memory.
    InMemory(Arc<Identity>),
    /// A FIDO security key: its helper process signs, after a touch.
    SecurityKey(Arc<Identity>),
    /// A key on a PKCS#11 token: the provider's helper process signs.
    Pkcs11 {
        identity: Arc<Identity>,
        provider: Arc<crate::keys::pkcs11::Pkcs11Provider>,
    },
    /// A key of the upstream agent, signed on this connection's own link.
    Upstream {
        key: UpstreamKey,
        path: PathBuf,
        timeout: Duration,
    },
}

/// A signature allowed and then not made.
#[derive(Debug)]
pub(super) struct SignFailure {
    pub(super) refusal: Refusal,
    /// For a signature made outside this process (whose audit record waits
    /// for it): the record's reason, where it stopped.
    pub(super) reason: Option<crate::daemon::audit::Reason>,
}

impl Signer {
    /// The key's fingerprint and comment, for the decision.
    pub(super) fn names(&self) -> (&str, &str) {
        match self {
            Signer::InMemory(identity)
            | Signer::SecurityKey(identity)
            | Signer::Pkcs11 { identity, .. } => (&identity.fingerprint, &identity.comment),
            Signer::Upstream { key, .. } => (&key.fingerprint, &key.comment),
        }
    }

    /// The key as [`crate::daemon::authorize`] sees it.
    pub(super) fn sign_key<'a>(&'a self, blob: &'a [u8]) -> SignKey<'a> {
        match self {
            Signer::InMemory(identity)
            | Signer::SecurityKey(identity)
            | Signer::Pkcs11 { identity, .. } => SignKey::Held { identity, blob },
            Signer::Upstream { .. } => SignKey::Upstream,
        }
    }

    /// Makes the signature the policy allowed (by `rule`, for the log line
    /// of one the upstream then does not make).
    pub(super) async fn sign(
        &self,
        session: &mut Session,
        (blob, data, flags): (&[u8], &[u8], u32),
        rule: &str,
    ) -> Result<Reply, SignFailure> {
        let conn = session.id;
        match self {
            Signer::InMemory(identity) => {
                let signed = if matches!(
                    identity.key_type(),
                    crate::ssh::key::KeyType::Rsa | crate::ssh::key::KeyType::MlDsa44Ed25519
                ) {
                    // RSA takes milliseconds, ML-DSA (a key expansion and a
                    // signature) about 0.15 ms: keep them off the async
                    // workers so other connections are not stalled behind
                    // them.
                    let identity = Arc::clone(identity);
                    let data = data.to_vec();
                    tokio::task::spawn_blocking(move || identity.sign(&data, flags))
                        .await
                        .unwrap_or(Err(crate::keys::sign::SignError::Failed))
                } else {
                    identity.sign(data, flags)
                };
                signed
                    .map(|sig| crate::protocol::reply::sign_response(sig.algorithm, &sig.blob))
                    .map_err(|e| SignFailure {
                        refusal: Refusal::said(Said::WarnKey {
                            key: identity.fingerprint.clone(),
                            text: format!("sign failed: {e}"),
                        }),
                        reason: None,
                    })
            }
            Signer::SecurityKey(identity) => {
                // The token logged why it did not sign.
                match session.sign_on_token(identity, data).await {
                    Some(blob) => Ok(crate::protocol::reply::sign_response_blob(&blob)),
                    None => Err(SignFailure {
                        refusal: Refusal::quiet(),
                        reason: Some(crate::daemon::audit::Reason::TokenFailed),
                    }),
                }
            }
            Signer::Pkcs11 { identity, provider } => {
                debug!(conn, key = %identity.fingerprint, provider = %provider.path.display(), "asking the PKCS#11 token to sign");
                match provider.sign(&identity.public.parts, data, flags).await {
                    Ok(blob) => Ok(crate::protocol::reply::sign_response_blob(&blob)),
                    Err(e) => Err(SignFailure {
                        refusal: Refusal::said(Said::WarnKeyProvider {
                            key: identity.fingerprint.clone(),
                            provider: provider.path.display().to_string(),
                            text: format!("PKCS#11 signature failed: {e}"),
                        }),
                        reason: Some(crate::daemon::audit::Reason::ProviderFailed),
                    }),
                }
            }
            Signer::Upstream { key, path, timeout } => {
                let result = session
                    .upstream
                    .sign(path, &session.binds, (blob, data, flags), *timeout)
                    .await;
                match result {
                    Ok(reply) => {
                        session.note_bind_support();
                        Ok(Reply::Encoded(reply))
                    }
                    Err(e) => {
                        // Allowed here, yet no signature: the audit says
                        // where it stopped.
                        let reason = match e {
                            UpstreamError::Refused { .. }
                            | UpstreamError::BindRefused { .. }
                            | UpstreamError::Poisoned => {
                                crate::daemon::audit::Reason::UpstreamRefused
                            }
                            _ => crate::daemon::audit::Reason::UpstreamFailed,
                        };
                        let text =
                            format!("allowed by rule {rule}, but the upstream did not sign: {e}");
                        session.agent.record_upstream(Err(&e));
                        Err(SignFailure {
                            refusal: Refusal::said(Said::WarnPeerKey {
                                key: key.fingerprint.clone(),
                                text,
                            }),
                            reason: Some(reason),
                        })
                    }
                }
            }
        }
    }
}

impl Session {
    /// Where the key `blob` lives: held here (in memory or on a token), or,
    /// in upstream mode, in the upstream agent as it lists its keys on this
    /// connection. A key found nowhere, or an upstream out of reach, is
    /// refused before any decision.
    pub(super) async fn signer(&mut self, blob: &[u8]) -> Result<Signer, Refusal> {
        if let Some(identity) = self.agent.key(blob) {
            return Ok(if identity.security_key().is_some() {
                Signer::SecurityKey(identity)
            } else if let Some(provider) = identity.pkcs11().cloned() {
                Signer::Pkcs11 { identity, provider }
            } else {
                Signer::InMemory(identity)
            });
        }
        let no_such_key =
            || Refusal::debug(|| format!("sign: no such key {}", describe_blob(blob)));
        let Some((path, timeout)) = self.upstream_target() else {
            return Err(no_such_key());
        };
        if let Some(why) = self.upstream_barred() {
            return Err(Refusal::warn_peer(format!(
                "sign refused for a key hopward does not hold: {}",
                why.describe()
            ))
            .audited(Audit::UpstreamBarred {
                key: crate::ssh::key::fingerprint_of(blob),
                why,
            }));
        }
        let key = match self.upstream.known_key(blob) {
            Some(key) => key.clone(),
            // Not listed on this connection yet (or changed since): ask.
            None => match self.upstream.list(&path, &self.binds, timeout).await {
                Ok(keys) => match keys.iter().find(|k| k.blob == blob) {
                    Some(key) => key.clone(),
                    None => return Err(no_such_key()),
                },
                Err(e) => {
                    self.agent.record_upstream(Err(&e));
                    return Err(Refusal::warn_peer(format!(
                        "sign refused: cannot list the upstream's keys: {e}"
                    )));
                }
            },
        };
        Ok(Signer::Upstream { key, path, timeout })
    }

    /// Has a FIDO token sign, after the policy allowed it: off this
    /// connection's lock-free path, in a helper process, with a deadline.
    /// The signature blob, or `None` (logged) when the token did not sign.
    async fn sign_on_token(&self, identity: &Identity, data: &[u8]) -> Option<Vec<u8>> {
        let token = identity.security_key()?;
        let provider = token.provider.describe();
        if token.needs_touch() {
            info!(conn = self.id, key = %identity.fingerprint, provider = %provider, "waiting for the security key: touch it to sign");
        }
        let timeout = self.agent.provider_timeout();
        let mut signed =
            crate::keys::sk::sign(&identity.public.parts, token, data, None, timeout).await;
        if matches!(signed, Err(crate::keys::sk::SkError::PinRequired)) {
            // As ssh-agent: the token wants its PIN (a verify-required key);
            // ask once with askpass and try again.
            let prompt = format!(
                "Enter PIN{}for {} key {}: ",
                if token.needs_touch() {
                    " and confirm user presence "
                } else {
                    " "
                },
                identity.key_type().name(),
                identity.fingerprint
            );
            match crate::keys::sk::ask_pin(&prompt, timeout).await {
                Some(pin) => {
                    signed = crate::keys::sk::sign(
                        &identity.public.parts,
                        token,
                        data,
                        Some(&pin),
                        timeout,
                    )
                    .await;
                }
                None => {
                    warn!(conn = self.id, key = %identity.fingerprint, "the security key needs a PIN and there is no askpass to ask for it (SSH_ASKPASS with DISPLAY, or SSH_ASKPASS_REQUIRE=force)");
                }
            }
        }
        match signed {
            Ok(signed) => {
                debug!(conn = self.id, key = %identity.fingerprint, flags = signed.details.flags, counter = signed.details.counter, "security key signed");
                Some(signed.blob)
            }
            Err(e) => {
                warn!(conn = self.id, key = %identity.fingerprint, provider = %provider, "security key signature failed: {e}");
                None
            }
        }
    }
}

/// A key blob for log lines: its fingerprint, or that it did not parse.
fn describe_blob(blob: &[u8]) -> String {
    crate::ssh::key::PublicKey::parse(blob)
        .map(|k| k.fingerprint())
        .unwrap_or_else(|_| "(unparsable key)".into())
}
