//! Which keys a connection is offered: whether some rule could allow a key
//! on a chain before the request that would use it is known.
//!
//! A key listed to ssh is a key ssh tries, and a server counts every try
//! against `MaxAuthTries`: offering six keys to a host that the policy lets
//! only one of them reach fails the login before the right key is tried.
//! So a connection bound to its destination (its last bind an
//! authentication one) is offered only the keys a login there could be
//! allowed with, for some user, since the user is only named once ssh
//! signs. The listing is a courtesy, not a boundary: a key left out is
//! still refused by [`Policy::decide`] if it is asked for anyway.

use crate::trust::binding::Purpose;
use crate::trust::context::HopView;

use super::Rule;

impl Rule {
    /// Whether this rule can take part in a login to `bound` (the host a
    /// connection is bound to; `None`: not bound yet, anything can
    /// follow). A rule for git, file or other signatures never decides a
    /// login, and a `host` rule only one to a host it names.
    pub(super) fn may_decide_login_to(&self, bound: Option<&HopView>) -> bool {
        match bound {
            None => true,
            Some(_) => self.purpose.is_none_or(|p| p == Purpose::Login) && self.host_match(bound),
        }
    }

    /// For a deny rule whose keys and `via` match: whether it matches
    /// every request the connection can still make, whoever logs in, so
    /// that no later rule is ever reached. Anything the rule narrows by
    /// that is only known once the request comes (the user; the purpose
    /// and the host while the connection is not bound) makes it
    /// uncertain, and an uncertain deny hides nothing. A field added to
    /// rules that narrows them by something the listing cannot know must
    /// be named here.
    pub(super) fn denies_every_login_to(&self, bound: Option<&HopView>) -> bool {
        let purpose_known = match bound {
            Some(_) => self.purpose.is_none_or(|p| p == Purpose::Login),
            None => self.purpose.is_none(),
        };
        self.user.is_none() && purpose_known && (self.host.is_none() || bound.is_some())
    }
}

#[cfg(test)]
mod tests {
    use crate::policy::Policy;
    use crate::policy::file::parse_str;
    use crate::trust::context::{HopView, RequestClass};

    fn policy(text: &str) -> Policy {
        parse_str(text, "test.toml").unwrap_or_else(|e| panic!("{e:?}"))
    }

    fn direct(host: &str) -> Vec<HopView> {
        vec![HopView::named(host, false)]
    }

    fn through(bastion: &str, host: &str) -> Vec<HopView> {
        vec![HopView::named(bastion, true), HopView::named(host, false)]
    }

    /// Six keys, one allowed to the target, every other one denied there:
    /// only that one is offered on a connection bound to the target, and
    /// every key elsewhere.
    const ONE_KEY_THERE: &str = r#"
        [defaults]
        local = "allow"
        forwarded = "confirm"
        [[rule]]
        name = "k6 to target"
        keys = ["k6"]
        host = ["target"]
        action = "allow"
        [[rule]]
        name = "nothing else to target"
        host = ["target"]
        action = "deny"
    "#;

    #[test]
    fn a_direct_connection_is_offered_what_could_sign_there() {
        let p = policy(ONE_KEY_THERE);
        let offered = |chain: &[HopView], class| {
            (1..=6)
                .map(|i| format!("k{i}"))
                .filter(|c| p.could_allow("SHA256:x", c, chain, class).is_ok())
                .collect::<Vec<_>>()
        };
        assert_eq!(offered(&direct("target"), RequestClass::Direct), ["k6"]);
        assert_eq!(
            offered(&through("bastion", "target"), RequestClass::Forwarded),
            ["k6"]
        );
        assert_eq!(offered(&direct("other"), RequestClass::Direct).len(), 6);
        // Bound to the bastion only (the last bind forwards): no host yet,
        // a deny naming a host is not certain.
        let on_bastion = [HopView::named("bastion", true)];
        assert_eq!(offered(&on_bastion, RequestClass::Forwarded).len(), 6);
        assert_eq!(
            p.could_allow("SHA256:x", "k1", &direct("target"), RequestClass::Direct),
            Err("nothing else to target".to_string())
        );
    }

    #[test]
    fn the_default_decides_a_key_no_rule_takes() {
        let p = policy(
            r#"
            [defaults]
            local = "deny"
            forwarded = "deny"
            [[rule]]
            name = "gh"
            keys = ["gh"]
            host = ["github.com"]
            action = "allow"
            "#,
        );
        assert!(
            p.could_allow(
                "SHA256:x",
                "gh",
                &direct("github.com"),
                RequestClass::Direct
            )
            .is_ok()
        );
        assert_eq!(
            p.could_allow(
                "SHA256:x",
                "gh",
                &direct("gitlab.com"),
                RequestClass::Direct
            ),
            Err("default:local".to_string())
        );
        assert_eq!(
            p.could_allow(
                "SHA256:x",
                "work",
                &direct("github.com"),
                RequestClass::Direct
            ),
            Err("default:local".to_string())
        );
    }

