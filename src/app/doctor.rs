//! `hopward doctor`: what is unsafe or broken about this machine's agent
//! setup, each with how to fix it.
//!
//! Invariants: it only reads (the agent's status over the control channel,
//! /proc, the policy and known_hosts files, `ssh -G`); a check that cannot
//! be made is reported as a problem, never passed silently; the exit status
//! is 1 when anything is wrong.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::json;

use crate::app::cli::DoctorArgs;
use crate::app::other_agents;
use crate::protocol::control::{ControlRequest, LastReload, StatusReply};

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub(crate) struct Finding {
    /// A short stable name (`ssh-auth-sock`, `other-agents`, ...).
    pub(crate) check: &'static str,
    pub(crate) ok: bool,
    /// What was found.
    pub(crate) message: String,
    /// What to do about it (empty when fine).
    pub(crate) fix: String,
}

impl Finding {
    fn ok(check: &'static str, message: impl Into<String>) -> Finding {
        Finding {
            check,
            ok: true,
            message: message.into(),
            fix: String::new(),
        }
    }

    fn problem(check: &'static str, message: impl Into<String>, fix: impl Into<String>) -> Finding {
        Finding {
            check,
            ok: false,
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Runs every check.
pub(crate) fn run(args: &DoctorArgs) -> ExitCode {
    let findings = diagnose(args);
    let healthy = findings.iter().all(|f| f.ok);
    if args.json {
        println!("{:#}", json!({ "ok": healthy, "checks": findings }));
    } else {
        for f in &findings {
            println!(
                "{} {:<16} {}",
                if f.ok { "ok     " } else { "PROBLEM" },
                f.check,
                f.message
            );
            if !f.fix.is_empty() {
                println!("        {:<16} fix: {}", "", f.fix);
            }
        }
        if healthy {
            println!("nothing to fix");
        }
    }
    if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Every finding, in a fixed order.
pub(crate) fn diagnose(args: &DoctorArgs) -> Vec<Finding> {
    let socket = args
        .socket
        .clone()
        .unwrap_or_else(crate::paths::default_socket);
    let status = crate::app::client::control::<StatusReply>(&socket, &ControlRequest::Status);
    let mut out = vec![agent_finding(&socket, &status)];
    out.push(auth_sock_finding(&socket));
    out.push(other_agents_finding(&status));
    out.push(forward_agent_finding());
    let status = status.ok();
    out.extend(policy_findings(status.as_ref()));
    out.push(policy_owner_finding(status.as_ref()));
    if let Some(status) = &status {
        out.push(confirm_finding(status));
        out.push(memlock_finding(status));
        if let Some(finding) = audit_finding(status) {
            out.push(finding);
        }
    }
    out
}

fn agent_finding(socket: &Path, status: &Result<StatusReply, String>) -> Finding {
    match status {
        Ok(v) => Finding::ok(
            "agent",
            format!(
                "hopward {} (pid {}) answers on {}",
                v.version,
                v.pid,
                socket.display()
            ),
        ),
        Err(e) => Finding::problem(
            "agent",
            format!("no hopward agent answers on {}: {e}", socket.display()),
            "start it (systemctl --user enable --now hopward.socket, or hopward daemon), \
             or name its socket with -a",
        ),
    }
}

/// Whether `SSH_AUTH_SOCK` leads to this hopward: the same path, or a
/// socket where a hopward answers the control channel.
fn auth_sock_finding(socket: &Path) -> Finding {
    let Some(env) = std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) else {
        return Finding::problem(
            "ssh-auth-sock",
            "SSH_AUTH_SOCK is not set: ssh and ssh-add use no agent",
            "add eval \"$(hopward env)\" to your shell profile",
        );
    };
    let env = PathBuf::from(env);
    let same = env == socket
        || std::fs::canonicalize(&env)
            .ok()
            .zip(std::fs::canonicalize(socket).ok())
            .is_some_and(|(a, b)| a == b);
    if same {
        return Finding::ok("ssh-auth-sock", format!("points at {}", env.display()));
    }
    match crate::app::client::control::<StatusReply>(&env, &ControlRequest::Status) {
        Ok(v) => Finding::ok(
            "ssh-auth-sock",
            format!(
                "points at {}, another hopward (pid {})",
                env.display(),
                v.pid
            ),
        ),
        Err(_) => Finding::problem(
            "ssh-auth-sock",
            format!(
                "SSH_AUTH_SOCK={} is not hopward{}: ssh signs there without hopward's policy",
                env.display(),
                other_agents::Roots::from_env()
                    .and_then(|roots| {
                        other_agents::find(&roots)
                            .into_iter()
                            .find(|r| r.socket.as_deref() == Some(env.as_path()))
                    })
                    .map(|r| format!(" but {}", r.what))
                    .unwrap_or_default()
            ),
            format!(
                "set it after whatever else sets it: eval \"$(hopward env)\" (or export SSH_AUTH_SOCK={})",
                socket.display()
            ),
        ),
    }
}

/// Other agents running as this user (ssh-agent, gcr-ssh-agent and
/// gnome-keyring's ssh component, by process; systemd's word on their
/// units) and the ones set to start or listening ([`other_agents`]: gcr,
/// Debian's ssh-agent unit, gnome-keyring, gpg-agent, 1Password, Bitwarden,
/// KeePassXC, OpenSSH's ~/.ssh/agent), each with how to hand over.
fn other_agents_finding(status: &Result<StatusReply, String>) -> Finding {
    let mut found = agent_processes(status);
    let mut fixes = Vec::new();
    let units = match other_agent_units() {
        Ok(units) => {
            found.extend(units);
            String::new()
        }
        Err(why) => format!(" (systemd user units not checked: {why})"),
    };
    if !found.is_empty() {
        fixes.push(
            "stop them and keep them from starting: systemctl --user mask --now \
             gcr-ssh-agent.socket gcr-ssh-agent.service ssh-agent.socket ssh-agent.service"
                .to_string(),
        );
    }
    match other_agents::Roots::from_env() {
        Some(roots) => {
            for rival in other_agents::find(&roots) {
                fixes.push(format!("{}: {}", rival.what, rival.fix));
                found.push(rival.what);
            }
        }
        None => found.push("(HOME is not set: agents started from it not checked)".into()),
    }
    if found.is_empty() {
        Finding::ok(
            "other-agents",
            format!("no other SSH agent runs as you or is set to start{units}"),
        )
    } else {
        fixes.push("hopward install --hand-over does what it can of this".into());
        Finding::problem(
            "other-agents",
            format!(
                "other agents claim SSH_AUTH_SOCK: {}{units}",
                found.join(", ")
            ),
            fixes.join("; "),
        )
    }
}

/// Other agents' processes running as this user.
fn agent_processes(status: &Result<StatusReply, String>) -> Vec<String> {
    let ours = status.as_ref().ok().map(|v| u64::from(v.pid));
    let me = crate::sys::effective_uid();
    let mut found = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec!["(cannot read /proc: check by hand with pgrep -a ssh-agent)".into()];
    };
    for entry in dir.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|p| p.parse::<u64>().ok())
        else {
            continue;
        };
        if Some(pid) == ours || pid == u64::from(std::process::id()) {
            continue;
        }
        use std::os::unix::fs::MetadataExt as _;
        if entry.metadata().map(|m| m.uid()).ok() != Some(me) {
            continue;
        }
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else {
            continue;
        };
        let comm = comm.trim();
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let is_agent = match comm {
            "ssh-agent" | "gcr-ssh-agent" => true,
            "gnome-keyring-d" => cmdline
                .split(|&b| b == 0)
                .any(|arg| arg.windows(3).any(|w| w == b"ssh")),
            _ => false,
        };
        if is_agent {
            found.push(format!("{comm} (pid {pid})"));
        }
    }
    found.sort();
    found
}

