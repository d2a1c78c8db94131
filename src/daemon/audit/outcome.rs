//! What an audit record says happened, typed: the event, the decision and
//! the reason. Each variant's doc comment is the one place its meaning is
//! written; its text in the record (the serde name, or [`Reason`]'s
//! `Display`) is the contract `docs/audit.md` lists and
//! `tests/golden/audit.jsonl` holds byte for byte.

use std::fmt;

use serde::{Deserialize, Serialize, Serializer};

use crate::confirm::Answer;
use crate::keys::keystore::Gone;
use crate::keys::sk::ProviderRefusal;
use crate::policy::KeyOp;
use crate::trust::binding::BindError;
use crate::trust::context::RequestClass;

/// What was asked for (`event`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Event {
    /// A signature.
    Sign,
    /// A listing of keys (a key the policy hides through a forwarded agent).
    List,
    /// A key added (`ssh-add`, `ssh-add -s`).
    Add,
    /// A key removed (`ssh-add -d`, an expired certificate dropped).
    Remove,
    /// Every key removed (`ssh-add -D`).
    RemoveAll,
    /// The agent locked (`ssh-add -x`).
    Lock,
    /// The agent unlocked (`ssh-add -X`).
    Unlock,
    /// A session-bind hopward refused, which poisons its connection.
    Bind,
    /// A connection refused for the limit of open connections.
    Connection,
    /// Any other extension request (refused while forwarded use is locked).
    Extension,
}

impl Event {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Event::Sign => "sign",
            Event::List => "list",
            Event::Add => "add",
            Event::Remove => "remove",
            Event::RemoveAll => "remove_all",
            Event::Lock => "lock",
            Event::Unlock => "unlock",
            Event::Bind => "bind",
            Event::Connection => "connection",
            Event::Extension => "extension",
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl From<KeyOp> for Event {
    fn from(op: KeyOp) -> Event {
        match op {
            KeyOp::Add => Event::Add,
            KeyOp::Remove => Event::Remove,
            KeyOp::RemoveAll => Event::RemoveAll,
            KeyOp::Lock => Event::Lock,
            KeyOp::Unlock => Event::Unlock,
        }
    }
}

/// What was decided (`decision`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Decision {
    /// The request went ahead (for a signature made outside this process:
    /// it was made).
    Allow,
    /// The request was refused, or never answered.
    Deny,
}

