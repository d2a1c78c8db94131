//! The rule fields on the requesting process: `caller` (its executable),
//! `ancestor` (any process above it) and `cwd` (its working directory).
//!
//! Invariant: a field is either proven to match, proven not to match, or
//! unprovable (the process is gone, `/proc` could not be read, an ancestor
//! belongs to another user). An unprovable rule can only make a decision
//! stricter: see [`super::Policy::decide`].

use std::path::Path;

use globset::GlobMatcher;

use super::matcher::compile_glob;
use crate::trust::peer::{Facts, file_name};

/// What is known about a rule's process fields for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proof {
    Yes,
    No,
    /// Nothing read about the process can settle it.
    Unknown,
}

impl Proof {
    fn of(known: Option<bool>) -> Proof {
        match known {
            Some(true) => Proof::Yes,
            Some(false) => Proof::No,
            None => Proof::Unknown,
        }
    }

    /// Both must hold: a definite no wins over anything unknown.
    fn and(self, other: Proof) -> Proof {
        match (self, other) {
            (Proof::No, _) | (_, Proof::No) => Proof::No,
            (Proof::Unknown, _) | (_, Proof::Unknown) => Proof::Unknown,
            _ => Proof::Yes,
        }
    }
}

/// `~` and `~/...` with `$HOME` (left as it is without one, which a
/// `cwd` pattern then refuses as not absolute).
pub(crate) fn expand_home(text: &str) -> String {
    let Some(home) = std::env::var_os("HOME").and_then(|h| h.into_string().ok()) else {
        return text.to_string();
    };
    if text == "~" {
        home
    } else if let Some(rest) = text.strip_prefix("~/") {
        format!("{}/{rest}", home.trim_end_matches('/'))
    } else {
        text.to_string()
    }
}

/// A glob on an executable: with a `/` it is matched against the whole
/// path, without one against the file name (`git`, `code`, `*-runner`).
#[derive(Debug, Clone)]
pub(crate) struct ExePattern {
    glob: GlobMatcher,
    whole_path: bool,
}

impl ExePattern {
    /// `text` with `~/` already expanded.
    pub(crate) fn compile(text: &str) -> Result<ExePattern, String> {
        if text.is_empty() {
            return Err("empty executable pattern".into());
        }
        Ok(ExePattern {
            glob: compile_glob(text, false)?,
            whole_path: text.contains('/'),
        })
    }

    pub(crate) fn matches(&self, exe: &Path) -> bool {
        if self.whole_path {
            self.glob.is_match(exe)
        } else {
            self.glob.is_match(file_name(exe))
        }
    }
}

/// A glob on a directory (`~/` already expanded). It matches a working
/// directory that it names or that lies below one it names, so
/// `~/src/repo` covers the repository's subdirectories too.
#[derive(Debug, Clone)]
pub struct DirPattern {
    glob: GlobMatcher,
}

impl DirPattern {
    pub(crate) fn compile(text: &str) -> Result<DirPattern, String> {
        if !text.starts_with('/') {
            return Err(format!(
                "cwd pattern {text:?} must be an absolute path or start with ~/"
            ));
        }
        let trimmed = match text.trim_end_matches('/') {
            "" => "/",
            t => t,
        };
        Ok(DirPattern {
            glob: compile_glob(trimmed, false)?,
        })
    }

    pub(crate) fn matches(&self, dir: &Path) -> bool {
        dir.ancestors().any(|d| self.glob.is_match(d))
    }
}

/// A rule's process fields; all `None` for a rule without them.
#[derive(Debug, Clone, Default)]
pub struct ProcessPatterns {
    pub(crate) caller: Option<Vec<ExePattern>>,
    pub(crate) ancestor: Option<Vec<ExePattern>>,
    pub cwd: Option<Vec<DirPattern>>,
}

impl ProcessPatterns {
    /// Whether the rule names the process at all.
    pub fn is_empty(&self) -> bool {
        self.caller.is_none() && self.ancestor.is_none() && self.cwd.is_none()
    }

