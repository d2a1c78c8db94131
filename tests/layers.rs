//! The layers of the workspace (see `src/lib.rs`): every module imports only
//! from its own layer or the ones below, and no two files import each other,
//! directly or around a loop. The crates hold the floors between them; this
//! holds the floors inside each crate (trust < keys < policy in
//! hopward-core, confirm < daemon < app in hopward). Reads the sources; runs
//! in milliseconds.
//!
//! Every crate imports the ones below under the module names of the layers
//! (`use hopward_model::ssh;`), so `crate::ssh::…` names the same module in
//! each: the guard reads the workspace as one tree of module paths
//! (`policy/file.rs`) and maps them to the crate that holds them.
//!
//! Test modules (`#[cfg(test)] mod tests`, last in their file) are left out:
//! a test of certificate parsing needs a CA that signs, which lives above.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first: each layer's crate, and its folders and leaf files.
const LAYERS: &[(&str, &[&str])] = &[
    ("hopward-sys", &["sys"]),
    ("hopward-model", &["text", "duration", "paths"]),
    ("hopward-model", &["ssh"]),
    ("hopward-model", &["protocol"]),
    ("hopward-core", &["trust"]),
    ("hopward-core", &["keys"]),
    ("hopward-core", &["policy"]),
    ("hopward", &["confirm"]),
    ("hopward", &["daemon"]),
    ("hopward", &["app"]),
    ("hopward", &["testing"]),
];

/// A crate that is one module: its `lib.rs` is that module's `mod.rs`, and
/// its files sit at the top of its `src/`.
const WHOLE: (&str, &str) = ("hopward-sys", "sys");

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn crates() -> Vec<&'static str> {
    let mut out: Vec<&str> = LAYERS.iter().map(|(krate, _)| *krate).collect();
    out.dedup();
    out
}

/// Where a crate's sources are.
fn src_of(krate: &str) -> PathBuf {
    match krate {
        "hopward" => workspace().join("src"),
        _ => workspace().join("crates").join(krate).join("src"),
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// A file of a crate as the graph names it, by module path (`policy/file.rs`,
/// `sys/mod.rs`); `None` for a crate root that is no module of the layers.
fn name(krate: &str, path: &Path) -> Option<String> {
    let rel = path
        .strip_prefix(src_of(krate))
        .unwrap()
        .to_string_lossy()
        .into_owned();
    if krate == WHOLE.0 {
        let rel = if rel == "lib.rs" { "mod.rs" } else { &rel };
        return Some(format!("{}/{rel}", WHOLE.1));
    }
    (rel != "lib.rs" && rel != "main.rs").then_some(rel)
}

/// The crate whose layers hold a file of the graph.
fn crate_of(file: &str) -> Option<&'static str> {
    let top = file.split('/').next().unwrap().trim_end_matches(".rs");
    LAYERS
        .iter()
        .find(|(_, layer)| layer.contains(&top))
        .map(|(krate, _)| *krate)
}

/// Where a file of the graph is on disk.
fn disk(file: &str) -> Option<PathBuf> {
    let krate = crate_of(file)?;
    if krate == WHOLE.0 {
        let rel = file.strip_prefix(WHOLE.1)?.strip_prefix('/')?;
        return Some(src_of(krate).join(if rel == "mod.rs" { "lib.rs" } else { rel }));
    }
    Some(src_of(krate).join(file))
}

/// A file of the graph as the workspace shows it: `crates/hopward-core/src/policy/file.rs`.
fn shown(file: &str) -> String {
    disk(file)
        .unwrap()
        .strip_prefix(workspace())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn layer_of(file: &str) -> usize {
    let top = file.split('/').next().unwrap().trim_end_matches(".rs");
    LAYERS
        .iter()
        .position(|(_, layer)| layer.contains(&top))
        .unwrap_or_else(|| panic!("{file} is in no layer: add `{top}` to LAYERS"))
}

/// Every source file of the workspace's crates: its crate, its path, and
/// its name in the graph.
fn sources() -> Vec<(&'static str, PathBuf, Option<String>)> {
    let mut out = Vec::new();
    for krate in crates() {
        let mut files = Vec::new();
        rust_files(&src_of(krate), &mut files);
        for path in files {
            let file = name(krate, &path);
            out.push((krate, path, file));
        }
    }
    out
}

/// The file a module path names: the longest prefix that is a file.
fn file_of(segments: &[&str]) -> Option<String> {
    (1..=segments.len()).rev().find_map(|n| {
        let base = segments[..n].join("/");
        [format!("{base}.rs"), format!("{base}/mod.rs")]
            .into_iter()
            .find(|candidate| disk(candidate).is_some_and(|path| path.is_file()))
    })
}

/// The code outside the test module, without comments.
fn code(text: &str) -> String {
    let end = text
        .find("#[cfg(test)]\nmod ")
        .or_else(|| text.find("#[cfg(test)]\npub(crate) mod "))
        .unwrap_or(text.len());
    text[..end]
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Paths after `prefix` (`crate::` or `super::`), as segments.
fn paths_after<'a>(code: &'a str, prefix: &str) -> Vec<Vec<&'a str>> {
    let mut out = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find(prefix) {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + prefix.len()..];
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':') {
            continue;
        }
        let end = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(rest.len());
        let segments: Vec<&str> = rest[..end]
            .split("::")
            .take_while(|s| s.starts_with(|c: char| c.is_ascii_lowercase() || c == '_'))
            .collect();
        if !segments.is_empty() {
            out.push(segments);
        }
    }
    out
}

