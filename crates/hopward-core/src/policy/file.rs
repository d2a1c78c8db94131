//! Policy files: TOML into a validated, compiled [`Policy`], with every
//! problem reported as `FILE:LINE:COL: message`, and `include = [...]`.
//!
//! Includes: paths are relative to the including file (`~/` allowed); the
//! included files' rules are tried first, in the order listed; a setting in
//! the including file wins over the same setting in an included one. A
//! missing include is an error, and so is a cycle.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::matcher::{KeyPattern, NamePattern, ViaElement, compile_glob};
use super::{
    Action, AuditSettings, ConfirmMethod, ConfirmSettings, DEFAULT_UPSTREAM_TIMEOUT, Defaults,
    ForwardedOps, LockSettings, Policy, Rule, UpstreamSettings,
};
use crate::trust::binding::Purpose;

/// The built-in policy text (`policy/default.toml`).
pub const DEFAULT_POLICY: &str = include_str!("../../../../policy/default.toml");

const MAX_INCLUDE_DEPTH: usize = 8;
const DEFAULT_AUDIT_BYTES: u64 = 10 * 1024 * 1024;

/// One problem in a policy file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub message: String,
    pub warning: bool,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}{}",
            self.file,
            self.line,
            self.col,
            if self.warning { "warning: " } else { "" },
            self.message
        )
    }
}

