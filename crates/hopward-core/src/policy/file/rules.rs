//! The `[[rule]]` tables of a policy file, each checked and compiled into
//! a [`Rule`]: its patterns, its purpose, and the combinations that could
//! never match, reported where they are written.

use super::problems::{Ctx, position};
use super::raw::{RawRule, S};
use crate::policy::Rule;
use crate::policy::matcher::{KeyPattern, NamePattern, ViaElement, compile_glob};
use crate::trust::binding::Purpose;

/// Every rule of one file, in order; a rule with an unknown action is left
/// out (its error is reported).
pub(super) fn rules(ctx: &mut Ctx<'_>, raw: &[S<RawRule>]) -> Vec<Rule> {
    let mut out = Vec::new();
    for (i, spanned) in raw.iter().enumerate() {
        out.extend(rule(ctx, i, spanned));
    }
    out
}

/// The `i`th rule (from 0), named by its `name` or else by its place.
fn rule(ctx: &mut Ctx<'_>, i: usize, spanned: &S<RawRule>) -> Option<Rule> {
    let file = ctx.file;
    let span = spanned.span();
    let r = spanned.get_ref();
    let (line, _) = position(ctx.text, span.start);
    let name = r.name.as_ref().map_or_else(
        || format!("rule {} ({file}:{line})", i + 1),
        |n| n.get_ref().clone(),
    );
    let action = ctx.action(&Some(r.action.clone()));
    let purpose = purpose(ctx, r);
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
    jump_conflicts(ctx, r, purpose);
    let remember = r.remember.as_ref().and_then(|d| ctx.duration(d));
    let process = process_patterns(ctx, r);
    not_login_conflicts(ctx, r, purpose);
    Some(Rule {
        name,
        origin: format!("{file}:{line}"),
        keys,
        host,
        via,
        user,
        purpose,
        action: action?,
        remember,
        jump,
        process,
    })
}

/// The rule's `purpose`, if it names one.
fn purpose(ctx: &mut Ctx<'_>, r: &RawRule) -> Option<Purpose> {
    let pv = r.purpose.as_ref()?;
    match pv.get_ref().parse::<Purpose>() {
        Ok(purpose) => Some(purpose),
        Err(message) => {
            ctx.err(pv.span(), message);
            None
        }
    }
}

/// A signature that is not a login has no destination host and no remote
/// user: a rule for one that names either can never match.
fn not_login_conflicts(ctx: &mut Ctx<'_>, r: &RawRule, purpose: Option<Purpose>) {
    let Some(pv @ (Purpose::Git | Purpose::File | Purpose::Other)) = purpose else {
        return;
    };
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

/// A rule's `caller`, `ancestor` and `cwd`, with `~` expanded.
fn process_patterns(ctx: &mut Ctx<'_>, r: &RawRule) -> crate::policy::process::ProcessPatterns {
    use crate::policy::process::{DirPattern, ExePattern, expand_home as home};
    crate::policy::process::ProcessPatterns {
        caller: ctx.patterns(&r.caller, "caller", false, |t| {
            ExePattern::compile(&home(t))
        }),
        ancestor: ctx.patterns(&r.ancestor, "ancestor", false, |t| {
            ExePattern::compile(&home(t))
        }),
        cwd: ctx.patterns(&r.cwd, "cwd", false, |t| DirPattern::compile(&home(t))),
    }
}
