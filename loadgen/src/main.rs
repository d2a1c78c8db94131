//! Load generator: signs against hopward and OpenSSH's ssh-agent, side by
//! side in the same run, and prints signs/s, p50/p99 latency and the ratio.
//!
//!   cargo build --release --workspace
//!   target/release/hopward-loadgen [--seconds S] [--hopward PATH]
//!       [--unshielded PATH | --before PATH [--pairs N]] [--openssh-10.5 DIR]
//!       [--only sign|upstream|connect] [--docs FILE]
//!
//! `--docs FILE` writes what the run printed between the markers in FILE
//! (docs/benchmarks.md), with the command and the machine, replacing the
//! run there before.
//!
//! It is a member of the workspace, not a binary of the hopward package, so
//! `cargo install` does not ship it. `--hopward` defaults to the hopward
//! built beside it (target/release/hopward after the build above).
//!
//! The last table is upstream mode: ssh-agent signing directly and through
//! hopward (`--upstream`), same key, same run; `--only upstream` runs just
//! that table, `--only sign` just the sign tables (with ML-DSA if asked).
//!
//! The connection table is what every `ssh`, `git fetch` and Ansible task
//! pays: connect, list identities, close, one connection at a time, against
//! ssh-agent in windows that take turns (with `--before`, the earlier build
//! takes its turn too); `--only connect` runs just that table.
//!
//! `--unshielded` adds a third agent to the sign table: hopward built with
//! the `unshielded-benchmark` feature, which keeps keys open in memory, so
//! the cost of key shielding is measured in the same run. `--before PATH`
//! adds an earlier hopward build instead: in every row this build and the
//! earlier one take turns in pairs of short windows (six pairs unless
//! `--pairs N`; each build's windows add up to S seconds; which goes first
//! swaps every pair; ssh-agent's window sits in the middle), so a change is
//! compared with what came before it against the same ssh-agent figures,
//! neither gains from its place in the order, and the machine's drift falls
//! on both. A last table gives this ÷ before row by row: the median over the
//! pairs of windows, the lowest and highest pair, and CPU time per signature
//! (all threads of each agent, from /proc) over all windows.
//!
//! `--openssh-10.5 DIR` adds a table for `ssh-mldsa44-ed25519@openssh.com`
//! keys, which the system's ssh-agent does not know: hopward against the
//! ssh-agent of the OpenSSH 10.5 build in DIR, the key made and added with
//! that build's ssh-keygen and ssh-add.
//!
//! After the sign table, `openssl speed -seconds 3 ecdsap256` gives the
//! machine's limit for ECDSA P-256 (one core's signs/s times the cores),
//! and hopward's rate at 16 connections is put as a share of it.
//!
//! Both agents get the same keys through the real `ssh-add`. Each measure runs
//! N client threads, each on its own connection, sending sign requests for a
//! fixed time; a reply other than SSH_AGENT_SIGN_RESPONSE aborts the run.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Everything the run prints to standard output, kept for `--docs`.
static REPORT: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// `--docs FILE`: where the run's tables are written when it ends.
static DOCS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// `println!`, and the same line kept for `--docs`.
macro_rules! out {
    () => {
        out!("")
    };
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        println!("{line}");
        let mut report = REPORT.lock().unwrap_or_else(|e| e.into_inner());
        report.push_str(&line);
        report.push('\n');
    }};
}

/// The markers in the docs file between which a run's tables stand.
const DOCS_BEGIN: &str =
    "<!-- hopward-loadgen: begin (written by `hopward-loadgen --docs`; do not edit by hand) -->";
const DOCS_END: &str = "<!-- hopward-loadgen: end -->";

