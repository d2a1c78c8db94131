//! The outcome of one request and the audit record it owes until it is
//! written: exactly one record per request, even when the request is
//! dropped half way.

use std::sync::Arc;
use std::time::Instant;

use crate::daemon::agent::Agent;
use crate::daemon::audit::{AuditRecord, AuditSink, Decision as Said, Reason};

/// The outcome, and the audit record it may still owe.
///
/// The record is owed from before the question is asked: if the request is
/// dropped on the way (the client hung up during a prompt, the connection
/// was cut while a token waited for a touch), the verdict is dropped with
/// it and writes the record as it stands, a `deny` with the reason
/// `abandoned` (`abandoned-after-allow` once allowed). An allowed
/// signature by the upstream or a hardware key keeps owing it until
/// [`Verdict::signed`] or [`Verdict::sign_failed`].
#[derive(Debug)]
#[must_use]
pub(crate) struct Verdict {
    pub(crate) allowed: bool,
    /// The rule that decided (the audit record has the reason).
    pub(crate) rule: String,
    pending: Option<Pending>,
}

/// A record not written yet: as it stands (a deny) and the reason to give
/// it if the signature is made.
#[derive(Debug)]
struct Pending {
    record: AuditRecord,
    sink: Arc<dyn AuditSink>,
    reason: Reason,
    /// When the record was made: one written much later (after a prompt,
    /// a touch) gets the time it is written.
    made: Instant,
}

/// A record written this much later than it was made is stamped anew.
const RESTAMP_AFTER: std::time::Duration = std::time::Duration::from_millis(1);

impl Verdict {
    /// A verdict that owes `record` (built as a deny, `abandoned`) until
    /// it is decided.
    pub(super) fn owing(agent: &Agent, rule: String, record: AuditRecord) -> Verdict {
        Verdict {
            allowed: false,
            rule,
            pending: Some(Pending {
                record,
                sink: agent.audit_sink(),
                reason: Reason::Abandoned,
                made: Instant::now(),
            }),
        }
    }

    /// The answer is in: the record gets it. Written now unless the
    /// signature is yet to be made outside this process (`deferred`).
    pub(super) fn decided(mut self, allowed: bool, reason: Reason, deferred: bool) -> Verdict {
        self.allowed = allowed;
        if let Some(pending) = self.pending.as_mut() {
            if allowed && deferred {
                pending.reason = reason;
                pending.record.reason = Reason::AbandonedAfterAllow;
            } else {
                pending.record.decision = Said::of(allowed);
                pending.record.reason = reason;
                self.write();
            }
        }
        self
    }

    fn write(&mut self) {
        if let Some(mut pending) = self.pending.take() {
            if pending.made.elapsed() > RESTAMP_AFTER {
                pending.record.ts = crate::daemon::audit::now_rfc3339();
            }
            pending.sink.record(pending.record);
        }
    }

    /// The upstream, token or provider made the signature: the record says
    /// allowed.
    pub(crate) fn signed(mut self) {
        if let Some(pending) = self.pending.as_mut() {
            pending.record.decision = Said::Allow;
            pending.record.reason = std::mem::replace(&mut pending.reason, Reason::Abandoned);
        }
        self.write();
    }

    /// Allowed here, yet the upstream, token or provider did not sign: the
    /// record says where it stopped (`upstream-refused`, `upstream-failed`,
    /// `token-failed`, `provider-failed`).
    pub(crate) fn sign_failed(mut self, reason: Reason) {
        if let Some(pending) = self.pending.as_mut() {
            pending.record.reason = reason;
        }
        self.write();
    }
}

impl Drop for Verdict {
    fn drop(&mut self) {
        // Dropped before it was decided (deny, abandoned), or after an
        // allow before the signature was delivered (deny,
        // abandoned-after-allow).
        self.write();
    }
}
