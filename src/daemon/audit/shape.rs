//! The shape a record takes on disk: every text field escaped as prompts
//! escape it and cut to a bound, with the SHA-256 of the full value beside
//! any field that was cut.
//!
//! Invariants: no string in a shaped record holds a control (C0, DEL, C1),
//! format or separator character (each is a visible `\u{..}` escape, the
//! form `crate::text::clean` gives), so neither `hopward log --json` nor
//! `jq -r` can hand one to a terminal; no string is longer than its bound;
//! a field that was cut keeps its name and meaning (its first characters,
//! then `…`) and gains `<name>_sha256`, the digest of the whole value, so two
//! records can still be told apart or matched against a known name; a list
//! of strings keeps at most [`MAX_ITEMS`] items and then says how many there
//! were in `<name>_total`.

use serde_json::{Map, Value};

use crate::ssh::digest::sha256;

/// Bound on a field that comes from outside (user names, key comments,
/// host names, paths, namespaces), in escaped characters: room for any
/// real name, a few lines on screen at most.
pub(crate) const MAX_CHARS: usize = 256;

/// Bound on hopward's own longer words (`reason`, `rule`, `destination`),
/// which may quote a piece of outside text.
pub(crate) const MAX_OWN_CHARS: usize = 1024;

/// Most items kept from a list of strings (a hop's names).
pub(crate) const MAX_ITEMS: usize = 16;

/// Fields that are hopward's own words and get the longer bound.
const OWN_FIELDS: &[&str] = &["reason", "rule", "destination"];

/// `record` with every string escaped and bounded, recursively.
pub(crate) fn shape(record: Value) -> Value {
    match record {
        Value::Object(map) => Value::Object(shape_object(map)),
        Value::Array(items) => Value::Array(items.into_iter().map(shape).collect()),
        Value::String(s) => Value::String(bound_owned(s, MAX_CHARS).0),
        other => other,
    }
}

fn shape_object(map: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    for (name, value) in map {
        let max = if OWN_FIELDS.contains(&name.as_str()) {
            MAX_OWN_CHARS
        } else {
            MAX_CHARS
        };
        match value {
            Value::String(s) => {
                if is_plain(&s, max) {
                    out.insert(name, Value::String(s));
                    continue;
                }
                let (text, cut) = bound(&s, max);
                out.insert(name.clone(), Value::String(text));
                if cut {
                    out.insert(format!("{name}_sha256"), Value::String(digest(&s)));
                }
            }
            Value::Array(items) if items.iter().any(Value::is_string) => {
                let total = items.len();
                let mut kept = Vec::new();
                let mut digests = Vec::new();
                for item in items.into_iter().take(MAX_ITEMS) {
                    match item {
                        Value::String(s) if is_plain(&s, max) => {
                            digests.push(Value::Null);
                            kept.push(Value::String(s));
                        }
                        Value::String(s) => {
                            let (text, cut) = bound(&s, max);
                            digests.push(if cut {
                                Value::String(digest(&s))
                            } else {
                                Value::Null
                            });
                            kept.push(Value::String(text));
                        }
                        other => {
                            digests.push(Value::Null);
                            kept.push(shape(other));
                        }
                    }
                }
                out.insert(name.clone(), Value::Array(kept));
                if digests.iter().any(|d| !d.is_null()) {
                    out.insert(format!("{name}_sha256"), Value::Array(digests));
                }
                if total > MAX_ITEMS {
                    out.insert(format!("{name}_total"), Value::from(total));
                }
            }
            other => {
                out.insert(name, shape(other));
            }
        }
    }
    out
}

/// Whether a record serialized as `json` is already in shape: printable
/// ASCII only (so nothing hidden, and no JSON escape, so every `"` delimits
/// a string) with no string longer than [`MAX_CHARS`]. The common record
/// passes this byte scan and is written as it is, without the detour
/// through [`shape`].
pub(crate) fn plain_line(json: &[u8]) -> bool {
    let mut open: Option<usize> = None;
    for (i, &b) in json.iter().enumerate() {
        match b {
            b'"' => match open.take() {
                Some(start) if i - start - 1 > MAX_CHARS => return false,
                Some(_) => {}
                None => open = Some(i),
            },
            b'\\' | 0x7f..=0xff | 0x00..=0x1f => return false,
            _ => {}
        }
    }
    true
}

/// Whether `text` needs neither escape nor cut (the common case, kept
/// as it is without a copy): no more bytes than `max`, so no more
/// characters, and nothing hidden.
fn is_plain(text: &str, max: usize) -> bool {
    text.len() <= max && !text.chars().any(crate::text::is_hidden)
}

