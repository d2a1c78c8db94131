//! `hopward daemon`'s command line, read the way OpenSSH 10.5's ssh-agent
//! reads its own: `getopt(argv, "cDdksTuUVE:a:O:P:t:")`, plus hopward's long
//! options (`--policy FILE`, `--help`).
//!
//! clap cannot be used here: scripts hand an ssh-agent stand-in arguments
//! such as `-P/*`, `-t1h` or `-sD`, and getopt stops at the first word that
//! is not an option, which is where the command of command mode begins. A
//! usage error is found before anything is bound, forked or run.

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt as _;
use std::path::PathBuf;
use std::time::Duration;

/// The `-O` options 10.5 knows, with ssh-agent's meaning for PKCS#11 and
/// FIDO keys; a misspelt one fails, as with ssh-agent.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct AgentOptionFlags {
    /// `-O allow-remote-pkcs11`.
    pub(crate) allow_remote_pkcs11: bool,
    /// `-O no-restrict-websafe`.
    pub(crate) no_restrict_websafe: bool,
    /// `-O websafe-allow=PATTERNS`.
    pub(crate) websafe_allow: Option<String>,
}

/// Everything `hopward daemon` was asked to do.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct DaemonArgs {
    /// `-a`: bind this socket.
    pub(crate) socket: Option<PathBuf>,
    /// `-c`: C-shell output.
    pub(crate) csh: bool,
    /// `-s`: Bourne-shell output.
    pub(crate) sh: bool,
    /// `-d`: foreground with debug logging.
    pub(crate) debug: bool,
    /// `-D`: foreground.
    pub(crate) foreground: bool,
    /// `-k`: kill `$SSH_AGENT_PID`.
    pub(crate) kill: bool,
    /// `-t`: default lifetime of added keys.
    pub(crate) lifetime: Option<Duration>,
    /// `-E`: fingerprint hash name, as given (validated).
    pub(crate) fingerprint_hash: Option<String>,
    /// `-P`: the patterns a provider's real path must match.
    pub(crate) provider_allowlist: Option<String>,
    /// `-O` options.
    pub(crate) options: AgentOptionFlags,
    /// `-T`: bind in a fresh private directory under `$TMPDIR`.
    pub(crate) temp_dir: bool,
    /// `-U`: do not clean up stale sockets at start.
    pub(crate) keep_stale: bool,
    /// `-u` (counted): clean up stale sockets and exit; twice: regardless of
    /// the host that made them.
    pub(crate) cleanup_only: u8,
    /// `--policy FILE`.
    pub(crate) policy: Option<PathBuf>,
    /// `--upstream SOCKET`: the agent whose keys hopward fronts (wins over
    /// the policy's `[upstream] socket`).
    pub(crate) upstream: Option<PathBuf>,
    /// The command of command mode, with its arguments.
    pub(crate) command: Vec<OsString>,
}

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DaemonInvocation {
    Run(Box<DaemonArgs>),
    /// `--help`.
    Help,
    /// `-V`.
    Version,
}

/// A command line ssh-agent would refuse. Usage errors exit 1 after the
/// usage text; the rest are what ssh-agent treats as fatal (exit 255).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DaemonUsageError {
    #[error("unknown option -- {0}")]
    UnknownOption(String),
    #[error("unknown option {0}")]
    UnknownLongOption(String),
    #[error("option requires an argument -- {0}")]
    MissingValue(char),
    #[error("option --{0} requires an argument")]
    MissingLongValue(&'static str),
    #[error("-c and -s cannot be used together")]
    CshAndSh,
    #[error("-d and -D may be given once, and not together")]
    ForegroundTwice,
    #[error("-{0} cannot be used with a command")]
    FlagWithCommand(char),
    #[error("Invalid lifetime {0:?}")]
    Lifetime(String),
    #[error("Invalid hash algorithm \"{0}\"")]
    HashAlgorithm(String),
    #[error("Unknown -O option \"{0}\"")]
    UnknownAgentOption(String),
    #[error("websafe-allow already set")]
    WebsafeAllowTwice,
    #[error("-P option already specified")]
    ProviderListTwice,
    #[error("--policy given twice")]
    PolicyTwice,
    #[error("--upstream given twice")]
    UpstreamTwice,
}

