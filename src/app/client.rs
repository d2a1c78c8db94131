//! The command-line side of the control channel: `status`, `lock
//! --forwarded`, `unlock --forwarded` and `grants`.

use std::io::Read as _;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::app::cli::{GrantsAction, GrantsArgs, LockArgs, SocketArg, StatusArgs};
use crate::protocol::control::{
    BrakeStatus, CertificateStatus, ControlRequest, EmptyReply, LastReload, LearnedHosts,
    LockedReply, RevokedReply, StatusReply, read_reply,
};

/// `-a`, else `$SSH_AUTH_SOCK`, else the default socket.
pub(crate) fn socket_path(arg: &SocketArg) -> PathBuf {
    socket_choice(arg).0
}

/// The socket commands talk to, and where that path came from.
fn socket_choice(arg: &SocketArg) -> (PathBuf, &'static str) {
    if let Some(socket) = &arg.socket {
        return (socket.clone(), "-a");
    }
    match std::env::var_os("SSH_AUTH_SOCK").filter(|s| !s.is_empty()) {
        Some(env) => (PathBuf::from(env), "$SSH_AUTH_SOCK"),
        None => (crate::paths::default_socket(), "the default socket"),
    }
}

/// What to say when nothing listens on `socket`: which socket was tried,
/// why that one, and how to start an agent there.
fn no_agent(socket: &std::path::Path, from: &str, error: &std::io::Error) -> String {
    let default = crate::paths::default_socket();
    let start = if socket == default {
        "start one with `systemctl --user start hopward.socket` (after `hopward install`) \
         or `hopward daemon`"
            .to_string()
    } else {
        format!(
            "start one there with `hopward daemon -a {}`",
            socket.display()
        )
    };
    format!(
        "no agent is listening on {} ({from}: {error}); {start}, and point SSH_AUTH_SOCK \
         at it (`eval \"$(hopward env)\"` for the default socket)",
        socket.display()
    )
}

/// Whether connecting failed because no agent is there at all (no socket
/// file, or a socket nobody listens on), rather than one that misbehaves.
fn nobody_there(error: &std::io::Error) -> bool {
    matches!(
        error.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
    )
}

/// Sends one control request and returns the daemon's answer.
pub(crate) fn control<R: DeserializeOwned>(
    socket: &std::path::Path,
    op: &ControlRequest,
) -> Result<R, String> {
    control_from(socket, None, op)
}

/// [`control`], giving up after `timeout` for each read and write (ssh's
/// `KnownHostsCommand` must not hold ssh up on a stuck agent).
pub(crate) fn control_within<R: DeserializeOwned>(
    socket: &std::path::Path,
    op: &ControlRequest,
    timeout: Duration,
) -> Result<R, String> {
    control_timed(socket, None, op, timeout)
}

/// [`control`]; when nothing listens there, says where `socket` came from
/// (`from`) and how to start an agent.
fn control_from<R: DeserializeOwned>(
    socket: &std::path::Path,
    from: Option<&str>,
    op: &ControlRequest,
) -> Result<R, String> {
    control_timed(socket, from, op, Duration::from_secs(10))
}

fn control_timed<R: DeserializeOwned>(
    socket: &std::path::Path,
    from: Option<&str>,
    op: &ControlRequest,
    timeout: Duration,
) -> Result<R, String> {
    let fail = |e: std::io::Error| format!("cannot talk to the agent at {}: {e}", socket.display());
    let mut s = UnixStream::connect(socket).map_err(|e| match from {
        Some(from) if nobody_there(&e) => no_agent(socket, from, &e),
        _ => fail(e),
    })?;
    s.set_read_timeout(Some(timeout)).map_err(fail)?;
    s.set_write_timeout(Some(timeout)).map_err(fail)?;
    let body = crate::daemon::control::request(op);
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    // Not `write_all`: an agent that hung up is an error to report here,
    // not SIGPIPE ending the command.
    crate::sys::send_all(&s, &frame).map_err(fail)?;
    let mut len = [0u8; 4];
    s.read_exact(&mut len).map_err(fail)?;
    let len = u32::from_be_bytes(len) as usize;
    if len > crate::protocol::frame::MAX_FRAME {
        return Err("the agent sent an oversized reply".into());
    }
    let mut reply = vec![0u8; len];
    s.read_exact(&mut reply).map_err(fail)?;
    match reply.split_first() {
        Some((&crate::protocol::reply::SSH_AGENT_SUCCESS, rest)) => {
            let mut r = crate::ssh::wire::Reader::new(rest);
            let text = r.text("control reply").map_err(|e| e.to_string())?;
            read_reply(text)
        }
        // The agent took the request and it failed there.
        Some((&crate::protocol::reply::SSH_AGENT_EXTENSION_FAILURE, _)) => Err(format!(
            "the agent at {} could not carry out the request (its log says why)",
            socket.display()
        )),
        _ => Err(format!(
            "the agent at {} refused (not hopward, or this connection is not local and unforwarded)",
            socket.display()
        )),
    }
}

