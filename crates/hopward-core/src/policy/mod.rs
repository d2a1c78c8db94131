//! The policy: rules tried in order, first match decides; `[defaults]` by
//! request class when none matches. Plain data and pure functions; loading
//! (`file`) and name lookups (`known_hosts`) sit beside it.
//!
//! Invariants: a poisoned connection is always denied; OpenSSH constraints
//! are checked before the policy and can only make a decision stricter.

pub mod brake;
pub mod file;
pub mod grants;
pub mod lint;
pub(crate) mod matcher;
mod offer;
pub(crate) mod owner;
mod prefilter;
pub mod process;
mod rule;
pub mod store;

use std::path::PathBuf;
use std::time::Duration;

use crate::trust::context::{Destination, HopView, RequestClass, RequestContext};
use matcher::ViaElement;
pub(crate) use rule::Rule;

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Allow,
    /// Allow, and show a notification that does not wait for an answer.
    Notify,
    Confirm,
    Deny,
}

impl Action {
    pub fn parse(text: &str) -> Option<Action> {
        match text {
            "allow" => Some(Action::Allow),
            "notify" => Some(Action::Notify),
            "confirm" => Some(Action::Confirm),
            "deny" => Some(Action::Deny),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Action::Allow => "allow",
            Action::Notify => "notify",
            Action::Confirm => "confirm",
            Action::Deny => "deny",
        }
    }

    /// The stricter of two actions (deny > confirm > notify > allow).
    pub(crate) fn stricter(self, other: Action) -> Action {
        use Action::*;
        match (self, other) {
            (Deny, _) | (_, Deny) => Deny,
            (Confirm, _) | (_, Confirm) => Confirm,
            (Notify, _) | (_, Notify) => Notify,
            _ => Allow,
        }
    }

    /// Whether the request goes ahead without an answer from anyone.
    pub fn allows_unasked(self) -> bool {
        matches!(self, Action::Allow | Action::Notify)
    }
}

/// `[defaults]`: the action per request class when no rule matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Defaults {
    pub(crate) local: Action,
    pub(crate) forwarded: Action,
    /// A forwarded login to a host no known_hosts file knows (its bind
    /// verifies, but nothing says which host it is). Absent: `forwarded`.
    pub(crate) forwarded_unknown: Action,
    pub(crate) forwarded_unverified: Action,
}

/// How to ask the person at the desk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfirmMethod {
    Auto,
    Desktop,
    Askpass,
    Command,
    Macos,
}

impl ConfirmMethod {
    /// Every method: the names `[confirm] method` takes.
    pub(crate) const ALL: [ConfirmMethod; 5] = [
        ConfirmMethod::Auto,
        ConfirmMethod::Desktop,
        ConfirmMethod::Askpass,
        ConfirmMethod::Command,
        ConfirmMethod::Macos,
    ];

    /// Its name in `[confirm] method` and in `hopward status`.
    pub fn as_str(self) -> &'static str {
        match self {
            ConfirmMethod::Auto => "auto",
            ConfirmMethod::Desktop => "desktop",
            ConfirmMethod::Askpass => "askpass",
            ConfirmMethod::Command => "command",
            ConfirmMethod::Macos => "macos",
        }
    }
}

/// The method a name in `[confirm] method` stands for; the error is the
/// message the policy file shows.
impl std::str::FromStr for ConfirmMethod {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        ConfirmMethod::ALL
            .into_iter()
            .find(|m| m.as_str() == name)
            .ok_or_else(|| {
                format!(
                    "unknown confirm method {name:?} (use auto, desktop, askpass, command or macos)"
                )
            })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfirmSettings {
    pub method: ConfirmMethod,
    pub command: Vec<String>,
    pub timeout: Duration,
}

/// `[forwarded]`: key operations that arrive through a bound connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ForwardedOps {
    pub(crate) add: Action,
    pub(crate) remove: Action,
    pub(crate) remove_all: Action,
    pub lock: Action,
    pub(crate) unlock: Action,
}

