//! `hopward install`: puts the systemd user units (Linux) or the LaunchAgent
//! (macOS) in place, pointing at this binary, and the man pages and shell
//! completions where man and the shells look for a user's own.
//!
//! Invariants: a file that exists and differs from what would be written is
//! never overwritten without `--force`; the binary is named by an absolute
//! path, quoted for the file's syntax, and the units written are checked
//! with `systemd-analyze verify` where systemd is, so a unit systemd would
//! reject is reported as a failure, not a success.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::app::cli::{CompletionsArgs, InstallArgs, ManArgs};

const SOCKET_UNIT: &str = include_str!("../../systemd/hopward.socket");
const SERVICE_UNIT: &str = include_str!("../../systemd/hopward.service");
const PLIST: &str = include_str!("../../launchd/dev.hopward.agent.plist");

/// A path as one word of a systemd command line: double-quoted, with
/// systemd's specifiers (`%`) and variables (`$`) escaped.
pub(crate) fn systemd_word(path: &str) -> String {
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
pub(crate) fn binary_path(bin: &Path) -> Result<PathBuf, String> {
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
pub(crate) fn plan(bin: &Path) -> Result<Vec<(PathBuf, String)>, String> {
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .ok_or("HOME is not set")?;
    let bin = bin.display().to_string();
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|c| !c.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".config"));
    let mut files = docs(&home, &config);
    if cfg!(target_os = "macos") {
        let plist = PLIST
            .replace("HOPWARD_BIN", &xml_text(&bin))
            .replace("HOME_DIR", &xml_text(&home.display().to_string()));
        files.push((
            home.join("Library/LaunchAgents/dev.hopward.agent.plist"),
            plist,
        ));
        return Ok(files);
    }
    let dir = config.join("systemd/user");
    let service = SERVICE_UNIT.replace(
        "ExecStart=%h/.cargo/bin/hopward",
        &format!("ExecStart={}", systemd_word(&bin)),
    );
    files.push((dir.join("hopward.socket"), SOCKET_UNIT.to_string()));
    files.push((dir.join("hopward.service"), service));
    Ok(files)
}

/// The man pages and completions: `$XDG_DATA_HOME` (`~/.local/share`)
/// `man/man1/`, `bash-completion/completions/hopward`,
/// `zsh/site-functions/_hopward`, and fish's `completions/hopward.fish`
/// under the config directory.
fn docs(home: &Path, config: &Path) -> Vec<(PathBuf, String)> {
    use clap_complete::Shell;
    let data = std::env::var_os("XDG_DATA_HOME")
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".local/share"));
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
    let mut files: Vec<(PathBuf, String)> = crate::app::manual::man_pages()
        .into_iter()
        .map(|(name, page)| (data.join("man/man1").join(name), text(page)))
        .collect();
    files.push((
        data.join("bash-completion/completions/hopward"),
        text(crate::app::manual::completion(Shell::Bash)),
    ));
    files.push((
        data.join("zsh/site-functions/_hopward"),
        text(crate::app::manual::completion(Shell::Zsh)),
    ));
    files.push((
        config.join("fish/completions/hopward.fish"),
        text(crate::app::manual::completion(Shell::Fish)),
    ));
    files
}

/// `hopward man`: hopward.1 on standard output, or every page into DIR.
pub(crate) fn man(args: &ManArgs) -> ExitCode {
    use std::io::Write as _;
    let pages = crate::app::manual::man_pages();
    match &args.dir {
        None => {
            let top = pages.iter().find(|(name, _)| name == "hopward.1");
            let written = top.map(|(_, page)| std::io::stdout().write_all(page));
            match written {
                Some(Ok(())) => ExitCode::SUCCESS,
                Some(Err(e)) => {
                    eprintln!("hopward: cannot write the man page: {e}");
                    ExitCode::FAILURE
                }
                None => ExitCode::FAILURE,
            }
        }
        Some(dir) => {
            for (name, page) in &pages {
                let path = dir.join(name);
                if let Err(e) = std::fs::write(&path, page) {
                    eprintln!("hopward: cannot write {}: {e}", path.display());
                    return ExitCode::FAILURE;
                }
                println!("wrote {}", path.display());
            }
            ExitCode::SUCCESS
        }
    }
}

/// `hopward completions SHELL`: the script on standard output.
pub(crate) fn completions(args: &CompletionsArgs) -> ExitCode {
    use std::io::Write as _;
    match std::io::stdout().write_all(&crate::app::manual::completion(args.shell)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hopward: cannot write the completions: {e}");
            ExitCode::FAILURE
        }
    }
}

pub(crate) fn run(args: &InstallArgs) -> ExitCode {
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
    println!(
        "man pages: man hopward (man finds ~/.local/share/man when ~/.local/bin is on PATH); \
         zsh completions: fpath+=(~/.local/share/zsh/site-functions) before compinit"
    );
    if !cfg!(target_os = "macos") && !offer_hand_over(args) {
        return ExitCode::FAILURE;
    }
    let bin = binary_path(&bin).unwrap_or(bin);
    if !crate::app::ssh_config::offer(&bin, args.ssh_config, args.no_ssh_config) {
        return ExitCode::FAILURE;
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

/// The other agents that claim `SSH_AUTH_SOCK`: handed over with
/// `--hand-over`, or after a yes on a terminal; otherwise named, with how.
/// False when handing over failed.
fn offer_hand_over(args: &InstallArgs) -> bool {
    use std::io::IsTerminal as _;
    let Some(roots) = crate::app::other_agents::Roots::from_env() else {
        return true;
    };
    let rivals = crate::app::other_agents::find(&roots);
    if rivals.is_empty() || args.keep_others {
        return true;
    }
    println!("other agents claim SSH_AUTH_SOCK:");
    for r in &rivals {
        println!("  {}\n    to hand over: {}", r.what, r.fix);
    }
    let doable = rivals.iter().any(|r| !r.steps.is_empty());
    let go = args.hand_over
        || (doable && std::io::stdin().is_terminal() && {
            print!("mask their units and turn off their ssh support now? [y/N] ");
            let _ = std::io::Write::flush(&mut std::io::stdout());
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer).is_ok()
                && matches!(answer.trim(), "y" | "Y" | "yes")
        });
    if !go {
        if doable {
            println!("left as they are (hopward install --hand-over does it)");
        }
        return true;
    }
    match crate::app::other_agents::hand_over(&roots, &rivals) {
        Ok((done, masked)) => {
            for line in done {
                println!("{line}");
            }
            if crate::app::other_agents::stop(&masked) {
                println!("stopped {}", masked.join(" "));
            }
            for r in rivals.iter().filter(|r| r.steps.is_empty()) {
                println!("yours to do: {}: {}", r.what, r.fix);
            }
            true
        }
        Err(e) => {
            eprintln!("hopward: handing over from the other agents: {e}");
            false
        }
    }
}

/// `systemd-analyze --user verify` on the units written. Without
/// systemd-analyze (no systemd here) there is nothing to ask, and that is
/// said rather than hidden.
fn verify(files: &[(PathBuf, String)]) -> Result<(), String> {
    let units: Vec<&PathBuf> = files
        .iter()
        .map(|(p, _)| p)
        .filter(|p| {
            p.extension()
                .is_some_and(|e| e == "socket" || e == "service")
        })
        .collect();
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
