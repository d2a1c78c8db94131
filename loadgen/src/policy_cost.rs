//! The cost of deciding: a 200-rule policy and a 10 000-line known_hosts
//! on bound connections, and `Policy::decide` alone, in process.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

use crate::agents::{Agent, keygen, sh, start, start_hopward};
use crate::measure::measure_with;
use crate::wire::{key_blob, put_string, request, userauth_frame};

/// The cost of deciding: hopward with a 200-rule policy and a 10 000-line
/// known_hosts against hopward with the built-in policy and no known_hosts,
/// both on connections bound to a host (as every `ssh` connection is), and
/// ssh-agent on the same bound connections.
pub(crate) fn policy_bench(dir: &Path, hopward: &str, seconds: f64) {
    use base64::Engine as _;
    use hopward_core::keys::sign::SigningKey;
    use hopward_model::protocol::request::SecretParts;
    use hopward_model::ssh::key::PublicParts;
    use hopward_model::ssh::key::ed25519_public;
    use rand_core::RngCore as _;

    let host_seed = [0x42u8; 32];
    let host_blob = PublicParts::Ed25519(ed25519_public(&host_seed)).blob();
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut known = String::new();
    let mut random = [0u8; 32];
    for i in 0..9_999 {
        rand_core::OsRng.fill_bytes(&mut random);
        let blob = PublicParts::Ed25519(random).blob();
        known.push_str(&format!(
            "host-{i}.example.com ssh-ed25519 {}\n",
            b64.encode(blob)
        ));
    }
    known.push_str(&format!("target ssh-ed25519 {}\n", b64.encode(&host_blob)));
    let known_path = dir.join("known_hosts_10k");
    std::fs::write(&known_path, known).unwrap();
    let mut policy = String::from("[defaults]\nlocal = \"allow\"\n");
    for i in 0..199 {
        policy.push_str(&format!(
            "[[rule]]\nname = \"rule {i}\"\nhost = [\"host-{i}.example.com\"]\nvia = [\"jump-{i}\"]\nuser = [\"user-{i}\"]\naction = \"confirm\"\n"
        ));
    }
    policy.push_str(
        "[[rule]]\nname = \"target\"\nhost = [\"target\"]\nvia = []\naction = \"allow\"\n",
    );
    let policy_path = dir.join("policy_200.toml");
    std::fs::write(&policy_path, policy).unwrap();
    let empty_known = dir.join("known_hosts_empty");
    std::fs::write(&empty_known, "").unwrap();

    let agents = [
        (
            "hopward, 200 rules + 10k known_hosts",
            start_hopward(dir, hopward, "policy200", Some(&policy_path), &known_path),
        ),
        (
            "hopward, built-in policy",
            start_hopward(dir, hopward, "builtin", None, &empty_known),
        ),
        (
            "ssh-agent",
            start(
                "ssh-agent",
                "/usr/bin/ssh-agent",
                &["-D"],
                dir.join("openssh-bound.sock"),
            ),
        ),
    ];
    let user_key = keygen(dir, "bound-user", "ed25519", "256");
    for (_, agent) in &agents {
        sh(Command::new("ssh-add")
            .arg("-q")
            .arg(&user_key)
            .env("SSH_AUTH_SOCK", &agent.sock));
    }
    let user_blob = key_blob(&user_key.with_extension("pub"));
    let setup = move |s: &mut UnixStream| {
        let mut sid = [0u8; 32];
        rand_core::OsRng.fill_bytes(&mut sid);
        let public = PublicParts::Ed25519(ed25519_public(&host_seed));
        let host = SigningKey::new(&public, &SecretParts::Ed25519(&host_seed)).unwrap();
        let sig = host.sign(&sid, 0).unwrap();
        let mut sig_blob = Vec::new();
        put_string(&mut sig_blob, sig.algorithm.as_bytes());
        put_string(&mut sig_blob, &sig.blob);
        let mut bind = vec![27u8];
        put_string(&mut bind, b"session-bind@openssh.com");
        put_string(&mut bind, &public.blob());
        put_string(&mut bind, &sid);
        put_string(&mut bind, &sig_blob);
        bind.push(0);
        assert_eq!(request(s, &bind)[0], 6, "session-bind refused");
        userauth_frame(&user_blob, &sid)
    };
    out!("\nDecision cost: Ed25519 on connections bound to a host (session-bind), same run\n");
    out!("| agent | conns | signs/s | p50 µs | p99 µs |");
    out!("|---|---|---|---|---|");
    let mut results = Vec::new();
    for conns in [1usize, 16] {
        for (name, agent) in &agents {
            let f = measure_with(&agent.sock, setup.clone(), conns, seconds);
            out!(
                "| {name} | {conns} | {:.0} | {:.1} | {:.1} |",
                f.signs_per_sec,
                f.p50_us,
                f.p99_us
            );
            results.push((conns, *name, f));
        }
    }
    let get = |conns: usize, name: &str| {
        results
            .iter()
            .find(|(c, n, _)| *c == conns && n.starts_with(name))
            .map(|(_, _, f)| f)
            .expect("measured")
    };
    // The tables' windows are seconds apart, and the machine's load drifts
    // in between; back-to-back pairs of short windows share their load.
    let pairs = 10;
    let slice = seconds / 6.0;
    let mut added: Vec<f64> = (0..pairs)
        .map(|i| {
            let p50 = |agent: &Agent| measure_with(&agent.sock, setup.clone(), 1, slice).p50_us;
            // Alternate which goes first, so a steady drift cancels out.
            if i % 2 == 0 {
                let with = p50(&agents[0].1);
                with - p50(&agents[1].1)
            } else {
                let without = p50(&agents[1].1);
                p50(&agents[0].1) - without
            }
        })
        .collect();
    added.sort_by(f64::total_cmp);
    out!(
        "\np50 added by the 200-rule policy and 10k-line known_hosts (1 connection, median of {pairs} back-to-back pairs of {slice:.1} s): {:.1} µs (pairs from {:.1} to {:.1} µs)",
        (added[pairs / 2 - 1] + added[pairs / 2]) / 2.0,
        added[0],
        added[pairs - 1]
    );
    out!(
        "throughput with the 200-rule policy at 16 connections: {:.2}× ssh-agent",
        get(16, "hopward, 200").signs_per_sec / get(16, "ssh-agent").signs_per_sec
    );
    let policy_text = std::fs::read_to_string(&policy_path).unwrap();
    out!(
        "the decision alone, in process (same 200 rules, matching rule last): {:.2} µs",
        decide_cost(&policy_text)
    );
}

