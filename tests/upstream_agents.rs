//! Upstream mode in front of other real agents: gpg-agent with
//! `enable-ssh-support` (which knows no session-bind), a second hopward
//! (whose own policy still sees the replayed binds), and OpenSSH 10.5's
//! `ssh-agent` holding a FIDO key through the `sk-dummy.so` test provider.
//! Each logs in over real sshd hosts through the front hopward.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::sshd::Hosts;
use common::upstream::{SshAgent, listed};
use common::*;

/// OpenSSH 10.5 beside the repository, as CI has it (or
/// `$HOPWARD_OPENSSH_105`).
fn openssh_10_5() -> PathBuf {
    common::openssh105::dir()
}

const FRONT_POLICY: &str = r#"
[defaults]
local = "allow"
forwarded = "deny"
forwarded_unverified = "deny"

[[rule]]
name = "target via bastion"
host = ["target"]
via = ["bastion"]
action = "allow"
"#;

fn front(upstream: &Path, known_hosts: &Path, policy: &str) -> Daemon {
    Daemon::builder()
        .policy(policy)
        .arg("--upstream")
        .arg(upstream.to_str().unwrap())
        .env("HOPWARD_KNOWN_HOSTS", known_hosts.to_str().unwrap())
        .start()
}

/// A gpg-agent with ssh support in its own home, stopped when dropped.
struct GpgAgent {
    home: PathBuf,
    sock: PathBuf,
}

