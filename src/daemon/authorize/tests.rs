//! The pipeline's outcomes, with a scripted desk and paused time: no
//! socket, no D-Bus, no sshd.
use std::time::Duration;

use super::*;
use crate::confirm::Answer;
use crate::daemon::agent::AgentOptions;
use crate::daemon::audit::AuditSink;
use crate::daemon::one_login::SAME_LOGIN;
use crate::keys::keystore::Constraints;
use crate::policy::store::PolicyStore;
use crate::protocol::request::{NewKey, SecretParts};
use crate::ssh::key::{PublicKey, PublicParts};
use crate::testing::fakes::{Records, ScriptedDesk};
use crate::trust::context::Destination;
use crate::trust::context::{HopView, RequestClass};
use crate::trust::peer::Peer;
use std::sync::Arc;

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
    let s = setup(
        vec![Some(Answer::Failed("killed by signal 11".into()))],
        false,
    );
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
        sign(
            &agent,
            &context(Some("bastion")),
            SignKey::Upstream,
            b"data",
        )
        .await
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
    assert_eq!(
        s.desk.asked(),
        2,
        "the second key of the first login is not asked"
    );
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
    agent.add_key(identity).unwrap();
    let held = agent.key(&blob).unwrap();
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
    let grants = agent.grants().list(Instant::now()).len();
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
        let blob = agent.keys_now()[0].blob().to_vec();
        assert!(agent.keystore().remove(&blob));
    };
    let cleared = |agent: &Agent| {
        agent.keystore().clear();
    };
    let all = |agent: &Agent| {
        agent.keystore().remove_all().unwrap();
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
    let locked = |agent: &Agent| agent.keystore().lock("hash".into()).unwrap();
    let relocked = |agent: &Agent| {
        agent.keystore().lock("hash".into()).unwrap();
        agent.keystore().finish_unlock("hash", true).unwrap();
    };
    for change in [&locked as &dyn Fn(&Agent), &relocked] {
        assert_eq!(yes_after(change).await, (false, "locked".into(), 0));
    }
}

#[tokio::test]
async fn a_yes_after_a_reload_or_a_clear_is_a_deny() {
    // The store has no file: a reload reads the built-in policy, a
    // new generation.
    let reloaded = |agent: &Agent| assert!(agent.policy_store().reload().unwrap().changed);
    assert_eq!(
        yes_after(reloaded).await,
        (false, "policy-changed".into(), 0)
    );
    let cleared = |agent: &Agent| {
        agent.grants().clear();
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
    s.agent.keystore().lock("hash".into()).unwrap();
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
    assert_eq!(
        s.records.seen(),
        vec![record("unlock", "allow", "confirmed")]
    );
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
    assert!(s.records.all_upstream(), "both marked as upstream");
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
