//! Upstream mode: ssh-agent signing directly and through hopward
//! `--upstream`, same keys, same run.

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::agents::{keygen, launch, sh, start};
use crate::measure::{Figures, measure_with, timed_sign};
use crate::wire::{key_blob, request, sign_frame};

/// Upstream mode: `/usr/bin/ssh-agent` holding the keys, signed with
/// directly and through hopward `--upstream` (hopward holds no key), on 1
/// and 16 connections (medians of four pairs of windows), then the p50 hopward adds, from one client whose
/// requests alternate between the two, so both see the same load.
pub(crate) fn upstream_bench(dir: &Path, hopward: &str, seconds: f64) {
    let upstream = start(
        "ssh-agent (upstream)",
        "/usr/bin/ssh-agent",
        &["-D"],
        dir.join("upstream.sock"),
    );
    let mut cmd = Command::new(hopward);
    cmd.args(["daemon", "-D", "--upstream"])
        .arg(&upstream.sock)
        .arg("-a")
        .arg(dir.join("front.sock"))
        .env("XDG_STATE_HOME", dir.join("front-state"));
    let front = launch("hopward --upstream", cmd, dir.join("front.sock"));
    let keys = [
        ("Ed25519", keygen(dir, "up-ed25519", "ed25519", "256")),
        ("ECDSA P-256", keygen(dir, "up-p256", "ecdsa", "256")),
    ];
    for (_, key) in &keys {
        sh(Command::new("ssh-add")
            .arg("-q")
            .arg(key)
            .env("SSH_AUTH_SOCK", &upstream.sock));
    }
    out!(
        "\nUpstream mode: /usr/bin/ssh-agent directly and through hopward --upstream, same keys, same run\n"
    );
    out!(
        "| key | conns | direct signs/s | p50 µs | p99 µs | through hopward signs/s | p50 µs | p99 µs | throughput kept | p50 added µs |"
    );
    out!("|---|---|---|---|---|---|---|---|---|---|");
    for (label, key) in &keys {
        let blob = key_blob(&key.with_extension("pub"));
        let frame = sign_frame(&blob, 0);
        // Each client lists first, as ssh does: hopward learns the
        // upstream's keys on that connection.
        let setup = move |s: &mut UnixStream| {
            assert_eq!(request(s, &[11])[0], 12, "listing refused");
            frame.clone()
        };
        for conns in [1usize, 16] {
            // Four pairs of windows, which agent goes first alternating;
            // each figure is the median over the pairs, the throughput
            // kept the median of the pairs' ratios.
            let pairs: Vec<(Figures, Figures)> = (0..4)
                .map(|i| {
                    let window =
                        |sock: &Path| measure_with(sock, setup.clone(), conns, seconds / 2.0);
                    if i % 2 == 0 {
                        let direct = window(&upstream.sock);
                        (direct, window(&front.sock))
                    } else {
                        let through = window(&front.sock);
                        (window(&upstream.sock), through)
                    }
                })
                .collect();
            let median = |f: &dyn Fn(&(Figures, Figures)) -> f64| {
                let mut v: Vec<f64> = pairs.iter().map(f).collect();
                v.sort_by(f64::total_cmp);
                (v[1] + v[2]) / 2.0
            };
            out!(
                "| {label} | {conns} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.1} % | {:.1} |",
                median(&|p| p.0.signs_per_sec),
                median(&|p| p.0.p50_us),
                median(&|p| p.0.p99_us),
                median(&|p| p.1.signs_per_sec),
                median(&|p| p.1.p50_us),
                median(&|p| p.1.p99_us),
                median(&|p| 100.0 * p.1.signs_per_sec / p.0.signs_per_sec),
                median(&|p| p.1.p50_us - p.0.p50_us)
            );
        }
        let rounds = 10;
        let mut added =
            interleaved_p50_added(&upstream.sock, &front.sock, setup, rounds, seconds / 2.0);
        added.sort_by(f64::total_cmp);
        out!(
            "\n{label}: p50 added by hopward in front (1 client, its requests alternating between the two sockets; median of {rounds} rounds of {:.1} s): {:.1} µs (rounds from {:.1} to {:.1} µs)\n",
            seconds / 2.0,
            (added[rounds / 2 - 1] + added[rounds / 2]) / 2.0,
            added[0],
            added[rounds - 1]
        );
    }
}

/// The p50 latency `front` adds over `direct`, once per round: one client
/// sends its requests to the two sockets in turn (which goes first swaps
/// every time), so both see the same moment of the machine's load, and
/// compares the two p50s of the round.
pub(crate) fn interleaved_p50_added(
    direct: &Path,
    front: &Path,
    setup: impl Fn(&mut UnixStream) -> Vec<u8>,
    rounds: usize,
    seconds: f64,
) -> Vec<f64> {
    let connect = |sock: &Path| {
        let mut s = UnixStream::connect(sock).expect("connect to agent");
        let frame = setup(&mut s);
        (s, frame)
    };
    let mut buf = vec![0u8; 4096];
    let p50 = |lat: &mut Vec<u64>| {
        lat.sort_unstable();
        lat[(lat.len() - 1) / 2] as f64 / 1000.0
    };
    (0..rounds)
        .map(|_| {
            let mut ends = [connect(direct), connect(front)];
            let mut lat = [Vec::new(), Vec::new()];
            let deadline = Instant::now() + Duration::from_secs_f64(seconds);
            let mut turn = 0;
            while Instant::now() < deadline {
                for i in [turn % 2, (turn + 1) % 2] {
                    let (s, frame) = &mut ends[i];
                    lat[i].push(timed_sign(s, frame, &mut buf));
                }
                turn += 1;
            }
            let [direct, through] = &mut lat;
            p50(through) - p50(direct)
        })
        .collect()
}
