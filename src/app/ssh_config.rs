//! `hopward ssh-config`: the ssh_config lines that connect ssh to hopward
//! (`IdentityAgent`, and a `KnownHostsCommand` that reports the host names
//! ssh verifies), the `learn-host` word that command runs, and the offer
//! `hopward install` makes to include them from `~/.ssh/config`.
//!
//! Invariants: `learn-host` prints nothing on stdout (ssh reads it as
//! known_hosts lines), always exits 0 (ssh treats any other exit as fatal)
//! and gives up within [`REPORT_TIMEOUT`] when the agent does not answer;
//! the user's `~/.ssh/config` is changed only after a yes or
//! `--ssh-config`, only by adding one marked block, and never twice.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use crate::app::cli::SshConfigArgs;

/// How long `learn-host` waits for the agent: a running agent answers in
/// milliseconds, and ssh waits for the command before it goes on.
pub(crate) const REPORT_TIMEOUT: Duration = Duration::from_millis(800);

/// The word ssh's `KnownHostsCommand` runs (`hopward learn-host`).
pub(crate) const LEARN_WORD: &str = "learn-host";

const BEGIN: &str = "# >>> hopward: added by `hopward install` (remove this block to undo) >>>";
const END: &str = "# <<< hopward <<<";

/// A path as one ssh_config argument: quoted, with `%` doubled (ssh
/// expands `%` tokens in both `IdentityAgent` and the command's
/// arguments). A path ssh_config cannot carry is an error.
fn config_word(path: &Path) -> Result<String, String> {
    let text = path
        .to_str()
        .ok_or_else(|| format!("{} is not UTF-8", path.display()))?;
    if text.contains(['"', '\n', '\r']) || text.contains("${") {
        return Err(format!(
            "{text:?} cannot be written in ssh_config (it holds a quote, a newline or `${{`)"
        ));
    }
    Ok(format!("\"{}\"", text.replace('%', "%%")))
}

/// The lines for an agent at `socket`, run as `exe`.
pub(crate) fn lines(socket: &Path, exe: &Path) -> Result<String, String> {
    let sock = config_word(socket)?;
    // The command itself is not %-expanded by ssh, only its arguments; it
    // must be an absolute path (ssh refuses any other).
    if !exe.is_absolute() {
        return Err(format!("{} is not an absolute path", exe.display()));
    }
    let exe = config_word(exe)?;
    Ok(format!(
        "# hopward: use its agent, and tell it which host names ssh verifies, so\n\
         # rules can name hosts under HashKnownHosts yes (hopward learns a name only\n\
         # when known_hosts confirms it with that host key).\n\
         Host *\n    \
         IdentityAgent {sock}\n    \
         KnownHostsCommand {exe} {LEARN_WORD} -a {sock} %I %H %K\n"
    ))
}

fn socket_of(socket: &Option<PathBuf>) -> PathBuf {
    socket.clone().unwrap_or_else(crate::paths::default_socket)
}

