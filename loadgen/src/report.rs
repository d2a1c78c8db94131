//! The run's tables as printed, and `--docs`: writing them into
//! docs/benchmarks.md between the markers.

use std::path::PathBuf;
use std::process::Command;

/// Everything the run prints to standard output, kept for `--docs`.
pub(crate) static REPORT: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// `--docs FILE`: where the run's tables are written when it ends.
pub(crate) static DOCS: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();

/// `println!`, and the same line kept for `--docs`.
macro_rules! out {
    () => {
        out!("")
    };
    ($($arg:tt)*) => {{
        let line = format!($($arg)*);
        println!("{line}");
        let mut report = $crate::report::REPORT.lock().unwrap_or_else(|e| e.into_inner());
        report.push_str(&line);
        report.push('\n');
    }};
}

/// The markers in the docs file between which a run's tables stand.
const DOCS_BEGIN: &str =
    "<!-- hopward-loadgen: begin (written by `hopward-loadgen --docs`; do not edit by hand) -->";
const DOCS_END: &str = "<!-- hopward-loadgen: end -->";

/// With `--docs FILE`: replaces what stands between the markers in FILE
/// (or appends them) with this run's tables, the command that made them
/// and the machine it ran on, so the published figures are always one
/// whole run and never edited by hand.
pub(crate) fn write_docs() {
    let Some(path) = DOCS.get() else { return };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|m| m.trim_start_matches([' ', '\t', ':']).to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let report = REPORT.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let block = format!(
        "{DOCS_BEGIN}\n\n`hopward-loadgen {}`, {date}, {cpus} CPUs ({model}):\n\n```text\n{}```\n\n{DOCS_END}",
        args.join(" "),
        report.trim_start_matches('\n')
    );
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let new = match (text.find(DOCS_BEGIN), text.find(DOCS_END)) {
        (Some(b), Some(e)) if b < e => {
            format!("{}{block}{}", &text[..b], &text[e + DOCS_END.len()..])
        }
        _ => format!("{}\n## The latest run\n\n{block}\n", text.trim_end()),
    };
    if let Err(e) = std::fs::write(path, new) {
        eprintln!("hopward-loadgen: cannot write {}: {e}", path.display());
        std::process::exit(1);
    }
    eprintln!("hopward-loadgen: tables written to {}", path.display());
}
