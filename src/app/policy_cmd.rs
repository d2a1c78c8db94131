//! `hopward policy check`, `explain` and `init`: the policy engine run
//! from the command line, without a daemon.
//!
//! Invariant: `init` never replaces a file (it creates the file
//! exclusively), and checks what it wrote.

use std::process::ExitCode;

use crate::app::cli::{ExplainArgs, InitArgs, PolicyCommand};
use crate::trust::binding::Purpose;
use crate::trust::context::{Destination, HopView, RequestClass, RequestContext};
use crate::trust::peer::Peer;

use crate::policy::file::{parse_file, rule_warnings, unknown_name_warnings};
use crate::policy::store::{load, resolve_path};
use crate::policy::{Action, Policy};
use crate::trust::known_hosts::{KnownHosts, configured_files};

pub(crate) fn run(cmd: PolicyCommand) -> ExitCode {
    match cmd {
        PolicyCommand::Check { file } => check(file),
        PolicyCommand::Explain(args) => explain(&args),
        PolicyCommand::Init(args) => init(&args),
    }
}

/// The shipped example policies, by name.
pub(crate) const EXAMPLES: &[(&str, &str)] = &[
    ("default", crate::policy::file::DEFAULT_POLICY),
    ("bastion", include_str!("../../policy/bastion.toml")),
    ("github", include_str!("../../policy/github.toml")),
    (
        "instance-ids",
        include_str!("../../policy/instance-ids.toml"),
    ),
    ("strict", include_str!("../../policy/strict.toml")),
];

/// What `init --example default` adds after the built-in policy: a first
/// rule to edit, commented out so the file starts as the built-in policy.
const FIRST_RULE: &str = r#"
# Your first rule (rules are tried in order; the first match decides).
# Uncomment and edit, then run `hopward policy check`; a running agent
# picks the change up by itself.
#
# [[rule]]
# name = "prod through the bastion"
# host = ["*.prod.example.com"]   # where you log in (names from known_hosts)
# via = ["bastion"]               # the forwarding hops on the way
# user = ["deploy"]
# action = "confirm"              # allow | notify | confirm | deny
# remember = "10m"
"#;

