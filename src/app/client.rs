//! The command-line side of the control channel: `status`, `lock
//! --forwarded`, `unlock --forwarded` and `grants`.

use std::io::Read as _;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{Value, json};

use crate::app::cli::{GrantsAction, GrantsArgs, LockArgs, SocketArg, StatusArgs};

/// `-a`, else `$SSH_AUTH_SOCK`, else the default socket.
pub fn socket_path(arg: &SocketArg) -> PathBuf {
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

/// Sends one control operation and returns the daemon's JSON answer.
pub fn control(socket: &std::path::Path, op: &Value) -> Result<Value, String> {
    control_from(socket, None, op)
}

/// [`control`], giving up after `timeout` for each read and write (ssh's
/// `KnownHostsCommand` must not hold ssh up on a stuck agent).
pub fn control_within(
    socket: &std::path::Path,
    op: &Value,
    timeout: Duration,
) -> Result<Value, String> {
    control_timed(socket, None, op, timeout)
}

/// [`control`]; when nothing listens there, says where `socket` came from
/// (`from`) and how to start an agent.
fn control_from(socket: &std::path::Path, from: Option<&str>, op: &Value) -> Result<Value, String> {
    control_timed(socket, from, op, Duration::from_secs(10))
}

fn control_timed(
    socket: &std::path::Path,
    from: Option<&str>,
    op: &Value,
    timeout: Duration,
) -> Result<Value, String> {
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
            let value: Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
            match value["error"].as_str() {
                Some(e) => Err(crate::text::clean(e, 300)),
                None => Ok(value),
            }
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

fn run(arg: &SocketArg, op: Value) -> Result<Value, ExitCode> {
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
fn brake_line(brake: &Value) -> Option<String> {
    if !brake.is_object() {
        return None;
    }
    let mut line = format!(
        "more than {} hosts per {} through one bastion are asked",
        brake["hosts"],
        brake["per"].as_str().unwrap_or("?")
    );
    for hop in brake["hops"].as_array().into_iter().flatten() {
        line.push_str(&format!(
            "; {}: {} host(s){}",
            crate::text::clean(hop["hop"].as_str().unwrap_or("?"), 64),
            hop["hosts"],
            if hop["engaged"] == true {
                ", ASKING"
            } else {
                ""
            }
        ));
    }
    Some(line)
}

/// A certificate's expiry as `status` shows it: when it ends (UTC) and how
/// long from now, or that it has ended and when the agent drops it.
fn certificate_note(cert: &Value) -> Option<String> {
    if !cert.is_object() {
        return None;
    }
    let Some(before) = cert["valid_before"].as_u64() else {
        return Some("certificate valid forever".into());
    };
    let when = crate::daemon::audit::rfc3339_at(before);
    let left = cert["expires_in"].as_i64().unwrap_or(0);
    Some(if left > 0 {
        format!(
            "certificate expires {when} (in {})",
            duration(left.unsigned_abs())
        )
    } else {
        format!(
            "certificate EXPIRED {when}, never signs, dropped in {}",
            duration(cert["drop_in"].as_u64().unwrap_or(0))
        )
    })
}

/// What `status` says of host names learned from ssh (absent from an
/// older daemon's answer).
fn learned_line(learned: &Value) -> Option<String> {
    let count = learned["count"].as_u64()?;
    if count == 0 {
        return Some(
            "none learned from ssh (under hashed known_hosts, `hopward ssh-config` lets ssh \
             report them)"
                .into(),
        );
    }
    let newest: Vec<String> = learned["newest"]
        .as_array()
        .map(|a| {
            a.iter()
                .take(5)
                .filter_map(|h| h["name"].as_str())
                .map(|n| crate::text::clean(n, 64))
                .collect()
        })
        .unwrap_or_default();
    Some(format!(
        "{count} learned from ssh, each confirmed by known_hosts (newest: {})",
        newest.join(", ")
    ))
}

/// Renders `status` for people.
pub fn render_status(v: &Value, socket: &std::path::Path) -> String {
    let mut out = String::new();
    let s = |v: &Value| v.as_str().unwrap_or("-").to_string();
    out.push_str(&format!(
        "hopward {} (pid {}) on {}\n",
        s(&v["version"]),
        v["pid"],
        socket.display()
    ));
    out.push_str(&format!(
        "agent:       {}; forwarded use {}\n",
        if v["locked"] == true {
            "LOCKED"
        } else {
            "unlocked"
        },
        if v["forwarded_locked"] == true {
            format!(
                "LOCKED ({}; undo with hopward unlock --forwarded)",
                v["forwarded_locked_because"].as_str().unwrap_or("?")
            )
        } else {
            "allowed by policy".to_string()
        }
    ));
    let p = &v["policy"];
    let joined = |errors: &Value| {
        errors
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| crate::text::clean(e.as_str().unwrap_or(""), 300))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
            .unwrap_or_default()
    };
    let reload = match &p["last_reload"] {
        Value::String(ok) => ok.clone(),
        other if other["refusing_forwarded"].is_array() => format!(
            "FAILED, no good policy loaded since start: local use is served as the built-in \
             policy does and everything forwarded is REFUSED until the file is fixed: {}",
            joined(&other["refusing_forwarded"])
        ),
        other => format!(
            "FAILED, keeping the last good policy: {}",
            joined(&other["kept_last_good_policy"])
        ),
    };
    let file = match (p["file"].as_str(), p["watched"].as_str()) {
        (Some(file), _) => file.to_string(),
        (None, Some(watched)) => format!("built-in (no {watched} yet; it is read once written)"),
        (None, None) => "built-in".to_string(),
    };
    // An agent from before the counts has no reloads field.
    let reloads = match (p["reloads"].as_u64(), p["generation"].as_u64()) {
        (Some(1), Some(changed)) => format!(", 1 reload ({changed} changed it)"),
        (Some(n), Some(changed)) => format!(", {n} reloads ({changed} changed it)"),
        _ => String::new(),
    };
    out.push_str(&format!(
        "policy:      {} ({} rules), last reload {}{}\n",
        file, p["rules"], reload, reloads
    ));
    let c = &v["confirm"];
    out.push_str(&format!(
        "confirm:     {}, {} ({}), timeout {}s\n",
        s(&c["method"]),
        if c["can_ask"] == true {
            "can ask"
        } else {
            "CANNOT ask, confirm decisions are denied"
        },
        s(&c["detail"]),
        c["timeout_secs"]
    ));
    let conns = v["connections"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    out.push_str(&format!(
        "connections: {}\n",
        if conns.is_empty() {
            "none".into()
        } else {
            conns
        }
    ));
    if let Some(line) = brake_line(&v["brake"]) {
        out.push_str(&format!("brake:       {line}\n"));
    }
    out.push_str(&format!("prompts:     {} pending\n", v["pending_prompts"]));
    if let Some(line) = learned_line(&v["learned_hosts"]) {
        out.push_str(&format!("host names:  {line}\n"));
    }
    if let Some(line) = audit_line(v) {
        out.push_str(&format!("audit:       {line}\n"));
    }
    let keys = v["keys"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("keys ({}):\n", keys.len()));
    for k in &keys {
        let mut notes = Vec::new();
        if k["confirm"] == true {
            notes.push("confirm (ssh-add -c)".to_string());
        }
        if k["destination_constrained"] == true {
            notes.push("destination-constrained (ssh-add -h)".to_string());
        }
        if let Some(left) = k["expires_in"].as_u64() {
            notes.push(format!("{} left", duration(left)));
        }
        if let Some(note) = certificate_note(&k["certificate"]) {
            notes.push(note);
        }
        if k["locked_in_memory"] == false {
            notes.push("not locked in memory (may reach swap)".to_string());
        }
        if let Some(provider) = k["provider"].as_str() {
            notes.push(format!(
                "on a token via {}",
                crate::text::clean(provider, 80)
            ));
        }
        out.push_str(&format!(
            "  {:<20} {:<50} {:<14} {}\n",
            crate::text::clean(k["comment"].as_str().unwrap_or(""), 20),
            s(&k["fingerprint"]),
            s(&k["type"]),
            notes.join(", ")
        ));
    }
    let up = &v["upstream"];
    if up.is_object() {
        let state = match up["reachable"].as_bool() {
            Some(true) => "reachable".to_string(),
            Some(false) => format!("UNREACHABLE ({})", s(&up["error"])),
            None => "not asked yet".to_string(),
        };
        let ukeys = up["keys"].as_array().cloned().unwrap_or_default();
        out.push_str(&format!(
            "upstream:    {}, {state}\n",
            crate::text::clean(&s(&up["socket"]), 200)
        ));
        if up["session_bind"] == false {
            out.push_str(
                "             it knows no session-bind: only hopward's policy restricts its keys\n",
            );
        }
        out.push_str(&format!("upstream keys ({}):\n", ukeys.len()));
        for k in &ukeys {
            out.push_str(&format!(
                "  {:<20} {:<50} {:<14} {}\n",
                crate::text::clean(k["comment"].as_str().unwrap_or(""), 20),
                s(&k["fingerprint"]),
                crate::text::clean(&s(&k["type"]), 40),
                if k["shadowed"] == true {
                    "upstream, also held by hopward (hopward signs)"
                } else {
                    "upstream"
                }
            ));
        }
    }
    // Before the grants: `hopward grants` prints what follows them.
    jumps_lines(v, &mut out);
    let grants = v["grants"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("grants ({}):\n", grants.len()));
    for g in &grants {
        out.push_str(&format!(
            "  #{:<4} {} {} user {} {}, {} left (rule {})\n",
            g["id"],
            s(&g["key"]),
            g["hosts"]
                .as_array()
                .filter(|h| !h.is_empty())
                .or(g["chain"].as_array())
                .map(|c| c
                    .iter()
                    .map(|h| h.as_str().unwrap_or("?"))
                    .collect::<Vec<_>>()
                    .join(">"))
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| "(local)".to_string()),
            g["user"].as_str().unwrap_or("-"),
            s(&g["purpose"]),
            duration(g["expires_in"].as_u64().unwrap_or(0)),
            s(&g["rule"])
        ));
    }
    out
}

/// The jump binds of `status`: each remembered login of a local ssh
/// process that its parent's next login may tunnel through (ProxyJump).
fn jumps_lines(v: &Value, out: &mut String) {
    let Some(jumps) = v["jumps"].as_array() else {
        return; // an agent from before jump routes
    };
    out.push_str(&format!(
        "jump hosts ({}):
",
        jumps.len()
    ));
    for j in jumps {
        let route: Vec<String> = j["route"]
            .as_array()
            .map(|r| {
                r.iter()
                    .map(|h| crate::text::clean(h.as_str().unwrap_or("?"), 64))
                    .collect()
            })
            .unwrap_or_default();
        out.push_str(&format!(
            "  ssh pid {}: {} (jump), bound {}s ago\n",
            j["pid"],
            route.join(" (jump) > "),
            j["age_secs"]
        ));
    }
}

/// The audit line of `status`: where it writes, and whether it does.
/// `None` for an agent from before audit health was reported.
fn audit_line(v: &Value) -> Option<String> {
    let a = v.get("audit")?;
    if a.is_null() {
        return Some("no audit file: decisions reach the daemon log only".into());
    }
    let n = |k: &str| a[k].as_u64().unwrap_or(0);
    let file = crate::text::clean(a["file"].as_str().unwrap_or("?"), 200);
    let mut notes = Vec::new();
    if a["writing"] == false {
        notes.push(format!(
            "WRITE FAILING since {}: {} ({} records waiting)",
            a["last_error_at"].as_str().unwrap_or("?"),
            crate::text::clean(a["last_error"].as_str().unwrap_or("?"), 200),
            n("waiting_records")
        ));
    } else if n("write_errors") > 0 {
        notes.push(format!(
            "{} failed writes in {} episodes, writing again since {} (last error: {})",
            n("write_errors"),
            n("error_episodes"),
            a["recovered_at"].as_str().unwrap_or("?"),
            crate::text::clean(a["last_error"].as_str().unwrap_or("?"), 200),
        ));
    }
    if n("lost_records") > 0 {
        notes.push(format!(
            "{} RECORDS LOST (the disk could not take them)",
            n("lost_records")
        ));
    }
    if n("reopened") > 0 {
        notes.push(format!(
            "reopened {} times after a rename, delete or truncation",
            n("reopened")
        ));
    }
    if n("coalesced_refusals") > 0 {
        notes.push(format!(
            "{} refusals coalesced ({} not yet written)",
            n("coalesced_refusals"),
            n("held_refusals")
        ));
    }
    let state = if a["writing"] == false || n("lost_records") > 0 {
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

pub fn status(args: &StatusArgs) -> ExitCode {
    match run(&args.socket, json!({ "op": "status" })) {
        Ok(v) if args.json => {
            println!("{v:#}");
            ExitCode::SUCCESS
        }
        Ok(v) => {
            print!("{}", render_status(&v, &socket_path(&args.socket)));
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

pub fn lock(args: &LockArgs, lock: bool) -> ExitCode {
    if !args.forwarded {
        eprintln!(
            "hopward: this {} only forwarded use: add --forwarded (ssh-add -{} {} everything)",
            if lock { "locks" } else { "unlocks" },
            if lock { "x" } else { "X" },
            if lock { "locks" } else { "unlocks" }
        );
        return ExitCode::from(2);
    }
    let op = if lock {
        "lock-forwarded"
    } else {
        "unlock-forwarded"
    };
    match run(&args.socket, json!({ "op": op })) {
        Ok(v) if lock => {
            println!(
                "forwarded use locked: {} forwarded connections cut, approvals dropped",
                v["cut"]
            );
            ExitCode::SUCCESS
        }
        Ok(_) => {
            println!("forwarded use unlocked");
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

pub fn grants(args: &GrantsArgs) -> ExitCode {
    let op = match &args.action {
        None => json!({ "op": "status" }),
        Some(GrantsAction::Revoke { id: Some(id), .. }) => json!({ "op": "revoke", "id": id }),
        Some(GrantsAction::Revoke {
            id: None,
            all: true,
        }) => json!({ "op": "revoke" }),
        Some(GrantsAction::Revoke {
            id: None,
            all: false,
        }) => {
            eprintln!("hopward: say which grant (an id) or --all");
            return ExitCode::from(2);
        }
    };
    match run(&args.socket, op) {
        Ok(v) if args.action.is_none() => {
            let text = render_status(&v, &socket_path(&args.socket));
            let grants = text.split("grants (").nth(1).unwrap_or("0):\n");
            print!("grants ({grants}");
            ExitCode::SUCCESS
        }
        Ok(v) => {
            println!("revoked {}", v["revoked"]);
            ExitCode::SUCCESS
        }
        Err(code) => code,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jump_hosts_are_listed_before_the_grants() {
        let v = json!({
            "jumps": [{ "pid": 42, "route": ["a", "b\u{1b}"], "age_secs": 3 }],
            "grants": [],
        });
        let mut out = String::new();
        jumps_lines(&v, &mut out);
        assert_eq!(
            out,
            "jump hosts (1):\n  ssh pid 42: a (jump) > b\\u{1b} (jump), bound 3s ago\n"
        );
        let mut old = String::new();
        jumps_lines(&json!({}), &mut old);
        assert_eq!(old, "", "an agent from before");
    }

    #[test]
    fn the_audit_line_says_what_is_wrong_and_escapes_what_it_quotes() {
        assert_eq!(audit_line(&json!({})), None, "an agent from before");
        assert!(
            audit_line(&json!({ "audit": null }))
                .unwrap()
                .starts_with("no audit file")
        );
        let healthy = json!({ "audit": { "file": "/s/audit.jsonl", "writing": true } });
        assert_eq!(audit_line(&healthy).unwrap(), "/s/audit.jsonl, ok");
        let failing = json!({ "audit": {
            "file": "/s/audit.jsonl", "writing": false, "write_errors": 3,
            "error_episodes": 1, "lost_records": 2, "waiting_records": 7,
            "last_error": "No space left on device\u{1b}[2J",
            "last_error_at": "2026-12-07T01:00:00.000Z",
        } });
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
