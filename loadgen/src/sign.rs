//! The sign tables: hopward against ssh-agent (and a third build, if
//! given) for each key type and number of connections, the ECDSA limit of
//! the machine, the before ÷ this table, and the ML-DSA table.

use std::path::Path;
use std::process::{Command, Stdio};

use crate::agents::{Agent, cpu_ns, keygen, sh, start};
use crate::measure::{Figures, measure};
use crate::wire::{key_blob, sign_frame};

/// Which rows of the sign table to measure: every key type and number of
/// connections unless narrowed (`--key`, `--conns`).
#[derive(Default)]
pub(crate) struct Selection {
    pub(crate) keys: Vec<String>,
    pub(crate) conns: Vec<usize>,
}

impl Selection {
    fn key(&self, short: &str) -> bool {
        self.keys.is_empty() || self.keys.iter().any(|k| k == short)
    }

    /// 1, 4 and 16 connections unless narrowed.
    fn conn_counts(&self) -> Vec<usize> {
        if self.conns.is_empty() {
            vec![1, 4, 16]
        } else {
            self.conns.clone()
        }
    }
}

/// The sign tables, with ssh-agent and the third build (`--unshielded` or
/// `--before`) if given, then the ML-DSA table if `openssh105` is given.
pub(crate) fn sign_bench(
    dir: &tempfile::TempDir,
    hw: &str,
    third: &Option<(&str, String)>,
    openssh105: &Option<std::path::PathBuf>,
    seconds: f64,
    pairs: usize,
    selection: &Selection,
) {
    let keys = [
        (
            "Ed25519",
            keygen(dir.path(), "ed25519", "ed25519", "256"),
            0u32,
        ),
        ("ECDSA P-256", keygen(dir.path(), "p256", "ecdsa", "256"), 0),
        ("RSA-3072", keygen(dir.path(), "rsa", "rsa", "3072"), 2),
    ];
    let shorts = ["ed25519", "ecdsa", "rsa"];
    let keys: Vec<_> = keys
        .into_iter()
        .zip(shorts)
        .filter_map(|(key, short)| selection.key(short).then_some(key))
        .collect();
    let mut agents = vec![
        start(
            "hopward",
            hw,
            &["daemon", "-D"],
            dir.path().join("hopward.sock"),
        ),
        start(
            "ssh-agent",
            "/usr/bin/ssh-agent",
            &["-D"],
            dir.path().join("openssh.sock"),
        ),
    ];
    if let Some((name, path)) = &third {
        agents.push(start(
            if *name == "before" {
                "hopward (before)"
            } else {
                "hopward (unshielded)"
            },
            path,
            &["daemon", "-D"],
            dir.path().join(format!("{name}.sock")),
        ));
    }
    for agent in &agents {
        for (_, key, _) in &keys {
            sh(Command::new("ssh-add")
                .arg("-q")
                .arg(key)
                .env("SSH_AUTH_SOCK", &agent.sock));
        }
    }
    out!("hopward {hw} vs /usr/bin/ssh-agent, {seconds} s per measure, same keys, same run");
    let extra_head = match &third {
        Some(("before", path)) => {
            out!(
                "before: {path} (an earlier build, taking turns with this one in {pairs} pairs of windows)"
            );
            " before signs/s | before ratio |"
        }
        Some((_, path)) => {
            out!("unshielded: {path} (keys kept open in memory; benchmark build only)");
            " unshielded signs/s | unshielded ratio |"
        }
        None => "",
    };
    let extra_rule = if third.is_some() { "---|---|" } else { "" };
    out!();
    out!(
        "| key | conns | hopward signs/s | p50 µs | p99 µs | ssh-agent signs/s | p50 µs | p99 µs | ratio |{extra_head}"
    );
    out!("|---|---|---|---|---|---|---|---|---|{extra_rule}");
    let mut before_pairs = Vec::new();
    // hopward's ECDSA P-256 rate at 16 connections, for the 2-core limit,
    // and RSA-3072's at 16 with ssh-agent's, for what the machine allows.
    let mut ecdsa_16 = None;
    let mut rsa_16 = None;
    for (label, key, flags) in &keys {
        let frame = sign_frame(&key_blob(&key.with_extension("pub")), *flags);
        for conns in selection.conn_counts() {
            if matches!(third, Some(("before", _))) {
                let row = before_windows(&agents, &frame, conns, seconds, pairs);
                print_row(label, conns, &row.now, &row.openssh, Some(&row.before));
                if (*label, conns) == ("ECDSA P-256", 16) {
                    ecdsa_16 = Some((row.now.signs_per_sec, frame.clone()));
                }
                if (*label, conns) == ("RSA-3072", 16) {
                    rsa_16 = Some((row.now.signs_per_sec, row.openssh.signs_per_sec));
                }
                before_pairs.push((*label, conns, row));
            } else {
                let results: Vec<Figures> = agents
                    .iter()
                    .map(|a| measure(&a.sock, &frame, conns, seconds))
                    .collect();
                print_row(label, conns, &results[0], &results[1], results.get(2));
                if (*label, conns) == ("ECDSA P-256", 16) {
                    ecdsa_16 = Some((results[0].signs_per_sec, frame.clone()));
                }
                if (*label, conns) == ("RSA-3072", 16) {
                    rsa_16 = Some((results[0].signs_per_sec, results[1].signs_per_sec));
                }
            }
        }
    }
    if let Some((rate, frame)) = ecdsa_16 {
        print_ecdsa_limit(rate);
        print_ecdsa_limit_rounds(&agents[0], &frame);
    }
    if let Some((rate, openssh)) = rsa_16 {
        print_rsa_limit(rate, openssh);
    }
    if !before_pairs.is_empty() {
        print_before_pairs(&before_pairs);
    }
    if let Some(openssh) = &openssh105 {
        // hopward and, if given, the third build; not the system agent.
        let hopwards: Vec<Agent> = agents
            .drain(..)
            .enumerate()
            .filter_map(|(i, a)| (i != 1).then_some(a))
            .collect();
        mldsa_table(openssh, dir.path(), &hopwards, extra_head, seconds);
    }
    drop(agents);
}

