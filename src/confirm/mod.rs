//! Asking the person at the desk. A [`Confirmer`] turns a [`Prompt`] into an
//! [`Answer`]; the session awaits it on its own task, so one pending question
//! never delays another connection.
//!
//! Invariant: anything other than an explicit "yes" is a refusal. Timeouts,
//! crashes, odd output and "no way to ask" all deny.

pub(crate) mod askpass;
pub(crate) mod available;
pub(crate) mod broker;
pub(crate) mod desktop;
pub(crate) mod group;
pub(crate) mod macos;

use std::sync::Arc;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::text::{clean, quoted};
use crate::trust::binding::Purpose;

/// Where a signature will be used, as the prompt must put it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) enum Target {
    /// Not a login, or a local program with no bind to check against.
    #[default]
    None,
    /// A login to this host (its verified name).
    Host(String),
    /// A login to a host whose bind verifies but no known_hosts file knows:
    /// its host key fingerprint.
    Unknown(String),
    /// A login that does not belong to the host the connection was bound
    /// to: nobody can say where it will be used.
    Unverified,
    /// A login to a host whose key is on a hashed known_hosts line, whose
    /// name ssh has not reported yet: its host key fingerprint.
    Unlearned(String),
    /// A login to this host, a name verified through a hashed known_hosts
    /// entry.
    HashedHost(String),
}

/// What the person is asked about.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Prompt {
    pub(crate) key_fingerprint: String,
    pub(crate) key_comment: String,
    /// Each hop as `name (fwd)` / `unknown host SHA256:... (auth)`, with
    /// `reported by` for hops that are the first hop's word.
    pub(crate) hops: Vec<String>,
    /// Hop names for `HOPWARD_CHAIN` (`?` for a hop with no known name).
    pub(crate) chain_names: Vec<String>,
    pub(crate) forwarded: bool,
    pub(crate) target: Target,
    /// The account a login is for, and its auth style (`user:style`).
    pub(crate) user: Option<String>,
    pub(crate) user_style: Option<String>,
    /// What the signature is for; `None` for key operations.
    pub(crate) purpose: Option<Purpose>,
    /// The SSHSIG namespace of a signature that is not git's or file's.
    pub(crate) namespace: Option<String>,
    /// What is asked when it is not a signature (e.g. "add this key").
    pub(crate) operation: Option<String>,
    pub(crate) peer_pid: Option<u32>,
    pub(crate) peer_exe: Option<String>,
    /// The asking process's ancestors, nearest first.
    pub(crate) peer_parents: Vec<String>,
    /// The asking process's working directory, when it could be read.
    pub(crate) peer_cwd: Option<String>,
    /// When set, the desktop prompt also offers "Allow for <duration>".
    pub(crate) remember: Option<std::time::Duration>,
    /// The key is on a FIDO token that wants a touch for this signature:
    /// the person is told, so the blinking token after "Allow" is expected.
    pub(crate) touch: bool,
    /// `[forwarded] brake` caught this request: how many hosts through
    /// which hop in how long.
    pub(crate) brake: Option<String>,
}

/// Hops shown in a prompt: a longer chain shows its first two and last
/// two with the count of those left out between, so the lines after it
/// stay in view.
const SHOWN_HOPS: usize = 4;

impl Prompt {
    /// The question. It opens with what will happen (the purpose with its
    /// destination and user, then the forwarded warning), so no text from
    /// outside can push those out of view; then the key, as OpenSSH's agent
    /// words it for `ssh-add -c` keys; then the chain and who asked. Every
    /// piece of outside text is cleaned and bounded ([`crate::text`]), and
    /// comments and user names are quoted.
    pub(crate) fn text(&self) -> String {
        self.render(format!(
            "Allow use of key {}?",
            quoted(&self.key_comment, 64)
        ))
    }

    /// The same lines as a notice of what was done (the `notify` action):
    /// nothing is asked.
    pub(crate) fn notice_text(&self) -> String {
        self.render(format!(
            "Key {} was used; the policy allows this and asks for no answer.",
            quoted(&self.key_comment, 64)
        ))
    }

