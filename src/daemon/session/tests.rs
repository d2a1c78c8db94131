//! Each handler on a connection of its own, with the agent's fakes (a
//! scripted desk, an audit sink that keeps records) and a socket pair for
//! the peer: the reply each request gets, and the audit record each
//! refusal owes, or that it owes none.

use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Instant;

use super::Session;
use crate::daemon::agent::{Agent, AgentOptions, MAX_CONNECTIONS_PER_HOP};
use crate::daemon::audit::AuditSink;
use crate::keys::keystore::{Constraints, Identity};
use crate::policy::store::PolicyStore;
use crate::protocol::reply::{
    Reply, SSH_AGENT_EXTENSION_RESPONSE, SSH_AGENT_IDENTITIES_ANSWER, SSH_AGENT_SIGN_RESPONSE,
    SSH_AGENT_SUCCESS,
};
use crate::protocol::request::{Constraint, NewKey, Passphrase, Request, SecretParts};
use crate::ssh::key::{PublicKey, PublicParts};
use crate::ssh::wire::put_string;
use crate::testing::fakes::{Records, ScriptedDesk};
use crate::trust::process::Requester;

/// Local use is allowed; through a forwarded agent nothing is, and no rule
/// could allow a key there (so a forwarded connection sees none).
const POLICY: &str = r#"
[defaults]
local = "allow"
forwarded = "deny"
"#;

struct Setup {
    agent: Arc<Agent>,
    records: Arc<Records>,
    /// Keeps the peer's end of the socket open.
    _ends: (UnixStream, UnixStream),
}

fn setup_with(options: AgentOptions) -> Setup {
    let policy = crate::policy::file::parse_str(POLICY, "test policy").unwrap();
    let records = Arc::new(Records::default());
    let agent = Agent::new(
        options,
        PolicyStore::new(None, policy),
        Arc::clone(&records) as Arc<dyn AuditSink>,
    )
    .with_desk(ScriptedDesk::new([]).desk());
    Setup {
        agent: Arc::new(agent),
        records,
        _ends: UnixStream::pair().unwrap(),
    }
}

fn setup() -> Setup {
    setup_with(AgentOptions::new(0))
}

impl Setup {
    /// A new connection from a process that is not this one (so the
    /// upstream may be used on it), owned by root (so control may be).
    fn session(&self) -> Session {
        let mut peer = Requester::accept(&self._ends.0).unwrap();
        peer.uid = 0;
        peer.pid = Some(u32::MAX);
        let id = self.agent.connection_id();
        self.agent.register(id);
        Session::new(Arc::clone(&self.agent), peer, id)
    }

    /// A connection through a forwarding hop (the bastion's bind).
    async fn forwarded(&self) -> Session {
        let mut session = self.session();
        let reply = session.dispatch(bind_request(1, true)).await;
        assert_eq!(reply, Reply::Success);
        session
    }

    /// Adds the test key to the agent; its public blob.
    fn hold_key(&self) -> Vec<u8> {
        let (key, blob) = new_key();
        let identity = Identity::new(&key, Constraints::default(), Instant::now()).unwrap();
        self.agent.add_key(identity).unwrap();
        blob
    }

    fn seen(&self) -> Vec<(String, String, String)> {
        self.records.seen()
    }

    /// The refusals recorded so far.
    fn denied(&self) -> Vec<(String, String, String)> {
        let mut seen = self.seen();
        seen.retain(|(_, decision, _)| decision == "deny");
        seen
    }
}

const SEED: [u8; 32] = [7; 32];

fn new_key() -> (NewKey<'static>, Vec<u8>) {
    let parts = PublicParts::Ed25519(crate::ssh::key::ed25519_public(&SEED));
    let blob = parts.blob();
    let key = NewKey {
        public: PublicKey {
            blob: blob.clone(),
            parts,
            is_cert: false,
        },
        secret: SecretParts::Ed25519(&SEED),
        comment: "me@desk".into(),
    };
    (key, blob)
}

