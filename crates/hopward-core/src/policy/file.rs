//! Policy files: TOML into a validated, compiled [`Policy`], with every
//! problem reported as `FILE:LINE:COL: message`, and `include = [...]`.
//!
//! Includes: paths are relative to the including file (`~/` allowed); the
//! included files' rules are tried first, in the order listed; a setting in
//! the including file wins over the same setting in an included one. A
//! missing include is an error, and so is a cycle.

mod problems;
mod raw;
mod rules;
mod sections;
mod warnings;

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    Action, AuditSettings, ConfirmMethod, ConfirmSettings, DEFAULT_UPSTREAM_TIMEOUT, Defaults,
    ForwardedOps, LockSettings, Policy, UpstreamSettings,
};
pub use problems::PolicyError;
use problems::{Ctx, with_fix};
use raw::{RawFile, S};
use sections::{Partial, expand_home};
pub use warnings::{hashed_glob_warnings, rule_warnings, unknown_name_warnings};

/// The built-in policy text (`policy/default.toml`).
pub const DEFAULT_POLICY: &str = include_str!("../../../../policy/default.toml");

const MAX_INCLUDE_DEPTH: usize = 8;
const DEFAULT_AUDIT_BYTES: u64 = 10 * 1024 * 1024;

/// One file, compiled: its settings, then its rules, then its includes.
fn compile_file(
    text: &str,
    file: &str,
    base: Option<&Path>,
    depth: usize,
    seen: &mut Vec<PathBuf>,
    digest: &mut crate::ssh::digest::Sha256,
) -> Result<Partial, Vec<PolicyError>> {
    // Every file's name and text, in the order read: two loads with the
    // same digest compiled the same policy.
    digest.update(&(file.len() as u64).to_le_bytes());
    digest.update(file.as_bytes());
    digest.update(&(text.len() as u64).to_le_bytes());
    digest.update(text.as_bytes());
    let mut ctx = Ctx::new(text, file);
    let raw: RawFile = match toml::from_str(text) {
        Ok(raw) => raw,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            let message = with_fix(text, span.clone(), e.message());
            ctx.err(span, message);
            return Err(ctx.errors);
        }
    };
    let mut p = sections::settings(&mut ctx, &raw);
    p.rules = rules::rules(&mut ctx, &raw.rule);
    // Includes last, so this file's own errors are reported even if one fails.
    let includes = Includes {
        base,
        depth,
        seen,
        digest,
    };
    includes.compile(&mut ctx, raw.include.iter().flatten(), &mut p);
    if ctx.errors.is_empty() {
        Ok(p)
    } else {
        Err(ctx.errors)
    }
}

/// Where a file's includes are read from, and the files read on the way.
struct Includes<'a> {
    /// The including file's folder; `None` for text with no file.
    base: Option<&'a Path>,
    depth: usize,
    /// The files being compiled, outermost first, to refuse a cycle.
    seen: &'a mut Vec<PathBuf>,
    digest: &'a mut crate::ssh::digest::Sha256,
}

impl Includes<'_> {
    /// Compiles each include in order and merges it into `p`.
    fn compile<'r>(
        self,
        ctx: &mut Ctx<'_>,
        includes: impl Iterator<Item = &'r S<String>>,
        p: &mut Partial,
    ) {
        for inc in includes {
            let Some(base) = self.base else {
                ctx.err(inc.span(), "include is only possible in a policy file");
                continue;
            };
            if self.depth >= MAX_INCLUDE_DEPTH {
                ctx.err(inc.span(), "includes nested too deeply");
                continue;
            }
            let target = match expand_home(inc.get_ref()) {
                p if p.is_absolute() => p,
                p => base.join(p),
            };
            let canonical = std::fs::canonicalize(&target).unwrap_or_else(|_| target.clone());
            if self.seen.contains(&canonical) {
                ctx.err(
                    inc.span(),
                    format!("include cycle through {}", target.display()),
                );
                continue;
            }
            // An include decides as much as the file naming it: the same
            // owner and mode rules apply.
            if let Err(why) = super::owner::check(&target) {
                ctx.err(inc.span(), why.to_string());
                continue;
            }
            match std::fs::read_to_string(&target) {
                Ok(inc_text) => {
                    self.seen.push(canonical);
                    let inc_file = target.display().to_string();
                    match compile_file(
                        &inc_text,
                        &inc_file,
                        target.parent(),
                        self.depth + 1,
                        self.seen,
                        self.digest,
                    ) {
                        Ok(partial) => p.absorb(partial),
                        Err(mut errs) => ctx.errors.append(&mut errs),
                    }
                    self.seen.pop();
                }
                Err(e) => ctx.err(
                    inc.span(),
                    format!("cannot read include {}: {e}", target.display()),
                ),
            }
        }
    }
}