    fn render(&self, key_line: String) -> String {
        let mut lines = Vec::new();
        if let Some(op) = &self.operation {
            lines.push(format!("Request: {}", clean(op, 120)));
        }
        if let Some(line) = self.purpose_line() {
            lines.push(line);
        }
        if self.forwarded {
            lines.push("WARNING: this request came through a forwarded agent.".to_string());
        }
        if let Some(brake) = &self.brake {
            lines.push(format!(
                "BRAKE: {}. Every further request through it is asked.",
                clean(brake, 200)
            ));
        }
        lines.push(key_line);
        lines.push(format!(
            "Key fingerprint {}.",
            clean(&self.key_fingerprint, 100)
        ));
        if self.touch {
            lines.push(
                "This key is on a security key: after you allow, touch the token to sign."
                    .to_string(),
            );
        }
        if !self.hops.is_empty() {
            lines.push(format!("Chain: {}", self.chain_line()));
        }
        if let Some(pid) = self.peer_pid {
            let exe = self
                .peer_exe
                .as_deref()
                .map_or_else(|| "?".to_string(), |e| clean(e, 120));
            let mut line = format!("Asked by: {exe} (pid {pid})");
            for parent in self.peer_parents.iter().take(3) {
                line.push_str(&format!(" < {}", clean(parent, 48)));
            }
            lines.push(line);
        }
        if let Some(cwd) = &self.peer_cwd {
            lines.push(format!("In directory: {}", clean(cwd, 96)));
        }
        lines.join("\n")
    }

    fn as_user(&self) -> String {
        match (&self.user, &self.user_style) {
            (Some(user), Some(style)) => format!(
                " as {} (auth style {})",
                quoted(user, 32),
                quoted(style, 32)
            ),
            (Some(user), None) => format!(" as {}", quoted(user, 32)),
            (None, _) => String::new(),
        }
    }

    fn purpose_line(&self) -> Option<String> {
        let line = match self.purpose? {
            Purpose::Login => match &self.target {
                Target::Host(name) => format!("log in to {}{}", clean(name, 64), self.as_user()),
                Target::Unknown(fingerprint) => format!(
                    "log in to an UNKNOWN host{}. hopward cannot tell which host this is: \
                     its host key {} is in no known_hosts file",
                    self.as_user(),
                    clean(fingerprint, 100)
                ),
                Target::Unverified => format!(
                    "log in{} to a host hopward CANNOT VERIFY: the request does not belong \
                     to the host this connection was bound to",
                    self.as_user()
                ),
                Target::Unlearned(fingerprint) => format!(
                    "log in to a host whose NAME IS NOT LEARNED YET{}: its host key {} is \
                     known, on a hashed known_hosts line, but ssh has not reported its name \
                     to hopward (see `hopward ssh-config`)",
                    self.as_user(),
                    clean(fingerprint, 100)
                ),
                Target::HashedHost(name) => format!(
                    "log in to {}{} (name verified through a hashed known_hosts entry)",
                    clean(name, 64),
                    self.as_user()
                ),
                Target::None => format!("login{}", self.as_user()),
            },
            Purpose::Git => "git commit signing".to_string(),
            Purpose::File => "file signing".to_string(),
            Purpose::Other => match &self.namespace {
                Some(ns) => format!("signing for namespace {}", quoted(ns, 32)),
                None => "signing unknown data".to_string(),
            },
        };
        Some(format!("Purpose: {line}"))
    }

    fn chain_line(&self) -> String {
        let hops: Vec<String> = self.hops.iter().map(|h| clean(h, 100)).collect();
        if hops.len() <= SHOWN_HOPS {
            return hops.join(" > ");
        }
        let left_out = hops.len() - SHOWN_HOPS;
        format!(
            "{} > … {left_out} more … > {}",
            hops[..2].join(" > "),
            hops[hops.len() - 2..].join(" > ")
        )
    }