type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    include: Option<Vec<S<String>>>,
    defaults: Option<RawDefaults>,
    confirm: Option<RawConfirm>,
    forwarded: Option<RawForwarded>,
    audit: Option<RawAudit>,
    known_hosts: Option<RawKnownHosts>,
    lock: Option<RawLock>,
    upstream: Option<RawUpstream>,
    #[serde(default)]
    rule: Vec<S<RawRule>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLock {
    idle: Option<S<String>>,
    on_screen_lock: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefaults {
    local: Option<S<String>>,
    forwarded: Option<S<String>>,
    forwarded_unknown: Option<S<String>>,
    forwarded_unverified: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfirm {
    method: Option<S<String>>,
    command: Option<S<Vec<String>>>,
    timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForwarded {
    add: Option<S<String>>,
    remove: Option<S<String>>,
    remove_all: Option<S<String>>,
    lock: Option<S<String>>,
    unlock: Option<S<String>>,
    brake: Option<S<RawBrake>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBrake {
    hosts: S<i64>,
    per: S<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    path: Option<S<String>>,
    max_bytes: Option<S<u64>>,
    journald: Option<S<bool>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    socket: Option<S<String>>,
    timeout: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKnownHosts {
    #[serde(default)]
    files: Vec<S<String>>,
    /// Ports ssh may record a rule's host name under (`[name]:port`), for
    /// hashed entries, which cannot be read back.
    #[serde(default)]
    ports: Vec<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    name: Option<S<String>>,
    keys: Option<S<Vec<S<String>>>>,
    host: Option<S<Vec<S<String>>>>,
    via: Option<S<Vec<S<String>>>>,
    jump: Option<S<Vec<S<String>>>>,
    user: Option<S<Vec<S<String>>>>,
    purpose: Option<S<String>>,
    action: S<String>,
    remember: Option<S<String>>,
    caller: Option<S<Vec<S<String>>>>,
    ancestor: Option<S<Vec<S<String>>>>,
    cwd: Option<S<Vec<S<String>>>>,
}

/// Settings as one file states them; `None` = not set there.
#[derive(Debug, Default)]
struct Partial {
    rules: Vec<Rule>,
    local: Option<Action>,
    forwarded: Option<Action>,
    forwarded_unknown: Option<Action>,
    forwarded_unverified: Option<Action>,
    method: Option<ConfirmMethod>,
    command: Option<Vec<String>>,
    timeout: Option<Duration>,
    fwd_add: Option<Action>,
    fwd_remove: Option<Action>,
    fwd_remove_all: Option<Action>,
    fwd_lock: Option<Action>,
    fwd_unlock: Option<Action>,
    audit_path: Option<PathBuf>,
    audit_bytes: Option<u64>,
    audit_journald: Option<bool>,
    upstream_socket: Option<PathBuf>,
    upstream_timeout: Option<Duration>,
    known_hosts: Vec<PathBuf>,
    known_hosts_ports: Vec<u16>,
    lock_idle: Option<Duration>,
    lock_on_screen: Option<bool>,
    brake: Option<super::brake::BrakeSettings>,
}

impl Partial {
    /// Fills what `self` leaves unset from `other` (an included file);
    /// `other`'s rules come first.
    fn absorb(&mut self, other: Partial) {
        let mut rules = other.rules;
        rules.append(&mut self.rules);
        self.rules = rules;
        macro_rules! fill {
            ($($f:ident),*) => { $( if self.$f.is_none() { self.$f = other.$f; } )* };
        }
        fill!(
            local,
            forwarded,
            forwarded_unknown,
            forwarded_unverified,
            method,
            command,
            timeout,
            fwd_add,
            fwd_remove,
            fwd_remove_all,
            fwd_lock,
            fwd_unlock,
            audit_path,
            audit_bytes,
            audit_journald,
            lock_idle,
            lock_on_screen,
            upstream_socket,
            upstream_timeout,
            brake
        );
        let mut kh = other.known_hosts;
        kh.append(&mut self.known_hosts);
        self.known_hosts = kh;
        for port in other.known_hosts_ports {
            if !self.known_hosts_ports.contains(&port) {
                self.known_hosts_ports.push(port);
            }
        }
    }
}

/// Byte offset to 1-based line and column.
fn position(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

struct Ctx<'a> {
    text: &'a str,
    file: &'a str,
    errors: Vec<PolicyError>,
}

impl Ctx<'_> {
    fn err(&mut self, span: Range<usize>, message: impl Into<String>) {
        let (line, col) = position(self.text, span.start);
        self.errors.push(PolicyError {
            file: self.file.to_string(),
            line,
            col,
            message: message.into(),
            warning: false,
        });
    }

    fn action(&mut self, v: &Option<S<String>>) -> Option<Action> {
        let v = v.as_ref()?;
        let a = Action::parse(v.get_ref());
        if a.is_none() {
            self.err(
                v.span(),
                format!(
                    "unknown action {:?} (use allow, notify, confirm or deny)",
                    v.get_ref()
                ),
            );
        }
        a
    }

    fn duration(&mut self, v: &S<String>) -> Option<Duration> {
        match crate::duration::parse(v.get_ref()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.err(v.span(), e.to_string());
                None
            }
        }
    }

    fn patterns<T>(
        &mut self,
        list: &Option<S<Vec<S<String>>>>,
        field: &str,
        allow_empty: bool,
        compile: impl Fn(&str) -> Result<T, String>,
    ) -> Option<Vec<T>> {
        let list = list.as_ref()?;
        if list.get_ref().is_empty() && !allow_empty {
            self.err(
                list.span(),
                format!("{field} = [] can never match; remove the field to match anything"),
            );
        }
        let mut out = Vec::new();
        for item in list.get_ref() {
            match compile(item.get_ref()) {
                Ok(p) => out.push(p),
                Err(e) => self.err(item.span(), format!("{field}: {e}")),
            }
        }
        Some(out)
    }
}

/// Whether a `via` or `jump` list needs at least one hop (it has an
/// element other than `**`).
fn needs_a_hop(list: &Option<S<Vec<S<String>>>>) -> bool {
    list.as_ref()
        .is_some_and(|l| l.get_ref().iter().any(|e| e.get_ref() != "**"))
}

/// A `jump` that needs a jump host cannot match what never has one: a
/// request through a forwarding hop (jump hosts belong to logins made from
/// this machine) or a signature that is not a login.
fn jump_conflicts(ctx: &mut Ctx<'_>, r: &RawRule, purpose: Option<Purpose>) {
    let Some(jump) = r.jump.as_ref().filter(|_| needs_a_hop(&r.jump)) else {
        return;
    };
    if needs_a_hop(&r.via) {
        ctx.err(
            jump.span(),
            "this rule can never match: jump hosts belong to logins made from this machine \
             (ssh -J), and a request through forwarding hops (via) has none; \
             use jump = [] or leave one of them out",
        );
    }
    if let Some(pv @ (Purpose::Git | Purpose::File | Purpose::Other)) = purpose {
        ctx.err(
            jump.span(),
            format!(
                "this rule can never match: a {} signature has no jump host",
                pv.as_str()
            ),
        );
    }
}

/// A `keys`, `host` or `via` entry that is meant as a fingerprint must be
/// one as `ssh-keygen -l` prints it (`SHA256:` and 43 base64 characters):
/// anything else is compared as text and can never match, so a deny rule
/// with a mistyped fingerprint would deny nothing.
fn fingerprint_form(text: &str) -> Result<(), String> {
    use base64::Engine as _;
    let Some((scheme, rest)) = text.split_once(':') else {
        return Ok(());
    };
    if scheme.eq_ignore_ascii_case("md5") {
        return Err(format!(
            "{text:?}: MD5 fingerprints are not matched; use the SHA256 one \
             (ssh-keygen -l -E sha256 -f KEY)"
        ));
    }
    if !scheme.eq_ignore_ascii_case("sha256") {
        return Ok(());
    }
    let decoded = base64::engine::general_purpose::STANDARD_NO_PAD.decode(rest);
    if scheme != "SHA256" || rest.len() != 43 || !decoded.is_ok_and(|d| d.len() == 32) {
        return Err(format!(
            "{text:?} is not a SHA256 fingerprint (SHA256: and 43 base64 characters, \
             as ssh-keygen -l -f KEY prints it)"
        ));
    }
    Ok(())
}

/// The TOML reader's message, with what to write instead where the
/// mistake is a common one (a single value where a list is wanted, a list
/// where one value is wanted).
fn with_fix(text: &str, span: Range<usize>, message: &str) -> String {
    let line_start = text[..span.start.min(text.len())]
        .rfind('\n')
        .map_or(0, |i| i + 1);
    let line = text[line_start..].lines().next().unwrap_or("");
    let key = line
        .split_once('=')
        .map(|(k, _)| k.trim())
        .filter(|k| !k.is_empty() && !k.contains(char::is_whitespace));
    let value = text
        .get(span.clone())
        .map(str::trim)
        .filter(|v| !v.is_empty() && !v.contains('\n'));
    match (key, value) {
        (Some(key), Some(value)) if message.contains("expected a sequence") => {
            format!("{key} takes a list: use {key} = [{value}]")
        }
        (Some(key), Some(value)) if message.contains("expected a string") => {
            let first = value
                .trim_start_matches('[')
                .trim_end_matches(']')
                .split(',')
                .next()
                .unwrap_or("")
                .trim();
            if first.is_empty() {
                format!("{key} takes one value in quotes, not {value}")
            } else {
                format!("{key} takes one value: use {key} = {first}")
            }
        }
        _ => message.to_string(),
    }
}

fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// A rule's `caller`, `ancestor` and `cwd`, with `~` expanded.
fn process_patterns(ctx: &mut Ctx<'_>, r: &RawRule) -> crate::policy::process::ProcessPatterns {
    use crate::policy::process::{DirPattern, ExePattern, expand_home as home};
    crate::policy::process::ProcessPatterns {
        caller: ctx.patterns(&r.caller, "caller", false, |t| ExePattern::compile(&home(t))),
        ancestor: ctx.patterns(&r.ancestor, "ancestor", false, |t| {
            ExePattern::compile(&home(t))
        }),
        cwd: ctx.patterns(&r.cwd, "cwd", false, |t| DirPattern::compile(&home(t))),
    }
}

fn compile_file(
    text: &str,
    file: &str,
    base: Option<&Path>,
    depth: usize,
    seen: &mut Vec<PathBuf>,
    digest: &mut blake3::Hasher,
) -> Result<Partial, Vec<PolicyError>> {
    // Every file's name and text, in the order read: two loads with the
    // same digest compiled the same policy.
    digest.update(&(file.len() as u64).to_le_bytes());
    digest.update(file.as_bytes());
    digest.update(&(text.len() as u64).to_le_bytes());
    digest.update(text.as_bytes());
    let mut ctx = Ctx {
        text,
        file,
        errors: Vec::new(),
    };
    let raw: RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = with_fix(text, span.clone(), e.message());
            ctx.err(span, message);
            return Err(ctx.errors);
        }
    };
    let mut p = Partial::default();
    if let Some(d) = &raw.defaults {
        p.local = ctx.action(&d.local);
        p.forwarded = ctx.action(&d.forwarded);
        p.forwarded_unknown = ctx.action(&d.forwarded_unknown);
        p.forwarded_unverified = ctx.action(&d.forwarded_unverified);
    }
    if let Some(c) = &raw.confirm {
        if let Some(m) = &c.method {
            p.method = match m.get_ref().as_str() {
                "auto" => Some(ConfirmMethod::Auto),
                "desktop" => Some(ConfirmMethod::Desktop),
                "askpass" => Some(ConfirmMethod::Askpass),
                "command" => Some(ConfirmMethod::Command),
                "macos" => Some(ConfirmMethod::Macos),
                other => {
                    ctx.err(m.span(), format!("unknown confirm method {other:?} (use auto, desktop, askpass, command or macos)"));
                    None
                }
            };
        }
        if let Some(cmd) = &c.command {
            if cmd.get_ref().is_empty() || !cmd.get_ref()[0].starts_with('/') {
                ctx.err(
                    cmd.span(),
                    "confirm.command must start with an absolute program path",
                );
            }
            p.command = Some(cmd.get_ref().clone());
        }
        if let Some(t) = &c.timeout {
            p.timeout = ctx.duration(t);
            if p.timeout == Some(Duration::ZERO) {
                ctx.err(t.span(), "confirm.timeout must be more than 0");
            }
        }
        if p.method == Some(ConfirmMethod::Command) && p.command.is_none() {
            let span = c.method.as_ref().map_or(0..0, |m| m.span());
            ctx.err(span, "method = \"command\" needs confirm.command");
        }
    }
    if let Some(f) = &raw.forwarded {
        p.fwd_add = ctx.action(&f.add);
        p.fwd_remove = ctx.action(&f.remove);
        p.fwd_remove_all = ctx.action(&f.remove_all);
        p.fwd_lock = ctx.action(&f.lock);
        p.fwd_unlock = ctx.action(&f.unlock);
        if let Some(b) = &f.brake {
            p.brake = brake_settings(&mut ctx, b.get_ref());
        }
    }
    if let Some(a) = &raw.audit {
        p.audit_path = a.path.as_ref().map(|x| expand_home(x.get_ref()));
        p.audit_bytes = a.max_bytes.as_ref().map(|b| *b.get_ref());
        p.audit_journald = a.journald.as_ref().map(|j| *j.get_ref());
    }
    if let Some(l) = &raw.lock {
        if let Some(idle) = &l.idle {
            p.lock_idle = ctx.duration(idle);
            if p.lock_idle == Some(Duration::ZERO) {
                ctx.err(
                    idle.span(),
                    "lock.idle must be more than 0 (remove it to never lock when idle)",
                );
            }
        }
        p.lock_on_screen = l.on_screen_lock.as_ref().map(|b| *b.get_ref());
    }
    if let Some(u) = &raw.upstream {
        if let Some(socket) = &u.socket {
            let path = expand_home(socket.get_ref());
            if !path.is_absolute() {
                ctx.err(
                    socket.span(),
                    "upstream.socket must be an absolute path or start with ~/",
                );
            }
            p.upstream_socket = Some(path);
        }
        if let Some(t) = &u.timeout {
            p.upstream_timeout = ctx.duration(t);
            if p.upstream_timeout == Some(Duration::ZERO) {
                ctx.err(t.span(), "upstream.timeout must be more than 0");
            }
        }
    }
    if let Some(k) = &raw.known_hosts {
        p.known_hosts = k.files.iter().map(|f| expand_home(f.get_ref())).collect();
        for port in &k.ports {
            match u16::try_from(*port.get_ref()) {
                Ok(n) if n > 0 => {
                    if !p.known_hosts_ports.contains(&n) {
                        p.known_hosts_ports.push(n);
                    }
                }
                _ => ctx.err(port.span(), "a port is a number from 1 to 65535"),
            }
        }
    }
    for (i, spanned) in raw.rule.iter().enumerate() {
        let span = spanned.span();
        let r = spanned.get_ref();
        let (line, _) = position(text, span.start);
        let name = r.name.as_ref().map_or_else(
            || format!("rule {} ({file}:{line})", i + 1),
            |n| n.get_ref().clone(),
        );
        let action = ctx.action(&Some(r.action.clone()));
        let purpose = r
            .purpose
            .as_ref()
            .and_then(|pv| match pv.get_ref().as_str() {
                "login" => Some(Purpose::Login),
                "git" => Some(Purpose::Git),
                "file" => Some(Purpose::File),
                "other" => Some(Purpose::Other),
                other => {
                    ctx.err(
                        pv.span(),
                        format!("unknown purpose {other:?} (use login, git, file or other)"),
                    );
                    None
                }
            });
        let keys = ctx.patterns(&r.keys, "keys", false, |t| {
            fingerprint_form(t).and_then(|()| KeyPattern::compile(t))
        });
        let host = ctx.patterns(&r.host, "host", false, |t| {
            fingerprint_form(t).and_then(|()| NamePattern::compile(t))
        });
        let via = ctx.patterns(&r.via, "via", true, |t| {
            fingerprint_form(t).and_then(|()| ViaElement::compile(t))
        });
        let user = ctx.patterns(&r.user, "user", false, |t| compile_glob(t, false));
        let jump = ctx.patterns(&r.jump, "jump", true, |t| {
            fingerprint_form(t).and_then(|()| ViaElement::compile(t))
        });
        jump_conflicts(&mut ctx, r, purpose);
        let remember = r.remember.as_ref().and_then(|d| ctx.duration(d));
        let process = process_patterns(&mut ctx, r);
        if let Some(pv @ (Purpose::Git | Purpose::File | Purpose::Other)) = purpose {
            if let Some(h) = &r.host {
                ctx.err(
                    h.span(),
                    format!(
                        "this rule can never match: a {} signature has no destination host",
                        pv.as_str()
                    ),
                );
            }
            if let Some(u) = &r.user {
                ctx.err(
                    u.span(),
                    format!(
                        "this rule can never match: a {} signature has no remote user",
                        pv.as_str()
                    ),
                );
            }
        }
        if let Some(action) = action {
            p.rules.push(Rule {
                name,
                origin: format!("{file}:{line}"),
                keys,
                host,
                via,
                user,
                purpose,
                action,
                remember,
                jump,
                process,
            });
        }
    }
    // Includes last, so this file's own errors are reported even if one fails.
    for inc in raw.include.iter().flatten() {
        let Some(base) = base else {
            ctx.err(inc.span(), "include is only possible in a policy file");
            continue;
        };
        if depth >= MAX_INCLUDE_DEPTH {
            ctx.err(inc.span(), "includes nested too deeply");
            continue;
        }
        let target = match expand_home(inc.get_ref()) {
            p if p.is_absolute() => p,
            p => base.join(p),
        };
        let canonical = std::fs::canonicalize(&target).unwrap_or_else(|_| target.clone());
        if seen.contains(&canonical) {
            ctx.err(
                inc.span(),
                format!("include cycle through {}", target.display()),
            );
            continue;
        }
        // An include decides as much as the file naming it: the same
        // owner and mode rules apply.
        if let Err(why) = super::owner::check(&target) {
            ctx.err(inc.span(), why.to_string());
            continue;
        }
        match std::fs::read_to_string(&target) {
            Ok(inc_text) => {
                seen.push(canonical);
                let inc_file = target.display().to_string();
                match compile_file(
                    &inc_text,
                    &inc_file,
                    target.parent(),
                    depth + 1,
                    seen,
                    digest,
                ) {
                    Ok(partial) => p.absorb(partial),
                    Err(mut errs) => ctx.errors.append(&mut errs),
                }
                seen.pop();
            }
            Err(e) => ctx.err(
                inc.span(),
                format!("cannot read include {}: {e}", target.display()),
            ),
        }
    }
    if ctx.errors.is_empty() {
        Ok(p)
    } else {
        Err(ctx.errors)
    }
}

fn finish(p: Partial, source: Option<PathBuf>, digest: blake3::Hasher) -> Policy {
    let action = |v: Option<Action>, d: Action| v.unwrap_or(d);
    Policy {
        source,
        digest: *digest.finalize().as_bytes(),
        exact_names: Policy::collect_exact_names(&p.rules),
        shapes: p
            .rules
            .iter()
            .map(super::prefilter::RuleShape::of)
            .collect(),
        rules: p.rules,
        defaults: Defaults {
            local: action(p.local, Action::Allow),
            forwarded: action(p.forwarded, Action::Confirm),
            forwarded_unknown: p
                .forwarded_unknown
                .unwrap_or_else(|| action(p.forwarded, Action::Confirm)),
            forwarded_unverified: action(p.forwarded_unverified, Action::Deny),
        },
        confirm: ConfirmSettings {
            method: p.method.unwrap_or(ConfirmMethod::Auto),
            command: p.command.unwrap_or_default(),
            timeout: p.timeout.unwrap_or(Duration::from_secs(30)),
        },
        forwarded: ForwardedOps {
            add: action(p.fwd_add, Action::Confirm),
            remove: action(p.fwd_remove, Action::Deny),
            remove_all: action(p.fwd_remove_all, Action::Deny),
            lock: action(p.fwd_lock, Action::Deny),
            unlock: action(p.fwd_unlock, Action::Deny),
        },
        audit: AuditSettings {
            path: p.audit_path,
            max_bytes: p.audit_bytes.unwrap_or(DEFAULT_AUDIT_BYTES),
            journald: p.audit_journald.unwrap_or(false),
        },
        upstream: UpstreamSettings {
            socket: p.upstream_socket,
            timeout: p.upstream_timeout.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT),
        },
        known_hosts: p.known_hosts,
        known_hosts_ports: p.known_hosts_ports,
        lock: LockSettings {
            idle: p.lock_idle,
            on_screen_lock: p.lock_on_screen.unwrap_or(false),
        },
        brake: p.brake,
    }
}

