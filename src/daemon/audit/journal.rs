//! The journal as a second home for audit records (`[audit] journald =
//! true`): each shaped record, as written to the file, is also sent to
//! systemd-journald as structured fields over its native protocol.
//!
//! Invariants: the fields are the record's own, upper-cased (`decision` is
//! `DECISION`; a nested object's fields are joined with `_`, so
//! `peer.pid` is `PEER_PID`; a list is one field holding its JSON), plus
//! [`MESSAGE_ID`], a one-line `MESSAGE`, `PRIORITY` and
//! `SYSLOG_IDENTIFIER=hopward`; sending happens on the audit writer's
//! thread and never blocks (a full journal socket drops the datagram, counted,
//! as journald itself drops what it cannot take); a datagram is never more
//! than [`MAX_DATAGRAM`] bytes: a record past it has its longest fields
//! replaced by a note (the file keeps the whole record), rather than being
//! passed through a memfd as `sd_journal_sendv` does, so this needs no
//! file-descriptor passing.

use std::io::ErrorKind;
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Every audit record carries this `MESSAGE_ID`: `journalctl
/// MESSAGE_ID=e6907a719856490fad29c3474d12f05a` finds them all. Fixed
/// forever (made once with a random generator, as `systemd-id128 new`
/// does).
pub(crate) const MESSAGE_ID: &str = "e6907a719856490fad29c3474d12f05a";

/// journald's native socket.
pub(crate) const SOCKET: &str = "/run/systemd/journal/socket";

/// Bound on one datagram: well under the default socket buffer
/// (`net.core.wmem_default`, 208 KiB) and journald's own limits, and far
/// above any record whose fields are within the shape bounds but for a
/// very long chain.
pub(crate) const MAX_DATAGRAM: usize = 64 * 1024;

/// The journal's end of the audit writer.
#[derive(Debug)]
pub(crate) struct Journal {
    socket: Option<UnixDatagram>,
    path: PathBuf,
    /// Records journald did not take (socket missing, full, refused).
    pub(crate) dropped: u64,
    pub(crate) last_error: Option<String>,
}

impl Journal {
    /// A sender to journald's socket at `path` ([`SOCKET`] outside tests).
    pub fn new(path: &Path) -> Journal {
        let (socket, last_error) = match UnixDatagram::unbound() {
            Ok(s) => match s.set_nonblocking(true) {
                Ok(()) => (Some(s), None),
                Err(e) => (None, Some(format!("cannot make a journal socket: {e}"))),
            },
            Err(e) => (None, Some(format!("cannot make a journal socket: {e}"))),
        };
        if let Some(e) = &last_error {
            tracing::warn!("audit to the journal disabled: {e}");
        }
        Journal {
            socket,
            path: path.to_path_buf(),
            dropped: 0,
            last_error,
        }
    }

    /// Sends one shaped record (a JSON object). A failure is counted and
    /// logged once per kind, never retried: the file has the record.
    pub(crate) fn send(&mut self, record: &Value) {
        let Some(socket) = &self.socket else {
            self.dropped += 1;
            return;
        };
        let datagram = encode(&fields(record));
        match socket.send_to(&datagram, &self.path) {
            Ok(_) => {}
            Err(e) => {
                self.dropped += 1;
                let text = match e.kind() {
                    ErrorKind::WouldBlock => "the journal socket is full".to_string(),
                    _ => format!("{}: {e}", self.path.display()),
                };
                if self.last_error.as_deref() != Some(text.as_str()) {
                    tracing::warn!("cannot send an audit record to the journal: {text}");
                    self.last_error = Some(text);
                }
            }
        }
    }
}

/// A journal field name from a record's: upper case, `[A-Z0-9_]` only, not
/// starting with `_` (journald reserves those for what it adds itself).
fn field_name(name: &str) -> String {
    let mut out: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    while out.starts_with('_') || out.starts_with(|c: char| c.is_ascii_digit()) {
        out.remove(0);
    }
    out.truncate(64);
    if out.is_empty() { "FIELD".into() } else { out }
}

