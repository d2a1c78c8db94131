//! Root on a bastion trying to make the agent hold memory: binds carrying
//! huge host certificates from a CA of its own, and many connections
//! through the same bastion. Binds are made by hand, as in
//! `hostile_binds.rs`: this machine's ssh binds each forwarded connection
//! to the bastion first, then the attacker writes what it likes.

mod common;

use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;
use hopward::keys::sign::SigningKey;
use hopward::protocol::request::SecretParts;
use hopward::ssh::key::{PublicParts, ed25519_public};
use hopward::ssh::wire::put_u32;

const SUCCESS: u8 = 6;
const FAILURE: u8 = 5;
const IDENTITIES_ANSWER: u8 = 12;

/// Host key seeds, as `session_bind_request` makes them.
const BASTION: u8 = 1;
const OTHER_BASTION: u8 = 2;
const TARGET: u8 = 3;
/// The attacker's own certificate authority.
const ROGUE_CA: u8 = 60;

/// The open connections one first forwarding hop may hold.
const PER_HOP: usize = 128;

/// `string alg || string sig` by the Ed25519 key made from `[seed; 32]`.
fn sign(seed: u8, data: &[u8]) -> Vec<u8> {
    let seed = [seed; 32];
    let public = PublicParts::Ed25519(ed25519_public(&seed));
    let sig = SigningKey::new(&public, &SecretParts::Ed25519(&seed))
        .unwrap()
        .sign(data, 0)
        .unwrap();
    let mut out = Vec::new();
    put_string(&mut out, sig.algorithm.as_bytes());
    put_string(&mut out, &sig.blob);
    out
}

/// A host certificate for the key of `host`, signed by `ca`, valid for
/// ever, naming `principals`.
fn host_cert(host: u8, ca: u8, principals: &[&[u8]]) -> Vec<u8> {
    let mut c = Vec::new();
    put_string(&mut c, b"ssh-ed25519-cert-v01@openssh.com");
    put_string(&mut c, &[7; 32]);
    put_string(&mut c, &ed25519_public(&[host; 32]));
    c.extend_from_slice(&1u64.to_be_bytes());
    put_u32(&mut c, 2); // host certificate
    put_string(&mut c, b"rogue host");
    let mut list = Vec::new();
    for p in principals {
        put_string(&mut list, p);
    }
    put_string(&mut c, &list);
    c.extend_from_slice(&0u64.to_be_bytes());
    c.extend_from_slice(&u64::MAX.to_be_bytes());
    put_string(&mut c, b"");
    put_string(&mut c, b"");
    put_string(&mut c, b"");
    put_string(
        &mut c,
        &PublicParts::Ed25519(ed25519_public(&[ca; 32])).blob(),
    );
    let sig = sign(ca, &c);
    put_string(&mut c, &sig);
    c
}

/// A forwarding bind of a host certificate, signed by the certified key.
fn cert_bind(cert: &[u8], host: u8, sid: &[u8]) -> Vec<u8> {
    let mut body = vec![27];
    put_string(&mut body, b"session-bind@openssh.com");
    put_string(&mut body, cert);
    put_string(&mut body, sid);
    put_string(&mut body, &sign(host, sid));
    body.push(1);
    body
}

/// The daemon's resident memory, in KiB, from /proc.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// A connection this machine's ssh bound to `bastion` for forwarding;
/// the bind's reply.
fn through(agent: &Daemon, bastion: u8, sid: &[u8]) -> (UnixStream, Vec<u8>) {
    let mut s = agent.connect();
    let reply = request(&mut s, &session_bind_request(bastion, sid, true));
    (s, reply)
}

fn bind_bytes(agent: &Daemon) -> u64 {
    agent.status()["bind_bytes"]
        .as_u64()
        .expect("status names bind_bytes")
}

