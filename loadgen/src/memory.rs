//! Idle memory: each agent's resident size holding ten keys.

use std::process::Command;
use std::time::Duration;

use crate::agents::{keygen, sh, start};

/// Starts hopward and ssh-agent in turn, gives each ten Ed25519 keys and
/// prints their resident size once idle.
pub(crate) fn idle_memory(dir: &tempfile::TempDir, hw: &str) {
    // Idle memory with 10 keys.
    let mut rss = Vec::new();
    for (name, program, args) in [
        ("hopward", hw, &["daemon", "-D"][..]),
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
}

pub(crate) fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}
