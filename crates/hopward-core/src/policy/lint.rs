//! Warnings about rules that trust what cannot be checked: a `via` that
//! names forwarding hops past the first. Every bind after the first arrives
//! through the first hop, which can present any host's real key with the
//! forwarding flag set, so such hops are that host's word. A rule that is
//! more permissive because of them is one the first hop can satisfy alone.
//!
//! Pure: it decides made-up requests that the rule matches, with and
//! without the hops past the first, and compares.

use std::sync::Arc;

use super::matcher::{KeyPattern, NamePattern, ViaElement};
use super::{Policy, Rule};
use crate::trust::binding::Purpose;
use crate::trust::context::{Destination, HopView, RequestContext};

/// One warning: the rule's origin (`FILE:LINE`) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    pub origin: String,
    pub message: String,
}

/// A text a glob pattern matches: each wildcard stands for `x`. Good
/// enough to build a request a rule matches; the caller checks it does.
fn sample(pattern: &str) -> String {
    let mut out = String::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '*' | '?' => out.push('x'),
            '[' => {
                // The first member of a class (after a negation, anything
                // unlikely to be excluded).
                let class: String = chars.by_ref().take_while(|&c| c != ']').collect();
                match class.strip_prefix('!').or_else(|| class.strip_prefix('^')) {
                    Some(_) => out.push('\u{1}'),
                    None => out.push(class.chars().next().unwrap_or('x')),
                }
            }
            '{' => {
                let alternatives: String = chars.by_ref().take_while(|&c| c != '}').collect();
                out.push_str(alternatives.split(',').next().unwrap_or(""));
            }
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

fn hop_for(pattern: &NamePattern, forwarding: bool) -> HopView {
    match pattern {
        NamePattern::Fingerprint(fp) => HopView {
            fingerprint: fp.clone(),
            names: Vec::new(),
            forwarding,
            reported_by: None,
            hashed: false,
        },
        NamePattern::Any => HopView::named("x", forwarding),
        NamePattern::Glob { text, .. } => HopView::named(&sample(text), forwarding),
    }
}

/// A sign request this rule matches (if the samples work out), as the
/// rule's own forwarding hops, and the same request with only the first.
fn requests(rule: &Rule) -> Option<(RequestContext, RequestContext)> {
    let via = rule.via.as_ref()?;
    let hops: Vec<&NamePattern> = via
        .iter()
        .filter_map(|v| match v {
            ViaElement::Hop(p) => Some(p),
            ViaElement::AnyNumber => None,
        })
        .collect();
    if hops.len() < 2 {
        return None;
    }
    let destination = match rule.host.as_ref().and_then(|h| h.first()) {
        Some(pattern) => hop_for(pattern, false),
        None => HopView::named("somewhere", false),
    };
    let (fingerprint, comment) = match rule.keys.as_ref().and_then(|k| k.first()) {
        Some(KeyPattern::Fingerprint(fp)) => (fp.clone(), String::new()),
        Some(KeyPattern::Comment(glob)) => (String::new(), sample(glob.glob().glob())),
        None => ("SHA256:any".to_string(), String::new()),
    };
    let user = rule
        .user
        .as_ref()
        .and_then(|u| u.first())
        .map_or_else(|| "user".to_string(), |g| sample(g.glob().glob()));
    let purpose = rule.purpose.unwrap_or(Purpose::Login);
    let destination_status = if purpose == Purpose::Login {
        Destination::Verified
    } else {
        Destination::NotLogin
    };
    let peer = Arc::new(crate::trust::peer::Peer::with_facts(
        0,
        None,
        Default::default(),
    ));
    let build = |forwarding: Vec<HopView>| {
        let mut chain = forwarding;
        chain.push(destination.clone());
        RequestContext::of_parts(
            (&fingerprint, &comment),
            chain,
            destination_status,
            Some(&user),
            purpose,
            &peer,
        )
    };
    let full = build(hops.iter().map(|p| hop_for(p, true)).collect());
    let first_only = build(vec![hop_for(hops[0], true)]);
    Some((full, first_only))
}

/// Rules whose `via` names forwarding hops past the first and that allow
/// more than the same request without those hops would get.
pub fn reported_hop_warnings(policy: &Policy) -> Vec<Warning> {
    let mut out = Vec::new();
    for rule in &policy.rules {
        let Some((full, first_only)) = requests(rule) else {
            continue;
        };
        let with = policy.decide(&full);
        if with.rule != rule.name {
            continue; // the sample request does not reach this rule
        }
        let without = policy.decide(&first_only);
        if without.action.stricter(with.action) != with.action {
            let first = full.chain[0].label().to_string();
            let later: Vec<&str> = full.chain[1..full.chain.len() - 1]
                .iter()
                .map(HopView::label)
                .collect();
            out.push(Warning {
                origin: rule.origin.clone(),
                message: format!(
                    "rule {:?} is more permissive ({}) because of hops past the first in `via` ({}); \
                     those are {first}'s word (it can present any host's key as a forwarding hop), \
                     and without them the request gets {} from {}",
                    rule.name,
                    with.action.as_str(),
                    later.join(", "),
                    without.action.as_str(),
                    without.rule
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::file::parse_str;

    #[test]
    fn samples_match_their_globs() {
        for pattern in [
            "db*",
            "db?.prod",
            "[ab]x",
            "{one,two}.example",
            "plain",
            "a\\*b",
        ] {
            let glob = crate::policy::matcher::compile_glob(pattern, true).unwrap();
            assert!(
                glob.is_match(sample(pattern)),
                "{pattern} -> {}",
                sample(pattern)
            );
        }
    }

    #[test]
    fn a_rule_that_trusts_reported_hops_is_named() {
        let policy = parse_str(
            r#"
[defaults]
forwarded = "deny"
[[rule]]
name = "prod through jump"
host = ["db*.prod"]
via = ["bastion", "jump"]
action = "allow"
[[rule]]
name = "through bastion only"
via = ["bastion"]
action = "confirm"
[[rule]]
name = "stricter with jump"
via = ["bastion2", "jump"]
action = "deny"
"#,
            "p.toml",
        )
        .unwrap();
        let warnings = reported_hop_warnings(&policy);
        assert_eq!(warnings.len(), 1, "{warnings:#?}");
        assert_eq!(warnings[0].origin, "p.toml:4");
        assert!(
            warnings[0]
                .message
                .contains("\"prod through jump\" is more permissive (allow)")
                && warnings[0]
                    .message
                    .contains("(jump); those are bastion's word")
                && warnings[0]
                    .message
                    .contains("gets confirm from through bastion only"),
            "{}",
            warnings[0].message
        );
    }
}
