//! Matching rule fields against a request: key fingerprints and comment
//! globs, host patterns against verified names or fingerprints, the `via`
//! sequence of forwarding hops, user globs.
//!
//! `via` grammar: each element matches one forwarding hop, in order; `*`
//! matches any one hop (known or not); `**` matches any number of hops,
//! including none; `[]` means no forwarding hop at all.

use globset::{GlobBuilder, GlobMatcher};

use crate::trust::context::HopView;

/// A compiled host-or-name pattern.
#[derive(Debug, Clone)]
pub enum NamePattern {
    /// `SHA256:...`: the host key fingerprint.
    Fingerprint(String),
    /// `*`: anything, including a host with no verified name.
    Any,
    /// A glob on verified names (case-insensitive).
    Glob { text: String, glob: GlobMatcher },
}

/// Compiles a glob; `*`, `?`, `[...]` and `{a,b}` as in shell globs.
pub(crate) fn compile_glob(text: &str, case_insensitive: bool) -> Result<GlobMatcher, String> {
    GlobBuilder::new(text)
        .case_insensitive(case_insensitive)
        .literal_separator(false)
        .build()
        .map(|g| g.compile_matcher())
        .map_err(|e| format!("bad glob {text:?}: {}", e.kind()))
}

impl NamePattern {
    pub(crate) fn compile(text: &str) -> Result<NamePattern, String> {
        if text.starts_with("SHA256:") {
            return Ok(NamePattern::Fingerprint(text.to_string()));
        }
        if text == "*" {
            return Ok(NamePattern::Any);
        }
        if text.is_empty() {
            return Err("empty host pattern".into());
        }
        Ok(NamePattern::Glob {
            text: text.to_ascii_lowercase(),
            glob: compile_glob(text, true)?,
        })
    }

    pub(crate) fn matches(&self, hop: &HopView) -> bool {
        match self {
            NamePattern::Fingerprint(fp) => hop.fingerprint == *fp,
            NamePattern::Any => true,
            NamePattern::Glob { glob, .. } => hop.names.iter().any(|n| glob.is_match(n)),
        }
    }

    /// The exact name this pattern stands for, if it has no wildcard (such
    /// names may also be found in hashed known_hosts entries).
    pub(crate) fn exact_name(&self) -> Option<&str> {
        match self {
            NamePattern::Glob { text, .. } if !text.contains(['*', '?', '[', '{']) => Some(text),
            _ => None,
        }
    }
}

/// One element of `via`.
#[derive(Debug, Clone)]
pub enum ViaElement {
    AnyNumber,
    Hop(NamePattern),
}

impl ViaElement {
    pub(crate) fn compile(text: &str) -> Result<ViaElement, String> {
        if text == "**" {
            Ok(ViaElement::AnyNumber)
        } else {
            NamePattern::compile(text).map(ViaElement::Hop)
        }
    }
}

/// Whether the forwarding hops match the `via` sequence.
pub(crate) fn via_matches(pattern: &[ViaElement], hops: &[&HopView]) -> bool {
    match pattern.split_first() {
        None => hops.is_empty(),
        Some((ViaElement::AnyNumber, rest)) => {
            (0..=hops.len()).any(|skip| via_matches(rest, &hops[skip..]))
        }
        Some((ViaElement::Hop(p), rest)) => {
            hops.first().is_some_and(|h| p.matches(h)) && via_matches(rest, &hops[1..])
        }
    }
}

/// A `keys` entry: a fingerprint, or a glob on the key comment.
#[derive(Debug, Clone)]
pub enum KeyPattern {
    Fingerprint(String),
    Comment(GlobMatcher),
}

impl KeyPattern {
    pub(crate) fn compile(text: &str) -> Result<KeyPattern, String> {
        if text.starts_with("SHA256:") {
            Ok(KeyPattern::Fingerprint(text.to_string()))
        } else {
            compile_glob(text, false).map(KeyPattern::Comment)
        }
    }

    pub(crate) fn matches(&self, fingerprint: &str, comment: &str) -> bool {
        match self {
            KeyPattern::Fingerprint(fp) => fp == fingerprint,
            KeyPattern::Comment(glob) => glob.is_match(comment),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hop(name: &str) -> HopView {
        HopView::named(name, true)
    }

    fn via(p: &[&str], hops: &[&str]) -> bool {
        let p: Vec<_> = p.iter().map(|t| ViaElement::compile(t).unwrap()).collect();
        let h: Vec<HopView> = hops.iter().map(|n| hop(n)).collect();
        let refs: Vec<&HopView> = h.iter().collect();
        via_matches(&p, &refs)
    }

    #[test]
    fn via_sequences() {
        assert!(via(&[], &[]));
        assert!(!via(&[], &["bastion"]));
        assert!(via(&["bastion"], &["bastion"]));
        assert!(!via(&["bastion"], &["bastion", "jump"]));
        assert!(via(&["*"], &[""]), "* matches an unknown hop");
        assert!(!via(&["*"], &[]));
        assert!(via(&["**"], &[]));
        assert!(via(&["**"], &["a", "b", "c"]));
        assert!(via(&["bastion", "**"], &["bastion", "x"]));
        assert!(!via(&["bastion", "**"], &["x", "bastion"]));
        assert!(via(&["*.corp", "bastion"], &["gw.corp", "bastion"]));
        assert!(via(&["SHA256:jump"], &["jump"]));
    }

    #[test]
    fn names_are_case_insensitive_and_globs_are_checked() {
        let p = NamePattern::compile("*.PROD.example.com").unwrap();
        assert!(p.matches(&hop("db1.prod.example.com")));
        assert!(!p.matches(&hop("db1.dev.example.com")));
        assert!(!p.matches(&hop("")));
        assert!(NamePattern::compile("bad[glob").is_err());
        assert_eq!(
            NamePattern::compile("Bastion").unwrap().exact_name(),
            Some("bastion")
        );
        assert_eq!(NamePattern::compile("b*").unwrap().exact_name(), None);
    }

    #[test]
    fn key_patterns() {
        let k = KeyPattern::compile("work-*").unwrap();
        assert!(k.matches("SHA256:x", "work-laptop"));
        assert!(!k.matches("SHA256:x", "home"));
        assert!(
            KeyPattern::compile("SHA256:abc")
                .unwrap()
                .matches("SHA256:abc", "")
        );
    }
}