fn finish(p: Partial, source: Option<PathBuf>, digest: crate::ssh::digest::Sha256) -> Policy {
    let action = |v: Option<Action>, d: Action| v.unwrap_or(d);
    Policy {
        source,
        digest: digest.finish(),
        exact_names: Policy::collect_exact_names(&p.rules),
        shapes: p
            .rules
            .iter()
            .map(super::prefilter::RuleShape::of)
            .collect(),
        rules: p.rules,
        defaults: Defaults {
            local: action(p.local, Action::Allow),
            forwarded: action(p.forwarded, Action::Confirm),
            forwarded_unknown: p
                .forwarded_unknown
                .unwrap_or_else(|| action(p.forwarded, Action::Confirm)),
            forwarded_unverified: action(p.forwarded_unverified, Action::Deny),
        },
        confirm: ConfirmSettings {
            method: p.method.unwrap_or(ConfirmMethod::Auto),
            command: p.command.unwrap_or_default(),
            timeout: p.timeout.unwrap_or(Duration::from_secs(30)),
        },
        forwarded: ForwardedOps {
            add: action(p.fwd_add, Action::Confirm),
            remove: action(p.fwd_remove, Action::Deny),
            remove_all: action(p.fwd_remove_all, Action::Deny),
            lock: action(p.fwd_lock, Action::Deny),
            unlock: action(p.fwd_unlock, Action::Deny),
        },
        audit: AuditSettings {
            path: p.audit_path,
            max_bytes: p.audit_bytes.unwrap_or(DEFAULT_AUDIT_BYTES),
            journald: p.audit_journald.unwrap_or(false),
        },
        upstream: UpstreamSettings {
            socket: p.upstream_socket,
            timeout: p.upstream_timeout.unwrap_or(DEFAULT_UPSTREAM_TIMEOUT),
        },
        known_hosts: p.known_hosts,
        known_hosts_ports: p.known_hosts_ports,
        lock: LockSettings {
            idle: p.lock_idle,
            on_screen_lock: p.lock_on_screen.unwrap_or(false),
        },
        brake: p.brake,
    }
}

/// Parses policy text that has no file (no includes).
pub fn parse_str(text: &str, name: &str) -> Result<Policy, Vec<PolicyError>> {
    let mut digest = crate::ssh::digest::Sha256::new();
    compile_file(text, name, None, 0, &mut Vec::new(), &mut digest).map(|p| finish(p, None, digest))
}

/// Reads and compiles a policy file and its includes.
pub fn parse_file(path: &Path) -> Result<Policy, Vec<PolicyError>> {
    let name = path.display().to_string();
    // Checked before reading: a file another user could have written is
    // refused whatever it says.
    if let Err(why) = super::owner::check(path) {
        return Err(vec![PolicyError {
            file: name,
            line: 1,
            col: 1,
            message: why.to_string(),
            warning: false,
        }]);
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![PolicyError {
            file: name.clone(),
            line: 1,
            col: 1,
            message: format!("cannot read policy: {e}"),
            warning: false,
        }]
    })?;
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let mut digest = crate::ssh::digest::Sha256::new();
    compile_file(
        &text,
        &name,
        Some(&base),
        0,
        &mut vec![canonical],
        &mut digest,
    )
    .map(|p| finish(p, Some(path.to_path_buf()), digest))
}

