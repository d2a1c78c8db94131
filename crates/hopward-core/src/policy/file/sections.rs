//! The settings tables of a policy file (`[defaults]`, `[confirm]`,
//! `[forwarded]`, `[audit]`, `[lock]`, `[upstream]`, `[known_hosts]`),
//! each checked into a [`Partial`]: what one file sets, merged with its
//! includes before the defaults fill the rest.

use std::path::PathBuf;
use std::time::Duration;

use super::problems::Ctx;
use super::raw::{
    RawAudit, RawBrake, RawConfirm, RawDefaults, RawFile, RawForwarded, RawKnownHosts, RawLock,
    RawUpstream,
};
use crate::policy::brake::BrakeSettings;
use crate::policy::{Action, ConfirmMethod, Rule};

/// Settings as one file states them; `None` = not set there.
#[derive(Debug, Default)]
pub(super) struct Partial {
    pub(super) rules: Vec<Rule>,
    pub(super) local: Option<Action>,
    pub(super) forwarded: Option<Action>,
    pub(super) forwarded_unknown: Option<Action>,
    pub(super) forwarded_unverified: Option<Action>,
    pub(super) method: Option<ConfirmMethod>,
    pub(super) command: Option<Vec<String>>,
    pub(super) timeout: Option<Duration>,
    pub(super) fwd_add: Option<Action>,
    pub(super) fwd_remove: Option<Action>,
    pub(super) fwd_remove_all: Option<Action>,
    pub(super) fwd_lock: Option<Action>,
    pub(super) fwd_unlock: Option<Action>,
    pub(super) audit_path: Option<PathBuf>,
    pub(super) audit_bytes: Option<u64>,
    pub(super) audit_journald: Option<bool>,
    pub(super) upstream_socket: Option<PathBuf>,
    pub(super) upstream_timeout: Option<Duration>,
    pub(super) known_hosts: Vec<PathBuf>,
    pub(super) known_hosts_ports: Vec<u16>,
    pub(super) lock_idle: Option<Duration>,
    pub(super) lock_on_screen: Option<bool>,
    pub(super) brake: Option<BrakeSettings>,
}

impl Partial {
    /// Fills what `self` leaves unset from `other` (an included file);
    /// `other`'s rules come first.
    pub(super) fn absorb(&mut self, other: Partial) {
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

/// `~/` at the start of a path is the home directory.
pub(super) fn expand_home(path: &str) -> PathBuf {
    match (path.strip_prefix("~/"), std::env::var_os("HOME")) {
        (Some(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => PathBuf::from(path),
    }
}

/// Every settings table of one file, in the order their problems are
/// reported.
pub(super) fn settings(ctx: &mut Ctx<'_>, raw: &RawFile) -> Partial {
    let mut p = Partial::default();
    if let Some(d) = &raw.defaults {
        defaults(ctx, d, &mut p);
    }
    if let Some(c) = &raw.confirm {
        confirm(ctx, c, &mut p);
    }
    if let Some(f) = &raw.forwarded {
        forwarded(ctx, f, &mut p);
    }
    if let Some(a) = &raw.audit {
        audit(a, &mut p);
    }
    if let Some(l) = &raw.lock {
        lock(ctx, l, &mut p);
    }
    if let Some(u) = &raw.upstream {
        upstream(ctx, u, &mut p);
    }
    if let Some(k) = &raw.known_hosts {
        known_hosts(ctx, k, &mut p);
    }
    p
}

fn defaults(ctx: &mut Ctx<'_>, d: &RawDefaults, p: &mut Partial) {
    p.local = ctx.action(&d.local);
    p.forwarded = ctx.action(&d.forwarded);
    p.forwarded_unknown = ctx.action(&d.forwarded_unknown);
    p.forwarded_unverified = ctx.action(&d.forwarded_unverified);
}

fn confirm(ctx: &mut Ctx<'_>, c: &RawConfirm, p: &mut Partial) {
    if let Some(m) = &c.method {
        p.method = match m.get_ref().parse::<ConfirmMethod>() {
            Ok(method) => Some(method),
            Err(message) => {
                ctx.err(m.span(), message);
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

fn forwarded(ctx: &mut Ctx<'_>, f: &RawForwarded, p: &mut Partial) {
    p.fwd_add = ctx.action(&f.add);
    p.fwd_remove = ctx.action(&f.remove);
    p.fwd_remove_all = ctx.action(&f.remove_all);
    p.fwd_lock = ctx.action(&f.lock);
    p.fwd_unlock = ctx.action(&f.unlock);
    if let Some(b) = &f.brake {
        p.brake = brake_settings(ctx, b.get_ref());
    }
}

/// `[forwarded] brake = { hosts = N, per = "DURATION" }`, checked: `hosts`
/// from 1 to [`crate::policy::brake::MAX_HOSTS`], `per` more than 0 and at most a
/// day.
fn brake_settings(ctx: &mut Ctx<'_>, raw: &RawBrake) -> Option<BrakeSettings> {
    use crate::policy::brake::{MAX_HOSTS, MAX_PER};
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

fn audit(a: &RawAudit, p: &mut Partial) {
    p.audit_path = a.path.as_ref().map(|x| expand_home(x.get_ref()));
    p.audit_bytes = a.max_bytes.as_ref().map(|b| *b.get_ref());
    p.audit_journald = a.journald.as_ref().map(|j| *j.get_ref());
}

fn lock(ctx: &mut Ctx<'_>, l: &RawLock, p: &mut Partial) {
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

fn upstream(ctx: &mut Ctx<'_>, u: &RawUpstream, p: &mut Partial) {
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

fn known_hosts(ctx: &mut Ctx<'_>, k: &RawKnownHosts, p: &mut Partial) {
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