/// `[audit]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditSettings {
    pub path: Option<PathBuf>,
    pub max_bytes: u64,
    /// Each record to the journal as well (read when the agent starts).
    pub journald: bool,
}

/// `[lock]`: when forwarded use locks by itself (see `crate::daemon::autolock`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LockSettings {
    /// Lock after this long without a request from this machine.
    pub idle: Option<Duration>,
    /// Lock when the session's screen locks.
    pub on_screen_lock: bool,
}

/// `[upstream]`: another agent whose keys hopward fronts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamSettings {
    /// Its socket (`None`: no upstream unless `--upstream` names one).
    pub socket: Option<PathBuf>,
    /// How long one request to it may take: long enough for a hardware
    /// touch or the upstream's own approval dialog.
    pub timeout: Duration,
}

/// How long an upstream request may take when the policy does not say.
pub(crate) const DEFAULT_UPSTREAM_TIMEOUT: Duration = Duration::from_secs(120);

/// A complete, validated policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The file it came from (`None`: built in).
    pub source: Option<PathBuf>,
    /// A hash of every file's name and text that made it: a reload that
    /// reads the same text changes nothing and keeps remembered approvals.
    pub digest: [u8; 32],
    pub rules: Vec<Rule>,
    pub(crate) defaults: Defaults,
    pub confirm: ConfirmSettings,
    pub(crate) forwarded: ForwardedOps,
    pub audit: AuditSettings,
    pub upstream: UpstreamSettings,
    /// Extra known_hosts files.
    pub known_hosts: Vec<PathBuf>,
    /// `[known_hosts] ports`: the ports a rule's host name is also looked
    /// up with, as `[name]:port` (how ssh records a host on another port).
    pub known_hosts_ports: Vec<u16>,
    pub lock: LockSettings,
    /// `[forwarded] brake`: `None` when the file sets none.
    pub brake: Option<brake::BrakeSettings>,
    /// Exact host names the rules mention (precomputed for the hot path).
    pub exact_names: Vec<String>,
    /// One shape per rule, in the same order (see [`prefilter`]).
    shapes: Vec<prefilter::RuleShape>,
}

/// Which rule (or default) decided, and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub action: Action,
    /// The rule's name, or `default:<class>`.
    pub rule: String,
    pub remember: Option<Duration>,
}

/// A key operation other than signing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOp {
    Add,
    Remove,
    RemoveAll,
    Lock,
    Unlock,
}

impl KeyOp {
    pub fn event(self) -> &'static str {
        match self {
            KeyOp::Add => "add",
            KeyOp::Remove => "remove",
            KeyOp::RemoveAll => "remove_all",
            KeyOp::Lock => "lock",
            KeyOp::Unlock => "unlock",
        }
    }
}

/// What [`Policy::refusing_forwarded`]'s digest is made from.
const REFUSING_FORWARDED: &[u8] = b"hopward: forwarded use refused, no usable policy";

impl Policy {
    /// The built-in policy, also shipped as `policy/default.toml`.
    pub(crate) fn builtin() -> Policy {
        file::parse_str(file::DEFAULT_POLICY, "(built-in policy)")
            .expect("the built-in policy is valid")
    }

    /// What runs while no usable policy file was ever loaded (it did not
    /// parse, or another user could have written it): local use is served
    /// as the built-in policy serves it, and everything that comes through
    /// a forwarded agent is refused.
    pub(crate) fn refusing_forwarded() -> Policy {
        let mut policy = Policy::builtin();
        policy.defaults.forwarded = Action::Deny;
        policy.defaults.forwarded_unknown = Action::Deny;
        policy.defaults.forwarded_unverified = Action::Deny;
        policy.forwarded = ForwardedOps {
            add: Action::Deny,
            remove: Action::Deny,
            remove_all: Action::Deny,
            lock: Action::Deny,
            unlock: Action::Deny,
        };
        // Its own digest: `status` and `doctor` must not take it for the
        // built-in policy.
        policy.digest = crate::ssh::digest::sha256(REFUSING_FORWARDED);
        policy
    }