/// The body of a `session-bind@openssh.com` the host key made from
/// `[host_seed; 32]` signed, as an sshd host key does in key exchange.
fn bind_body(host_seed: u8, forwarding: bool) -> &'static [u8] {
    use crate::keys::sign::SigningKey;
    let seed = [host_seed; 32];
    let public = PublicParts::Ed25519(crate::ssh::key::ed25519_public(&seed));
    let sid = [host_seed; 32];
    let sig = SigningKey::new(&public, &SecretParts::Ed25519(&seed))
        .unwrap()
        .sign(&sid, 0)
        .unwrap();
    let mut sig_blob = Vec::new();
    put_string(&mut sig_blob, sig.algorithm.as_bytes());
    put_string(&mut sig_blob, &sig.blob);
    let mut body = Vec::new();
    put_string(&mut body, &public.blob());
    put_string(&mut body, &sid);
    put_string(&mut body, &sig_blob);
    body.push(u8::from(forwarding));
    Vec::leak(body)
}

fn bind_request(host_seed: u8, forwarding: bool) -> Request<'static> {
    Request::Extension {
        name: "session-bind@openssh.com",
        body: bind_body(host_seed, forwarding),
    }
}

/// A bind that does not parse: it poisons the connection.
fn bad_bind() -> Request<'static> {
    Request::Extension {
        name: "session-bind@openssh.com",
        body: b"\0\0\0\x01x",
    }
}

fn sign_request(blob: &[u8]) -> Request<'_> {
    Request::Sign {
        key_blob: blob,
        data: b"data to sign",
        flags: 0,
    }
}

fn record(event: &str, decision: &str, reason: &str) -> (String, String, String) {
    (event.into(), decision.into(), reason.into())
}

fn locked(event: &str) -> (String, String, String) {
    record(event, "deny", "forwarded-locked")
}

#[tokio::test]
async fn list_shows_held_keys_locally_and_hides_them_through_a_forwarded_agent() {
    let s = setup();
    let blob = s.hold_key();
    let reply = s.session().dispatch(Request::ListIdentities).await;
    let Reply::Encoded(body) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(body[0], SSH_AGENT_IDENTITIES_ANSWER);
    assert_eq!(body[1..5], 1u32.to_be_bytes());
    assert!(body.windows(blob.len()).any(|w| w == blob));
    assert!(s.seen().is_empty());

    let reply = s.forwarded().await.dispatch(Request::ListIdentities).await;
    assert_eq!(
        reply,
        crate::protocol::reply::identities_answer(std::iter::empty())
    );
    // A key the policy hides through a forwarded agent is audited.
    assert_eq!(s.seen(), vec![record("list", "deny", "default:forwarded")]);
}

#[tokio::test]
async fn every_request_refused_while_forwarded_use_is_locked_is_audited() {
    let s = setup();
    let blob = s.hold_key();
    let mut forwarded = s.forwarded().await;
    s.agent.lock_forwarded();
    // A listing gets an empty answer, as from an agent with no keys.
    assert_eq!(
        forwarded.dispatch(Request::ListIdentities).await,
        crate::protocol::reply::identities_answer(std::iter::empty())
    );
    assert_eq!(
        forwarded.dispatch(sign_request(&blob)).await,
        Reply::Failure
    );
    // Beyond the connection's first refusal: each is recorded.
    assert_eq!(
        forwarded.dispatch(Request::ListIdentities).await,
        crate::protocol::reply::identities_answer(std::iter::empty())
    );
    assert_eq!(forwarded.dispatch(Request::RemoveAll).await, Reply::Failure);
    assert_eq!(
        forwarded.dispatch(bind_request(2, false)).await,
        Reply::Failure
    );
    assert_eq!(
        s.seen(),
        vec![
            locked("list"),
            locked("sign"),
            locked("list"),
            locked("remove_all"),
            locked("bind"),
        ]
    );
    // This machine's own connections are not locked, nor audited.
    assert_eq!(
        s.session().dispatch(Request::RemoveAll).await,
        Reply::Success
    );
    assert_eq!(s.denied().len(), 5);
}