/// Whether `path` is a module its parent declares `#[cfg(test)] mod
/// name;`: test code, as an inline `#[cfg(test)] mod` is (see [`code`]).
fn test_only(path: &Path) -> bool {
    let (Some(dir), Some(stem)) = (path.parent(), path.file_stem()) else {
        return false;
    };
    let parent = match dir.join("mod.rs") {
        own if own.is_file() && own != path => own,
        _ => dir.with_extension("rs"),
    };
    let declared = format!("#[cfg(test)]\nmod {};", stem.to_string_lossy());
    std::fs::read_to_string(parent).is_ok_and(|text| text.contains(&declared))
}

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = BTreeMap::new();
    for (_, path, file) in sources() {
        let Some(file) = file else { continue };
        // A unit test file of its own is test code through and through.
        if test_only(&path) || file.ends_with("tests.rs") {
            continue;
        }
        let code = code(&std::fs::read_to_string(&path).unwrap());
        let folder = Path::new(&file)
            .parent()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        // `super::` of `a/b.rs` is `a/`; of `a/mod.rs` it is the crate root.
        let parent: Vec<&str> = if file.ends_with("mod.rs") || folder.is_empty() {
            Vec::new()
        } else {
            folder.split('/').collect()
        };
        let mut targets = BTreeSet::new();
        for segments in paths_after(&code, "crate::") {
            targets.extend(file_of(&segments));
        }
        for segments in paths_after(&code, "super::") {
            let mut full = parent.clone();
            full.extend(segments);
            targets.extend(file_of(&full));
        }
        targets.remove(&file);
        graph.insert(file, targets);
    }
    graph
}

#[test]
fn every_file_is_in_the_crate_of_its_layer() {
    let mut misplaced = Vec::new();
    for (krate, path, file) in sources() {
        let Some(file) = file else { continue };
        layer_of(&file);
        if crate_of(&file) != Some(krate) {
            misplaced.push(format!(
                "{} is in {krate}, but its layer is in {}",
                path.display(),
                crate_of(&file).unwrap()
            ));
        }
    }
    assert!(misplaced.is_empty(), "{}", misplaced.join("\n"));
}