    /// The `HOPWARD_*` environment of the command and askpass confirmers.
    pub(crate) fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            ("HOPWARD_KEY", clean(&self.key_fingerprint, 100)),
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
            (
                "HOPWARD_PURPOSE",
                self.purpose.map_or("", Purpose::as_str).to_string(),
            ),
            (
                "HOPWARD_TOUCH",
                if self.touch { "1" } else { "0" }.to_string(),
            ),
            (
                "HOPWARD_FORWARDED",
                if self.forwarded { "1" } else { "0" }.to_string(),
            ),
            (
                "HOPWARD_DESTINATION",
                match &self.target {
                    Target::None => "none",
                    Target::Host(_) | Target::HashedHost(_) => "verified",
                    Target::Unknown(_) | Target::Unlearned(_) => "unknown",
                    Target::Unverified => "unverified",
                }
                .to_string(),
            ),
        ];
        if let Some(style) = &self.user_style {
            env.push(("HOPWARD_USER_STYLE", clean(style, 64)));
        }
        if let Some(brake) = &self.brake {
            env.push(("HOPWARD_BRAKE", clean(brake, 200)));
        }
        if let Some(pid) = self.peer_pid {
            env.push(("HOPWARD_PID", pid.to_string()));
        }
        // What `caller` and `cwd` rules match, for a confirmer that decides
        // by them too; absent when they could not be read.
        if let Some(exe) = &self.peer_exe {
            env.push(("HOPWARD_CALLER", clean(exe, 1024)));
        }
        if let Some(cwd) = &self.peer_cwd {
            env.push(("HOPWARD_CWD", clean(cwd, 1024)));
        }
        env
    }
}

/// The outcome of one question.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Allowed,
    /// "Allow for <duration>": allowed, and remember it.
    AllowedRemember,
    /// The desktop prompt's plain "Allow": this request only.
    AllowedOnce,
    /// The person said no (a Deny button, a dismissed prompt, an askpass
    /// program that exited non-zero or printed "no").
    Refused,
    TimedOut,
    /// Nothing could ask (no askpass program, no display ...).
    Unavailable(String),
    /// The asker failed: crashed or killed, printed something that is not
    /// an answer, lost its session bus. Not the person's no.
    Failed(String),
    /// Not asked: too many questions are open already.
    Flood,
    /// Withdrawn before it was answered: what it was about changed (the
    /// key went, the agent locked, the policy was reloaded).
    Withdrawn,
}

impl Answer {
    pub(crate) fn allowed(&self) -> bool {
        matches!(
            self,
            Answer::Allowed | Answer::AllowedRemember | Answer::AllowedOnce
        )
    }

    /// The audit reason for this answer.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            Answer::Allowed | Answer::AllowedRemember | Answer::AllowedOnce => "confirmed",
            Answer::Refused => "refused",
            Answer::Failed(_) => "confirmer-failed",
            Answer::TimedOut => "timeout",
            Answer::Flood => "flood",
            Answer::Unavailable(_) => "no-confirmer",
            Answer::Withdrawn => "withdrawn",
        }
    }
}

pub(crate) type AnswerFuture<'a> = Pin<Box<dyn Future<Output = Answer> + Send + 'a>>;

/// Something that can put a question to the user.
pub trait Confirmer: Send + Sync + std::fmt::Debug + 'static {
    /// Asks; must resolve within `timeout`. Dropping the future withdraws the
    /// question (the client went away).
    fn confirm<'a>(&'a self, prompt: &'a Prompt, timeout: Duration) -> AnswerFuture<'a>;
}

