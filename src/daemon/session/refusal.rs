//! A refused request as a value: the reply it gets, what the daemon log
//! says of it, and the audit record it owes when no decision recorded it.
//! [`Session::refused`] is the one place that turns it into all three.

use tracing::{debug, warn};

use crate::daemon::agent::ConnectionLimit;
use crate::daemon::audit::AuditRecord;
use crate::daemon::authorize::{
    bind_refused, connection_refused, forwarded_locked_refused, provider_refused,
};
use crate::keys::sk::ProviderRefusal;
use crate::protocol::reply::Reply;
use crate::trust::binding::BindError;

use super::Session;

/// A request refused. Built by a handler; answered, logged and audited by
/// [`Session::refused`].
#[derive(Debug)]
#[must_use]
pub(super) struct Refusal {
    /// What the client gets: `SSH_AGENT_FAILURE` unless said otherwise.
    pub(super) reply: Reply,
    // Boxed: a refusal is the rare path, and a handler's `Result` stays
    // small on the common one.
    pub(super) said: Box<Said>,
    pub(super) audit: Option<Box<Audit>>,
    /// How long the reply waits once the refusal is logged (a wrong unlock
    /// passphrase).
    pub(super) wait: Option<std::time::Duration>,
}

/// What the daemon log says of a refusal. Every line carries the
/// connection first; the other fields are those each variant names, in
/// that order, so the lines keep the fields they have always had.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Said {
    /// Nothing: ssh-agent refuses this silently, or the decision that
    /// refused logged it already.
    Nothing,
    Debug(String),
    Warn(String),
    WarnPeer(String),
    WarnKey {
        key: String,
        text: String,
    },
    WarnPeerKey {
        key: String,
        text: String,
    },
    WarnProvider {
        provider: String,
        text: String,
    },
    WarnKeyProvider {
        key: String,
        provider: String,
        text: String,
    },
    WarnPeerHost {
        host: String,
        text: String,
    },
}

/// The record of a refusal no decision of [`crate::daemon::authorize`]
/// wrote.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Audit {
    /// Forwarded use is locked: the request (`event`) and, for a
    /// signature, its key (fingerprint, comment). Forwarded peers only.
    ForwardedLocked {
        event: crate::daemon::audit::Event,
        key: Option<(String, String)>,
    },
    /// A key the policy hides on this connection, asked to be removed:
    /// `rule` hides it. Forwarded peers only.
    Hidden { key: (String, String), rule: String },
    /// A signature with a key hopward does not hold while the upstream is
    /// out of this connection's reach. Forwarded peers only.
    UpstreamBarred { key: String, why: Barred },
    /// A key add refused for the provider it names.
    Provider {
        key: Option<(String, String)>,
        refusal: ProviderRefusal,
    },
    /// A session-bind that poisoned the connection.
    Bind(BindError),
    /// A connection over a connection limit.
    ConnectionLimit(ConnectionLimit),
}

/// Why the upstream's keys are out of reach on a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Barred {
    /// The agent is locked (`ssh-add -x`): upstream keys hide with its own.
    Locked,
    /// A session-bind on this connection was refused.
    Poisoned,
    /// The upstream agent refused a session-bind on this connection.
    UpstreamPoisoned,
}

impl Barred {
    /// For the log line.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Barred::Locked => "the agent is locked",
            Barred::Poisoned => "a session-bind on this connection was refused",
            Barred::UpstreamPoisoned => {
                "the upstream agent refused a session-bind on this connection"
            }
        }
    }

    /// The audit record's reason.
    pub(super) fn reason(self) -> crate::daemon::audit::Reason {
        match self {
            Barred::Locked => crate::daemon::audit::Reason::AgentLocked,
            Barred::Poisoned => crate::daemon::audit::Reason::BindRefused,
            Barred::UpstreamPoisoned => crate::daemon::audit::Reason::UpstreamBindRefused,
        }
    }
}

/// The rule of a signature refused because the upstream is out of reach.
const UPSTREAM_BARRED: &str = "upstream-barred";

impl Refusal {
    /// `SSH_AGENT_FAILURE`, nothing logged, nothing audited: what ssh-agent
    /// answers silently, or a request [`crate::daemon::authorize`] refused
    /// (it logged and audited the decision).
    pub(super) fn quiet() -> Refusal {
        Refusal::said(Said::Nothing)
    }

    /// `SSH_AGENT_FAILURE`, with a log line.
    pub(super) fn said(said: Said) -> Refusal {
        Refusal {
            reply: Reply::Failure,
            said: Box::new(said),
            audit: None,
            wait: None,
        }
    }