/// With `--docs FILE`: replaces what stands between the markers in FILE
/// (or appends them) with this run's tables, the command that made them
/// and the machine it ran on, so the published figures are always one
/// whole run and never edited by hand.
fn write_docs() {
    let Some(path) = DOCS.get() else { return };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let report = REPORT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let block = format!(
        "{DOCS_BEGIN}\n\n`hopward-loadgen {}`, {date}, {cpus} CPUs ({model}):\n\n```text\n{}```\n\n{DOCS_END}",
        args.join(" "),
        report.trim_start_matches('\n')
    );
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (text.find(DOCS_BEGIN), text.find(DOCS_END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{block}{}", &text[..b], &text[e + DOCS_END.len()..])
        }
        _ => format!("{}\n## The latest run\n\n{block}\n", text.trim_end()),
    };
    if let Err(e) = std::fs::write(path, new) {
        eprintln!("hopward-loadgen: cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    eprintln!("hopward-loadgen: tables written to {}", path.display());
}

struct Agent {
    child: Child,
    sock: PathBuf,
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(name: &'static str, program: &str, args: &[&str], sock: PathBuf) -> Agent {
    let mut cmd = Command::new(program);
    cmd.args(args).arg("-a").arg(&sock);
    launch(name, cmd, sock)
}

/// Starts an agent and waits until its socket answers.
fn launch(name: &str, mut cmd: Command, sock: PathBuf) -> Agent {
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    for _ in 0..500 {
        if UnixStream::connect(&sock).is_ok() {
            return Agent { child, sock };
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("{name} did not start");
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("run command");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn keygen(dir: &Path, name: &str, kind: &str, bits: &str) -> PathBuf {
    let path = dir.join(name);
    sh(Command::new("ssh-keygen")
        .args(["-q", "-N", "", "-t", kind, "-b", bits, "-C", name, "-f"])
        .arg(&path));
    path
}

/// The ML-DSA composite table (see the module comment): hopward's agents
/// against `openssh`'s ssh-agent, with one key made by its ssh-keygen.
fn mldsa_table(openssh: &Path, dir: &Path, hopwards: &[Agent], extra_head: &str, seconds: f64) {
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
fn print_row(label: &str, conns: usize, h: &Figures, o: &Figures, third: Option<&Figures>) {
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
fn before_windows(
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

struct BeforeRow {
    now: Figures,
    openssh: Figures,
    before: Figures,
    /// This build's rate ÷ the earlier one's, for each pair of windows.
    rate_pairs: Vec<f64>,
    /// This build's CPU time per signature ÷ the earlier one's.
    cpu_ratio: f64,
}

/// CPU time used so far by all threads of a process, in nanoseconds
/// (the first field of each thread's schedstat).
fn cpu_ns(pid: u32) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// This build against the earlier one, row by row: the median of the pairs
/// of windows, their spread, and CPU time per signature.
fn print_before_pairs(rows: &[(&str, usize, BeforeRow)]) {
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

fn key_blob(pubfile: &Path) -> Vec<u8> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(pubfile).unwrap();
    let b64 = text.split_whitespace().nth(1).unwrap();
    base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap()
}

fn put_string(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_be_bytes());
    out.extend_from_slice(b);
}

/// A framed sign request shaped like an SSH userauth request.
fn sign_frame(blob: &[u8], flags: u32) -> Vec<u8> {
    let mut data = Vec::new();
    put_string(&mut data, &[0x5a; 32]); // session id
    data.push(50); // SSH_MSG_USERAUTH_REQUEST
    put_string(&mut data, b"user");
    put_string(&mut data, b"ssh-connection");
    put_string(&mut data, b"publickey");
    data.push(1);
    put_string(&mut data, b"ssh-ed25519");
    put_string(&mut data, blob);
    let mut body = vec![13u8];
    put_string(&mut body, blob);
    put_string(&mut body, &data);
    body.extend_from_slice(&flags.to_be_bytes());
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

struct Figures {
    signs: usize,
    signs_per_sec: f64,
    p50_us: f64,
    p99_us: f64,
}

impl Figures {
    /// Equal windows of the same agent as one: the means.
    fn mean(windows: &[Figures]) -> Figures {
        let n = windows.len() as f64;
        let sum = |f: fn(&Figures) -> f64| windows.iter().map(f).sum::<f64>() / n;
        Figures {
            signs: windows.iter().map(|w| w.signs).sum(),
            signs_per_sec: sum(|w| w.signs_per_sec),
            p50_us: sum(|w| w.p50_us),
            p99_us: sum(|w| w.p99_us),
        }
    }
}

fn measure(sock: &Path, frame: &[u8], conns: usize, seconds: f64) -> Figures {
    let frame = frame.to_vec();
    measure_with(sock, move |_| frame.clone(), conns, seconds)
}

/// Runs `conns` client threads; each calls `setup` on its fresh connection
/// (e.g. to send a session-bind) and then repeats the frame it returns.
fn measure_with(
    sock: &Path,
    setup: impl Fn(&mut UnixStream) -> Vec<u8> + Send + Sync + Clone + 'static,
    conns: usize,
    seconds: f64,
) -> Figures {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let sock = sock.to_path_buf();
            let setup = setup.clone();
            std::thread::spawn(move || {
                let mut s = UnixStream::connect(&sock).expect("connect to agent");
                let frame = setup(&mut s);
                let mut lat = Vec::with_capacity(100_000);
                let mut buf = vec![0u8; 4096];
                while Instant::now() < deadline {
                    lat.push(timed_sign(&mut s, &frame, &mut buf));
                }
                lat
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    let pct = |p: f64| all[((all.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    Figures {
        signs: all.len(),
        signs_per_sec: all.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

/// The machine's limit for ECDSA P-256, measured now: `openssl speed
/// ecdsap256` signs on one core, times the cores. Neither agent signs
/// meanwhile, so the figure is the machine's at this point of the run.
fn print_ecdsa_limit(hopward_16: f64) {
    let output = Command::new("openssl")
        .args(["speed", "-seconds", "3", "ecdsap256"])
        .stderr(Stdio::null())
        .output();
    // `256 bits ecdsa (nistp256)   0.0000s   0.0001s  30151.9  11059.0`:
    // the third number is signs/s.
    let per_core = output.ok().and_then(|o| {
        String::from_utf8_lossy(&o.stdout).lines().find_map(|line| {
            let figures = line
                .trim_start()
                .strip_prefix("256 bits ecdsa (nistp256)")?;
            figures.split_whitespace().nth(2)?.parse::<f64>().ok()
        })
    });
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    out!();
    match per_core {
        Some(per_core) => out!(
            "ECDSA P-256 limit: {cores} cores × {per_core:.0} signs/s (`openssl speed -seconds 3 ecdsap256`, this run) = {:.0}/s; hopward at 16 connections: {:.0} % of it",
            per_core * cores,
            100.0 * hopward_16 / (per_core * cores)
        ),
        None => out!("ECDSA P-256 limit: not measured (`openssl speed ecdsap256` gave no figure)"),
    }
}

/// Sends one sign request frame and reads the signature; nanoseconds taken.
fn timed_sign(s: &mut UnixStream, frame: &[u8], buf: &mut [u8]) -> u64 {
    let t = Instant::now();
    s.write_all(frame).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let n = u32::from_be_bytes(len) as usize;
    s.read_exact(&mut buf[..n]).unwrap();
    assert_eq!(buf[0], 14, "agent refused to sign");
    t.elapsed().as_nanos() as u64
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

const USAGE: &str = "usage: hopward-loadgen [--seconds S] [--hopward PATH] [--unshielded PATH | --before PATH [--pairs N]] [--openssh-10.5 DIR] [--only sign|upstream|connect] [--docs FILE]";

fn usage(problem: &str) -> ! {
    eprintln!("hopward-loadgen: {problem}\n{USAGE}");
    std::process::exit(2)
}

/// `name` in the folder this program was built into, where cargo puts the
/// workspace's other binaries of the same profile.
fn beside_this_program(name: &str) -> PathBuf {
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/release"));
    dir.join(name)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut seconds = 3.0;
    let mut pairs = None;
    let mut hopward = beside_this_program("hopward");
    // A third agent: hopward built without shielding, or an earlier
    // hopward build ("before") to compare this one with in the same run.
    let mut third: Option<(&str, String)> = None;
    let mut openssh105: Option<PathBuf> = None;
    let mut only: Option<&str> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => match args.next().and_then(|v| v.parse::<f64>().ok()) {
                Some(s) if s > 0.0 => seconds = s,
                _ => usage("--seconds needs a positive number"),
            },
            "--pairs" => match args.next().and_then(|v| v.parse::<usize>().ok()) {
                Some(n) if n > 0 => pairs = Some(n),
                _ => usage("--pairs needs a positive whole number"),
            },
            "--hopward" => match args.next() {
                Some(path) => hopward = PathBuf::from(path),
                None => usage("--hopward needs a path"),
            },
            "--unshielded" | "--before" if third.is_some() => {
                usage("give one of --unshielded and --before")
            }
            "--unshielded" => match args.next() {
                Some(path) => third = Some(("unshielded", path)),
                None => usage("--unshielded needs a path"),
            },
            "--before" => match args.next() {
                Some(path) => third = Some(("before", path)),
                None => usage("--before needs the path of an earlier hopward build"),
            },
            "--openssh-10.5" => match args.next() {
                Some(path) => openssh105 = Some(PathBuf::from(path)),
                None => usage("--openssh-10.5 needs the folder of that build"),
            },
            "--only" => match args.next().as_deref() {
                Some("upstream") => only = Some("upstream"),
                Some("sign") => only = Some("sign"),
                Some("connect") => only = Some("connect"),
                _ => usage("--only takes: sign, upstream, connect"),
            },
            "--docs" => match args.next() {
                Some(path) => {
                    let _ = DOCS.set(PathBuf::from(path));
                }
                None => usage("--docs needs the file to write the tables into"),
            },
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => usage(&format!("unknown argument {other}")),
        }
    }
    let pairs = match (pairs, &third) {
        (Some(_), Some(("before", _))) | (None, _) => pairs.unwrap_or(6),
        (Some(_), _) => usage("--pairs goes with --before"),
    };
    if !hopward.is_file() {
        usage(&format!(
            "no hopward at {}: build it with `cargo build --release --workspace`, or give --hopward PATH",
            hopward.display()
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let hw = hopward.to_str().unwrap().to_string();
    if only == Some("upstream") {
        upstream_bench(dir.path(), &hw, seconds);
        write_docs();
        return;
    }
    let before = match &third {
        Some(("before", path)) => Some(path.as_str()),
        _ => None,
    };
    if only == Some("connect") {
        connect_bench(dir.path(), &hw, before, seconds, pairs);
        write_docs();
        return;
    }
    let keys = [
        (
            "Ed25519",
            keygen(dir.path(), "ed25519", "ed25519", "256"),
            0u32,
        ),
        ("ECDSA P-256", keygen(dir.path(), "p256", "ecdsa", "256"), 0),
        ("RSA-3072", keygen(dir.path(), "rsa", "rsa", "3072"), 2),
    ];
    let mut agents = vec![
        start(
            "hopward",
            &hw,
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
    // hopward's ECDSA P-256 rate at 16 connections, for the 2-core limit.
    let mut ecdsa_16 = None;
    for (label, key, flags) in &keys {
        let frame = sign_frame(&key_blob(&key.with_extension("pub")), *flags);
        for conns in [1usize, 4, 16] {
            if matches!(third, Some(("before", _))) {
                let row = before_windows(&agents, &frame, conns, seconds, pairs);
                print_row(label, conns, &row.now, &row.openssh, Some(&row.before));
                if (*label, conns) == ("ECDSA P-256", 16) {
                    ecdsa_16 = Some(row.now.signs_per_sec);
                }
                before_pairs.push((*label, conns, row));
            } else {
                let results: Vec<Figures> = agents
                    .iter()
                    .map(|a| measure(&a.sock, &frame, conns, seconds))
                    .collect();
                print_row(label, conns, &results[0], &results[1], results.get(2));
                if (*label, conns) == ("ECDSA P-256", 16) {
                    ecdsa_16 = Some(results[0].signs_per_sec);
                }
            }
        }
    }
    if let Some(rate) = ecdsa_16 {
        print_ecdsa_limit(rate);
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
    if only == Some("sign") {
        write_docs();
        return;
    }

    // Idle memory with 10 keys.
    let mut rss = Vec::new();
    for (name, program, args) in [
        ("hopward", hw.as_str(), &["daemon", "-D"][..]),
        ("ssh-agent", "/usr/bin/ssh-agent", &["-D"][..]),
    ] {
        let agent = start(
            if name == "hopward" {
                "hopward"
            } else {
                "ssh-agent"
            },
            program,
            args,
            dir.path().join(format!("{name}-idle.sock")),
        );
        for i in 0..10 {
            let key = keygen(dir.path(), &format!("idle-{name}-{i}"), "ed25519", "256");
            sh(Command::new("ssh-add")
                .arg("-q")
                .arg(&key)
                .env("SSH_AUTH_SOCK", &agent.sock));
        }
        std::thread::sleep(Duration::from_millis(300));
        rss.push((name, rss_kib(agent.child.id())));
    }
    out!();
    for (name, kib) in rss {
        out!(
            "idle RSS with 10 keys, {name}: {:.1} MB",
            kib as f64 / 1024.0
        );
    }
    connect_bench(dir.path(), &hw, before, seconds, pairs);
    policy_bench(dir.path(), &hw, seconds);
    upstream_bench(dir.path(), &hw, seconds);
    write_docs();
}

/// The connection path: connect, REQUEST_IDENTITIES, close, one connection
/// at a time, as each `ssh` or `git fetch` does, on agents holding one
/// Ed25519 key. Each agent's windows take turns with the others' (the
/// order rotates every round), so the shared machine's drift falls on all;
/// the ratio is the median over the rounds of the same-round ratios.
fn connect_bench(dir: &Path, hopward: &str, before: Option<&str>, seconds: f64, rounds: usize) {
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

/// hopward with the shipped default policy and its state (audit log) in
/// `dir`, whatever the policy of the user running the benchmark says.
fn start_plain(dir: &Path, hopward: &str, name: &str) -> Agent {
    let sock = dir.join(format!("{name}.sock"));
    let policy = dir.join("default-policy.toml");
    std::fs::write(&policy, include_str!("../../policy/default.toml")).expect("write the policy");
    let mut cmd = Command::new(hopward);
    cmd.args(["daemon", "-D", "-a"])
        .arg(&sock)
        .arg("--policy")
        .arg(&policy)
        .env("XDG_STATE_HOME", dir.join(format!("{name}-state")));
    launch(name, cmd, sock)
}

/// Connects, lists identities and closes, over and over for `seconds`;
/// each figure is one whole connection.
fn measure_connects(sock: &Path, seconds: f64) -> Figures {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let started = Instant::now();
    let mut lat = Vec::with_capacity(100_000);
    let mut buf = vec![0u8; 4096];
    while Instant::now() < deadline {
        let t = Instant::now();
        let mut s = UnixStream::connect(sock).expect("connect to agent");
        s.write_all(&[0, 0, 0, 1, 11]).unwrap();
        let mut len = [0u8; 4];
        s.read_exact(&mut len).unwrap();
        let n = u32::from_be_bytes(len) as usize;
        s.read_exact(&mut buf[..n]).unwrap();
        assert_eq!(buf[0], 12, "agent refused to list identities");
        drop(s);
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_unstable();
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p) as usize] as f64 / 1000.0;
    Figures {
        signs: lat.len(),
        signs_per_sec: lat.len() as f64 / elapsed,
        p50_us: pct(0.50),
        p99_us: pct(0.99),
    }
}

/// Upstream mode: `/usr/bin/ssh-agent` holding the keys, signed with
/// directly and through hopward `--upstream` (hopward holds no key), on 1
/// and 16 connections (medians of four pairs of windows), then the p50 hopward adds, from one client whose
/// requests alternate between the two, so both see the same load.
fn upstream_bench(dir: &Path, hopward: &str, seconds: f64) {
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
fn interleaved_p50_added(
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

fn request(s: &mut UnixStream, body: &[u8]) -> Vec<u8> {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    s.write_all(&frame).unwrap();
    let mut len = [0u8; 4];
    s.read_exact(&mut len).unwrap();
    let mut reply = vec![0u8; u32::from_be_bytes(len) as usize];
    s.read_exact(&mut reply).unwrap();
    reply
}

/// A sign request frame for a userauth request on session `sid`.
fn userauth_frame(key_blob: &[u8], sid: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    put_string(&mut data, sid);
    data.push(50);
    put_string(&mut data, b"deploy");
    put_string(&mut data, b"ssh-connection");
    put_string(&mut data, b"publickey");
    data.push(1);
    put_string(&mut data, b"ssh-ed25519");
    put_string(&mut data, key_blob);
    let mut body = vec![13u8];
    put_string(&mut body, key_blob);
    put_string(&mut body, &data);
    body.extend_from_slice(&0u32.to_be_bytes());
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn start_hopward(
    dir: &Path,
    hopward: &str,
    name: &str,
    policy: Option<&Path>,
    known: &Path,
) -> Agent {
    let sock = dir.join(format!("{name}.sock"));
    let mut cmd = Command::new(hopward);
    cmd.args(["daemon", "-D", "-a"]).arg(&sock);
    if let Some(p) = policy {
        cmd.arg("--policy").arg(p);
    }
    cmd.env("HOPWARD_KNOWN_HOSTS", known)
        .env("XDG_STATE_HOME", dir.join(format!("{name}-state")));
    launch(name, cmd, sock)
}

/// The cost of deciding: hopward with a 200-rule policy and a 10 000-line
/// known_hosts against hopward with the built-in policy and no known_hosts,
/// both on connections bound to a host (as every `ssh` connection is), and
/// ssh-agent on the same bound connections.
fn policy_bench(dir: &Path, hopward: &str, seconds: f64) {
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
fn decide_cost(policy_text: &str) -> f64 {
    use hopward_core::trust::binding::Purpose;
    use hopward_core::trust::context::{Destination, HopView, RequestContext};
    let policy = hopward_core::policy::file::parse_str(policy_text, "policy_200.toml")
        .expect("the benchmark policy is valid");
    let peer = std::sync::Arc::new(hopward_core::trust::peer::Peer {
        uid: 0,
        pid: None,
        exe: None,
        parents: Vec::new(),
        process: Default::default(),
    });
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