/// The ML-DSA composite table (see the module comment): hopward's agents
/// against `openssh`'s ssh-agent, with one key made by its ssh-keygen.
pub(crate) fn mldsa_table(
    openssh: &Path,
    dir: &Path,
    hopwards: &[Agent],
    extra_head: &str,
    seconds: f64,
) {
    let key = dir.join("mldsa");
    sh(Command::new(openssh.join("ssh-keygen"))
        .args(["-q", "-N", "", "-t", "mldsa44-ed25519", "-C", "mldsa", "-f"])
        .arg(&key));
    let agent105 = openssh.join("ssh-agent");
    let reference = start(
        "ssh-agent 10.5",
        agent105.to_str().expect("UTF-8 path"),
        &["-D"],
        dir.join("openssh105.sock"),
    );
    let agents: Vec<&Agent> = hopwards
        .iter()
        .take(1)
        .chain([&reference])
        .chain(hopwards.iter().skip(1))
        .collect();
    for agent in &agents {
        sh(Command::new(openssh.join("ssh-add"))
            .arg("-q")
            .arg(&key)
            .env("SSH_AUTH_SOCK", &agent.sock));
    }
    out!();
    out!(
        "ML-DSA-44/Ed25519 against {} (the system's ssh-agent has no ML-DSA):",
        agent105.display()
    );
    out!();
    let extra_rule = if agents.len() > 2 { "---|---|" } else { "" };
    out!(
        "| key | conns | hopward signs/s | p50 µs | p99 µs | ssh-agent 10.5 signs/s | p50 µs | p99 µs | ratio |{extra_head}"
    );
    out!("|---|---|---|---|---|---|---|---|---|{extra_rule}");
    let frame = sign_frame(&key_blob(&key.with_extension("pub")), 0);
    for conns in [1usize, 4, 16] {
        let results: Vec<Figures> = agents
            .iter()
            .map(|a| measure(&a.sock, &frame, conns, seconds))
            .collect();
        print_row(
            "ML-DSA-44/Ed25519",
            conns,
            &results[0],
            &results[1],
            results.get(2),
        );
    }
}