/// Other agents' systemd user units that are active (a socket-activated
/// agent has no process until its first use).
fn other_agent_units() -> Result<Vec<String>, String> {
    const UNITS: [&str; 4] = [
        "gcr-ssh-agent.socket",
        "gcr-ssh-agent.service",
        "ssh-agent.socket",
        "ssh-agent.service",
    ];
    let out = std::process::Command::new("systemctl")
        .args(["--user", "is-active"])
        .args(UNITS)
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("cannot run systemctl: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let states: Vec<&str> = text.lines().collect();
    if states.len() != UNITS.len() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(crate::text::clean(err.trim(), 120));
    }
    Ok(UNITS
        .iter()
        .zip(states)
        .filter(|(_, state)| *state == "active")
        .map(|(unit, _)| format!("{unit} (systemd user unit)"))
        .collect())
}

/// `ForwardAgent yes` for every host, as ssh itself reads each
/// configuration file (`ssh -G -F FILE` for a name no Host block names):
/// the user's `~/.ssh/config` (from `$HOME`) and the system-wide file.
fn forward_agent_finding() -> Finding {
    let mut files = Vec::new();
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        files.push(PathBuf::from(home).join(".ssh/config"));
    }
    files.push(PathBuf::from("/etc/ssh/ssh_config"));
    let mut forwarding = Vec::new();
    for file in files.iter().filter(|f| f.exists()) {
        let out = std::process::Command::new("ssh")
            .arg("-G")
            .arg("-F")
            .arg(file)
            .arg("hopward-doctor.invalid")
            .stdin(std::process::Stdio::null())
            .output();
        let out = match out {
            Ok(out) if out.status.success() => out,
            Ok(out) => {
                return Finding::problem(
                    "forward-agent",
                    format!(
                        "ssh -G cannot read {}: {}",
                        file.display(),
                        String::from_utf8_lossy(&out.stderr).trim()
                    ),
                    format!("fix the error in {}", file.display()),
                );
            }
            Err(e) => {
                return Finding::problem(
                    "forward-agent",
                    format!("cannot run ssh -G: {e}"),
                    "install the OpenSSH client",
                );
            }
        };
        let text = String::from_utf8_lossy(&out.stdout);
        let forwards = text.lines().any(|l| {
            let mut words = l.split_whitespace();
            words.next() == Some("forwardagent") && words.next().is_some_and(|v| v != "no")
        });
        if forwards {
            forwarding.push(file.display().to_string());
        }
    }
    if forwarding.is_empty() {
        Finding::ok(
            "forward-agent",
            "ssh does not forward your agent by default",
        )
    } else {
        Finding::problem(
            "forward-agent",
            format!(
                "ssh forwards your agent to every host (ForwardAgent under Host * or at the top \
                 of {}): root on any of them can use it",
                forwarding.join(" and ")
            ),
            "remove it and reach hosts behind a bastion with ProxyJump (Host db1 / \
             ProxyJump bastion, or ssh -J bastion db1), which forwards nothing; keep \
             ForwardAgent yes only in the Host blocks that need it",
        )
    }
}

