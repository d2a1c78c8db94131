//! Rules on the requesting process (`caller`, `ancestor`, `cwd`), with the
//! real OpenSSH tools as requesters: `ssh-keygen -Y sign` run from a named
//! script and from a chosen directory, `ssh-add -T` (which signs to test a
//! key), `ssh-add -l`.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;

/// `ssh-keygen -Y sign -n git` of a fresh file with `key`, run through
/// `via` (a script, or nothing) in `dir`; whether a signature came back.
fn git_sign(sock: &Path, key: &Path, dir: &Path, via: Option<&Path>) -> bool {
    let data = dir.join("commit");
    std::fs::write(&data, "tree 0\n").unwrap();
    let _ = std::fs::remove_file(dir.join("commit.sig"));
    let mut cmd = match via {
        Some(script) => Command::new(script),
        None => Command::new("ssh-keygen"),
    };
    cmd.args(["-Y", "sign", "-n", "git", "-f"])
        .arg(key.with_extension("pub"))
        .arg(&data)
        .current_dir(dir)
        .env("SSH_AUTH_SOCK", sock);
    let out = run(&mut cmd);
    out.status.success() && dir.join("commit.sig").exists()
}

/// An executable `#!/bin/sh` script called `name` in `dir` that runs
/// `ssh-keygen` with its arguments (and stays, so it is the parent).
fn script(dir: &Path, name: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, "#!/bin/sh\nssh-keygen \"$@\"\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

fn last_sign(agent: &Daemon, n: usize) -> serde_json::Value {
    let records = agent.audit_until(|r| r.iter().filter(|r| r["event"] == "sign").count() >= n);
    records
        .into_iter()
        .filter(|r| r["event"] == "sign")
        .nth(n - 1)
        .unwrap_or_else(|| panic!("no sign record number {n}"))
}

#[test]
fn a_git_signature_is_allowed_only_from_the_named_script() {
    let tmp = tempdir();
    let bin = tmp.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let release = script(&bin, "release-sign");
    let other = script(&bin, "other-tool");
    let agent = Daemon::builder()
        .policy(
            "[defaults]\nlocal = \"deny\"\n\
             [[rule]]\nname = \"release script\"\nancestor = [\"release-sign\"]\npurpose = \"git\"\naction = \"allow\"\n",
        )
        .start();
    let key = keygen(tmp.path(), "signing", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    assert!(git_sign(&agent.sock, &key, tmp.path(), Some(&release)));
    let record = last_sign(&agent, 1);
    assert_eq!(record["decision"], "allow", "{record}");
    assert_eq!(record["reason"], "release script", "{record}");
    assert!(!git_sign(&agent.sock, &key, tmp.path(), Some(&other)));
    assert!(!git_sign(&agent.sock, &key, tmp.path(), None));
    let record = last_sign(&agent, 3);
    assert_eq!(record["decision"], "deny", "{record}");
    assert_eq!(record["reason"], "default:local", "{record}");
    // By path as well as by name.
    let by_path = Daemon::builder()
        .policy(&format!(
            "[defaults]\nlocal = \"deny\"\n[[rule]]\nname = \"by path\"\nancestor = [\"{}\"]\naction = \"allow\"\n",
            release.display()
        ))
        .start();
    ok(by_path.ssh_add(&[key.to_str().unwrap()]));
    assert!(git_sign(&by_path.sock, &key, tmp.path(), Some(&release)));
    assert!(!git_sign(&by_path.sock, &key, tmp.path(), Some(&other)));
}

#[test]
fn a_signing_key_per_repository_by_working_directory() {
    let tmp = tempdir();
    let client = tmp.path().join("repo-a");
    let elsewhere = tmp.path().join("repo-b");
    std::fs::create_dir_all(client.join("src/deep")).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    let agent = Daemon::builder()
        .policy(&format!(
            "[defaults]\nlocal = \"deny\"\n\
             [[rule]]\nname = \"client A's key in client A\"\nkeys = [\"client-a\"]\ncwd = [\"{}\"]\npurpose = \"git\"\naction = \"allow\"\n",
            client.display()
        ))
        .start();
    let key = keygen(tmp.path(), "client-a", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    assert!(git_sign(&agent.sock, &key, &client, None));
    assert!(git_sign(&agent.sock, &key, &client.join("src/deep"), None));
    assert!(!git_sign(&agent.sock, &key, &elsewhere, None));
    let record = last_sign(&agent, 3);
    assert_eq!(record["reason"], "default:local", "{record}");
}

#[test]
fn an_allow_rule_on_the_caller_does_not_cover_another_program() {
    let tmp = tempdir();
    let agent = Daemon::builder()
        .policy(
            "[defaults]\nlocal = \"deny\"\n\
             [[rule]]\nname = \"ssh-add may test keys\"\ncaller = [\"ssh-add\"]\naction = \"allow\"\n",
        )
        .start();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    // `ssh-add -T` signs a challenge with the key: its caller is ssh-add.
    ok(agent.ssh_add(&["-T", key.with_extension("pub").to_str().unwrap()]));
    let record = last_sign(&agent, 1);
    assert_eq!(record["reason"], "ssh-add may test keys", "{record}");
    assert!(
        record["peer"]["exe"]
            .as_str()
            .is_some_and(|e| e.ends_with("/ssh-add")),
        "{record}"
    );
    assert!(!git_sign(&agent.sock, &key, tmp.path(), None));
    let record = last_sign(&agent, 2);
    assert_eq!(record["decision"], "deny", "{record}");
    assert_eq!(record["reason"], "default:local", "{record}");
    // Listing is not a signature: rules on the process do not hide keys.
    let listed = stdout(&ok(agent.ssh_add(&["-l"])));
    assert!(listed.contains(" k (ED25519)"), "{listed}");
}

#[test]
fn a_deny_rule_on_an_ancestor_refuses_what_would_be_allowed() {
    let tmp = tempdir();
    let agent_tool = script(tmp.path(), "ai-agent");
    let agent = Daemon::builder()
        .policy(
            "[defaults]\nlocal = \"allow\"\n\
             [[rule]]\nname = \"no signing for the coding agent\"\nancestor = [\"ai-agent\"]\naction = \"deny\"\n",
        )
        .start();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    assert!(!git_sign(&agent.sock, &key, tmp.path(), Some(&agent_tool)));
    let record = last_sign(&agent, 1);
    assert_eq!(record["decision"], "deny", "{record}");
    assert_eq!(
        record["reason"], "no signing for the coding agent",
        "{record}"
    );
    assert!(git_sign(&agent.sock, &key, tmp.path(), None));
}

#[test]
fn the_prompt_names_the_caller_and_its_directory() {
    let tmp = tempdir();
    let confirm = confirm_command(tmp.path());
    let repo = tmp.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let agent = Daemon::builder()
        .policy(&format!(
            "[confirm]\nmethod = \"command\"\ncommand = [\"{}\"]\n\
             [[rule]]\nname = \"ask in the repo\"\ncwd = [\"{}\"]\naction = \"confirm\"\n",
            confirm.display(),
            repo.display()
        ))
        .start();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    assert!(git_sign(&agent.sock, &key, &repo, None));
    let prompts = confirm_prompts(tmp.path());
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    let prompt = &prompts[0];
    assert!(
        prompt.contains(&format!("In directory: {}", repo.display())),
        "{prompt}"
    );
    assert!(
        prompt.contains(&format!("HOPWARD_CWD={}", repo.display())),
        "{prompt}"
    );
    assert!(
        prompt
            .lines()
            .any(|l| l.starts_with("HOPWARD_CALLER=/") && l.ends_with("/ssh-keygen")),
        "{prompt}"
    );
}

#[test]
fn explain_and_check_know_the_process_fields() {
    let tmp = tempdir();
    let policy = tmp.path().join("p.toml");
    std::fs::write(
        &policy,
        "[defaults]\nlocal = \"allow\"\n\
         [[rule]]\nname = \"ide asks\"\nancestor = [\"code\"]\naction = \"confirm\"\n\
         [[rule]]\nname = \"repo\"\ncaller = [\"git\"]\ncwd = [\"~/src/a\"]\naction = \"allow\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&policy, std::fs::Permissions::from_mode(0o600)).unwrap();
    let explain = |args: &[&str]| {
        stdout(&ok(run(Command::new(HOPWARD)
            .args(["policy", "explain", "--policy"])
            .arg(&policy)
            .args(["--purpose", "git"])
            .args(args)
            .env("HOME", tmp.path()))))
    };
    let from_ide = explain(&[
        "--caller",
        "/usr/bin/git",
        "--ancestor",
        "/bin/bash",
        "--ancestor",
        "/usr/share/code/code",
    ]);
    assert!(
        from_ide.contains("decision: confirm") && from_ide.contains("ide asks"),
        "{from_ide}"
    );
    let inside = tmp.path().join("src/a/lib");
    let inside = inside.to_str().unwrap();
    let from_shell = explain(&[
        "--caller",
        "/usr/bin/git",
        "--ancestor",
        "/bin/bash",
        "--cwd",
        inside,
    ]);
    assert!(from_shell.contains("decision: allow"), "{from_shell}");
    // Nothing said about the process: unprovable, so the confirm rule
    // still asks.
    let unknown = explain(&[]);
    assert!(unknown.contains("decision: confirm"), "{unknown}");
    assert!(
        unknown.contains("give --caller, --ancestor, --cwd"),
        "{unknown}"
    );

    std::fs::write(
        &policy,
        "[[rule]]\nname = \"r\"\ncwd = [\"src/a\"]\ncaller = []\naction = \"allow\"\n",
    )
    .unwrap();
    let out = run(Command::new(HOPWARD).args(["policy", "check"]).arg(&policy));
    assert!(!out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    assert!(
        printed
            .contains(":3:8: cwd: cwd pattern \"src/a\" must be an absolute path or start with ~/"),
        "{printed}"
    );
    assert!(
        printed.contains(":4:10: caller = [] can never match"),
        "{printed}"
    );
}