    /// `SSH_AGENT_FAILURE` with a warning on the connection.
    pub(super) fn warn(text: impl Into<String>) -> Refusal {
        Refusal::said(Said::Warn(text.into()))
    }

    /// `SSH_AGENT_FAILURE` with a debug line whose text is built only when
    /// debug logging is on: a peer that sends unknown keys or extensions in
    /// a loop costs no formatting (nor parsing of its blobs) otherwise.
    pub(super) fn debug(text: impl FnOnce() -> String) -> Refusal {
        if tracing::enabled!(tracing::Level::DEBUG) {
            Refusal::said(Said::Debug(text()))
        } else {
            Refusal::said(Said::Nothing)
        }
    }

    /// `SSH_AGENT_FAILURE` with a warning naming the peer.
    pub(super) fn warn_peer(text: impl Into<String>) -> Refusal {
        Refusal::said(Said::WarnPeer(text.into()))
    }

    /// The same refusal with another reply.
    pub(super) fn replying(mut self, reply: Reply) -> Refusal {
        self.reply = reply;
        self
    }

    /// The same refusal, its reply held back `wait` after it is logged.
    pub(super) fn then_wait(mut self, wait: std::time::Duration) -> Refusal {
        self.wait = Some(wait);
        self
    }

    /// The same refusal, owing `audit`.
    pub(super) fn audited(mut self, audit: Audit) -> Refusal {
        self.audit = Some(Box::new(audit));
        self
    }
}

/// A key's fingerprint and comment, as the audit builders take them.
fn names(key: &(String, String)) -> (&str, &str) {
    (&key.0, &key.1)
}

impl Session {
    /// Answers a refusal: logs it, writes the audit record it owes (those
    /// only a forwarded peer meets are left out for this machine's own
    /// connections), waits if it says so, and returns its reply.
    pub(super) async fn refused(&self, refusal: Refusal) -> Reply {
        let conn = self.id;
        let peer = &self.peer;
        match *refusal.said {
            Said::Nothing => {}
            Said::Debug(text) => debug!(conn, "{text}"),
            Said::Warn(text) => warn!(conn, "{text}"),
            Said::WarnPeer(text) => warn!(conn, peer = %peer, "{text}"),
            Said::WarnKey { key, text } => warn!(conn, key = %key, "{text}"),
            Said::WarnPeerKey { key, text } => warn!(conn, peer = %peer, key = %key, "{text}"),
            Said::WarnProvider { provider, text } => warn!(conn, provider = %provider, "{text}"),
            Said::WarnKeyProvider {
                key,
                provider,
                text,
            } => warn!(conn, key = %key, provider = %provider, "{text}"),
            Said::WarnPeerHost { host, text } => warn!(conn, peer = %peer, host = %host, "{text}"),
        }
        if let Some(audit) = refusal.audit {
            self.audit(*audit);
        }
        if let Some(wait) = refusal.wait {
            tokio::time::sleep(wait).await;
        }
        refusal.reply
    }

    fn audit(&self, audit: Audit) {
        let forwarded_only = matches!(
            audit,
            Audit::ForwardedLocked { .. } | Audit::Hidden { .. } | Audit::UpstreamBarred { .. }
        );
        if forwarded_only && !self.forwarded() {
            return;
        }
        let hops = self.hop_views();
        let who = self.lister(&hops, self.class());
        match &audit {
            Audit::ForwardedLocked { event, key } => {
                forwarded_locked_refused(&self.agent, &who, *event, key.as_ref().map(names));
            }
            Audit::Hidden { key, rule } => {
                let record = AuditRecord::key_event(
                    crate::daemon::audit::Event::Remove,
                    Some(names(key)),
                    who.class,
                    &hops,
                    who.peer,
                    who.conn,
                )
                .decided(
                    false,
                    rule,
                    crate::daemon::audit::Reason::Rule(rule.clone()),
                );
                self.agent.record(record);
            }
            Audit::UpstreamBarred { key, why } => {
                let mut record = AuditRecord::key_event(
                    crate::daemon::audit::Event::Sign,
                    Some((key, "")),
                    who.class,
                    &hops,
                    who.peer,
                    who.conn,
                )
                .decided(false, UPSTREAM_BARRED, why.reason());
                record.upstream = true;
                self.agent.record(record);
            }
            Audit::Provider { key, refusal } => {
                provider_refused(&self.agent, &who, key.as_ref().map(names), refusal);
            }
            Audit::Bind(error) => bind_refused(&self.agent, &who, error),
            Audit::ConnectionLimit(limit) => connection_refused(&self.agent, &who, *limit),
        }
    }
}
