//! `hopward log`: recent decisions from the audit log, aligned for reading,
//! filtered by key, host and decision, optionally followed.

use std::io::{BufRead as _, Seek as _};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};
use serde_json::Value;

use crate::app::cli::LogArgs;

/// An audit record as the reader takes it back: the fields `hopward log`
/// shows or filters on, as the file holds them (text that was shaped
/// stays as written; an event, decision or reason this build does not
/// know is shown all the same). A field of another type than expected,
/// as a journal entry gives them, reads as missing; the record is still
/// shown.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct LoggedRecord {
    #[serde(deserialize_with = "lenient")]
    pub(crate) ts: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) event: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) decision: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) reason: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) rule: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) purpose: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) key: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) comment: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) user: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) upstream: Option<bool>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) chain: Option<Vec<LoggedHop>>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) coalesced: Option<Coalesced>,
}

/// One hop of a record's chain.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct LoggedHop {
    #[serde(deserialize_with = "lenient")]
    pub(crate) names: Option<Vec<String>>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) fingerprint: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) hashed: Option<bool>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) jump: Option<bool>,
}

/// Refusals counted into one record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(default)]
pub(crate) struct Coalesced {
    #[serde(deserialize_with = "lenient")]
    pub(crate) count: Option<u64>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) first: Option<String>,
    #[serde(deserialize_with = "lenient")]
    pub(crate) last: Option<String>,
}

/// A field of the type expected, else none (null, or another type).
fn lenient<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Or<T> {
        This(T),
        Other(IgnoredAny),
    }
    Ok(match Or::<T>::deserialize(d)? {
        Or::This(t) => Some(t),
        Or::Other(_) => None,
    })
}

impl LoggedRecord {
    /// A line of the audit file, if it is a JSON object.
    fn parse(line: &str) -> Option<LoggedRecord> {
        serde_json::from_str(line).ok()
    }

    fn hops(&self) -> &[LoggedHop] {
        self.chain.as_deref().unwrap_or_default()
    }
}

fn audit_path(args: &LogArgs) -> Option<PathBuf> {
    if let Some(f) = &args.file {
        return Some(f.clone());
    }
    let policy =
        crate::policy::store::load(crate::policy::store::resolve_path(None).as_deref()).ok();
    policy
        .and_then(|p| p.audit.path.clone())
        .or_else(crate::daemon::audit::default_path)
}

fn chain_text(v: &LoggedRecord) -> String {
    let hops = v.hops();
    if hops.is_empty() {
        return "(local)".into();
    }
    hops.iter()
        .map(|h| {
            let name = h
                .names
                .as_ref()
                .and_then(|n| n.first())
                .cloned()
                .unwrap_or_else(|| {
                    let fingerprint: String = h
                        .fingerprint
                        .as_deref()
                        .unwrap_or("?")
                        .chars()
                        .take(15)
                        .collect();
                    // On a hashed known_hosts line: known, name not learned.
                    if h.hashed == Some(true) {
                        format!("{fingerprint}(hashed)")
                    } else {
                        fingerprint
                    }
                });
            // A jump host (ProxyJump) is a route, not a bind: say so.
            if h.jump == Some(true) {
                format!("{name} (jump)")
            } else {
                name
            }
        })
        .collect::<Vec<_>>()
        .join(">")
}

fn keep(args: &LogArgs, v: &LoggedRecord) -> bool {
    let s = |f: &Option<String>| f.as_deref().unwrap_or("").to_string();
    args.decision.as_deref().is_none_or(|d| s(&v.decision) == d)
        && args
            .key
            .as_deref()
            .is_none_or(|k| s(&v.key).contains(k) || s(&v.comment).contains(k))
        && args.host.as_deref().is_none_or(|h| {
            v.chain.as_ref().is_some_and(|hops| {
                hops.iter().any(|hop| {
                    hop.fingerprint.as_deref().is_some_and(|f| f.contains(h))
                        || hop
                            .names
                            .as_ref()
                            .is_some_and(|n| n.iter().any(|n| n.contains(h)))
                })
            })
        })
}

