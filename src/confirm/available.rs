//! Whether a confirm method can ask on this system now, and why not: what
//! `hopward status` shows and `doctor` judges, read from the same places
//! the confirmers ask through.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use crate::keys::askpass_env::AskpassEnv;
use crate::policy::{ConfirmMethod, ConfirmSettings};

/// Whether a confirm method can ask on this system now, and why not.
pub(crate) async fn can_ask(settings: &ConfirmSettings) -> (bool, String) {
    match settings.method {
        ConfirmMethod::Desktop => match super::desktop::probe().await {
            Ok((_, server)) => (true, format!("desktop notifications, server {server}")),
            Err(e) => (false, format!("desktop: {e}")),
        },
        ConfirmMethod::Auto => match super::desktop::probe().await {
            Ok((_, server)) => (true, format!("desktop notifications, server {server}")),
            Err(desktop) => match can_ask_locally(settings, &AskpassEnv::from_env()) {
                (true, how) => (true, how),
                (false, why) => (false, format!("desktop: {desktop}; {why}")),
            },
        },
        _ => can_ask_locally(settings, &AskpassEnv::from_env()),
    }
}

/// [`can_ask`] for the methods that need no session bus.
fn can_ask_locally(settings: &ConfirmSettings, askpass: &AskpassEnv) -> (bool, String) {
    let executable = |p: &Path| {
        std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    match settings.method {
        ConfirmMethod::Command => match settings.command.first() {
            Some(p) if executable(Path::new(p)) => (true, format!("runs {p}")),
            Some(p) => (false, format!("{p} is not an executable file")),
            None => (false, "no confirm.command".into()),
        },
        ConfirmMethod::Askpass | ConfirmMethod::Auto => {
            let program = askpass.program_or_default();
            let shown = program.to_string_lossy();
            if !executable(Path::new(&program)) {
                (false, format!("askpass program {shown} is missing"))
            } else if !askpass.can_display {
                (false, "no DISPLAY or WAYLAND_DISPLAY for askpass".into())
            } else {
                (true, format!("askpass {shown}"))
            }
        }
        ConfirmMethod::Desktop => (false, "no notification server".into()),
        ConfirmMethod::Macos => (false, "the macos confirmer only works on macOS".into()),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn settings(method: ConfirmMethod, command: &[&str]) -> ConfirmSettings {
        ConfirmSettings {
            method,
            command: command.iter().map(|c| c.to_string()).collect(),
            timeout: Duration::from_secs(30),
        }
    }

    fn env(program: Option<&str>, can_display: bool) -> AskpassEnv {
        AskpassEnv {
            program: program.map(Into::into),
            can_display,
        }
    }

    #[test]
    fn askpass_needs_its_program_and_a_display() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("ask");
        std::fs::write(&program, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let program = program.to_str().unwrap();
        let askpass = settings(ConfirmMethod::Askpass, &[]);
        assert_eq!(
            can_ask_locally(&askpass, &env(Some(program), true)),
            (true, format!("askpass {program}"))
        );
        assert_eq!(
            can_ask_locally(&askpass, &env(Some(program), false)),
            (
                false,
                "no DISPLAY or WAYLAND_DISPLAY for askpass".to_string()
            )
        );
        let missing = dir.path().join("none");
        let missing = missing.to_str().unwrap();
        assert_eq!(
            can_ask_locally(&askpass, &env(Some(missing), true)),
            (false, format!("askpass program {missing} is missing"))
        );
        // `auto` without a session bus falls back to askpass, read the same way.
        assert_eq!(
            can_ask_locally(
                &settings(ConfirmMethod::Auto, &[]),
                &env(Some(program), true)
            ),
            (true, format!("askpass {program}"))
        );
        // A command is checked on its own, whatever the askpass environment.
        let command = settings(ConfirmMethod::Command, &[program]);
        assert_eq!(
            can_ask_locally(&command, &env(None, false)),
            (true, format!("runs {program}"))
        );
    }
}