/// The policy file: loaded by the agent as it is on disk, and naming hosts
/// that known_hosts knows.
fn policy_findings(status: Option<&StatusReply>) -> Vec<Finding> {
    let loaded = status.and_then(|v| v.policy.file.as_deref().map(PathBuf::from));
    let watched = status.and_then(|v| v.policy.watched.as_deref().map(PathBuf::from));
    let path = loaded
        .clone()
        .or(watched)
        .or_else(|| crate::policy::store::resolve_path(None));
    let Some(path) = path else {
        return vec![Finding::ok(
            "policy",
            "no policy file: the built-in policy applies",
        )];
    };
    let mut out = Vec::new();
    let on_disk = match crate::policy::file::parse_file(&path) {
        Ok(policy) => Some(policy),
        Err(errors) if path.exists() || loaded.is_some() => {
            out.push(Finding::problem(
                "policy",
                format!(
                    "{} has errors: {}",
                    path.display(),
                    errors
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join("; ")
                ),
                format!(
                    "fix them (hopward policy check {}); {}",
                    path.display(),
                    if status.is_some_and(|s| matches!(
                        s.policy.last_reload,
                        LastReload::RefusingForwarded(_)
                    )) {
                        "until then the agent, which has loaded no good policy since it \
                         started, serves local use as the built-in policy does and refuses \
                         everything forwarded"
                    } else {
                        "the agent keeps its last good policy"
                    }
                ),
            ));
            None
        }
        Err(_) => {
            out.push(Finding::ok(
                "policy",
                format!(
                    "no {} yet: the built-in policy applies (hopward policy init writes one)",
                    path.display()
                ),
            ));
            return out;
        }
    };
    if let (Some(status), Some(policy)) = (status, &on_disk) {
        let digest: String = policy.digest.iter().map(|b| format!("{b:02x}")).collect();
        let kept = status.policy.last_reload != LastReload::Ok;
        if status.policy.digest != digest || loaded.is_none() || kept {
            out.push(Finding::problem(
                "policy",
                format!("the agent has not loaded {} as it is now", path.display()),
                "reload it: systemctl --user reload hopward, or kill -HUP the agent's pid",
            ));
        } else {
            out.push(Finding::ok(
                "policy",
                format!("the agent runs {} as it is on disk", path.display()),
            ));
        }
    }
    if let Some(policy) = &on_disk {
        let known = crate::app::policy_cmd::known_hosts_for(policy);
        out.push(hashed_finding(&path, &known));
        let unknown = crate::policy::file::unknown_name_warnings(&path, &known);
        if unknown.is_empty() {
            out.push(Finding::ok(
                "known-hosts",
                "every host the policy names is in a known_hosts file",
            ));
        } else {
            out.push(Finding::problem(
                "known-hosts",
                unknown
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; "),
                "log in to those hosts once (ssh-keygen -F NAME shows the entry), or add their \
                 keys to a known_hosts file listed under [known_hosts] files",
            ));
        }
    }
    out
}

