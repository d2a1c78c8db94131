//! Command-line types. `hopward daemon` mirrors `ssh-agent`'s flags so a
//! one-line wrapper (`exec hopward daemon "$@"`) can stand in for it.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "hopward",
    version,
    about = "An SSH agent that knows where requests come from"
)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run the agent (same flags as ssh-agent; `hopward daemon --help`).
    Daemon(DaemonWords),
    /// Print the line that points SSH_AUTH_SOCK at the default socket.
    Env(EnvArgs),
    /// Check a policy file, or explain a decision.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// What the running agent holds and how it decides.
    Status(StatusArgs),
    /// The panic button: `lock --forwarded` cuts and refuses everything that
    /// comes through a forwarded agent (`ssh-add -x` locks everything).
    Lock(LockArgs),
    /// Undo `lock --forwarded`.
    Unlock(LockArgs),
    /// Remembered approvals: list them, or `revoke ID` / `revoke --all`.
    Grants(GrantsArgs),
    /// Recent decisions from the audit log.
    Log(LogArgs),
    /// Put the systemd user units (or the macOS LaunchAgent) in place.
    Install(InstallArgs),
    /// What is unsafe or broken, and how to fix it (exit 1 if anything is).
    Doctor(DoctorArgs),
    /// Print the man page (hopward.1), or write every page to a directory.
    Man(ManArgs),
    /// Print the completion script for a shell.
    Completions(CompletionsArgs),
    /// Print the ssh_config lines that connect ssh to hopward: IdentityAgent,
    /// and a KnownHostsCommand that tells it the host names ssh verifies.
    SshConfig(SshConfigArgs),
}

