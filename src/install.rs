//! `hopward install`: puts the systemd user units (Linux) or the LaunchAgent
//! (macOS) in place, pointing at this binary.
//!
//! Invariant: a file that exists and differs from what would be written is
//! never overwritten without `--force`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::cli::InstallArgs;

const SOCKET_UNIT: &str = include_str!("../systemd/hopward.socket");
const SERVICE_UNIT: &str = include_str!("../systemd/hopward.service");
const PLIST: &str = include_str!("../launchd/dev.hopward.agent.plist");

/// The files to write: (path, contents).
pub fn plan(bin: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or("HOME is not set")?;
    let bin = bin.display().to_string();
    if cfg!(target_os = "macos") {
        let plist = PLIST
            .replace("HOPWARD_BIN", &bin)
            .replace("HOME_DIR", &home.display().to_string());
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
        &format!("ExecStart={bin}"),
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
    let files = match plan(&bin) {
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