    /// The user is named only once ssh signs: a rule for some user keeps a
    /// key offered (allow, confirm and notify alike), a deny for some users
    /// hides nothing.
    #[test]
    fn any_user_could_be_the_one_a_rule_allows() {
        let p = policy(
            r#"
            [defaults]
            local = "deny"
            [[rule]]
            name = "no root"
            keys = ["a"]
            user = ["root"]
            action = "deny"
            [[rule]]
            name = "deploy asks"
            keys = ["b"]
            user = ["deploy"]
            action = "confirm"
            [[rule]]
            name = "tell"
            keys = ["c"]
            action = "notify"
            "#,
        );
        let chain = direct("target");
        let could = |c: &str| p.could_allow("SHA256:x", c, &chain, RequestClass::Direct);
        assert_eq!(could("a"), Err("default:local".to_string()));
        assert!(could("b").is_ok());
        assert!(could("c").is_ok());
    }

    /// A connection bound to its destination asks for logins: a rule for
    /// another purpose neither offers a key there nor hides one; a deny
    /// for logins hides it for sure.
    #[test]
    fn a_bound_connection_is_for_logins() {
        let p = policy(
            r#"
            [defaults]
            local = "deny"
            forwarded = "deny"
            [[rule]]
            name = "git signing"
            keys = ["g"]
            purpose = "git"
            action = "allow"
            [[rule]]
            name = "no logins with l"
            keys = ["l"]
            purpose = "login"
            action = "deny"
            [[rule]]
            name = "the rest"
            action = "allow"
            "#,
        );
        let chain = direct("target");
        let could = |c: &str| p.could_allow("SHA256:x", c, &chain, RequestClass::Direct);
        assert!(could("g").is_ok(), "falls through to \"the rest\"");
        assert_eq!(could("l"), Err("no logins with l".to_string()));
        // Without a destination the purpose is open: the git rule offers
        // it, the login deny hides nothing.
        let on_bastion = [HopView::named("bastion", true)];
        let open = |c: &str| p.could_allow("SHA256:x", c, &on_bastion, RequestClass::Forwarded);
        assert!(open("l").is_ok());
        let git_only = policy(
            "[defaults]\nforwarded = \"deny\"\n\
             [[rule]]\nname = \"git\"\nkeys = [\"g\"]\npurpose = \"git\"\naction = \"allow\"\n",
        );
        assert!(
            git_only
                .could_allow("SHA256:x", "g", &on_bastion, RequestClass::Forwarded)
                .is_ok()
        );
        assert!(
            git_only
                .could_allow(
                    "SHA256:x",
                    "g",
                    &through("bastion", "t"),
                    RequestClass::Forwarded
                )
                .is_err()
        );
    }

    /// What the listing says matches what a login decides: for every key,
    /// chain and user, a login the policy lets through (or asks about) is
    /// one whose key the listing offered.
    #[test]
    fn a_key_that_could_sign_is_never_hidden() {
        use crate::trust::binding::Purpose;
        use crate::trust::context::{Destination, RequestContext};
        let p = policy(
            r#"
            [defaults]
            local = "deny"
            forwarded = "confirm"
            forwarded_unknown = "deny"
            [[rule]]
            name = "no root anywhere"
            user = ["root"]
            action = "deny"
            [[rule]]
            name = "k1 to a"
            keys = ["k1"]
            host = ["a"]
            action = "allow"
            [[rule]]
            name = "git k2"
            keys = ["k2"]
            purpose = "git"
            action = "allow"
            [[rule]]
            name = "k3 via b"
            keys = ["k3"]
            via = ["b"]
            action = "deny"
            [[rule]]
            name = "deploy on a"
            host = ["a"]
            user = ["deploy"]
            action = "confirm"
            [[rule]]
            name = "nothing to c"
            host = ["c"]
            action = "deny"
            "#,
        );
        let peer = std::sync::Arc::new(crate::trust::peer::Peer::with_facts(
            1000,
            Some(1),
            Default::default(),
        ));
        let chains = [
            direct("a"),
            direct("c"),
            direct("z"),
            direct(""),
            through("b", "a"),
            through("b", "c"),
            through("x", "z"),
            through("b", ""),
        ];
        let mut hidden = 0;
        for chain in &chains {
            let list_class = if chain.len() == 1 {
                RequestClass::Direct
            } else {
                RequestClass::Forwarded
            };
            for key in ["k1", "k2", "k3", "k4"] {
                let offered = p.could_allow("SHA256:x", key, chain, list_class).is_ok();
                hidden += usize::from(!offered);
                for user in ["root", "deploy", "alice"] {
                    let ctx = RequestContext::of_parts(
                        ("SHA256:x", key),
                        chain.clone(),
                        Destination::Verified,
                        Some(user),
                        Purpose::Login,
                        &peer,
                    );
                    let decision = p.decide(&ctx);
                    if decision.action != crate::policy::Action::Deny {
                        assert!(
                            offered,
                            "{key} via {chain:?} as {user}: {decision:?}, yet not offered"
                        );
                    }
                }
            }
        }
        assert!(hidden > 0, "the policy hides some keys somewhere");
    }
}
