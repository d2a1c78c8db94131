//! Warnings about a policy file as written, with their positions, for
//! `policy check` and `doctor`: rules that cannot do what they say, and
//! host names known_hosts does not (yet) give hopward.

use std::ops::Range;
use std::path::Path;

use super::problems::{PolicyError, position};
use super::raw::RawFile;

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
