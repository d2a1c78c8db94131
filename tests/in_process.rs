//! The agent served in this process on a temporary socket: protocol abuse,
//! listing, lock, remembered approvals and key expiry, with no system
//! packages, no root and no other program. Questions go to a scripted desk.
//!
//! `cargo test --lib --test in_process` is the quick loop; `scripts/test.sh`
//! runs everything, with the real OpenSSH programs.

mod common;

use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt as _;
use tokio::net::UnixStream;

use common::served::{connect, ed25519_key, reply, request};
use common::{session_bind_request, sign_request};
use hopward::confirm::Answer;
use hopward::policy::store::PolicyStore;
use hopward::ssh::key::ed25519_public;
use hopward::ssh::wire::put_string;
use hopward::testing::fakes::ScriptedDesk;

const FAILURE: u8 = 5;
const SUCCESS: u8 = 6;

const POLICY: &str = r#"
[defaults]
local = "allow"
forwarded = "confirm"
[[rule]]
name = "remember the bastion"
via = ["*"]
action = "confirm"
remember = "10m"
"#;

/// A served agent; stops (and removes its socket) when dropped.
type Served = common::served::Served<ScriptedDesk>;

fn start(answers: Vec<Answer>) -> Served {
    let policy = hopward::policy::file::parse_str(POLICY, "test policy").unwrap();
    let desk = ScriptedDesk::new(answers.into_iter().map(Some));
    let handle = desk.desk();
    common::served::serve_in_process(
        tempfile::tempdir().unwrap(),
        PolicyStore::new(None, policy),
        desk,
        handle,
    )
}

async fn send_raw(stream: &mut UnixStream, bytes: &[u8]) {
    stream.write_all(bytes).await.unwrap();
}

/// The key blobs of an identities answer.
async fn listed(stream: &mut UnixStream) -> Vec<Vec<u8>> {
    let answer = request(stream, &[11]).await;
    assert_eq!(answer[0], 12, "identities answer");
    let mut reader = hopward::ssh::wire::Reader::new(&answer[1..]);
    let count = reader.u32("count").unwrap();
    (0..count)
        .map(|_| {
            let blob = reader.string("blob").unwrap().to_vec();
            reader.string("comment").unwrap();
            blob
        })
        .collect()
}

#[tokio::test]
async fn bad_input_gets_a_failure_and_leaves_other_connections_alone() {
    let served = start(vec![]);
    let mut bystander = connect(&served).await;
    let (blob, add) = ed25519_key(1, None);
    assert_eq!(request(&mut bystander, &add).await, [SUCCESS]);

    let mut abuser = connect(&served).await;
    // An unknown type, a truncated add, trailing bytes.
    assert_eq!(request(&mut abuser, &[99]).await, [FAILURE]);
    assert_eq!(request(&mut abuser, &add[..add.len() - 3]).await, [FAILURE]);
    let mut trailing = sign_request(&blob, b"data");
    trailing.push(0);
    assert_eq!(request(&mut abuser, &trailing).await, [FAILURE]);
    // The same connection still works after a failure.
    assert_eq!(listed(&mut abuser).await, vec![blob.clone()]);
    // A frame longer than the protocol allows, or an empty one, closes
    // only that connection.
    send_raw(&mut abuser, &(1u32 << 30).to_be_bytes()).await;
    assert_eq!(reply(&mut abuser).await, None, "closed");
    let mut empty = connect(&served).await;
    send_raw(&mut empty, &0u32.to_be_bytes()).await;
    assert_eq!(reply(&mut empty).await, None, "closed");

    assert_eq!(listed(&mut bystander).await, vec![blob.clone()]);
    let signed = request(&mut bystander, &sign_request(&blob, b"data")).await;
    assert_eq!(signed[0], 14, "sign response");
}

