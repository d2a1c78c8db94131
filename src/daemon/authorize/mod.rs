//! The decision for one request, in one place: OpenSSH's own constraints on
//! the key, the policy, `ssh-add -c`, a remembered approval, the prompt,
//! remembering the answer, and the audit record.
//!
//! A listing is decided here too ([`listed`]): a key that could never be
//! used through a connection is not shown to it. A refused session-bind
//! is recorded here as well ([`bind_refused`]).
//!
//! Invariants: every call of [`authorize`] leaves exactly one audit record,
//! even when its future is dropped half way (`deny`, `abandoned`); an
//! allowed signature by the upstream or a hardware key writes it once the
//! upstream, token or provider has answered ([`Verdict::signed`],
//! [`Verdict::sign_failed`]). OpenSSH's constraints and `-c` only ever make
//! a decision stricter; anything that goes wrong on the way to an answer is
//! a deny.

use std::time::Instant;

use tracing::{info, warn};

use crate::daemon::agent::Agent;
use crate::daemon::audit::{AuditBrake, AuditRecord, Event, Reason};
use crate::daemon::one_login::ThisLogin;
use crate::keys::keystore::Identity;
use crate::policy::{Action, Decision, KeyOp};
use crate::ssh::cert::unix_now;
use crate::trust::binding::{Chain, Purpose, SignedData};
use crate::trust::context::RequestContext;
use crate::trust::destination;

mod enforce;
mod listing;
mod prompt;
mod refusals;
mod verdict;

pub(crate) use listing::{Listed, listed, permitted};
pub(crate) use prompt::prompt_for;
pub(crate) use refusals::{
    Lister, bind_refused, connection_refused, forwarded_locked_refused, provider_refused,
};
pub(crate) use verdict::Verdict;

use enforce::{Grounds, enforce};

/// Who asks: the connection, what is known of the request, and the
/// connection's verified chain (OpenSSH's `-h` rules read it).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Caller<'a> {
    pub(crate) conn: u64,
    pub(crate) context: &'a RequestContext,
    pub(crate) chain: &'a Chain,
    /// The login a sign request belongs to, whose earlier refusal answers
    /// it (see [`crate::daemon::one_login`]); `None` for anything else.
    pub(crate) login: Option<ThisLogin<'a>>,
}

/// What is to be authorized.
#[derive(Debug)]
pub(crate) enum Op<'a> {
    /// A signature over `data` (`signed` is its reading).
    Sign {
        key: SignKey<'a>,
        signed: &'a SignedData<'a>,
        data: &'a [u8],
    },
    /// A key operation; `key` is `(fingerprint, comment)` when it names
    /// one, `provider` the hardware provider involved.
    KeyOp {
        op: KeyOp,
        key: Option<(&'a str, &'a str)>,
        provider: Option<String>,
    },
}

/// Whose key would sign.
#[derive(Debug, Clone, Copy)]
pub(crate) enum SignKey<'a> {
    /// A key in this agent's store, with its blob: its OpenSSH constraints
    /// (`-h`, `-c`, FIDO web origins) apply before the policy.
    Held {
        identity: &'a Identity,
        blob: &'a [u8],
    },
    /// A key of the upstream agent, which applies its own constraints.
    Upstream,
}

/// Decides `op` for `caller`, asks if the policy says so, and audits.
pub(crate) async fn authorize(agent: &Agent, caller: &Caller<'_>, op: Op<'_>) -> Verdict {
    let ctx = caller.context;
    let (generation, policy) = agent.policy_snapshot();
    let mut grounds = Grounds::now(agent, generation);
    match op {
        Op::Sign { key, signed, data } => {
            let mut touch = false;
            let mut confirm_always = false;
            let mut provider = None;
            if let SignKey::Held { identity, blob } = key {
                // OpenSSH's own constraints come first; the policy can only
                // add to them.
                if let Err(refusal) = destination::check_sign(
                    &identity.constraints.destinations,
                    caller.chain,
                    blob,
                    signed,
                    unix_now(),
                ) {
                    warn!(conn = caller.conn, key = %identity.fingerprint, "sign refused by destination constraint: {refusal}");
                    return refused_by_constraint(agent, caller);
                }
                if identity.security_key().is_some() && !websafe(agent, identity, signed) {
                    warn!(conn = caller.conn, key = %identity.fingerprint, "refused: a FIDO key for a web application may only sign SSH logins and SSHSIG signatures (-O websafe-allow)");
                    return refused_by_constraint(agent, caller);
                }
                grounds.key = Some(identity);
                grounds.login = ctx.purpose == Purpose::Login;
                touch = identity.security_key().is_some_and(|t| t.needs_touch());
                confirm_always = identity.constraints.confirm;
                // Which library signs for a hardware key: its path, never a PIN.
                provider = identity.provider_name();
            }
            let mut decision = policy.decide(ctx);
            if confirm_always && decision.action.allows_unasked() {
                // ssh-add -c: the key always asks, whatever the policy allows.
                decision.action = Action::Confirm;
                decision.remember = None;
            }
            let burst = brake(agent, &policy, ctx, &mut decision);
            let prompt = || {
                let mut prompt = prompt_for(ctx, None);
                if let SignedData::Sshsig { namespace } = signed {
                    if ctx.purpose == Purpose::Other {
                        prompt.namespace = Some(namespace.to_string());
                    }
                }
                prompt.touch = touch;
                prompt.brake = burst.as_ref().map(crate::policy::brake::Burst::describe);
                prompt
            };
            let mut record =
                AuditRecord::sign(ctx, false, &decision.rule, Reason::Abandoned, caller.conn);
            record.provider = provider;
            record.brake = burst.as_ref().map(AuditBrake::from);
            let upstream = matches!(key, SignKey::Upstream);
            record.upstream = upstream;
            // Whether something outside this process signs, and can still
            // fail after the allow.
            let outside = upstream || record.provider.is_some();
            let verdict = Verdict::owing(agent, decision.rule.clone(), record);
            let (allowed, reason) = enforce(
                agent,
                caller,
                (&decision, &grounds),
                prompt,
                data,
                &policy.confirm,
            )
            .await;
            // A braked request's reason says so, whatever the answer was.
            let reason = match &burst {
                Some(_) => Reason::Brake(Box::new(reason)),
                None => reason,
            };
            if !allowed {
                info!(
                    conn = caller.conn,
                    "denied: {ctx} rule={} reason={reason}", decision.rule
                );
            }
            verdict.decided(allowed, reason, outside)
        }
        Op::KeyOp { op, key, provider } => {
            let decision = policy.key_op(op, ctx.class);
            let what = match op {
                KeyOp::Add => "add this key to the agent",
                KeyOp::Remove => "remove this key from the agent",
                KeyOp::RemoveAll => "remove every key from the agent",
                KeyOp::Lock => "lock the agent",
                KeyOp::Unlock => "unlock the agent",
            };
            let prompt = || prompt_for(ctx, Some(what));
            let mut record = AuditRecord::key_event(
                Event::from(op),
                key,
                ctx.class,
                &ctx.chain,
                &ctx.peer,
                caller.conn,
            )
            .decided(false, &decision.rule, Reason::Abandoned);
            record.provider = provider;
            let verdict = Verdict::owing(agent, decision.rule.clone(), record);
            let (allowed, reason) = enforce(
                agent,
                caller,
                (&decision, &grounds),
                prompt,
                what.as_bytes(),
                &policy.confirm,
            )
            .await;
            if !allowed {
                warn!(conn = caller.conn, peer = %ctx.peer, class = ctx.class.as_str(), "refused {} ({reason})", op.event());
            }
            verdict.decided(allowed, reason, false)
        }
    }
}