#[derive(Debug, Args)]
pub(crate) struct SshConfigArgs {
    /// The agent's socket (default: the default socket).
    #[arg(short = 'a', value_name = "SOCKET")]
    pub(crate) socket: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct ManArgs {
    /// Write hopward.1 and a page per subcommand here instead.
    #[arg(long, value_name = "DIR")]
    pub(crate) dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub(crate) shell: clap_complete::Shell,
}

/// How commands find the running agent: `-a`, else `$SSH_AUTH_SOCK`, else
/// the default socket.
#[derive(Debug, Args)]
pub(crate) struct SocketArg {
    /// The agent's socket.
    #[arg(short = 'a', value_name = "SOCKET")]
    pub(crate) socket: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    #[command(flatten)]
    pub(crate) socket: SocketArg,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// The agent's socket (default: the default socket, which is what
    /// SSH_AUTH_SOCK should point at).
    #[arg(short = 'a', value_name = "SOCKET")]
    pub(crate) socket: Option<PathBuf>,
    /// Machine-readable output.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct LockArgs {
    #[command(flatten)]
    pub(crate) socket: SocketArg,
    /// Only forwarded use (the only kind this command locks).
    #[arg(long)]
    pub(crate) forwarded: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GrantsArgs {
    #[command(flatten)]
    pub(crate) socket: SocketArg,
    #[command(subcommand)]
    pub(crate) action: Option<GrantsAction>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum GrantsAction {
    /// Revoke one grant, or all of them.
    Revoke {
        /// The grant's id (from `hopward grants`).
        id: Option<u64>,
        /// Revoke every grant.
        #[arg(long, conflicts_with = "id")]
        all: bool,
    },
}

#[derive(Debug, Args)]
pub(crate) struct LogArgs {
    /// Audit log file (default: from the policy, else $XDG_STATE_HOME/hopward/audit.jsonl).
    #[arg(long = "file", value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// Keep printing new decisions.
    #[arg(short = 'f', long)]
    pub(crate) follow: bool,
    /// Print the JSON lines as they are.
    #[arg(long)]
    pub(crate) json: bool,
    /// Only this key (fingerprint or comment, substring).
    #[arg(long)]
    pub(crate) key: Option<String>,
    /// Only requests whose chain names this host (substring).
    #[arg(long)]
    pub(crate) host: Option<String>,
    /// Only allow or deny.
    #[arg(long, value_parser = ["allow", "deny"])]
    pub(crate) decision: Option<String>,
    /// How many recent decisions.
    #[arg(short = 'n', default_value_t = 20)]
    pub(crate) lines: usize,
    /// Read the journal ([audit] journald = true) instead of the file:
    /// journalctl -o json MESSAGE_ID=e6907a719856490fad29c3474d12f05a.
    #[arg(long, conflicts_with = "file")]
    pub(crate) journal: bool,
}

#[derive(Debug, Args)]
pub(crate) struct InstallArgs {
    /// For the current user (the only scope there is; accepted for clarity).
    #[arg(long)]
    pub(crate) user: bool,
    /// Overwrite files that differ from what would be written.
    #[arg(long)]
    pub(crate) force: bool,
    /// The hopward binary the units run (default: this one).
    #[arg(long, value_name = "PATH")]
    pub(crate) bin: Option<PathBuf>,
    /// Hand SSH_AUTH_SOCK over from the other agents found (mask their
    /// units, hide gnome-keyring's ssh autostart, turn off gpg-agent's ssh
    /// support) without asking; without it, install asks on a terminal.
    #[arg(long, conflicts_with = "keep_others")]
    pub(crate) hand_over: bool,
    /// Leave the other agents as they are, and do not ask.
    #[arg(long)]
    pub(crate) keep_others: bool,
    /// Add an Include of hopward's ssh_config lines (`hopward ssh-config`)
    /// at the top of ~/.ssh/config without asking; without it, install
    /// asks on a terminal.
    #[arg(long, conflicts_with = "no_ssh_config")]
    pub(crate) ssh_config: bool,
    /// Leave ~/.ssh/config as it is, and do not ask.
    #[arg(long)]
    pub(crate) no_ssh_config: bool,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Validate a policy file (default: the one the daemon would use).
    Check {
        /// The policy file.
        file: Option<PathBuf>,
    },
    /// Dry-run one request: print the decision and the rule that made it.
    Explain(ExplainArgs),
    /// Write a commented starting policy (never over an existing file),
    /// then check it.
    Init(InitArgs),
}

#[derive(Debug, Args)]
pub(crate) struct InitArgs {
    /// Where to write it (default: $HOPWARD_POLICY, else
    /// ~/.config/hopward/policy.toml, the file the agent reads).
    pub(crate) file: Option<PathBuf>,
    /// Which example to start from: default, bastion, github,
    /// instance-ids or strict.
    #[arg(long, value_name = "NAME", default_value = "default")]
    pub(crate) example: String,
}

#[derive(Debug, Args)]
pub(crate) struct ExplainArgs {
    /// Policy file (default: the one the daemon would use).
    #[arg(long = "policy", value_name = "FILE")]
    pub(crate) policy: Option<PathBuf>,
    /// The key: a SHA256: fingerprint.
    #[arg(long = "key", value_name = "SHA256:...", default_value = "SHA256:?")]
    pub(crate) key: String,
    /// The key's comment (matched by comment globs).
    #[arg(long = "comment", default_value = "")]
    pub(crate) comment: String,
    /// Hops joined by '>': forwarding hops first, the destination last
    /// (e.g. "bastion>db.prod"); empty for a local request. A hop may be a
    /// name or a SHA256: fingerprint.
    #[arg(long = "chain", default_value = "")]
    pub(crate) chain: String,
    /// The last hop is a forwarding hop too (nothing said where it goes).
    #[arg(long = "unverified")]
    pub(crate) unverified: bool,
    /// Jump hosts (ProxyJump) a direct login tunnels through, in the order
    /// `ssh -J` names them, joined by ',' or '>' (e.g. "a,b"); only with a
    /// --chain of one host.
    #[arg(long = "jump", value_name = "HOSTS", default_value = "")]
    pub(crate) jump: String,
    /// The remote user.
    #[arg(long = "user")]
    pub(crate) user: Option<String>,
    /// login, git, file or other.
    #[arg(long = "purpose", default_value = "login")]
    pub(crate) purpose: String,
    /// The requesting program's executable (for `caller` rules). Not
    /// given: unknown, as for a process that is gone.
    #[arg(long = "caller", value_name = "PATH")]
    pub(crate) caller: Option<PathBuf>,
    /// An ancestor's executable, nearest first; repeat for each (for
    /// `ancestor` rules, which then see exactly these). Not given: unknown.
    #[arg(long = "ancestor", value_name = "PATH")]
    pub(crate) ancestor: Vec<PathBuf>,
    /// The requesting program's working directory (for `cwd` rules). Not
    /// given: unknown.
    #[arg(long = "cwd", value_name = "DIR")]
    pub(crate) cwd: Option<PathBuf>,
}

/// The words after `hopward daemon`, read by [`crate::app::daemon_cli::parse`]
/// as ssh-agent's getopt reads them (clap only lists the subcommand).
#[derive(Debug, Args)]
#[command(disable_help_flag = true)]
pub(crate) struct DaemonWords {
    /// ssh-agent's flags and an optional command; `hopward daemon --help`
    /// lists them.
    #[arg(
        value_name = "ARGS",
        trailing_var_arg = true,
        allow_hyphen_values = true,
        num_args = 0..
    )]
    pub(crate) words: Vec<OsString>,
}

#[derive(Debug, Args)]
pub(crate) struct EnvArgs {
    /// Shell syntax to print.
    #[arg(long = "shell", value_enum)]
    pub(crate) shell: Option<Shell>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Shell {
    /// Bourne syntax: sh, bash, zsh, ksh, dash.
    #[value(alias = "bash", alias = "zsh", alias = "ksh", alias = "dash")]
    Sh,
    /// C-shell syntax: csh, tcsh.
    #[value(alias = "tcsh")]
    Csh,
    Fish,
}

impl Shell {
    /// Guesses the user's shell syntax from `$SHELL`, as ssh-agent does.
    pub(crate) fn from_env() -> Shell {
        let shell = std::env::var("SHELL").unwrap_or_default();
        if shell.ends_with("csh") {
            Shell::Csh
        } else if shell.ends_with("fish") {
            Shell::Fish
        } else {
            Shell::Sh
        }
    }

