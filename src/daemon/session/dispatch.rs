//! Routes each decoded request to its handler and answers what the
//! handler refused through [`Session::refused`]; refuses everything a
//! forwarded connection asks while forwarded use is locked.

use crate::protocol::reply::Reply;
use crate::protocol::request::Request;
use crate::text::clean;

use super::Session;
use super::refusal::{Audit, Refusal};

/// The extension a client binds its connection with.
pub(super) const SESSION_BIND: &str = "session-bind@openssh.com";

impl Session {
    /// Answers one decoded request.
    pub(crate) async fn dispatch(&mut self, request: Request<'_>) -> Reply {
        if self.over_limit {
            return self.refused(Refusal::quiet()).await;
        }
        let control = matches!(
            request,
            Request::Extension {
                name: crate::daemon::control::EXTENSION,
                ..
            }
        );
        let bind = matches!(
            request,
            Request::Extension {
                name: SESSION_BIND,
                ..
            }
        );
        let reply = match self.answer(request).await {
            Ok(reply) => reply,
            Err(refusal) => self.refused(refusal).await,
        };
        // Only this machine's own use keeps `[lock] idle` away: a request
        // counts once it is answered on a connection that is local by then.
        // A forwarded connection's first request is the bind, made while
        // its chain is still empty: never counted, nor is `status` polling.
        if !control && !bind && !self.forwarded() {
            self.agent.touch_local();
        }
        reply
    }

    async fn answer(&mut self, request: Request<'_>) -> Result<Reply, Refusal> {
        if self.agent.forwarded_locked() && self.forwarded() {
            // The panic button is pressed: nothing through a forwarded agent.
            let refusal =
                Refusal::warn_peer("refused: forwarded use is locked (hopward unlock --forwarded)")
                    .audited(self.locked_audit(&request));
            return Err(match request {
                Request::ListIdentities => {
                    refusal.replying(crate::protocol::reply::identities_answer(std::iter::empty()))
                }
                _ => refusal,
            });
        }
        match request {
            Request::ListIdentities => self.list().await,
            Request::Sign {
                key_blob,
                data,
                flags,
            } => self.sign(key_blob, data, flags).await,
            Request::Add { key, constraints } => self.add(&key, &constraints).await,
            Request::Remove { key_blob } => self.remove(key_blob).await,
            Request::RemoveAll => self.remove_all().await,
            Request::Lock(passphrase) => self.lock(passphrase).await,
            Request::Unlock(passphrase) => self.unlock(passphrase).await,
            Request::AddSmartcard {
                provider,
                pin,
                constraints,
            } => self.add_smartcard(provider, pin, &constraints).await,
            Request::RemoveSmartcard { provider } => self.remove_smartcard(provider).await,
            Request::Extension {
                name: SESSION_BIND,
                body,
            } => self.session_bind(body),
            Request::Extension {
                name: crate::daemon::control::EXTENSION,
                body,
            } => self.control(body).await,
            Request::Extension { name: "query", .. } => self.query(),
            Request::Extension { name, .. } => Err(Refusal::debug(|| {
                format!("unsupported extension {}", clean(name, 80))
            })),
        }
    }

    /// The record of `request` refused because forwarded use is locked:
    /// one per refused request (the audit writer coalesces a bastion that
    /// floods), a signature with its key (and comment, when held).
    pub(super) fn locked_audit(&self, request: &Request<'_>) -> Audit {
        let (event, key) = match request {
            Request::Sign { key_blob, .. } => {
                let comment = self
                    .agent
                    .key(key_blob)
                    .map(|id| id.comment.clone())
                    .unwrap_or_default();
                (
                    crate::daemon::audit::Event::Sign,
                    Some((crate::ssh::key::fingerprint_of(key_blob), comment)),
                )
            }
            Request::ListIdentities => (crate::daemon::audit::Event::List, None),
            Request::Add { .. } | Request::AddSmartcard { .. } => {
                (crate::daemon::audit::Event::Add, None)
            }
            Request::Remove { .. } | Request::RemoveSmartcard { .. } => {
                (crate::daemon::audit::Event::Remove, None)
            }
            Request::RemoveAll => (crate::daemon::audit::Event::RemoveAll, None),
            Request::Lock(_) => (crate::daemon::audit::Event::Lock, None),
            Request::Unlock(_) => (crate::daemon::audit::Event::Unlock, None),
            Request::Extension {
                name: SESSION_BIND, ..
            } => (crate::daemon::audit::Event::Bind, None),
            Request::Extension { .. } => (crate::daemon::audit::Event::Extension, None),
        };
        Audit::ForwardedLocked { event, key }
    }
}
