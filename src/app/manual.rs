//! The man pages and shell completions, generated from the command-line
//! definition ([`crate::app::cli::Cli`]), so they never drift from it.
//!
//! Invariant: pure; writing them is `install`'s job (or the caller's, for
//! `hopward man` and `hopward completions`).

use clap::CommandFactory as _;

/// Every man page, `(file name, roff)`: `hopward.1` and one per
/// subcommand (`hopward-policy-check.1` ...).
pub(crate) fn man_pages() -> Vec<(String, Vec<u8>)> {
    fn walk(cmd: clap::Command, out: &mut Vec<(String, Vec<u8>)>) {
        for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned() {
            walk(sub, out);
        }
        let man = clap_mangen::Man::new(cmd);
        let mut page = Vec::new();
        // Rendering into memory cannot fail.
        if man.render(&mut page).is_ok() {
            out.push((man.get_filename(), page));
        }
    }
    let mut cmd = crate::app::cli::Cli::command().disable_help_subcommand(true);
    cmd.build();
    let mut out = Vec::new();
    walk(cmd, &mut out);
    out.sort();
    out
}

/// The completion script for `shell`.
pub(crate) fn completion(shell: clap_complete::Shell) -> Vec<u8> {
    let mut cmd = crate::app::cli::Cli::command();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, "hopward", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subcommand_has_a_page() {
        let pages = man_pages();
        let names: Vec<&str> = pages.iter().map(|(n, _)| n.as_str()).collect();
        for name in ["hopward.1", "hopward-doctor.1", "hopward-policy-init.1"] {
            assert!(names.contains(&name), "{names:?}");
        }
        let top = String::from_utf8_lossy(&pages.iter().find(|(n, _)| n == "hopward.1").unwrap().1)
            .into_owned();
        assert!(
            top.starts_with(".ie") || top.contains(".TH hopward 1"),
            "{top}"
        );
    }
}
