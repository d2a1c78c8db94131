//! Load generator: signs against hopward and OpenSSH's ssh-agent, side by
//! side in the same run, and prints signs/s, p50/p99 latency and the ratio.
//!
//!   cargo build --release --workspace
//!   target/release/hopward-loadgen [--seconds S] [--hopward PATH]
//!       [--unshielded PATH | --before PATH [--pairs N]] [--openssh-10.5 DIR]
//!       [--only sign|upstream|connect] [--key ed25519|ecdsa|rsa]
//!       [--conns N] [--docs FILE]
//!
//! `--key` and `--conns` narrow the sign table to one key type and one
//! number of connections (each may be given more than once), for a quick
//! look at one path; the ECDSA limit is printed whenever ECDSA at 16
//! connections was measured.
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
//! machine's limit for ECDSA P-256 twice: one core's signs/s times the
//! cores, and every core signing at once (`-multi`); hopward's rate at 16
//! connections is put as a share of each, then again in rounds of short
//! windows taking turns with both. For RSA-3072, one core's `openssl speed
//! -seconds 3 rsa3072` times the cores says how many times ssh-agent's rate
//! OpenSSL's exponentiation alone gives on every core.
//!
//! Both agents get the same keys through the real `ssh-add`. Each measure runs
//! N client threads, each on its own connection, sending sign requests for a
//! fixed time; a reply other than SSH_AGENT_SIGN_RESPONSE aborts the run.

#[macro_use]
mod report;
mod agents;
mod connect;
mod measure;
mod memory;
mod policy_cost;
mod sign;
mod upstream;
mod wire;

use std::path::{Path, PathBuf};

use crate::connect::connect_bench;
use crate::memory::idle_memory;
use crate::policy_cost::policy_bench;
use crate::report::{DOCS, write_docs};
use crate::sign::{Selection, sign_bench};
use crate::upstream::upstream_bench;

const USAGE: &str = "usage: hopward-loadgen [--seconds S] [--hopward PATH] [--unshielded PATH | --before PATH [--pairs N]] [--openssh-10.5 DIR] [--only sign|upstream|connect] [--key ed25519|ecdsa|rsa] [--conns N] [--docs FILE]";

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
    let mut selection = Selection::default();
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
            "--key" => match args.next().as_deref() {
                Some(key @ ("ed25519" | "ecdsa" | "rsa")) => selection.keys.push(key.to_string()),
                _ => usage("--key takes: ed25519, ecdsa, rsa"),
            },
            "--conns" => match args.next().and_then(|v| v.parse::<usize>().ok()) {
                Some(n) if n > 0 => selection.conns.push(n),
                _ => usage("--conns needs a positive whole number"),
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
    sign_bench(&dir, &hw, &third, &openssh105, seconds, pairs, &selection);
    if only == Some("sign") {
        write_docs();
        return;
    }
    idle_memory(&dir, &hw);
    connect_bench(dir.path(), &hw, before, seconds, pairs);
    policy_bench(dir.path(), &hw, seconds);
    upstream_bench(dir.path(), &hw, seconds);
    write_docs();
}