/// One row of a sign table: hopward, the reference agent, then the third
/// build (unshielded or before) if it ran.
pub(crate) fn print_row(
    label: &str,
    conns: usize,
    h: &Figures,
    o: &Figures,
    third: Option<&Figures>,
) {
    let extra = third
        .map(|u| {
            format!(
                " {:.0} | {:.2}× |",
                u.signs_per_sec,
                u.signs_per_sec / o.signs_per_sec
            )
        })
        .unwrap_or_default();
    out!(
        "| {label} | {conns} | {:.0} | {:.1} | {:.1} | {:.0} | {:.1} | {:.1} | {:.2}× |{extra}",
        h.signs_per_sec,
        h.p50_us,
        h.p99_us,
        o.signs_per_sec,
        o.p50_us,
        o.p99_us,
        h.signs_per_sec / o.signs_per_sec
    );
}

/// One row with an earlier build: this build and the earlier one take turns
/// in short windows, which goes first swapping every pair, with ssh-agent's
/// one window in the middle. Slow drift of the shared machine then falls on
/// both builds alike. Each window also reads the CPU time the agent's
/// threads used, which the machine's other load disturbs far less than the
/// rate does.
pub(crate) fn before_windows(
    agents: &[Agent],
    frame: &[u8],
    conns: usize,
    seconds: f64,
    pairs: usize,
) -> BeforeRow {
    let window = |a: &Agent| {
        let cpu = cpu_ns(a.child.id());
        let figures = measure(&a.sock, frame, conns, seconds / pairs as f64);
        let cpu = cpu_ns(a.child.id()) - cpu;
        (figures, cpu)
    };
    let (mut now, mut before) = (Vec::new(), Vec::new());
    let mut openssh = None;
    for pair in 0..pairs {
        if pair == pairs / 2 {
            openssh = Some(measure(&agents[1].sock, frame, conns, seconds));
        }
        if pair % 2 == 0 {
            now.push(window(&agents[0]));
            before.push(window(&agents[2]));
        } else {
            before.push(window(&agents[2]));
            now.push(window(&agents[0]));
        }
    }
    let rate_pairs = now
        .iter()
        .zip(&before)
        .map(|((n, _), (b, _))| n.signs_per_sec / b.signs_per_sec)
        .collect();
    // CPU per signature, over all windows of each build.
    let per_sign = |w: &[(Figures, u64)]| {
        w.iter().map(|(_, c)| *c).sum::<u64>() as f64
            / w.iter().map(|(f, _)| f.signs).sum::<usize>() as f64
    };
    let cpu_ratio = per_sign(&now) / per_sign(&before);
    let figures =
        |w: Vec<(Figures, u64)>| Figures::mean(&w.into_iter().map(|(f, _)| f).collect::<Vec<_>>());
    BeforeRow {
        now: figures(now),
        openssh: openssh.expect("ssh-agent measured"),
        before: figures(before),
        rate_pairs,
        cpu_ratio,
    }
}

pub(crate) struct BeforeRow {
    now: Figures,
    openssh: Figures,
    before: Figures,
    /// This build's rate ÷ the earlier one's, for each pair of windows.
    rate_pairs: Vec<f64>,
    /// This build's CPU time per signature ÷ the earlier one's.
    cpu_ratio: f64,
}