/// Microseconds per `Policy::decide` on `policy_text` for a signature bound
/// to "target": the best of five rounds, since a round can only be slowed
/// by the rest of the machine, never sped up. Unlike the socket figures
/// above, this leaves out the signature, the audit line and the scheduler.
pub(crate) fn decide_cost(policy_text: &str) -> f64 {
    use hopward_core::trust::binding::Purpose;
    use hopward_core::trust::context::{Destination, HopView, RequestContext};
    let policy = hopward_core::policy::file::parse_str(policy_text, "policy_200.toml")
        .expect("the benchmark policy is valid");
    let peer = std::sync::Arc::new(hopward_core::trust::peer::Peer::with_facts(
        0,
        None,
        Default::default(),
    ));
    let ctx = RequestContext::of_parts(
        ("SHA256:benchmark", "bound-user"),
        vec![HopView::named("target", false)],
        Destination::Verified,
        Some("me"),
        Purpose::Login,
        &peer,
    );
    const ROUND: u32 = 100_000;
    (0..5)
        .map(|_| {
            let started = Instant::now();
            for _ in 0..ROUND {
                let decision = policy.decide(std::hint::black_box(&ctx));
                assert_eq!(decision.rule, "target", "the last rule decides");
            }
            started.elapsed().as_secs_f64() * 1e6 / f64::from(ROUND)
        })
        .fold(f64::INFINITY, f64::min)
}
