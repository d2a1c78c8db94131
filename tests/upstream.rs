//! Upstream mode with a real OpenSSH `ssh-agent` behind hopward: listing,
//! `hopward status`, key operations, locking, and logins over real sshd
//! hosts (direct and forwarded; allowed, denied and confirmed by the policy;
//! `ssh-add -h` and `-c` keys whose restrictions the upstream still
//! enforces through hopward).

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::sshd::{BASTION_POLICY, Hosts};
use common::upstream::{SshAgent, listed, pub_blob};
use common::*;

fn fingerprint(key: &Path) -> String {
    let out = stdout(&ok(run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")))));
    out.split_whitespace().nth(1).unwrap().to_string()
}

fn sign_file(sock: &Path, key: &Path, file: &Path) -> std::process::Output {
    let _ = std::fs::remove_file(file.with_extension("sig"));
    run(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(key.with_extension("pub"))
        .arg(file)
        .env("SSH_AUTH_SOCK", sock))
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[test]
fn upstream_keys_are_listed_once_after_hopwards_and_key_operations_stay_local() {
    let tmp = tempdir();
    let up = SshAgent::start(&tmp.path().join("up.sock"));
    let shared = keygen(tmp.path(), "shared", "ed25519", None);
    let theirs = keygen(tmp.path(), "theirs", "ecdsa", None);
    ok(up.ssh_add(&[theirs.to_str().unwrap(), shared.to_str().unwrap()]));
    let agent = Daemon::builder()
        .arg("--upstream")
        .arg(up.sock.to_str().unwrap())
        .start();
    ok(agent.ssh_add(&[shared.to_str().unwrap()]));

    // hopward's own first, then the upstream's; the key both hold once.
    let mut conn = agent.connect();
    let keys = listed(&request(&mut conn, &[11]));
    let blobs: Vec<&[u8]> = keys.iter().map(|(b, _)| b.as_slice()).collect();
    assert_eq!(
        blobs,
        vec![pub_blob(&shared).as_slice(), pub_blob(&theirs).as_slice()],
        "{keys:?}"
    );

    let status = stdout(&ok(run(Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&agent.sock))));
    let theirs_fp = fingerprint(&theirs);
    assert!(
        status.contains("upstream:") && status.contains("reachable"),
        "{status}"
    );
    assert!(status.contains("upstream keys (2):"), "{status}");
    let line_of = |fp: &str| {
        status
            .lines()
            .find(|l| l.contains(fp) && l.contains("upstream"))
            .unwrap_or_else(|| panic!("no upstream line for {fp}:\n{status}"))
            .to_string()
    };
    assert!(line_of(&theirs_fp).contains("theirs"));
    assert!(
        line_of(&fingerprint(&shared)).contains("also held by hopward"),
        "{status}"
    );
    assert!(
        status.contains("keys (1):"),
        "only one key is hopward's:\n{status}"
    );

    // A signature with the upstream's key, decided and audited by hopward.
    let file = tmp.path().join("data");
    std::fs::write(&file, "hello").unwrap();
    ok(sign_file(&agent.sock, &theirs, &file));
    ok(run(Command::new("ssh-keygen")
        .args(["-Y", "check-novalidate", "-n", "file", "-f"])
        .arg(theirs.with_extension("pub"))
        .arg("-s")
        .arg(file.with_extension("sig"))
        .stdin(std::fs::File::open(&file).unwrap())));
    let audit = agent.audit_until(|l| l.iter().any(|x| x["event"] == "sign"));
    let line = audit.iter().find(|l| l["event"] == "sign").unwrap();
    assert_eq!(line["key"], theirs_fp.as_str());
    assert_eq!(line["upstream"], true);
    assert_eq!(line["decision"], "allow");
    assert_eq!(line["purpose"], "file");

    // Key operations act on hopward's own store only.
    let d = agent.ssh_add(&["-d", theirs.with_extension("pub").to_str().unwrap()]);
    assert!(
        !d.status.success(),
        "hopward removed a key it does not hold\n{}",
        text(&d)
    );
    assert!(stdout(&ok(up.ssh_add(&["-l"]))).contains("theirs"));
    ok(agent.ssh_add(&["-D"]));
    let after = listed(&request(&mut conn, &[11]));
    assert_eq!(after.len(), 2, "the upstream still holds both: {after:?}");
    assert_eq!(stdout(&ok(up.ssh_add(&["-l"]))).lines().count(), 2);

    // Locking hopward hides and refuses the upstream's keys too.
    let pass = script(tmp.path(), "pass", "echo hunter2");
    let with_pass = |flag: &str| {
        run(agent
            .ssh_add_cmd()
            .arg(flag)
            .env("SSH_ASKPASS", &pass)
            .env("SSH_ASKPASS_REQUIRE", "force"))
    };
    ok(with_pass("-x"));
    assert!(listed(&request(&mut conn, &[11])).is_empty());
    // (ssh-keygen would fall back to the key file: ask the agent itself.)
    let sign = sign_request(&pub_blob(&theirs), b"locked?");
    assert_eq!(request(&mut conn, &sign), vec![5]);
    let status = agent.status();
    assert_eq!(status["locked"], true, "{status:#}");
    ok(with_pass("-X"));
    assert_eq!(listed(&request(&mut conn, &[11])).len(), 2);
    assert_eq!(request(&mut conn, &sign)[0], 14);
}

#[test]
fn the_policy_file_names_the_upstream_and_the_flag_wins() {
    let tmp = tempdir();
    let up = SshAgent::start(&tmp.path().join("up.sock"));
    let other = SshAgent::start(&tmp.path().join("other.sock"));
    let a = keygen(tmp.path(), "in-up", "ed25519", None);
    let b = keygen(tmp.path(), "in-other", "ed25519", None);
    ok(up.ssh_add(&[a.to_str().unwrap()]));
    ok(other.ssh_add(&[b.to_str().unwrap()]));
    let policy = format!("[upstream]\nsocket = \"{}\"\n", up.sock.display());
    let by_policy = Daemon::builder().policy(&policy).start();
    let l = stdout(&ok(by_policy.ssh_add(&["-l"])));
    assert!(l.contains("in-up") && !l.contains("in-other"), "{l}");
    let by_flag = Daemon::builder()
        .policy(&policy)
        .arg("--upstream")
        .arg(other.sock.to_str().unwrap())
        .start();
    let l = stdout(&ok(by_flag.ssh_add(&["-l"])));
    assert!(l.contains("in-other") && !l.contains("in-up"), "{l}");
    // `policy check` knows the section and refuses a relative socket.
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[upstream]\nsocket = \"relative.sock\"\n").unwrap();
    let out = run(Command::new(HOPWARD).args(["policy", "check"]).arg(&bad));
    assert!(!out.status.success());
    assert!(stdout(&out).contains("upstream.socket"), "{}", text(&out));
}

struct World {
    tmp: tempfile::TempDir,
    hosts: Hosts,
    /// Kept running while the world lives.
    _up: SshAgent,
    agent: Daemon,
    key: PathBuf,
}

/// sshd hosts bastion, target and deep; an ssh-agent holding `work` (added
/// with `add_args`) behind hopward with `policy` (CONFIRM: the command
/// confirmer); hopward holds no key.
fn world(policy: &str, add_args: &[&str], agent_env: &[(&str, &str)]) -> World {
    world_with(Path::new("ssh-agent"), policy, add_args, agent_env)
}

/// [`world`] with another `ssh-agent` program (and the `ssh-add` beside it).
fn world_with(
    program: &Path,
    policy: &str,
    add_args: &[&str],
    agent_env: &[(&str, &str)],
) -> World {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target", "deep"]);
    let up = SshAgent::start_with(program, &tmp.path().join("up.sock"), &[], agent_env);
    let key = keygen(tmp.path(), "work", "ed25519", None);
    hosts.authorize(&key.with_extension("pub"));
    let kh = hosts.known_hosts();
    let mut add = vec!["-H", kh.to_str().unwrap()];
    add.extend_from_slice(add_args);
    add.push(key.to_str().unwrap());
    ok(up.ssh_add(&add));
    let confirm = confirm_command(tmp.path());
    let policy = policy.replace("CONFIRM", confirm.to_str().unwrap());
    let agent = hosts
        .daemon()
        .policy(&policy)
        .arg("--upstream")
        .arg(up.sock.to_str().unwrap())
        .start();
    World {
        tmp,
        hosts,
        _up: up,
        agent,
        key,
    }
}

#[test]
fn logins_with_an_upstream_key_follow_the_policy_with_audit_lines() {
    let w = world(BASTION_POLICY, &[], &[]);
    let fp = fingerprint(&w.key);
    // Direct: local class, allowed.
    let out = w.hosts.ssh(&w.agent.sock, &["bastion", "echo direct"]);
    assert!(stdout(&ok(out)).contains("direct"));
    // Forwarded and allowed by a rule.
    let out = w.hosts.through(&w.agent.sock, "bastion", "target");
    assert!(stdout(&ok(out)).contains("reached-target"));
    let signs = w.agent.audit_until(|l| {
        l.iter()
            .any(|x| x["rule"] == "target via bastion" && x["event"] == "sign")
    });
    let allowed = signs
        .iter()
        .find(|l| l["rule"] == "target via bastion")
        .unwrap();
    assert_eq!(allowed["upstream"], true);
    assert_eq!(allowed["key"], fp.as_str());
    assert_eq!(allowed["decision"], "allow");
    assert_eq!(allowed["destination"], "verified");

    // Confirmed: the command confirmer is asked, and the login follows it.
    let out = w.hosts.through(&w.agent.sock, "bastion", "deep");
    assert!(stdout(&ok(out)).contains("reached-deep"));
    let prompts = confirm_prompts(w.tmp.path());
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    assert!(
        prompts[0].contains("HOPWARD_CHAIN=bastion>deep"),
        "{prompts:?}"
    );
    assert!(
        prompts[0].contains(&format!("HOPWARD_KEY={fp}")),
        "{prompts:?}"
    );
    std::fs::write(w.tmp.path().join("answer"), "no").unwrap();
    let out = w.hosts.through(&w.agent.sock, "bastion", "deep");
    assert!(!stdout(&out).contains("reached-deep"), "{}", text(&out));
    assert_eq!(confirm_prompts(w.tmp.path()).len(), 2);

    // Denied by default: no rule for target via deep. No rule could allow
    // the key through deep, so it is not even listed there.
    let out = w.hosts.through(&w.agent.sock, "deep", "target");
    assert!(!stdout(&out).contains("reached-target"), "{}", text(&out));
    let hidden = w
        .agent
        .audit_until(|l| l.iter().any(|x| x["event"] == "list"));
    assert!(
        hidden.iter().any(|x| x["event"] == "list"
            && x["key"] == fp.as_str()
            && x["decision"] == "deny"
            && x["rule"] == "default:forwarded"),
        "{hidden:?}"
    );

    let lines = w.agent.audit_until(|l| {
        l.iter()
            .filter(|x| x["event"] == "sign" && x["decision"] == "deny")
            .count()
            >= 2
    });
    let signs: Vec<_> = lines.iter().filter(|l| l["event"] == "sign").collect();
    assert!(signs.iter().all(|l| l["upstream"] == true), "{signs:?}");
    assert!(
        signs
            .iter()
            .any(|l| l["rule"] == "deep needs a yes" && l["reason"] == "confirmed")
    );
    assert!(
        signs
            .iter()
            .any(|l| l["rule"] == "deep needs a yes" && l["decision"] == "deny")
    );
}

const ALLOW_ALL: &str = r#"
[defaults]
local = "allow"
forwarded = "allow"
forwarded_unknown = "allow"
forwarded_unverified = "deny"
"#;

#[test]
fn the_upstreams_own_destination_constraints_hold_through_hopward() {
    constraints_hold(Path::new("ssh-agent"));
}

#[test]
fn openssh_10_5s_destination_constraints_hold_through_hopward() {
    constraints_hold(&common::openssh105::program("ssh-agent"));
}

fn constraints_hold(program: &Path) {
    // ssh-add -h on the upstream: bastion, and target only through bastion.
    let w = world_with(
        program,
        ALLOW_ALL,
        &["-h", "bastion", "-h", "bastion>target"],
        &[],
    );
    // A destination-constrained key signs nothing on an unbound connection:
    // this works only because hopward replayed the bind.
    let out = w.hosts.ssh(&w.agent.sock, &["bastion", "echo direct"]);
    assert!(stdout(&ok(out)).contains("direct"));
    let out = w.hosts.through(&w.agent.sock, "bastion", "target");
    assert!(stdout(&ok(out)).contains("reached-target"));
    // The policy allows everything; the upstream's constraint still
    // refuses: it does not even list the key on those connections, as
    // ssh-agent hides a key no hop of the chain may use.
    let out = w.hosts.through(&w.agent.sock, "bastion", "deep");
    assert!(!stdout(&out).contains("reached-deep"), "{}", text(&out));
    let out = w.hosts.ssh(&w.agent.sock, &["deep", "echo direct-deep"]);
    assert!(!stdout(&out).contains("direct-deep"), "{}", text(&out));
    let lines = w.agent.audit(0);
    let deep_signs: Vec<_> = lines
        .iter()
        .filter(|x| {
            x["event"] == "sign"
                && x["chain"]
                    .as_array()
                    .is_some_and(|c| c.iter().any(|h| h["names"][0] == "deep"))
        })
        .collect();
    assert!(deep_signs.is_empty(), "{deep_signs:?}");
    assert_eq!(
        lines.iter().filter(|x| x["event"] == "sign").count(),
        4,
        "bastion; bastion and target; bastion on the way to deep: {lines:?}"
    );
}

#[test]
fn an_upstream_confirm_key_asks_upstream_only_after_the_policy_allows() {
    let tmp_dir = tempdir();
    let asked = tmp_dir.path().join("asked");
    let answer = tmp_dir.path().join("upstream-answer");
    std::fs::write(&answer, "yes").unwrap();
    let askpass = script(
        tmp_dir.path(),
        "askpass",
        &format!(
            "echo \"$1\" >> {asked}\n[ \"$(cat {answer})\" = yes ] && exit 0\nexit 1",
            asked = asked.display(),
            answer = answer.display()
        ),
    );
    let w = world(
        BASTION_POLICY,
        &["-c"],
        &[
            ("SSH_ASKPASS", askpass.to_str().unwrap()),
            ("SSH_ASKPASS_REQUIRE", "force"),
            ("DISPLAY", ":0"),
        ],
    );
    let count = || {
        std::fs::read_to_string(&asked)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.starts_with("Allow use of key"))
            .count()
    };
    let out = w.hosts.through(&w.agent.sock, "bastion", "target");
    assert!(stdout(&ok(out)).contains("reached-target"));
    // One question for the bastion login, one for target: the upstream's own.
    let after_allowed = count();
    assert!(after_allowed >= 1, "the upstream's -c was not asked");
    // Refused by the policy: the upstream is never asked.
    let out = w.hosts.through(&w.agent.sock, "deep", "target");
    assert!(!stdout(&out).contains("reached-target"), "{}", text(&out));
    assert_eq!(
        count(),
        after_allowed + 1,
        "only the direct login to deep reached upstream: {}",
        std::fs::read_to_string(&asked).unwrap_or_default()
    );
    // The upstream says no: hopward's allow does not make a signature.
    std::fs::write(&answer, "no").unwrap();
    let out = w.hosts.through(&w.agent.sock, "bastion", "target");
    assert!(!stdout(&out).contains("reached-target"), "{}", text(&out));
    let lines = w.agent.audit_until(|l| {
        l.iter()
            .any(|x| x["event"] == "sign" && x["reason"] == "upstream-refused")
    });
    assert!(
        lines
            .iter()
            .any(|x| x["event"] == "sign" && x["reason"] == "upstream-refused"),
        "{lines:?}"
    );
}

