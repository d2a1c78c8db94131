//! OpenSSH's askpass contract: run `PROG PROMPT` with
//! `SSH_ASKPASS_PROMPT=confirm`; exit 0 with no output or "yes" allows.
//!
//! Invariants: the child is killed when the question is withdrawn or times
//! out (`kill_on_drop`); at most [`MAX_OUTPUT`] bytes of its output are read.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::AsyncReadExt as _;
use tokio::process::Command;

use super::{Answer, AnswerFuture, Confirmer, Prompt};

/// OpenSSH's default askpass program.
pub const DEFAULT_PROGRAM: &str = "/usr/bin/ssh-askpass";
const MAX_OUTPUT: u64 = 1024;

/// Runs an askpass-style program for each question.
#[derive(Debug, Clone)]
pub struct AskpassConfirmer {
    program: Vec<OsString>,
    /// What the log calls it: `askpass` or `confirm.command`, so a failure
    /// of one is never blamed on the other.
    label: &'static str,
    /// Whether a display was available (or `SSH_ASKPASS_REQUIRE=force`) when
    /// the daemon started; without one OpenSSH's askpass cannot ask.
    can_display: bool,
}

impl AskpassConfirmer {
    /// The `$SSH_ASKPASS` confirmer as OpenSSH's agent would use it.
    pub fn from_env() -> Self {
        let program = std::env::var_os("SSH_ASKPASS")
            .filter(|p| !p.is_empty())
            .unwrap_or_else(|| DEFAULT_PROGRAM.into());
        let display = ["DISPLAY", "WAYLAND_DISPLAY"]
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|x| !x.is_empty()));
        let forced = std::env::var("SSH_ASKPASS_REQUIRE").is_ok_and(|v| v == "force");
        AskpassConfirmer {
            program: vec![program],
            label: "askpass",
            can_display: display || forced,
        }
    }

    /// A confirmer that runs `program` (argv) with no display requirement.
    pub fn command(program: Vec<OsString>) -> Self {
        AskpassConfirmer {
            program,
            label: "confirm.command",
            can_display: true,
        }
    }

    async fn ask(&self, prompt: &Prompt, timeout: Duration) -> Answer {
        if !self.can_display {
            return Answer::Unavailable(
                "askpass needs DISPLAY or WAYLAND_DISPLAY (or SSH_ASKPASS_REQUIRE=force)".into(),
            );
        }
        let Some((program, args)) = self.program.split_first() else {
            return Answer::Unavailable(format!("no {} program configured", self.label));
        };
        let mut command = Command::new(PathBuf::from(program));
        command
            .args(args)
            .arg(prompt.text())
            .env("SSH_ASKPASS_PROMPT", "confirm")
            .envs(prompt.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(e) => {
                return Answer::Unavailable(format!(
                    "cannot run {} program {}: {e}",
                    self.label,
                    PathBuf::from(program).display()
                ));
            }
        };
        let Some(stdout) = child.stdout.take() else {
            return Answer::Failed(format!("{} stdout unavailable", self.label));
        };
        let run = async {
            let mut output = Vec::new();
            let read = stdout.take(MAX_OUTPUT).read_to_end(&mut output).await;
            let status = child.wait().await;
            (read, status, output)
        };
        match tokio::time::timeout(timeout, run).await {
            Err(_) => Answer::TimedOut,
            Ok((Err(e), _, _)) | Ok((_, Err(e), _)) => {
                Answer::Failed(format!("{} I/O: {e}", self.label))
            }
            Ok((Ok(_), Ok(status), output)) => judge(status.success(), &output, self.label),
        }
    }
}

/// Exit 0 and an empty answer or "yes" (any case, one trailing newline)
/// allows; a non-zero exit or "no" refuses (an answer, not a failure);
/// anything else is a failure, which denies.
fn judge(success: bool, output: &[u8], label: &str) -> Answer {
    if !success {
        return Answer::Refused;
    }
    let text = output
        .strip_suffix(b"\n")
        .map(|t| t.strip_suffix(b"\r").unwrap_or(t))
        .unwrap_or(output);
    if text.is_empty() || text.eq_ignore_ascii_case(b"yes") {
        Answer::Allowed
    } else if text.eq_ignore_ascii_case(b"no") {
        Answer::Refused
    } else {
        Answer::Failed(format!(
            "{label} printed something other than yes or no (exit 0 with nothing or yes allows)"
        ))
    }
}

impl Confirmer for AskpassConfirmer {
    fn confirm<'a>(&'a self, prompt: &'a Prompt, timeout: Duration) -> AnswerFuture<'a> {
        Box::pin(self.ask(prompt, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn judge_follows_the_contract() {
        let judge = |ok: bool, out: &[u8]| judge(ok, out, "confirm.command");
        assert_eq!(judge(true, b""), Answer::Allowed);
        assert_eq!(judge(true, b"yes\n"), Answer::Allowed);
        assert_eq!(judge(true, b"YES\r\n"), Answer::Allowed);
        assert_eq!(judge(false, b"yes"), Answer::Refused);
        assert_eq!(judge(true, b"no\n"), Answer::Refused);
        assert!(
            matches!(judge(true, b"maybe\n"), Answer::Failed(ref why) if why.starts_with("confirm.command printed"))
        );
        assert!(matches!(judge(true, b"yes\nyes\n"), Answer::Failed(_)));
    }

    fn prompt() -> Prompt {
        Prompt {
            key_fingerprint: "SHA256:abc".into(),
            key_comment: "k".into(),
            peer_pid: Some(1),
            ..Prompt::default()
        }
    }

    fn sh(script: &str) -> AskpassConfirmer {
        AskpassConfirmer::command(vec![
            "sh".into(),
            "-c".into(),
            script.into(),
            "askpass".into(),
        ])
    }

    #[tokio::test]
    async fn real_program_answers() {
        let t = Duration::from_secs(10);
        assert_eq!(sh("echo yes").confirm(&prompt(), t).await, Answer::Allowed);
        assert_eq!(sh("exit 1").confirm(&prompt(), t).await, Answer::Refused);
        assert!(matches!(
            sh("echo maybe").confirm(&prompt(), t).await,
            Answer::Failed(_)
        ));
        assert!(matches!(
            sh("kill -SEGV $$").confirm(&prompt(), t).await,
            Answer::Refused
        ));
        let env = sh(
            r#"[ "$SSH_ASKPASS_PROMPT" = confirm ] && [ "$HOPWARD_KEY" = SHA256:abc ] && case "$1" in *"Allow use of key \"k\"?"*) exit 0;; esac; exit 1"#,
        );
        assert_eq!(env.confirm(&prompt(), t).await, Answer::Allowed);
    }

    #[tokio::test]
    async fn hanging_program_times_out() {
        let answer = sh("sleep 30")
            .confirm(&prompt(), Duration::from_millis(200))
            .await;
        assert_eq!(answer, Answer::TimedOut);
    }

    #[tokio::test]
    async fn missing_program_is_unavailable() {
        let c = AskpassConfirmer::command(vec!["/nonexistent/askpass".into()]);
        assert!(matches!(
            c.confirm(&prompt(), Duration::from_secs(1)).await,
            Answer::Unavailable(_)
        ));
    }
}
