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

use std::sync::Arc;
use std::time::Instant;

use tracing::{info, warn};

use crate::confirm::broker::{NotAsked, Origin, Question};
use crate::confirm::{Answer, Prompt, Target};
use crate::daemon::agent::Agent;
use crate::daemon::audit::{AuditBrake, AuditRecord, AuditSink, Decision as Said, Event, Reason};
use crate::daemon::one_login::ThisLogin;
use crate::keys::keystore::Identity;
use crate::policy::grants::GrantScope;
use crate::policy::{Action, ConfirmSettings, Decision, KeyOp};
use crate::ssh::cert::unix_now;
use crate::text::clean;
use crate::trust::binding::{Chain, Purpose, SignedData};
use crate::trust::context::{Destination, HopView, RequestClass, RequestContext};
use crate::trust::destination;

/// Who asks: the connection, what is known of the request, and the
/// connection's verified chain (OpenSSH's `-h` rules read it).
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    pub conn: u64,
    pub context: &'a RequestContext,
    pub chain: &'a Chain,
    /// The login a sign request belongs to, whose earlier refusal answers
    /// it (see [`crate::daemon::one_login`]); `None` for anything else.
    pub login: Option<ThisLogin<'a>>,
}

/// What is to be authorized.
#[derive(Debug)]
pub enum Op<'a> {
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
pub enum SignKey<'a> {
    /// A key in this agent's store, with its blob: its OpenSSH constraints
    /// (`-h`, `-c`, FIDO web origins) apply before the policy.
    Held {
        identity: &'a Identity,
        blob: &'a [u8],
    },
    /// A key of the upstream agent, which applies its own constraints.
    Upstream,
}

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
pub struct Verdict {
    pub allowed: bool,
    /// The rule that decided (the audit record has the reason).
    pub rule: String,
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
    fn owing(agent: &Agent, rule: String, record: AuditRecord) -> Verdict {
        Verdict {
            allowed: false,
            rule,
            pending: Some(Pending {
                record,
                sink: Arc::clone(&agent.audit),
                reason: Reason::Abandoned,
                made: Instant::now(),
            }),
        }
    }