#[test]
fn the_installed_units_way_socket_activation_and_env_work_with_an_upstream() {
    assert!(
        Path::new("/usr/bin/systemd-socket-activate").exists(),
        "systemd-socket-activate is missing: scripts/test.sh installs systemd"
    );
    let tmp = tempdir();
    // As the units run it: `hopward daemon -D`, no flags, the policy names
    // the upstream relative to the home directory.
    let up = SshAgent::start(&tmp.path().join("up.sock"));
    let theirs = keygen(tmp.path(), "theirs", "ed25519", None);
    ok(up.ssh_add(&[theirs.to_str().unwrap()]));
    let policy = tmp.path().join("policy.toml");
    std::fs::write(&policy, "[upstream]\nsocket = \"~/up.sock\"\n").unwrap();
    let sock = tmp.path().join("agent.sock");
    let log = tmp.path().join("daemon.log");
    let mut child = Command::new("systemd-socket-activate")
        .arg("-l")
        .arg(&sock)
        .arg("-E")
        .arg(format!("HOME={}", tmp.path().display()))
        .arg("-E")
        .arg(format!("HOPWARD_POLICY={}", policy.display()))
        .arg("-E")
        .arg(format!(
            "XDG_STATE_HOME={}",
            tmp.path().join("state").display()
        ))
        .args([HOPWARD, "daemon", "-D"])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_until(
        "systemd-socket-activate to bind the socket",
        std::time::Duration::from_secs(10),
        || sock.exists(),
    );
    let listed = run(Command::new("ssh-add")
        .arg("-l")
        .env("SSH_AUTH_SOCK", &sock));
    let _ = child.kill();
    let _ = child.wait();
    let daemon_log = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(
        stdout(&listed).contains("theirs"),
        "{}\n{daemon_log}",
        text(&listed)
    );

    // `hopward env` still points tools at hopward, never at the upstream.
    let env = stdout(&ok(run(Command::new(HOPWARD)
        .arg("env")
        .env("XDG_RUNTIME_DIR", tmp.path())
        .env("HOME", tmp.path())
        .env("HOPWARD_POLICY", &policy))));
    assert!(
        env.contains(&format!("{}/hopward/agent.sock", tmp.path().display())),
        "{env}"
    );
    assert!(!env.contains("up.sock"), "{env}");
}