/// This build against the earlier one, row by row: the median of the pairs
/// of windows, their spread, and CPU time per signature.
pub(crate) fn print_before_pairs(rows: &[(&str, usize, BeforeRow)]) {
    let pairs = rows.first().map_or(0, |(_, _, r)| r.rate_pairs.len());
    out!();
    out!(
        "| key | conns | this ÷ before signs/s, median of {pairs} pairs | lowest pair | highest pair | before ÷ this CPU per sign |"
    );
    out!("|---|---|---|---|---|---|");
    for (label, conns, row) in rows {
        let mut sorted = row.rate_pairs.clone();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 0 {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        } else {
            sorted[n / 2]
        };
        out!(
            "| {label} | {conns} | {:.1} % | {:.1} % | {:.1} % | {:.1} % |",
            median * 100.0,
            sorted[0] * 100.0,
            sorted[n - 1] * 100.0,
            100.0 / row.cpu_ratio
        );
    }
}

/// Signs/s from `openssl speed -seconds SECONDS ALGORITHM` (`ALGORITHM`
/// one of [`ECDSA_P256`], [`RSA_3072`]), measured now; no agent signs
/// meanwhile. One core's rate, or with `every_core` the machine's: then
/// `-multi` runs one signer a core at once and the figure is their sum.
fn openssl_speed(
    (algorithm, line_start): (&str, &str),
    seconds: u32,
    every_core: bool,
) -> Option<f64> {
    let mut command = Command::new("openssl");
    command.arg("speed");
    if every_core {
        command.args(["-multi", &cores().to_string()]);
    }
    let output = command
        .args(["-seconds", &seconds.to_string(), algorithm])
        .stderr(Stdio::null())
        .output()
        .ok()?;
    // `256 bits ecdsa (nistp256)   0.0000s   0.0001s  30151.9  11059.0`,
    // `rsa 3072 bits 0.002313s 0.000041s    432.3  24331.3`: the third
    // figure is signs/s (with `-multi`, of all the signers together).
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| {
            let figures = line.trim_start().strip_prefix(line_start)?;
            figures.split_whitespace().nth(2)?.parse::<f64>().ok()
        })
}

/// `openssl speed`'s name for ECDSA P-256, and how its result line starts.
const ECDSA_P256: (&str, &str) = ("ecdsap256", "256 bits ecdsa (nistp256)");
/// The same for RSA-3072.
const RSA_3072: (&str, &str) = ("rsa3072", "rsa 3072 bits");

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The machine's limit for ECDSA P-256, measured now in two ways: one
/// core's `openssl speed ecdsap256` times the cores, and every core
/// signing at once (`-multi`). The second is what
/// the cores really give while all are busy, as they are at 16
/// connections: cores that share a host's caches, power budget or
/// hyperthreads give less together than one alone times their number.
pub(crate) fn print_ecdsa_limit(hopward_16: f64) {
    let cores = cores();
    let [one_core, together] = ecdsa_limits(3);
    out!();
    match one_core {
        Some(limit) => out!(
            "ECDSA P-256 limit: {cores} cores × {:.0} signs/s (`openssl speed -seconds 3 ecdsap256`, this run) = {limit:.0}/s; hopward at 16 connections: {:.0} % of it",
            limit / cores as f64,
            100.0 * hopward_16 / limit
        ),
        None => out!("ECDSA P-256 limit: not measured (`openssl speed ecdsap256` gave no figure)"),
    }
    match together {
        Some(together) => out!(
            "ECDSA P-256 limit with every core signing at once: {together:.0} signs/s (`openssl speed -multi {cores} -seconds 3 ecdsap256`, this run); hopward at 16 connections: {:.0} % of it",
            100.0 * hopward_16 / together
        ),
        None => out!(
            "ECDSA P-256 limit with every core signing at once: not measured (`openssl speed -multi {cores} ecdsap256` gave no figure)"
        ),
    }
}

/// The machine's ECDSA P-256 signs/s from `openssl speed` runs of `seconds`
/// each: one core's rate times the cores, then every core at once; each
/// `None` if `openssl speed` gave no figure.
fn ecdsa_limits(seconds: u32) -> [Option<f64>; 2] {
    [
        openssl_speed(ECDSA_P256, seconds, false).map(|per_core| per_core * cores() as f64),
        openssl_speed(ECDSA_P256, seconds, true),
    ]
}

/// Rounds of windows for the ECDSA share of the limit.
const LIMIT_ROUNDS: usize = 5;
/// Each window of a round, in seconds.
const LIMIT_WINDOW: u32 = 2;