/// `[forwarded] brake = { hosts = N, per = "DURATION" }`, checked: `hosts`
/// from 1 to [`super::brake::MAX_HOSTS`], `per` more than 0 and at most a
/// day.
fn brake_settings(ctx: &mut Ctx<'_>, raw: &RawBrake) -> Option<super::brake::BrakeSettings> {
    use super::brake::{BrakeSettings, MAX_HOSTS, MAX_PER};
    let hosts = *raw.hosts.get_ref();
    let hosts = match u32::try_from(hosts) {
        Ok(n) if (1..=MAX_HOSTS).contains(&n) => Some(n),
        _ => {
            ctx.err(
                raw.hosts.span(),
                format!("forwarded.brake.hosts must be from 1 to {MAX_HOSTS}, not {hosts}"),
            );
            None
        }
    };
    let per = ctx.duration(&raw.per);
    let per = match per {
        Some(d) if d > Duration::ZERO && d <= MAX_PER => Some(d),
        Some(_) => {
            ctx.err(
                raw.per.span(),
                "forwarded.brake.per must be more than 0 and at most 24h",
            );
            None
        }
        None => None,
    };
    Some(BrakeSettings {
        hosts: hosts?,
        per: per?,
    })
}

/// Parses policy text that has no file (no includes).
pub fn parse_str(text: &str, name: &str) -> Result<Policy, Vec<PolicyError>> {
    let mut digest = blake3::Hasher::new();
    compile_file(text, name, None, 0, &mut Vec::new(), &mut digest).map(|p| finish(p, None, digest))
}