    /// The answer is in: the record gets it. Written now unless the
    /// signature is yet to be made outside this process (`deferred`).
    fn decided(mut self, allowed: bool, reason: Reason, deferred: bool) -> Verdict {
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
    pub fn signed(mut self) {
        if let Some(pending) = self.pending.as_mut() {
            pending.record.decision = Said::Allow;
            pending.record.reason = std::mem::replace(&mut pending.reason, Reason::Abandoned);
        }
        self.write();
    }

    /// Allowed here, yet the upstream, token or provider did not sign: the
    /// record says where it stopped (`upstream-refused`, `upstream-failed`,
    /// `token-failed`, `provider-failed`).
    pub fn sign_failed(mut self, reason: Reason) {
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

/// Decides `op` for `caller`, asks if the policy says so, and audits.
pub async fn authorize(agent: &Agent, caller: &Caller<'_>, op: Op<'_>) -> Verdict {
    let ctx = caller.context;
    let (generation, policy) = agent.policy.snapshot();
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
            let mut record = AuditRecord::sign(ctx, false, &decision.rule, Reason::Abandoned, caller.conn);
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

/// Who a listing is for, or a refusal no decision made (a bind, a
/// provider): the connection, its chain (with names) and class.
#[derive(Debug, Clone, Copy)]
pub struct Lister<'a> {
    pub conn: u64,
    pub chain: &'a Chain,
    pub hops: &'a [HopView],
    pub class: RequestClass,
    /// Read from `/proc` only if a refusal is recorded: a listing needs
    /// nothing about the process.
    pub peer: &'a crate::trust::process::Requester,
}

/// A key that might be listed.
#[derive(Debug, Clone, Copy)]
pub enum Listed<'a> {
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
pub fn permitted(agent: &Agent, lister: &Lister<'_>, key: Listed<'_>) -> Result<(), Option<String>> {
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
        .policy
        .current()
        .could_allow(fingerprint, comment, lister.hops, lister.class)
        .map_err(Some)
}

/// Whether a key is shown in this connection's listing. A key the policy
/// hides through a forwarded agent is a refusal the remote side met, so it
/// is audited (`list`, `deny`); one it hides from this machine's own ssh
/// (a direct login) is only fewer keys offered, and one an OpenSSH
/// constraint hides is not audited either, as in ssh-agent.
pub fn listed(agent: &Agent, lister: &Lister<'_>, key: Listed<'_>) -> bool {
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
            record_refusal(agent, lister, Event::List, Some(key.names()), (&rule, reason), None);
            false
        }
    }
}

/// The one record of a refusal made outside [`authorize`]: `event` by
/// `who`, `deny`, with its rule and reason.
fn record_refusal(
    agent: &Agent,
    who: &Lister<'_>,
    event: Event,
    key: Option<(&str, &str)>,
    (rule, reason): (&str, Reason),
    provider: Option<String>,
) {
    let mut record = AuditRecord::key_event(event, key, who.class, who.hops, who.peer, who.conn)
        .decided(false, rule, reason);
    record.provider = provider;
    agent.audit.record(record);
}

/// A key add refused for the provider it names (ssh-agent's checks: none
/// through a forwarded agent, the real path on the `-P` allow-list): an
/// `add` record, `deny`, the reason naming the check, `provider` the name
/// as requested (its real path for `provider-not-allowed`; cleaned). A
/// bastion trying to have the agent load a library of its choosing is
/// what this records.
pub fn provider_refused(
    agent: &Agent,
    who: &Lister<'_>,
    key: Option<(&str, &str)>,
    refusal: &crate::keys::sk::ProviderRefusal,
) {
    let reason = ("provider", Reason::Provider(refusal.clone()));
    record_refusal(agent, who, Event::Add, key, reason, Some(refusal.shown().to_string()));
}

/// A session-bind hopward refused: the connection is poisoned from now on
/// (`who` has the class `poisoned`). Audited (`bind`, `deny`, the reason
/// names what failed) because it is what a forged or replayed bind from a
/// hostile hop looks like. Only the bind that poisons is audited; the
/// caller leaves out later binds on a poisoned connection, so one
/// connection adds at most one record.
pub fn bind_refused(agent: &Agent, who: &Lister<'_>, error: &crate::trust::binding::BindError) {
    let reason = ("session-bind", Reason::Bind(error.clone()));
    record_refusal(agent, who, Event::Bind, None, reason, None);
}

/// A connection refused because its first forwarding hop, or all
/// forwarded connections together, hold their limit of open connections:
/// a `connection` record, `deny`, rule `connection-limit`, the reason
/// naming the limit and its value, the chain the hop. A bastion opening
/// connection after connection is what this records.
pub fn connection_refused(
    agent: &Agent,
    who: &Lister<'_>,
    limit: crate::daemon::agent::ConnectionLimit,
) {
    let reason = ("connection-limit", limit_reason(limit));
    record_refusal(agent, who, Event::Connection, None, reason, None);
}

/// The reason a connection limit gives, with the limit's value.
fn limit_reason(limit: crate::daemon::agent::ConnectionLimit) -> Reason {
    use crate::daemon::agent::{ConnectionLimit, MAX_CONNECTIONS_PER_HOP, MAX_FORWARDED_CONNECTIONS};
    match limit {
        ConnectionLimit::PerHop => Reason::OverPerFirstHop(MAX_CONNECTIONS_PER_HOP),
        ConnectionLimit::Forwarded => Reason::OverForwarded(MAX_FORWARDED_CONNECTIONS),
    }
}

/// A request refused because forwarded use is locked (`hopward lock
/// --forwarded`, `[lock] idle`, the screen lock): `event` by `who`,
/// `deny`, rule and reason `forwarded-locked`. The first refusal of a
/// lock episode also tells the person at the desk, once: a locked agent
/// that silently refuses a login made from elsewhere leaves them guessing.
pub fn forwarded_locked_refused(
    agent: &Agent,
    who: &Lister<'_>,
    event: Event,
    key: Option<(&str, &str)>,
) {
    let reason = ("forwarded-locked", Reason::ForwardedLocked);
    record_refusal(agent, who, event, key, reason, None);
    if agent.first_refusal_while_locked() {
        let through = who
            .hops
            .first()
            .map(|hop| {
                hop.names
                    .first()
                    .map_or_else(|| hop.fingerprint.clone(), |n| crate::text::clean(n, 80))
            })
            .unwrap_or_else(|| "a forwarded agent".into());
        let why = agent
            .locked_because()
            .unwrap_or_else(|| "hopward lock --forwarded".into());
        agent.desk.notify(
            "hopward: forwarded use is locked",
            format!(
                "A request through {through} was refused: forwarded use is locked ({}).\n\
                 Undo with: hopward unlock --forwarded\n\
                 Further refusals until then are in the audit log (hopward log --decision deny).",
                crate::text::clean(&why, 120)
            ),
        );
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
    let burst = agent.bursts.note(settings, ctx, Instant::now())?;
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
pub fn refused_expired_certificate(agent: &Agent, caller: &Caller<'_>, upstream: bool) -> Verdict {
    use crate::keys::expiry::REASON as CERT_EXPIRED;
    let mut record =
        AuditRecord::sign(caller.context, false, CERT_EXPIRED, Reason::CertExpired, caller.conn);
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
    let Some(allowlist) = &agent.options.websafe_allowlist else {
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

/// What a decision rests on, read before anyone is asked: the policy's
/// generation, the approval store's epoch, the keystore's lock count, and
/// the key itself. A person's answer counts only while all of them still
/// hold ([`Grounds::changed`]); the keystore's lock is never held while
/// asking, so they are read again after the answer.
#[derive(Debug, Clone, Copy)]
struct Grounds<'a> {
    policy: u64,
    grants: u64,
    locks: u64,
    /// The key held here that would sign (`None`: an upstream key, a key
    /// operation).
    key: Option<&'a Identity>,
    /// The signature is for a login: a certificate past its `valid_before`
    /// may not make it.
    login: bool,
}

impl<'a> Grounds<'a> {
    fn now(agent: &Agent, policy: u64) -> Grounds<'a> {
        Grounds {
            policy,
            grants: agent.grants.epoch(),
            locks: agent.keystore.locks(),
            key: None,
            login: false,
        }
    }

    /// What changed since, as the audit reason of the deny it makes:
    /// `key-expired`, `key-removed` or `locked` for the key, else
    /// `policy-changed` (a reload), else `grants-cleared` (SIGUSR1,
    /// `hopward lock --forwarded`, `grants revoke`). `None` if nothing did.
    fn changed(&self, agent: &Agent) -> Option<Reason> {
        if let Err(gone) = agent
            .keystore
            .still_holds(self.key, self.locks, Instant::now())
        {
            return Some(Reason::Gone(gone));
        }
        if self.login && self.key.is_some_and(Identity::cert_expired) {
            return Some(Reason::CertExpired);
        }
        if agent.policy.snapshot().0 != self.policy {
            return Some(Reason::PolicyChanged);
        }
        if agent.grants.epoch() != self.grants {
            return Some(Reason::GrantsCleared);
        }
        None
    }
}

/// Puts a decision into effect: allow, deny, or ask (unless a remembered
/// approval covers exactly this request); `(allowed, reason)`. `data` is
/// what the question is about: only requests with the same data share a
/// prompt. The prompt is only built when someone is asked (or told), so an
/// allowed request pays nothing for it. A "yes" counts only if the
/// decision's grounds still hold once it is given; if they do not, the
/// request is denied, the reason says what changed, and nothing is
/// remembered.
async fn enforce(
    agent: &Agent,
    caller: &Caller<'_>,
    (decision, grounds): (&Decision, &Grounds<'_>),
    prompt: impl Fn() -> Prompt,
    data: &[u8],
    settings: &ConfirmSettings,
) -> (bool, Reason) {
    let ctx = caller.context;
    match decision.action {
        Action::Allow => return (true, Reason::Rule(decision.rule.clone())),
        Action::Deny => return (false, Reason::Rule(decision.rule.clone())),
        Action::Notify => {
            // The request goes ahead whether or not the notice is shown.
            let prompt = prompt();
            let summary = if prompt.forwarded {
                "hopward: key used through a forwarded agent"
            } else {
                "hopward: key used"
            };
            agent.desk.notify(summary, prompt.notice_text());
            return (true, Reason::Notified);
        }
        Action::Confirm => {}
    }
    let scope = GrantScope::of(ctx);
    // The policy never sets `remember` for a login nobody verified, so such
    // a request neither finds nor leaves a grant.
    if decision.remember.is_some() && agent.grants.find(&scope, &decision.rule, Instant::now()).is_some() {
        return (true, Reason::Remembered);
    }
    if let Some(earlier) = caller.login.as_ref().and_then(ThisLogin::refused_before) {
        info!(
            conn = caller.conn,
            key = %ctx.key_fingerprint,
            "not asked again: another key of this login was answered {earlier}"
        );
        return (false, Reason::SameLogin);
    }
    let mut prompt = prompt();
    prompt.remember = decision.remember;
    let origin = Origin::of(ctx.class, &ctx.chain);
    let question = Question::new(scope.clone(), data, origin);
    let answer = ask(agent, caller, question, prompt, settings).await;
    if let Some(login) = &caller.login {
        login.answered(&answer);
    }
    if answer.allowed() || answer == Answer::Withdrawn {
        if let Some(changed) = grounds.changed(agent) {
            warn!(
                conn = caller.conn,
                key = %ctx.key_fingerprint,
                "denied: the answer came after its grounds changed ({changed})"
            );
            return (false, changed);
        }
    }
    // The desktop's plain "Allow" is for this request only.
    let remember = answer.allowed() && answer != Answer::AllowedOnce;
    if let (true, Some(ttl)) = (remember, decision.remember) {
        let hosts = hosts_of(ctx);
        let now = Instant::now();
        let Some(id) = agent
            .grants
            .add_if(grounds.grants, scope, hosts, &decision.rule, ttl, now)
        else {
            // Cleared between the check above and now.
            warn!(conn = caller.conn, "denied: remembered approvals were cleared while asking");
            return (false, Reason::GrantsCleared);
        };
        info!(
            conn = caller.conn,
            grant = id,
            "approval remembered for {ttl:?}"
        );
    }
    (answer.allowed(), Reason::from(&answer))
}

/// Puts a question through the broker (shared with identical requests,
/// bounded in number).
async fn ask(
    agent: &Agent,
    caller: &Caller<'_>,
    question: Question,
    prompt: Prompt,
    settings: &ConfirmSettings,
) -> Answer {
    let confirmer = agent.desk.confirmer(settings);
    let chain = clean(&prompt.chain_names.join(">"), 200);
    match agent
        .prompts
        .ask(question, confirmer, prompt, settings.timeout)
        .await
    {
        Ok(answer) => {
            match &answer {
                Answer::Unavailable(why) => {
                    if agent.prompts.should_warn_unavailable() {
                        warn!(
                            conn = caller.conn,
                            "no way to ask, denying: {why}. Fix: run a notification daemon on the session bus, \
                             set SSH_ASKPASS (with DISPLAY), or set [confirm] method = \"command\""
                        );
                    } else {
                        info!(conn = caller.conn, "no way to ask, denying: {why}");
                    }
                }
                Answer::Failed(why) => {
                    warn!(conn = caller.conn, "confirmation failed, denying: {why}")
                }
                _ => {}
            }
            answer
        }
        Err(NotAsked::Flood { notice }) => {
            warn!(conn = caller.conn, peer = %caller.context.peer, chain = %chain, "too many prompts open, denying at once");
            if notice {
                agent.desk.notify(
                    "hopward is refusing requests",
                    format!(
                        "Too many requests are waiting for your answer (the last one through {}). \
                         hopward refuses the rest without asking until you answer the open ones.",
                        if chain.is_empty() {
                            "this machine"
                        } else {
                            chain.as_str()
                        }
                    ),
                );
            }
            Answer::Flood
        }
    }
}

/// The chain as the audit log shows it: each hop's first verified name,
/// else its fingerprint.
fn hosts_of(context: &RequestContext) -> Vec<String> {
    let name = |h: &HopView| {
        h.names
            .first()
            .map_or_else(|| h.fingerprint.clone(), |n| clean(n, 64))
    };
    let jumps = context.jump.iter().map(|h| format!("{} (jump)", name(h)));
    jumps.chain(context.chain.iter().map(name)).collect()
}

/// The question for a request context; `operation` for key operations.
pub fn prompt_for(ctx: &RequestContext, operation: Option<&str>) -> Prompt {
    let target = match (ctx.destination, ctx.destination_hop()) {
        (Destination::Verified, Some(hop)) if hop.names.is_empty() && hop.hashed => {
            Target::Unlearned(hop.fingerprint.clone())
        }
        (Destination::Verified, Some(hop)) if hop.hashed => {
            Target::HashedHost(hop.label().to_string())
        }
        (Destination::Verified, Some(hop)) if hop.names.is_empty() => {
            Target::Unknown(hop.fingerprint.clone())
        }
        (Destination::Verified, Some(hop)) => Target::Host(hop.label().to_string()),
        (Destination::Unverified(_), _) => Target::Unverified,
        _ => Target::None,
    };
    Prompt {
        key_fingerprint: ctx.key_fingerprint.clone(),
        key_comment: ctx.key_comment.clone(),
        hops: ctx.route_labels(),
        chain_names: ctx
            .jump
            .iter()
            .map(|h| format!("{} (jump)", h.label()))
            .chain(ctx.chain.iter().map(|h| h.label().to_string()))
            .collect(),
        forwarded: ctx.chain.iter().any(|h| h.forwarding),
        target,
        user: ctx.user.clone(),
        user_style: ctx.user_style.clone(),
        purpose: operation.is_none().then(|| ctx.purpose.as_str()),
        namespace: None,
        operation: operation.map(str::to_string),
        peer_pid: ctx.peer.pid,
        peer_exe: ctx.peer.exe.as_ref().map(|e| e.display().to_string()),
        peer_parents: ctx.peer.parents.clone(),
        peer_cwd: ctx.peer.process.cwd.as_ref().map(|d| d.display().to_string()),
        remember: None,
        touch: false,
        brake: None,
    }
}

#[cfg(test)]
mod tests {
    //! The pipeline's outcomes, with a scripted desk and paused time: no
    //! socket, no D-Bus, no sshd.
    use std::time::Duration;

    use super::*;
    use crate::testing::fakes::{Records, ScriptedDesk};
    use crate::daemon::agent::AgentOptions;
    use crate::daemon::one_login::SAME_LOGIN;
    use crate::keys::keystore::Constraints;
    use crate::policy::store::PolicyStore;
    use crate::protocol::request::{NewKey, SecretParts};
    use crate::ssh::key::{PublicKey, PublicParts};
    use crate::trust::context::{HopView, RequestClass};
    use crate::trust::peer::Peer;

    const POLICY: &str = r#"
[defaults]
local = "allow"
forwarded = "confirm"
[confirm]
timeout = "30s"
[forwarded]
add = "confirm"
remove = "deny"
unlock = "confirm"
[[rule]]
name = "never through dmz"
via = ["dmz"]
action = "deny"
[[rule]]
name = "tell about ci"
via = ["ci"]
action = "notify"
[[rule]]
name = "remember prod"
via = ["prod"]
action = "confirm"
remember = "10m"
"#;

    struct Setup {
        agent: Arc<Agent>,
        desk: Arc<ScriptedDesk>,
        records: Arc<Records>,
    }

    fn setup(answers: Vec<Option<Answer>>, unavailable: bool) -> Setup {
        let policy = crate::policy::file::parse_str(POLICY, "test policy").unwrap();
        let records = Arc::new(Records::default());
        let desk = if unavailable {
            ScriptedDesk::unavailable()
        } else {
            ScriptedDesk::new(answers)
        };
        let agent = Agent::new(
            AgentOptions::new(0),
            PolicyStore::new(None, policy),
            Arc::clone(&records) as Arc<dyn AuditSink>,
        )
        .with_desk(desk.desk());
        Setup {
            agent: Arc::new(agent),
            desk,
            records,
        }
    }

    /// A request through `via` (a forwarding hop), or from this machine.
    fn context(via: Option<&str>) -> RequestContext {
        let peer = Arc::new(Peer::with_facts(0, Some(1), Default::default()));
        let hops: Vec<HopView> = via.map(|v| HopView::named(v, true)).into_iter().collect();
        let mut ctx = RequestContext::of_parts(
            ("SHA256:key", "me@desk"),
            hops,
            Destination::NotLogin,
            None,
            Purpose::Other,
            &peer,
        );
        ctx.class = if via.is_some() {
            RequestClass::Forwarded
        } else {
            RequestClass::Local
        };
        ctx
    }

    async fn sign(agent: &Agent, ctx: &RequestContext, key: SignKey<'_>, data: &[u8]) -> Verdict {
        let chain = Chain::default();
        let caller = Caller {
            conn: 1,
            context: ctx,
            chain: &chain,
            login: None,
        };
        let signed = SignedData::parse(data);
        authorize(
            agent,
            &caller,
            Op::Sign {
                key,
                signed: &signed,
                data,
            },
        )
        .await
    }

    async fn sign_upstream(agent: &Agent, via: Option<&str>) -> Verdict {
        sign(agent, &context(via), SignKey::Upstream, b"data").await
    }

    /// [`sign_upstream`], the upstream signing whatever was allowed.
    async fn signed_upstream(agent: &Agent, via: Option<&str>) -> bool {
        let verdict = sign_upstream(agent, via).await;
        let allowed = verdict.allowed;
        if allowed {
            verdict.signed();
        }
        allowed
    }

    fn held_key(confirm: bool) -> (Identity, Vec<u8>) {
        let seed = [7u8; 32];
        let parts = PublicParts::Ed25519(crate::ssh::key::ed25519_public(&seed));
        let blob = parts.blob();
        let new = NewKey {
            public: PublicKey {
                blob: blob.clone(),
                parts,
                is_cert: false,
            },
            secret: SecretParts::Ed25519(&seed),
            comment: "me@desk".into(),
        };
        let constraints = Constraints {
            confirm,
            ..Constraints::default()
        };
        (
            Identity::new(&new, constraints, Instant::now()).unwrap(),
            blob,
        )
    }

    fn record(event: &str, decision: &str, reason: &str) -> (String, String, String) {
        (event.into(), decision.into(), reason.into())
    }

    #[tokio::test(start_paused = true)]
    async fn local_use_is_allowed_without_asking() {
        let s = setup(vec![], false);
        let verdict = sign_upstream(&s.agent, None).await;
        assert!(verdict.allowed);
        assert_eq!(verdict.rule, "default:local");
        verdict.signed();
        assert_eq!(s.desk.asked(), 0);
        assert_eq!(
            s.records.seen(),
            vec![record("sign", "allow", "default:local")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_deny_rule_refuses_without_asking() {
        let s = setup(vec![], false);
        let verdict = sign_upstream(&s.agent, Some("dmz")).await;
        assert!(!verdict.allowed);
        drop(verdict);
        assert_eq!(s.desk.asked(), 0);
        assert_eq!(
            s.records.seen(),
            vec![record("sign", "deny", "never through dmz")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_confirm_follows_the_answer() {
        let s = setup(vec![Some(Answer::Allowed), Some(Answer::Refused)], false);
        assert!(signed_upstream(&s.agent, Some("bastion")).await);
        assert!(!sign_upstream(&s.agent, Some("bastion")).await.allowed);
        assert_eq!(s.desk.asked(), 2);
        assert_eq!(
            s.records.seen(),
            vec![
                record("sign", "allow", "confirmed"),
                record("sign", "deny", "refused")
            ]
        );
    }

    /// A confirmer that failed denies, and the record does not say a
    /// person refused.
    #[tokio::test(start_paused = true)]
    async fn a_failed_confirmer_is_not_a_persons_no() {
        let s = setup(vec![Some(Answer::Failed("killed by signal 11".into()))], false);
        assert!(!sign_upstream(&s.agent, Some("bastion")).await.allowed);
        assert_eq!(
            s.records.seen(),
            vec![record("sign", "deny", "confirmer-failed")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_nobody_answers_times_out_as_a_deny() {
        // The confirmer never answers: the broker's own bound ends the wait.
        let s = setup(vec![None], false);
        let started = tokio::time::Instant::now();
        let verdict = sign_upstream(&s.agent, Some("bastion")).await;
        assert!(!verdict.allowed);
        assert!(started.elapsed() >= Duration::from_secs(30));
        drop(verdict);
        assert_eq!(s.records.seen(), vec![record("sign", "deny", "timeout")]);
    }

    /// The requester hangs up while the prompt is open: the connection's
    /// task drops the request, and the record says so.
    #[tokio::test(start_paused = true)]
    async fn a_request_dropped_while_asking_is_audited_as_abandoned() {
        let s = setup(vec![None], false);
        let agent = Arc::clone(&s.agent);
        let asking = tokio::spawn(async move {
            sign(&agent, &context(Some("bastion")), SignKey::Upstream, b"data").await
        });
        while s.desk.asked() < 1 {
            tokio::task::yield_now().await;
        }
        assert!(s.records.seen().is_empty(), "nothing decided yet");
        asking.abort();
        assert!(asking.await.unwrap_err().is_cancelled());
        assert_eq!(s.records.seen(), vec![record("sign", "deny", "abandoned")]);
    }

    /// A no for one key of a login answers the next key ssh tries in it,
    /// without asking; another login on the connection is asked anew.
    #[tokio::test(start_paused = true)]
    async fn a_no_answers_the_other_keys_of_the_login() {
        use crate::daemon::one_login::LoginAnswers;
        let s = setup(vec![Some(Answer::Refused), Some(Answer::Allowed)], false);
        let answers = LoginAnswers::default();
        let chain = Chain::default();
        let login = |session_id: &'static [u8]| {
            SignedData::Userauth(crate::trust::binding::Userauth {
                session_id,
                user: b"deploy",
                service: b"ssh-connection",
                sig_follows: 1,
                algorithm: "ssh-ed25519",
                key_blob: b"key",
                host_key: None,
                raw_session_id: false,
            })
        };
        for (session_id, key) in [(b"one", "first"), (b"one", "second"), (b"two", "third")] {
            let mut ctx = context(Some("bastion"));
            ctx.key_comment = key.into();
            let signed = login(session_id);
            let caller = Caller {
                conn: 1,
                context: &ctx,
                chain: &chain,
                login: answers.login(&signed),
            };
            let op = Op::Sign {
                key: SignKey::Upstream,
                signed: &signed,
                data: key.as_bytes(),
            };
            let verdict = authorize(&s.agent, &caller, op).await;
            if verdict.allowed {
                verdict.signed();
            }
        }
        assert_eq!(s.desk.asked(), 2, "the second key of the first login is not asked");
        assert_eq!(
            s.records.seen(),
            vec![
                record("sign", "deny", "refused"),
                record("sign", "deny", SAME_LOGIN),
                record("sign", "allow", "confirmed"),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn no_way_to_ask_is_a_deny() {
        let s = setup(vec![], true);
        let verdict = sign_upstream(&s.agent, Some("bastion")).await;
        assert!(!verdict.allowed);
        drop(verdict);
        assert_eq!(
            s.records.seen(),
            vec![record("sign", "deny", "no-confirmer")]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn ssh_add_c_asks_even_where_the_policy_allows() {
        let s = setup(vec![Some(Answer::Refused)], false);
        let (identity, blob) = held_key(true);
        let key = SignKey::Held {
            identity: &identity,
            blob: &blob,
        };
        let verdict = sign(&s.agent, &context(None), key, b"data").await;
        assert!(!verdict.allowed, "the policy allows local use, -c asks");
        drop(verdict);
        assert_eq!(s.desk.asked(), 1);
        assert_eq!(s.records.seen(), vec![record("sign", "deny", "refused")]);
        // Without -c the same key is not asked about.
        let (plain, blob) = held_key(false);
        let key = SignKey::Held {
            identity: &plain,
            blob: &blob,
        };
        assert!(sign(&s.agent, &context(None), key, b"data").await.allowed);
        assert_eq!(s.desk.asked(), 1);
        assert_eq!(s.records.seen().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_remembered_approval_is_not_asked_again() {
        let s = setup(
            vec![Some(Answer::AllowedRemember), Some(Answer::Refused)],
            false,
        );
        assert!(signed_upstream(&s.agent, Some("prod")).await);
        let again = sign_upstream(&s.agent, Some("prod")).await;
        assert!(again.allowed);
        again.signed();
        assert_eq!(s.desk.asked(), 1);
        // Another chain is another question.
        assert!(!sign_upstream(&s.agent, Some("bastion")).await.allowed);
        assert_eq!(
            s.records.seen(),
            vec![
                record("sign", "allow", "confirmed"),
                record("sign", "allow", "remembered"),
                record("sign", "deny", "refused"),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_of_questions_is_refused_unasked_with_one_notice() {
        let s = setup(vec![None; 8], false);
        // Eight questions from one bastion, each about other data, stay open.
        let mut open = Vec::new();
        for i in 0..8u8 {
            let agent = Arc::clone(&s.agent);
            open.push(tokio::spawn(async move {
                let ctx = context(Some("bastion"));
                sign(&agent, &ctx, SignKey::Upstream, &[i]).await.allowed
            }));
        }
        while s.desk.asked() < 8 {
            tokio::task::yield_now().await;
        }
        let ctx = context(Some("bastion"));
        for data in [b"ninth".as_slice(), b"tenth"] {
            let verdict = sign(&s.agent, &ctx, SignKey::Upstream, data).await;
            assert!(!verdict.allowed);
        }
        assert_eq!(s.desk.asked(), 8, "not asked");
        assert_eq!(s.desk.notices(), 1, "one notice");
        for task in open {
            assert!(!task.await.unwrap(), "unanswered: timed out");
        }
        let seen = s.records.seen();
        assert_eq!(seen.len(), 10, "one record each: {seen:?}");
        assert_eq!(seen.iter().filter(|r| r.2 == "flood").count(), 2);
        assert_eq!(seen.iter().filter(|r| r.2 == "timeout").count(), 8);
    }

    /// A key held in the agent's store, with its blob.
    fn stored_key(agent: &Agent, lifetime: Option<u32>) -> (Arc<Identity>, Vec<u8>) {
        let (mut identity, blob) = held_key(false);
        identity.expires = lifetime.map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
        agent.keystore.add(identity).unwrap();
        let held = agent.keystore.find(&blob, Instant::now()).unwrap();
        (held, blob)
    }

    /// A sign request through `prod` (confirm, remember 10m) with a key
    /// of the store, its prompt held open while `change` happens (straight
    /// on the store, so only the check after the answer can catch it),
    /// then answered "allow and remember": `(allowed, reason, grants)`.
    async fn yes_after(change: impl FnOnce(&Agent)) -> (bool, String, usize) {
        let desk = crate::testing::fakes::HeldDesk::new();
        let policy = crate::policy::file::parse_str(POLICY, "test policy").unwrap();
        let records = Arc::new(Records::default());
        let agent = Arc::new(
            Agent::new(
                AgentOptions::new(0),
                PolicyStore::new(None, policy),
                Arc::clone(&records) as Arc<dyn AuditSink>,
            )
            .with_desk(desk.desk()),
        );
        let (held, blob) = stored_key(&agent, Some(3600));
        let asking = {
            let agent = Arc::clone(&agent);
            tokio::spawn(async move {
                let key = SignKey::Held {
                    identity: &held,
                    blob: &blob,
                };
                let verdict = sign(&agent, &context(Some("prod")), key, b"data").await;
                verdict.allowed
            })
        };
        while desk.asked() < 1 {
            tokio::task::yield_now().await;
        }
        change(&agent);
        desk.answer(Answer::AllowedRemember);
        let allowed = asking.await.unwrap();
        let seen = records.seen();
        assert_eq!(seen.len(), 1, "{seen:?}");
        let grants = agent.grants.list(Instant::now()).len();
        (allowed, seen[0].2.clone(), grants)
    }

    #[tokio::test]
    async fn a_yes_counts_while_its_grounds_hold() {
        assert_eq!(yes_after(|_| {}).await, (true, "confirmed".into(), 1));
    }

    /// The key went while the person was being asked: the late "yes"
    /// signs nothing with the old handle and leaves no approval behind.
    #[tokio::test]
    async fn a_yes_after_the_key_went_is_a_deny() {
        let removed = |agent: &Agent| {
            let blob = agent.keystore.list(Instant::now())[0].blob().to_vec();
            assert!(agent.keystore.remove(&blob));
        };
        let cleared = |agent: &Agent| {
            agent.keystore.clear();
        };
        let all = |agent: &Agent| {
            agent.keystore.remove_all().unwrap();
        };
        // Removed and added again: another identity, another question.
        let replaced = |agent: &Agent| {
            removed(agent);
            stored_key(agent, None);
        };
        for change in [&removed as &dyn Fn(&Agent), &cleared, &all, &replaced] {
            assert_eq!(yes_after(change).await, (false, "key-removed".into(), 0));
        }
    }

    #[tokio::test]
    async fn a_yes_after_a_lock_is_a_deny_even_once_unlocked() {
        let locked = |agent: &Agent| agent.keystore.lock("hash".into()).unwrap();
        let relocked = |agent: &Agent| {
            agent.keystore.lock("hash".into()).unwrap();
            agent.keystore.finish_unlock("hash", true).unwrap();
        };
        for change in [&locked as &dyn Fn(&Agent), &relocked] {
            assert_eq!(yes_after(change).await, (false, "locked".into(), 0));
        }
    }

    #[tokio::test]
    async fn a_yes_after_a_reload_or_a_clear_is_a_deny() {
        // The store has no file: a reload reads the built-in policy, a
        // new generation.
        let reloaded = |agent: &Agent| assert!(agent.policy.reload().unwrap().changed);
        assert_eq!(
            yes_after(reloaded).await,
            (false, "policy-changed".into(), 0)
        );
        let cleared = |agent: &Agent| {
            agent.grants.clear();
        };
        assert_eq!(
            yes_after(cleared).await,
            (false, "grants-cleared".into(), 0)
        );
    }

    /// The lock an unlock is asked about is no change of its grounds: a
    /// confirmed unlock through a bastion goes ahead.
    #[tokio::test(start_paused = true)]
    async fn a_confirmed_unlock_is_not_refused_for_the_lock_it_undoes() {
        let s = setup(vec![Some(Answer::Allowed)], false);
        s.agent.keystore.lock("hash".into()).unwrap();
        let chain = Chain::default();
        let ctx = context(Some("bastion"));
        let caller = Caller {
            conn: 4,
            context: &ctx,
            chain: &chain,
            login: None,
        };
        let unlock = Op::KeyOp {
            op: KeyOp::Unlock,
            key: None,
            provider: None,
        };
        assert!(authorize(&s.agent, &caller, unlock).await.allowed);
        assert_eq!(s.records.seen(), vec![record("unlock", "allow", "confirmed")]);
    }

    #[tokio::test(start_paused = true)]
    async fn notify_allows_and_tells() {
        let s = setup(vec![], false);
        let verdict = sign_upstream(&s.agent, Some("ci")).await;
        assert!(verdict.allowed);
        verdict.signed();
        assert_eq!(s.desk.notices(), 1);
        assert_eq!(s.desk.asked(), 0);
        assert_eq!(s.records.seen(), vec![record("sign", "allow", "notified")]);
    }

    #[tokio::test(start_paused = true)]
    async fn an_upstream_signature_is_audited_once_with_its_outcome() {
        let s = setup(vec![], false);
        sign_upstream(&s.agent, None)
            .await
            .sign_failed(Reason::UpstreamFailed);
        let verdict = sign_upstream(&s.agent, None).await;
        assert!(
            s.records.seen().len() == 1,
            "an allowed upstream signature waits for the upstream"
        );
        verdict.signed();
        // The connection went away before the upstream answered.
        drop(sign_upstream(&s.agent, None).await);
        let seen = s.records.seen();
        assert_eq!(
            seen,
            vec![
                record("sign", "deny", "upstream-failed"),
                record("sign", "allow", "default:local"),
                record("sign", "deny", "abandoned-after-allow"),
            ]
        );
        assert!(
            s.records.all_upstream(),
            "both marked as upstream"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn key_operations_through_a_bastion_follow_forwarded() {
        let s = setup(vec![Some(Answer::Allowed)], false);
        let chain = Chain::default();
        let ctx = context(Some("bastion"));
        let caller = Caller {
            conn: 3,
            context: &ctx,
            chain: &chain,
            login: None,
        };
        let add = Op::KeyOp {
            op: KeyOp::Add,
            key: Some(("SHA256:key", "me@desk")),
            provider: None,
        };
        assert!(authorize(&s.agent, &caller, add).await.allowed);
        let remove = Op::KeyOp {
            op: KeyOp::Remove,
            key: Some(("SHA256:key", "me@desk")),
            provider: None,
        };
        assert!(!authorize(&s.agent, &caller, remove).await.allowed);
        assert_eq!(s.desk.asked(), 1);
        let seen = s.records.seen();
        assert_eq!(seen.len(), 2);
        assert_eq!(
            (seen[0].1.as_str(), seen[0].2.as_str()),
            ("allow", "confirmed")
        );
        assert_eq!(seen[1].1, "deny");
    }
}

#[cfg(test)]
mod brake_tests {
    //! `[forwarded] brake` in the pipeline: what it turns into a question,
    //! what it leaves alone, and what the record says.
    use super::*;
    use crate::daemon::agent::AgentOptions;
    use crate::policy::store::PolicyStore;
    use crate::testing::fakes::{Records, ScriptedDesk};
    use crate::trust::context::{HopView, RequestClass};
    use crate::trust::peer::Peer;

    const POLICY: &str = r#"
[defaults]
forwarded = "deny"
[forwarded]
brake = { hosts = 1, per = "1m" }
[[rule]]
name = "never through dmz"
via = ["dmz"]
action = "deny"
[[rule]]
name = "tell about ci"
via = ["ci"]
action = "notify"
"#;

    async fn sign_through(agent: &Agent, via: &str) -> Verdict {
        let peer = Arc::new(Peer::with_facts(0, Some(1), Default::default()));
        let mut ctx = RequestContext::of_parts(
            ("SHA256:key", "me@desk"),
            vec![HopView::named(via, true)],
            Destination::NotLogin,
            None,
            Purpose::Other,
            &peer,
        );
        ctx.class = RequestClass::Forwarded;
        let chain = Chain::default();
        let caller = Caller {
            conn: 1,
            context: &ctx,
            chain: &chain,
            login: None,
        };
        let signed = SignedData::parse(b"data");
        authorize(
            agent,
            &caller,
            Op::Sign {
                key: SignKey::Upstream,
                signed: &signed,
                data: b"data",
            },
        )
        .await
    }

    #[tokio::test(start_paused = true)]
    async fn notify_past_the_limit_asks_and_deny_stays_deny_uncounted() {
        let policy = crate::policy::file::parse_str(POLICY, "test policy").unwrap();
        let records = Arc::new(Records::default());
        let desk = ScriptedDesk::new(vec![Some(Answer::Allowed), Some(Answer::Refused)]);
        let agent = Agent::new(
            AgentOptions::new(0),
            PolicyStore::new(None, policy),
            Arc::clone(&records) as Arc<dyn AuditSink>,
        )
        .with_desk(desk.desk());

        // Denied requests through dmz are neither asked nor counted.
        for _ in 0..3 {
            assert!(!sign_through(&agent, "dmz").await.allowed);
        }
        // The first signature through ci (not a login: a destination of
        // its own) is within the limit; the next two are past it.
        sign_through(&agent, "ci").await.signed();
        let asked_yes = sign_through(&agent, "ci").await;
        assert!(asked_yes.allowed);
        asked_yes.signed();
        assert!(!sign_through(&agent, "ci").await.allowed);
        assert_eq!(desk.asked(), 2);
        assert_eq!(desk.notices(), 1);
        let reasons: Vec<String> = records.seen().into_iter().map(|(_, _, r)| r).collect();
        assert_eq!(
            reasons,
            [
                "never through dmz",
                "never through dmz",
                "never through dmz",
                "notified",
                "brake:confirmed",
                "brake:refused"
            ]
        );
    }
}