    /// The line that sets `name` to `value`.
    pub(crate) fn set_var(self, name: &str, value: &str) -> String {
        match self {
            Shell::Sh => format!("{name}={}; export {name};", sh_quote(value)),
            Shell::Csh => format!("setenv {name} {};", sh_quote(value)),
            Shell::Fish => format!("set -gx {name} {};", sh_quote(value)),
        }
    }
}

/// Quotes a value for sh/csh/fish only when it needs it, so ordinary paths
/// print exactly as ssh-agent prints them.
fn sh_quote(value: &str) -> String {
    let plain = value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"/._-+:,@%".contains(&b));
    if plain && !value.is_empty() {
        value.to_string()
    } else {
        format!("'{}'", value.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_like_ssh_agent() {
        assert_eq!(
            Shell::Sh.set_var("SSH_AUTH_SOCK", "/tmp/a/agent.1"),
            "SSH_AUTH_SOCK=/tmp/a/agent.1; export SSH_AUTH_SOCK;"
        );
        assert_eq!(
            Shell::Csh.set_var("SSH_AGENT_PID", "42"),
            "setenv SSH_AGENT_PID 42;"
        );
        assert_eq!(Shell::Fish.set_var("X", "a b"), "set -gx X 'a b';");
        assert_eq!(Shell::Sh.set_var("X", "it's"), r"X='it'\''s'; export X;");
    }
}
