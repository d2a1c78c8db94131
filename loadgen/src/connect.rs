//! The connection path: what every `ssh`, `git fetch` and Ansible task
//! pays to connect to the agent, list identities and close.

use std::io::Read as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::agents::{cpu_ns, keygen, sh, start, start_plain};
use crate::measure::Figures;

/// The connection path: connect, REQUEST_IDENTITIES, close, one connection
/// at a time, as each `ssh` or `git fetch` does, on agents holding one
/// Ed25519 key. Each agent's windows take turns with the others' (the
/// order rotates every round), so the shared machine's drift falls on all;
/// the ratio is the median over the rounds of the same-round ratios.
pub(crate) fn connect_bench(
    dir: &Path,
    hopward: &str,
    before: Option<&str>,
    seconds: f64,
    rounds: usize,
) {
    let key = keygen(dir, "connect", "ed25519", "256");
    let mut agents = vec![
        start_plain(dir, hopward, "connect-hopward"),
        start(
            "ssh-agent",
            "/usr/bin/ssh-agent",
            &["-D"],
            dir.join("connect-openssh.sock"),
        ),
    ];
    if let Some(path) = before {
        agents.push(start_plain(dir, path, "connect-before"));
    }
    for agent in &agents {
        sh(Command::new("ssh-add")
            .arg("-q")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &agent.sock));
    }
    let window = seconds / rounds as f64;
    let mut windows: Vec<Vec<(Figures, u64)>> = agents.iter().map(|_| Vec::new()).collect();
    for round in 0..rounds {
        for i in 0..agents.len() {
            let a = (round + i) % agents.len();
            let cpu = cpu_ns(agents[a].child.id());
            let figures = measure_connects(&agents[a].sock, window);
            windows[a].push((figures, cpu_ns(agents[a].child.id()) - cpu));
        }
    }
    let median = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let n = v.len();
        if n % 2 == 0 {
            (v[n / 2 - 1] + v[n / 2]) / 2.0
        } else {
            v[n / 2]
        }
    };
    let ratios = |a: usize| {
        windows[a]
            .iter()
            .zip(&windows[1])
            .map(|((x, _), (o, _))| x.signs_per_sec / o.signs_per_sec)
            .collect::<Vec<f64>>()
    };
    let cpu_us = |a: usize| {
        windows[a].iter().map(|(_, c)| *c).sum::<u64>() as f64
            / windows[a].iter().map(|(f, _)| f.signs).sum::<usize>() as f64
            / 1000.0
    };
    out!();
    out!(
        "Connection path: connect, list identities (1 key), close; one connection at a time, {rounds} rounds of {window:.2} s windows per agent, turns rotating"
    );
    out!();
    out!(
        "| agent | connections/s | p50 µs | p99 µs | agent CPU µs per connection | ÷ ssh-agent, median of rounds | lowest round | highest round |"
    );
    out!("|---|---|---|---|---|---|---|---|");
    let names = ["hopward", "ssh-agent", "hopward (before)"];
    for (a, name) in names.iter().enumerate().take(agents.len()) {
        let figures = Figures::mean(
            &windows[a]
                .iter()
                .map(|(f, _)| Figures {
                    signs: f.signs,
                    signs_per_sec: f.signs_per_sec,
                    p50_us: f.p50_us,
                    p99_us: f.p99_us,
                })
                .collect::<Vec<_>>(),
        );
        let r = ratios(a);
        let (lo, hi) = (
            r.iter().copied().fold(f64::INFINITY, f64::min),
            r.iter().copied().fold(0.0, f64::max),
        );
        out!(
            "| {name} | {:.0} | {:.1} | {:.1} | {:.1} | {:.2}× | {lo:.2}× | {hi:.2}× |",
            figures.signs_per_sec,
            figures.p50_us,
            figures.p99_us,
            cpu_us(a),
            median(r),
        );
    }
}

/// Connects, lists identities and closes, over and over for `seconds`;
/// each figure is one whole connection.
pub(crate) fn measure_connects(sock: &Path, seconds: f64) -> Figures {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut lat = Vec::with_capacity(100_000);
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        let t = Instant::now();
        let mut s = UnixStream::connect(sock).expect("connect to agent");
        crate::wire::send(&mut s, &[0, 0, 0, 1, 11]);
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let n = u32::from_be_bytes(len) as usize;
        s.read_exact(&mut buf[..n]).unwrap();
        assert_eq!(buf[0], 12, "agent refused to list identities");
        drop(s);
        lat.push(t.elapsed().as_nanos() as u64);
    }
    Figures::of_latencies(lat, started.elapsed().as_secs_f64())
}