impl GpgAgent {
    fn start(home: &Path) -> GpgAgent {
        std::fs::create_dir_all(home).unwrap();
        std::fs::set_permissions(home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        std::fs::write(home.join("gpg-agent.conf"), "enable-ssh-support\n").unwrap();
        let gpg = |args: &[&str]| {
            ok(run(Command::new("gpg")
                .arg("--homedir")
                .arg(home)
                .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
                .args(args)))
        };
        // A key with no passphrase: signing needs no pinentry.
        gpg(&[
            "--quick-gen-key",
            "hopward test <upstream@example.com>",
            "ed25519",
            "auth",
            "never",
        ]);
        let colons = stdout(&gpg(&["--list-keys", "--with-keygrip", "--with-colons"]));
        let keygrip = colons
            .lines()
            .find(|l| l.starts_with("grp:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("a keygrip")
            .to_string();
        std::fs::write(home.join("sshcontrol"), format!("{keygrip} 0\n")).unwrap();
        // (gpg started the agent already; this makes sure it runs.)
        ok(run(Command::new("gpgconf")
            .arg("--homedir")
            .arg(home)
            .args(["--launch", "gpg-agent"])));
        let sock = PathBuf::from(
            stdout(&ok(run(Command::new("gpgconf")
                .arg("--homedir")
                .arg(home)
                .args(["--list-dirs", "agent-ssh-socket"]))))
            .trim(),
        );
        GpgAgent {
            home: home.to_path_buf(),
            sock,
        }
    }
}

impl Drop for GpgAgent {
    fn drop(&mut self) {
        let _ = run(Command::new("gpgconf")
            .arg("--homedir")
            .arg(&self.home)
            .args(["--kill", "gpg-agent"]));
    }
}

#[test]
fn gpg_agent_keys_log_in_through_hopwards_policy() {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target", "deep"]);
    let gpg = GpgAgent::start(&tmp.path().join("gnupg"));
    let public = stdout(&ok(run(Command::new("ssh-add")
        .arg("-L")
        .env("SSH_AUTH_SOCK", &gpg.sock))));
    let pubfile = tmp.path().join("gpg-key.pub");
    std::fs::write(&pubfile, &public).unwrap();
    hosts.authorize(&pubfile);
    let agent = front(&gpg.sock, &tmp.path().join("known_hosts"), FRONT_POLICY);

    let listing = stdout(&ok(agent.ssh_add(&["-L"])));
    assert_eq!(
        listing.trim(),
        public.trim(),
        "the gpg key, listed through hopward"
    );
    let out = hosts.ssh(&agent.sock, &["bastion", "echo direct"]);
    assert!(stdout(&ok(out)).contains("direct"));
    let out = hosts.through(&agent.sock, "bastion", "target");
    assert!(stdout(&ok(out)).contains("reached-target"));
    let out = hosts.through(&agent.sock, "deep", "target");
    assert!(!stdout(&out).contains("reached-target"), "{}", text(&out));

    let audit = agent.audit_until(|l| l.iter().any(|x| x["rule"] == "target via bastion"));
    let allowed = audit
        .iter()
        .find(|x| x["event"] == "sign" && x["rule"] == "target via bastion")
        .unwrap_or_else(|| panic!("{audit:?}"));
    assert_eq!(allowed["upstream"], true);
    assert!(
        audit
            .iter()
            .any(|x| x["decision"] == "deny" && x["rule"] == "default:forwarded"),
        "{audit:?}"
    );
    // gpg-agent 2.2 refuses session-bind: hopward found out and says so.
    let status = agent.status();
    assert_eq!(status["upstream"]["session_bind"], false, "{status:#}");
}

#[test]
fn a_second_hopward_upstream_still_applies_its_own_policy_to_the_replayed_binds() {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target", "deep"]);
    let known = tmp.path().join("known_hosts");
    // The upstream hopward holds the key and refuses anything for deep.
    let upstream = Daemon::builder()
        .policy(
            "[defaults]\nforwarded = \"allow\"\n\n[[rule]]\nname = \"never deep\"\nhost = [\"deep\"]\naction = \"deny\"\n",
        )
        .env("HOPWARD_KNOWN_HOSTS", known.to_str().unwrap())
        .start();
    let key = keygen(tmp.path(), "inner", "ed25519", None);
    hosts.authorize(&key.with_extension("pub"));
    ok(upstream.ssh_add(&[key.to_str().unwrap()]));
    // The front allows everything forwarded.
    let agent = front(
        &upstream.sock,
        &known,
        "[defaults]\nforwarded = \"allow\"\nforwarded_unknown = \"allow\"\n",
    );
    let mut conn = agent.connect();
    assert_eq!(listed(&request(&mut conn, &[11])).len(), 1);
    let out = hosts.through(&agent.sock, "bastion", "target");
    assert!(stdout(&ok(out)).contains("reached-target"));
    let out = hosts.through(&agent.sock, "bastion", "deep");
    assert!(!stdout(&out).contains("reached-deep"), "{}", text(&out));
    // The upstream saw the chain through bastion to deep, so the binds
    // reached it, and its rule refused.
    let inner = upstream.audit_until(|l| l.iter().any(|x| x["rule"] == "never deep"));
    let refused = inner
        .iter()
        .find(|x| x["rule"] == "never deep")
        .unwrap_or_else(|| panic!("{inner:?}"));
    assert_eq!(refused["decision"], "deny");
    let names: Vec<&str> = refused["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["names"][0].as_str().unwrap_or("?"))
        .collect();
    assert_eq!(names, ["bastion", "deep"]);
    let front_signs = agent.audit_until(|l| l.iter().filter(|x| x["event"] == "sign").count() >= 3);
    assert!(
        front_signs
            .iter()
            .filter(|x| x["event"] == "sign")
            .all(|x| x["upstream"] == true),
        "{front_signs:?}"
    );
}

#[test]
fn a_fido_key_in_openssh_10_5s_agent_logs_in_through_hopward() {
    let openssh = openssh_10_5();
    let provider = openssh.join("regress/misc/sk-dummy/sk-dummy.so");
    assert!(provider.exists(), "{} is missing", provider.display());
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target", "deep"]);
    // The build's own FIDO helper, not the one at its compiled-in path
    // (/opt/openssh-10.5/libexec), which only OpenSSH's suite installs.
    let helper = openssh.join("ssh-sk-helper");
    let helper = helper.to_str().unwrap();
    let key = tmp.path().join("fido");
    ok(run(Command::new(openssh.join("ssh-keygen"))
        .args(["-q", "-t", "ed25519-sk", "-N", "", "-C", "fido", "-f"])
        .arg(&key)
        .env("SSH_SK_PROVIDER", &provider)
        .env("SSH_SK_HELPER", helper)));
    hosts.authorize(&key.with_extension("pub"));
    let up = SshAgent::start_with(
        &openssh.join("ssh-agent"),
        &tmp.path().join("up.sock"),
        &["-P/*"],
        &[("SSH_SK_HELPER", helper)],
    );
    ok(run(Command::new(openssh.join("ssh-add"))
        .arg(&key)
        .env("SSH_AUTH_SOCK", &up.sock)
        .env("SSH_SK_PROVIDER", &provider)));
    let agent = front(&up.sock, &tmp.path().join("known_hosts"), FRONT_POLICY);
    let listing = stdout(&ok(agent.ssh_add(&["-l"])));
    assert!(listing.contains("ED25519-SK"), "{listing}");
    let out = hosts.ssh(&agent.sock, &["bastion", "echo direct"]);
    assert!(stdout(&ok(out)).contains("direct"));
    let out = hosts.through(&agent.sock, "bastion", "target");
    assert!(stdout(&ok(out)).contains("reached-target"));
    let out = hosts.through(&agent.sock, "deep", "target");
    assert!(!stdout(&out).contains("reached-target"), "{}", text(&out));
    let audit = agent.audit_until(|l| l.iter().any(|x| x["rule"] == "target via bastion"));
    assert!(
        audit.iter().any(|x| x["event"] == "sign"
            && x["rule"] == "target via bastion"
            && x["upstream"] == true),
        "{audit:?}"
    );
    // 10.5 knows session-bind: the binds were replayed, not given up on.
    let status = agent.status();
    assert_eq!(status["upstream"]["session_bind"], true, "{status:#}");
}