#[test]
fn every_import_points_to_the_same_layer_or_below() {
    let graph = import_graph();
    assert!(graph.len() > 50, "only {} files read", graph.len());
    let mut upward = Vec::new();
    for (file, targets) in &graph {
        for target in targets {
            if layer_of(target) > layer_of(file) {
                upward.push(format!("{} imports {}", shown(file), shown(target)));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports from a higher layer:\n{}",
        upward.join("\n")
    );
}

#[test]
fn no_file_imports_itself_around_a_loop() {
    let graph = import_graph();
    // Depth-first search; a file met again while on the stack closes a loop.
    fn visit<'a>(
        file: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        stack: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = stack.iter().position(|f| *f == file) {
            return Some(stack[at..].iter().map(|f| shown(f)).collect());
        }
        if !done.insert(file) {
            return None;
        }
        stack.push(file);
        for target in graph.get(file).into_iter().flatten() {
            if let Some(found) = visit(target, graph, stack, done) {
                return Some(found);
            }
        }
        stack.pop();
        None
    }
    let mut done = BTreeSet::new();
    for file in graph.keys() {
        if let Some(cycle) = visit(file, &graph, &mut Vec::new(), &mut done) {
            panic!("import cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_guard_sees_an_upward_import() {
    // The reader must find imports written in every form the sources use.
    let code =
        "use crate::daemon::agent::Agent;\nfn f() { crate::keys::sign::x(); }\n// crate::app::cli";
    let stripped = self::code(code);
    let found = paths_after(&stripped, "crate::");
    assert_eq!(
        found,
        vec![vec!["daemon", "agent"], vec!["keys", "sign", "x"]]
    );
    assert_eq!(file_of(&found[0]).as_deref(), Some("daemon/agent.rs"));
    assert_eq!(file_of(&found[1]).as_deref(), Some("keys/sign.rs"));
    assert!(layer_of("daemon/agent.rs") > layer_of("ssh/key.rs"));
    // Inside a crate too: policy reads trust, never the other way.
    assert!(layer_of("trust/context.rs") < layer_of("policy/file.rs"));
    assert_eq!(crate_of("trust/context.rs"), crate_of("policy/file.rs"));
    // A module path names the file in the crate that holds it.
    assert_eq!(
        shown("keys/sign.rs"),
        "crates/hopward-core/src/keys/sign.rs"
    );
    assert_eq!(shown("sys/mod.rs"), "crates/hopward-sys/src/lib.rs");
    assert_eq!(
        file_of(&["sys", "signing", "EcCurve"]).as_deref(),
        Some("sys/signing.rs")
    );
    assert_eq!(shown("daemon/agent.rs"), "src/daemon/agent.rs");
}

/// The first sentence of a file's `//!` header.
fn role(text: &str) -> String {
    let header: Vec<&str> = text
        .lines()
        .take_while(|l| l.starts_with("//!"))
        .map(|l| l.trim_start_matches("//!").trim())
        .take_while(|l| !l.is_empty())
        .collect();
    let joined = header.join(" ");
    let end = joined.find(". ").map(|at| at + 1).unwrap_or(joined.len());
    let sentence = joined[..end].trim_end_matches('.');
    // A line of the table, not the whole story: cut at a word.
    const WIDTH: usize = 100;
    if sentence.chars().count() <= WIDTH {
        return sentence.to_string();
    }
    let cut: String = sentence.chars().take(WIDTH).collect();
    let at = cut.rfind(' ').unwrap_or(cut.len());
    format!("{} …", cut[..at].trim_end_matches([',', ':', ';']))
}

/// docs/layout.md's file list, made from the tree: each layer, each file, and
/// the first sentence of its header. A crate's `lib.rs` comes before its
/// lowest layer.
fn layout() -> String {
    let mut files: Vec<((usize, String), String)> = sources()
        .into_iter()
        .map(|(krate, path, file)| {
            let rank = match &file {
                Some(file) => (
                    layer_of(file) + 1,
                    // A folder's mod.rs first, then its files.
                    file.replace("mod.rs", "!"),
                ),
                None if krate == "hopward" => (0, path.to_string_lossy().into_owned()),
                None => {
                    let lowest = LAYERS.iter().position(|(k, _)| *k == krate).unwrap();
                    (lowest + 1, String::new())
                }
            };
            let shown = path
                .strip_prefix(workspace())
                .unwrap()
                .to_string_lossy()
                .into_owned();
            (rank, shown)
        })
        .collect();
    files.sort();
    let width = files
        .iter()
        .map(|(_, shown)| shown.len())
        .max()
        .unwrap_or(0);
    let mut out = String::from("```\n");
    for (_, shown) in files {
        let text = std::fs::read_to_string(workspace().join(&shown)).unwrap();
        out.push_str(&format!("{shown:<width$} {}\n", role(&text)));
    }
    out.push_str("```\n");
    out
}

#[test]
fn the_documented_layout_is_the_tree() {
    const START: &str = "<!-- layout: made by tests/layers.rs; HOPWARD_BLESS=1 rewrites it -->\n";
    const END: &str = "<!-- layout end -->";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/layout.md");
    let readme = std::fs::read_to_string(&path).unwrap();
    let start = readme
        .find(START)
        .expect("docs/layout.md has the layout marker")
        + START.len();
    let end = start
        + readme[start..]
            .find(END)
            .expect("docs/layout.md has the layout end marker");
    let wanted = layout();
    if std::env::var_os("HOPWARD_BLESS").is_some() {
        let updated = format!("{}{wanted}{}", &readme[..start], &readme[end..]);
        std::fs::write(&path, updated).unwrap();
        return;
    }
    assert_eq!(
        readme[start..end],
        wanted,
        "docs/layout.md is not the tree: run HOPWARD_BLESS=1 cargo test --test layers"
    );
}