fn flatten(prefix: &str, value: &Value, out: &mut Vec<(String, String)>) {
    match value {
        Value::Null => {}
        Value::Object(map) => {
            for (name, v) in map {
                let name = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}_{name}")
                };
                flatten(&name, v, out);
            }
        }
        Value::String(s) => out.push((field_name(prefix), s.clone())),
        other => out.push((field_name(prefix), other.to_string())),
    }
}

/// A one-line summary for `MESSAGE`: what `hopward log` shows first.
fn summary(record: &Value) -> String {
    let s = |k: &str| record[k].as_str().unwrap_or("");
    let mut line = format!("{} {}", s("decision"), s("event"));
    if let Some(comment) = record["comment"].as_str().filter(|c| !c.is_empty()) {
        line.push_str(&format!(" {comment}"));
    } else if let Some(key) = record["key"].as_str() {
        line.push_str(&format!(" {key}"));
    }
    let via: Vec<String> = record["chain"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|h| {
            let name = h["names"][0].as_str().or(h["fingerprint"].as_str())?;
            Some(if h["jump"] == true {
                format!("{name} (jump)")
            } else {
                name.to_string()
            })
        })
        .collect();
    if !via.is_empty() {
        line.push_str(&format!(" via {}", via.join(">")));
    }
    if let Some(user) = record["user"].as_str() {
        line.push_str(&format!(" as {user}"));
    }
    if !s("rule").is_empty() {
        line.push_str(&format!(" (rule {})", s("rule")));
    }
    if let Some(n) = record["coalesced"]["count"].as_u64() {
        line.push_str(&format!(" x{n}"));
    }
    line
}

/// The journal fields of one record: its own, upper-cased and flattened,
/// then the ones the journal reads.
pub(crate) fn fields(record: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    flatten("", record, &mut out);
    // A record field named like one of these must not shadow it.
    out.retain(|(k, _)| {
        !matches!(
            k.as_str(),
            "MESSAGE" | "MESSAGE_ID" | "PRIORITY" | "SYSLOG_IDENTIFIER"
        )
    });
    // Notice for a refusal, info for the rest, as sshd logs them.
    let priority = if record["decision"] == "deny" {
        "5"
    } else {
        "6"
    };
    out.push(("MESSAGE".into(), summary(record)));
    out.push(("MESSAGE_ID".into(), MESSAGE_ID.into()));
    out.push(("PRIORITY".into(), priority.into()));
    out.push(("SYSLOG_IDENTIFIER".into(), "hopward".into()));
    fit(&mut out);
    out
}

/// The note a field cut to fit gets in place of its value.
fn cut_note(len: usize) -> String {
    format!("(cut from {len} bytes to fit the journal; the audit file holds it all)")
}

/// Replaces the longest values by a note until the datagram is within
/// [`MAX_DATAGRAM`].
fn fit(fields: &mut [(String, String)]) {
    let size =
        |f: &[(String, String)]| f.iter().map(|(k, v)| k.len() + v.len() + 10).sum::<usize>();
    while size(fields) > MAX_DATAGRAM {
        let Some(longest) = fields
            .iter_mut()
            .filter(|(k, _)| k != "MESSAGE_ID")
            .max_by_key(|(_, v)| v.len())
        else {
            return;
        };
        let note = cut_note(longest.1.len());
        if note.len() >= longest.1.len() {
            return;
        }
        longest.1 = note;
    }
}

/// Fields that hold JSON rather than text (a number, a flag, a list):
/// read back as JSON.
fn json_field(name: &str) -> bool {
    matches!(
        name,
        "CHAIN" | "CONN" | "UPSTREAM" | "PEER_PID" | "PEER_UID" | "COALESCED_COUNT"
    ) || name.ends_with("_TOTAL")
}