#[tokio::test]
async fn a_bind_locked_out_is_audited_once_and_one_that_poisons_keeps_its_own_record() {
    let s = setup();
    s.agent.lock_forwarded();
    // The bastion's bind: the connection is forwarded once it is bound.
    let mut session = s.session();
    assert_eq!(
        session.dispatch(bind_request(1, true)).await,
        Reply::Failure
    );
    assert_eq!(s.seen(), vec![locked("bind")]);
    // A bind that poisons: its own record, not a second one for the lock.
    let mut poisoned = s.session();
    assert_eq!(poisoned.dispatch(bad_bind()).await, Reply::Failure);
    assert_eq!(
        s.seen(),
        vec![locked("bind"), record("bind", "deny", "bind-malformed")]
    );
}

#[tokio::test]
async fn bind_grows_the_chain_and_a_bad_one_poisons_the_connection() {
    let s = setup();
    let mut session = s.session();
    assert_eq!(
        session.dispatch(bind_request(1, true)).await,
        Reply::Success
    );
    assert_eq!(session.chain.hops().len(), 1);
    assert!(s.seen().is_empty());
    assert_eq!(session.dispatch(bad_bind()).await, Reply::ExtensionFailure);
    assert!(session.chain.is_poisoned());
    assert_eq!(s.seen(), vec![record("bind", "deny", "bind-malformed")]);
    // Later binds on it add no record.
    assert_eq!(session.dispatch(bad_bind()).await, Reply::ExtensionFailure);
    assert_eq!(s.seen().len(), 1);
}

#[tokio::test]
async fn a_bastion_over_its_connection_limit_is_refused_audited_and_closed() {
    let s = setup();
    let bastion = {
        let mut probe = s.session();
        assert_eq!(probe.dispatch(bind_request(1, true)).await, Reply::Success);
        probe.chain.hops()[0].fingerprint()
    };
    for _ in 1..MAX_CONNECTIONS_PER_HOP {
        let id = s.agent.connection_id();
        s.agent.register(id);
        s.agent.claim_first_hop(id, &bastion).unwrap();
    }
    let mut session = s.session();
    assert_eq!(
        session.dispatch(bind_request(1, true)).await,
        Reply::Failure
    );
    assert!(session.closing());
    // Every later request is refused, with no record of its own.
    assert_eq!(
        session.dispatch(Request::ListIdentities).await,
        Reply::Failure
    );
    assert_eq!(
        s.seen(),
        vec![record("connection", "deny", "over-128-per-first-hop")]
    );
}

#[tokio::test]
async fn sign_with_a_held_key_is_decided_then_made() {
    let s = setup();
    let blob = s.hold_key();
    let reply = s.session().dispatch(sign_request(&blob)).await;
    let Reply::Encoded(body) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(body[0], SSH_AGENT_SIGN_RESPONSE);
    assert_eq!(s.seen(), vec![record("sign", "allow", "default:local")]);
    // Through a forwarded agent the policy refuses it, and audits that once.
    let reply = s.forwarded().await.dispatch(sign_request(&blob)).await;
    assert_eq!(reply, Reply::Failure);
    assert_eq!(
        s.seen()[1],
        record("sign", "deny", "default:forwarded_unverified")
    );
    assert_eq!(s.seen().len(), 2);
}

#[tokio::test]
async fn sign_with_a_key_held_nowhere_is_refused_without_a_record() {
    let s = setup();
    let (_, blob) = new_key();
    assert_eq!(
        s.session().dispatch(sign_request(&blob)).await,
        Reply::Failure
    );
    assert!(s.seen().is_empty());
}