/// What a hostile hop can send in place of a bind: a host's signature with
/// one bit changed. It poisons the connection, is audited once however
/// often it is sent again, and nothing needing a destination is allowed on
/// that connection afterwards.
#[tokio::test]
async fn a_forged_bind_poisons_the_connection_and_is_audited_once() {
    let served = start(vec![]);
    let mut owner = connect(&served).await;
    let (blob, add) = ed25519_key(1, None);
    assert_eq!(request(&mut owner, &add).await, [SUCCESS]);

    let mut hostile = connect(&served).await;
    let mut forged = session_bind_request(7, b"session seen by the host", true);
    // The last byte of the host's signature (the flag byte follows it).
    let last = forged.len() - 2;
    forged[last] ^= 1;
    const EXTENSION_FAILURE: u8 = 28;
    assert_eq!(request(&mut hostile, &forged).await, [EXTENSION_FAILURE]);
    assert_eq!(request(&mut hostile, &forged).await, [EXTENSION_FAILURE]);
    // A valid bind cannot clean the connection.
    let valid = session_bind_request(7, b"another session", true);
    assert_eq!(request(&mut hostile, &valid).await, [EXTENSION_FAILURE]);
    assert_eq!(
        request(&mut hostile, &sign_request(&blob, b"data")).await,
        [FAILURE]
    );
    let seen = served.records.seen();
    let binds: Vec<_> = seen.iter().filter(|(event, ..)| event == "bind").collect();
    assert_eq!(
        binds,
        [&(
            "bind".to_string(),
            "deny".to_string(),
            "bind-bad-signature".to_string()
        )]
    );
    assert!(
        seen.iter()
            .any(|(event, decision, _)| event == "sign" && decision == "deny"),
        "{seen:?}"
    );
    // Other connections are untouched.
    let signed = request(&mut owner, &sign_request(&blob, b"data")).await;
    assert_eq!(signed[0], 14, "sign response");

    // With forwarded use locked the bind is refused before anything else
    // looks at it, and the forgery is still on record.
    served.agent.lock_forwarded();
    let mut while_locked = connect(&served).await;
    assert_eq!(request(&mut while_locked, &forged).await, [FAILURE]);
    let binds = served
        .records
        .seen()
        .into_iter()
        .filter(|(event, ..)| event == "bind")
        .count();
    assert_eq!(binds, 2, "{:?}", served.records.seen());
}

#[tokio::test]
async fn keys_are_listed_signed_and_removed() {
    let served = start(vec![]);
    let mut c = connect(&served).await;
    assert!(listed(&mut c).await.is_empty());
    let (first, add_first) = ed25519_key(1, None);
    let (second, add_second) = ed25519_key(2, None);
    assert_eq!(request(&mut c, &add_first).await, [SUCCESS]);
    assert_eq!(request(&mut c, &add_second).await, [SUCCESS]);
    assert_eq!(listed(&mut c).await, vec![first.clone(), second.clone()]);

    let signed = request(&mut c, &sign_request(&second, b"to be signed")).await;
    assert_eq!(signed[0], 14);
    let mut reader = hopward::ssh::wire::Reader::new(&signed[1..]);
    let mut inner = hopward::ssh::wire::Reader::new(reader.string("signature").unwrap());
    assert_eq!(inner.string("algorithm").unwrap(), b"ssh-ed25519");
    let signature = inner.string("signature").unwrap();
    let public = aws_lc_rs::signature::UnparsedPublicKey::new(
        &aws_lc_rs::signature::ED25519,
        ed25519_public(&[2; 32]),
    );
    assert!(public.verify(b"to be signed", signature).is_ok());

    let mut remove = vec![18];
    put_string(&mut remove, &first);
    assert_eq!(request(&mut c, &remove).await, [SUCCESS]);
    assert_eq!(request(&mut c, &remove).await, [FAILURE], "already gone");
    assert_eq!(listed(&mut c).await, vec![second.clone()]);
    assert_eq!(request(&mut c, &[19]).await, [SUCCESS]);
    assert!(listed(&mut c).await.is_empty());
    assert_eq!(
        request(&mut c, &sign_request(&second, b"x")).await,
        [FAILURE]
    );
}