/// One aligned line. Times are the log's own, in UTC, and say so.
pub(crate) fn render(v: &LoggedRecord) -> String {
    let s = |f: &Option<String>| crate::text::clean(f.as_deref().unwrap_or("-"), 40);
    let ts = v.ts.as_deref().unwrap_or("");
    let when = match (ts.get(0..19), ts.ends_with('Z')) {
        (Some(t), true) => format!("{} UTC", t.replace('T', " ")),
        _ => crate::text::clean(ts, 23),
    };
    let key = v
        .comment
        .as_ref()
        .filter(|c| !c.is_empty())
        .cloned()
        .unwrap_or_else(|| s(&v.key));
    let mut line = format!(
        "{when:<23}  {:<10} {:<5}  {:<28} {:<28} {:<7} {:<18} {:<36} {}",
        s(&v.event),
        s(&v.decision),
        crate::text::clean(&s(&v.reason), 28),
        crate::text::clean(&s(&v.rule), 28),
        s(&v.purpose),
        crate::text::clean(&key, 18),
        crate::text::clean(&chain_text(v), 36),
        crate::text::clean(v.user.as_deref().unwrap_or("-"), 32),
    );
    if v.upstream == Some(true) {
        line.push_str("  (upstream key)");
    }
    if let Some(c) = &v.coalesced {
        if let Some(count) = c.count {
            line.push_str(&format!(
                "  (x{count} like it, {} to {})",
                crate::text::clean(c.first.as_deref().unwrap_or("?"), 24),
                crate::text::clean(c.last.as_deref().unwrap_or("?"), 24)
            ));
        }
    }
    line
}

pub(crate) const HEADER: &str = "TIME                     EVENT      DEC    REASON                       RULE                         PURPOSE KEY                CHAIN                                USER";

pub(crate) fn run(args: &LogArgs) -> ExitCode {
    if args.journal {
        return run_journal(args);
    }
    let Some(path) = audit_path(args) else {
        eprintln!("hopward: no audit log: set $XDG_STATE_HOME or $HOME, or pass --file");
        return ExitCode::FAILURE;
    };
    let file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && args.follow => {
            // Nothing decided yet; wait for the first line.
            loop {
                std::thread::sleep(Duration::from_millis(500));
                if let Ok(f) = std::fs::File::open(&path) {
                    break f;
                }
            }
        }
        // Nothing decided yet: an empty log, not an error.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            eprintln!(
                "hopward: no decisions yet ({} does not exist)",
                path.display()
            );
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("hopward: cannot read {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    };
    let mut reader = std::io::BufReader::new(file);
    let print = |line: &str| {
        let Some(v) = LoggedRecord::parse(line) else {
            return;
        };
        if keep(args, &v) {
            if args.json {
                println!("{}", line.trim_end());
            } else {
                println!("{}", render(&v));
            }
        }
    };
    let mut recent: std::collections::VecDeque<String> = Default::default();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 {
        if LoggedRecord::parse(&line).is_some_and(|v| keep(args, &v)) {
            recent.push_back(line.clone());
            if recent.len() > args.lines {
                recent.pop_front();
            }
        }
        line.clear();
    }
    if !args.json {
        println!("{HEADER}");
    }
    for l in &recent {
        print(l);
    }
    if !args.follow {
        return ExitCode::SUCCESS;
    }
    let mut pos = reader.stream_position().unwrap_or(0);
    loop {
        std::thread::sleep(Duration::from_millis(300));
        let len = std::fs::metadata(&path).map_or(0, |m| m.len());
        if len < pos {
            // Rotated: start over on the new file.
            match std::fs::File::open(&path) {
                Ok(f) => reader = std::io::BufReader::new(f),
                Err(_) => continue,
            }
            pos = 0;
        }
        line.clear();
        while reader.read_line(&mut line).unwrap_or(0) > 0 {
            if line.ends_with('\n') {
                print(&line);
                line.clear();
            }
        }
        pos = reader.stream_position().unwrap_or(pos);
        let _ = std::io::Write::flush(&mut std::io::stdout());
    }
}

