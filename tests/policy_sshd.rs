//! The policy over real sshd hosts on loopback: allowed and denied chains,
//! the command confirmer, the audit log, reloads, and key operations that
//! arrive through a forwarded agent.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use common::sshd::{BASTION_POLICY, Hosts};
use common::*;

struct World {
    tmp: tempfile::TempDir,
    hosts: Hosts,
    agent: Daemon,
    key: PathBuf,
}

/// A confirm command that records its arguments and environment, and answers
/// what `answer` holds ("yes" or anything else).
fn confirmer(dir: &Path) -> PathBuf {
    let script = dir.join("confirm.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"PROMPT=$1\"; env | grep -E '^(HOPWARD_|SSH_ASKPASS_PROMPT)' | sort; echo END; }} >> {d}/confirm.log\n\
             [ \"$(cat {d}/answer)\" = yes ] && exit 0\nexit 1\n",
            d = dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(dir.join("answer"), "yes").unwrap();
    script
}

fn world(policy: &str) -> World {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target", "deep"]);
    let script = confirmer(tmp.path());
    let policy = policy.replace("CONFIRM", script.to_str().unwrap());
    let agent = hosts.daemon().policy(&policy).start();
    let key = hosts.login_key(&agent, "work");
    World {
        tmp,
        hosts,
        agent,
        key,
    }
}

fn signs(audit: &[serde_json::Value]) -> Vec<&serde_json::Value> {
    audit.iter().filter(|l| l["event"] == "sign").collect()
}

fn chain_names(line: &serde_json::Value) -> Vec<String> {
    line["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["names"][0].as_str().unwrap_or("?").to_string())
        .collect()
}

#[test]
fn allowed_denied_and_confirmed_chains_with_audit_lines() {
    let w = world(BASTION_POLICY);
    let user = w.hosts.user.clone();

    let allowed = w.hosts.through(&w.agent.sock, "bastion", "target");
    assert!(
        stdout(&allowed).contains("reached-target"),
        "{}",
        text(&allowed)
    );

    let denied = w.hosts.through(&w.agent.sock, "target", "bastion");
    assert!(
        !stdout(&denied).contains("reached-bastion"),
        "{}",
        text(&denied)
    );

    let confirmed = w.hosts.through(&w.agent.sock, "bastion", "deep");
    assert!(
        stdout(&confirmed).contains("reached-deep"),
        "{}",
        text(&confirmed)
    );
    std::fs::write(w.tmp.path().join("answer"), "no").unwrap();
    let refused = w.hosts.through(&w.agent.sock, "bastion", "deep");
    assert!(
        !stdout(&refused).contains("reached-deep"),
        "{}",
        text(&refused)
    );

    // The confirmer saw the whole request in its environment and prompt.
    let log = std::fs::read_to_string(w.tmp.path().join("confirm.log")).unwrap();
    let first = log.split("END").next().unwrap();
    let fp = stdout(&ok(run(std::process::Command::new("ssh-keygen")
        .arg("-lf")
        .arg(w.key.with_extension("pub")))));
    let fp = fp.split_whitespace().nth(1).unwrap();
    for expected in [
        "SSH_ASKPASS_PROMPT=confirm".to_string(),
        "HOPWARD_CHAIN=bastion>deep".into(),
        format!("HOPWARD_USER={user}"),
        "HOPWARD_PURPOSE=login".into(),
        "HOPWARD_FORWARDED=1".into(),
        format!("HOPWARD_KEY={fp}"),
        "HOPWARD_KEY_COMMENT=work".into(),
        "HOPWARD_PID=".into(),
        "Chain: bastion (fwd) > deep (auth)".into(),
        format!("log in to deep as \"{user}\""),
    ] {
        assert!(
            first.contains(&expected),
            "missing {expected:?} in:\n{first}"
        );
    }

    // One audit line per decision, with rule, reason, chain, user and peer.
    let find = |audit: &[serde_json::Value], names: &[&str], decision: &str, reason: &str| {
        signs(audit).iter().any(|l| {
            chain_names(l) == names
                && l["decision"] == decision
                && l["reason"] == reason
                && l["user"] == user.as_str()
                && l["purpose"] == "login"
                && l["peer"]["exe"] == "/usr/bin/ssh"
                && l["key"] == fp
        })
    };
    // Through the target nothing is allowed, so the key is not even listed
    // there: the refusal is audited as a hidden key.
    let hidden_at_target = |audit: &[serde_json::Value]| {
        audit.iter().any(|l| {
            l["event"] == "list"
                && l["decision"] == "deny"
                && l["reason"] == "default:forwarded"
                && chain_names(l).first().map(String::as_str) == Some("target")
        })
    };
    let expected: [(&[&str], &str, &str); 4] = [
        (&["bastion", "target"], "allow", "target via bastion"),
        (&["bastion", "deep"], "allow", "confirmed"),
        (&["bastion", "deep"], "deny", "refused"),
        (&["bastion"], "allow", "default:local"),
    ];
    let audit = w.agent.audit_until(|audit| {
        hidden_at_target(audit) && expected.iter().all(|(n, d, r)| find(audit, n, d, r))
    });
    assert!(hidden_at_target(&audit), "{audit:#?}");
    for (names, decision, reason) in expected {
        assert!(
            find(&audit, names, decision, reason),
            "no {decision} {reason:?} through {names:?}: {:#?}",
            signs(&audit)
        );
    }
    for line in &audit {
        let raw = line.to_string();
        assert!(!raw.contains("PRIVATE"), "{raw}");
    }
}

#[test]
fn proxy_jump_hops_are_direct_logins() {
    let w = world(BASTION_POLICY);
    let out = w
        .hosts
        .ssh(&w.agent.sock, &["-J", "bastion", "deep", "echo jumped"]);
    assert!(stdout(&out).contains("jumped"), "{}", text(&out));
    // One login to the bastion, one to deep through the jump's tunnel.
    let audit = w.agent.audit_until(|audit| signs(audit).len() >= 2);
    let signs = signs(&audit);
    assert!(signs.len() >= 2, "{audit:#?}");
    assert!(signs.iter().all(|l| l["class"] == "direct"), "{audit:#?}");
}

/// Waits until the log holds `count` lines with `needle`.
#[track_caller]
fn wait_for_log(agent: &Daemon, needle: &str, count: usize) {
    wait_until(
        &format!("{count} {needle:?} in the log"),
        Duration::from_secs(10),
        || agent.log_text().matches(needle).count() >= count,
    );
}

/// The digest of the policy the daemon runs with.
fn digest(status: &serde_json::Value) -> String {
    status["policy"]["digest"].as_str().unwrap().to_string()
}

/// A sign request for `other` data with the first listed key.
fn sign_other(s: &mut std::os::unix::net::UnixStream) -> u8 {
    let list = request(s, &[11]);
    let len = u32::from_be_bytes([list[5], list[6], list[7], list[8]]) as usize;
    let blob = &list[9..9 + len];
    let mut body = vec![13];
    put_string(&mut body, blob);
    put_string(&mut body, b"some data");
    body.extend_from_slice(&0u32.to_be_bytes());
    request(s, &body)[0]
}

/// Replaces a file the way editors do: write a new one, rename it over.
fn save(path: &Path, text: &str) {
    let tmp = path.with_extension("swp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

#[test]
fn reload_applies_to_open_connections_and_garbage_keeps_the_last_good_policy() {
    let agent = Daemon::builder()
        .policy("[defaults]\nlocal = \"allow\"\n")
        .start();
    let tmp = tempdir();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let policy = agent.dir.path().join("policy.toml");
    let mut s = agent.connect();
    assert_eq!(sign_other(&mut s), 14);
    let first = digest(&agent.status());

    save(&policy, "[defaults]\nlocal = \"deny\"\n");
    let denying = digest(&agent.wait_status("the edit to be loaded", |st| {
        digest(st) != first && st["policy"]["last_reload"] == "ok"
    }));
    assert_eq!(
        sign_other(&mut s),
        5,
        "the open connection follows the new policy"
    );

    save(&policy, "[defaults]\nlocal = \"allow\"\nthis is not toml\n");
    let kept = agent.wait_status("the garbage to be refused", |st| {
        st["policy"]["last_reload"]["kept_last_good_policy"].is_array()
    });
    assert_eq!(digest(&kept), denying, "{kept:#}");
    assert_eq!(sign_other(&mut s), 5, "garbage keeps the last good policy");
    let errors = kept["policy"]["last_reload"]["kept_last_good_policy"].to_string();
    assert!(
        errors.contains("policy.toml:3:"),
        "errors name file and line: {errors}"
    );

    // SIGHUP reloads too (here with the file unchanged but now valid).
    std::fs::write(
        agent.dir.path().join("policy.toml.new"),
        "[defaults]\nlocal = \"allow\"\n",
    )
    .unwrap();
    // Status counts every reload, also one that read the same text.
    let reloads = |st: &serde_json::Value| st["policy"]["reloads"].as_u64().unwrap();
    let generation = |st: &serde_json::Value| st["policy"]["generation"].as_u64().unwrap();
    let before = agent.status();
    std::fs::rename(agent.dir.path().join("policy.toml.new"), &policy).unwrap();
    let after = agent.wait_status("the renamed file to be read", |st| {
        reloads(st) > reloads(&before)
    });
    assert_eq!(digest(&after), first);
    assert_eq!(generation(&after), generation(&before) + 1, "{after:#}");
    ok(run(
        std::process::Command::new("kill").args(["-HUP", &agent.pid().to_string()])
    ));
    wait_for_log(&agent, "SIGHUP received", 1);
    let hup = agent.wait_status("the SIGHUP reload", |st| reloads(st) > reloads(&after));
    assert_eq!(hup["policy"]["last_reload"], "ok");
    assert_eq!(
        generation(&hup),
        generation(&after),
        "the same text changes nothing"
    );
    assert_eq!(sign_other(&mut s), 14);
}

/// A policy that does not parse does not stop the start (DESIGN.md §2):
/// the errors are said with their positions, local use is served as the
/// built-in policy serves it, and forwarded use is refused until a good
/// file loads.
#[test]
fn an_invalid_policy_at_start_serves_local_use_and_refuses_forwarded_use() {
    use common::notifier::{Bus, Mode};
    let bus = Bus::with_notifier(Mode::Silent, Duration::ZERO);
    let agent = Daemon::builder()
        .policy("[defaults]\nlocal = \"perhaps\"\nforwarded = \"allow\"\n")
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .start();
    let log = agent.log_text();
    assert!(log.contains("policy.toml:2:9: unknown action"), "{log}");
    assert!(log.contains("refusing everything forwarded"), "{log}");
    // The person at the desk is told once, with what is wrong.
    let shown = bus.wait_shown(1);
    assert_eq!(shown.len(), 1, "{shown:#?}");
    assert_eq!(shown[0].summary, "hopward: the policy file cannot be used");
    assert!(
        shown[0].body.contains("policy.toml:2:9: unknown action")
            && shown[0].body.contains("everything forwarded is refused"),
        "{}",
        shown[0].body
    );
    // There was no good policy to keep: status says what runs instead.
    let status = agent.status();
    assert!(
        status["policy"]["last_reload"]["refusing_forwarded"].is_array(),
        "{status:#}"
    );
    assert!(
        status["policy"]["last_reload"]["kept_last_good_policy"].is_null(),
        "{status:#}"
    );
    let human = stdout(&ok(run(std::process::Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&agent.sock))));
    assert!(
        human.contains("no good policy loaded since start")
            && human.contains("everything forwarded is REFUSED")
            && !human.contains("keeping the last good policy"),
        "{human}"
    );
    let doctor = run(std::process::Command::new(HOPWARD)
        .args(["doctor", "-a"])
        .arg(&agent.sock)
        .env("HOPWARD_POLICY", agent.dir.path().join("policy.toml")));
    assert!(
        text(&doctor).contains("refuses everything forwarded")
            && !text(&doctor).contains("keeps its last good policy"),
        "{}",
        text(&doctor)
    );
    let tmp = tempdir();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let mut s = agent.connect();
    assert_eq!(sign_other(&mut s), 14, "local use as built in");
    let mut s = agent.connect();
    assert_eq!(
        request(&mut s, &session_bind_request(1, b"sid-bastion", true))[0],
        6
    );
    let list = request(&mut s, &[11]);
    assert_eq!(
        list[..5],
        [12, 0, 0, 0, 0],
        "no key is offered through a forwarded agent"
    );
}

#[test]
fn forwarded_add_remove_all_and_lock_follow_the_policy() {
    let w = world(
        "[defaults]\nforwarded = \"allow\"\n[confirm]\nmethod = \"command\"\ncommand = [\"CONFIRM\"]\n[forwarded]\nadd = \"confirm\"\n",
    );
    let second = keygen(w.tmp.path(), "second", "ed25519", None);
    let pass = w.tmp.path().join("pass.sh");
    std::fs::write(&pass, "#!/bin/sh\necho hunter2\n").unwrap();
    std::fs::set_permissions(&pass, std::fs::Permissions::from_mode(0o755)).unwrap();
    let remote = |cmd: &str| w.hosts.ssh(&w.agent.sock, &["-A", "bastion", cmd]);

    // remove_all from the bastion: denied by default, keys stay.
    let out = remote("ssh-add -D");
    assert!(!out.status.success(), "{}", text(&out));
    assert!(stdout(&ok(w.agent.ssh_add(&["-l"]))).contains(" work (ED25519)"));

    // lock from the bastion: denied, the agent stays unlocked.
    let out = remote(&format!(
        "SSH_ASKPASS={} SSH_ASKPASS_REQUIRE=force ssh-add -x",
        pass.display()
    ));
    assert!(!out.status.success(), "{}", text(&out));
    ok(w.agent.ssh_add(&["-l"]));

    // add from the bastion: asks; "no" refuses, "yes" adds.
    std::fs::write(w.tmp.path().join("answer"), "no").unwrap();
    let out = remote(&format!("ssh-add {}", second.display()));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(!stdout(&ok(w.agent.ssh_add(&["-l"]))).contains("second"));
    std::fs::write(w.tmp.path().join("answer"), "yes").unwrap();
    ok(remote(&format!("ssh-add {}", second.display())));
    assert!(stdout(&ok(w.agent.ssh_add(&["-l"]))).contains(" second (ED25519)"));
    let log = std::fs::read_to_string(w.tmp.path().join("confirm.log")).unwrap();
    assert!(log.contains("Request: add this key to the agent"), "{log}");

    // Locally the same operations are allowed.
    ok(w.agent.ssh_add(&["-D"]));
    let expected = [
        ("remove_all", "deny", "forwarded.remove_all"),
        ("lock", "deny", "forwarded.lock"),
        ("add", "deny", "refused"),
        ("add", "allow", "confirmed"),
        ("remove_all", "allow", "default:local"),
    ];
    let ev = |audit: &[serde_json::Value], (event, decision, reason): (&str, &str, &str)| {
        audit
            .iter()
            .any(|l| l["event"] == event && l["decision"] == decision && l["reason"] == reason)
    };
    let audit = w
        .agent
        .audit_until(|audit| expected.iter().all(|e| ev(audit, *e)));
    for e in expected {
        assert!(ev(&audit, e), "no {e:?} in {audit:#?}");
    }
}

/// A host on a high port is recorded by ssh as `[127.0.0.1]:PORT`, and
/// hashed (`HashKnownHosts yes`) nothing in the file says `db2`. A deny
/// rule for `db2` refuses the login all the same: hopward asks `ssh -G db2`
/// how ssh records it, or takes the port from `[known_hosts] ports`.
/// Failed before: the hashed entry was only ever checked against `db2`
/// itself, the rule missed, and `local = "allow"` signed.
#[test]
fn a_deny_rule_by_name_refuses_a_host_hashed_with_its_port() {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["db2"]);
    let port = hosts.hosts[0].port;
    let known = tmp.path().join("hashed_known_hosts");
    let host_key = hosts.hosts[0]
        .host_pub
        .trim()
        .rsplit_once(' ')
        .unwrap()
        .0
        .to_string();
    std::fs::write(&known, format!("[127.0.0.1]:{port} {host_key}\n")).unwrap();
    ok(run(std::process::Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&known)));
    let hashed = std::fs::read_to_string(&known).unwrap();
    assert!(
        hashed.starts_with("|1|") && !hashed.contains("127.0.0.1"),
        "{hashed}"
    );
    // The user's ssh_config: db2 is 127.0.0.1 on the high port, no
    // HostKeyAlias, so ssh itself checks the hashed [127.0.0.1]:PORT.
    let config = tmp.path().join("user_ssh_config");
    std::fs::write(
        &config,
        format!(
            "Host db2\n  HostName 127.0.0.1\n  Port {port}\n\
             Host *\n  UserKnownHostsFile {kh}\n  GlobalKnownHostsFile /dev/null\n  \
             StrictHostKeyChecking yes\n  BatchMode yes\n  PasswordAuthentication no\n  \
             KbdInteractiveAuthentication no\n  IdentityFile /dev/null\n  LogLevel ERROR\n  \
             ControlMaster no\n  ControlPath none\n  ConnectTimeout 20\n",
            kh = known.display()
        ),
    )
    .unwrap();
    let key = keygen(tmp.path(), "work", "ed25519", None);
    hosts.authorize(&key.with_extension("pub"));
    let login = |agent: &Daemon, args: &[&str]| {
        run(std::process::Command::new("ssh")
            .arg("-F")
            .arg(&config)
            .args(args)
            .arg("echo reached")
            .env("SSH_AUTH_SOCK", &agent.sock))
    };

    // By ssh_config: `ssh -G db2` says it is [127.0.0.1]:PORT. The rules
    // name users so that the key is still listed (a listing cannot know the
    // user) and the refusal is a sign decision the audit shows.
    let agent = Daemon::builder()
        .policy(
            "[defaults]\nlocal = \"allow\"\n\n[[rule]]\nname = \"never db2\"\nhost = [\"db2\"]\nuser = [\"*\"]\naction = \"deny\"\n",
        )
        .env("HOPWARD_KNOWN_HOSTS", known.to_str().unwrap())
        .env("HOPWARD_SSH_CONFIG", config.to_str().unwrap())
        .start();
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let out = login(&agent, &["db2"]);
    assert!(!stdout(&out).contains("reached"), "{}", text(&out));
    let audit = agent.audit_until(|a| !signs(a).is_empty());
    let sign = signs(&audit)[0].clone();
    assert_eq!(sign["decision"], "deny", "{sign:#}");
    assert_eq!(sign["rule"], "never db2", "{sign:#}");

    // By `[known_hosts] ports`: a rule for the address, the port listed.
    let agent = Daemon::builder()
        .policy(&format!(
            "[defaults]\nlocal = \"allow\"\n\n[known_hosts]\nports = [{port}]\n\n\
             [[rule]]\nname = \"never the address\"\nhost = [\"127.0.0.1\"]\nuser = [\"*\"]\naction = \"deny\"\n"
        ))
        .env("HOPWARD_KNOWN_HOSTS", known.to_str().unwrap())
        .env("HOPWARD_SSH_CONFIG", "/dev/null")
        .start();
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let out = login(&agent, &["-p", &port.to_string(), "127.0.0.1"]);
    assert!(!stdout(&out).contains("reached"), "{}", text(&out));
    let audit = agent.audit_until(|a| !signs(a).is_empty());
    let sign = signs(&audit)[0].clone();
    assert_eq!(sign["rule"], "never the address", "{sign:#}");

    // And without either, `policy check` says why the rule cannot see it.
    let policy = tmp.path().join("check.toml");
    std::fs::write(
        &policy,
        "[[rule]]\nname = \"never db3\"\nhost = [\"db3\"]\naction = \"deny\"\n",
    )
    .unwrap();
    let out = run(std::process::Command::new(HOPWARD)
        .args(["policy", "check"])
        .arg(&policy)
        .env("HOPWARD_KNOWN_HOSTS", &known)
        .env("HOPWARD_SSH_CONFIG", "/dev/null"));
    assert!(
        stdout(&out).contains("add the port to [known_hosts] ports"),
        "{}",
        text(&out)
    );
}