    /// Whether the requesting process described by `facts` matches every
    /// field given.
    pub(crate) fn check(&self, facts: &Facts) -> Proof {
        let caller = self.caller.as_ref().map_or(Proof::Yes, |patterns| {
            Proof::of(facts.exe.as_deref().map(|exe| {
                let script = facts.script.as_deref();
                patterns
                    .iter()
                    .any(|p| p.matches(exe) || script.is_some_and(|s| p.matches(s)))
            }))
        });
        let cwd = self.cwd.as_ref().map_or(Proof::Yes, |patterns| {
            Proof::of(
                facts
                    .cwd
                    .as_deref()
                    .map(|dir| patterns.iter().any(|p| p.matches(dir))),
            )
        });
        let ancestor = self.ancestor.as_ref().map_or(Proof::Yes, |patterns| {
            let found = facts.ancestors.iter().any(|a| {
                a.programs()
                    .any(|exe| patterns.iter().any(|p| p.matches(exe)))
            });
            if found {
                Proof::Yes
            } else if facts.ancestry_complete {
                Proof::No
            } else {
                Proof::Unknown
            }
        });
        caller.and(cwd).and(ancestor)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::trust::peer::Ancestor;

    fn exe(patterns: &[&str]) -> Option<Vec<ExePattern>> {
        Some(
            patterns
                .iter()
                .map(|p| ExePattern::compile(p).unwrap())
                .collect(),
        )
    }

    #[test]
    fn caller_by_name_or_path() {
        let rule = ProcessPatterns {
            caller: exe(&["git", "/opt/*/bin/ssh"]),
            ..Default::default()
        };
        let facts = |p: &str| Facts::given(Some(PathBuf::from(p)), None, &[]);
        assert_eq!(rule.check(&facts("/usr/bin/git")), Proof::Yes);
        assert_eq!(rule.check(&facts("/opt/x/bin/ssh")), Proof::Yes);
        assert_eq!(rule.check(&facts("/usr/bin/ssh")), Proof::No);
        assert_eq!(rule.check(&facts("/usr/bin/legit")), Proof::No);
        assert_eq!(rule.check(&Facts::default()), Proof::Unknown);
    }

    #[test]
    fn cwd_covers_the_directories_below() {
        let rule = ProcessPatterns {
            cwd: Some(vec![DirPattern::compile("/home/u/src/repo").unwrap()]),
            ..Default::default()
        };
        let at = |d: &str| Facts::given(None, Some(PathBuf::from(d)), &[]);
        assert_eq!(rule.check(&at("/home/u/src/repo")), Proof::Yes);
        assert_eq!(rule.check(&at("/home/u/src/repo/lib/x")), Proof::Yes);
        assert_eq!(rule.check(&at("/home/u/src/repo2")), Proof::No);
        assert_eq!(rule.check(&at("/home/u/src")), Proof::No);
        assert!(DirPattern::compile("src/repo").is_err());
    }

    #[test]
    fn ancestry_unknown_unless_complete() {
        let rule = ProcessPatterns {
            ancestor: exe(&["code"]),
            ..Default::default()
        };
        let mut facts = Facts::given(
            None,
            None,
            &[
                PathBuf::from("/bin/bash"),
                PathBuf::from("/usr/share/code/code"),
            ],
        );
        assert_eq!(rule.check(&facts), Proof::Yes);
        facts.ancestors.pop();
        assert_eq!(rule.check(&facts), Proof::No);
        facts.ancestry_complete = false;
        facts.ancestors.push(Ancestor {
            pid: 9,
            name: "sshd".into(),
            exe: None,
            script: None,
        });
        assert_eq!(rule.check(&facts), Proof::Unknown);
    }

    #[test]
    fn a_definite_no_settles_an_unknown() {
        let rule = ProcessPatterns {
            caller: exe(&["git"]),
            cwd: Some(vec![DirPattern::compile("/w").unwrap()]),
            ..Default::default()
        };
        let facts = Facts::given(Some(PathBuf::from("/bin/ssh")), None, &[]);
        assert_eq!(rule.check(&facts), Proof::No);
        let facts = Facts::given(Some(PathBuf::from("/bin/git")), None, &[]);
        assert_eq!(rule.check(&facts), Proof::Unknown);
    }

    /// The decision an unprovable process makes: deny rules match, allow
    /// rules do not, and a confirm or notify rule that might have matched
    /// first raises what decides after it.
    mod decisions {
        use std::sync::Arc;

        use crate::policy::file::parse_str;
        use crate::policy::{Action, Policy};
        use crate::trust::binding::Purpose;
        use crate::trust::context::{Destination, RequestContext};
        use crate::trust::peer::Facts;
        use crate::trust::peer::Peer;

        fn decide(policy: &str, facts: Facts) -> (Action, String, bool) {
            let policy: Policy = parse_str(policy, "p.toml").unwrap();
            let peer = Arc::new(Peer::with_facts(1000, Some(42), facts));
            let ctx = RequestContext::of_parts(
                ("SHA256:k", "k"),
                Vec::new(),
                Destination::Unbound,
                None,
                Purpose::Git,
                &peer,
            );
            let d = policy.decide(&ctx);
            assert_eq!(d, policy.decide_by_full_match(&ctx));
            (d.action, d.rule, d.remember.is_some())
        }

        fn ide() -> Facts {
            Facts::given(
                Some("/usr/bin/git".into()),
                Some("/home/u/src/a".into()),
                &["/bin/bash".into(), "/usr/share/code/code".into()],
            )
        }

        fn shell() -> Facts {
            Facts::given(
                Some("/usr/bin/git".into()),
                Some("/tmp".into()),
                &["/bin/bash".into()],
            )
        }

        const CONFIRM_THEN_ALLOW: &str = "[defaults]\nlocal = \"allow\"\n\
            [[rule]]\nname = \"ide\"\nancestor = [\"code\"]\naction = \"confirm\"\nremember = \"1m\"\n\
            [[rule]]\nname = \"rest\"\naction = \"allow\"\n";

        #[test]
        fn a_confirm_rule_that_cannot_be_proven_still_asks() {
            assert_eq!(
                decide(CONFIRM_THEN_ALLOW, ide()),
                (Action::Confirm, "ide".into(), true)
            );
            assert_eq!(
                decide(CONFIRM_THEN_ALLOW, shell()),
                (Action::Allow, "rest".into(), false)
            );
            assert_eq!(
                decide(CONFIRM_THEN_ALLOW, Facts::default()),
                (Action::Confirm, "ide".into(), false)
            );
        }

        #[test]
        fn an_unprovable_deny_matches_and_an_unprovable_allow_does_not() {
            let deny = "[defaults]\nlocal = \"allow\"\n\
                [[rule]]\nname = \"no ide\"\nancestor = [\"code\"]\naction = \"deny\"\n";
            assert_eq!(decide(deny, Facts::default()).0, Action::Deny);
            assert_eq!(decide(deny, shell()).0, Action::Allow);
            assert_eq!(decide(deny, ide()).0, Action::Deny);
            let allow = "[defaults]\nlocal = \"confirm\"\n\
                [[rule]]\nname = \"git here\"\ncaller = [\"git\"]\ncwd = [\"/home/u/src\"]\naction = \"allow\"\n";
            assert_eq!(decide(allow, ide()).0, Action::Allow);
            assert_eq!(decide(allow, shell()).0, Action::Confirm);
            assert_eq!(
                decide(allow, Facts::default()),
                (Action::Confirm, "default:local".into(), false)
            );
        }

        /// An unprovable `confirm` before a `confirm` that remembers: the
        /// question stays, and nothing is remembered from its answer.
        #[test]
        fn an_unprovable_rule_as_strict_as_the_decision_keeps_it_from_being_remembered() {
            let policy = "[defaults]\nlocal = \"allow\"\n\
                [[rule]]\nname = \"ide\"\nancestor = [\"code\"]\naction = \"confirm\"\n\
                [[rule]]\nname = \"rest\"\naction = \"confirm\"\nremember = \"10m\"\n";
            assert_eq!(
                decide(policy, shell()),
                (Action::Confirm, "rest".into(), true)
            );
            assert_eq!(
                decide(policy, Facts::default()),
                (Action::Confirm, "rest".into(), false)
            );
        }

        #[test]
        fn an_unprovable_rule_never_loosens_a_stricter_decision() {
            let policy = "[defaults]\nlocal = \"deny\"\n\
                [[rule]]\nname = \"notify ide\"\nancestor = [\"code\"]\naction = \"notify\"\n";
            assert_eq!(decide(policy, Facts::default()).0, Action::Deny);
            assert_eq!(decide(policy, ide()).0, Action::Notify);
        }
    }
}