/// `hopward log --journal`: the records `[audit] journald` sent, read back
/// with journalctl (which knows where this user's journal is and what they
/// may read), filtered and shown as from the file.
fn run_journal(args: &LogArgs) -> ExitCode {
    use crate::daemon::audit::journal;
    let mut cmd = std::process::Command::new("journalctl");
    cmd.args(["-o", "json", "--no-pager"]);
    if args.follow {
        // One journalctl for what is there and what comes, so none is
        // missed between the two; the filters apply to its last lines.
        cmd.args(["-f", "-n", &args.lines.to_string()]);
    }
    cmd.arg(format!("MESSAGE_ID={}", journal::MESSAGE_ID))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("hopward: cannot run journalctl: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Some(out) = child.stdout.take() else {
        return ExitCode::FAILURE;
    };
    let show = |(v, record): &(Value, LoggedRecord)| {
        if args.json {
            println!("{v}");
        } else {
            println!("{}", render(record));
        }
    };
    if !args.json {
        println!("{HEADER}");
    }
    let mut recent: std::collections::VecDeque<(Value, LoggedRecord)> = Default::default();
    for line in std::io::BufReader::new(out).lines() {
        let Ok(line) = line else { break };
        let Ok(entry) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let v = journal::record_from_entry(&entry);
        let Ok(record) = LoggedRecord::deserialize(&v) else {
            continue;
        };
        if !keep(args, &record) {
            continue;
        }
        let v = (v, record);
        if args.follow {
            show(&v);
            let _ = std::io::Write::flush(&mut std::io::stdout());
        } else {
            recent.push_back(v);
            if recent.len() > args.lines {
                recent.pop_front();
            }
        }
    }
    recent.iter().for_each(show);
    match child.wait() {
        Ok(status) if status.success() => ExitCode::SUCCESS,
        Ok(status) => {
            eprintln!("hopward: journalctl failed ({status})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("hopward: journalctl: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A record as a line of the file holding `v`.
    fn read(v: &Value) -> LoggedRecord {
        LoggedRecord::parse(&v.to_string()).unwrap()
    }

    /// Each record of the audit golden file, and records as a journal
    /// entry or a damaged line gives them (text where numbers were,
    /// fields of the wrong type), render as `tests/golden/log.txt`: the
    /// lines the reader printed when it took records as untyped JSON.
    #[test]
    fn records_render_as_they_always_did() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden");
        let input = std::fs::read_to_string(format!("{dir}/log-input.jsonl")).unwrap();
        let shown: Vec<String> = input
            .lines()
            .map(|line| render(&LoggedRecord::parse(line).unwrap()))
            .collect();
        let want = std::fs::read_to_string(format!("{dir}/log.txt")).unwrap();
        assert_eq!(shown.join("\n"), want);
    }

    #[test]
    fn upstream_keys_are_marked() {
        let base = serde_json::json!({
            "ts": "2026-12-03T09:00:00.000Z", "event": "sign", "decision": "allow",
            "reason": "default:local", "comment": "work", "chain": [], "user": "me",
        });
        assert!(!render(&read(&base)).contains("upstream"));
        let mut up = base.clone();
        up["upstream"] = serde_json::json!(true);
        assert!(
            render(&read(&up)).ends_with("(upstream key)"),
            "{}",
            render(&read(&up))
        );
    }

    #[test]
    fn a_jump_host_is_shown_as_one() {
        let v = serde_json::json!({
            "ts": "2026-12-03T09:00:00.000Z", "event": "sign", "decision": "allow",
            "reason": "r", "user": "me",
            "chain": [
                { "names": ["bastion"], "fingerprint": "SHA256:b", "forwarded": false, "jump": true },
                { "names": ["prod"], "fingerprint": "SHA256:p", "forwarded": false },
            ],
        });
        assert!(
            render(&read(&v)).contains("bastion (jump)>prod"),
            "{}",
            render(&read(&v))
        );
    }

    #[test]
    fn a_coalesced_record_shows_its_count_and_span() {
        let v = serde_json::json!({
            "ts": "2026-12-03T09:00:00.000Z", "event": "sign", "decision": "deny",
            "reason": "default:forwarded_unverified", "chain": [], "user": "root",
            "coalesced": { "count": 90, "first": "2026-12-03T09:00:00.100Z",
                           "last": "2026-12-03T09:00:01.200Z" },
        });
        let line = render(&read(&v));
        assert!(
            line.contains("(x90 like it, 2026-12-03T09:00:00.100Z to 2026-12-03T09:00:01.200Z)"),
            "{line}"
        );
    }

    /// A host on a hashed line, its name not learned, is not shown as a
    /// bare fingerprint: the log says the key is on a hashed line.
    #[test]
    fn a_hashed_host_without_a_name_is_marked() {
        let v = serde_json::json!({
            "chain": [
                { "names": ["bastion"], "fingerprint": "SHA256:b", "forwarded": true, "hashed": true },
                { "names": [], "fingerprint": "SHA256:abcdefghijklmnop", "forwarded": false, "hashed": true },
            ],
        });
        assert_eq!(chain_text(&read(&v)), "bastion>SHA256:abcdefgh(hashed)");
    }
}
