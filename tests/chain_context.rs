//! The request context hopward builds for real chains of sshd hosts on
//! loopback, each with its own host key, known to the client by alias.
//! Asserted through the audit log's sign records (class, chain of hops,
//! destination, user, purpose, peer).

mod common;

use common::sshd::Hosts;
use common::*;

struct World {
    _tmp: tempfile::TempDir,
    hosts: Hosts,
    agent: Daemon,
}

fn world() -> World {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target", "deep"]);
    let agent = hosts.daemon().policy(ALLOW_ALL).start();
    hosts.login_key(&agent, "id");
    World {
        _tmp: tmp,
        hosts,
        agent,
    }
}

/// A hop as the audit records it: a name it is known by, whether it
/// forwards, and which hop's word it is (`None`: verified by the agent).
type Hop<'a> = (&'a str, bool, Option<&'a str>);

fn signs(audit: &[serde_json::Value]) -> Vec<serde_json::Value> {
    audit
        .iter()
        .filter(|l| l["event"] == "sign")
        .cloned()
        .collect()
}

fn hop_is(hop: &serde_json::Value, (name, forwarded, reported_by): Hop) -> bool {
    hop["names"]
        .as_array()
        .is_some_and(|names| names.iter().any(|n| n == name))
        && hop["forwarded"] == forwarded
        && hop["reported_by"].as_str() == reported_by
}

fn is_login(line: &serde_json::Value, class: &str, chain: &[Hop], user: &str) -> bool {
    line["event"] == "sign"
        && line["class"] == class
        && line["destination"] == "verified"
        && line["user"] == user
        && line["purpose"] == "login"
        && line["peer"]["exe"] == "/usr/bin/ssh"
        && line["chain"].as_array().is_some_and(|hops| {
            hops.len() == chain.len() && hops.iter().zip(chain).all(|(h, c)| hop_is(h, *c))
        })
}

/// Whether the audit records a login signed through `chain` (waiting for
/// the writer, which lands a record shortly after its reply).
fn has(agent: &Daemon, class: &str, chain: &[Hop], user: &str) -> bool {
    agent
        .audit_until(|l| l.iter().any(|x| is_login(x, class, chain, user)))
        .iter()
        .any(|x| is_login(x, class, chain, user))
}

#[test]
fn forwarded_agent_then_ssh_on_the_bastion() {
    let w = world();
    let inner = w.hosts.inner_ssh("target true");
    ok(w.hosts.ssh(&w.agent.sock, &["-A", "bastion", &inner]));
    let user = &w.hosts.user;
    let got = || signs(&w.agent.audit(0));
    assert!(
        has(&w.agent, "direct", &[("bastion", false, None)], user),
        "{:#?}",
        got()
    );
    assert!(
        has(
            &w.agent,
            "forwarded",
            &[("bastion", true, None), ("target", false, None)],
            user
        ),
        "{:#?}",
        got()
    );
}

#[test]
fn proxy_jump_is_two_direct_connections() {
    let w = world();
    ok(w.hosts
        .ssh(&w.agent.sock, &["-J", "bastion", "target", "true"]));
    let user = &w.hosts.user;
    let got = || signs(&w.agent.audit(0));
    assert!(
        has(&w.agent, "direct", &[("bastion", false, None)], user),
        "{:#?}",
        got()
    );
    // The login to target tunnels through the jump child's login to the
    // bastion: its chain names the bastion first, as a jump host.
    assert!(
        has(
            &w.agent,
            "direct",
            &[("bastion", false, None), ("target", false, None)],
            user
        ),
        "{:#?}",
        got()
    );
    let all = got();
    let jumps: Vec<bool> = all
        .iter()
        .filter(|l| l["chain"].as_array().is_some_and(|h| h.len() == 2))
        .flat_map(|l| {
            l["chain"]
                .as_array()
                .unwrap()
                .iter()
                .map(|h| h["jump"] == true)
        })
        .collect();
    assert_eq!(jumps, [true, false], "{all:#?}");
    assert!(
        !all.iter().any(|l| l["chain"]
            .as_array()
            .is_some_and(|hops| hops.iter().any(|h| h["forwarded"] == true))),
        "nothing is forwarded with -J: {all:#?}"
    );
}

#[test]
fn two_forwarding_hops() {
    let w = world();
    let deepest = w.hosts.inner_ssh("deep true");
    let middle = w.hosts.inner_ssh(&format!("-A target '{deepest}'"));
    ok(w.hosts.ssh(&w.agent.sock, &["-A", "bastion", &middle]));
    let user = &w.hosts.user;
    assert!(
        has(
            &w.agent,
            "forwarded",
            &[
                ("bastion", true, None),
                ("target", true, Some("bastion")),
                ("deep", false, None),
            ],
            user
        ),
        "{:#?}",
        signs(&w.agent.audit(0))
    );
}

#[test]
fn unknown_host_is_named_by_fingerprint() {
    let w = world();
    // Forget the target in the agent's known_hosts (the client still knows it).
    let agent_kh = w.hosts.dir.join("agent_known_hosts");
    let all = std::fs::read_to_string(w.hosts.dir.join("known_hosts")).unwrap();
    std::fs::write(
        &agent_kh,
        all.lines()
            .filter(|l| !l.starts_with("target "))
            .collect::<Vec<_>>()
            .join("\n"),
    )
    .unwrap();
    let agent = Daemon::builder()
        .policy(ALLOW_ALL)
        .env("HOPWARD_KNOWN_HOSTS", agent_kh.to_str().unwrap())
        .start();
    let key = w.hosts.dir.join("id");
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    ok(w.hosts.ssh(
        &agent.sock,
        &["-A", "bastion", &w.hosts.inner_ssh("target true")],
    ));
    // The target has no name: the audit gives its fingerprint alone.
    let unnamed = |l: &serde_json::Value| {
        let hops = l["chain"].as_array();
        l["event"] == "sign"
            && hops.is_some_and(|hops| {
                hops.len() == 2
                    && hop_is(&hops[0], ("bastion", true, None))
                    && hops[1]["names"].as_array().is_some_and(Vec::is_empty)
                    && hops[1]["fingerprint"]
                        .as_str()
                        .is_some_and(|f| f.starts_with("SHA256:"))
            })
    };
    let audit = agent.audit_until(|l| l.iter().any(unnamed));
    assert!(audit.iter().any(unnamed), "{:#?}", signs(&audit));
}
