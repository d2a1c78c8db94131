//! OpenSSH's askpass contract: run `PROG PROMPT` with
//! `SSH_ASKPASS_PROMPT=confirm`; exit 0 with no output or "yes" allows.
//!
//! Invariants: the program runs in a session and process group of its own
//! (no controlling terminal), and the whole group is ended once the answer
//! is known, when the question is withdrawn or times out, and when the
//! agent stops ([`super::group`]); the answer comes from its exit and what
//! it printed by then, never from a process it left holding the pipe; at
//! most [`MAX_OUTPUT`] bytes of its output are kept.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use std::os::unix::process::ExitStatusExt as _;
use std::process::ExitStatus;

use tokio::io::AsyncReadExt as _;
use tokio::process::Command;

use super::group::Group;
use super::{Answer, AnswerFuture, Confirmer, Prompt};
use crate::keys::askpass_env::AskpassEnv;

const MAX_OUTPUT: usize = 1024;
/// How long, once the program has exited, the pipe is still read for
/// output it wrote just before (a process it left behind may hold the
/// pipe open forever).
const AFTER_EXIT: Duration = Duration::from_millis(200);

/// Runs an askpass-style program for each question.
#[derive(Debug, Clone)]
pub(crate) struct AskpassConfirmer {
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
    pub(crate) fn from_env() -> Self {
        let askpass = AskpassEnv::from_env();
        AskpassConfirmer {
            program: vec![askpass.program_or_default()],
            label: "askpass",
            can_display: askpass.can_display,
        }
    }

    /// A confirmer that runs `program` (argv) with no display requirement.
    pub(crate) fn command(program: Vec<OsString>) -> Self {
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
        let mut command = std::process::Command::new(PathBuf::from(program));
        command
            .args(args)
            .arg(prompt.text())
            .env("SSH_ASKPASS_PROMPT", "confirm")
            .envs(prompt.env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        // Its own session and group, so whatever it starts can be ended
        // with it.
        crate::sys::spawn_in_own_session(&mut command);
        let mut command = Command::from(command);
        command.kill_on_drop(true);
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
        // Dropped on every way out of here (answer, timeout, withdrawal):
        // the whole group is ended, not just the program.
        let _group = child.id().map(Group::new);
        let Some(mut stdout) = child.stdout.take() else {
            return Answer::Failed(format!("{} stdout unavailable", self.label));
        };
        let run = async {
            let mut output = Vec::new();
            let mut eof = false;
            // Read while waiting for the exit, so a program that writes
            // more than a pipe holds is never stuck on a full pipe.
            let status = loop {
                tokio::select! {
                    status = child.wait() => break status?,
                    read = read_some(&mut stdout, &mut output), if !eof => eof = read?,
                }
            };
            // What it wrote before it exited is in the pipe already. A
            // process it left behind may hold the pipe open: EOF is waited
            // for only briefly, never for the whole timeout.
            let drain = async {
                while !eof {
                    eof = read_some(&mut stdout, &mut output).await?;
                }
                Ok::<_, std::io::Error>(())
            };
            if let Ok(read) = tokio::time::timeout(AFTER_EXIT, drain).await {
                read?;
            }
            Ok::<_, std::io::Error>((status, output))
        };
        match tokio::time::timeout(timeout, run).await {
            Err(_) => Answer::TimedOut,
            Ok(Err(e)) => Answer::Failed(format!("{} I/O: {e}", self.label)),
            Ok(Ok((status, output))) => judge(status, &output, self.label),
        }
    }
}

/// Reads what is there into `output`, keeping at most [`MAX_OUTPUT`]
/// bytes (the rest is read and dropped: more than that is never an
/// answer); whether the pipe reached EOF.
async fn read_some(
    stdout: &mut tokio::process::ChildStdout,
    output: &mut Vec<u8>,
) -> std::io::Result<bool> {
    let mut buf = [0u8; 512];
    let n = stdout.read(&mut buf).await?;
    let room = MAX_OUTPUT.saturating_sub(output.len());
    output.extend_from_slice(&buf[..n.min(room)]);
    Ok(n == 0)
}

/// The askpass contract, decided from how the program ended and what it
/// printed. Exit 0 with an empty answer or "yes" (any case, one trailing
/// newline) allows. An ordinary non-zero exit or "no" is the person's
/// refusal. A program killed by a signal, one that could not run (the
/// shell's 126 and 127) or died the way a shell reports a killed command
/// (128 and above), and any other output, is a failure of the confirmer.
/// All but the allow deny.
fn judge(status: ExitStatus, output: &[u8], label: &str) -> Answer {
    match status.code() {
        Some(0) => {}
        Some(code @ 1..=125) => {
            tracing::debug!("{label} exited with status {code}: refused");
            return Answer::Refused;
        }
        Some(code) => {
            return Answer::Failed(format!(
                "{label} exited with status {code} (it could not run, or what it ran was killed)"
            ));
        }
        None => {
            return Answer::Failed(match status.signal() {
                Some(sig) => format!("{label} was killed by signal {sig}"),
                None => format!("{label} ended without an exit status"),
            });
        }
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
        let exit = |code: i32| ExitStatus::from_raw(code << 8);
        let judge = |code: i32, out: &[u8]| judge(exit(code), out, "confirm.command");
        assert_eq!(judge(0, b""), Answer::Allowed);
        assert_eq!(judge(0, b"yes\n"), Answer::Allowed);
        assert_eq!(judge(0, b"YES\r\n"), Answer::Allowed);
        assert_eq!(judge(1, b"yes"), Answer::Refused);
        assert_eq!(judge(0, b"no\n"), Answer::Refused);
        assert!(
            matches!(judge(0, b"maybe\n"), Answer::Failed(ref why) if why.starts_with("confirm.command printed"))
        );
        assert!(matches!(judge(0, b"yes\nyes\n"), Answer::Failed(_)));
        assert!(matches!(judge(127, b""), Answer::Failed(_)));
        assert!(matches!(judge(139, b"yes"), Answer::Failed(_)));
        assert!(matches!(
            super::judge(ExitStatus::from_raw(libc::SIGSEGV), b"", "x"),
            Answer::Failed(ref why) if why == "x was killed by signal 11"
        ));
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
            Answer::Failed(ref why) if why.contains("signal 11")
        ));
        let env = sh(
            r#"[ "$SSH_ASKPASS_PROMPT" = confirm ] && [ "$HOPWARD_KEY" = SHA256:abc ] && case "$1" in *"Allow use of key \"k\"?"*) exit 0;; esac; exit 1"#,
        );
        assert_eq!(env.confirm(&prompt(), t).await, Answer::Allowed);
    }

    /// The program leads a session (and so a process group) of its own.
    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn the_program_leads_its_own_session() {
        let leads = sh(
            r#"[ "$(cut -d' ' -f6 /proc/$$/stat)" = "$$" ] && [ "$(cut -d' ' -f5 /proc/$$/stat)" = "$$" ]"#,
        );
        assert_eq!(
            leads.confirm(&prompt(), Duration::from_secs(10)).await,
            Answer::Allowed
        );
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
