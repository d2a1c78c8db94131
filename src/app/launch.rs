//! Starting the agent the way `ssh-agent` starts: bind the socket, then fork
//! and print the environment, run in the foreground (`-d`/`-D`), or run a
//! command with the environment set (command mode); and `-k`.
//!
//! Invariants: the socket is bound before anything is printed, so a printed
//! `SSH_AUTH_SOCK` always works; forking happens before the async runtime
//! exists; hardening applies to the agent process only, never to a command
//! it runs.

use std::ffi::OsString;
use std::io::Write as _;
use std::os::unix::fs::{FileTypeExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::os::unix::net::UnixListener as StdListener;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::app::cli::{Cli, Command, EnvArgs, Shell};
use crate::app::daemon_cli::{DaemonArgs, DaemonInvocation};
use crate::daemon::agent::{Agent, AgentOptions};
use crate::daemon::server::{self, SocketFile};
use crate::paths;
use crate::sys::{self, Forked};

#[derive(Debug, thiserror::Error)]
pub(crate) enum LaunchError {
    #[error("an agent is already listening on {0}; stop it first or choose another socket with -a")]
    AgentRunning(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("cannot bind {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot prepare socket directory {path}: {source}")]
    SocketDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create a private socket directory under {path}: {source}")]
    TempDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot clean up stale sockets in {path}: {source}")]
    Cleanup {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("SSH_AGENT_PID is not set, cannot kill agent")]
    NoAgentPid,
    #[error("SSH_AGENT_PID={0:?} is not a pid")]
    BadAgentPid(String),
    #[error("cannot kill agent pid {pid}: {source}")]
    Kill { pid: u32, source: std::io::Error },
    #[error("fork failed: {0}")]
    Fork(std::io::Error),
    #[error("cannot run {command}: {source}")]
    Exec {
        command: String,
        source: std::io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// What a daemon whose policy file cannot be used at start does meanwhile.
const REFUSING_FORWARDED: &str = "the policy file cannot be used: serving local use as the \
     built-in policy does and refusing everything forwarded until a good policy file loads";

/// Runs the parsed command line.
pub(crate) fn run(cli: Cli) -> Result<ExitCode, LaunchError> {
    match cli.command {
        Command::Daemon(words) => Ok(daemon_command(&words.words)),
        Command::Env(args) => Ok(print_env(&args)),
        Command::Policy(cmd) => Ok(crate::app::policy_cmd::run(cmd)),
        Command::Status(args) => Ok(crate::app::client::status(&args)),
        Command::Lock(args) => Ok(crate::app::client::lock(&args, true)),
        Command::Unlock(args) => Ok(crate::app::client::lock(&args, false)),
        Command::Grants(args) => Ok(crate::app::client::grants(&args)),
        Command::Log(args) => Ok(crate::app::logview::run(&args)),
        Command::Install(args) => Ok(crate::app::install::run(&args)),
        Command::Doctor(args) => Ok(crate::app::doctor::run(&args)),
        Command::Man(args) => Ok(crate::app::install::man(&args)),
        Command::Completions(args) => Ok(crate::app::install::completions(&args)),
        Command::SshConfig(args) => Ok(crate::app::ssh_config::run(&args)),
    }
}

/// `hopward daemon WORDS...`: parses them as ssh-agent does and runs the
/// agent. A usage error prints ssh-agent's usage text and exits 1 (255 for
/// what ssh-agent treats as fatal) before anything is bound or forked.
pub(crate) fn daemon_command(words: &[OsString]) -> ExitCode {
    match crate::app::daemon_cli::parse(words) {
        Ok(DaemonInvocation::Help) => {
            print!(
                "{}\n{}",
                crate::app::daemon_cli::USAGE,
                crate::app::daemon_cli::HELP
            );
            ExitCode::SUCCESS
        }
        Ok(DaemonInvocation::Version) => {
            // On standard error, where ssh-agent -V prints its version.
            eprintln!("hopward {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        Ok(DaemonInvocation::Run(args)) => match daemon(*args) {
            Ok(code) => code,
            Err(err) => {
                eprintln!("hopward: {err}");
                ExitCode::FAILURE
            }
        },
        Err(err) => {
            eprintln!("hopward daemon: {err}");
            if err.is_usage() {
                eprint!("{}", crate::app::daemon_cli::USAGE);
            }
            ExitCode::from(err.exit_code())
        }
    }
}

fn print_env(args: &EnvArgs) -> ExitCode {
    let shell = args.shell.unwrap_or_else(Shell::from_env);
    println!(
        "{}",
        shell.set_var("SSH_AUTH_SOCK", &paths::default_socket().to_string_lossy())
    );
    ExitCode::SUCCESS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Fork, print the environment, parent exits.
    Background,
    /// Stay in the foreground (`-D`; `-d` adds debug logging).
    Foreground { debug: bool },
    /// Fork; the parent runs the command, the child serves until it exits.
    Command,
}

fn daemon(args: DaemonArgs) -> Result<ExitCode, LaunchError> {
    let shell = if args.csh {
        Shell::Csh
    } else if args.sh {
        Shell::Sh
    } else {
        Shell::from_env()
    };
    if args.kill {
        return kill_agent(shell);
    }
    if args.cleanup_only > 0 {
        // -uu means "whatever host made them" to ssh-agent, whose socket
        // directory is in a home that may be shared; hopward's is per
        // machine, so both clean every stale socket in it.
        let dir = paths::runtime_dir();
        clean_stale_sockets(&dir, STALE_AGE).map_err(|source| LaunchError::Cleanup {
            path: dir.clone(),
            source,
        })?;
        println!("Deleted stale agent sockets in {}", dir.display());
        return Ok(ExitCode::SUCCESS);
    }
    let default_lifetime = args.lifetime;
    let mode = if args.debug || args.foreground {
        Mode::Foreground { debug: args.debug }
    } else if !args.command.is_empty() {
        Mode::Command
    } else {
        Mode::Background
    };
    // A policy file that cannot be used (it does not parse, or another user
    // could have written it) does not stop the start: local use is served as
    // the built-in policy serves it and everything forwarded is refused until
    // a good file loads. Said on stderr before anything is forked, and in
    // the log once it runs.
    let store = crate::policy::store::open(args.policy.clone());
    if let crate::policy::store::ReloadStatus::Kept { errors } = store.status() {
        for e in &errors {
            eprintln!("hopward: {e}");
        }
        eprintln!("hopward: {REFUSING_FORWARDED}");
    }
    let options = AgentOptions {
        default_lifetime,
        known_hosts: known_hosts_files(),
        ask_ssh_config: true,
        // Absolute, as the policy path: a forked agent leaves its directory.
        upstream: args
            .upstream
            .clone()
            .map(|p| std::path::absolute(&p).unwrap_or(p)),
        provider_allowlist: args
            .provider_allowlist
            .clone()
            .unwrap_or_else(|| crate::keys::sk::DEFAULT_ALLOWED_PROVIDERS.to_string()),
        allow_remote_providers: args.options.allow_remote_pkcs11,
        websafe_allowlist: if args.options.no_restrict_websafe {
            None
        } else {
            Some(
                args.options
                    .websafe_allow
                    .clone()
                    .unwrap_or_else(|| "ssh:*".to_string()),
            )
        },
        provider_timeout: provider_timeout(),
        ..AgentOptions::new(sys::effective_uid())
    };
    // Socket activation: systemd bound the socket and runs us in the
    // foreground; the socket file is systemd's, so we never remove it. As
    // with ssh-agent, only for -d/-D without -a, -T or a command.
    let activated = matches!(mode, Mode::Foreground { .. })
        && args.socket.is_none()
        && !args.temp_dir
        && args.command.is_empty();
    if let Some(listener) = activated.then(sys::systemd_listener).flatten() {
        let listener = listener.map_err(LaunchError::Runtime)?;
        harden();
        init_logging(args.debug);
        secure_inherited_socket(&listener);
        let interactive = args.debug || args.foreground;
        return serve(
            listener,
            SocketFile(None),
            options,
            store,
            None,
            interactive,
        );
    }
    if matches!(mode, Mode::Foreground { .. }) {
        // Before the socket exists, so nothing ever talks to an unhardened
        // agent. Forked agents harden in the child, before serving.
        harden();
    }
    let place = if args.temp_dir {
        // -T wins over -a, as in ssh-agent.
        Place::TempDir
    } else if let Some(path) = args.socket.as_deref() {
        Place::Explicit(path)
    } else {
        Place::Default {
            clean_stale: !args.keep_stale,
        }
    };
    let (listener, socket_path, temp_dir) = bind(place, mode)?;
    // Printed as given, removed by its absolute path: a forked agent serves
    // from `/`.
    let socket = SocketFile(Some(
        std::path::absolute(&socket_path).unwrap_or_else(|_| socket_path.clone()),
    ));
    let sock_line = shell.set_var("SSH_AUTH_SOCK", &socket_path.to_string_lossy());

    match mode {
        Mode::Foreground { debug } => {
            init_logging(debug);
            let pid = std::process::id();
            println!("{sock_line}");
            println!("echo Agent pid {pid};");
            let _ = std::io::stdout().flush();
            serve(listener, socket, options, store, None, true)
        }
        Mode::Background => match sys::fork().map_err(LaunchError::Fork)? {
            Forked::Parent { child } => {
                // The child owns the socket file and its directory now.
                std::mem::forget(socket);
                std::mem::forget(temp_dir);
                println!("{sock_line}");
                println!("{}", shell.set_var("SSH_AGENT_PID", &child.to_string()));
                println!("echo Agent pid {child};");
                let _ = std::io::stdout().flush();
                Ok(ExitCode::SUCCESS)
            }
            Forked::Child => {
                let _ = sys::hold_agent_signals();
                detach();
                serve(listener, socket, options, store, None, false)
            }
        },
        Mode::Command => {
            let parent = std::process::id();
            match sys::fork().map_err(LaunchError::Fork)? {
                Forked::Parent { child } => {
                    std::mem::forget(socket);
                    std::mem::forget(temp_dir);
                    drop(listener);
                    Err(run_command(&args.command, &socket_path, child))
                }
                Forked::Child => {
                    let _ = sys::hold_agent_signals();
                    // The parent-death signal is asked for in
                    // `shutdown_signal`, once SIGTERM is handled.
                    detach();
                    serve(listener, socket, options, store, Some(parent), false)
                }
            }
        }
    }
}

/// `$HOPWARD_KNOWN_HOSTS` (colon-separated) or OpenSSH's default files.
/// How long a provider may take: `HOPWARD_PROVIDER_TIMEOUT` (a duration
/// such as `20s`) or the default. An unreadable value keeps the default
/// and says so.
fn provider_timeout() -> Duration {
    match std::env::var("HOPWARD_PROVIDER_TIMEOUT") {
        Ok(text) => crate::duration::parse(&text).unwrap_or_else(|e| {
            eprintln!("hopward: HOPWARD_PROVIDER_TIMEOUT={text:?} ignored: {e}");
            crate::keys::sk::DEFAULT_SIGN_TIMEOUT
        }),
        Err(_) => crate::keys::sk::DEFAULT_SIGN_TIMEOUT,
    }
}

fn known_hosts_files() -> Vec<PathBuf> {
    crate::trust::known_hosts::configured_files()
}

/// Replaces this process with the user's command (command mode's parent).
fn run_command(command: &[OsString], socket: &Path, agent_pid: u32) -> LaunchError {
    let err = std::process::Command::new(&command[0])
        .args(&command[1..])
        .env("SSH_AUTH_SOCK", socket)
        .env("SSH_AGENT_PID", agent_pid.to_string())
        .exec();
    let _ = sys::send_signal(agent_pid, libc::SIGTERM);
    LaunchError::Exec {
        command: command[0].to_string_lossy().into_owned(),
        source: err,
    }
}

/// The detached agent's setup: own session, working directory `/` (as
/// ssh-agent, so it keeps no directory busy), stdio away from the terminal,
/// log lines to `$XDG_STATE_HOME/hopward/daemon.log`.
fn detach() {
    let _ = sys::new_session();
    // The state directory is found first: XDG_STATE_HOME may be relative.
    let state = paths::state_dir().map(|d| std::path::absolute(&d).unwrap_or(d));
    let _ = std::env::set_current_dir("/");
    let log = state.and_then(|dir| {
        paths::ensure_private_dir(&dir).ok()?;
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(dir.join("daemon.log"))
            .ok()
    });
    let log = log.or_else(|| {
        std::fs::OpenOptions::new()
            .write(true)
            .open("/dev/null")
            .ok()
    });
    if let Some(log) = &log {
        let _ = sys::redirect_stdio(log);
    }
    init_logging(false);
}

fn init_logging(debug: bool) {
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;
    // `Targets` (`debug`, `hopward=debug,zbus=warn`) rather than EnvFilter:
    // EnvFilter's regex support turns on full-DFA construction in the regex
    // engine globset shares, which made every policy glob several times
    // slower to compile.
    let env = std::env::var("HOPWARD_LOG").ok();
    let (filter, warning) = crate::app::logging::filter(debug, env.as_deref());
    let format = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let subscriber = tracing_subscriber::registry().with(filter);
    // The journal stamps and colours lines itself.
    let _ = if crate::app::systemd::stderr_is_journal() {
        subscriber
            .with(format.without_time().with_ansi(false))
            .try_init()
    } else {
        // https://no-color.org: set and not empty means no colour.
        let colour = std::io::IsTerminal::is_terminal(&std::io::stderr())
            && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
        subscriber.with(format.with_ansi(colour)).try_init()
    };
    if let Some(warning) = warning {
        warn!("{warning}");
    }
}

/// Where the socket goes.
#[derive(Debug, Clone, Copy)]
enum Place<'a> {
    /// `-a PATH`.
    Explicit(&'a Path),
    /// `-T`: a new private directory under `$TMPDIR`.
    TempDir,
    /// hopward's socket directory; stale sockets there are cleaned up first
    /// unless `-U`.
    Default { clean_stale: bool },
}

/// A socket directory made for this agent alone (`-T`), removed when the
/// agent stops, after the socket in it.
#[derive(Debug)]
struct OwnDir(Option<PathBuf>);

impl Drop for OwnDir {
    fn drop(&mut self) {
        if let Some(dir) = self.0.take() {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// How old a dead socket must be before it counts as stale: ssh-agent's
/// hour, which keeps a clean-up from racing an agent that is starting.
const STALE_AGE: Duration = Duration::from_secs(3600);

/// Removes sockets in `dir` that nothing listens on any more and that were
/// last modified more than `min_age` ago; returns how many went. A missing
/// directory has nothing stale in it.
pub(crate) fn clean_stale_sockets(dir: &Path, min_age: Duration) -> std::io::Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let cutoff = std::time::SystemTime::now()
        .checked_sub(min_age)
        .unwrap_or(std::time::UNIX_EPOCH);
    let mut removed = 0;
    for entry in entries {
        let path = entry?.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let old = meta.modified().is_ok_and(|m| m <= cutoff);
        if !meta.file_type().is_socket() || !old {
            continue;
        }
        // A refused connection means no agent is behind it any more.
        if std::os::unix::net::UnixStream::connect(&path).is_err()
            && std::fs::remove_file(&path).is_ok()
        {
            info!("removed stale socket {}", path.display());
            removed += 1;
        }
    }
    Ok(removed)
}

/// Binds the socket where `place` says. In hopward's socket directory, a
/// background or command-mode agent that finds a live agent on the default
/// socket takes a fresh private socket instead, as ssh-agent always does,
/// because its caller reads the path from its output.
fn bind(place: Place<'_>, mode: Mode) -> Result<(StdListener, PathBuf, OwnDir), LaunchError> {
    let clean_stale = match place {
        Place::Explicit(path) => {
            return bind_at(path).map(|l| (l, path.to_path_buf(), OwnDir(None)));
        }
        Place::TempDir => {
            let dir = make_temp_dir()?;
            let path = dir.join(format!("agent.{}", std::process::id()));
            let own = OwnDir(Some(dir));
            return bind_at(&path).map(|l| (l, path, own));
        }
        Place::Default { clean_stale } => clean_stale,
    };
    let dir = paths::runtime_dir();
    paths::ensure_private_dir(&dir).map_err(|source| LaunchError::SocketDir {
        path: dir.clone(),
        source,
    })?;
    if clean_stale {
        if let Err(e) = clean_stale_sockets(&dir, STALE_AGE) {
            warn!("could not clean up stale sockets in {}: {e}", dir.display());
        }
    }
    let default = dir.join("agent.sock");
    match bind_at(&default) {
        Err(LaunchError::AgentRunning(_)) if !matches!(mode, Mode::Foreground { .. }) => {
            let unique = dir.join(format!("agent.{}.sock", std::process::id()));
            bind_at(&unique).map(|l| (l, unique, OwnDir(None)))
        }
        other => other.map(|l| (l, default, OwnDir(None))),
    }
}

/// `$TMPDIR/hopward.XXXXXXXXXX`, mode 0700, with a random name (mkdtemp's
/// way: retry while the name is taken).
fn make_temp_dir() -> Result<PathBuf, LaunchError> {
    use rand_core::RngCore as _;
    use std::os::unix::fs::DirBuilderExt as _;
    const CHARS: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let base = std::env::var_os("TMPDIR")
        .filter(|t| !t.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    let base = std::path::absolute(&base).unwrap_or(base);
    let mut last = None;
    for _ in 0..100 {
        let name: String = (0..10)
            .map(|_| char::from(CHARS[(rand_core::OsRng.next_u32() % 62) as usize]))
            .collect();
        let dir = base.join(format!("hopward.{name}"));
        match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(source) => return Err(LaunchError::TempDir { path: base, source }),
        }
    }
    Err(LaunchError::TempDir {
        path: base,
        source: last.unwrap_or_else(|| std::io::Error::other("no free name")),
    })
}

fn bind_at(path: &Path) -> Result<StdListener, LaunchError> {
    if let Ok(meta) = std::fs::symlink_metadata(path) {
        if !meta.file_type().is_socket() {
            return Err(LaunchError::NotASocket(path.to_path_buf()));
        }
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(LaunchError::AgentRunning(path.to_path_buf()));
        }
        // Stale socket from an agent that did not clean up.
        let _ = std::fs::remove_file(path);
    }
    let listener = sys::bind_private_socket(path).map_err(|source| LaunchError::Bind {
        path: path.to_path_buf(),
        source,
    })?;
    let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
    Ok(listener)
}

fn kill_agent(shell: Shell) -> Result<ExitCode, LaunchError> {
    let text = std::env::var("SSH_AGENT_PID").map_err(|_| LaunchError::NoAgentPid)?;
    let pid: u32 = text
        .trim()
        .parse()
        .ok()
        .filter(|&p| p > 1)
        .ok_or_else(|| LaunchError::BadAgentPid(text.clone()))?;
    sys::send_signal(pid, libc::SIGTERM).map_err(|source| LaunchError::Kill { pid, source })?;
    let unset = |name: &str| match shell {
        Shell::Csh => format!("unsetenv {name};"),
        Shell::Fish => format!("set -e {name};"),
        Shell::Sh => format!("unset {name};"),
    };
    println!("{}", unset("SSH_AUTH_SOCK"));
    println!("{}", unset("SSH_AGENT_PID"));
    println!("echo Agent pid {pid} killed;");
    Ok(ExitCode::SUCCESS)
}

/// A socket handed over by systemd should already be 0600 (`SocketMode=`);
/// make sure, since anyone who can connect could otherwise try.
fn secure_inherited_socket(listener: &StdListener) {
    let Some(path) = listener
        .local_addr()
        .ok()
        .and_then(|a| a.as_pathname().map(Path::to_path_buf))
    else {
        return;
    };
    let meta = std::fs::metadata(&path);
    use std::os::unix::fs::MetadataExt as _;
    if let Ok(meta) = meta {
        if meta.uid() == sys::effective_uid() && meta.mode() & 0o077 != 0 {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            eprintln!("hopward: tightened {} to mode 0600", path.display());
        }
    }
}

fn harden() {
    if let Err(e) = sys::hold_agent_signals() {
        eprintln!("hopward: warning: cannot hold signals until the agent handles them: {e}");
    }
    if let Err(e) = sys::harden_process() {
        eprintln!("hopward: warning: could not disable core dumps / debugger attach: {e}");
    }
    if cfg!(feature = "unshielded-benchmark") {
        eprintln!(
            "hopward: warning: benchmark build: private keys are kept open in memory, \
             not shielded; do not use it for real keys"
        );
    }
}

/// Builds the runtime and serves until a signal (or the command-mode parent
/// going away) stops the agent.
fn serve(
    listener: StdListener,
    socket: SocketFile,
    options: AgentOptions,
    policy: crate::policy::store::PolicyStore,
    watch_parent: Option<u32>,
    stop_on_interrupt: bool,
) -> Result<ExitCode, LaunchError> {
    harden();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(LaunchError::Runtime)?;
    let (code, audit) = runtime.block_on(async move {
        listener
            .set_nonblocking(true)
            .map_err(LaunchError::Runtime)?;
        let listener =
            tokio::net::UnixListener::from_std(listener).map_err(LaunchError::Runtime)?;
        let audit_settings = policy.current().audit.clone();
        let audit_path = audit_settings
            .path
            .clone()
            .or_else(crate::daemon::audit::default_path);
        let audit: Arc<dyn crate::daemon::audit::AuditSink> = match audit_path {
            Some(path) => Arc::new(crate::daemon::audit::AuditLog::start(
                path,
                audit_settings.max_bytes,
                audit_settings
                    .journald
                    .then(|| crate::daemon::audit::journal::SOCKET.into()),
            )),
            None => {
                warn!(
                    "no $XDG_STATE_HOME or $HOME: decisions are logged, but not to an audit file"
                );
                Arc::new(crate::daemon::audit::LogOnly)
            }
        };
        let agent = Arc::new(Agent::new(options, policy, audit));
        // Host names ssh reported before a restart, checked against
        // known_hosts again as they load.
        if let Some(path) = crate::trust::learned::default_file() {
            match agent.known_hosts().load_learned(path.clone()) {
                Ok(0) => {}
                Ok(n) => info!("{n} learned host names from {}", path.display()),
                Err(e) => warn!("learned host names: {e}"),
            }
        }
        info!(
            socket = ?socket.0,
            policy = ?agent.policy_path(),
            "hopward {} listening",
            env!("CARGO_PKG_VERSION")
        );
        if let crate::policy::store::ReloadStatus::Kept { errors } = agent.policy_status() {
            for e in &errors {
                warn!("policy refused: {e}");
            }
            warn!("{REFUSING_FORWARDED}");
            // Started by systemd at login, nobody reads the log: a login
            // through a bastion refused for a typo must not be a mystery.
            let shown: Vec<String> = errors
                .iter()
                .take(3)
                .map(|e| crate::text::clean(e, 200))
                .collect();
            let more = errors.len().saturating_sub(shown.len());
            agent.notify(
                "hopward: the policy file cannot be used",
                format!(
                    "{}{}\nLocal use is served as the built-in policy does; everything \
                     forwarded is refused until a good policy file loads \
                     (hopward policy check).",
                    shown.join("\n"),
                    if more > 0 {
                        format!("\n(and {more} more)")
                    } else {
                        String::new()
                    }
                ),
            );
        }
        // The handlers exist before the first connection is accepted, so a
        // signal never meets a serving agent without them.
        let signals = Signals::install();
        // This thread runs the loop that waits on them: held signals that
        // came in since start-up are handled now.
        if let Err(e) = sys::release_agent_signals() {
            warn!("cannot release held signals: {e}");
        }
        let _watcher = crate::daemon::policy_watch::watch(&agent);
        crate::daemon::autolock::start(&agent);
        crate::app::systemd::notify_ready();
        // On a worker of the runtime, not this thread: a connection task
        // spawned from a worker starts on that worker, where the accept
        // loop's thread would have to wake another for each connection.
        let serving = tokio::spawn(server::serve(
            listener,
            socket,
            Arc::clone(&agent),
            shutdown_signal(signals, watch_parent, stop_on_interrupt, Arc::clone(&agent)),
        ));
        if let Err(e) = serving.await
            && e.is_panic()
        {
            // As if it had run here: the agent stops as it did before.
            std::panic::resume_unwind(e.into_panic());
        }
        // `serve` ended every connection, and with them sent the records of
        // requests still open (abandoned); they are flushed below.
        Ok::<_, LaunchError>((ExitCode::SUCCESS, agent.audit_sink()))
    })?;
    // Anything still left (a blocking signature whose connection has
    // gone) is given a moment, not waited for; then every record is
    // flushed.
    runtime.shutdown_timeout(SHUTDOWN_GRACE);
    // Confirm programs (and what they started) never outlive the agent.
    crate::confirm::group::end_all();
    audit.flush();
    Ok(code)
}

/// How long a stopping agent waits for blocking work (an RSA signature)
/// still running after its connections ended.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

/// The signals the agent acts on; `None` when they could not be installed.
struct Signals(
    Option<(
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
        tokio::signal::unix::Signal,
    )>,
);

impl Signals {
    fn install() -> Signals {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
            signal(SignalKind::hangup()),
            signal(SignalKind::user_defined1()),
        ) {
            (Ok(term), Ok(int), Ok(hup), Ok(usr1)) => Signals(Some((term, int, hup, usr1))),
            _ => Signals(None),
        }
    }
}

/// Resolves on SIGTERM or SIGINT, or when the command-mode parent exits;
/// SIGHUP reloads the policy and SIGUSR1 drops every key and approval on
/// the way.
/// SIGINT stops only a foreground agent (`-d`, `-D`): ssh-agent ignores it
/// otherwise, so an interrupt meant for something else spares the agent.
async fn shutdown_signal(
    signals: Signals,
    watch_parent: Option<u32>,
    stop_on_interrupt: bool,
    agent: Arc<Agent>,
) {
    let Signals(Some((mut term, mut int, mut hup, mut usr1))) = signals else {
        warn!("cannot install signal handlers; the agent will stop only when killed");
        std::future::pending::<()>().await;
        return;
    };
    if watch_parent.is_some() {
        // Only now that SIGTERM is handled: asked for earlier, a command
        // that exits at once killed the agent before it could remove its
        // socket. A parent already gone is caught by the check below.
        sys::terminate_with_parent();
    }
    let parent_gone = async {
        match watch_parent {
            Some(parent) => loop {
                if sys::parent_pid() != parent {
                    info!("command exited; stopping");
                    return;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            },
            None => std::future::pending().await,
        }
    };
    tokio::pin!(parent_gone);
    loop {
        tokio::select! {
            _ = term.recv() => { info!("SIGTERM received"); return; }
            _ = int.recv() => {
                if stop_on_interrupt {
                    info!("SIGINT received");
                    return;
                }
                info!("SIGINT ignored: only a foreground agent stops on it");
            }
            _ = hup.recv() => {
                info!("SIGHUP received: reloading the policy");
                // Off the signal loop: a reload may ask `ssh -G` about the
                // policy's host names.
                let agent = Arc::clone(&agent);
                tokio::task::spawn_blocking(move || agent.reload_policy());
            }
            _ = usr1.recv() => {
                let _ = agent.drop_keys_and_approvals();
            }
            () = &mut parent_gone => return,
        }
    }
}