    /// Whether this is [`Policy::refusing_forwarded`]: no usable policy
    /// file was loaded since start, so there is no "last good" one.
    pub fn is_refusing_forwarded(&self) -> bool {
        self.digest == crate::ssh::digest::sha256(REFUSING_FORWARDED)
    }

    fn default_for(&self, class: RequestClass) -> Decision {
        let action = match class {
            RequestClass::Local | RequestClass::Direct => self.defaults.local,
            RequestClass::Forwarded => self.defaults.forwarded,
            RequestClass::ForwardedUnknown => self.defaults.forwarded_unknown,
            RequestClass::ForwardedUnverified => self.defaults.forwarded_unverified,
            RequestClass::Poisoned => Action::Deny,
        };
        // A direct login is decided by `defaults.local`, so it is named by
        // the setting that decided it (the class, `direct`, is logged too).
        let setting = match class {
            RequestClass::Direct => RequestClass::Local.as_str(),
            other => other.as_str(),
        };
        Decision {
            action,
            rule: format!("default:{setting}"),
            remember: None,
        }
    }

    /// Decides a sign request: first matching rule, else the class default.
    pub fn decide(&self, ctx: &RequestContext) -> Decision {
        self.decide_with(ctx, true)
    }

    /// [`Policy::decide`] without the rule shapes, for checking that they
    /// change nothing.
    #[cfg(any(test, feature = "testing"))]
    pub fn decide_by_full_match(&self, ctx: &RequestContext) -> Decision {
        self.decide_with(ctx, false)
    }

    fn decide_with(&self, ctx: &RequestContext, use_shapes: bool) -> Decision {
        if ctx.class == RequestClass::Poisoned {
            return self.default_for(RequestClass::Poisoned);
        }
        // The shapes only skip rules that cannot match. Should they ever
        // fall out of step with the rules, every rule is matched in full.
        let first = if use_shapes && self.shapes.len() == self.rules.len() {
            let request = prefilter::RequestShape::of(ctx);
            self.rules
                .iter()
                .zip(&self.shapes)
                .find(|(rule, shape)| shape.admits(&request) && rule.matches(ctx))
                .map(|(rule, _)| rule)
        } else {
            self.rules.iter().find(|r| r.matches(ctx))
        };
        let mut decision = match first {
            Some(rule) => Decision {
                action: rule.action,
                rule: rule.name.clone(),
                remember: rule.remember,
            },
            None => self.default_for(ctx.class),
        };
        self.raise_for_unprovable(ctx, first, &mut decision);
        if let Destination::Unverified(_) = ctx.destination {
            // Nobody can say where this login will be used: never remember
            // it, and through a forwarding hop never do better than
            // `forwarded_unverified`, whatever rule matched.
            decision.remember = None;
            if ctx.class == RequestClass::ForwardedUnverified {
                let floor = self.default_for(RequestClass::ForwardedUnverified);
                if floor.action.stricter(decision.action) != decision.action {
                    decision = floor;
                }
            }
        }
        decision
    }

    /// A rule before the one that decided, whose process fields could not
    /// be proven (the process is gone, `/proc` unreadable), might have been
    /// the first match: the decision is then the stricter of its action
    /// and what decided, and nothing is remembered for it. So a `confirm`
    /// rule for some caller still asks when the caller cannot be told, even
    /// if a later rule would allow.
    fn raise_for_unprovable(
        &self,
        ctx: &RequestContext,
        first: Option<&Rule>,
        decision: &mut Decision,
    ) {
        let before = first.map_or(self.rules.len(), |f| {
            self.rules
                .iter()
                .position(|r| std::ptr::eq(r, f))
                .unwrap_or(0)
        });
        for rule in &self.rules[..before] {
            if rule.process.is_empty() || !rule.unprovable(ctx) {
                continue;
            }
            // As strict as the decision (a `confirm` before a `confirm`):
            // the question stays, but nothing is remembered from it.
            if rule.action.stricter(decision.action) == rule.action {
                decision.remember = None;
            }
            if rule.action.stricter(decision.action) != decision.action {
                *decision = Decision {
                    action: rule.action,
                    rule: rule.name.clone(),
                    remember: None,
                };
            }
        }
    }

