//! Asking the person at the desk. A [`Confirmer`] turns a [`Prompt`] into an
//! [`Answer`]; the session awaits it on its own task, so one pending question
//! never delays another connection.
//!
//! Invariant: anything other than an explicit "yes" is a refusal. Timeouts,
//! crashes, odd output and "no way to ask" all deny.

pub mod askpass;
pub mod desktop;
pub mod macos;

use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// What the person is asked about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prompt {
    pub key_fingerprint: String,
    pub key_comment: String,
    /// Each hop as `name (fwd)` / `unknown host SHA256:... (auth)`.
    pub hops: Vec<String>,
    /// Hop names for `HOPWARD_CHAIN` (`?` for a hop with no known name).
    pub chain_names: Vec<String>,
    pub forwarded: bool,
    pub user: Option<String>,
    /// `login`, `git`, `file` or `other`; `None` for key operations.
    pub purpose: Option<&'static str>,
    /// What is asked when it is not a signature (e.g. "add this key").
    pub operation: Option<String>,
    pub peer_pid: Option<u32>,
    pub peer_exe: Option<String>,
    /// The asking process's ancestors, nearest first.
    pub peer_parents: Vec<String>,
    /// When set, the desktop prompt also offers "Allow for <duration>".
    pub remember: Option<std::time::Duration>,
}

impl Prompt {
    /// The question. It opens as OpenSSH's agent words it for `ssh-add -c`
    /// keys, then says where the request came from and what it is for.
    pub fn text(&self) -> String {
        let mut text = format!(
            "Allow use of key {}?\nKey fingerprint {}.",
            clean(&self.key_comment, 256),
            self.key_fingerprint
        );
        if let Some(op) = &self.operation {
            text.push_str(&format!("\nRequest: {}", clean(op, 200)));
        }
        if self.forwarded {
            text.push_str("\nWARNING: this request came through a forwarded agent.");
        }
        if !self.hops.is_empty() {
            let hops: Vec<String> = self.hops.iter().map(|h| clean(h, 200)).collect();
            text.push_str(&format!("\nChain: {}", hops.join(" > ")));
        }
        match (self.purpose, &self.user) {
            (Some("login"), Some(user)) => {
                let dest = self.chain_names.last().map_or("?", String::as_str);
                text.push_str(&format!(
                    "\nPurpose: log in to {} as {}",
                    clean(dest, 200),
                    clean(user, 64)
                ));
            }
            (Some("git"), _) => text.push_str("\nPurpose: git commit signing"),
            (Some("file"), _) => text.push_str("\nPurpose: file signing"),
            (Some("login"), None) => text.push_str("\nPurpose: login"),
            (Some(_), _) => text.push_str("\nPurpose: signing unknown data"),
            (None, _) => {}
        }
        if let Some(pid) = self.peer_pid {
            let exe = self
                .peer_exe
                .as_deref()
                .map_or_else(|| "?".to_string(), |e| clean(e, 200));
            text.push_str(&format!("\nAsked by: {exe} (pid {pid})"));
            for parent in &self.peer_parents {
                text.push_str(&format!(" < {}", clean(parent, 64)));
            }
        }
        text
    }

    /// The `HOPWARD_*` environment of the command and askpass confirmers.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("HOPWARD_KEY", self.key_fingerprint.clone()),
            ("HOPWARD_KEY_COMMENT", clean(&self.key_comment, 256)),
            (
                "HOPWARD_CHAIN",
                self.chain_names
                    .iter()
                    .map(|n| clean(n, 200))
                    .collect::<Vec<_>>()
                    .join(">"),
            ),
            (
                "HOPWARD_USER",
                clean(self.user.as_deref().unwrap_or(""), 64),
            ),
            ("HOPWARD_PURPOSE", self.purpose.unwrap_or("").to_string()),
            (
                "HOPWARD_FORWARDED",
                if self.forwarded { "1" } else { "0" }.to_string(),
            ),
        ];
        if let Some(pid) = self.peer_pid {
            env.push(("HOPWARD_PID", pid.to_string()));
        }
        env
    }
}

/// Strips control characters and bounds the length of text that came from
/// outside (comments, host names, paths), so it cannot forge prompt lines.
pub fn clean(text: &str, max_chars: usize) -> String {
    let mut out: String = text
        .chars()
        .filter(|c| !c.is_control())
        .take(max_chars)
        .collect();
    if text.chars().filter(|c| !c.is_control()).count() > max_chars {
        out.push('…');
    }
    out
}

/// The outcome of one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Allowed,
    /// "Allow for <duration>": allowed, and remember it.
    AllowedRemember,
    /// The desktop prompt's plain "Allow": this request only.
    AllowedOnce,
    Refused,
    TimedOut,
    /// Nothing could ask (no askpass program, no display ...).
    Unavailable(String),
    /// The asker failed (crashed, printed garbage ...).
    Failed(String),
    /// Not asked: too many questions are open already.
    Flood,
}