/// [`bound`] of an owned string, without a copy when it is plain.
fn bound_owned(text: String, max: usize) -> (String, bool) {
    if is_plain(&text, max) {
        (text, false)
    } else {
        bound(&text, max)
    }
}

/// `text` escaped and cut to `max` characters, and whether it was cut.
pub(crate) fn bound(text: &str, max: usize) -> (String, bool) {
    let mut shown = 0usize;
    for c in text.chars() {
        shown += escaped_len(c);
        if shown > max {
            return (crate::text::clean(text, max), true);
        }
    }
    (crate::text::clean(text, usize::MAX), false)
}

/// How many characters `c` takes once escaped (`\u{9b}` is 6).
fn escaped_len(c: char) -> usize {
    if crate::text::is_hidden(c) {
        // `\u{` + hex digits + `}`
        4 + format!("{:x}", c as u32).len()
    } else {
        1
    }
}

/// Lower-case hex SHA-256 of the full value, as it was before escaping.
pub(crate) fn digest(text: &str) -> String {
    sha256(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_long_field_is_cut_with_a_digest_and_a_short_one_is_untouched() {
        let user = "a".repeat(250_000);
        let shaped = shape(json!({ "user": user, "comment": "work", "pid": 7 }));
        let cut = shaped["user"].as_str().unwrap();
        assert_eq!(cut.chars().count(), MAX_CHARS + 1, "{cut}");
        assert!(cut.ends_with('…'));
        assert_eq!(shaped["user_sha256"], json!(digest(&user)));
        assert_eq!(shaped["comment"], "work");
        assert!(shaped.get("comment_sha256").is_none());
        assert_eq!(shaped["pid"], 7);
    }

    #[test]
    fn controls_are_escaped_everywhere_in_the_record() {
        let shaped = shape(json!({
            "user": "ro\u{9b}31mot\u{1b}[0m\u{7f}",
            "chain": [{ "names": ["b\u{9b}astion"], "reported_by": "x\u{85}" }],
            "peer": { "exe": "/tmp/\u{1b}]0;owned\u{7}" },
        }));
        let text = shaped.to_string();
        for c in text.chars() {
            assert!(
                !crate::text::is_hidden(c),
                "{c:?} reached the record: {text}"
            );
        }
        assert_eq!(shaped["user"], "ro\\u{9b}31mot\\u{1b}[0m\\u{7f}");
        assert_eq!(shaped["chain"][0]["names"][0], "b\\u{9b}astion");
        assert_eq!(shaped["peer"]["exe"], "/tmp/\\u{1b}]0;owned\\u{7}");
    }

    #[test]
    fn escapes_count_toward_the_bound() {
        let comment = "\u{9b}".repeat(1000);
        let shaped = shape(json!({ "comment": comment }));
        assert!(shaped["comment"].as_str().unwrap().chars().count() <= MAX_CHARS + 1);
        assert!(shaped["comment_sha256"].is_string());
        // Exactly at the bound is not cut.
        let exact = "b".repeat(MAX_CHARS);
        assert_eq!(bound(&exact, MAX_CHARS), (exact.clone(), false));
    }

    #[test]
    fn lists_of_names_are_bounded_in_length_and_count() {
        let mut names: Vec<String> = (0..40).map(|i| format!("h{i}")).collect();
        names[1] = "n".repeat(5000);
        let shaped = shape(json!({ "names": names }));
        assert_eq!(shaped["names"].as_array().unwrap().len(), MAX_ITEMS);
        assert_eq!(shaped["names_total"], 40);
        assert_eq!(shaped["names_sha256"][0], Value::Null);
        assert_eq!(shaped["names_sha256"][1], json!(digest(&names[1])));
    }

    #[test]
    fn a_plain_line_is_exactly_one_shape_would_leave_alone() {
        for record in [
            json!({ "user": "deploy", "chain": [{ "names": ["bastion"] }], "pid": 1 }),
            json!({ "user": "a".repeat(MAX_CHARS) }),
        ] {
            let line = serde_json::to_vec(&record).unwrap();
            assert!(plain_line(&line), "{record}");
            assert_eq!(shape(record.clone()), record);
        }
        for record in [
            json!({ "user": "a".repeat(MAX_CHARS + 1) }),
            json!({ "user": "ro\u{9b}ot" }),
            json!({ "user": "ro\u{1b}ot" }),
            json!({ "user": "ro\u{7f}ot" }),
            json!({ "user": "ro\"ot" }),
            json!({ "user": "héllo" }),
        ] {
            let line = serde_json::to_vec(&record).unwrap();
            assert!(!plain_line(&line), "{record}");
        }
    }

    #[test]
    fn own_words_get_the_longer_bound() {
        let reason = "r".repeat(600);
        let shaped = shape(json!({ "reason": reason }));
        assert_eq!(shaped["reason"], json!(reason));
    }
}
