//! The leak scan: every daemon log and audit log the suite produced (kept
//! by the test helpers) is searched for the private key seeds, FIDO key
//! handles, token PINs, passphrases and signed data the suite used.
//!
//! It means most after the rest of the suite has run: cargo runs test files
//! by name, so it comes last in `cargo test`, and `scripts/test.sh` runs it
//! once more after OpenSSH's own suites (having cleared the kept logs
//! before the suite). Run without the suite's logs it fails; it never
//! passes having looked at nothing.

mod common;

use common::*;

/// Data the suite signs and passphrases it uses; none may be logged.
const MARKERS: &[&str] = &["hunter2", "sign me", "signed by the agent", "some data"];

/// A daemon log line written when a key was handed to the agent: where
/// its secret would show if one leaked.
const KEY_ADDED: &str = "added key";

#[test]
fn no_log_or_audit_line_holds_secrets_or_signed_data() {
    let dir = leak_dir();
    let secrets = std::fs::read_to_string(dir.join("secrets.txt")).unwrap_or_default();
    let mut needles: Vec<String> = secrets
        .lines()
        .filter(|l| l.len() >= 16)
        .map(str::to_string)
        .collect();
    let recorded_secrets = needles.len();
    needles.extend(MARKERS.iter().map(|m| m.to_string()));
    // Token PINs (tests/pkcs11_tokens.rs), whatever their length.
    let pins = std::fs::read_to_string(dir.join("pins.txt")).unwrap_or_default();
    let pins: Vec<String> = pins
        .lines()
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect();
    let recorded_pins = pins.len();
    needles.extend(pins);
    let mut scanned = 0usize;
    let mut bytes = 0usize;
    // Files holding the events around which a secret could slip out: a
    // daemon log that saw keys added, an audit log that recorded signatures.
    let mut logs_with_adds = 0usize;
    let mut audits_with_signs = 0usize;
    let entries = std::fs::read_dir(dir.join("logs"))
        .unwrap_or_else(|e| panic!("no kept logs in {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        scanned += 1;
        bytes += text.len();
        let name = path.file_name().unwrap().to_string_lossy();
        if name.ends_with("-daemon.log") && text.contains(KEY_ADDED) {
            logs_with_adds += 1;
        }
        if name.ends_with("-audit.jsonl")
            && text.lines().any(|l| {
                serde_json::from_str::<serde_json::Value>(l)
                    .is_ok_and(|record| record["event"] == "sign")
            })
        {
            audits_with_signs += 1;
        }
        for needle in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "{} contains a secret or signed data ({needle:?})",
                path.display()
            );
        }
    }
    // Without the suite's logs there is nothing to scan: that must fail,
    // never pass having looked at nothing.
    let hint = "run the whole suite first (scripts/test.sh)";
    assert!(
        recorded_secrets > 0,
        "no key seeds were recorded in {}: {hint}",
        dir.display()
    );
    assert!(
        recorded_pins > 0,
        "no token PINs were recorded in {}: {hint}",
        dir.display()
    );
    assert!(
        logs_with_adds > 0,
        "none of the {scanned} kept files is a daemon log that saw a key added: {hint}"
    );
    assert!(
        audits_with_signs > 0,
        "none of the {scanned} kept files is an audit log with a signature: {hint}"
    );
    println!(
        "scanned {scanned} log files ({bytes} bytes; {logs_with_adds} daemon logs with added \
         keys, {audits_with_signs} audit logs with signatures) for {} secrets \
         ({recorded_secrets} key secrets, {recorded_pins} PINs)",
        needles.len()
    );
}
