//! The request context hopward builds for real chains of sshd hosts on
//! loopback, each with its own host key, known to the client by alias.
//! Asserted through the debug log's `request context:` lines.

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
    let known_hosts = tmp.path().join("known_hosts");
    let agent = Daemon::builder()
        .debug()
        .policy(ALLOW_ALL)
        .env("HOPWARD_KNOWN_HOSTS", known_hosts.to_str().unwrap())
        .start();
    let key = keygen(tmp.path(), "id", "ed25519", None);
    hosts.authorize(&key.with_extension("pub"));
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    World {
        _tmp: tmp,
        hosts,
        agent,
    }
}

fn contexts(agent: &Daemon) -> Vec<String> {
    agent
        .log_text()
        .lines()
        .filter_map(|l| {
            l.split_once("request context: ")
                .map(|(_, c)| c.to_string())
        })
        .collect()
}

fn has(contexts: &[String], class: &str, chain: &str, user: &str) -> bool {
    contexts.iter().any(|c| {
        c.contains(&format!(
            "class={class} chain=[{chain}] destination=verified user={user} purpose=login"
        )) && c.contains("exe=/usr/bin/ssh")
    })
}

#[test]
fn forwarded_agent_then_ssh_on_the_bastion() {
    let w = world();
    let inner = w.hosts.inner_ssh("target true");
    ok(w.hosts.ssh(&w.agent.sock, &["-A", "bastion", &inner]));
    let got = contexts(&w.agent);
    let user = &w.hosts.user;
    assert!(has(&got, "direct", "bastion (auth)", user), "{got:#?}");
    assert!(
        has(&got, "forwarded", "bastion (fwd) > target (auth)", user),
        "{got:#?}"
    );
}

#[test]
fn proxy_jump_is_two_direct_connections() {
    let w = world();
    ok(w.hosts
        .ssh(&w.agent.sock, &["-J", "bastion", "target", "true"]));
    let got = contexts(&w.agent);
    let user = &w.hosts.user;
    assert!(has(&got, "direct", "bastion (auth)", user), "{got:#?}");
    assert!(has(&got, "direct", "target (auth)", user), "{got:#?}");
    assert!(
        !got.iter().any(|c| c.contains("(fwd)")),
        "nothing is forwarded with -J: {got:#?}"
    );
}

#[test]
fn two_forwarding_hops() {
    let w = world();
    let deepest = w.hosts.inner_ssh("deep true");
    let middle = w.hosts.inner_ssh(&format!("-A target '{deepest}'"));
    ok(w.hosts.ssh(&w.agent.sock, &["-A", "bastion", &middle]));
    let got = contexts(&w.agent);
    let user = &w.hosts.user;
    assert!(
        has(
            &got,
            "forwarded",
            "bastion (fwd) > target (fwd, reported by bastion) > deep (auth)",
            user
        ),
        "{got:#?}"
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
        .debug()
        .policy(ALLOW_ALL)
        .env("HOPWARD_KNOWN_HOSTS", agent_kh.to_str().unwrap())
        .start();
    let key = w.hosts.dir.join("id");
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    ok(w.hosts.ssh(
        &agent.sock,
        &["-A", "bastion", &w.hosts.inner_ssh("target true")],
    ));
    let got = contexts(&agent);
    assert!(
        got.iter()
            .any(|c| c.contains("chain=[bastion (fwd) > unknown host SHA256:")),
        "{got:#?}"
    );
}