/// hopward's ECDSA P-256 rate at 16 connections against the limit again,
/// in rounds of three windows: hopward, then `openssl speed` on one core,
/// then on every core at once (the limit's windows first every second
/// round). The machine's load moves a round's figures alike, so each
/// round's share moves less than one share of two figures taken minutes
/// apart.
fn print_ecdsa_limit_rounds(hopward: &Agent, frame: &[u8]) {
    let cores = cores();
    // Each round: hopward's rate, then the limit from one core's rate and
    // with every core at once, each if `openssl speed` gave a figure.
    let mut rounds = Vec::new();
    for round in 0..LIMIT_ROUNDS {
        let window = || measure(&hopward.sock, frame, 16, f64::from(LIMIT_WINDOW)).signs_per_sec;
        let limits = || ecdsa_limits(LIMIT_WINDOW);
        rounds.push(if round % 2 == 0 {
            let rate = window();
            (rate, limits())
        } else {
            let limits = limits();
            (window(), limits)
        });
    }
    let measured = [
        format!("{cores} × `openssl speed -seconds {LIMIT_WINDOW} ecdsap256` (one core)"),
        format!(
            "`openssl speed -multi {cores} -seconds {LIMIT_WINDOW} ecdsap256` (every core at once)"
        ),
    ];
    for (which, measured) in measured.iter().enumerate() {
        let against = rounds
            .iter()
            .filter_map(|&(rate, limits)| Some((rate, limits[which]?)))
            .collect();
        print_limit_share(measured, against);
    }
}

/// One line of [`print_ecdsa_limit_rounds`]: the median round's share of
/// the limit `measured` names, with that round's own figures, and the
/// lowest and highest round.
fn print_limit_share(measured: &str, rounds: Vec<(f64, f64)>) {
    let mut shares: Vec<(f64, f64, f64)> = rounds
        .into_iter()
        .map(|(rate, limit)| (rate, limit, 100.0 * rate / limit))
        .collect();
    shares.sort_by(|a, b| a.2.total_cmp(&b.2));
    let (Some(lowest), Some(highest)) = (shares.first(), shares.last()) else {
        return;
    };
    // The median round's own figures, so the line shows what gave the share.
    let (rate, limit, share) = shares[shares.len() / 2];
    out!(
        "ECDSA P-256 at 16 connections in {} rounds of {LIMIT_WINDOW} s windows taking turns with {measured}: median {share:.0} % of the limit (hopward {rate:.0} signs/s against a limit of {limit:.0} in that round; rounds {:.0} to {:.0} %)",
        shares.len(),
        lowest.2,
        highest.2
    );
}

/// What every core of OpenSSL's RSA-3072 exponentiation (`openssl speed
/// rsa3072`, the library ssh-agent links) gives against ssh-agent's rate at
/// 16 connections. Where AWS-LC has no faster code for the CPU than
/// OpenSSL, no agent's lead over ssh-agent can pass it; with AVX-512 IFMA,
/// AWS-LC's own exponentiation is faster and hopward goes past it.
pub(crate) fn print_rsa_limit(hopward_16: f64, openssh_16: f64) {
    let per_core = openssl_speed(RSA_3072, 3, false);
    let cores = cores() as f64;
    match per_core {
        Some(per_core) => out!(
            "RSA-3072, OpenSSL's exponentiation alone on every core: {cores} cores × {per_core:.0} signs/s (`openssl speed -seconds 3 rsa3072`, this run) = {:.0}/s, {:.2}× ssh-agent at 16 connections; hopward at 16 connections: {:.2}× ssh-agent, {:.0} % of that",
            per_core * cores,
            per_core * cores / openssh_16,
            hopward_16 / openssh_16,
            100.0 * hopward_16 / (per_core * cores)
        ),
        None => out!(
            "RSA-3072, OpenSSL's exponentiation alone: not measured (`openssl speed rsa3072` gave no figure)"
        ),
    }
}