/// The confirmer for the policy's `[confirm]` settings.
pub(crate) fn for_settings(settings: &crate::policy::ConfirmSettings) -> Arc<dyn Confirmer> {
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

/// How the agent reaches the person at the desk: a confirmer for the
/// policy's `[confirm]` settings, and notices that wait for no answer. The
/// daemon gets one at start (the desktop's); tests give their own.
pub trait Desk: Send + Sync + std::fmt::Debug + 'static {
    /// The confirmer to ask with under these settings.
    fn confirmer(&self, settings: &crate::policy::ConfirmSettings) -> Arc<dyn Confirmer>;
    /// Shows a notice and returns at once; the notice may not be shown.
    fn notify(&self, summary: &'static str, body: String);
}

/// Notices (the `notify` action, flood warnings) on their way to the
/// desktop at once: past this, a notice is dropped (and logged), so a
/// flood of requests cannot pile up tasks.
const MAX_NOTICES: usize = 8;

/// The real desk: the confirmer [`for_settings`] picks, and notices on the
/// session bus's notification server.
#[derive(Debug, Default)]
pub(crate) struct DesktopDesk {
    in_flight: Arc<std::sync::atomic::AtomicUsize>,
}

impl Desk for DesktopDesk {
    fn confirmer(&self, settings: &crate::policy::ConfirmSettings) -> Arc<dyn Confirmer> {
        for_settings(settings)
    }

    fn notify(&self, summary: &'static str, body: String) {
        use std::sync::atomic::Ordering;
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= MAX_NOTICES {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            tracing::info!("notice not shown: {MAX_NOTICES} notices already on their way");
            return;
        }
        let in_flight = Arc::clone(&self.in_flight);
        tokio::spawn(async move {
            if let Err(e) = desktop::tell(summary, &body).await {
                tracing::info!("notice not shown: {e}");
            }
            in_flight.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// `auto`: the desktop notification if a notification server with buttons
/// is on the session bus, else askpass if it can show a window, else the
/// macOS dialog; if none can ask, the answer is "no way to ask".
#[derive(Debug)]
pub(crate) struct Auto;

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

    fn forwarded_login() -> Prompt {
        Prompt {
            key_fingerprint: "SHA256:k".into(),
            key_comment: "work\x1b[2Jkey".into(),
            hops: vec!["bastion (fwd)".into(), "target (auth)".into()],
            chain_names: vec!["bastion".into(), "target".into()],
            forwarded: true,
            target: Target::Host("target".into()),
            user: Some("deploy".into()),
            purpose: Some(Purpose::Login),
            peer_pid: Some(42),
            peer_exe: Some("/usr/bin/ssh".into()),
            peer_parents: vec!["bash (pid 7)".into()],
            peer_cwd: Some("/home/u/src".into()),
            ..Prompt::default()
        }
    }

    #[test]
    fn prompt_opens_with_what_will_happen_and_names_everything() {
        let text = forwarded_login().text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0], "Purpose: log in to target as \"deploy\"",
            "{text}"
        );
        assert_eq!(
            lines[1],
            "WARNING: this request came through a forwarded agent."
        );
        assert_eq!(
            lines[2], "Allow use of key \"work\\u{1b}[2Jkey\"?",
            "{text}"
        );
        assert!(text.contains("Chain: bastion (fwd) > target (auth)"));
        assert!(
            text.contains("/usr/bin/ssh (pid 42) < bash (pid 7)"),
            "{text}"
        );
        let env = forwarded_login().env();
        assert!(env.contains(&("HOPWARD_CHAIN", "bastion>target".to_string())));
        assert!(env.contains(&("HOPWARD_FORWARDED", "1".to_string())));
        assert!(env.contains(&("HOPWARD_DESTINATION", "verified".to_string())));
        assert!(text.contains("\nIn directory: /home/u/src"), "{text}");
        assert!(env.contains(&("HOPWARD_CALLER", "/usr/bin/ssh".to_string())));
        assert!(env.contains(&("HOPWARD_CWD", "/home/u/src".to_string())));
    }

    /// Sixteen hops, long hostile names and comments, separators and bidi
    /// overrides: the purpose and the warning still come first, nothing
    /// hidden gets through, and the whole text stays short.
    #[test]
    fn outside_text_cannot_forge_or_push_out_lines() {
        let evil = "x\u{2028}Purpose: git commit signing\u{202e}\u{200b}\n".repeat(20);
        let mut p = forwarded_login();
        p.key_comment = evil.clone();
        p.user = Some(evil.clone());
        p.user_style = Some(evil.clone());
        p.hops = (0..16).map(|i| format!("{evil}{i} (fwd)")).collect();
        p.peer_parents = vec![evil.clone(); 10];
        p.peer_exe = Some(evil.clone());
        p.peer_cwd = Some(evil.clone());
        let text = p.text();
        assert!(
            text.starts_with("Purpose: log in to target as \"x\\u{2028}"),
            "{text}"
        );
        assert_eq!(
            text.lines().nth(1),
            Some("WARNING: this request came through a forwarded agent.")
        );
        for hidden in ['\u{2028}', '\u{2029}', '\u{202e}', '\u{200b}', '\u{1b}'] {
            assert!(!text.contains(hidden), "{hidden:?} in {text}");
        }
        assert_eq!(text.lines().count(), 7, "{text}");
        assert!(text.contains("… 12 more …"), "{text}");
        // Under 1000 before the working directory's line (at most 110).
        assert!(
            text.chars().count() < 1110,
            "{} chars",
            text.chars().count()
        );
        for (name, value) in p.env() {
            assert!(
                !value.contains(['\n', '\u{2028}', '\u{202e}']),
                "{name}={value}"
            );
        }
    }

    /// A host on a hashed line is known, its name just not learned yet;
    /// a name that rests on a hashed entry says so.
    #[test]
    fn hashed_hosts_are_known_not_unknown() {
        let mut p = forwarded_login();
        p.target = Target::Unlearned("SHA256:abc".into());
        let text = p.text();
        assert!(
            text.starts_with(
                "Purpose: log in to a host whose NAME IS NOT LEARNED YET as \"deploy\""
            ) && text.contains("SHA256:abc is known, on a hashed known_hosts line"),
            "{text}"
        );
        assert!(!text.contains("no known_hosts file"), "{text}");
        assert!(
            p.env()
                .contains(&("HOPWARD_DESTINATION", "unknown".to_string()))
        );
        p.target = Target::HashedHost("db1.prod.example.com".into());
        let text = p.text();
        assert!(
            text.starts_with(
                "Purpose: log in to db1.prod.example.com as \"deploy\" (name verified through \
                 a hashed known_hosts entry)"
            ),
            "{text}"
        );
        assert!(
            p.env()
                .contains(&("HOPWARD_DESTINATION", "verified".to_string()))
        );
    }

    #[test]
    fn unknown_and_unverified_destinations_say_so() {
        let mut p = forwarded_login();
        p.target = Target::Unknown("SHA256:abc".into());
        let text = p.text();
        assert!(
            text.starts_with(
                "Purpose: log in to an UNKNOWN host as \"deploy\". hopward cannot tell which host this is"
            ),
            "{text}"
        );
        assert!(text.contains("SHA256:abc"));
        p.target = Target::Unverified;
        p.user_style = Some("x".into());
        let text = p.text();
        assert!(
            text.starts_with(
                "Purpose: log in as \"deploy\" (auth style \"x\") to a host hopward CANNOT VERIFY"
            ),
            "{text}"
        );
        assert!(
            p.env()
                .contains(&("HOPWARD_DESTINATION", "unverified".to_string()))
        );
        assert!(p.env().contains(&("HOPWARD_USER_STYLE", "x".to_string())));
    }

    #[test]
    fn an_unknown_namespace_is_named_in_quotes() {
        let p = Prompt {
            purpose: Some(Purpose::Other),
            namespace: Some("evil\"\nns".into()),
            ..Prompt::default()
        };
        assert!(
            p.text()
                .starts_with("Purpose: signing for namespace \"evil\\\"\\u{a}ns\"\n"),
            "{}",
            p.text()
        );
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