/// The record an entry of `journalctl -o json MESSAGE_ID=...` was made
/// from (the inverse of [`fields`]: `PEER_*` and `COALESCED_*` nest again,
/// the journal's own fields are left out).
pub(crate) fn record_from_entry(entry: &Value) -> Value {
    let mut record = serde_json::Map::new();
    let Some(map) = entry.as_object() else {
        return Value::Object(record);
    };
    for (name, value) in map {
        if name.starts_with('_')
            || matches!(
                name.as_str(),
                "MESSAGE" | "MESSAGE_ID" | "PRIORITY" | "SYSLOG_IDENTIFIER"
            )
        {
            continue;
        }
        // journalctl gives a value that is not valid UTF-8 as a byte list.
        let Some(text) = value.as_str() else { continue };
        let parsed = if json_field(name) {
            serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
        } else {
            Value::String(text.to_string())
        };
        let lower = name.to_ascii_lowercase();
        let nested = ["peer", "coalesced"]
            .iter()
            .find_map(|p| lower.strip_prefix(&format!("{p}_")).map(|rest| (*p, rest)));
        match nested {
            Some((outer, inner)) => {
                let slot = record
                    .entry(outer)
                    .or_insert_with(|| Value::Object(serde_json::Map::new()));
                if let Some(obj) = slot.as_object_mut() {
                    obj.insert(inner.to_string(), parsed);
                }
            }
            None => {
                record.insert(lower, parsed);
            }
        }
    }
    Value::Object(record)
}

/// The native protocol: `NAME=value\n`, or for a value holding a newline,
/// `NAME\n`, its length as 64-bit little-endian, the value, `\n`.
pub(crate) fn encode(fields: &[(String, String)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, value) in fields {
        out.extend_from_slice(name.as_bytes());
        if value.contains('\n') {
            out.push(b'\n');
            out.extend_from_slice(&(value.len() as u64).to_le_bytes());
        } else {
            out.push(b'=');
        }
        out.extend_from_slice(value.as_bytes());
        out.push(b'\n');
    }
    out
}