#[tokio::test]
async fn a_locked_agent_lists_nothing_and_signs_nothing_until_unlocked() {
    let served = start(vec![]);
    let mut c = connect(&served).await;
    let (blob, add) = ed25519_key(3, None);
    assert_eq!(request(&mut c, &add).await, [SUCCESS]);
    let lock = |passphrase: &[u8], kind: u8| {
        let mut body = vec![kind];
        put_string(&mut body, passphrase);
        body
    };
    assert_eq!(request(&mut c, &lock(b"secret", 22)).await, [SUCCESS]);
    assert!(listed(&mut c).await.is_empty());
    assert_eq!(request(&mut c, &sign_request(&blob, b"x")).await, [FAILURE]);
    assert_eq!(
        request(&mut c, &lock(b"again", 22)).await,
        [FAILURE],
        "already locked"
    );
    assert_eq!(request(&mut c, &lock(b"wrong", 23)).await, [FAILURE]);
    assert_eq!(request(&mut c, &lock(b"secret", 23)).await, [SUCCESS]);
    assert_eq!(listed(&mut c).await, vec![blob.clone()]);
    assert_eq!(request(&mut c, &sign_request(&blob, b"x")).await[0], 14);
}

#[tokio::test]
async fn a_remembered_approval_covers_the_same_chain_only() {
    let served = start(vec![Answer::AllowedRemember, Answer::Refused]);
    let mut local = connect(&served).await;
    let (blob, add) = ed25519_key(4, None);
    assert_eq!(request(&mut local, &add).await, [SUCCESS]);

    let through = |host: u8| {
        let served = &served;
        async move {
            let mut c = connect(served).await;
            let sid = format!("sid-{host}");
            assert_eq!(
                request(&mut c, &session_bind_request(host, sid.as_bytes(), true)).await,
                [SUCCESS]
            );
            c
        }
    };
    let mut first = through(10).await;
    assert_eq!(request(&mut first, &sign_request(&blob, b"a")).await[0], 14);
    // A new connection through the same host: remembered, not asked.
    let mut again = through(10).await;
    assert_eq!(request(&mut again, &sign_request(&blob, b"b")).await[0], 14);
    assert_eq!(served.desk.asked(), 1);
    // Through another host it is asked again (and refused).
    let mut other = through(11).await;
    assert_eq!(
        request(&mut other, &sign_request(&blob, b"c")).await,
        [FAILURE]
    );
    assert_eq!(served.desk.asked(), 2);
    // Local use (the add included) is allowed without asking.
    assert_eq!(
        served
            .records
            .seen()
            .into_iter()
            .map(|(_, _, reason)| reason)
            .collect::<Vec<_>>(),
        ["default:local", "confirmed", "remembered", "refused"]
    );
}

#[tokio::test]
async fn a_key_added_with_a_lifetime_is_gone_after_it() {
    let served = start(vec![]);
    let mut c = connect(&served).await;
    let (short, add_short) = ed25519_key(5, Some(1));
    let (long, add_long) = ed25519_key(6, None);
    assert_eq!(request(&mut c, &add_short).await, [SUCCESS]);
    assert_eq!(request(&mut c, &add_long).await, [SUCCESS]);
    assert_eq!(listed(&mut c).await, vec![short.clone(), long.clone()]);
    // Polled with a deadline: the lifetime is one second.
    let deadline = Instant::now() + Duration::from_secs(10);
    while listed(&mut c).await.contains(&short) {
        assert!(Instant::now() < deadline, "the key outlived its lifetime");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(listed(&mut c).await, vec![long]);
    assert_eq!(
        request(&mut c, &sign_request(&short, b"x")).await,
        [FAILURE]
    );
}

#[tokio::test]
async fn stopping_the_server_removes_its_socket() {
    let mut served = start(vec![]);
    let socket = served.socket.clone();
    let _dir = served.dir.take();
    let mut c = connect(&served).await;
    assert!(listed(&mut c).await.is_empty());
    drop(served);
    let deadline = Instant::now() + Duration::from_secs(10);
    while socket.exists() {
        assert!(Instant::now() < deadline, "socket still there");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
