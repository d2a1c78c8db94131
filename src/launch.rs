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

use crate::agent::{Agent, AgentOptions};
use crate::cli::{Cli, Command, DaemonArgs, EnvArgs, Shell};
use crate::hardening::{self, Forked};
use crate::paths;
use crate::server::{self, SocketFile};

#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
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
    #[error("-t {0}")]
    Lifetime(#[from] crate::duration::DurationError),
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
    #[error("{}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))]
    Policy(Vec<crate::policy::file::PolicyError>),
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
}

/// Runs the parsed command line.
pub fn run(cli: Cli) -> Result<ExitCode, LaunchError> {
    match cli.command {
        Command::Daemon(args) => daemon(args),
        Command::Env(args) => Ok(print_env(&args)),
        Command::Policy(cmd) => Ok(crate::policy::tool::run(cmd)),
        Command::Status(args) => Ok(crate::client::status(&args)),
        Command::Lock(args) => Ok(crate::client::lock(&args, true)),
        Command::Unlock(args) => Ok(crate::client::lock(&args, false)),
        Command::Grants(args) => Ok(crate::client::grants(&args)),
        Command::Log(args) => Ok(crate::logview::run(&args)),
        Command::Install(args) => Ok(crate::install::run(&args)),
        Command::Doctor(args) => Ok(crate::doctor::run(&args)),
        Command::Man(args) => Ok(crate::install::man(&args)),
        Command::Completions(args) => Ok(crate::install::completions(&args)),
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
    let default_lifetime = args
        .lifetime
        .as_deref()
        .map(crate::duration::parse)
        .transpose()?;
    let mode = if args.debug || args.foreground {
        Mode::Foreground { debug: args.debug }
    } else if !args.command.is_empty() {
        Mode::Command
    } else {
        Mode::Background
    };
    // Socket activation: systemd bound the socket and runs us in the
    // foreground; the socket file is systemd's, so we never remove it.
    if let Some(listener) = hardening::systemd_listener() {
        let listener = listener.map_err(LaunchError::Runtime)?;
        harden();
        init_logging(args.debug);
        secure_inherited_socket(&listener);
        let store = crate::policy::store::open(args.policy.clone()).map_err(LaunchError::Policy)?;
        let options = AgentOptions {
            default_lifetime,
            owner_uid: hardening::effective_uid(),
            known_hosts: known_hosts_files(),
        };
        return serve(listener, SocketFile(None), options, store, None);
    }
    if matches!(mode, Mode::Foreground { .. }) {
        // Before the socket exists, so nothing ever talks to an unhardened
        // agent. Forked agents harden in the child, before serving.
        harden();
    }
    let (listener, socket_path) = bind(args.socket.as_deref(), mode)?;
    let socket = SocketFile(Some(socket_path.clone()));
    let sock_line = shell.set_var("SSH_AUTH_SOCK", &socket_path.to_string_lossy());
    let options = AgentOptions {
        default_lifetime,
        owner_uid: hardening::effective_uid(),
        known_hosts: known_hosts_files(),
    };
    // An invalid policy stops the start, before anything forks or prints.
    let store = crate::policy::store::open(args.policy.clone()).map_err(LaunchError::Policy)?;

    match mode {
        Mode::Foreground { debug } => {
            init_logging(debug);
            let pid = std::process::id();
            println!("{sock_line}");
            println!("echo Agent pid {pid};");
            let _ = std::io::stdout().flush();
            serve(listener, socket, options, store, None)
        }
        Mode::Background => match hardening::fork().map_err(LaunchError::Fork)? {
            Forked::Parent { child } => {
                std::mem::forget(socket); // the child owns the socket file now
                println!("{sock_line}");
                println!("{}", shell.set_var("SSH_AGENT_PID", &child.to_string()));
                println!("echo Agent pid {child};");
                let _ = std::io::stdout().flush();
                Ok(ExitCode::SUCCESS)
            }
            Forked::Child => {
                detach();
                serve(listener, socket, options, store, None)
            }
        },
        Mode::Command => {
            let parent = std::process::id();
            match hardening::fork().map_err(LaunchError::Fork)? {
                Forked::Parent { child } => {
                    std::mem::forget(socket);
                    drop(listener);
                    Err(run_command(&args.command, &socket_path, child))
                }
                Forked::Child => {
                    // The parent-death signal is asked for in
                    // `shutdown_signal`, once SIGTERM is handled.
                    detach();
                    serve(listener, socket, options, store, Some(parent))
                }
            }
        }
    }
}

/// `$HOPWARD_KNOWN_HOSTS` (colon-separated) or OpenSSH's default files.
fn known_hosts_files() -> Vec<PathBuf> {
    crate::policy::known_hosts::configured_files()
}

/// Replaces this process with the user's command (command mode's parent).
fn run_command(command: &[OsString], socket: &Path, agent_pid: u32) -> LaunchError {
    let err = std::process::Command::new(&command[0])
        .args(&command[1..])
        .env("SSH_AUTH_SOCK", socket)
        .env("SSH_AGENT_PID", agent_pid.to_string())
        .exec();
    let _ = hardening::send_signal(agent_pid, libc::SIGTERM);
    LaunchError::Exec {
        command: command[0].to_string_lossy().into_owned(),
        source: err,
    }
}

/// The detached agent's setup: own session, stdio away from the terminal,
/// log lines to `$XDG_STATE_HOME/hopward/daemon.log`.
fn detach() {
    let _ = hardening::new_session();
    let log = paths::state_dir().and_then(|dir| {
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
        let _ = hardening::redirect_stdio(log);
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
    let (filter, warning) = crate::logging::filter(debug, env.as_deref());
    let format = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_target(false);
    let subscriber = tracing_subscriber::registry().with(filter);
    // The journal stamps and colours lines itself.
    let _ = if crate::systemd::stderr_is_journal() {
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

/// Binds the socket. Without `-a`, the default socket is used; a background
/// or command-mode agent that finds a live agent there takes a fresh private
/// socket instead, as ssh-agent always does, because its caller reads the
/// path from its output.
fn bind(explicit: Option<&Path>, mode: Mode) -> Result<(StdListener, PathBuf), LaunchError> {
    if let Some(path) = explicit {
        return bind_at(path).map(|l| (l, path.to_path_buf()));
    }
    let dir = paths::runtime_dir();
    paths::ensure_private_dir(&dir).map_err(|source| LaunchError::SocketDir {
        path: dir.clone(),
        source,
    })?;
    let default = dir.join("agent.sock");
    match bind_at(&default) {
        Err(LaunchError::AgentRunning(_)) if !matches!(mode, Mode::Foreground { .. }) => {
            let unique = dir.join(format!("agent.{}.sock", std::process::id()));
            bind_at(&unique).map(|l| (l, unique))
        }
        other => other.map(|l| (l, default)),
    }
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
    let listener = hardening::bind_private_socket(path).map_err(|source| LaunchError::Bind {
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
    hardening::send_signal(pid, libc::SIGTERM)
        .map_err(|source| LaunchError::Kill { pid, source })?;
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
        if meta.uid() == hardening::effective_uid() && meta.mode() & 0o077 != 0 {
            let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
            eprintln!("hopward: tightened {} to mode 0600", path.display());
        }
    }
}

fn harden() {
    if let Err(e) = hardening::harden_process() {
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
) -> Result<ExitCode, LaunchError> {
    harden();
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .map_err(LaunchError::Runtime)?;
    runtime.block_on(async move {
        listener
            .set_nonblocking(true)
            .map_err(LaunchError::Runtime)?;
        let listener =
            tokio::net::UnixListener::from_std(listener).map_err(LaunchError::Runtime)?;
        let audit_settings = policy.current().audit.clone();
        let audit_path = audit_settings
            .path
            .clone()
            .or_else(crate::audit::default_path);
        let audit: Arc<dyn crate::audit::AuditSink> = match audit_path {
            Some(path) => Arc::new(crate::audit::AuditLog::start(
                path,
                audit_settings.max_bytes,
            )),
            None => {
                warn!(
                    "no $XDG_STATE_HOME or $HOME: decisions are logged, but not to an audit file"
                );
                Arc::new(crate::audit::LogOnly)
            }
        };
        let agent = Arc::new(Agent::new(options, policy, audit));
        info!(
            socket = ?socket.0,
            policy = ?agent.policy.path(),
            "hopward {} listening",
            env!("CARGO_PKG_VERSION")
        );
        let _watcher = crate::policy::watch::watch(&agent);
        crate::autolock::start(&agent);
        crate::systemd::notify_ready();
        server::serve(
            listener,
            socket,
            Arc::clone(&agent),
            shutdown_signal(watch_parent, Arc::clone(&agent)),
        )
        .await;
        agent.audit.flush();
        Ok(ExitCode::SUCCESS)
    })
}

/// Resolves on SIGTERM or SIGINT, or when the command-mode parent exits.
async fn shutdown_signal(watch_parent: Option<u32>, agent: Arc<Agent>) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        warn!("cannot install signal handlers; the agent will stop only when killed");
        std::future::pending::<()>().await;
        return;
    };
    if watch_parent.is_some() {
        // Only now that SIGTERM is handled: asked for earlier, a command
        // that exits at once killed the agent before it could remove its
        // socket. A parent already gone is caught by the check below.
        hardening::terminate_with_parent();
    }
    let parent_gone = async {
        match watch_parent {
            Some(parent) => loop {
                if hardening::parent_pid() != parent {
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
            _ = int.recv() => { info!("SIGINT received"); return; }
            _ = hup.recv() => {
                info!("SIGHUP received: reloading the policy");
                agent.reload_policy();
            }
            () = &mut parent_gone => return,
        }
    }
}
