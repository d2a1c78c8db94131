//! No build that ships carries what only tests may reach: in a build of the
//! whole workspace without its tests (`cargo build --release --workspace`,
//! the benchmarks' command), no crate of hopward has its `testing` or
//! `unshielded-benchmark` feature on. A member that asks for either through a
//! normal dependency (as the load generator once asked for `testing`) turns
//! it on for the hopward binary that build makes.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

/// Features that must stay off outside the tests and the benchmark build.
const TEST_ONLY: [&str; 2] = ["testing", "unshielded-benchmark"];

/// Each workspace crate and its features, as cargo resolves them over the
/// given dependency kinds for the whole workspace.
fn features(edges: &str) -> BTreeMap<String, BTreeSet<String>> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--workspace", "--locked", "--offline", "--edges"])
        .arg(edges)
        .args(["--prefix", "none", "--format", "{p}|{f}"])
        .output()
        .unwrap_or_else(|e| panic!("running {cargo:?} tree: {e}"));
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut found: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        // `hopward-core v0.1.0 (/path)|testing,unshielded-benchmark (*)`
        let Some((package, features)) = line.split_once('|') else {
            continue;
        };
        let name = package.split(' ').next().unwrap_or_default();
        if !name.starts_with("hopward") {
            continue;
        }
        let features = features.trim_end_matches(" (*)").trim();
        found.entry(name.to_string()).or_default().extend(
            features
                .split(',')
                .filter(|f| !f.is_empty())
                .map(str::to_string),
        );
    }
    found
}

#[test]
fn a_build_of_the_workspace_without_tests_turns_on_no_test_feature() {
    let normal = features("normal,build");
    let crates: Vec<&str> = normal.keys().map(String::as_str).collect();
    assert_eq!(
        crates,
        [
            "hopward",
            "hopward-core",
            "hopward-loadgen",
            "hopward-model",
            "hopward-sys"
        ],
        "the workspace's crates, as cargo tree lists them"
    );
    let on: Vec<String> = normal
        .iter()
        .flat_map(|(name, features)| {
            features
                .iter()
                .filter(|f| TEST_ONLY.contains(&f.as_str()))
                .map(move |f| format!("{name}: {f}"))
        })
        .collect();
    assert!(
        on.is_empty(),
        "a build without tests turns on test-only features: {on:?}; \
         depend on the lower crates, not on hopward with `testing`"
    );
}

#[test]
fn the_reading_sees_the_feature_where_the_tests_turn_it_on() {
    // The tests' own build does turn `testing` on (the dev-dependency on
    // the library), so a reading that never saw the feature would fail here.
    let with_tests = features("normal,build,dev");
    for name in ["hopward", "hopward-sys", "hopward-model", "hopward-core"] {
        assert!(
            with_tests[name].contains("testing"),
            "{name}: {:?}",
            with_tests[name]
        );
    }
}