    /// Whether some rule (or the default) could allow this key on a
    /// connection with this chain, for some user; used to filter listings
    /// (see [`offer`]). The user is not known yet, so rules are matched
    /// without it; once the destination is bound (the last bind is an
    /// authentication one) the request is a login there, before that the
    /// host and purpose are open too. The jump hosts of a direct connection
    /// are not looked at (a rule naming them may apply); a connection
    /// through a forwarding hop has none. `Err` names the rule (or default)
    /// that rules the key out.
    pub fn could_allow(
        &self,
        fingerprint: &str,
        comment: &str,
        chain: &[HopView],
        class: RequestClass,
    ) -> Result<(), String> {
        if class == RequestClass::Poisoned {
            return Err("default:poisoned".into());
        }
        let bound = Rule::bound_destination(chain);
        let no_jumps = chain.iter().any(|h| h.forwarding);
        for rule in &self.rules {
            let jump_known = no_jumps && rule.jump_match(&[]);
            let applies = rule.keys_match(fingerprint, comment)
                && (jump_known || !no_jumps)
                && rule.via_match(chain)
                && rule.may_decide_login_to(bound);
            if !applies {
                continue;
            }
            if rule.action != Action::Deny {
                return Ok(());
            }
            // A deny rule that is certain to match shadows everything after it.
            if rule.denies_every_login_to(bound)
                && (rule.jump.is_none() || jump_known)
                && rule.process.is_empty()
            {
                return Err(rule.name.clone());
            }
        }
        let class = match class {
            RequestClass::ForwardedUnverified => RequestClass::Forwarded,
            RequestClass::Forwarded
                if Rule::bound_destination(chain).is_some_and(|d| d.names.is_empty()) =>
            {
                RequestClass::ForwardedUnknown
            }
            other => other,
        };
        let default = self.default_for(class);
        if default.action == Action::Deny {
            Err(default.rule)
        } else {
            Ok(())
        }
    }

    /// The action for a key operation arriving on a connection of `class`.
    /// Local use is always allowed, as with OpenSSH.
    pub fn key_op(&self, op: KeyOp, class: RequestClass) -> Decision {
        if class == RequestClass::Local {
            return Decision {
                action: Action::Allow,
                rule: "default:local".into(),
                remember: None,
            };
        }
        let action = if class == RequestClass::Poisoned {
            Action::Deny
        } else {
            match op {
                KeyOp::Add => self.forwarded.add,
                KeyOp::Remove => self.forwarded.remove,
                KeyOp::RemoveAll => self.forwarded.remove_all,
                KeyOp::Lock => self.forwarded.lock,
                KeyOp::Unlock => self.forwarded.unlock,
            }
        };
        Decision {
            action,
            rule: format!("forwarded.{}", op.event()),
            remember: None,
        }
    }

    /// Exact host names the rules mention (checked against hashed
    /// known_hosts entries).
    pub fn exact_names(&self) -> &[String] {
        &self.exact_names
    }