/// Hashed known_hosts (`HashKnownHosts yes`): said, with the rules whose
/// host globs cannot match until ssh reports names (`hopward ssh-config`).
fn hashed_finding(
    path: &std::path::Path,
    known: &crate::trust::known_hosts::KnownHosts,
) -> Finding {
    if !known.has_hashed() {
        return Finding::ok("hashed-known-hosts", "known_hosts has no hashed entries");
    }
    let learned = known.learned_list().len();
    let stuck = crate::policy::file::hashed_glob_warnings(path, known);
    if stuck.is_empty() {
        return Finding::ok(
            "hashed-known-hosts",
            format!(
                "known_hosts is hashed (HashKnownHosts yes); {learned} host names learned from \
                 ssh, and every host glob in the policy matches one"
            ),
        );
    }
    Finding::problem(
        "hashed-known-hosts",
        format!(
            "known_hosts is hashed (HashKnownHosts yes), {learned} host names learned: {}",
            stuck
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ),
        "put the lines of `hopward ssh-config` in ~/.ssh/config (hopward install --ssh-config \
         adds an Include) and log in to those hosts once by name",
    )
}

/// Whether another user could have written the policy file or one of its
/// includes (or a directory on the way): the agent refuses such a file, so
/// it runs an older policy, or refuses everything forwarded.
fn policy_owner_finding(status: Option<&StatusReply>) -> Finding {
    let path = status
        .and_then(|v| {
            v.policy
                .file
                .as_deref()
                .or(v.policy.watched.as_deref())
                .map(PathBuf::from)
        })
        .or_else(|| crate::policy::store::resolve_path(None));
    let Some(path) = path.filter(|p| p.exists()) else {
        return Finding::ok("policy-owner", "no policy file to check");
    };
    let unsafe_files = crate::policy::file::unsafe_files(&path);
    if unsafe_files.is_empty() {
        return Finding::ok(
            "policy-owner",
            format!(
                "only you or root can write {} and its includes",
                path.display()
            ),
        );
    }
    Finding::problem(
        "policy-owner",
        unsafe_files
            .iter()
            .map(|u| u.message.clone())
            .collect::<Vec<_>>()
            .join("; "),
        unsafe_files
            .iter()
            .map(|u| u.fix.clone())
            .collect::<Vec<_>>()
            .join("; "),
    )
}

fn confirm_finding(status: &StatusReply) -> Finding {
    let c = &status.confirm;
    let detail = &c.detail;
    if c.can_ask {
        Finding::ok("confirm", format!("can ask: {detail}"))
    } else {
        Finding::problem(
            "confirm",
            format!("no way to ask, so every confirm is a deny: {detail}"),
            format!(
                "run a notification daemon on the session bus, {}, \
                 or set [confirm] method = \"command\" with command = [\"/path/to/prog\"]",
                crate::keys::askpass_env::SETUP_HINT
            ),
        )
    }
}

fn memlock_finding(status: &StatusReply) -> Finding {
    let keys = &status.keys;
    let open: Vec<String> = keys
        .iter()
        .filter(|k| !k.locked_in_memory)
        .map(|k| crate::text::clean(&k.comment, 40))
        .collect();
    if open.is_empty() {
        Finding::ok(
            "memlock",
            format!("{} keys held, all in locked memory", keys.len()),
        )
    } else {
        Finding::problem(
            "memlock",
            format!(
                "{} of {} keys are not in locked memory and may reach swap: {}",
                open.len(),
                keys.len(),
                open.join(", ")
            ),
            "raise the memlock limit for the agent (LimitMEMLOCK=8M in a systemd drop-in, \
             or ulimit -l before starting it) and add the keys again",
        )
    }
}