/// Reads a datagram in the native protocol back into fields (the inverse of
/// [`encode`]; tests check what was sent with it). `None` if malformed.
#[cfg(test)]
pub(crate) fn decode(mut data: &[u8]) -> Option<Vec<(String, String)>> {
    let mut out = Vec::new();
    while !data.is_empty() {
        let end = data.iter().position(|&b| b == b'\n')?;
        let line = &data[..end];
        if let Some(eq) = line.iter().position(|&b| b == b'=') {
            out.push((
                String::from_utf8(line[..eq].to_vec()).ok()?,
                String::from_utf8(line[eq + 1..].to_vec()).ok()?,
            ));
            data = &data[end + 1..];
        } else {
            let name = String::from_utf8(line.to_vec()).ok()?;
            let rest = &data[end + 1..];
            let len = u64::from_le_bytes(rest.get(..8)?.try_into().ok()?) as usize;
            let value = rest.get(8..8 + len)?;
            if rest.get(8 + len) != Some(&b'\n') {
                return None;
            }
            out.push((name, String::from_utf8(value.to_vec()).ok()?));
            data = &rest[9 + len..];
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn get<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn a_record_becomes_its_own_fields_upper_cased_with_one_message_id() {
        let record = json!({
            "ts": "2026-12-07T02:00:00Z", "event": "sign", "decision": "deny",
            "key": "SHA256:abc", "comment": "work", "rule": "prod", "user": "git",
            "reason": "line one\nline two", "class": "forwarded",
            "chain": [{"names": ["bastion"], "fingerprint": "SHA256:h", "forwarded": true}],
            "peer": {"pid": 42, "uid": 1000, "exe": null}, "conn": 7, "destination": null
        });
        let f = fields(&record);
        assert_eq!(get(&f, "DECISION"), Some("deny"));
        assert_eq!(get(&f, "TS"), Some("2026-12-07T02:00:00Z"));
        assert_eq!(get(&f, "PEER_PID"), Some("42"));
        assert_eq!(get(&f, "PEER_UID"), Some("1000"));
        assert_eq!(get(&f, "PEER_EXE"), None, "null fields are left out");
        assert_eq!(get(&f, "CONN"), Some("7"));
        let chain: Value = serde_json::from_str(get(&f, "CHAIN").unwrap()).unwrap();
        assert_eq!(chain, record["chain"]);
        assert_eq!(get(&f, "MESSAGE_ID"), Some(MESSAGE_ID));
        assert_eq!(get(&f, "PRIORITY"), Some("5"));
        assert_eq!(get(&f, "SYSLOG_IDENTIFIER"), Some("hopward"));
        assert_eq!(
            get(&f, "MESSAGE"),
            Some("deny sign work via bastion as git (rule prod)")
        );
        // The multi-line reason goes in the length-prefixed form and back.
        let datagram = encode(&f);
        assert!(
            datagram.windows(7).any(|w| w == b"REASON\n"),
            "a value with a newline is sent length-prefixed"
        );
        assert_eq!(decode(&datagram).unwrap(), f);
    }

    #[test]
    fn a_journal_entry_reads_back_as_the_record() {
        let record = json!({
            "ts": "2026-12-07T02:00:00Z", "event": "sign", "decision": "deny",
            "comment": "007", "chain": [{"names": ["b"], "fingerprint": "SHA256:h", "forwarded": true}],
            "peer": {"pid": 42, "uid": 1000}, "conn": 7, "upstream": true,
            "coalesced": {"count": 9, "first": "a", "last": "b"}
        });
        // What journalctl -o json prints: every value a string, plus its own.
        let mut entry: serde_json::Map<String, Value> = fields(&record)
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect();
        entry.insert("_PID".into(), json!("1"));
        entry.insert("__CURSOR".into(), json!("s=1"));
        assert_eq!(record_from_entry(&Value::Object(entry)), record);
    }

    #[test]
    fn names_are_journal_names_and_a_record_cannot_shadow_the_message() {
        assert_eq!(field_name("user_style"), "USER_STYLE");
        assert_eq!(field_name("_x-y"), "X_Y");
        assert_eq!(field_name("9a"), "A");
        let f = fields(&json!({"message": "forged", "decision": "allow", "event": "add"}));
        let messages: Vec<_> = f.iter().filter(|(k, _)| k == "MESSAGE").collect();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].1, "allow add");
    }

    #[test]
    fn a_record_past_the_bound_is_cut_to_fit_and_says_so() {
        let hops: Vec<Value> = (0..400)
            .map(|i| json!({"names": [format!("{i}-{}", "h".repeat(250))], "fingerprint": "SHA256:x"}))
            .collect();
        let f = fields(&json!({"event": "sign", "decision": "allow", "chain": hops}));
        let datagram = encode(&f);
        assert!(datagram.len() <= MAX_DATAGRAM, "{}", datagram.len());
        assert!(get(&f, "CHAIN").unwrap().starts_with("(cut from "));
        assert_eq!(get(&f, "DECISION"), Some("allow"));
    }

    #[test]
    fn records_reach_a_socket_in_the_native_protocol() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("socket");
        let server = UnixDatagram::bind(&path).unwrap();
        let mut journal = Journal::new(&path);
        journal.send(&json!({"event": "list", "decision": "allow"}));
        let mut buf = vec![0; MAX_DATAGRAM];
        let n = server.recv(&mut buf).unwrap();
        let f = decode(&buf[..n]).unwrap();
        assert_eq!(get(&f, "EVENT"), Some("list"));
        assert_eq!(get(&f, "MESSAGE_ID"), Some(MESSAGE_ID));
        assert_eq!(journal.dropped, 0);
        // No journald: counted, not fatal.
        drop(server);
        journal.send(&json!({"event": "list", "decision": "allow"}));
        assert_eq!(journal.dropped, 1);
        assert!(journal.last_error.is_some());
    }
}