#[test]
fn upstream_keys_get_the_same_prompts_and_remembered_approvals() {
    let tmp = tempdir();
    let up = SshAgent::start(&tmp.path().join("up.sock"));
    let theirs = keygen(tmp.path(), "theirs", "ed25519", None);
    let shared = keygen(tmp.path(), "shared", "ed25519", None);
    ok(up.ssh_add(&[theirs.to_str().unwrap(), shared.to_str().unwrap()]));
    // Only the agents can sign from now on: ssh-keygen cannot fall back
    // to the key file.
    std::fs::remove_file(&theirs).unwrap();
    let confirm = confirm_command(tmp.path());
    let agent = Daemon::builder()
        .policy(&format!(
            "[confirm]\nmethod = \"command\"\ncommand = [\"{}\"]\ntimeout = \"10s\"\n\n\
             [[rule]]\nname = \"files need a yes\"\npurpose = \"file\"\naction = \"confirm\"\nremember = \"10m\"\n",
            confirm.display()
        ))
        .arg("--upstream")
        .arg(up.sock.to_str().unwrap())
        .start();
    ok(agent.ssh_add(&[shared.to_str().unwrap()]));
    std::fs::remove_file(&shared).unwrap();
    let file = tmp.path().join("data");
    std::fs::write(&file, "hello").unwrap();
    ok(sign_file(&agent.sock, &theirs, &file));
    ok(sign_file(&agent.sock, &theirs, &file));
    let prompts = confirm_prompts(tmp.path());
    assert_eq!(prompts.len(), 1, "the second is remembered: {prompts:?}");
    assert!(prompts[0].contains(&format!("HOPWARD_KEY={}", fingerprint(&theirs))));
    assert!(prompts[0].contains("HOPWARD_PURPOSE=file"));
    // The key both hold is signed by hopward: its audit line has no
    // upstream mark (and its own prompt).
    ok(sign_file(&agent.sock, &shared, &file));
    let audit = agent.audit_until(|l| l.iter().filter(|x| x["event"] == "sign").count() >= 3);
    let signs: Vec<_> = audit.iter().filter(|x| x["event"] == "sign").collect();
    assert_eq!(signs.len(), 3, "{signs:?}");
    assert_eq!(signs[0]["reason"], "confirmed");
    assert_eq!(signs[1]["reason"], "remembered");
    assert!(signs[..2].iter().all(|x| x["upstream"] == true));
    assert_eq!(signs[2]["key"], fingerprint(&shared).as_str());
    assert!(signs[2].get("upstream").is_none(), "{:?}", signs[2]);
    // A refused prompt refuses, and the upstream is never asked.
    std::fs::write(tmp.path().join("answer"), "no").unwrap();
    ok(run(Command::new(HOPWARD)
        .args(["grants", "-a"])
        .arg(&agent.sock)
        .args(["revoke", "--all"])));
    assert!(!sign_file(&agent.sock, &theirs, &file).status.success());
}