impl Answer {
    pub fn allowed(&self) -> bool {
        matches!(
            self,
            Answer::Allowed | Answer::AllowedRemember | Answer::AllowedOnce
        )
    }

    /// The audit reason for this answer.
    pub fn reason(&self) -> &'static str {
        match self {
            Answer::Allowed | Answer::AllowedRemember | Answer::AllowedOnce => "confirmed",
            Answer::Refused | Answer::Failed(_) => "refused",
            Answer::TimedOut => "timeout",
            Answer::Flood => "flood",
            Answer::Unavailable(_) => "no-confirmer",
        }
    }
}

pub type AnswerFuture<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

/// Something that can put a question to the user.
pub trait Confirmer: Send + Sync + std::fmt::Debug + 'static {
    /// Asks; must resolve within `timeout`. Dropping the future withdraws the
    /// question (the client went away).
    fn confirm<'a>(&'a self, prompt: &'a Prompt, timeout: Duration) -> AnswerFuture<'a>;
}

/// A confirmer for places where nothing can ask (a method that is not
/// available on this system): every question is denied with the reason.
#[derive(Debug)]
pub struct Unavailable(pub String);

impl Confirmer for Unavailable {
    fn confirm<'a>(&'a self, _prompt: &'a Prompt, _timeout: Duration) -> AnswerFuture<'a> {
        Box::pin(std::future::ready(Answer::Unavailable(self.0.clone())))
    }
}

/// The confirmer for the policy's `[confirm]` settings.
pub fn for_settings(settings: &crate::policy::ConfirmSettings) -> Arc<dyn Confirmer> {
    use crate::policy::ConfirmMethod;
    match settings.method {
        ConfirmMethod::Command => Arc::new(askpass::AskpassConfirmer::command(
            settings.command.iter().map(Into::into).collect(),
        )),
        ConfirmMethod::Askpass => Arc::new(askpass::AskpassConfirmer::from_env()),
        ConfirmMethod::Desktop => Arc::new(desktop::DesktopConfirmer),
        ConfirmMethod::Macos => Arc::new(macos::MacosConfirmer),
        ConfirmMethod::Auto => Arc::new(Auto),
    }
}

/// `auto`: the desktop notification if a notification server with buttons
/// is on the session bus, else askpass if it can show a window, else the
/// macOS dialog; if none can ask, the answer is "no way to ask".
#[derive(Debug)]
pub struct Auto;

impl Confirmer for Auto {
    fn confirm<'a>(&'a self, prompt: &'a Prompt, timeout: Duration) -> AnswerFuture<'a> {
        Box::pin(async move {
            let mut why = Vec::new();
            match desktop::probe().await {
                Ok(_) => return desktop::DesktopConfirmer.confirm(prompt, timeout).await,
                Err(e) => why.push(format!("desktop: {e}")),
            }
            let askpass = askpass::AskpassConfirmer::from_env();
            match askpass.confirm(prompt, timeout).await {
                Answer::Unavailable(e) => why.push(format!("askpass: {e}")),
                answer => return answer,
            }
            match macos::MacosConfirmer.confirm(prompt, timeout).await {
                Answer::Unavailable(e) => why.push(format!("macos: {e}")),
                answer => return answer,
            }
            Answer::Unavailable(why.join("; "))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_strips_control_and_bounds() {
        assert_eq!(clean("a\nb\x1b[31mc", 100), "ab[31mc");
        assert_eq!(clean("abcdef", 3), "abc…");
    }

    #[test]
    fn prompt_names_everything_and_strips_control_characters() {
        let p = Prompt {
            key_fingerprint: "SHA256:k".into(),
            key_comment: "work\x1b[2Jkey".into(),
            hops: vec!["bastion (fwd)".into(), "target (auth)".into()],
            chain_names: vec!["bastion".into(), "target".into()],
            forwarded: true,
            user: Some("deploy".into()),
            purpose: Some("login"),
            operation: None,
            peer_pid: Some(42),
            peer_exe: Some("/usr/bin/ssh".into()),
            peer_parents: vec!["bash (pid 7)".into()],
            remember: None,
        };
        let text = p.text();
        assert!(
            text.starts_with("Allow use of key work[2Jkey?\nKey fingerprint SHA256:k."),
            "{text}"
        );
        assert!(text.contains("forwarded agent"));
        assert!(text.contains("Chain: bastion (fwd) > target (auth)"));
        assert!(text.contains("log in to target as deploy"));
        assert!(
            text.contains("/usr/bin/ssh (pid 42) < bash (pid 7)"),
            "{text}"
        );
        let env = p.env();
        assert!(env.contains(&("HOPWARD_CHAIN", "bastion>target".to_string())));
        assert!(env.contains(&("HOPWARD_FORWARDED", "1".to_string())));
    }

    #[test]
    fn only_allowed_allows() {
        assert!(Answer::Allowed.allowed());
        for a in [
            Answer::Refused,
            Answer::TimedOut,
            Answer::Unavailable("x".into()),
            Answer::Failed("y".into()),
        ] {
            assert!(!a.allowed());
        }
    }
}
