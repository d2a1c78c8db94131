//! Whether OpenSSH's askpass can ask here: the program `$SSH_ASKPASS`
//! names and whether it may show a window, read from the environment the
//! way ssh and ssh-agent read it (readpass.c).
//!
//! One reading for every asker: the security-key PIN prompt (this layer),
//! the `askpass` confirmer, and what `hopward status` and `doctor` report
//! about it, so none of them can disagree about what askpass would do.

use std::ffi::OsString;

/// OpenSSH's default askpass program.
pub(crate) const DEFAULT_PROGRAM: &str = "/usr/bin/ssh-askpass";

/// What to set up so askpass can ask, in the words `doctor` gives as a fix.
pub const SETUP_HINT: &str = "set SSH_ASKPASS (with DISPLAY)";

/// The askpass environment of this process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AskpassEnv {
    /// `$SSH_ASKPASS` when set and not empty.
    pub program: Option<OsString>,
    /// A display to show it on (`DISPLAY` or `WAYLAND_DISPLAY`, not empty),
    /// or `SSH_ASKPASS_REQUIRE=force`, which runs it without one.
    pub can_display: bool,
}

impl AskpassEnv {
    /// Reads this process's environment.
    pub fn from_env() -> Self {
        Self::from_vars(|name| std::env::var_os(name))
    }

    /// Reads the variables from `var`; [`Self::from_env`] passes the
    /// process environment, tests a table.
    pub(crate) fn from_vars(var: impl Fn(&str) -> Option<OsString>) -> Self {
        let set = |name: &str| var(name).filter(|v| !v.is_empty());
        let display = set("DISPLAY").is_some() || set("WAYLAND_DISPLAY").is_some();
        let forced = var("SSH_ASKPASS_REQUIRE").is_some_and(|v| v == "force");
        AskpassEnv {
            program: set("SSH_ASKPASS"),
            can_display: display || forced,
        }
    }

    /// The program the confirmer runs: `$SSH_ASKPASS`, else OpenSSH's
    /// default. (The PIN prompt runs none unless `$SSH_ASKPASS` names one,
    /// as ssh-agent does.)
    pub fn program_or_default(&self) -> OsString {
        self.program
            .clone()
            .unwrap_or_else(|| DEFAULT_PROGRAM.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(vars: &[(&str, &str)]) -> AskpassEnv {
        AskpassEnv::from_vars(|name| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn a_display_or_force_lets_askpass_ask() {
        assert!(!read(&[]).can_display);
        assert!(read(&[("DISPLAY", ":0")]).can_display);
        assert!(read(&[("WAYLAND_DISPLAY", "wayland-0")]).can_display);
        assert!(read(&[("SSH_ASKPASS_REQUIRE", "force")]).can_display);
        // An empty variable is no display; `prefer` needs one as well.
        assert!(!read(&[("DISPLAY", ""), ("WAYLAND_DISPLAY", "")]).can_display);
        assert!(!read(&[("SSH_ASKPASS_REQUIRE", "prefer")]).can_display);
        assert!(!read(&[("SSH_ASKPASS_REQUIRE", "")]).can_display);
    }

    #[test]
    fn an_empty_ssh_askpass_names_no_program() {
        assert_eq!(read(&[]).program, None);
        assert_eq!(read(&[("SSH_ASKPASS", "")]).program, None);
        assert_eq!(read(&[]).program_or_default(), DEFAULT_PROGRAM);
        let set = read(&[("SSH_ASKPASS", "/opt/ask")]);
        assert_eq!(set.program.as_deref(), Some("/opt/ask".as_ref()));
        assert_eq!(set.program_or_default(), "/opt/ask");
    }
}