/// `hopward ssh-config`.
pub(crate) fn run(args: &SshConfigArgs) -> ExitCode {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("hopward: cannot tell where this binary is: {e}");
            return ExitCode::FAILURE;
        }
    };
    match lines(&socket_of(&args.socket), &exe) {
        Ok(text) => {
            print!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hopward: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `hopward learn-host -a SOCKET INVOCATION NAME KEY`, as ssh runs it
/// (`%I %H %K`). Reports HOSTNAME and ADDRESS look-ups that carry a key;
/// whatever happens, prints nothing and exits 0.
pub(crate) fn learn_host_main(args: &[OsString]) -> ExitCode {
    let words: Vec<&str> = args.iter().filter_map(|a| a.to_str()).collect();
    let (socket, rest) = match words.as_slice() {
        ["-a", socket, rest @ ..] => (PathBuf::from(socket), rest),
        rest => (crate::paths::default_socket(), rest),
    };
    let [invocation, name, key] = rest else {
        return ExitCode::SUCCESS;
    };
    // ORDER (choosing host key algorithms) is asked before any key is seen.
    if !matches!(*invocation, "HOSTNAME" | "ADDRESS") || *key == "NONE" {
        return ExitCode::SUCCESS;
    }
    let op = crate::protocol::control::ControlRequest::LearnHost {
        name: Some(name.to_string()),
        key: Some(key.to_string()),
    };
    // Refused, not learned, or no agent: ssh goes on as it would without.
    let _ = crate::app::client::control_within::<crate::protocol::control::LearnedReply>(
        &socket,
        &op,
        REPORT_TIMEOUT,
    );
    ExitCode::SUCCESS
}

/// The hopward-owned file `~/.ssh/config` includes.
pub(crate) fn owned_file() -> Option<PathBuf> {
    crate::policy::store::default_path().and_then(|p| Some(p.parent()?.join("ssh_config")))
}

/// The block that includes `owned` (at the top of `~/.ssh/config`: an
/// `Include` after a `Host` line would apply to that host only).
fn include_block(owned: &Path) -> Result<String, String> {
    Ok(format!(
        "{BEGIN}\nInclude {}\n{END}\n\n",
        config_word(owned)?
    ))
}

/// `~/.ssh/config`'s text with the block added at the top, or `None` when
/// the block is there already.
pub(crate) fn with_include(config: &str, owned: &Path) -> Result<Option<String>, String> {
    if config.lines().any(|l| l.trim() == BEGIN) {
        return Ok(None);
    }
    Ok(Some(format!("{}{config}", include_block(owned)?)))
}

/// What `hopward install` does about ssh_config: writes the hopward-owned
/// file (it is hopward's), then adds the include to `~/.ssh/config` with
/// `--ssh-config` or after a yes on a terminal; with `--no-ssh-config`, or
/// with nobody to ask, it says how. False when writing failed.
pub(crate) fn offer(bin: &Path, yes: bool, no: bool) -> bool {
    use std::io::IsTerminal as _;
    let (Some(owned), Some(home)) = (
        owned_file(),
        std::env::var_os("HOME").filter(|h| !h.is_empty()),
    ) else {
        return true;
    };
    let text = match lines(&crate::paths::default_socket(), bin) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("hopward: ssh_config lines: {e}");
            return false;
        }
    };
    if let Some(dir) = owned.parent() {
        if let Err(e) = std::fs::create_dir_all(dir) {
            eprintln!("hopward: cannot create {}: {e}", dir.display());
            return false;
        }
    }
    if std::fs::read_to_string(&owned).ok().as_deref() != Some(text.as_str()) {
        if let Err(e) = std::fs::write(&owned, &text) {
            eprintln!("hopward: cannot write {}: {e}", owned.display());
            return false;
        }
        println!("wrote {}", owned.display());
    }
    let config = PathBuf::from(home).join(".ssh/config");
    let old = match std::fs::read_to_string(&config) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => {
            eprintln!("hopward: cannot read {}: {e}", config.display());
            return false;
        }
    };
    let new = match with_include(&old, &owned) {
        Ok(Some(new)) => new,
        Ok(None) => {
            println!(
                "unchanged {} (it includes {})",
                config.display(),
                owned.display()
            );
            return true;
        }
        Err(e) => {
            eprintln!("hopward: {e}");
            return false;
        }
    };
    let how = format!(
        "add `Include {}` at the top of {} (hopward install --ssh-config does it)",
        owned.display(),
        config.display()
    );
    let go = yes
        || (!no && std::io::stdin().is_terminal() && {
            print!(
                "add an Include of {} at the top of {} (ssh then uses hopward and reports \
                 host names to it)? [y/N] ",
                owned.display(),
                config.display()
            );
            let _ = std::io::Write::flush(&mut std::io::stdout());
            let mut answer = String::new();
            std::io::stdin().read_line(&mut answer).is_ok()
                && matches!(answer.trim(), "y" | "Y" | "yes")
        });
    if !go {
        println!("ssh_config left as it is; to connect ssh to hopward, {how}");
        return true;
    }
    if let Some(dir) = config.parent() {
        if let Err(e) = crate::paths::ensure_private_dir(dir) {
            eprintln!("hopward: {e}");
            return false;
        }
    }
    match write_keeping_mode(&config, &new) {
        Ok(()) => {
            println!(
                "added an Include of {} to {}",
                owned.display(),
                config.display()
            );
            true
        }
        Err(e) => {
            eprintln!("hopward: cannot write {}: {e}", config.display());
            false
        }
    }
}

/// Replaces `path`'s text through a temporary file renamed over it, with
/// the old file's mode (0600 for a new one): ssh refuses a config others
/// can write.
fn write_keeping_mode(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
    let mode = std::fs::metadata(path).map_or(0o600, |m| m.permissions().mode() & 0o7777);
    let tmp = path.with_extension(format!("hopward-{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_quote_paths_and_double_percent_signs() {
        let text = lines(
            Path::new("/run/u 1/50%/agent.sock"),
            Path::new("/usr/bin/hopward"),
        )
        .unwrap();
        assert!(
            text.contains("IdentityAgent \"/run/u 1/50%%/agent.sock\""),
            "{text}"
        );
        assert!(
            text.contains(
                "KnownHostsCommand \"/usr/bin/hopward\" learn-host -a \"/run/u 1/50%%/agent.sock\" %I %H %K"
            ),
            "{text}"
        );
        assert!(lines(Path::new("/a\"b"), Path::new("/usr/bin/hopward")).is_err());
        assert!(lines(Path::new("/s"), Path::new("hopward")).is_err());
    }

    #[test]
    fn the_include_goes_on_top_once() {
        let owned = Path::new("/home/u/.config/hopward/ssh_config");
        let first = with_include("Host db\n  User x\n", owned).unwrap().unwrap();
        assert!(first.starts_with(BEGIN), "{first}");
        assert!(first.ends_with("Host db\n  User x\n"));
        assert_eq!(with_include(&first, owned).unwrap(), None, "idempotent");
    }
}