/// Reads and compiles a policy file and its includes.
pub fn parse_file(path: &Path) -> Result<Policy, Vec<PolicyError>> {
    let name = path.display().to_string();
    // Checked before reading: a file another user could have written is
    // refused whatever it says.
    if let Err(why) = super::owner::check(path) {
        return Err(vec![PolicyError {
            file: name,
            line: 1,
            col: 1,
            message: why.to_string(),
            warning: false,
        }]);
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![PolicyError {
            file: name.clone(),
            line: 1,
            col: 1,
            message: format!("cannot read policy: {e}"),
            warning: false,
        }]
    })?;
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut digest = blake3::Hasher::new();
    compile_file(
        &text,
        &name,
        Some(&base),
        0,
        &mut vec![canonical],
        &mut digest,
    )
    .map(|p| finish(p, Some(path.to_path_buf()), digest))
}

/// The policy file and the includes it names (as far as they can be read)
/// that another user could have written, for `doctor`.
pub fn unsafe_files(path: &Path) -> Vec<super::owner::Unsafe> {
    let mut out = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut todo = vec![(path.to_path_buf(), 0)];
    while let Some((file, depth)) = todo.pop() {
        let canonical = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        if depth > MAX_INCLUDE_DEPTH || seen.contains(&canonical) {
            continue;
        }
        seen.push(canonical);
        if let Err(why) = super::owner::check(&file) {
            out.push(why);
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(raw) = toml::from_str::<RawFile>(&text) else {
            continue;
        };
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        for inc in raw.include.iter().flatten() {
            let target = match expand_home(inc.get_ref()) {
                p if p.is_absolute() => p,
                p => base.join(p),
            };
            todo.push((target, depth + 1));
        }
    }
    out
}

/// Rules that are written but cannot do what they say, as warnings with
/// their positions (for `policy check`): a rule with no name or a name used
/// twice (the log names the rule that decided), `remember` on an action
/// that never asks, and rules after a catch-all, which never match.
pub fn rule_warnings(path: &Path) -> Vec<PolicyError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(raw) = toml::from_str::<RawFile>(&text) else {
        return Vec::new();
    };
    let file = path.display().to_string();
    let mut out = Vec::new();
    let mut warn = |span: Range<usize>, message: String| {
        let (line, col) = position(&text, span.start);
        out.push(PolicyError {
            file: file.clone(),
            line,
            col,
            message,
            warning: true,
        });
    };
    let mut names: Vec<(String, usize)> = Vec::new();
    let mut catch_all: Option<(String, usize)> = None;
    for (i, spanned) in raw.rule.iter().enumerate() {
        let r = spanned.get_ref();
        let (line, _) = position(&text, spanned.span().start);
        let label = r.name.as_ref().map_or_else(
            || format!("rule {} ({file}:{line})", i + 1),
            |n| n.get_ref().clone(),
        );
        match &r.name {
            None => warn(
                spanned.span(),
                format!(
                    "this rule has no name; the log will call it {label:?}: add name = \"...\""
                ),
            ),
            Some(n) => match names.iter().find(|(other, _)| other == n.get_ref()) {
                Some((_, first)) => warn(
                    n.span(),
                    format!(
                        "the name {:?} is also used by the rule at line {first}; the log cannot tell them apart",
                        n.get_ref()
                    ),
                ),
                None => names.push((n.get_ref().clone(), line)),
            },
        }
        if let Some(remember) = &r.remember {
            let action = r.action.get_ref().as_str();
            if action != "confirm" {
                warn(
                    remember.span(),
                    format!(
                        "remember only applies to action = \"confirm\"; with {action:?} it does nothing"
                    ),
                );
            }
        }
        if let Some((first, first_line)) = &catch_all {
            warn(
                spanned.span(),
                format!(
                    "{label:?} can never match: the rule {first:?} at line {first_line} matches every request first"
                ),
            );
        } else {
            let any_key = r
                .keys
                .as_ref()
                .is_none_or(|k| k.get_ref().iter().any(|k| k.get_ref() == "*"));
            if any_key
                && r.host.is_none()
                && r.via.is_none()
                && r.jump.is_none()
                && r.user.is_none()
                && r.purpose.is_none()
                && r.caller.is_none()
                && r.ancestor.is_none()
                && r.cwd.is_none()
            {
                catch_all = Some((label.clone(), line));
            }
        }
    }
    out
}

