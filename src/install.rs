//! `hopward install`: puts the systemd user units (Linux) or the LaunchAgent
//! (macOS) in place, pointing at this binary.
//!
//! Invariants: a file that exists and differs from what would be written is
//! never overwritten without `--force`; the binary is named by an absolute
//! path, quoted for the file's syntax, and the units written are checked
//! with `systemd-analyze verify` where systemd is, so a unit systemd would
//! reject is reported as a failure, not a success.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::InstallArgs;

const SOCKET_UNIT: &str = include_str!("../systemd/hopward.socket");
const SERVICE_UNIT: &str = include_str!("../systemd/hopward.service");
const PLIST: &str = include_str!("../launchd/dev.hopward.agent.plist");

/// A path as one word of a systemd command line: double-quoted, with
/// systemd's specifiers (`%`) and variables (`$`) escaped.
pub fn systemd_word(path: &str) -> String {
    let mut out = String::from("\"");
    for c in path.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '%' => out.push_str("%%"),
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn xml_text(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The binary the units run: absolute (a unit cannot name a relative one),
/// an executable file, and a path a unit file can hold.
pub fn binary_path(bin: &Path) -> Result<PathBuf, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let abs = std::path::absolute(bin)
        .map_err(|e| format!("--bin {}: cannot make it absolute: {e}", bin.display()))?;
    let text = abs
        .to_str()
        .ok_or_else(|| format!("--bin {}: not valid UTF-8", abs.display()))?;
    if text.contains(['\n', '\r']) {
        return Err(format!(
            "--bin {text:?}: a line break cannot go in a unit file"
        ));
    }
    match std::fs::metadata(&abs) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(abs),
        Ok(_) => Err(format!("--bin {}: not an executable file", abs.display())),
        Err(e) => Err(format!("--bin {}: {e}", abs.display())),
    }
}

/// The files to write: (path, contents). `bin` must be absolute.
pub fn plan(bin: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or("HOME is not set")?;
    let bin = bin.display().to_string();
    if cfg!(target_os = "macos") {
        let plist = PLIST
            .replace("HOPWARD_BIN", &xml_text(&bin))
            .replace("HOME_DIR", &xml_text(&home.display().to_string()));
        return Ok(vec![(
            home.join("Library/LaunchAgents/dev.hopward.agent.plist"),
            plist,
        )]);
    }
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".config"));
    let dir = config.join("systemd/user");
    let service = SERVICE_UNIT.replace(
        "ExecStart=%h/.cargo/bin/hopward",
        &format!("ExecStart={}", systemd_word(&bin)),
    );
    Ok(vec![
        (dir.join("hopward.socket"), SOCKET_UNIT.to_string()),
        (dir.join("hopward.service"), service),
    ])
}

pub fn run(args: &InstallArgs) -> ExitCode {
    let bin = match args.bin.clone().map_or_else(std::env::current_exe, Ok) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("hopward: cannot tell where this binary is: {e}; pass --bin");
            return ExitCode::FAILURE;
        }
    };
    let files = match binary_path(&bin).and_then(|bin| plan(&bin)) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("hopward: {e}");
            return ExitCode::FAILURE;
        }
    };
    let changed: Vec<&PathBuf> = files
        .iter()
        .filter(|(path, text)| std::fs::read_to_string(path).is_ok_and(|old| old != *text))
        .map(|(path, _)| path)
        .collect();
    if !changed.is_empty() && !args.force {
        for path in &changed {
            eprintln!(
                "hopward: {} exists and differs; not overwriting it (use --force)",
                path.display()
            );
        }
        return ExitCode::FAILURE;
    }
    for (path, text) in &files {
        if std::fs::read_to_string(path).is_ok_and(|old| old == *text) {
            println!("unchanged {}", path.display());
            continue;
        }
        if let Some(dir) = path.parent() {
            if let Err(e) = std::fs::create_dir_all(dir) {
                eprintln!("hopward: cannot create {}: {e}", dir.display());
                return ExitCode::FAILURE;
            }
        }
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("hopward: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
        println!("wrote {}", path.display());
    }
    if !cfg!(target_os = "macos") {
        if let Err(e) = verify(&files) {
            eprintln!("hopward: {e}");
            return ExitCode::FAILURE;
        }
    }
    if cfg!(target_os = "macos") {
        println!(
            "next: launchctl bootstrap gui/$(id -u) ~/Library/LaunchAgents/dev.hopward.agent.plist"
        );
    } else {
        println!(
            "next: systemctl --user daemon-reload && systemctl --user enable --now hopward.socket"
        );
    }
    ExitCode::SUCCESS
}

/// `systemd-analyze --user verify` on the units written. Without
/// systemd-analyze (no systemd here) there is nothing to ask, and that is
/// said rather than hidden.
fn verify(files: &[(PathBuf, String)]) -> Result<(), String> {
    let units: Vec<&PathBuf> = files.iter().map(|(p, _)| p).collect();
    let out = match std::process::Command::new("systemd-analyze")
        .args(["--user", "verify"])
        .args(&units)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            println!("not verified: systemd-analyze is not installed");
            return Ok(());
        }
        Err(e) => return Err(format!("cannot run systemd-analyze verify: {e}")),
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    // verify exits 0 on some problems it only prints; those lines name
    // the unit file.
    let complaints: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("hopward.socket") || l.contains("hopward.service"))
        .collect();
    if out.status.success() && complaints.is_empty() {
        println!("verified with systemd-analyze");
        Ok(())
    } else {
        Err(format!(
            "systemd rejects the units written (systemd-analyze --user verify):\n{}",
            stderr.trim_end()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unit_words_are_quoted_and_escaped() {
        assert_eq!(systemd_word("/usr/bin/hopward"), "\"/usr/bin/hopward\"");
        assert_eq!(
            systemd_word("/home/a b/100%/$x\"y"),
            "\"/home/a b/100%%/$$x\\\"y\""
        );
    }
}