#[tokio::test]
async fn a_forwarded_sign_refused_because_the_upstream_is_out_of_reach_is_audited() {
    let mut options = AgentOptions::new(0);
    // Never reached: the connection is barred before the upstream is asked.
    options.upstream = Some("/nonexistent/upstream.sock".into());
    let s = setup_with(options);
    let (_, blob) = new_key();
    let mut poisoned = s.forwarded().await;
    assert_eq!(poisoned.dispatch(bad_bind()).await, Reply::ExtensionFailure);
    assert_eq!(poisoned.dispatch(sign_request(&blob)).await, Reply::Failure);
    assert_eq!(
        s.seen(),
        vec![
            record("bind", "deny", "bind-malformed"),
            record("sign", "deny", "bind-refused"),
        ]
    );

    // This machine's own connection, while the agent is locked: refused,
    // not audited (it is no forwarded peer's refusal).
    let mut local = s.session();
    assert_eq!(
        local.dispatch(Request::Lock(Passphrase(b"pw"))).await,
        Reply::Success
    );
    assert_eq!(local.dispatch(sign_request(&blob)).await, Reply::Failure);
    assert_eq!(s.denied().len(), 2, "{:?}", s.seen());
}

#[tokio::test]
async fn add_takes_a_key_and_refuses_a_constraint_given_twice() {
    let s = setup();
    let (key, blob) = new_key();
    let reply = s
        .session()
        .dispatch(Request::Add {
            key,
            constraints: vec![Constraint::Confirm],
        })
        .await;
    assert_eq!(reply, Reply::Success);
    let held = s.agent.key(&blob).unwrap();
    assert!(held.constraints.confirm);

    let (key, _) = new_key();
    let reply = s
        .session()
        .dispatch(Request::Add {
            key,
            constraints: vec![Constraint::Lifetime(5), Constraint::Lifetime(6)],
        })
        .await;
    assert_eq!(reply, Reply::Failure);
    assert!(s.denied().is_empty(), "{:?}", s.seen());
}

#[tokio::test]
async fn a_provider_named_through_a_forwarded_agent_is_refused_and_audited() {
    let s = setup();
    let reply = s
        .forwarded()
        .await
        .dispatch(Request::AddSmartcard {
            provider: "/usr/lib/x86_64-linux-gnu/opensc-pkcs11.so",
            pin: Passphrase(b"1234"),
            constraints: Vec::new(),
        })
        .await;
    assert_eq!(reply, Reply::Failure);
    assert_eq!(s.seen(), vec![record("add", "deny", "provider-remote")]);
}

#[tokio::test]
async fn smartcard_remove_of_a_provider_never_loaded_is_refused_quietly() {
    let s = setup();
    let reply = s
        .session()
        .dispatch(Request::RemoveSmartcard { provider: "/" })
        .await;
    assert_eq!(reply, Reply::Failure);
    let reply = s
        .session()
        .dispatch(Request::RemoveSmartcard {
            provider: "/nonexistent/provider.so",
        })
        .await;
    assert_eq!(reply, Reply::Failure);
    assert!(s.seen().is_empty());
}

#[tokio::test]
async fn remove_drops_a_key_locally_and_a_forwarded_remove_of_a_hidden_key_is_audited() {
    let s = setup();
    let blob = s.hold_key();
    let reply = s
        .forwarded()
        .await
        .dispatch(Request::Remove { key_blob: &blob })
        .await;
    assert_eq!(reply, Reply::Failure);
    assert!(s.agent.key(&blob).is_some());
    assert_eq!(
        s.seen(),
        vec![record("remove", "deny", "default:forwarded")]
    );

    let mut local = s.session();
    let reply = local.dispatch(Request::Remove { key_blob: &blob }).await;
    assert_eq!(reply, Reply::Success);
    assert!(s.agent.key(&blob).is_none());
    // A key no longer held: refused, as ssh-agent does, without a record.
    let reply = local.dispatch(Request::Remove { key_blob: &blob }).await;
    assert_eq!(reply, Reply::Failure);
    assert_eq!(s.denied().len(), 1, "{:?}", s.seen());
}

#[tokio::test]
async fn remove_all_empties_the_agent() {
    let s = setup();
    let blob = s.hold_key();
    assert_eq!(
        s.session().dispatch(Request::RemoveAll).await,
        Reply::Success
    );
    assert!(s.agent.key(&blob).is_none());
}