/// Host names in `host`/`via`/`jump` that no known_hosts entry mentions, as
/// warnings with their positions (for `policy check`).
pub fn unknown_name_warnings(
    path: &Path,
    known: &crate::trust::known_hosts::KnownHosts,
) -> Vec<PolicyError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(raw) = toml::from_str::<RawFile>(&text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rule in &raw.rule {
        let r = rule.get_ref();
        for list in [&r.host, &r.via, &r.jump].into_iter().flatten() {
            for item in list.get_ref() {
                let name = item.get_ref();
                let literal = !name.contains(['*', '?', '[', '{']) && !name.starts_with("SHA256:");
                if literal && !known.mentions(name) {
                    let (line, col) = position(&text, item.span().start);
                    // A hashed entry may well be this host on another port
                    // (`[name]:2222`), which no one can read back: say how
                    // to let the rule see it.
                    let hint = if known.has_hashed() {
                        format!(
                            "; known_hosts has hashed entries, and ssh hashes a host on \
                             another port as [{name}]:PORT: if that is how you reach it, \
                             add the port to [known_hosts] ports (or a Port line for {name} \
                             to your ssh_config)"
                        )
                    } else {
                        String::new()
                    };
                    out.push(PolicyError {
                        file: path.display().to_string(),
                        line,
                        col,
                        message: format!(
                            "no known_hosts entry names {name:?}, so no host can match it{hint}"
                        ),
                        warning: true,
                    });
                }
            }
        }
    }
    out
}

