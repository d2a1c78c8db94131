//! A few bytes per rule, kept side by side in one array, that can rule a
//! rule out for a request without reading the rule itself.
//!
//! Invariant: a shape only ever answers "this rule cannot match". A rule it
//! admits is still matched in full, so the prefilter changes how fast a
//! decision is made, never which decision it is.
//!
//! Why it exists: a request reaches the daemon after a context switch, when
//! the rules' patterns (spread over the heap) are out of cache. Walking a
//! few hundred rules then costs a cache miss or more per rule, about ten
//! times what the matching itself costs. A shape is 16 bytes, so the
//! shapes of 200 rules fit in fifty cache lines.

use crate::trust::binding::Purpose;
use crate::trust::context::RequestContext;

use super::Rule;
use super::matcher::{NamePattern, ViaElement};

/// A bit per destination name: `ANY_HOST` when the rule's host patterns
/// cannot be summed up this way (wildcards, no host field).
const ANY_HOST: u64 = u64::MAX;

/// What must hold of a request for the rule to have a chance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RuleShape {
    /// Set bits of the exact names and fingerprints in `host`.
    host_bits: u64,
    /// `host` is given, so a destination (an auth hop at the end) is needed.
    needs_destination: bool,
    /// Bounds on the number of forwarding hops that `via` can match.
    min_forwarding: u16,
    max_forwarding: u16,
    purpose: Option<Purpose>,
}

/// The same summary of one request, computed once per decision.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RequestShape {
    host_bits: u64,
    has_destination: bool,
    forwarding: u16,
    purpose: Purpose,
}

/// Hop counts in 16 bits keep a shape at 16 bytes. Chains are far shorter
/// (session-bind stops at 16 hops); should a count not fit, both sides
/// saturate, which can only widen what a shape admits.
fn hop_count(n: usize) -> u16 {
    u16::try_from(n).unwrap_or(u16::MAX)
}

/// FNV-1a, reduced to one of 64 bits. Not a defence against anything: a
/// collision only lets a rule through to the full match.
fn bit(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let hash = bytes.into_iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    1 << (hash % 64)
}

/// Names are matched case-insensitively. For ASCII text that is the same as
/// comparing ASCII-lowercased bytes; beyond ASCII, Unicode case folding may
/// equate characters that lowercasing does not (the Kelvin sign and `k`),
/// so such names are not summed up at all.
fn name_bit(name: &str) -> u64 {
    if name.is_ascii() {
        bit(name.bytes().map(|b| b.to_ascii_lowercase()))
    } else {
        ANY_HOST
    }
}

fn pattern_bits(pattern: &NamePattern) -> u64 {
    match pattern {
        NamePattern::Fingerprint(fp) => bit(fp.bytes()),
        NamePattern::Any => ANY_HOST,
        // A glob with no special character matches only itself. The set is
        // wider than `exact_name`'s: a backslash escapes, brackets and
        // braces may mean something even when unbalanced.
        NamePattern::Glob { text, .. }
            if text.is_ascii() && !text.contains(['*', '?', '[', ']', '{', '}', '\\']) =>
        {
            name_bit(text)
        }
        NamePattern::Glob { .. } => ANY_HOST,
    }
}

impl RuleShape {
    pub(crate) fn of(rule: &Rule) -> RuleShape {
        let host_bits = rule.host.as_ref().map_or(ANY_HOST, |patterns| {
            patterns.iter().map(pattern_bits).fold(0, |a, b| a | b)
        });
        let (min_forwarding, max_forwarding) = match &rule.via {
            None => (0, u16::MAX),
            Some(elements) => {
                let hops = elements
                    .iter()
                    .filter(|e| matches!(e, ViaElement::Hop(_)))
                    .count();
                let open = elements.iter().any(|e| matches!(e, ViaElement::AnyNumber));
                let hops = hop_count(hops);
                (hops, if open { u16::MAX } else { hops })
            }
        };
        RuleShape {
            host_bits,
            needs_destination: rule.host.is_some(),
            min_forwarding,
            max_forwarding,
            purpose: rule.purpose,
        }
    }

    /// False only if the rule cannot match a request of this shape.
    pub(crate) fn admits(&self, request: &RequestShape) -> bool {
        (!self.needs_destination
            || (request.has_destination && self.host_bits & request.host_bits != 0))
            && (self.min_forwarding..=self.max_forwarding).contains(&request.forwarding)
            && self.purpose.is_none_or(|p| p == request.purpose)
    }
}