fn init(args: &InitArgs) -> ExitCode {
    use std::io::Write as _;
    use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
    let Some((_, text)) = EXAMPLES.iter().find(|(name, _)| *name == args.example) else {
        eprintln!(
            "hopward: no example {:?}; choose one of: {}",
            args.example,
            EXAMPLES
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::FAILURE;
    };
    let Some(path) = args
        .file
        .clone()
        .or_else(|| crate::policy::store::resolve_watched(None).0)
    else {
        eprintln!("hopward: no $HOME or $XDG_CONFIG_HOME to put the policy in; name a FILE");
        return ExitCode::FAILURE;
    };
    let mut text = text.to_string();
    if args.example == "default" {
        text = text.replacen(
            "# hopward's built-in policy. It applies when no policy file exists; copy it\n\
             # to ~/.config/hopward/policy.toml to start your own.",
            "# Your hopward policy, written by `hopward policy init` from the built-in\n\
             # policy: as it stands it changes nothing.",
            1,
        );
        text.push_str(FIRST_RULE);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Err(e) = std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
        {
            eprintln!("hopward: cannot create {}: {e}", dir.display());
            return ExitCode::FAILURE;
        }
    }
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    match written {
        Ok(()) => println!(
            "wrote {} (from the {} example)",
            path.display(),
            args.example
        ),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            eprintln!(
                "hopward: {} exists; not overwriting it (hopward policy check {} checks it)",
                path.display(),
                path.display()
            );
            return ExitCode::FAILURE;
        }
        Err(e) => {
            eprintln!("hopward: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    check(Some(path))
}

/// The known_hosts files the daemon would read with `policy`, with the
/// names its rules are also looked up under (`[known_hosts] ports`, and
/// `ssh -G`), as the daemon looks them up.
pub(crate) fn known_hosts_for(policy: &crate::policy::Policy) -> KnownHosts {
    let mut files = configured_files();
    files.extend(policy.known_hosts.iter().cloned());
    let known = KnownHosts::new(files);
    known.set_lookup_names(crate::trust::ssh_config::lookup_names(
        policy.exact_names(),
        &policy.known_hosts_ports,
        true,
    ));
    // The names ssh reported to the daemon, which it kept in the state
    // directory: a glob rule matches a hashed host only through them.
    if let Some(path) = crate::trust::learned::default_file() {
        known.read_learned(&path);
    }
    known
}

/// A hop of the chain `explain` is given, named as the daemon would name
/// it: a name that some known_hosts entry holds becomes that entry's key,
/// described as a bind with that key would be (plain names, hashed
/// entries confirmed for the policy's exact names, learned names); a name
/// no entry holds is taken as given (and a note says so).
fn explained_hop(
    name: &str,
    forwarding: bool,
    known: &KnownHosts,
    exact_names: &[String],
) -> HopView {
    // A host with several keys (ed25519, rsa, ...) has a line for each, and
    // ssh reports the name with the key it was offered: the key whose
    // description names the host is the one a real login would bind.
    let lower = name.to_ascii_lowercase();
    let described: Vec<_> = known
        .keys_named(name)
        .iter()
        .filter_map(|key| KnownHosts::hop_for_key(key, forwarding))
        .map(|hop| {
            let names = known.describe(&hop, exact_names);
            (hop, names)
        })
        .collect();
    let chosen = described
        .iter()
        .position(|(_, names)| names.contains(&lower))
        .or((!described.is_empty()).then_some(0));
    match chosen.map(|i| &described[i]) {
        Some((hop, names)) => {
            let names = names.clone();
            HopView {
                fingerprint: hop.fingerprint(),
                hashed: known.named_through_hashed(hop, &names),
                names,
                forwarding,
                reported_by: None,
            }
        }
        None => HopView {
            fingerprint: format!("SHA256:({name})"),
            names: vec![name.to_ascii_lowercase()],
            forwarding,
            reported_by: None,
            hashed: false,
        },
    }
}

fn check(file: Option<std::path::PathBuf>) -> ExitCode {
    let Some(path) = file.or_else(|| resolve_path(None)) else {
        println!("no policy file: the built-in policy applies (policy/default.toml)");
        return ExitCode::SUCCESS;
    };
    match parse_file(&path) {
        Ok(policy) => {
            let known = known_hosts_for(&policy);
            for warning in unknown_name_warnings(&path, &known) {
                println!("{warning}");
            }
            for warning in crate::policy::file::hashed_glob_warnings(&path, &known) {
                println!("{warning}");
            }
            for warning in rule_warnings(&path) {
                println!("{warning}");
            }
            for warning in crate::policy::lint::reported_hop_warnings(&policy) {
                println!("{}: warning: {}", warning.origin, warning.message);
            }
            println!("{}: ok ({} rules)", path.display(), policy.rules.len());
            if let Some(line) = brake_line(&policy) {
                println!("{}: {line}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(errors) => {
            for e in errors {
                println!("{e}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Builds the request `explain` describes.
fn context(
    args: &ExplainArgs,
    known: &KnownHosts,
    exact_names: &[String],
) -> Result<RequestContext, String> {
    let purpose: Purpose = args.purpose.parse()?;
    let names: Vec<&str> = args
        .chain
        .split('>')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    let last = names.len().saturating_sub(1);
    let chain: Vec<HopView> = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let is_fp = name.starts_with("SHA256:");
            let forwarding = i < last || args.unverified;
            if !is_fp {
                return explained_hop(name, forwarding, known, exact_names);
            }
            HopView {
                fingerprint: if is_fp {
                    name.to_string()
                } else {
                    format!("SHA256:({name})")
                },
                names: if is_fp {
                    vec![]
                } else {
                    vec![name.to_ascii_lowercase()]
                },
                forwarding,
                reported_by: None,
                hashed: false,
            }
        })
        .collect();
    let mut chain = chain;
    HopView::mark_reported(&mut chain);
    // A login through the named chain is taken as one that belongs to its
    // last bind; `--unverified` makes the last hop a forwarding one, so a
    // login there has no verified destination.
    let destination = match (purpose, chain.is_empty(), args.unverified) {
        (_, true, _) => Destination::Unbound,
        (Purpose::Login, false, false) => Destination::Verified,
        (Purpose::Login, false, true) => {
            Destination::Unverified(crate::trust::binding::LoginMismatch::LastIsForwarding)
        }
        _ => Destination::NotLogin,
    };
    let jump = jump_hops(args, chain.len(), known, exact_names)?;
    let peer = std::sync::Arc::new(Peer {
        uid: crate::sys::effective_uid(),
        pid: None,
        exe: args.caller.clone(),
        parents: Vec::new(),
        process: explained_process(args),
    });
    let mut ctx = RequestContext::of_parts(
        (&args.key, &args.comment),
        chain,
        destination,
        args.user.as_deref(),
        purpose,
        &peer,
    );
    ctx.jump = jump;
    Ok(ctx)
}

/// `--jump`: the jump hosts of a direct login, each taken as verified
/// under the name given (or as the fingerprint given).
fn jump_hops(
    args: &ExplainArgs,
    chain_len: usize,
    known: &KnownHosts,
    exact_names: &[String],
) -> Result<Vec<HopView>, String> {
    let names: Vec<&str> = args
        .jump
        .split([',', '>'])
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if names.is_empty() {
        return Ok(Vec::new());
    }
    if chain_len != 1 || args.unverified {
        return Err(
            "--jump describes a direct login through jump hosts (ssh -J): give --chain \
             one host, the destination; a request through forwarding hops has no jump hosts"
                .into(),
        );
    }
    Ok(names
        .iter()
        .map(|name| {
            let is_fp = name.starts_with("SHA256:");
            if !is_fp {
                return explained_hop(name, false, known, exact_names);
            }
            HopView {
                fingerprint: name.to_string(),
                names: vec![],
                forwarding: false,
                reported_by: None,
                hashed: false,
            }
        })
        .collect())
}

/// The requesting process as `--caller`, `--ancestor` and `--cwd` give
/// it; what they leave out is unknown, as for a process that is gone.
fn explained_process(args: &ExplainArgs) -> crate::trust::peer::Facts {
    let mut facts =
        crate::trust::peer::Facts::given(args.caller.clone(), args.cwd.clone(), &args.ancestor);
    facts.ancestry_complete = !args.ancestor.is_empty();
    facts
}

fn explain(args: &ExplainArgs) -> ExitCode {
    let path = resolve_path(args.policy.clone());
    let policy: Policy = match load(path.as_deref()) {
        Ok(p) => p,
        Err(errors) => {
            for e in errors {
                println!("{e}");
            }
            return ExitCode::FAILURE;
        }
    };
    let known = known_hosts_for(&policy);
    let ctx = match context(args, &known, policy.exact_names()) {
        Ok(ctx) => ctx,
        Err(e) => {
            eprintln!("hopward: {e}");
            return ExitCode::FAILURE;
        }
    };
    let decision = policy.decide(&ctx);
    // A name no known_hosts entry holds is taken as given; a real request
    // names a host only through known_hosts.
    for hop in ctx.jump.iter().chain(&ctx.chain) {
        if hop.hashed && hop.names.is_empty() {
            println!(
                "note:     {} is on a hashed known_hosts line and ssh has not reported its \
                 name yet: only rules naming its exact name or fingerprint match it (log in \
                 once with the lines of `hopward ssh-config` in your ssh config)",
                hop.fingerprint
            );
        }
        for name in &hop.names {
            if !hop.fingerprint.starts_with("SHA256:(") {
                continue;
            }
            if !known.mentions(name) {
                println!(
                    "note:     no known_hosts file names {name:?}; a real request through it \
                     would show `unknown host SHA256:...` and no rule naming {name:?} would match it"
                );
            }
        }
    }
    let source = path.map_or_else(
        || "built-in policy".to_string(),
        |p| p.display().to_string(),
    );
    let names_process = policy.rules.iter().any(|r| !r.process.is_empty());
    if names_process && args.caller.is_none() && args.ancestor.is_empty() && args.cwd.is_none() {
        println!(
            "note:     rules name the requesting process, and this request names none: they are \
             decided as for a process hopward cannot read (give --caller, --ancestor, --cwd)"
        );
    }
    println!("policy:   {source}");
    println!("request:  {ctx}");
    println!("decision: {}", decision.action.as_str());
    match policy.rules.iter().find(|r| r.name == decision.rule) {
        Some(rule) => println!("rule:     {} ({})", rule.name, rule.origin),
        None => println!(
            "rule:     {} (no rule matched; [defaults] decides by class)",
            decision.rule
        ),
    }
    let why = match decision.action {
        Action::Allow => "signed without asking".to_string(),
        Action::Notify => "signed without asking, with a notification".to_string(),
        Action::Deny => "refused".to_string(),
        Action::Confirm => match decision.remember {
            Some(d) => format!("asks first; a yes is remembered for {}s", d.as_secs()),
            None => "asks first, every time".to_string(),
        },
    };
    println!("reason:   {why}");
    println!("listed:   {}", listing(&policy, &ctx));
    if decision.action != Action::Deny && ctx.chain.first().is_some_and(|h| h.forwarding) {
        if let Some(line) = brake_line(&policy) {
            println!("note:     {line}; this request would then be asked, remembered or not");
        }
    }
    ExitCode::SUCCESS
}

/// Whether the daemon lists the key to a connection bound through this
/// chain (its answer to the request that comes before any signature):
/// the same question the daemon asks, with the user not known yet.
fn listing(policy: &Policy, ctx: &RequestContext) -> String {
    let class = match ctx.chain.as_slice() {
        [] => return "yes (a connection without session-bind lists every key)".into(),
        [hop] if !hop.forwarding => RequestClass::Direct,
        _ => RequestClass::Forwarded,
    };
    match policy.could_allow(&ctx.key_fingerprint, &ctx.key_comment, &ctx.chain, class) {
        Ok(()) => "yes (some user could be allowed through this chain)".into(),
        Err(rule) => format!("no ({rule} refuses it through this chain, whoever logs in)"),
    }
}

/// What `[forwarded] brake` does, in one line; `None` when it is off.
fn brake_line(policy: &crate::policy::Policy) -> Option<String> {
    let brake = policy.brake?;
    Some(format!(
        "brake: past {} distinct destinations within {} through one first forwarding hop, \
         every request through it is asked",
        brake.hosts,
        crate::duration::format(brake.per)
    ))
}
