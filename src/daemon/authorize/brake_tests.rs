//! `[forwarded] brake` in the pipeline: what it turns into a question,
//! what it leaves alone, and what the record says.
use super::*;
use crate::confirm::Answer;
use crate::daemon::agent::AgentOptions;
use crate::daemon::audit::AuditSink;
use crate::policy::store::PolicyStore;
use crate::testing::fakes::{Records, ScriptedDesk};
use crate::trust::context::Destination;
use crate::trust::context::{HopView, RequestClass};
use crate::trust::peer::Peer;
use std::sync::Arc;

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
