//! Putting a decision into effect: allow, deny, notify, or ask (unless a
//! remembered approval covers the request), and a yes counted only while
//! what the decision rested on still holds.

use std::time::Instant;

use tracing::{info, warn};

use crate::confirm::broker::{NotAsked, Origin, Question};
use crate::confirm::{Answer, Prompt};
use crate::daemon::agent::Agent;
use crate::daemon::audit::Reason;
use crate::daemon::one_login::ThisLogin;
use crate::keys::keystore::Identity;
use crate::policy::grants::GrantScope;
use crate::policy::{Action, ConfirmSettings, Decision};
use crate::text::clean;
use crate::trust::context::{HopView, RequestContext};

use super::Caller;

/// What a decision rests on, read before anyone is asked: the policy's
/// generation, the approval store's epoch, the keystore's lock count, and
/// the key itself. A person's answer counts only while all of them still
/// hold ([`Grounds::changed`]); the keystore's lock is never held while
/// asking, so they are read again after the answer.
#[derive(Debug, Clone, Copy)]
pub(super) struct Grounds<'a> {
    policy: u64,
    grants: u64,
    locks: u64,
    /// The key held here that would sign (`None`: an upstream key, a key
    /// operation).
    pub(super) key: Option<&'a Identity>,
    /// The signature is for a login: a certificate past its `valid_before`
    /// may not make it.
    pub(super) login: bool,
}

impl<'a> Grounds<'a> {
    pub(super) fn now(agent: &Agent, policy: u64) -> Grounds<'a> {
        Grounds {
            policy,
            grants: agent.grants().epoch(),
            locks: agent.keystore().locks(),
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
            .keystore()
            .still_holds(self.key, self.locks, Instant::now())
        {
            return Some(Reason::Gone(gone));
        }
        if self.login && self.key.is_some_and(Identity::cert_expired) {
            return Some(Reason::CertExpired);
        }
        if agent.policy_snapshot().0 != self.policy {
            return Some(Reason::PolicyChanged);
        }
        if agent.grants().epoch() != self.grants {
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
pub(super) async fn enforce(
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
            agent.notify(summary, prompt.notice_text());
            return (true, Reason::Notified);
        }
        Action::Confirm => {}
    }
    let scope = GrantScope::of(ctx);
    // The policy never sets `remember` for a login nobody verified, so such
    // a request neither finds nor leaves a grant.
    if decision.remember.is_some()
        && agent
            .grants()
            .find(&scope, &decision.rule, Instant::now())
            .is_some()
    {
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
    // On the heap: a question is rare and its future large, and every
    // connection's task would otherwise carry room for it.
    let answer = Box::pin(ask(agent, caller, question, prompt, settings)).await;
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
        let Some(id) =
            agent
                .grants()
                .add_if(grounds.grants, scope, hosts, &decision.rule, ttl, now)
        else {
            // Cleared between the check above and now.
            warn!(
                conn = caller.conn,
                "denied: remembered approvals were cleared while asking"
            );
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
    let chain = clean(&prompt.chain_names.join(">"), 200);
    match agent.ask(question, prompt, settings).await {
        Ok(answer) => {
            match &answer {
                Answer::Unavailable(why) => {
                    if agent.should_warn_unavailable() {
                        warn!(
                            conn = caller.conn,
                            "no way to ask, denying: {why}. Fix: run a notification daemon on the session bus, \
                             {}, or set [confirm] method = \"command\"",
                            crate::keys::askpass_env::SETUP_HINT
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
                agent.notify(
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
