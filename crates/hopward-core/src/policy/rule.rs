//! One `[[rule]]`, compiled, and whether it matches a request: every field
//! it names must match, and what cannot be checked matches deny rules only.

use std::time::Duration;

use super::Action;
use super::matcher::{KeyPattern, NamePattern, ViaElement, via_matches};
use super::process;
use crate::trust::binding::Purpose;
use crate::trust::context::{HopView, RequestContext};

/// One `[[rule]]`, compiled.
#[derive(Debug, Clone)]
pub struct Rule {
    pub name: String,
    /// Where it was written, `FILE:LINE`.
    pub origin: String,
    pub keys: Option<Vec<KeyPattern>>,
    pub host: Option<Vec<NamePattern>>,
    pub(crate) via: Option<Vec<ViaElement>>,
    pub user: Option<Vec<globset::GlobMatcher>>,
    pub purpose: Option<Purpose>,
    pub action: Action,
    pub remember: Option<Duration>,
    /// The jump hosts (ProxyJump) a direct login tunnels through, in the
    /// `via` grammar; `[]`: none; `None`: any.
    pub jump: Option<Vec<ViaElement>>,
    /// `caller`, `ancestor`, `cwd`: the requesting process.
    pub process: process::ProcessPatterns,
}

impl Rule {
    /// The host a connection is bound to (its last hop, if that is an
    /// authentication bind), for the listing filter: listing signs nothing,
    /// so the chain's word is enough there. Sign decisions use
    /// [`RequestContext::destination_hop`].
    pub(super) fn bound_destination(chain: &[HopView]) -> Option<&HopView> {
        chain.last().filter(|h| !h.forwarding)
    }

    fn forwarding_hops(chain: &[HopView]) -> Vec<&HopView> {
        chain.iter().filter(|h| h.forwarding).collect()
    }

    pub(super) fn keys_match(&self, fingerprint: &str, comment: &str) -> bool {
        self.keys
            .as_ref()
            .is_none_or(|ks| ks.iter().any(|k| k.matches(fingerprint, comment)))
    }

    pub(super) fn via_match(&self, chain: &[HopView]) -> bool {
        self.via
            .as_ref()
            .is_none_or(|v| via_matches(v, &Self::forwarding_hops(chain)))
    }

    /// Whether the jump hosts match `jump`: a request through a forwarding
    /// hop has none (its route is its chain of binds).
    pub(super) fn jump_match(&self, jump: &[HopView]) -> bool {
        self.jump.as_ref().is_none_or(|j| {
            let hops: Vec<&HopView> = jump.iter().collect();
            via_matches(j, &hops)
        })
    }

    pub(super) fn host_match(&self, destination: Option<&HopView>) -> bool {
        match &self.host {
            None => true,
            Some(patterns) => {
                destination.is_some_and(|dest| patterns.iter().any(|p| p.matches(dest)))
            }
        }
    }

    /// Whether `globs` match the account a login names. An account that is
    /// not UTF-8 (shown escaped) matches deny rules only, by its escaped
    /// form; a login whose user could not be read at all could be anyone's,
    /// so it matches every deny rule naming users, and nothing else.
    fn user_match(&self, globs: &[globset::GlobMatcher], ctx: &RequestContext) -> bool {
        match ctx.user.as_deref() {
            Some(user) if ctx.user_exact || self.action == Action::Deny => {
                globs.iter().any(|g| g.is_match(user))
            }
            Some(_) => false,
            None => !ctx.user_exact && self.action == Action::Deny,
        }
    }

    /// Whether this rule matches a sign request. A `host` rule needs a
    /// verified destination. A user or purpose the data claims without a
    /// bind to back it (a login that does not belong to the last bind) can
    /// only make things stricter: it matches deny rules, never others.
    pub(crate) fn matches(&self, ctx: &RequestContext) -> bool {
        let names_claims = self.user.is_some() || self.purpose.is_some();
        if names_claims && self.action != Action::Deny && !ctx.destination.claims_checked() {
            return false;
        }
        self.keys_match(&ctx.key_fingerprint, &ctx.key_comment)
            && self.via_match(&ctx.chain)
            && self.jump_match(&ctx.jump)
            && self.host_match(ctx.destination_hop())
            && self
                .user
                .as_ref()
                .is_none_or(|globs| self.user_match(globs, ctx))
            && self.purpose.is_none_or(|p| p == ctx.purpose)
            && self.process_match(ctx)
    }

    /// The process fields: proven, or unprovable for a deny rule (which
    /// can only make the decision stricter). An unprovable rule of another
    /// action does not match here; [`super::Policy::decide`] still lets it raise
    /// the decision to its own action.
    fn process_match(&self, ctx: &RequestContext) -> bool {
        match self.process_proof(ctx) {
            process::Proof::Yes => true,
            process::Proof::No => false,
            process::Proof::Unknown => self.action == Action::Deny,
        }
    }

    fn process_proof(&self, ctx: &RequestContext) -> process::Proof {
        if self.process.is_empty() {
            return process::Proof::Yes;
        }
        self.process.check(&ctx.peer.process)
    }

    /// Whether every field but the process ones matches, and those cannot
    /// be proven either way: the rule might be the one that decides.
    pub(super) fn unprovable(&self, ctx: &RequestContext) -> bool {
        self.action != Action::Deny
            && self.process_proof(ctx) == process::Proof::Unknown
            && Rule {
                process: process::ProcessPatterns::default(),
                ..self.clone()
            }
            .matches(ctx)
    }
}