#[test]
fn a_reload_can_point_at_another_upstream() {
    let tmp = tempdir();
    let one = SshAgent::start(&tmp.path().join("one.sock"));
    let two = SshAgent::start(&tmp.path().join("two.sock"));
    let a = keygen(tmp.path(), "in-one", "ed25519", None);
    let b = keygen(tmp.path(), "in-two", "ed25519", None);
    ok(one.ssh_add(&[a.to_str().unwrap()]));
    ok(two.ssh_add(&[b.to_str().unwrap()]));
    let agent = Daemon::builder()
        .policy(&format!(
            "[upstream]\nsocket = \"{}\"\n",
            one.sock.display()
        ))
        .start();
    let mut conn = agent.connect();
    assert_eq!(listed(&request(&mut conn, &[11]))[0].1, "in-one");
    std::fs::write(
        agent.dir.path().join("policy.toml"),
        format!("[upstream]\nsocket = \"{}\"\n", two.sock.display()),
    )
    .unwrap();
    ok(run(Command::new("kill")
        .arg("-HUP")
        .arg(agent.pid().to_string())));
    let wanted = two.sock.display().to_string();
    agent.wait_status("the reloaded policy's upstream", |s| {
        s["upstream"]["socket"] == wanted.as_str()
    });
    let names: Vec<String> = listed(&request(&mut conn, &[11]))
        .into_iter()
        .map(|(_, c)| c)
        .collect();
    assert_eq!(names, ["in-two"]);
}