#[tokio::test(start_paused = true)]
async fn lock_and_unlock_take_the_passphrase_and_refuse_the_rest() {
    let s = setup();
    let mut session = s.session();
    // OpenSSH refuses an empty lock passphrase.
    assert_eq!(
        session.dispatch(Request::Lock(Passphrase(b""))).await,
        Reply::Failure
    );
    assert_eq!(
        session.dispatch(Request::Lock(Passphrase(b"pw"))).await,
        Reply::Success
    );
    assert!(s.agent.keys_locked());
    assert_eq!(
        session.dispatch(Request::Lock(Passphrase(b"pw"))).await,
        Reply::Failure
    );
    assert_eq!(
        session
            .dispatch(Request::Unlock(Passphrase(b"wrong")))
            .await,
        Reply::Failure
    );
    assert!(s.agent.keys_locked());
    assert_eq!(
        session.dispatch(Request::Unlock(Passphrase(b"pw"))).await,
        Reply::Success
    );
    assert!(!s.agent.keys_locked());
    assert_eq!(
        session.dispatch(Request::Unlock(Passphrase(b"pw"))).await,
        Reply::Failure
    );
    assert!(s.denied().is_empty(), "{:?}", s.seen());
}

#[tokio::test]
async fn control_answers_only_a_local_connection() {
    let s = setup();
    let mut body = Vec::new();
    put_string(&mut body, br#"{"op":"unlock-forwarded"}"#);
    let reply = s
        .session()
        .dispatch(Request::Extension {
            name: crate::daemon::control::EXTENSION,
            body: &body,
        })
        .await;
    let Reply::Encoded(answer) = reply else {
        panic!("{reply:?}")
    };
    assert_eq!(answer[0], SSH_AGENT_SUCCESS);
    let reply = s
        .forwarded()
        .await
        .dispatch(Request::Extension {
            name: crate::daemon::control::EXTENSION,
            body: &body,
        })
        .await;
    assert_eq!(reply, Reply::Failure);
    assert!(s.seen().is_empty());
}

#[tokio::test]
async fn query_lists_control_only_where_it_may_be_used_and_nothing_while_locked() {
    let s = setup();
    let query = || Request::Extension {
        name: "query",
        body: b"",
    };
    let shows_control = |reply: &Reply| {
        let Reply::Encoded(body) = reply else {
            panic!("{reply:?}")
        };
        assert_eq!(body[0], SSH_AGENT_EXTENSION_RESPONSE);
        let name = crate::daemon::control::EXTENSION.as_bytes();
        body.windows(name.len()).any(|w| w == name)
    };
    assert!(shows_control(&s.session().dispatch(query()).await));
    assert!(!shows_control(&s.forwarded().await.dispatch(query()).await));
    s.agent
        .keystore()
        .lock(crate::keys::keystore::hash_passphrase(b"pw").unwrap())
        .unwrap();
    assert_eq!(s.session().dispatch(query()).await, Reply::Failure);
}

#[tokio::test]
async fn an_unknown_extension_is_refused_without_a_record() {
    let s = setup();
    let reply = s
        .forwarded()
        .await
        .dispatch(Request::Extension {
            name: "nobody@example.com",
            body: b"",
        })
        .await;
    assert_eq!(reply, Reply::Failure);
    assert!(s.seen().is_empty());
}

/// The count of open connections follows register and unregister; an id
/// registered twice counts once, and one unregistered twice (or never
/// registered) does not take it below the connections still open.
#[test]
fn open_connections_count_what_is_registered() {
    let s = setup();
    assert_eq!(s.agent.open_connections(), 0);
    s.agent.register(1);
    s.agent.register(2);
    s.agent.register(2);
    assert_eq!(s.agent.open_connections(), 2);
    s.agent.unregister(1);
    s.agent.unregister(1);
    s.agent.unregister(99);
    assert_eq!(s.agent.open_connections(), 1);
    s.agent.unregister(2);
    assert_eq!(s.agent.open_connections(), 0);
}