impl DaemonUsageError {
    /// Whether ssh-agent prints its usage text for this (exit 1) rather than
    /// stopping with a fatal error (exit 255).
    pub(crate) fn is_usage(&self) -> bool {
        !matches!(
            self,
            DaemonUsageError::HashAlgorithm(_)
                | DaemonUsageError::UnknownAgentOption(_)
                | DaemonUsageError::WebsafeAllowTwice
                | DaemonUsageError::ProviderListTwice
        )
    }

    /// The process exit status ssh-agent uses for this error.
    pub(crate) fn exit_code(&self) -> u8 {
        if self.is_usage() { 1 } else { 255 }
    }
}

/// ssh-agent 10.5's usage text, with hopward's own options added.
pub(crate) const USAGE: &str = "\
usage: hopward daemon [-c | -s] [-DdTU] [-a bind_address] [-E fingerprint_hash]
                      [-O option] [-P allowed_providers] [-t life] [--policy FILE]
                      [--upstream SOCKET]
       hopward daemon [-TU] [-a bind_address] [-E fingerprint_hash] [-O option]
                      [-P allowed_providers] [-t life] [--policy FILE]
                      [--upstream SOCKET] command [arg ...]
       hopward daemon [-c | -s] -k
       hopward daemon -u
       hopward daemon -V
";