/// The audit log: a problem while writing it fails now, and once any
/// record was lost since the agent started (the log has a hole until then;
/// a restart, after looking, clears it). Failures that ended with nothing
/// lost are shown, not flagged. `None` for an agent that does not say.
fn audit_finding(status: &StatusReply) -> Option<Finding> {
    let Some(a) = status.audit.as_ref()?.as_ref() else {
        return Some(Finding::problem(
            "audit",
            "the agent writes no audit file (no $XDG_STATE_HOME or $HOME): decisions reach \
             only its log",
            "set XDG_STATE_HOME or HOME for the agent, or [audit] path in the policy",
        ));
    };
    let file = crate::text::clean(&a.file, 200);
    let error = crate::text::clean(a.last_error.as_deref().unwrap_or("?"), 200);
    let fix = format!(
        "make room on the file system of {file} and check that its directory is yours \
         (mode 0700); waiting records are written once it works"
    );
    if !a.writing {
        return Some(Finding::problem(
            "audit",
            format!(
                "cannot write {file} since {}: {error}; {} records waiting, {} lost",
                a.last_error_at.as_deref().unwrap_or("?"),
                a.waiting_records,
                a.lost_records
            ),
            fix,
        ));
    }
    if a.lost_records > 0 {
        return Some(Finding::problem(
            "audit",
            format!(
                "{} audit records were lost since the agent started ({} failed writes, last: \
                 {error}); {file} is written again",
                a.lost_records, a.write_errors
            ),
            format!("{fix}; restart the agent to clear this once you have looked"),
        ));
    }
    if let Some(journal) = a.journal.as_ref().filter(|j| j.dropped_records > 0) {
        return Some(Finding::problem(
            "audit",
            format!(
                "{} audit records did not reach the journal ([audit] journald = true): {}",
                journal.dropped_records,
                crate::text::clean(journal.last_error.as_deref().unwrap_or("?"), 200)
            ),
            "check that systemd-journald runs (systemctl status systemd-journald); the \
             audit file has every record; restart the agent to clear this once you have looked",
        ));
    }
    let mut message = format!("writing {file}");
    if a.journal.is_some() {
        message.push_str(" and sending to the journal");
    }
    if a.write_errors > 0 {
        message.push_str(&format!(
            " (again: {} failed writes earlier, nothing lost; last: {error})",
            a.write_errors
        ));
    }
    Some(Finding::ok("audit", message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    /// A status answer as the agent would send `v`.
    fn status(v: Value) -> StatusReply {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn no_way_to_ask_names_every_way_to_set_one_up() {
        let finding = confirm_finding(&status(json!({
            "confirm": { "can_ask": false, "detail": "desktop: no bus" }
        })));
        assert!(!finding.ok);
        assert_eq!(
            finding.message,
            "no way to ask, so every confirm is a deny: desktop: no bus"
        );
        assert_eq!(
            finding.fix,
            "run a notification daemon on the session bus, set SSH_ASKPASS (with DISPLAY), \
             or set [confirm] method = \"command\" with command = [\"/path/to/prog\"]"
        );
        let ok = confirm_finding(&status(
            json!({ "confirm": { "can_ask": true, "detail": "askpass x" } }),
        ));
        assert!(ok.ok);
        assert_eq!(ok.message, "can ask: askpass x");
    }

    #[test]
    fn audit_is_a_problem_while_failing_and_after_a_loss_not_after_a_recovery() {
        let finding = |audit: Value| audit_finding(&status(json!({ "audit": audit })));
        assert_eq!(audit_finding(&status(json!({}))), None);
        assert!(!finding(Value::Null).unwrap().ok);
        let ok = finding(json!({ "file": "/a", "writing": true }));
        assert!(ok.unwrap().ok);
        let failing = finding(json!({ "file": "/a", "writing": false, "write_errors": 1 }));
        assert!(!failing.unwrap().ok);
        let recovered = finding(json!({ "file": "/a", "writing": true, "write_errors": 4 }));
        let recovered = recovered.unwrap();
        assert!(recovered.ok);
        assert!(
            recovered.message.contains("nothing lost"),
            "{}",
            recovered.message
        );
        let journal = finding(json!({ "file": "/a", "writing": true,
            "journal": { "dropped_records": 0, "last_error": null } }))
        .unwrap();
        assert!(journal.ok && journal.message.ends_with("and sending to the journal"));
        let dropped = finding(json!({ "file": "/a", "writing": true,
            "journal": { "dropped_records": 2, "last_error": "/run/systemd/journal/socket: gone" } }))
        .unwrap();
        assert!(!dropped.ok);
        assert!(
            dropped
                .message
                .starts_with("2 audit records did not reach the journal"),
            "{}",
            dropped.message
        );
        let lost =
            finding(json!({ "file": "/a", "writing": true, "write_errors": 4, "lost_records": 9 }));
        let lost = lost.unwrap();
        assert!(!lost.ok);
        assert!(
            lost.message.starts_with("9 audit records were lost"),
            "{}",
            lost.message
        );
    }
}
