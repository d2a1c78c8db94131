//! The leak scan: every daemon log and audit log the suite produced (kept
//! by the test helpers) is searched for the private key seeds, FIDO key
//! handles, token PINs, passphrases and signed data the suite used. Runs last (`zz_`), and the test script
//! runs it once more after everything else.

mod common;

use common::*;

/// Data the suite signs and passphrases it uses; none may be logged.
const MARKERS: &[&str] = &["hunter2", "sign me", "signed by the agent", "some data"];

#[test]
fn no_log_or_audit_line_holds_secrets_or_signed_data() {
    let dir = leak_dir();
    let secrets = std::fs::read_to_string(dir.join("secrets.txt")).unwrap_or_default();
    let mut needles: Vec<String> = secrets
        .lines()
        .filter(|l| l.len() >= 16)
        .map(str::to_string)
        .collect();
    needles.extend(MARKERS.iter().map(|m| m.to_string()));
    // Token PINs (tests/pkcs11_tokens.rs), whatever their length.
    let pins = std::fs::read_to_string(dir.join("pins.txt")).unwrap_or_default();
    needles.extend(pins.lines().filter(|l| !l.is_empty()).map(str::to_string));
    let mut scanned = 0usize;
    let mut bytes = 0usize;
    for entry in std::fs::read_dir(dir.join("logs")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        scanned += 1;
        bytes += text.len();
        for needle in &needles {
            assert!(
                !text.contains(needle.as_str()),
                "{} contains a secret or signed data ({needle:?})",
                path.display()
            );
        }
    }
    // Run on its own before the rest of the suite there is nothing to scan;
    // that must not pass silently.
    assert!(
        scanned > 0 && bytes > 0,
        "no logs to scan: run the whole suite (scripts/test.sh)"
    );
    println!(
        "scanned {scanned} log files ({bytes} bytes) for {} secrets",
        needles.len()
    );
}
