//! Which keys a connection is shown: OpenSSH's destination constraints,
//! then the policy's "could some rule allow it here"; a key the policy
//! hides through a forwarded agent is an audited refusal.

use crate::daemon::agent::Agent;
use crate::daemon::audit::{Event, Reason};
use crate::keys::keystore::Identity;
use crate::ssh::cert::unix_now;
use crate::trust::context::RequestClass;
use crate::trust::destination;

use super::refusals::{Lister, record_refusal};

/// A key that might be listed.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Listed<'a> {
    Held(&'a Identity),
    Upstream {
        fingerprint: &'a str,
        comment: &'a str,
    },
}

impl Listed<'_> {
    fn names(&self) -> (&str, &str) {
        match self {
            Listed::Held(identity) => (&identity.fingerprint, &identity.comment),
            Listed::Upstream {
                fingerprint,
                comment,
            } => (fingerprint, comment),
        }
    }
}

/// Whether a key may be listed (or removed) on this connection: OpenSSH's
/// `identity_permitted` without a user (own keys), then, on a connection
/// with a bind, the policy's "could some rule allow it here" (for a direct
/// one, a login to the host it is bound to). `Err` carries the rule that
/// hides it (`None`: an OpenSSH destination constraint does).
pub(crate) fn permitted(
    agent: &Agent,
    lister: &Lister<'_>,
    key: Listed<'_>,
) -> Result<(), Option<String>> {
    if let Listed::Held(identity) = key {
        destination::identity_permitted(
            &identity.constraints.destinations,
            lister.chain,
            None,
            unix_now(),
        )
        .map_err(|_| None)?;
    }
    if lister.class == RequestClass::Local {
        return Ok(());
    }
    let (fingerprint, comment) = key.names();
    agent
        .policy_now()
        .could_allow(fingerprint, comment, lister.hops, lister.class)
        .map_err(Some)
}

/// Whether a key is shown in this connection's listing. A key the policy
/// hides through a forwarded agent is a refusal the remote side met, so it
/// is audited (`list`, `deny`); one it hides from this machine's own ssh
/// (a direct login) is only fewer keys offered, and one an OpenSSH
/// constraint hides is not audited either, as in ssh-agent.
pub(crate) fn listed(agent: &Agent, lister: &Lister<'_>, key: Listed<'_>) -> bool {
    match permitted(agent, lister, key) {
        Ok(()) => true,
        Err(None) => false,
        Err(Some(rule)) if lister.class == RequestClass::Direct => {
            let (fingerprint, _) = key.names();
            tracing::debug!(conn = lister.conn, key = %fingerprint, "not offered to this direct login ({rule})");
            false
        }
        Err(Some(rule)) => {
            let reason = Reason::Rule(rule.clone());
            record_refusal(
                agent,
                lister,
                Event::List,
                Some(key.names()),
                (&rule, reason),
                None,
            );
            false
        }
    }
}