    pub(crate) fn collect_exact_names(rules: &[Rule]) -> Vec<String> {
        let mut names: Vec<String> = Vec::new();
        for rule in rules {
            let hosts = rule.host.iter().flatten();
            let vias = rule
                .via
                .iter()
                .chain(&rule.jump)
                .flatten()
                .filter_map(|v| match v {
                    ViaElement::Hop(p) => Some(p),
                    ViaElement::AnyNumber => None,
                });
            for p in hosts.chain(vias) {
                if let Some(name) = p.exact_name() {
                    if !names.iter().any(|n| n == name) {
                        names.push(name.to_string());
                    }
                }
            }
        }
        names
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::binding::Purpose;
    use crate::trust::peer::Peer;

    fn ctx(
        chain: &[(&str, bool)],
        user: Option<&str>,
        purpose: Purpose,
        comment: &str,
    ) -> RequestContext {
        let chain: Vec<HopView> = chain.iter().map(|(n, f)| HopView::named(n, *f)).collect();
        let destination = match chain.last() {
            None => Destination::Unbound,
            Some(_) if purpose != Purpose::Login => Destination::NotLogin,
            Some(last) if last.forwarding => {
                Destination::Unverified(crate::trust::binding::LoginMismatch::LastIsForwarding)
            }
            Some(_) => Destination::Verified,
        };
        with_destination(chain, destination, user, purpose, comment)
    }

    fn with_destination(
        chain: Vec<HopView>,
        destination: Destination,
        user: Option<&str>,
        purpose: Purpose,
        comment: &str,
    ) -> RequestContext {
        let peer = std::sync::Arc::new(Peer::with_facts(1000, Some(1), Default::default()));
        RequestContext::of_parts(
            ("SHA256:key", comment),
            chain,
            destination,
            user,
            purpose,
            &peer,
        )
    }

    fn policy(text: &str) -> Policy {
        file::parse_str(text, "test.toml").unwrap_or_else(|e| panic!("{e:?}"))
    }

    #[test]
    fn a_confirm_method_reads_back_from_its_name() {
        for method in ConfirmMethod::ALL {
            assert_eq!(method.as_str().parse::<ConfirmMethod>(), Ok(method));
        }
        let names: Vec<&str> = ConfirmMethod::ALL.iter().map(|m| m.as_str()).collect();
        assert_eq!(names, ["auto", "desktop", "askpass", "command", "macos"]);
        assert_eq!(
            "Desktop".parse::<ConfirmMethod>(),
            Err(
                "unknown confirm method \"Desktop\" (use auto, desktop, askpass, command or macos)"
                    .to_string()
            )
        );
    }

    #[test]
    fn notify_sits_between_allow_and_confirm() {
        use Action::*;
        assert_eq!(Action::parse("notify"), Some(Notify));
        assert_eq!(Notify.stricter(Allow), Notify);
        assert_eq!(Allow.stricter(Notify), Notify);
        assert_eq!(Notify.stricter(Confirm), Confirm);
        assert_eq!(Deny.stricter(Notify), Deny);
        assert!(Notify.allows_unasked() && Allow.allows_unasked());
        assert!(!Confirm.allows_unasked() && !Deny.allows_unasked());
    }

    #[test]
    fn defaults_by_class_and_poison() {
        let p = Policy::builtin();
        assert_eq!(
            p.decide(&ctx(&[], None, Purpose::Git, "k")).action,
            Action::Allow
        );
        assert_eq!(
            p.decide(&ctx(&[("t", false)], Some("u"), Purpose::Login, "k"))
                .action,
            Action::Allow
        );
        let fwd = p.decide(&ctx(
            &[("b", true), ("t", false)],
            Some("u"),
            Purpose::Login,
            "k",
        ));
        assert_eq!(
            (fwd.action, fwd.rule.as_str()),
            (Action::Confirm, "default:forwarded")
        );
        assert_eq!(
            p.decide(&ctx(&[("b", true)], Some("u"), Purpose::Login, "k"))
                .action,
            Action::Deny
        );
        let mut poisoned = ctx(&[], None, Purpose::Login, "k");
        poisoned.class = RequestClass::Poisoned;
        let d = p.decide(&poisoned);
        assert_eq!(
            (d.action, d.rule.as_str()),
            (Action::Deny, "default:poisoned")
        );
    }

    #[test]
    fn first_match_wins_and_every_matcher_counts() {
        let p = policy(
            r#"
            [[rule]]
            name = "deny root"
            user = ["root"]
            action = "deny"
            [[rule]]
            name = "prod via bastion"
            keys = ["work-*"]
            host = ["*.prod.example.com"]
            via = ["bastion"]
            purpose = "login"
            action = "allow"
            remember = "10m"
            [[rule]]
            name = "git locally"
            purpose = "git"
            via = []
            action = "allow"
            "#,
        );
        let prod = ctx(
            &[("bastion", true), ("db.prod.example.com", false)],
            Some("deploy"),
            Purpose::Login,
            "work-1",
        );
        let d = p.decide(&prod);
        assert_eq!(
            (d.action, d.rule.as_str()),
            (Action::Allow, "prod via bastion")
        );
        assert_eq!(d.remember, Some(Duration::from_secs(600)));
        let root = ctx(
            &[("bastion", true), ("db.prod.example.com", false)],
            Some("root"),
            Purpose::Login,
            "work-1",
        );
        assert_eq!(p.decide(&root).rule, "deny root");
        let other_key = ctx(
            &[("bastion", true), ("db.prod.example.com", false)],
            Some("deploy"),
            Purpose::Login,
            "home",
        );
        assert_eq!(p.decide(&other_key).rule, "default:forwarded");
        let other_hop = ctx(
            &[("jump", true), ("db.prod.example.com", false)],
            Some("deploy"),
            Purpose::Login,
            "work-1",
        );
        assert_eq!(p.decide(&other_hop).rule, "default:forwarded");
        assert_eq!(
            p.decide(&ctx(&[], None, Purpose::Git, "k")).rule,
            "git locally"
        );
        assert_eq!(
            p.decide(&ctx(&[("b", true), ("t", false)], None, Purpose::Git, "k"))
                .rule,
            "default:forwarded"
        );
    }

    #[test]
    fn listing_filter_and_key_ops() {
        let p = policy(
            r#"
            [defaults]
            forwarded = "deny"
            [[rule]]
            name = "github only"
            keys = ["gh"]
            host = ["github.com"]
            action = "allow"
            "#,
        );
        let on_bastion = [HopView::named("bastion", true)];
        assert!(
            p.could_allow("SHA256:x", "gh", &on_bastion, RequestClass::Forwarded)
                .is_ok()
        );
        assert_eq!(
            p.could_allow("SHA256:x", "other", &on_bastion, RequestClass::Forwarded),
            Err("default:forwarded".to_string())
        );
        assert_eq!(
            p.key_op(KeyOp::Add, RequestClass::Forwarded).action,
            Action::Confirm
        );
        assert_eq!(
            p.key_op(KeyOp::RemoveAll, RequestClass::Forwarded).action,
            Action::Deny
        );
        assert_eq!(
            p.key_op(KeyOp::Lock, RequestClass::Local).action,
            Action::Allow
        );
    }

    /// `jump` names the jump hosts of a direct login in order, in the
    /// grammar of `via`; `via` keeps its meaning (forwarding hops only), a
    /// forwarded request has no jump hosts, and a remembered yes for a
    /// jumped login covers the same jump hosts only.
    #[test]
    fn jump_rules_match_only_the_route_they_name() {
        let p = policy(
            r#"
            [defaults]
            local = "deny"
            [[rule]]
            name = "prod through the bastion"
            host = ["prod"]
            jump = ["bastion"]
            action = "allow"
            [[rule]]
            name = "prod through a and b"
            host = ["prod"]
            jump = ["a", "b"]
            action = "confirm"
            [[rule]]
            name = "direct only"
            host = ["bastion", "a"]
            jump = []
            via = []
            action = "allow"
            [[rule]]
            name = "fwd"
            via = ["*", "**"]
            jump = []
            action = "notify"
            "#,
        );
        let jumped = |jumps: &[&str], chain: &[(&str, bool)]| {
            let mut c = ctx(chain, Some("u"), Purpose::Login, "k");
            c.jump = jumps.iter().map(|n| HopView::named(n, false)).collect();
            c
        };
        let decide = |c: &RequestContext| p.decide(c).rule;
        let prod = [("prod", false)];
        let bastion = [("bastion", false)];
        // Jump hosts, chain, the rule that decides.
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, bool)], &'a str);
        let cases: [Case; 7] = [
            (&["bastion"], &prod, "prod through the bastion"),
            (&["a", "b"], &prod, "prod through a and b"),
            (&["b", "a"], &prod, "default:local"),
            (&[], &prod, "default:local"),
            (&["other"], &prod, "default:local"),
            (&[], &bastion, "direct only"),
            (&["x"], &bastion, "default:local"),
        ];
        for (jumps, chain, rule) in cases {
            assert_eq!(decide(&jumped(jumps, chain)), rule, "{jumps:?} {chain:?}");
        }
        // A jumped login is direct: `via = []` still matches it.
        let via_empty = policy("[[rule]]\nname = \"no forwarding\"\nvia = []\naction = \"deny\"\n");
        assert_eq!(
            via_empty.decide(&jumped(&["bastion"], &prod)).rule,
            "no forwarding"
        );
        let j = jumped(&["bastion"], &prod);
        assert_eq!(j.class, RequestClass::Direct);
        // Forwarded requests have no jump hosts: `jump = []` matches them.
        let forwarded = jumped(&[], &[("bastion", true), ("prod", false)]);
        assert_eq!(decide(&forwarded), "fwd");
        // The listing filter cannot rule out a key by `jump` on a direct
        // connection, and knows a forwarded one has none.
        let deny_jumped = policy(
            "[defaults]\nforwarded = \"allow\"\n\
             [[rule]]\nname = \"no jumps\"\njump = [\"**\"]\naction = \"deny\"\n",
        );
        assert_eq!(
            deny_jumped.could_allow(
                "SHA256:x",
                "k",
                &[HopView::named("b", true)],
                RequestClass::Forwarded
            ),
            Err("no jumps".to_string())
        );
        // A yes for a jumped login is not one for the same host reached
        // directly.
        let direct = grants::GrantScope::of(&jumped(&[], &prod));
        let through = grants::GrantScope::of(&jumped(&["bastion"], &prod));
        assert_ne!(direct, through);
        assert_eq!(through.jump, vec!["SHA256:bastion".to_string()]);
    }

    /// An account that is not UTF-8 (shown escaped) meets deny rules by its
    /// escaped form and no other rule's user pattern; a login whose user
    /// could not be read meets every deny rule naming users.
    #[test]
    fn accounts_that_are_not_text_only_meet_deny_rules() {
        let policy = file::parse_str(
            "[defaults]\nlocal = \"confirm\"\n\
             [[rule]]\nname = \"no root\"\nuser = [\"root\"]\naction = \"deny\"\n\
             [[rule]]\nname = \"escaped\"\nuser = [\"r?xfe*\"]\naction = \"deny\"\n\
             [[rule]]\nname = \"r names\"\nuser = [\"r*\"]\naction = \"allow\"\n",
            "test.toml",
        )
        .unwrap();
        let decide = |user: Option<&str>, exact: bool| {
            let mut c = ctx(&[], user, Purpose::Login, "");
            c.user_exact = exact;
            policy.decide(&c).rule
        };
        assert_eq!(decide(Some("r\\xfeoot"), false), "escaped");
        assert_eq!(decide(Some("r\\xff"), false), "default:local");
        assert_eq!(decide(Some("r\\xff"), true), "r names");
        assert_eq!(decide(None, false), "no root");
        assert_eq!(decide(None, true), "default:local");
    }
}
