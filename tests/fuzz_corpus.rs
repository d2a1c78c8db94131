//! Replays the fuzzing corpus (fuzz/corpus/TARGET, kept in the repository)
//! through the same entry points the fuzz targets use: every input that
//! fuzzing found interesting, including any that once crashed, must be
//! handled without a panic.

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
];

#[test]
fn corpus_replays_without_a_panic() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
    for (name, target) in TARGETS {
        let dir = root.join(name);
        let mut inputs = 0;
        for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.unwrap().path();
            // A fuzzer running on the same corpus may remove a file after
            // it was listed.
            let data = match std::fs::read(&path) {
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                read => read.unwrap(),
            };
            let result = std::panic::catch_unwind(|| target(&data));
            assert!(result.is_ok(), "{name}: {} panics", path.display());
            inputs += 1;
        }
        assert!(inputs > 0, "{name}: the corpus is empty");
    }
}