/// Upstream keys too: `ssh -l "$(printf 'ME:\377')" target` from the
/// bastion logs in as ME, which a rule denies through the bastion; a
/// notify rule lets anything else through. Failed before: the name was
/// not UTF-8, the data "other", and the upstream signed the login.
#[test]
fn a_user_name_that_is_not_utf8_is_still_its_account_for_upstream_keys() {
    let me = common::sshd::current_user();
    let w = world(
        &format!(
            "[defaults]\nforwarded = \"deny\"\nforwarded_unverified = \"deny\"\n\
             [[rule]]\nname = \"no {me} via bastion\"\nvia = [\"bastion\"]\nuser = [\"{me}\"]\naction = \"deny\"\n\
             [[rule]]\nname = \"else via bastion\"\nvia = [\"bastion\"]\naction = \"notify\"\n"
        ),
        &[],
        &[],
    );
    let inner = w.hosts.inner_ssh(&format!(
        "-l \"$(printf '{me}:\\377')\" target echo reached-target"
    ));
    let out = w.hosts.ssh(&w.agent.sock, &["-A", "bastion", &inner]);
    assert!(!stdout(&out).contains("reached-target"), "{}", text(&out));
    let through = |x: &serde_json::Value| {
        x["event"] == "sign" && x["chain"].as_array().is_some_and(|c| c.len() == 2)
    };
    let lines = w.agent.audit_until(|l| l.iter().any(through));
    let sign = lines.iter().find(|l| through(l)).unwrap();
    assert_eq!(sign["upstream"], true, "{sign}");
    assert_eq!(sign["decision"], "deny", "{sign}");
    assert_eq!(sign["user"], me.as_str(), "{sign}");
    assert_eq!(
        sign["rule"],
        format!("no {me} via bastion").as_str(),
        "{sign}"
    );
}
