//! Asking the person at the desk. A [`Confirmer`] turns a [`Prompt`] into an
//! [`Answer`]; the session awaits it on its own task, so one pending question
//! never delays another connection.
//!
//! Invariant: anything other than an explicit "yes" is a refusal. Timeouts,
//! crashes, odd output and "no way to ask" all deny.

pub mod askpass;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// How long a question may stay unanswered before it counts as "no".
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What the person is asked about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    pub key_fingerprint: String,
    pub key_comment: String,
    pub peer_pid: Option<u32>,
}

impl Prompt {
    /// The question as OpenSSH's agent words it for `ssh-add -c` keys.
    pub fn text(&self) -> String {
        format!(
            "Allow use of key {}?\nKey fingerprint {}.",
            clean(&self.key_comment, 256),
            self.key_fingerprint
        )
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
    Refused,
    TimedOut,
    /// Nothing could ask (no askpass program, no display ...).
    Unavailable(String),
    /// The asker failed (crashed, printed garbage ...).
    Failed(String),
}

impl Answer {
    pub fn allowed(&self) -> bool {
        matches!(self, Answer::Allowed)
    }

    /// The audit reason for this answer.
    pub fn reason(&self) -> &'static str {
        match self {
            Answer::Allowed => "confirmed",
            Answer::Refused | Answer::Failed(_) => "refused",
            Answer::TimedOut => "timeout",
            Answer::Unavailable(_) => "no-confirmer",
        }
    }
}

pub type AnswerFuture<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

/// Something that can put a question to the user.
pub trait Confirmer: Send + Sync + std::fmt::Debug {
    /// Asks; must resolve within `timeout`. Dropping the future withdraws the
    /// question (the client went away).
    fn confirm<'a>(&'a self, prompt: &'a Prompt, timeout: Duration) -> AnswerFuture<'a>;
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
