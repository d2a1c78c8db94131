//! scripts/test.sh leaves out, by name, the tests that drive OpenSSH 10.5's
//! programs when that build is missing, and lists them as not run. The list
//! must be exactly those tests: one missing from it would fail a run without
//! the build, one too many would be left out for nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What marks code that needs the 10.5 build.
const MARKERS: [&str; 2] = ["openssh105::", "../shared/openssh-10.5"];

/// This file names the markers itself.
const SELF: &str = "test_script";

/// The top-level functions of one test file: name, whether it is a test,
/// and its text (attributes and nested items included).
fn functions(text: &str) -> Vec<(String, bool, String)> {
    let mut out: Vec<(String, bool, String)> = Vec::new();
    let mut pending_test = false;
    for line in text.lines() {
        if line.starts_with("#[test]") || line.starts_with("#[tokio::test") {
            pending_test = true;
        }
        let head = line
            .strip_prefix("pub ")
            .unwrap_or(line)
            .trim_start_matches("async ");
        if let Some(rest) = head.strip_prefix("fn ") {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            out.push((name, pending_test, String::new()));
            pending_test = false;
        }
        if let Some(last) = out.last_mut() {
            last.2.push_str(line);
            last.2.push('\n');
        }
    }
    out
}

/// The tests of one file that need the build, directly or through helpers
/// of the same file.
fn needing(text: &str) -> BTreeSet<String> {
    let fns = functions(text);
    let mut needs: BTreeMap<&str, bool> = fns
        .iter()
        .map(|(name, _, body)| (name.as_str(), MARKERS.iter().any(|m| body.contains(m))))
        .collect();
    // A function that calls one that needs the build needs it too.
    loop {
        let mut changed = false;
        for (name, _, body) in &fns {
            if needs[name.as_str()] {
                continue;
            }
            let calls = needs
                .iter()
                .filter(|(_, n)| **n)
                .any(|(helper, _)| body.contains(&format!("{helper}(")));
            if calls {
                needs.insert(name, true);
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    fns.iter()
        .filter(|(name, is_test, _)| *is_test && needs[name.as_str()])
        .map(|(name, _, _)| name.clone())
        .collect()
}

/// The tests of every tests/*.rs that need the build, as `target::name`,
/// through helpers of their own file too.
fn tests_needing_openssh_10_5() -> BTreeSet<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let target = path.file_stem().unwrap().to_string_lossy().into_owned();
        if target == SELF {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for name in needing(&text) {
            found.insert(format!("{target}::{name}"));
        }
    }
    found
}

/// The names in `OPENSSH105_RUST_TESTS="..."` of scripts/test.sh.
fn listed_in_test_sh() -> BTreeSet<String> {
    let script =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test.sh"))
            .unwrap();
    let start = script
        .find("OPENSSH105_RUST_TESTS=\"")
        .expect("scripts/test.sh lists OPENSSH105_RUST_TESTS")
        + "OPENSSH105_RUST_TESTS=\"".len();
    let end = start + script[start..].find('"').unwrap();
    script[start..end]
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn test_sh_leaves_out_exactly_the_tests_that_need_openssh_10_5() {
    let needed = tests_needing_openssh_10_5();
    let listed = listed_in_test_sh();
    // The scan itself finds what it must: a whole file of them and one
    // reached only through a helper.
    assert!(
        needed.contains("mldsa::destination_constraints_name_mldsa_host_keys"),
        "{needed:?}"
    );
    assert!(
        needed.contains("ssh_agent_10x::query_extension_answers_ssh_add_10_5"),
        "{needed:?}"
    );
    let unlisted: Vec<_> = needed.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&needed).collect();
    assert!(
        unlisted.is_empty() && extra.is_empty(),
        "scripts/test.sh's OPENSSH105_RUST_TESTS is wrong: add {unlisted:?}, remove {extra:?}"
    );
}

#[test]
fn the_scan_follows_helpers_and_ignores_tests_that_do_not_need_the_build() {
    let text = "fn helper() {\n    openssh105::dir();\n}\n\
                fn indirect() {\n    helper();\n}\n\
                #[test]\nfn uses_it() {\n    indirect();\n}\n\
                #[test]\nfn does_not() {\n    other();\n}\n";
    let fns = functions(text);
    let names: Vec<_> = fns.iter().map(|(n, t, _)| (n.as_str(), *t)).collect();
    assert_eq!(
        names,
        [
            ("helper", false),
            ("indirect", false),
            ("uses_it", true),
            ("does_not", true)
        ]
    );
    assert_eq!(needing(text), BTreeSet::from(["uses_it".to_string()]));
}
