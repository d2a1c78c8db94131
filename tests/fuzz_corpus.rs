//! Replays the fuzzing seeds (fuzz/seeds/TARGET, kept in the repository)
//! through the same entry points the fuzz targets use: every seed must be
//! handled without a panic, and so without breaking any invariant the
//! entry point asserts (frames as a plain splitter sees them, rule shapes
//! agreeing with full matching, a login that does not belong to its bind
//! never decided better than `forwarded_unverified`, ...).
//!
//! The seeds are a small set, minimized from the working corpus and pruned
//! to the inputs that add the most coverage. The working corpus itself
//! (fuzz/corpus/TARGET) is not kept in the repository; fuzzing grows it
//! from the seeds, see RELIABILITY.md.

use std::path::Path;

type Target = fn(&[u8]);

const TARGETS: &[(&str, Target)] = &[
    ("frame_request", hopward::testing::fuzz::frame_request),
    ("session_bind", hopward::testing::fuzz::session_bind),
    ("signed_data", hopward::testing::fuzz::signed_data),
    ("destination", hopward::testing::fuzz::destination),
    ("policy", hopward::testing::fuzz::policy),
    ("known_hosts", hopward::testing::fuzz::known_hosts),
    ("bound_login", hopward::testing::fuzz::bound_login),
    ("sshd_login", hopward::testing::fuzz::sshd_login),
];

fn repository() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn seeds_replay_without_a_panic() {
    let root = repository().join("fuzz/seeds");
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            let data = std::fs::read(&path).unwrap();
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(result.is_ok(), "{name}: {} panics", path.display());
            inputs += 1;
        }
        assert!(inputs > 0, "{name}: no seeds in {}", dir.display());
    }
}

/// Every fuzz target is replayed here, and every seed folder belongs to a
/// target: a new target cannot be left without seeds, nor a renamed one
/// leave its seeds unreplayed.
#[test]
fn every_fuzz_target_has_seeds_and_every_seed_folder_a_target() {
    let names = |dir: &Path, strip: &str| -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let name = entry.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(strip).unwrap_or(&name).to_string()
            })
            .collect();
        names.sort();
        names
    };
    let mut replayed: Vec<String> = TARGETS.iter().map(|(name, _)| name.to_string()).collect();
    replayed.sort();
    assert_eq!(
        names(&repository().join("fuzz/fuzz_targets"), ".rs"),
        replayed,
        "fuzz/fuzz_targets"
    );
    assert_eq!(
        names(&repository().join("fuzz/seeds"), ""),
        replayed,
        "fuzz/seeds"
    );
}