impl Decision {
    pub(crate) fn of(allowed: bool) -> Decision {
        if allowed {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "allow",
            Decision::Deny => "deny",
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why it was decided so (`reason`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reason {
    /// The rule decided as it says: a rule's name, `default:<setting>` (the
    /// `[defaults]` setting that decided), `forwarded.<op>`.
    Rule(String),
    /// A person said yes.
    Confirmed,
    /// A person said no.
    Refused,
    /// The confirmer crashed, could not run, printed something that is not
    /// an answer, or found no notification server.
    ConfirmerFailed,
    /// Nobody answered in time.
    Timeout,
    /// Too many questions were open: refused without asking.
    Flood,
    /// Nothing here can ask.
    NoConfirmer,
    /// The question was withdrawn for a change that left nothing else to
    /// name.
    Withdrawn,
    /// Not asked: another key of the same login (same connection, session
    /// id and user) was answered `refused`, `timeout`, `confirmer-failed`
    /// or `no-confirmer`.
    SameLogin,
    /// Allowed, with a desktop notice.
    Notified,
    /// Allowed by an approval remembered from an earlier yes.
    Remembered,
    /// OpenSSH's own constraints on the key (`ssh-add -h`, FIDO web
    /// origins) refused it before the policy was read.
    Constraint,
    /// The client hung up, its connection was cut, or the daemon stopped,
    /// before the request was answered.
    Abandoned,
    /// The same, after an allow, while the upstream or a token was still at
    /// work: the signature may have been made, it was never delivered.
    AbandonedAfterAllow,
    /// A yes given after the key changed: `key-expired` (its `-t`
    /// lifetime), `key-removed` (SIGUSR1, `ssh-add -D`, `-d`, `-e`, added
    /// again) or `locked` (`ssh-add -x`).
    Gone(Gone),
    /// A yes given after the policy was reloaded.
    PolicyChanged,
    /// A yes given after remembered approvals were dropped.
    GrantsCleared,
    /// A certificate past its `valid_before`: refused for a login, or
    /// dropped once OpenSSH's grace has passed.
    CertExpired,
    /// Allowed here; the upstream agent refused to sign.
    UpstreamRefused,
    /// Allowed here; the upstream agent could not be reached or failed.
    UpstreamFailed,
    /// Allowed here; the FIDO token did not sign (no touch in time, a wrong
    /// PIN, a provider that crashed, hung or lied).
    TokenFailed,
    /// Allowed here; the PKCS#11 token did not sign.
    ProviderFailed,
    /// Forwarded use is locked (`hopward lock --forwarded`, `[lock] idle`,
    /// the screen lock).
    ForwardedLocked,
    /// An upstream signature barred before it was asked: this agent is
    /// locked (`ssh-add -x`), and upstream keys hide with its own.
    AgentLocked,
    /// An upstream signature barred: a session-bind on this connection was
    /// refused.
    BindRefused,
    /// An upstream signature barred: the upstream agent refused a bind.
    UpstreamBindRefused,
    /// A session-bind failed: `bind-<what failed>` (see
    /// [`BindError::kind`]).
    Bind(BindError),
    /// A key's provider was refused: `provider-remote`,
    /// `provider-not-allowed` or `provider-missing` (see
    /// [`ProviderRefusal::kind`]).
    Provider(ProviderRefusal),
    /// A connection refused because its first forwarding hop holds this
    /// many open connections already: `over-<n>-per-first-hop`.
    OverPerFirstHop(usize),
    /// A connection refused because all forwarded connections together
    /// hold this many already: `over-<n>-forwarded`.
    OverForwarded(usize),
    /// `[forwarded] brake` made the request ask: `brake:<outcome>`.
    Brake(Box<Reason>),
}

impl From<&Answer> for Reason {
    fn from(answer: &Answer) -> Reason {
        match answer {
            Answer::Allowed | Answer::AllowedRemember | Answer::AllowedOnce => Reason::Confirmed,
            Answer::Refused => Reason::Refused,
            Answer::Failed(_) => Reason::ConfirmerFailed,
            Answer::TimedOut => Reason::Timeout,
            Answer::Flood => Reason::Flood,
            Answer::Unavailable(_) => Reason::NoConfirmer,
            Answer::Withdrawn => Reason::Withdrawn,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = match self {
            Reason::Rule(rule) => rule,
            Reason::Confirmed => "confirmed",
            Reason::Refused => "refused",
            Reason::ConfirmerFailed => "confirmer-failed",
            Reason::Timeout => "timeout",
            Reason::Flood => "flood",
            Reason::NoConfirmer => "no-confirmer",
            Reason::Withdrawn => "withdrawn",
            Reason::SameLogin => crate::daemon::one_login::SAME_LOGIN,
            Reason::Notified => "notified",
            Reason::Remembered => "remembered",
            Reason::Constraint => "constraint",
            Reason::Abandoned => "abandoned",
            Reason::AbandonedAfterAllow => "abandoned-after-allow",
            Reason::Gone(gone) => gone.reason(),
            Reason::PolicyChanged => "policy-changed",
            Reason::GrantsCleared => "grants-cleared",
            Reason::CertExpired => crate::keys::expiry::REASON,
            Reason::UpstreamRefused => "upstream-refused",
            Reason::UpstreamFailed => "upstream-failed",
            Reason::TokenFailed => "token-failed",
            Reason::ProviderFailed => "provider-failed",
            Reason::ForwardedLocked => "forwarded-locked",
            Reason::AgentLocked => "agent-locked",
            Reason::BindRefused => "bind-refused",
            Reason::UpstreamBindRefused => "upstream-bind-refused",
            Reason::Bind(error) => error.kind(),
            Reason::Provider(refusal) => refusal.kind(),
            Reason::OverPerFirstHop(n) => return write!(f, "over-{n}-per-first-hop"),
            Reason::OverForwarded(n) => return write!(f, "over-{n}-forwarded"),
            Reason::Brake(outcome) => return write!(f, "brake:{outcome}"),
        };
        f.write_str(word)
    }
}

impl Serialize for Reason {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `purpose` as the record writes it (`login`, `sshsig`, …, or null).
pub(crate) fn serialize_purpose<S: Serializer>(
    purpose: &Option<crate::trust::binding::Purpose>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match purpose {
        Some(purpose) => s.serialize_str(purpose.as_str()),
        None => s.serialize_none(),
    }
}

/// `class` as the record writes it.
pub(crate) fn serialize_class<S: Serializer>(
    class: &RequestClass,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.serialize_str(class.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_braked_outcome_says_brake_in_front() {
        let reason = Reason::Brake(Box::new(Reason::Gone(Gone::Removed)));
        assert_eq!(reason.to_string(), "brake:key-removed");
        assert_eq!(
            serde_json::to_string(&reason).unwrap(),
            "\"brake:key-removed\""
        );
    }

    #[test]
    fn events_and_decisions_keep_their_names() {
        assert_eq!(
            serde_json::to_string(&Event::RemoveAll).unwrap(),
            "\"remove_all\""
        );
        assert_eq!(Event::from(KeyOp::RemoveAll).to_string(), "remove_all");
        assert_eq!(serde_json::to_string(&Decision::Deny).unwrap(), "\"deny\"");
    }
}
