//! The layers of `src/` (see `src/lib.rs`): every module imports only from
//! its own layer or the ones below, and no two files import each other,
//! directly or around a loop. Reads the sources; runs in milliseconds.
//!
//! Test modules (`#[cfg(test)] mod tests`, last in their file) are left out:
//! a test of certificate parsing needs a CA that signs, which lives above.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Lowest first. Folders and the leaf files at the top of `src/`.
const LAYERS: &[&[&str]] = &[
    &["sys"],
    &["text", "duration", "paths"],
    &["ssh"],
    &["protocol"],
    &["trust"],
    &["keys"],
    &["policy"],
    &["confirm"],
    &["daemon"],
    &["app"],
    &["testing"],
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
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

/// `src/a/b.rs` → `a/b.rs`, as the graph names files.
fn name(path: &Path) -> String {
    path.strip_prefix(src())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

fn layer_of(file: &str) -> usize {
    let top = file.split('/').next().unwrap().trim_end_matches(".rs");
    LAYERS
        .iter()
        .position(|layer| layer.contains(&top))
        .unwrap_or_else(|| panic!("src/{file} is in no layer: add `{top}` to LAYERS"))
}

/// The file a module path names: the longest prefix that is a file.
fn file_of(segments: &[&str]) -> Option<String> {
    (1..=segments.len()).rev().find_map(|n| {
        let base = segments[..n].join("/");
        [format!("{base}.rs"), format!("{base}/mod.rs")]
            .into_iter()
            .find(|candidate| src().join(candidate).is_file())
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

fn import_graph() -> BTreeMap<String, BTreeSet<String>> {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut graph = BTreeMap::new();
    for path in files {
        let file = name(&path);
        // A unit test file of its own is test code through and through.
        if file == "lib.rs" || file == "main.rs" || file.ends_with("tests.rs") {
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
fn every_import_points_to_the_same_layer_or_below() {
    let graph = import_graph();
    assert!(graph.len() > 50, "only {} files read", graph.len());
    let mut upward = Vec::new();
    for (file, targets) in &graph {
        for target in targets {
            if layer_of(target) > layer_of(file) {
                upward.push(format!("src/{file} imports src/{target}"));
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
            return Some(stack[at..].iter().map(|f| format!("src/{f}")).collect());
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
/// the first sentence of its header.
fn layout() -> String {
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    let mut names: Vec<String> = files.iter().map(|p| name(p)).collect();
    let rank = |file: &str| match file {
        "lib.rs" | "main.rs" => (0, file.to_string()),
        _ => (
            layer_of(file) + 1,
            // A folder's mod.rs first, then its files.
            file.replace("mod.rs", "!"),
        ),
    };
    names.sort_by_key(|n| rank(n));
    let mut out = String::from("```\n");
    for file in names {
        let text = std::fs::read_to_string(src().join(&file)).unwrap();
        let shown = format!("src/{file}");
        out.push_str(&format!("{shown:<28} {}\n", role(&text)));
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