/// Under hashed known_hosts (`HashKnownHosts yes`): the host globs in
/// `host`/`via` that match no name hopward can see yet (a plain entry or a
/// name ssh reported), as warnings with their positions (for `policy
/// check` and `doctor`). A glob never matches a hashed entry by itself.
pub fn hashed_glob_warnings(
    path: &Path,
    known: &crate::trust::known_hosts::KnownHosts,
) -> Vec<PolicyError> {
    if !known.has_hashed() {
        return Vec::new();
    }
    let Ok(text) = std::fs::read_to_string(path) else {
        return Vec::new();
    };
    let Ok(raw) = toml::from_str::<RawFile>(&text) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for rule in &raw.rule {
        let r = rule.get_ref();
        for list in [&r.host, &r.via].into_iter().flatten() {
            for item in list.get_ref() {
                let glob = item.get_ref();
                if !glob.contains(['*', '?']) || glob == "*" || known.some_name_matches(glob) {
                    continue;
                }
                let (line, col) = position(&text, item.span().start);
                out.push(PolicyError {
                    file: path.display().to_string(),
                    line,
                    col,
                    message: format!(
                        "{glob:?} cannot match yet: known_hosts is hashed (HashKnownHosts yes) \
                         and no host name hopward knows matches it; hopward learns a hashed \
                         host's name when ssh reports it (put the lines of `hopward ssh-config` \
                         in ~/.ssh/config and log in once)"
                    ),
                    warning: true,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse_str(text, "p.toml")
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn the_brake_is_read_checked_and_off_unless_set() {
        let policy = parse_str("[forwarded]\nbrake = { hosts = 3, per = \"2m\" }\n", "p").unwrap();
        assert_eq!(
            policy.brake,
            Some(super::super::brake::BrakeSettings {
                hosts: 3,
                per: Duration::from_secs(120)
            })
        );
        // An existing file without it keeps meaning what it meant.
        assert_eq!(parse_str("[forwarded]\nadd = \"deny\"\n", "p").unwrap().brake, None);
        assert_eq!(
            errors("[forwarded]\nbrake = { hosts = 0, per = \"1m\" }\n"),
            ["p.toml:2:19: forwarded.brake.hosts must be from 1 to 1000, not 0"]
        );
        assert_eq!(
            errors("[forwarded]\nbrake = { hosts = 5, per = \"2d\" }\n"),
            ["p.toml:2:28: forwarded.brake.per must be more than 0 and at most 24h"]
        );
        let missing = errors("[forwarded]\nbrake = { hosts = 5 }\n").join("\n");
        assert!(missing.contains("per"), "{missing}");
        let unknown = errors("[forwarded]\nbrake = { hosts = 5, per = \"1m\", window = 3 }\n").join("\n");
        assert!(unknown.contains("window"), "{unknown}");
    }

    #[test]
    fn the_built_in_policy_brakes_at_five_hosts_a_minute() {
        let policy = parse_str(DEFAULT_POLICY, "built-in").unwrap();
        assert_eq!(
            policy.brake,
            Some(super::super::brake::BrakeSettings {
                hosts: 5,
                per: Duration::from_secs(60)
            })
        );
    }

    #[test]
    fn known_hosts_ports_are_ports() {
        let policy = parse_str("[known_hosts]\nports = [2222, 22202, 2222]\n", "p").unwrap();
        assert_eq!(policy.known_hosts_ports, vec![2222, 22202]);
        assert!(policy.known_hosts.is_empty(), "files may be left out");
        assert_eq!(
            errors("[known_hosts]\nports = [22, 0, 70000]\n"),
            vec![
                "p.toml:2:14: a port is a number from 1 to 65535",
                "p.toml:2:17: a port is a number from 1 to 65535"
            ]
        );
    }

    #[test]
    fn jump_is_checked_like_via_and_never_with_forwarding_hops() {
        let p = parse_str(
            "[[rule]]\nname = \"j\"\nhost = [\"prod\"]\n\
             jump = [\"bastion\", \"**\"]\naction = \"allow\"\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(p.rules[0].jump.as_ref().map(Vec::len), Some(2));
        assert!(p.exact_names.contains(&"bastion".to_string()));
        let e = errors("[[rule]]\njump = [\"bad[glob\"]\naction = \"allow\"\n");
        assert!(e[0].starts_with("p.toml:2:9: jump: bad glob"), "{e:?}");
        assert_eq!(
            errors("[[rule]]\njump = \"bastion\"\naction = \"allow\"\n"),
            vec!["p.toml:2:8: jump takes a list: use jump = [\"bastion\"]"]
        );
        let e = errors("[[rule]]\nvia = [\"b\"]\njump = [\"a\"]\naction = \"allow\"\n");
        assert!(
            e[0].starts_with("p.toml:3:8: this rule can never match: jump hosts belong"),
            "{e:?}"
        );
        let e = errors("[[rule]]\npurpose = \"git\"\njump = [\"a\"]\naction = \"allow\"\n");
        assert!(
            e[0].contains("p.toml:3:8: this rule can never match: a git signature has no jump"),
            "{e:?}"
        );
        // Neither needs a hop: fine together.
        for fine in [
            "[[rule]]\nvia = [\"b\"]\njump = []\naction = \"allow\"\n",
            "[[rule]]\nvia = [\"**\"]\njump = [\"a\"]\naction = \"allow\"\n",
        ] {
            assert!(parse_str(fine, "p").is_ok(), "{fine}");
        }
    }

    #[test]
    fn builtin_policy_is_the_shipped_file() {
        let p = Policy::builtin();
        assert_eq!(p.defaults.forwarded, Action::Confirm);
        assert_eq!(p.forwarded.remove_all, Action::Deny);
        assert!(p.rules.is_empty());
    }

    #[test]
    fn errors_carry_positions() {
        assert_eq!(
            errors("[defaults]\nlocal = \"maybe\"\n"),
            vec!["p.toml:2:9: unknown action \"maybe\" (use allow, notify, confirm or deny)"]
        );
        let e = errors("[[rule]]\naction = \"allow\"\ncolour = \"red\"\n");
        assert!(
            e[0].starts_with("p.toml:3:1: unknown field `colour`"),
            "{e:?}"
        );
        let e = errors("[[rule]]\nhost = [\"bad[glob\"]\naction = \"allow\"\n");
        assert!(e[0].starts_with("p.toml:2:9: host: bad glob"), "{e:?}");
        let e = errors("[[rule]]\nremember = \"10 minutes\"\naction = \"allow\"\n");
        assert!(e[0].starts_with("p.toml:2:12: invalid time span"), "{e:?}");
        let e = errors("[[rule]]\npurpose = \"ftp\"\naction = \"allow\"\n");
        assert!(e[0].starts_with("p.toml:2:11: unknown purpose"), "{e:?}");
        let e =
            errors("[[rule]]\npurpose = \"git\"\nhost = [\"github.com\"]\naction = \"allow\"\n");
        assert!(
            e[0].contains("p.toml:3:8: this rule can never match"),
            "{e:?}"
        );
        let e = errors("[[rule]]\nkeys = []\naction = \"allow\"\n");
        assert!(
            e[0].contains("p.toml:2:8: keys = [] can never match"),
            "{e:?}"
        );
        let e = errors("[[rule]]\nname = \"x\"\n");
        assert!(e[0].contains("missing field `action`"), "{e:?}");
        assert_eq!(
            errors("[[rule]]\nhost = \"db1\"\naction = \"allow\"\n"),
            vec!["p.toml:2:8: host takes a list: use host = [\"db1\"]"]
        );
        assert_eq!(
            errors("[[rule]]\naction = [\"allow\"]\n"),
            vec!["p.toml:2:10: action takes one value: use action = \"allow\""]
        );
        let e = errors("[[rule]]\nkeys = [\"SHA256:abc\"]\naction = \"deny\"\n");
        assert!(
            e[0].starts_with("p.toml:2:9: keys: \"SHA256:abc\" is not a SHA256 fingerprint"),
            "{e:?}"
        );
        let e = errors("[[rule]]\nkeys = [\"MD5:12:34\"]\naction = \"deny\"\n");
        assert!(e[0].contains("MD5 fingerprints are not matched"), "{e:?}");
        let e = errors(
            "[[rule]]\nhost = [\"sha256:0b6FxyQm1xdzs8K8YvOQ8k0m1x7Yv4sQjxHf3a4mP2k\"]\naction = \"deny\"\n",
        );
        assert!(e[0].contains("is not a SHA256 fingerprint"), "{e:?}");
        assert!(
            parse_str(
                "[[rule]]\nkeys = [\"SHA256:9gXlkH9B2PQZyv1Ygq/c85tHnX2Xh6+mErPtablUL9Y\", \"work:*\"]\naction = \"deny\"\n",
                "p.toml"
            )
            .is_ok()
        );
        let e = errors("[lock]\nidle = \"0s\"\n");
        assert!(
            e[0].starts_with("p.toml:2:8: lock.idle must be more than 0"),
            "{e:?}"
        );
        let e = errors("[lock]\nscreen = true\n");
        assert!(e[0].contains("unknown field `screen`"), "{e:?}");
        let p = parse_str("[lock]\nidle = \"30m\"\non_screen_lock = true\n", "p.toml").unwrap();
        assert_eq!(p.lock.idle, Some(Duration::from_secs(1800)));
        assert!(p.lock.on_screen_lock);
        let e = errors("this is not toml");
        assert!(e[0].starts_with("p.toml:1:"), "{e:?}");
    }

    /// An include decides as much as the file naming it: one others can
    /// write is refused at the line that names it, and `doctor` finds it.
    #[test]
    fn an_include_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let machine = dir.path().join("machine.toml");
        std::fs::write(&machine, "[defaults]\nforwarded = \"allow\"\n").unwrap();
        std::fs::set_permissions(&machine, std::fs::Permissions::from_mode(0o646)).unwrap();
        let main = dir.path().join("main.toml");
        std::fs::write(&main, "include = [\"machine.toml\"]\n").unwrap();
        let e = parse_file(&main).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        let text = e[0].to_string();
        assert!(text.contains("main.toml:1:12: "), "{text}");
        assert!(
            text.ends_with(&format!("fix: chmod go-w {}", machine.display())),
            "{text}"
        );
        let found = unsafe_files(&main);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, machine);
        std::fs::set_permissions(&machine, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(parse_file(&main).is_ok());
        assert!(unsafe_files(&main).is_empty());
    }

    #[test]
    fn includes_put_their_rules_first_and_settings_last() {
        let dir = std::env::temp_dir().join(format!("hopward-inc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("machine.toml"),
            "[defaults]\nforwarded = \"deny\"\nlocal = \"confirm\"\n[[rule]]\nname = \"machine\"\naction = \"deny\"\nuser = [\"root\"]\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("main.toml"),
            "include = [\"machine.toml\"]\n[defaults]\nlocal = \"allow\"\n[[rule]]\nname = \"shared\"\naction = \"allow\"\n",
        )
        .unwrap();
        let p = parse_file(&dir.join("main.toml")).unwrap();
        assert_eq!(
            p.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["machine", "shared"]
        );
        assert_eq!(p.defaults.local, Action::Allow, "the including file wins");
        assert_eq!(
            p.defaults.forwarded,
            Action::Deny,
            "unset here, taken from the include"
        );

        std::fs::write(dir.join("loop.toml"), "include = [\"loop.toml\"]\n").unwrap();
        let e = parse_file(&dir.join("loop.toml")).unwrap_err();
        assert!(e[0].message.contains("include cycle"), "{e:?}");
        std::fs::write(dir.join("missing.toml"), "include = [\"nope.toml\"]\n").unwrap();
        let e = parse_file(&dir.join("missing.toml")).unwrap_err();
        assert!(
            e[0].to_string()
                .contains("missing.toml:1:12: cannot read include"),
            "{e:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