/// 12 connections through the bastion, each sent 15 binds whose host
/// certificates name 40 000 principals (about 200 KB each): before, each
/// connection pinned about 38 MiB. Now such a bind is refused and
/// audited, and certificates inside the size limit stop at the chain's
/// budget, so what the connections hold stays small, and it is given back
/// when they close.
#[test]
fn huge_host_certificates_cannot_pin_memory() {
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let pid = agent.pid();
    // Idle, after the first connections have set up what every later one
    // reuses (threads, the audit writer).
    let _ = agent.status();
    let (mut warm, _) = through(&agent, BASTION, b"warm");
    assert_eq!(request(&mut warm, &[11])[0], IDENTITIES_ANSWER);
    drop(warm);
    let idle = rss_kib(pid);
    let many: Vec<&[u8]> = vec![b"h"; 40_000];
    let mut held = Vec::new();
    for conn in 0..12u8 {
        let (mut s, reply) = through(&agent, BASTION, &[b's', conn]);
        assert_eq!(reply[0], SUCCESS);
        for hop in 0..15u8 {
            let host = 100 + hop;
            let cert = host_cert(host, ROGUE_CA, &many);
            assert!(cert.len() > 190_000);
            let reply = request(&mut s, &cert_bind(&cert, host, &[b'h', conn, hop]));
            assert_ne!(reply[0], SUCCESS, "a 200 KB host certificate was bound");
        }
        held.push(s);
    }
    // Past 10 refusals a minute through one bastion the audit coalesces
    // them: the first 10 are written one by one, the rest are counted
    // (checked once the agent stops, below).
    let refused = agent.audit_until(|a| {
        a.iter()
            .filter(|l| l["event"] == "bind" && l["decision"] == "deny")
            .count()
            >= AUDITED_ONE_BY_ONE
    });
    let refusals: Vec<_> = refused.iter().filter(|l| l["event"] == "bind").collect();
    assert_eq!(refusals.len(), AUDITED_ONE_BY_ONE, "{refusals:#?}");
    for r in &refusals {
        assert_eq!(r["reason"], "bind-too-large", "{r:#}");
        assert_eq!(r["chain"].as_array().unwrap().len(), 1, "{r:#}");
    }
    let loaded = rss_kib(pid);
    assert!(
        loaded < idle + 24 * 1024,
        "12 connections grew the daemon from {idle} KiB to {loaded} KiB"
    );

    // Certificates inside the per-bind limit (256 principals of 40
    // bytes): the chain's budget refuses them before it holds 128 KiB.
    let name = [b'p'; 40];
    let principals: Vec<&[u8]> = vec![&name; 256];
    let mut within = Vec::new();
    for conn in 0..12u8 {
        let (mut s, reply) = through(&agent, BASTION, &[b'w', conn]);
        assert_eq!(reply[0], SUCCESS);
        let mut bound = 0;
        for hop in 0..15u8 {
            let host = 100 + hop;
            let cert = host_cert(host, ROGUE_CA, &principals);
            assert!(cert.len() < 16 * 1024);
            let reply = request(&mut s, &cert_bind(&cert, host, &[b'i', conn, hop]));
            if reply[0] == SUCCESS {
                bound += 1;
            }
        }
        assert!((1..15).contains(&bound), "{bound} of 15 bound");
        within.push(s);
    }
    let held_bytes = bind_bytes(&agent);
    assert!(
        held_bytes <= 24 * hopward::trust::binding::MAX_CHAIN_BYTES as u64,
        "24 connections hold {held_bytes} bytes of binds"
    );

    // Closed connections give their memory back.
    drop(held);
    drop(within);
    // `status` asks on a connection of its own: that one stays.
    wait_until("the connections to close", Duration::from_secs(10), || {
        agent.status()["connections"].as_object().is_some_and(|c| {
            c.values()
                .filter_map(serde_json::Value::as_u64)
                .sum::<u64>()
                <= 1
        })
    });
    assert_eq!(bind_bytes(&agent), 0);
    let closed = rss_kib(pid);
    // The allocator is told to give freed memory back once the last large
    // connection ended.
    wait_until(
        "the memory of closed connections to be given back",
        Duration::from_secs(10),
        || rss_kib(pid) < idle + 4 * 1024,
    );
    println!(
        "RSS: idle {idle} KiB, 12 connections sent 180 huge binds {loaded} KiB, \
         24 closed {closed} KiB, given back {} KiB",
        rss_kib(pid)
    );

    // One refusal per connection, each the bind that poisoned it: 24 in
    // all, those past the rate counted into coalesced records that a
    // clean stop writes.
    let mut agent = agent;
    assert!(agent.terminate().success());
    let counted: u64 = agent
        .audit(0)
        .iter()
        .filter(|l| l["event"] == "bind" && l["reason"] == "bind-too-large")
        .map(|l| l["coalesced"]["count"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(counted, 24);
}

/// Refusals through one first forwarding hop written one by one each
/// minute before the audit starts counting them instead.
const AUDITED_ONE_BY_ONE: usize = 10;

/// What one connection's binds hold, measured on the chain itself: never
/// more than its budget, whatever certificates the bastion sends; a
/// certificate naming more principals than OpenSSH parses is refused; an
/// honest chain of 16 plain hops stays far below the budget.
#[test]
fn a_chain_holds_at_most_its_budget() {
    use hopward::trust::binding::{Chain, MAX_CHAIN_BYTES};
    let body = |b: &[u8]| b[1 + 4 + b"session-bind@openssh.com".len()..].to_vec();
    let mut chain = Chain::default();
    for hop in 0..16u8 {
        let bind = session_bind_request(10 + hop, &[b'p', hop], true);
        chain.bind(&body(&bind), 1).unwrap();
    }
    assert!(
        chain.retained_bytes() < 8 * 1024,
        "{}",
        chain.retained_bytes()
    );

    let mut chain = Chain::default();
    chain
        .bind(&body(&session_bind_request(BASTION, b"first", true)), 1)
        .unwrap();
    let name = [b'p'; 40];
    let principals: Vec<&[u8]> = vec![&name; 128];
    let refused = loop {
        let host = 100 + chain.hops().len() as u8;
        let cert = host_cert(host, ROGUE_CA, &principals);
        match chain.bind(&body(&cert_bind(&cert, host, &[b'c', host])), 1) {
            Ok(()) => assert!(chain.retained_bytes() <= MAX_CHAIN_BYTES),
            Err(e) => break e,
        }
    };
    assert_eq!(refused.kind(), "bind-too-large");
    assert!(chain.hops().len() >= 3, "{} hops", chain.hops().len());
    assert!(chain.retained_bytes() <= MAX_CHAIN_BYTES);

    // 257 one-letter principals: small, but more than OpenSSH parses.
    let mut chain = Chain::default();
    let cert = host_cert(100, ROGUE_CA, &vec![&b"h"[..]; 257]);
    let err = chain
        .bind(&body(&cert_bind(&cert, 100, b"many")), 1)
        .unwrap_err();
    assert_eq!(err.kind(), "bind-malformed");
    assert!(chain.is_poisoned());
    assert_eq!(chain.retained_bytes(), 0);
    // 256 are taken.
    let mut chain = Chain::default();
    let cert = host_cert(100, ROGUE_CA, &vec![&b"h"[..]; 256]);
    chain
        .bind(&body(&cert_bind(&cert, 100, b"many")), 1)
        .unwrap();

    // The certificate of the report: 40 000 principals, about 200 KB.
    let mut chain = Chain::default();
    let cert = host_cert(100, ROGUE_CA, &vec![&b"h"[..]; 40_000]);
    let err = chain
        .bind(&body(&cert_bind(&cert, 100, b"huge")), 1)
        .unwrap_err();
    assert_eq!(err.kind(), "bind-too-large");
    assert_eq!(chain.retained_bytes(), 0);
}

/// One bastion may hold at most 128 open connections: the next one is
/// refused at this machine's own bind, audited with the bastion and the
/// limit, and closed; another bastion and this machine are still served,
/// and the bastion is served again once it closes one.
#[test]
fn connections_over_the_per_hop_limit_are_refused_and_audited() {
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let mut held = Vec::new();
    for i in 0..PER_HOP {
        let (s, reply) = through(&agent, BASTION, format!("fill-{i}").as_bytes());
        assert_eq!(reply[0], SUCCESS, "connection {i}");
        held.push(s);
    }
    let (mut over, reply) = through(&agent, BASTION, b"one-too-many");
    assert_eq!(reply[0], FAILURE, "connection {} was bound", PER_HOP + 1);
    // Refused for good: the connection is closed.
    let mut rest = Vec::new();
    use std::io::Read as _;
    over.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    assert_eq!(over.read_to_end(&mut rest).unwrap(), 0);

    let audit = agent.audit_until(|a| a.iter().any(|l| l["event"] == "connection"));
    let refusal: Vec<_> = audit
        .iter()
        .filter(|l| l["event"] == "connection")
        .collect();
    assert_eq!(refusal.len(), 1, "{refusal:#?}");
    let r = refusal[0];
    assert_eq!(r["decision"], "deny");
    assert_eq!(r["rule"], "connection-limit");
    assert_eq!(r["reason"], "over-128-per-first-hop", "{r:#}");
    let chain = r["chain"].as_array().unwrap();
    assert_eq!(chain.len(), 1, "{r:#}");
    assert_eq!(
        chain[0]["fingerprint"],
        hopward::ssh::key::fingerprint_of(&host_key_blob(BASTION)),
        "{r:#}"
    );

    // Another bastion, and this machine, are still served.
    let (mut other, reply) = through(&agent, OTHER_BASTION, b"other");
    assert_eq!(reply[0], SUCCESS);
    assert_eq!(
        request(&mut other, &session_bind_request(TARGET, b"t", false))[0],
        SUCCESS
    );
    assert_eq!(request(&mut other, &[11])[0], IDENTITIES_ANSWER);
    let mut local = agent.connect();
    assert_eq!(request(&mut local, &[11])[0], IDENTITIES_ANSWER);
    // A request on one of the bastion's own connections still works.
    assert_eq!(request(&mut held[0], &[11])[0], IDENTITIES_ANSWER);

    // One closed: the bastion may open one more.
    drop(held.pop());
    wait_for(
        "the bastion to be served again",
        Duration::from_secs(10),
        || {
            let (mut s, reply) = through(&agent, BASTION, b"again");
            (reply[0] == SUCCESS).then(|| assert_eq!(request(&mut s, &[11])[0], IDENTITIES_ANSWER))
        },
    );
}

/// All bastions together may hold at most 512 open connections: four at
/// their own limit fill it, a fifth is refused (and audited) at its first
/// connection, and this machine is still served.
#[test]
fn forwarded_connections_together_are_capped() {
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let mut held = Vec::new();
    for bastion in 20..24u8 {
        for i in 0..PER_HOP {
            let (s, reply) = through(&agent, bastion, format!("{bastion}-{i}").as_bytes());
            assert_eq!(reply[0], SUCCESS, "bastion {bastion}, connection {i}");
            held.push(s);
        }
    }
    let (_, reply) = through(&agent, 24, b"fifth");
    assert_eq!(reply[0], FAILURE, "connection 513 was bound");
    let audit = agent.audit_until(|a| a.iter().any(|l| l["event"] == "connection"));
    let refusal: Vec<_> = audit
        .iter()
        .filter(|l| l["event"] == "connection")
        .collect();
    assert_eq!(refusal.len(), 1, "{refusal:#?}");
    assert_eq!(
        refusal[0]["reason"], "over-512-forwarded",
        "{:#}",
        refusal[0]
    );
    assert_eq!(
        refusal[0]["chain"][0]["fingerprint"],
        hopward::ssh::key::fingerprint_of(&host_key_blob(24))
    );
    let mut local = agent.connect();
    assert_eq!(request(&mut local, &[11])[0], IDENTITIES_ANSWER);
}
