//! The macOS confirmer: an `osascript` dialog with Deny / Allow that gives up
//! after the timeout.

use std::time::Duration;

use tokio::process::Command;

use super::{Answer, AnswerFuture, Confirmer, Prompt};

const OSASCRIPT: &str = "/usr/bin/osascript";

#[derive(Debug, Default, Clone)]
pub(crate) struct MacosConfirmer;

/// AppleScript string literal.
fn quote(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

impl MacosConfirmer {
    async fn ask(&self, prompt: &Prompt, timeout: Duration) -> Answer {
        if !cfg!(target_os = "macos") || !std::path::Path::new(OSASCRIPT).exists() {
            return Answer::Unavailable("osascript dialogs need macOS".into());
        }
        let secs = timeout.as_secs().max(1);
        let script = format!(
            "display dialog {} with title \"hopward\" buttons {{\"Deny\", \"Allow\"}} default button \"Deny\" giving up after {secs}",
            quote(&prompt.text())
        );
        let run = Command::new(OSASCRIPT)
            .arg("-e")
            .arg(script)
            .kill_on_drop(true)
            .output();
        match tokio::time::timeout(timeout + Duration::from_secs(2), run).await {
            Err(_) => Answer::TimedOut,
            Ok(Err(e)) => Answer::Unavailable(format!("cannot run osascript: {e}")),
            Ok(Ok(out)) => {
                let text = String::from_utf8_lossy(&out.stdout);
                if text.contains("gave up:true") {
                    Answer::TimedOut
                } else if out.status.success() && text.contains("button returned:Allow") {
                    Answer::Allowed
                } else {
                    Answer::Refused
                }
            }
        }
    }
}

impl Confirmer for MacosConfirmer {
    fn confirm<'a>(&'a self, prompt: &'a Prompt, timeout: Duration) -> AnswerFuture<'a> {
        Box::pin(self.ask(prompt, timeout))
    }
}
