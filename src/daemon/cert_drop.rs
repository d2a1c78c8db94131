//! Certificates the agent stops using by itself: one past its `valid_before`
//! is refused for signing, one past OpenSSH's grace after it is dropped or
//! refused when added, each with its audit record (reason `cert-expired`).

use std::sync::Arc;

use tracing::info;

use crate::daemon::agent::Agent;
use crate::daemon::audit::{AuditRecord, Event, Reason};
// Rule and reason of every record this module writes.
use crate::keys::expiry::{CertValidity, REASON as CERT_EXPIRED};
use crate::keys::keystore::Identity;
use crate::ssh::cert::unix_now;
use crate::trust::context::RequestClass;
use crate::trust::peer::Peer;

/// Whether `blob` is a certificate whose `valid_before` has passed by this
/// machine's clock: servers refuse it, so it is never signed with (a key
/// held here or one of the upstream agent's).
pub(crate) fn refuses_to_sign(blob: &[u8]) -> bool {
    CertValidity::of_blob(blob).is_some_and(|cert| cert.expired(unix_now()))
}

/// Records the certificates among `gone` (taken out by the reaper) that
/// went after their `valid_before`: event `remove`, `allow` (the agent's
/// own doing), rule and reason `cert-expired`, the agent itself as peer.
/// That includes one whose lifetime from OpenSSH 10.1's `ssh-add` (the
/// same grace, counted on the other clock) ended a moment first. Keys
/// whose `ssh-add -t` lifetime ended before that are not recorded, as
/// before.
pub(crate) fn audit_dropped(agent: &Agent, gone: &[Arc<Identity>]) {
    let me = Peer {
        uid: agent.owner_uid(),
        pid: Some(std::process::id()),
        exe: std::env::current_exe().ok(),
        parents: Vec::new(),
        process: Default::default(),
    };
    for identity in gone.iter().filter(|id| id.cert_expired()) {
        info!(key = %identity.fingerprint, "certificate expired; removed");
        let record = AuditRecord::key_event(
            Event::Remove,
            Some((&identity.fingerprint, &identity.comment)),
            RequestClass::Local,
            &[],
            &me,
            0,
        )
        .decided(true, CERT_EXPIRED, Reason::CertExpired);
        agent.record(record);
    }
}