/// A signature OpenSSH's constraints refuse, before the policy is read.
fn refused_by_constraint(agent: &Agent, caller: &Caller<'_>) -> Verdict {
    let record = AuditRecord::sign(
        caller.context,
        false,
        "constraint",
        Reason::Constraint,
        caller.conn,
    );
    Verdict::owing(agent, "constraint".into(), record).decided(false, Reason::Constraint, false)
}

/// `[forwarded] brake`: counts this request's destination against its
/// first forwarding hop and, once that hop is past the limit, turns an
/// `allow` or `notify` (or a remembered approval) into a question that is
/// not remembered. A `deny` is neither counted nor changed.
fn brake(
    agent: &Agent,
    policy: &crate::policy::Policy,
    ctx: &RequestContext,
    decision: &mut Decision,
) -> Option<crate::policy::brake::Burst> {
    let settings = policy.brake.as_ref()?;
    if decision.action == Action::Deny {
        return None;
    }
    let burst = agent.note_burst(settings, ctx, Instant::now())?;
    // Every braked request has its audit record; the log line is for
    // following along, so a bastion in a loop does not fill it with warnings.
    info!(
        key = %ctx.key_fingerprint,
        "brake: {}; asking", burst.describe()
    );
    decision.action = Action::Confirm;
    decision.remember = None;
    Some(burst)
}

/// A signature with a certificate past its `valid_before`, before the
/// policy is read: `deny`, rule and reason `cert-expired` (`upstream` for
/// a certificate of the upstream agent).
pub(crate) fn refused_expired_certificate(
    agent: &Agent,
    caller: &Caller<'_>,
    upstream: bool,
) -> Verdict {
    use crate::keys::expiry::REASON as CERT_EXPIRED;
    let mut record = AuditRecord::sign(
        caller.context,
        false,
        CERT_EXPIRED,
        Reason::CertExpired,
        caller.conn,
    );
    record.upstream = upstream;
    Verdict::owing(agent, CERT_EXPIRED.into(), record).decided(false, Reason::CertExpired, false)
}

/// ssh-agent's web-origin check (`check_websafe_message_contents`): a
/// FIDO key whose application is not on the websafe allow-list (`ssh:*` by
/// default) signs only what OpenSSH's agent reads as a userauth request by
/// that key (`parse_userauth_request`: session id as a string, signature
/// byte 1, `ssh-connection`, the algorithm of that key, a host key that is
/// a key) or an SSHSIG signature, never a web challenge; data that only
/// looks like a login is refused.
fn websafe(agent: &Agent, identity: &Identity, signed: &SignedData<'_>) -> bool {
    let Some(allowlist) = &agent.options().websafe_allowlist else {
        return true;
    };
    let application = identity.public.parts.application().unwrap_or_default();
    if crate::ssh::pattern::match_pattern_list(application, allowlist) {
        return true;
    }
    match signed {
        SignedData::Userauth(auth) => {
            let parses = |blob: &[u8]| crate::ssh::key::PublicKey::parse(blob).ok();
            !auth.raw_session_id
                && auth.sig_follows == 1
                && auth.service == b"ssh-connection"
                && parses(auth.key_blob).is_some_and(|key| key.parts == identity.public.parts)
                && crate::trust::binding::algorithm_matches_key(auth.algorithm, auth.key_blob)
                && auth.host_key.is_none_or(|blob| parses(blob).is_some())
        }
        SignedData::Sshsig { .. } => true,
        SignedData::UnreadLogin { .. } | SignedData::Other => false,
    }
}

#[cfg(test)]
mod brake_tests;
#[cfg(test)]
mod tests;