fn run<R: DeserializeOwned>(arg: &SocketArg, op: ControlRequest) -> Result<R, ExitCode> {
    let (socket, from) = socket_choice(arg);
    control_from(&socket, Some(from), &op).map_err(|e| {
        eprintln!("hopward: {e}");
        ExitCode::FAILURE
    })
}

fn duration(secs: u64) -> String {
    match secs {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// `[forwarded] brake` as `status` shows it: the limit, then each first
/// hop with its count, `ASKING` once past the limit.
fn brake_line(brake: Option<&BrakeStatus>) -> Option<String> {
    let brake = brake?;
    let mut line = format!(
        "more than {} hosts per {} through one bastion are asked",
        brake.hosts, brake.per
    );
    for hop in &brake.hops {
        line.push_str(&format!(
            "; {}: {} host(s){}",
            crate::text::clean(&hop.hop, 64),
            hop.hosts,
            if hop.engaged { ", ASKING" } else { "" }
        ));
    }
    Some(line)
}

/// A certificate's expiry as `status` shows it: when it ends (UTC) and how
/// long from now, or that it has ended and when the agent drops it.
fn certificate_note(cert: Option<&CertificateStatus>) -> Option<String> {
    let cert = cert?;
    let Some(before) = cert.valid_before else {
        return Some("certificate valid forever".into());
    };
    let when = crate::daemon::audit::rfc3339_at(before);
    let left = cert.expires_in.unwrap_or(0);
    Some(if left > 0 {
        format!(
            "certificate expires {when} (in {})",
            duration(left.unsigned_abs())
        )
    } else {
        format!(
            "certificate EXPIRED {when}, never signs, dropped in {}",
            duration(cert.drop_in.unwrap_or(0))
        )
    })
}

/// What `status` says of host names learned from ssh (absent from an
/// older daemon's answer).
fn learned_line(learned: Option<&LearnedHosts>) -> Option<String> {
    let learned = learned?;
    let count = learned.count;
    if count == 0 {
        return Some(
            "none learned from ssh (under hashed known_hosts, `hopward ssh-config` lets ssh \
             report them)"
                .into(),
        );
    }
    let newest: Vec<String> = learned
        .newest
        .iter()
        .take(5)
        .map(|h| crate::text::clean(&h.name, 64))
        .collect();
    Some(format!(
        "{count} learned from ssh, each confirmed by known_hosts (newest: {})",
        newest.join(", ")
    ))
}

/// Renders `status` for people.
pub(crate) fn render_status(v: &StatusReply, socket: &std::path::Path) -> String {
    let mut out = String::new();
    let s = |v: &Option<String>| v.as_deref().unwrap_or("-").to_string();
    out.push_str(&format!(
        "hopward {} (pid {}) on {}\n",
        v.version,
        v.pid,
        socket.display()
    ));
    out.push_str(&format!(
        "agent:       {}; forwarded use {}\n",
        if v.locked { "LOCKED" } else { "unlocked" },
        if v.forwarded_locked {
            format!(
                "LOCKED ({}; undo with hopward unlock --forwarded)",
                v.forwarded_locked_because.as_deref().unwrap_or("?")
            )
        } else {
            "allowed by policy".to_string()
        }
    ));
    let p = &v.policy;
    let joined = |errors: &[String]| {
        errors
            .iter()
            .map(|e| crate::text::clean(e, 300))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let reload = match &p.last_reload {
        LastReload::Ok => "ok".to_string(),
        LastReload::RefusingForwarded(errors) => format!(
            "FAILED, no good policy loaded since start: local use is served as the built-in \
             policy does and everything forwarded is REFUSED until the file is fixed: {}",
            joined(errors)
        ),
        LastReload::KeptLastGoodPolicy(errors) => {
            format!("FAILED, keeping the last good policy: {}", joined(errors))
        }
    };
    let file = match (&p.file, &p.watched) {
        (Some(file), _) => file.clone(),
        (None, Some(watched)) => format!("built-in (no {watched} yet; it is read once written)"),
        (None, None) => "built-in".to_string(),
    };
    // An agent from before the counts has no reloads field.
    let reloads = match (p.reloads, p.generation) {
        (Some(1), Some(changed)) => format!(", 1 reload ({changed} changed it)"),
        (Some(n), Some(changed)) => format!(", {n} reloads ({changed} changed it)"),
        _ => String::new(),
    };
    out.push_str(&format!(
        "policy:      {} ({} rules), last reload {}{}\n",
        file, p.rules, reload, reloads
    ));
    let c = &v.confirm;
    out.push_str(&format!(
        "confirm:     {}, {} ({}), timeout {}s\n",
        c.method,
        if c.can_ask {
            "can ask"
        } else {
            "CANNOT ask, confirm decisions are denied"
        },
        c.detail,
        c.timeout_secs
    ));
    let conns = v
        .connections
        .iter()
        .map(|(k, n)| format!("{k} {n}"))
        .collect::<Vec<_>>()
        .join(", ");
    out.push_str(&format!(
        "connections: {}\n",
        if conns.is_empty() {
            "none".into()
        } else {
            conns
        }
    ));
    if let Some(line) = brake_line(v.brake.as_ref()) {
        out.push_str(&format!("brake:       {line}\n"));
    }
    out.push_str(&format!("prompts:     {} pending\n", v.pending_prompts));
    if let Some(line) = learned_line(v.learned_hosts.as_ref()) {
        out.push_str(&format!("host names:  {line}\n"));
    }
    if let Some(line) = audit_line(v) {
        out.push_str(&format!("audit:       {line}\n"));
    }
    out.push_str(&format!("keys ({}):\n", v.keys.len()));
    for k in &v.keys {
        let mut notes = Vec::new();
        if k.confirm {
            notes.push("confirm (ssh-add -c)".to_string());
        }
        if k.destination_constrained {
            notes.push("destination-constrained (ssh-add -h)".to_string());
        }
        if let Some(left) = k.expires_in {
            notes.push(format!("{} left", duration(left)));
        }
        if let Some(note) = certificate_note(k.certificate.as_ref()) {
            notes.push(note);
        }
        if !k.locked_in_memory {
            notes.push("not locked in memory (may reach swap)".to_string());
        }
        if let Some(provider) = &k.provider {
            notes.push(format!(
                "on a token via {}",
                crate::text::clean(provider, 80)
            ));
        }
        out.push_str(&format!(
            "  {:<20} {:<50} {:<14} {}\n",
            crate::text::clean(&k.comment, 20),
            k.fingerprint,
            k.key_type,
            notes.join(", ")
        ));
    }
    if let Some(up) = &v.upstream {
        let state = match up.reachable {
            Some(true) => "reachable".to_string(),
            Some(false) => format!("UNREACHABLE ({})", s(&up.error)),
            None => "not asked yet".to_string(),
        };
        out.push_str(&format!(
            "upstream:    {}, {state}\n",
            crate::text::clean(&up.socket, 200)
        ));
        if up.session_bind == Some(false) {
            out.push_str(
                "             it knows no session-bind: only hopward's policy restricts its keys\n",
            );
        }
        out.push_str(&format!("upstream keys ({}):\n", up.keys.len()));
        for k in &up.keys {
            out.push_str(&format!(
                "  {:<20} {:<50} {:<14} {}\n",
                crate::text::clean(&k.comment, 20),
                k.fingerprint,
                crate::text::clean(&k.key_type, 40),
                if k.shadowed {
                    "upstream, also held by hopward (hopward signs)"
                } else {
                    "upstream"
                }
            ));
        }
    }
    // Before the grants: `hopward grants` prints what follows them.
    jumps_lines(v, &mut out);
    out.push_str(&format!("grants ({}):\n", v.grants.len()));
    for g in &v.grants {
        let route = if g.hosts.is_empty() {
            &g.chain
        } else {
            &g.hosts
        };
        let route = if route.is_empty() {
            "(local)".to_string()
        } else {
            route.join(">")
        };
        // The id is not padded: the width never applied to the JSON
        // number it was formatted from, and the line keeps its bytes.
        out.push_str(&format!(
            "  #{} {} {} user {} {}, {} left (rule {})\n",
            g.id,
            g.key,
            route,
            g.user.as_deref().unwrap_or("-"),
            g.purpose,
            duration(g.expires_in),
            g.rule
        ));
    }
    out
}

/// The jump binds of `status`: each remembered login of a local ssh
/// process that its parent's next login may tunnel through (ProxyJump).
fn jumps_lines(v: &StatusReply, out: &mut String) {
    let Some(jumps) = &v.jumps else {
        return; // an agent from before jump routes
    };
    out.push_str(&format!("jump hosts ({}):\n", jumps.len()));
    for j in jumps {
        let route: Vec<String> = j.route.iter().map(|h| crate::text::clean(h, 64)).collect();
        out.push_str(&format!(
            "  ssh pid {}: {} (jump), bound {}s ago\n",
            j.pid,
            route.join(" (jump) > "),
            j.age_secs
        ));
    }
}

/// The audit line of `status`: where it writes, and whether it does.
/// `None` for an agent from before audit health was reported.
fn audit_line(v: &StatusReply) -> Option<String> {
    let Some(a) = v.audit.as_ref()? else {
        return Some("no audit file: decisions reach the daemon log only".into());
    };
    let file = crate::text::clean(&a.file, 200);
    let last_error = || crate::text::clean(a.last_error.as_deref().unwrap_or("?"), 200);
    let mut notes = Vec::new();
    if !a.writing {
        notes.push(format!(
            "WRITE FAILING since {}: {} ({} records waiting)",
            a.last_error_at.as_deref().unwrap_or("?"),
            last_error(),
            a.waiting_records
        ));
    } else if a.write_errors > 0 {
        notes.push(format!(
            "{} failed writes in {} episodes, writing again since {} (last error: {})",
            a.write_errors,
            a.error_episodes,
            a.recovered_at.as_deref().unwrap_or("?"),
            last_error(),
        ));
    }
    if a.lost_records > 0 {
        notes.push(format!(
            "{} RECORDS LOST (the disk could not take them)",
            a.lost_records
        ));
    }
    if a.reopened > 0 {
        notes.push(format!(
            "reopened {} times after a rename, delete or truncation",
            a.reopened
        ));
    }
    if a.coalesced_refusals > 0 {
        notes.push(format!(
            "{} refusals coalesced ({} not yet written)",
            a.coalesced_refusals, a.held_refusals
        ));
    }
    let state = if !a.writing || a.lost_records > 0 {
        "PROBLEM"
    } else {
        "ok"
    };
    Some(if notes.is_empty() {
        format!("{file}, {state}")
    } else {
        format!("{file}, {state}; {}", notes.join("; "))
    })
}

pub(crate) fn status(args: &StatusArgs) -> ExitCode {
    if args.json {
        // The agent's own answer, every field of it, as it sent it.
        return match run::<serde_json::Value>(&args.socket, ControlRequest::Status) {
            Ok(v) => {
                println!("{v:#}");
                ExitCode::SUCCESS
            }
            Err(code) => code,
        };
    }
    match run::<StatusReply>(&args.socket, ControlRequest::Status) {
        Ok(v) => {
            print!("{}", render_status(&v, &socket_path(&args.socket)));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

pub(crate) fn lock(args: &LockArgs, lock: bool) -> ExitCode {
    if !args.forwarded {
        eprintln!(
            "hopward: this {} only forwarded use: add --forwarded (ssh-add -{} {} everything)",
            if lock { "locks" } else { "unlocks" },
            if lock { "x" } else { "X" },
            if lock { "locks" } else { "unlocks" }
        );
        return ExitCode::from(2);
    }
    if lock {
        return match run::<LockedReply>(&args.socket, ControlRequest::LockForwarded) {
            Ok(v) => {
                println!(
                    "forwarded use locked: {} forwarded connections cut, approvals dropped",
                    v.cut
                );
                ExitCode::SUCCESS
            }
            Err(code) => code,
        };
    }
    match run::<EmptyReply>(&args.socket, ControlRequest::UnlockForwarded) {
        Ok(EmptyReply {}) => {
            println!("forwarded use unlocked");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

pub fn grants(args: &GrantsArgs) -> ExitCode {
    let op = match &args.action {
        None => {
            return match run::<StatusReply>(&args.socket, ControlRequest::Status) {
                Ok(v) => {
                    let text = render_status(&v, &socket_path(&args.socket));
                    let grants = text.split("grants (").nth(1).unwrap_or("0):\n");
                    print!("grants ({grants}");
                    ExitCode::SUCCESS
                }
                Err(code) => code,
            };
        }
        Some(GrantsAction::Revoke { id: Some(id), .. }) => ControlRequest::Revoke { id: Some(*id) },
        Some(GrantsAction::Revoke {
            id: None,
            all: true,
        }) => ControlRequest::Revoke { id: None },
        Some(GrantsAction::Revoke {
            id: None,
            all: false,
        }) => {
            eprintln!("hopward: say which grant (an id) or --all");
            return ExitCode::from(2);
        }
    };
    match run::<RevokedReply>(&args.socket, op) {
        Ok(v) => {
            println!("revoked {}", v.revoked);
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    /// A status answer as the agent would send `v`.
    fn status(v: Value) -> StatusReply {
        serde_json::from_value(v).unwrap()
    }

    /// Every line `status` can show, from one answer: the text is what
    /// the command printed when it read the answer as untyped JSON.
    #[test]
    fn status_renders_as_it_always_did() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
        let read = |name: &str| std::fs::read_to_string(format!("{dir}/{name}")).unwrap();
        let reply: StatusReply = read_reply(&read("status.json")).unwrap();
        let socket = std::path::Path::new("/run/s");
        assert_eq!(render_status(&reply, socket), read("status.txt"));
        let mut other = reply;
        other.policy.last_reload = LastReload::RefusingForwarded(vec!["e1".into()]);
        other.audit = Some(None);
        if let Some(up) = other.upstream.as_mut() {
            up.reachable = None;
        }
        assert_eq!(render_status(&other, socket), read("status-refusing.txt"));
    }

    #[test]
    fn jump_hosts_are_listed_before_the_grants() {
        let v = json!({
            "jumps": [{ "pid": 42, "route": ["a", "b\u{1b}"], "age_secs": 3 }],
            "grants": [],
        });
        let mut out = String::new();
        jumps_lines(&status(v), &mut out);
        assert_eq!(
            out,
            "jump hosts (1):\n  ssh pid 42: a (jump) > b\\u{1b} (jump), bound 3s ago\n"
        );
        let mut old = String::new();
        jumps_lines(&status(json!({})), &mut old);
        assert_eq!(old, "", "an agent from before");
    }

    #[test]
    fn the_audit_line_says_what_is_wrong_and_escapes_what_it_quotes() {
        assert_eq!(audit_line(&status(json!({}))), None, "an agent from before");
        assert!(
            audit_line(&status(json!({ "audit": null })))
                .unwrap()
                .starts_with("no audit file")
        );
        let healthy = status(json!({ "audit": { "file": "/s/audit.jsonl", "writing": true } }));
        assert_eq!(audit_line(&healthy).unwrap(), "/s/audit.jsonl, ok");
        let failing = status(json!({ "audit": {
            "file": "/s/audit.jsonl", "writing": false, "write_errors": 3,
            "error_episodes": 1, "lost_records": 2, "waiting_records": 7,
            "last_error": "No space left on device\u{1b}[2J",
            "last_error_at": "2026-12-07T01:00:00.000Z",
        } }));
        let line = audit_line(&failing).unwrap();
        assert!(line.contains("PROBLEM"), "{line}");
        assert!(
            line.contains("WRITE FAILING since 2026-12-07T01:00:00.000Z"),
            "{line}"
        );
        assert!(line.contains("(7 records waiting)"), "{line}");
        assert!(line.contains("2 RECORDS LOST"), "{line}");
        assert!(!line.contains('\u{1b}'), "{line}");
    }
}