/// `hopward daemon --help`: every flag ssh-agent 10.5 has, and what it
/// means for hopward.
pub(crate) const HELP: &str = "\
Run the agent. The flags are OpenSSH 10.5 ssh-agent's, parsed as it parses
them (values may be glued to their flag: -t1h, -a/path; flags may be grouped:
-sD; `--` ends the options), so `exec hopward daemon \"$@\"` can stand in for
ssh-agent.

  -a bind_address   bind the agent to this UNIX socket (default:
                    $XDG_RUNTIME_DIR/hopward/agent.sock)
  -c                print C-shell commands
  -s                print Bourne-shell commands
  -D                foreground mode: do not fork
  -d                debug mode: foreground, debug log on standard error
  -E hash           fingerprint hash: md5, sha1, sha256, sha384, sha512
                    (validated; hopward logs SHA256 fingerprints)
  -k                kill the agent named by $SSH_AGENT_PID
  -O option         allow-remote-pkcs11, no-restrict-websafe, websafe-allow=LIST
                    (as in ssh-agent)
  -P providers      PKCS#11/FIDO provider allow-list (default
                    /usr/lib*/*,/usr/local/lib*/*)
  -t life           default lifetime of added keys (90, 10m, 1h30m, 2w)
  -T                bind in a new private directory $TMPDIR/hopward.XXXXXXXXXX
  -U                do not clean up stale sockets in hopward's socket directory
  -u                clean up stale sockets there and exit (-uu: the same; the
                    directory is never shared between hosts)
  -V                print the version and exit
  --policy FILE     policy file (default: $HOPWARD_POLICY, then
                    ~/.config/hopward/policy.toml)
  --upstream SOCKET put the policy in front of the agent on SOCKET (gpg-agent,
                    1Password, Secretive, ssh-agent ...): its keys are listed
                    after hopward's own and signed there once the policy
                    allows (wins over the policy's [upstream] socket)
  --help            this text
  command [arg ...] run command with SSH_AUTH_SOCK set; the agent exits with it

SIGUSR1 drops every key and every remembered approval; SIGHUP reloads the
policy; SIGTERM stops the agent.
";

/// Parses the words after `hopward daemon`.
pub(crate) fn parse(args: &[OsString]) -> Result<DaemonInvocation, DaemonUsageError> {
    let mut out = DaemonArgs::default();
    let mut i = 0;
    while i < args.len() {
        let word = args[i].as_bytes();
        if word == b"--" {
            i += 1;
            break;
        }
        if let Some(long) = word.strip_prefix(b"--") {
            match long_option(long, args, &mut i, &mut out)? {
                Some(done) => return Ok(done),
                None => {
                    i += 1;
                    continue;
                }
            }
        }
        // A word that is not an option (`-` alone is not one either) starts
        // the command.
        if word.len() < 2 || word[0] != b'-' {
            break;
        }
        let mut at = 1;
        while at < word.len() {
            let flag = word[at];
            at += 1;
            if b"EaOPt".contains(&flag) {
                // The rest of the word is the value; else the next word is.
                let value = if at < word.len() {
                    OsStr::from_bytes(&word[at..]).to_os_string()
                } else {
                    i += 1;
                    args.get(i)
                        .cloned()
                        .ok_or(DaemonUsageError::MissingValue(char::from(flag)))?
                };
                with_value(flag, value, &mut out)?;
                break;
            }
            match flag {
                b'c' if out.sh => return Err(DaemonUsageError::CshAndSh),
                b'c' => out.csh = true,
                b's' if out.csh => return Err(DaemonUsageError::CshAndSh),
                b's' => out.sh = true,
                b'd' | b'D' if out.debug || out.foreground => {
                    return Err(DaemonUsageError::ForegroundTwice);
                }
                b'd' => out.debug = true,
                b'D' => out.foreground = true,
                b'k' => out.kill = true,
                b'T' => out.temp_dir = true,
                b'U' => out.keep_stale = true,
                b'u' => out.cleanup_only = out.cleanup_only.saturating_add(1),
                b'V' => return Ok(DaemonInvocation::Version),
                _ => {
                    // Name the character whole, even when it is not ASCII.
                    let rest = String::from_utf8_lossy(&word[at - 1..]);
                    let shown = rest.chars().next().unwrap_or('?');
                    return Err(DaemonUsageError::UnknownOption(shown.to_string()));
                }
            }
        }
        i += 1;
    }
    out.command = args[i..].to_vec();
    if !out.command.is_empty() {
        // ssh-agent: a command with -c, -k, -s, -d, -D or -u is a usage error.
        for (set, flag) in [
            (out.csh, 'c'),
            (out.kill, 'k'),
            (out.sh, 's'),
            (out.debug, 'd'),
            (out.foreground, 'D'),
            (out.cleanup_only > 0, 'u'),
        ] {
            if set {
                return Err(DaemonUsageError::FlagWithCommand(flag));
            }
        }
    }
    Ok(DaemonInvocation::Run(Box::new(out)))
}

/// Handles `--NAME[=VALUE]` at `args[*i]`; `Some` when it ends the parse.
fn long_option(
    long: &[u8],
    args: &[OsString],
    i: &mut usize,
    out: &mut DaemonArgs,
) -> Result<Option<DaemonInvocation>, DaemonUsageError> {
    let (name, glued) = match long.iter().position(|&b| b == b'=') {
        Some(eq) => (&long[..eq], Some(OsStr::from_bytes(&long[eq + 1..]))),
        None => (long, None),
    };
    match name {
        b"help" if glued.is_none() => Ok(Some(DaemonInvocation::Help)),
        b"policy" => {
            let value = match glued {
                Some(v) => v.to_os_string(),
                None => {
                    *i += 1;
                    args.get(*i)
                        .cloned()
                        .ok_or(DaemonUsageError::MissingLongValue("policy"))?
                }
            };
            if out.policy.is_some() {
                return Err(DaemonUsageError::PolicyTwice);
            }
            out.policy = Some(PathBuf::from(value));
            Ok(None)
        }
        b"upstream" => {
            let value = match glued {
                Some(v) => v.to_os_string(),
                None => {
                    *i += 1;
                    args.get(*i)
                        .cloned()
                        .ok_or(DaemonUsageError::MissingLongValue("upstream"))?
                }
            };
            if out.upstream.is_some() {
                return Err(DaemonUsageError::UpstreamTwice);
            }
            out.upstream = Some(PathBuf::from(value));
            Ok(None)
        }
        _ => Err(DaemonUsageError::UnknownLongOption(format!(
            "--{}",
            String::from_utf8_lossy(long)
        ))),
    }
}

fn with_value(flag: u8, value: OsString, out: &mut DaemonArgs) -> Result<(), DaemonUsageError> {
    let text = value.to_string_lossy().into_owned();
    match flag {
        b'a' => out.socket = Some(PathBuf::from(value)),
        b't' => {
            let life = value
                .to_str()
                .and_then(|t| crate::duration::parse(t).ok())
                .ok_or(DaemonUsageError::Lifetime(text))?;
            out.lifetime = Some(life);
        }
        b'E' => {
            // ssh_digest_alg_by_name: these names, any case.
            let known = ["md5", "sha1", "sha256", "sha384", "sha512"];
            if !known.iter().any(|k| k.eq_ignore_ascii_case(&text)) {
                return Err(DaemonUsageError::HashAlgorithm(text));
            }
            out.fingerprint_hash = Some(text);
        }
        b'P' => {
            if out.provider_allowlist.is_some() {
                return Err(DaemonUsageError::ProviderListTwice);
            }
            out.provider_allowlist = Some(text);
        }
        b'O' => match text.as_str() {
            "no-restrict-websafe" => out.options.no_restrict_websafe = true,
            "allow-remote-pkcs11" => out.options.allow_remote_pkcs11 = true,
            _ => match text.strip_prefix("websafe-allow=") {
                Some(_) if out.options.websafe_allow.is_some() => {
                    return Err(DaemonUsageError::WebsafeAllowTwice);
                }
                Some(list) => out.options.websafe_allow = Some(list.to_string()),
                None => return Err(DaemonUsageError::UnknownAgentOption(text)),
            },
        },
        _ => unreachable!("only value flags reach here"),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(list: &[&str]) -> Vec<OsString> {
        list.iter().map(OsString::from).collect()
    }

    fn run(list: &[&str]) -> DaemonArgs {
        match parse(&words(list)) {
            Ok(DaemonInvocation::Run(args)) => *args,
            other => panic!("{list:?}: {other:?}"),
        }
    }

    fn err(list: &[&str]) -> DaemonUsageError {
        match parse(&words(list)) {
            Err(e) => e,
            other => panic!("{list:?} parsed: {other:?}"),
        }
    }

    #[test]
    fn glued_and_separate_values_mean_the_same() {
        let glued = run(&[
            "-P/*",
            "-t1h",
            "-a/tmp/x",
            "-Esha256",
            "-Oallow-remote-pkcs11",
        ]);
        let apart = run(&[
            "-P",
            "/*",
            "-t",
            "1h",
            "-a",
            "/tmp/x",
            "-E",
            "sha256",
            "-O",
            "allow-remote-pkcs11",
        ]);
        assert_eq!(glued, apart);
        assert_eq!(glued.socket, Some(PathBuf::from("/tmp/x")));
        assert_eq!(glued.lifetime, Some(Duration::from_secs(3600)));
        assert_eq!(glued.provider_allowlist.as_deref(), Some("/*"));
        assert!(glued.options.allow_remote_pkcs11);
        assert!(glued.command.is_empty());
    }

    #[test]
    fn clusters_end_at_a_value_flag() {
        let a = run(&["-sDt1h", "-Ua/s"]);
        assert!(a.sh && a.foreground && a.keep_stale);
        assert_eq!(a.lifetime, Some(Duration::from_secs(3600)));
        assert_eq!(a.socket, Some(PathBuf::from("/s")));
        // The value may be the next word even inside a cluster.
        let b = run(&["-Dt", "5"]);
        assert!(b.foreground);
        assert_eq!(b.lifetime, Some(Duration::from_secs(5)));
        // In "-Dta", "a" is -t's value, not the flag -a.
        assert_eq!(err(&["-Dta"]), DaemonUsageError::Lifetime("a".into()));
        assert_eq!(err(&["-sDa"]), DaemonUsageError::MissingValue('a'));
    }

    #[test]
    fn options_stop_at_the_command_or_double_dash() {
        let a = run(&["-t", "5", "sh", "-c", "echo -D"]);
        assert_eq!(a.command, words(&["sh", "-c", "echo -D"]));
        let b = run(&["-T", "--", "-weird-command", "-s"]);
        assert!(b.temp_dir && !b.sh);
        assert_eq!(b.command, words(&["-weird-command", "-s"]));
        let c = run(&["-", "x"]);
        assert_eq!(c.command, words(&["-", "x"]));
        assert!(run(&["--"]).command.is_empty());
    }

    #[test]
    fn unknown_and_incomplete_options_are_usage_errors() {
        for (list, e) in [
            (&["-x"][..], DaemonUsageError::UnknownOption("x".into())),
            (&["-sDx"][..], DaemonUsageError::UnknownOption("x".into())),
            (
                &["-D", "-Z", "cmd"][..],
                DaemonUsageError::UnknownOption("Z".into()),
            ),
            (&["-é"][..], DaemonUsageError::UnknownOption("é".into())),
            (&["-a"][..], DaemonUsageError::MissingValue('a')),
            (&["-D", "-t"][..], DaemonUsageError::MissingValue('t')),
            (
                &["--frobnicate"][..],
                DaemonUsageError::UnknownLongOption("--frobnicate".into()),
            ),
            (
                &["--policy"][..],
                DaemonUsageError::MissingLongValue("policy"),
            ),
            (&["-c", "-s"][..], DaemonUsageError::CshAndSh),
            (&["-sc"][..], DaemonUsageError::CshAndSh),
            (&["-dD"][..], DaemonUsageError::ForegroundTwice),
            (&["-d", "-d"][..], DaemonUsageError::ForegroundTwice),
            (&["-s", "cmd"][..], DaemonUsageError::FlagWithCommand('s')),
            (&["-D", "cmd"][..], DaemonUsageError::FlagWithCommand('D')),
            (&["-u", "cmd"][..], DaemonUsageError::FlagWithCommand('u')),
            (&["-k", "cmd"][..], DaemonUsageError::FlagWithCommand('k')),
            (&["-t", "1x"][..], DaemonUsageError::Lifetime("1x".into())),
        ] {
            assert_eq!(err(list), e, "{list:?}");
            assert_eq!(e.exit_code(), 1, "{e}");
        }
    }

    #[test]
    fn bad_values_are_fatal_as_in_ssh_agent() {
        for (list, e) in [
            (
                &["-Ebogus"][..],
                DaemonUsageError::HashAlgorithm("bogus".into()),
            ),
            (
                &["-Ofrob"][..],
                DaemonUsageError::UnknownAgentOption("frob".into()),
            ),
            (
                &["-Owebsafe-allow=a", "-Owebsafe-allow=b"][..],
                DaemonUsageError::WebsafeAllowTwice,
            ),
            (&["-P/a", "-P/b"][..], DaemonUsageError::ProviderListTwice),
        ] {
            assert_eq!(err(list), e, "{list:?}");
            assert_eq!(e.exit_code(), 255, "{e}");
        }
        let ok = run(&["-EMD5", "-Ono-restrict-websafe", "-Owebsafe-allow=ssh:*"]);
        assert_eq!(ok.fingerprint_hash.as_deref(), Some("MD5"));
        assert!(ok.options.no_restrict_websafe);
        assert_eq!(ok.options.websafe_allow.as_deref(), Some("ssh:*"));
    }

    #[test]
    fn version_help_and_counted_flags() {
        assert_eq!(parse(&words(&["-sV"])), Ok(DaemonInvocation::Version));
        assert_eq!(parse(&words(&["--help"])), Ok(DaemonInvocation::Help));
        // An error met before -V wins, as in getopt's order.
        assert_eq!(
            err(&["-x", "-V"]),
            DaemonUsageError::UnknownOption("x".into())
        );
        assert_eq!(run(&["-u"]).cleanup_only, 1);
        assert_eq!(run(&["-uu"]).cleanup_only, 2);
        assert_eq!(run(&["-u", "-u"]).cleanup_only, 2);
        let k = run(&["-k", "-c", "-a", "/x"]);
        assert!(k.kill && k.csh);
        let p = run(&["--policy=/p.toml", "-D", "-a", "/s"]);
        assert_eq!(p.policy, Some(PathBuf::from("/p.toml")));
        let q = run(&["--policy", "/p.toml", "-T", "cmd", "--policy", "x"]);
        assert_eq!(q.policy, Some(PathBuf::from("/p.toml")));
        assert!(q.temp_dir);
        assert_eq!(q.command, words(&["cmd", "--policy", "x"]));
        assert_eq!(
            err(&["--policy=/a", "--policy=/b"]),
            DaemonUsageError::PolicyTwice
        );
    }

    #[test]
    fn upstream_takes_a_value_once() {
        let u = run(&["--upstream", "/up.sock", "-D"]);
        assert_eq!(u.upstream, Some(PathBuf::from("/up.sock")));
        assert!(u.foreground);
        let g = run(&["--upstream=/g.sock", "cmd"]);
        assert_eq!(g.upstream, Some(PathBuf::from("/g.sock")));
        assert_eq!(
            err(&["--upstream=/a", "--upstream", "/b"]),
            DaemonUsageError::UpstreamTwice
        );
        assert_eq!(
            err(&["--upstream"]),
            DaemonUsageError::MissingLongValue("upstream")
        );
        assert_eq!(DaemonUsageError::UpstreamTwice.exit_code(), 1);
    }

    #[test]
    fn every_ssh_agent_flag_is_in_the_help() {
        // The flags of OpenSSH 10.5's getopt string "cDdksTuUVE:a:O:P:t:".
        for flag in "cDdksTuUVEaOPt".chars() {
            assert!(HELP.contains(&format!("  -{flag} ")), "-{flag} missing");
        }
    }
}