/// The policy file and the includes it names (as far as they can be read)
/// that another user could have written, for `doctor`.
pub fn unsafe_files(path: &Path) -> Vec<super::owner::Unsafe> {
    let mut out = Vec::new();
    let mut seen: Vec<PathBuf> = Vec::new();
    let mut todo = vec![(path.to_path_buf(), 0)];
    while let Some((file, depth)) = todo.pop() {
        let canonical = std::fs::canonicalize(&file).unwrap_or_else(|_| file.clone());
        if depth > MAX_INCLUDE_DEPTH || seen.contains(&canonical) {
            continue;
        }
        seen.push(canonical);
        if let Err(why) = super::owner::check(&file) {
            out.push(why);
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let Ok(raw) = toml::from_str::<RawFile>(&text) else {
            continue;
        };
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        for inc in raw.include.iter().flatten() {
            let target = match expand_home(inc.get_ref()) {
                p if p.is_absolute() => p,
                p => base.join(p),
            };
            todo.push((target, depth + 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(text: &str) -> Vec<String> {
        parse_str(text, "p.toml")
            .unwrap_err()
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn the_brake_is_read_checked_and_off_unless_set() {
        let policy = parse_str("[forwarded]\nbrake = { hosts = 3, per = \"2m\" }\n", "p").unwrap();
        assert_eq!(
            policy.brake,
            Some(super::super::brake::BrakeSettings {
                hosts: 3,
                per: Duration::from_secs(120)
            })
        );
        // An existing file without it keeps meaning what it meant.
        assert_eq!(
            parse_str("[forwarded]\nadd = \"deny\"\n", "p")
                .unwrap()
                .brake,
            None
        );
        assert_eq!(
            errors("[forwarded]\nbrake = { hosts = 0, per = \"1m\" }\n"),
            ["p.toml:2:19: forwarded.brake.hosts must be from 1 to 1000, not 0"]
        );
        assert_eq!(
            errors("[forwarded]\nbrake = { hosts = 5, per = \"2d\" }\n"),
            ["p.toml:2:28: forwarded.brake.per must be more than 0 and at most 24h"]
        );
        let missing = errors("[forwarded]\nbrake = { hosts = 5 }\n").join("\n");
        assert!(missing.contains("per"), "{missing}");
        let unknown =
            errors("[forwarded]\nbrake = { hosts = 5, per = \"1m\", window = 3 }\n").join("\n");
        assert!(unknown.contains("window"), "{unknown}");
    }

    #[test]
    fn the_built_in_policy_brakes_at_five_hosts_a_minute() {
        let policy = parse_str(DEFAULT_POLICY, "built-in").unwrap();
        assert_eq!(
            policy.brake,
            Some(super::super::brake::BrakeSettings {
                hosts: 5,
                per: Duration::from_secs(60)
            })
        );
    }

    #[test]
    fn known_hosts_ports_are_ports() {
        let policy = parse_str("[known_hosts]\nports = [2222, 22202, 2222]\n", "p").unwrap();
        assert_eq!(policy.known_hosts_ports, vec![2222, 22202]);
        assert!(policy.known_hosts.is_empty(), "files may be left out");
        assert_eq!(
            errors("[known_hosts]\nports = [22, 0, 70000]\n"),
            vec![
                "p.toml:2:14: a port is a number from 1 to 65535",
                "p.toml:2:17: a port is a number from 1 to 65535"
            ]
        );
    }

    #[test]
    fn jump_is_checked_like_via_and_never_with_forwarding_hops() {
        let p = parse_str(
            "[[rule]]\nname = \"j\"\nhost = [\"prod\"]\n\
             jump = [\"bastion\", \"**\"]\naction = \"allow\"\n",
            "p.toml",
        )
        .unwrap();
        assert_eq!(p.rules[0].jump.as_ref().map(Vec::len), Some(2));
        assert!(p.exact_names.contains(&"bastion".to_string()));
        let e = errors("[[rule]]\njump = [\"bad[glob\"]\naction = \"allow\"\n");
        assert!(e[0].starts_with("p.toml:2:9: jump: bad glob"), "{e:?}");
        assert_eq!(
            errors("[[rule]]\njump = \"bastion\"\naction = \"allow\"\n"),
            vec!["p.toml:2:8: jump takes a list: use jump = [\"bastion\"]"]
        );
        let e = errors("[[rule]]\nvia = [\"b\"]\njump = [\"a\"]\naction = \"allow\"\n");
        assert!(
            e[0].starts_with("p.toml:3:8: this rule can never match: jump hosts belong"),
            "{e:?}"
        );
        let e = errors("[[rule]]\npurpose = \"git\"\njump = [\"a\"]\naction = \"allow\"\n");
        assert!(
            e[0].contains("p.toml:3:8: this rule can never match: a git signature has no jump"),
            "{e:?}"
        );
        // Neither needs a hop: fine together.
        for fine in [
            "[[rule]]\nvia = [\"b\"]\njump = []\naction = \"allow\"\n",
            "[[rule]]\nvia = [\"**\"]\njump = [\"a\"]\naction = \"allow\"\n",
        ] {
            assert!(parse_str(fine, "p").is_ok(), "{fine}");
        }
    }

    #[test]
    fn builtin_policy_is_the_shipped_file() {
        let p = Policy::builtin();
        assert_eq!(p.defaults.forwarded, Action::Confirm);
        assert_eq!(p.forwarded.remove_all, Action::Deny);
        assert!(p.rules.is_empty());
    }

    #[test]
    fn errors_carry_positions() {
        assert_eq!(
            errors("[defaults]\nlocal = \"maybe\"\n"),
            vec!["p.toml:2:9: unknown action \"maybe\" (use allow, notify, confirm or deny)"]
        );
        let e = errors("[[rule]]\naction = \"allow\"\ncolour = \"red\"\n");
        assert!(
            e[0].starts_with("p.toml:3:1: unknown field `colour`"),
            "{e:?}"
        );
        let e = errors("[[rule]]\nhost = [\"bad[glob\"]\naction = \"allow\"\n");
        assert!(e[0].starts_with("p.toml:2:9: host: bad glob"), "{e:?}");
        let e = errors("[[rule]]\nremember = \"10 minutes\"\naction = \"allow\"\n");
        assert!(e[0].starts_with("p.toml:2:12: invalid time span"), "{e:?}");
        let e = errors("[[rule]]\npurpose = \"ftp\"\naction = \"allow\"\n");
        assert!(e[0].starts_with("p.toml:2:11: unknown purpose"), "{e:?}");
        let e =
            errors("[[rule]]\npurpose = \"git\"\nhost = [\"github.com\"]\naction = \"allow\"\n");
        assert!(
            e[0].contains("p.toml:3:8: this rule can never match"),
            "{e:?}"
        );
        let e = errors("[[rule]]\nkeys = []\naction = \"allow\"\n");
        assert!(
            e[0].contains("p.toml:2:8: keys = [] can never match"),
            "{e:?}"
        );
        let e = errors("[[rule]]\nname = \"x\"\n");
        assert!(e[0].contains("missing field `action`"), "{e:?}");
        assert_eq!(
            errors("[[rule]]\nhost = \"db1\"\naction = \"allow\"\n"),
            vec!["p.toml:2:8: host takes a list: use host = [\"db1\"]"]
        );
        assert_eq!(
            errors("[[rule]]\naction = [\"allow\"]\n"),
            vec!["p.toml:2:10: action takes one value: use action = \"allow\""]
        );
        let e = errors("[[rule]]\nkeys = [\"SHA256:abc\"]\naction = \"deny\"\n");
        assert!(
            e[0].starts_with("p.toml:2:9: keys: \"SHA256:abc\" is not a SHA256 fingerprint"),
            "{e:?}"
        );
        let e = errors("[[rule]]\nkeys = [\"MD5:12:34\"]\naction = \"deny\"\n");
        assert!(e[0].contains("MD5 fingerprints are not matched"), "{e:?}");
        let e = errors(
            "[[rule]]\nhost = [\"sha256:0b6FxyQm1xdzs8K8YvOQ8k0m1x7Yv4sQjxHf3a4mP2k\"]\naction = \"deny\"\n",
        );
        assert!(e[0].contains("is not a SHA256 fingerprint"), "{e:?}");
        assert!(
            parse_str(
                "[[rule]]\nkeys = [\"SHA256:9gXlkH9B2PQZyv1Ygq/c85tHnX2Xh6+mErPtablUL9Y\", \"work:*\"]\naction = \"deny\"\n",
                "p.toml"
            )
            .is_ok()
        );
        let e = errors("[lock]\nidle = \"0s\"\n");
        assert!(
            e[0].starts_with("p.toml:2:8: lock.idle must be more than 0"),
            "{e:?}"
        );
        let e = errors("[lock]\nscreen = true\n");
        assert!(e[0].contains("unknown field `screen`"), "{e:?}");
        let p = parse_str("[lock]\nidle = \"30m\"\non_screen_lock = true\n", "p.toml").unwrap();
        assert_eq!(p.lock.idle, Some(Duration::from_secs(1800)));
        assert!(p.lock.on_screen_lock);
        let e = errors("this is not toml");
        assert!(e[0].starts_with("p.toml:1:"), "{e:?}");
    }

    /// An include decides as much as the file naming it: one others can
    /// write is refused at the line that names it, and `doctor` finds it.
    #[test]
    fn an_include_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let machine = dir.path().join("machine.toml");
        std::fs::write(&machine, "[defaults]\nforwarded = \"allow\"\n").unwrap();
        std::fs::set_permissions(&machine, std::fs::Permissions::from_mode(0o646)).unwrap();
        let main = dir.path().join("main.toml");
        std::fs::write(&main, "include = [\"machine.toml\"]\n").unwrap();
        let e = parse_file(&main).unwrap_err();
        assert_eq!(e.len(), 1, "{e:?}");
        let text = e[0].to_string();
        assert!(text.contains("main.toml:1:12: "), "{text}");
        assert!(
            text.ends_with(&format!("fix: chmod go-w {}", machine.display())),
            "{text}"
        );
        let found = unsafe_files(&main);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].path, machine);
        std::fs::set_permissions(&machine, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(parse_file(&main).is_ok());
        assert!(unsafe_files(&main).is_empty());
    }

    #[test]
    fn includes_put_their_rules_first_and_settings_last() {
        let dir = std::env::temp_dir().join(format!("hopward-inc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("machine.toml"),
            "[defaults]\nforwarded = \"deny\"\nlocal = \"confirm\"\n[[rule]]\nname = \"machine\"\naction = \"deny\"\nuser = [\"root\"]\n",
        )
        .unwrap();
        std::fs::write(
            dir.join("main.toml"),
            "include = [\"machine.toml\"]\n[defaults]\nlocal = \"allow\"\n[[rule]]\nname = \"shared\"\naction = \"allow\"\n",
        )
        .unwrap();
        let p = parse_file(&dir.join("main.toml")).unwrap();
        assert_eq!(
            p.rules.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
            ["machine", "shared"]
        );
        assert_eq!(p.defaults.local, Action::Allow, "the including file wins");
        assert_eq!(
            p.defaults.forwarded,
            Action::Deny,
            "unset here, taken from the include"
        );

        std::fs::write(dir.join("loop.toml"), "include = [\"loop.toml\"]\n").unwrap();
        let e = parse_file(&dir.join("loop.toml")).unwrap_err();
        assert!(e[0].message.contains("include cycle"), "{e:?}");
        std::fs::write(dir.join("missing.toml"), "include = [\"nope.toml\"]\n").unwrap();
        let e = parse_file(&dir.join("missing.toml")).unwrap_err();
        assert!(
            e[0].to_string()
                .contains("missing.toml:1:12: cannot read include"),
            "{e:?}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn every_problem_of_a_file_is_reported_in_the_order_written() {
        // One problem in every table and every rule field, in one file: the
        // whole report, word for word and in order.
        let text = "\
[defaults]
local = \"maybe\"
forwarded_unknown = \"ask\"

[confirm]
method = \"popup\"
command = [\"relative\"]
timeout = \"0s\"

[forwarded]
add = \"yes\"
brake = { hosts = 0, per = \"25h\" }

[lock]
idle = \"0s\"

[upstream]
socket = \"relative.sock\"
timeout = \"0s\"

[known_hosts]
ports = [0]

[[rule]]
action = \"perhaps\"
purpose = \"ftp\"
keys = []
host = [\"bad[glob\"]
via = [\"SHA256:short\"]
user = []
jump = [\"MD5:aa:bb\"]
remember = \"soon\"
caller = []

[[rule]]
name = \"git through a jump\"
purpose = \"git\"
host = [\"github.com\"]
user = [\"git\"]
via = [\"bastion\"]
jump = [\"gw\"]
action = \"allow\"
";
        assert_eq!(
            errors(text),
            vec![
                "p.toml:2:9: unknown action \"maybe\" (use allow, notify, confirm or deny)",
                "p.toml:3:21: unknown action \"ask\" (use allow, notify, confirm or deny)",
                "p.toml:6:10: unknown confirm method \"popup\" (use auto, desktop, askpass, command or macos)",
                "p.toml:7:11: confirm.command must start with an absolute program path",
                "p.toml:8:11: confirm.timeout must be more than 0",
                "p.toml:11:7: unknown action \"yes\" (use allow, notify, confirm or deny)",
                "p.toml:12:19: forwarded.brake.hosts must be from 1 to 1000, not 0",
                "p.toml:12:28: forwarded.brake.per must be more than 0 and at most 24h",
                "p.toml:15:8: lock.idle must be more than 0 (remove it to never lock when idle)",
                "p.toml:18:10: upstream.socket must be an absolute path or start with ~/",
                "p.toml:19:11: upstream.timeout must be more than 0",
                "p.toml:22:10: a port is a number from 1 to 65535",
                "p.toml:25:10: unknown action \"perhaps\" (use allow, notify, confirm or deny)",
                "p.toml:26:11: unknown purpose \"ftp\" (use login, git, file or other)",
                "p.toml:27:8: keys = [] can never match; remove the field to match anything",
                "p.toml:28:9: host: bad glob \"bad[glob\": unclosed character class; missing ']'",
                "p.toml:29:8: via: \"SHA256:short\" is not a SHA256 fingerprint (SHA256: and 43 base64 characters, as ssh-keygen -l -f KEY prints it)",
                "p.toml:30:8: user = [] can never match; remove the field to match anything",
                "p.toml:31:9: jump: \"MD5:aa:bb\": MD5 fingerprints are not matched; use the SHA256 one (ssh-keygen -l -E sha256 -f KEY)",
                "p.toml:31:8: this rule can never match: jump hosts belong to logins made from this machine (ssh -J), and a request through forwarding hops (via) has none; use jump = [] or leave one of them out",
                "p.toml:32:12: invalid time span \"soon\": use a number of seconds or units s, m, h, d, w (e.g. 90, 10m, 1h30m)",
                "p.toml:33:10: caller = [] can never match; remove the field to match anything",
                "p.toml:41:8: this rule can never match: jump hosts belong to logins made from this machine (ssh -J), and a request through forwarding hops (via) has none; use jump = [] or leave one of them out",
                "p.toml:41:8: this rule can never match: a git signature has no jump host",
                "p.toml:38:8: this rule can never match: a git signature has no destination host",
                "p.toml:39:8: this rule can never match: a git signature has no remote user",
            ]
        );
    }
}