impl RequestShape {
    pub(crate) fn of(ctx: &RequestContext) -> RequestShape {
        let destination = ctx.destination_hop();
        RequestShape {
            host_bits: destination.map_or(0, |d| {
                d.names
                    .iter()
                    .map(|n| name_bit(n))
                    .fold(bit(d.fingerprint.bytes()), |a, b| a | b)
            }),
            has_destination: destination.is_some(),
            // Counted, not collected as `Rule::forwarding_hops` does: no
            // allocation on the way to every decision.
            forwarding: hop_count(ctx.chain.iter().filter(|h| h.forwarding).count()),
            purpose: ctx.purpose,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::file::parse_str;
    use crate::trust::context::{Destination, HopView};
    use std::sync::Arc;

    fn hop(name: &str, forwarding: bool) -> HopView {
        HopView::named(name, forwarding)
    }

    fn ctx(chain: Vec<HopView>, purpose: Purpose) -> RequestContext {
        let destination = if purpose == Purpose::Login {
            Destination::Verified
        } else {
            Destination::NotLogin
        };
        let peer = Arc::new(crate::trust::peer::Peer::with_facts(
            0,
            None,
            Default::default(),
        ));
        RequestContext::of_parts(
            ("SHA256:key", "laptop"),
            chain,
            destination,
            Some("me"),
            purpose,
            &peer,
        )
    }

    /// Every rule the full match accepts, the shape admits; and the shape
    /// does turn rules away (else it would be no use).
    #[test]
    fn shapes_never_turn_away_a_matching_rule() {
        // Well-formed fingerprints (a policy refuses any other), differing
        // only in case; `hop` names a hop `SHA256:{name}`.
        let (upper, lower) = (
            format!("{}A", "Q".repeat(42)),
            format!("{}A", "q".repeat(42)),
        );
        let (fp_upper, fp_lower) = (format!("SHA256:{upper}"), format!("SHA256:{lower}"));
        let hosts = [
            "bastion",
            "BASTION",
            "Bastion",
            "db1",
            "k",
            "\u{212A}",
            "b*",
            "*",
            "db?",
            "{db1,db2}",
            "[bd]b1",
            fp_lower.as_str(),
            fp_upper.as_str(),
            "a\\b",
            "ab",
        ];
        let names = [
            "bastion",
            "BaStIoN",
            "db1",
            "db2",
            "bb1",
            "k",
            "K",
            "\u{212A}",
            "ab",
            "x",
            "",
            lower.as_str(),
            upper.as_str(),
        ];
        let vias = [
            "",
            "\"bastion\"",
            "\"**\"",
            "\"*\", \"**\"",
            "\"**\", \"db1\"",
            "\"*\", \"*\"",
        ];
        let mut policy = String::new();
        for (i, host) in hosts.iter().enumerate() {
            for (j, via) in vias.iter().enumerate() {
                for purpose in ["", "purpose = \"login\"\n"] {
                    policy.push_str(&format!(
                        "[[rule]]\nname = \"r{i}-{j}\"\nhost = [{host:?}]\nvia = [{via}]\n{purpose}action = \"allow\"\n"
                    ));
                }
            }
        }
        policy.push_str("[[rule]]\nname = \"no host\"\npurpose = \"file\"\naction = \"allow\"\n");
        let policy = parse_str(&policy, "shapes.toml").expect("valid");
        let (mut admitted, mut turned_away, mut matched) = (0, 0, 0);
        for dest in names {
            for fwd in [&[][..], &["bastion"], &["db1", "x"], &["", "bastion", "k"]] {
                for with_destination in [true, false] {
                    for purpose in [Purpose::Login, Purpose::Git, Purpose::File] {
                        let mut chain: Vec<HopView> = fwd.iter().map(|n| hop(n, true)).collect();
                        if with_destination {
                            chain.push(hop(dest, false));
                        }
                        let c = ctx(chain, purpose);
                        let request = RequestShape::of(&c);
                        for rule in &policy.rules {
                            let shape = RuleShape::of(rule);
                            if rule.matches(&c) {
                                matched += 1;
                                assert!(shape.admits(&request), "{} turned away {c:?}", rule.name);
                            }
                            if shape.admits(&request) {
                                admitted += 1;
                            } else {
                                turned_away += 1;
                            }
                        }
                    }
                }
            }
        }
        assert!(
            matched > 500 && admitted > matched && turned_away > admitted,
            "{matched} matched, {admitted} admitted, {turned_away} turned away"
        );
    }

    #[test]
    fn a_shape_is_a_quarter_of_a_cache_line() {
        assert_eq!(std::mem::size_of::<RuleShape>(), 16);
    }

    #[test]
    fn exact_names_and_hop_counts_are_summed_up() {
        let policy = parse_str(
            "[[rule]]\nname = \"a\"\nhost = [\"Bastion\"]\nvia = [\"jump\"]\naction = \"allow\"\n",
            "a.toml",
        )
        .unwrap();
        let shape = RuleShape::of(&policy.rules[0]);
        assert_eq!(shape.host_bits.count_ones(), 1);
        assert_eq!((shape.min_forwarding, shape.max_forwarding), (1, 1));
        let direct = ctx(vec![hop("bastion", false)], Purpose::Login);
        assert!(
            !shape.admits(&RequestShape::of(&direct)),
            "no forwarding hop"
        );
        let through = ctx(
            vec![hop("jump", true), hop("BASTION", false)],
            Purpose::Login,
        );
        assert!(shape.admits(&RequestShape::of(&through)));
    }
}
