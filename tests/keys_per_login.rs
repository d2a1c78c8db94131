//! Keys offered per destination and one question per login, over real
//! sshd hosts: a server that allows few tries sees only the key the policy
//! lets reach it, directly and through a bastion; a no for one key of a
//! forwarded login answers the other keys ssh tries in it.

mod common;

use std::path::PathBuf;

use common::sshd::{Hosts, Lab};
use common::*;

/// The policy of the listing test: `k6` alone may log in to the bastion
/// and the target, whatever the chain.
const ONE_KEY_THERE: &str = r#"
[defaults]
local = "allow"
forwarded = "allow"

[[rule]]
name = "k6 to the hosts"
keys = ["k6"]
host = ["bastion", "target"]
action = "allow"

[[rule]]
name = "no other key to the hosts"
host = ["bastion", "target"]
action = "deny"
"#;

/// Six keys in the agent, `k6` added last and the only one the hosts
/// know, and sshd with `MaxAuthTries 2`: ssh tries every key the agent
/// lists in turn, so the login works only if the agent lists `k6` alone.
#[test]
fn a_server_with_few_tries_is_offered_only_the_key_the_policy_lets_in() {
    let tmp = tempdir();
    let lab = Lab {
        sshd_config: "MaxAuthTries 2\n".into(),
        ..Lab::system()
    };
    let hosts = Hosts::start_lab(tmp.path(), &["bastion", "target"], &lab);
    let agent = hosts.daemon().policy(ONE_KEY_THERE).start();
    let keys: Vec<PathBuf> = (1..=6)
        .map(|i| keygen(tmp.path(), &format!("k{i}"), "ed25519", None))
        .collect();
    for key in &keys {
        ok(agent.ssh_add(&[key.to_str().unwrap()]));
    }
    hosts.authorize(&keys[5].with_extension("pub"));
    // ssh-add -l has no destination: every key, in the order added.
    let listed = stdout(&ok(agent.ssh_add(&["-l"])));
    let comments: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2))
        .collect();
    assert_eq!(comments, ["k1", "k2", "k3", "k4", "k5", "k6"], "{listed}");

    let direct = hosts.ssh(&agent.sock, &["target", "echo reached-target"]);
    assert!(
        stdout(&direct).contains("reached-target"),
        "a direct login with k6: {}\nsshd: {}",
        text(&direct),
        hosts.sshd_log("target")
    );

    let inner = hosts.inner_ssh("target echo reached-through");
    let forwarded = hosts.ssh(&agent.sock, &["-A", "bastion", &inner]);
    assert!(
        stdout(&forwarded).contains("reached-through"),
        "a login through the bastion with k6: {}\nsshd: {}",
        text(&forwarded),
        hosts.sshd_log("target")
    );
    let log = hosts.sshd_log("target");
    assert!(
        !log.contains("Too many authentication failures")
            && !log.contains("maximum authentication attempts"),
        "{log}"
    );
    // The other keys were never offered, so the hosts never refused one.
    assert!(!log.contains("Failed publickey"), "{log}");
    // A direct login's smaller listing is no refusal, so it leaves no
    // record; the forwarded one's does (one per hidden key).
    let audit =
        agent.audit_until(|lines| lines.iter().filter(|l| l["event"] == "list").count() >= 5);
    let hidden: Vec<(&str, &str, &str)> = audit
        .iter()
        .filter(|l| l["event"] == "list")
        .map(|l| {
            (
                l["comment"].as_str().unwrap(),
                l["class"].as_str().unwrap(),
                l["rule"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        hidden,
        ["k1", "k2", "k3", "k4", "k5"]
            .map(|k| (k, "forwarded", "no other key to the hosts"))
            .to_vec()
    );

    // `ssh-add -l` on the bastion names no destination: the deny rule
    // names hosts, so it hides nothing there.
    let on_bastion = hosts.ssh(&agent.sock, &["-A", "bastion", "ssh-add -l"]);
    assert_eq!(
        stdout(&on_bastion)
            .lines()
            .filter_map(|l| l.split_whitespace().nth(2))
            .collect::<Vec<_>>(),
        ["k1", "k2", "k3", "k4", "k5", "k6"],
        "{}",
        text(&on_bastion)
    );
}

/// The policy of the prompt test: every forwarded login asks.
const ASK_FORWARDED: &str = r#"
[defaults]
local = "allow"
forwarded = "confirm"

[confirm]
method = "command"
command = ["CONFIRM"]
timeout = "2s"
"#;

/// Two keys the target knows, a login to it through the bastion, and a
/// confirmer that logs each call: a no, and then a prompt nobody answers,
/// each end the login after one question, the second key refused without
/// asking (`same-login`); a yes logs in after one question.
#[test]
fn one_question_per_login_through_a_bastion() {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target"]);
    let confirmer = confirm_command(tmp.path());
    let agent = hosts
        .daemon()
        .policy(&ASK_FORWARDED.replace("CONFIRM", confirmer.to_str().unwrap()))
        .start();
    for name in ["first", "second"] {
        let key = keygen(tmp.path(), name, "ed25519", None);
        hosts.authorize(&key.with_extension("pub"));
        ok(agent.ssh_add(&[key.to_str().unwrap()]));
    }
    let login = || {
        let inner = hosts.inner_ssh("target echo reached-target");
        hosts.ssh(&agent.sock, &["-A", "bastion", &inner])
    };
    let forwarded_signs =
        |n: usize| agent.outcomes(n, |l| l["event"] == "sign" && l["class"] == "forwarded");
    let reason = |(_, reason): &(String, String)| reason.clone();

    std::fs::write(tmp.path().join("answer"), "no").unwrap();
    let refused = login();
    assert!(
        !stdout(&refused).contains("reached-target"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        confirm_prompts(tmp.path()).len(),
        1,
        "one question for the login"
    );
    let signs = forwarded_signs(2);
    assert_eq!(
        signs.iter().map(reason).collect::<Vec<_>>(),
        ["refused", "same-login"],
        "both keys were tried, the second answered by the first's no"
    );

    // Nobody answers (the confirmer outlasts the 2 s timeout): one wait.
    std::fs::write(tmp.path().join("answer"), "hold-forwarded").unwrap();
    let unanswered = login();
    assert!(
        !stdout(&unanswered).contains("reached-target"),
        "{}",
        text(&unanswered)
    );
    assert_eq!(confirm_prompts(tmp.path()).len(), 2, "one more question");
    let signs = forwarded_signs(4);
    assert_eq!(
        signs[2..].iter().map(reason).collect::<Vec<_>>(),
        ["timeout", "same-login"]
    );

    // A new login is asked anew, and a yes for its first key logs in.
    std::fs::write(tmp.path().join("answer"), "yes").unwrap();
    let allowed = login();
    assert!(
        stdout(&allowed).contains("reached-target"),
        "{}",
        text(&allowed)
    );
    assert_eq!(confirm_prompts(tmp.path()).len(), 3);
    let signs = forwarded_signs(5);
    assert_eq!(
        signs[4..].iter().map(reason).collect::<Vec<_>>(),
        ["confirmed"]
    );
}

/// A git signing key and a login key, both known to the target; the
/// policy lets the signing key sign for git only, and asks for the login
/// key there. Through the bastion only the login key is offered: one
/// question, one signature asked for, and the signing key's hiding
/// audited with the rule that hides it.
#[test]
fn a_key_only_for_git_is_not_offered_for_logins() {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target"]);
    let confirmer = confirm_command(tmp.path());
    let policy = format!(
        "[defaults]\nlocal = \"allow\"\nforwarded = \"confirm\"\n\
         [confirm]\nmethod = \"command\"\ncommand = [\"{}\"]\ntimeout = \"10s\"\n\
         [[rule]]\nname = \"git signing\"\nkeys = [\"signing\"]\npurpose = \"git\"\naction = \"allow\"\n\
         [[rule]]\nname = \"login asks\"\nkeys = [\"login\"]\nhost = [\"target\"]\naction = \"confirm\"\n\
         [[rule]]\nname = \"nothing else to target\"\nhost = [\"target\"]\naction = \"deny\"\n",
        confirmer.display()
    );
    let agent = hosts.daemon().policy(&policy).start();
    for name in ["signing", "login"] {
        let key = keygen(tmp.path(), name, "ed25519", None);
        hosts.authorize(&key.with_extension("pub"));
        ok(agent.ssh_add(&[key.to_str().unwrap()]));
    }
    std::fs::write(tmp.path().join("answer"), "no").unwrap();
    let inner = hosts.inner_ssh("target echo reached-target");
    let refused = hosts.ssh(&agent.sock, &["-A", "bastion", &inner]);
    assert!(
        !stdout(&refused).contains("reached-target"),
        "{}",
        text(&refused)
    );
    let prompts = confirm_prompts(tmp.path());
    assert_eq!(prompts.len(), 1, "{prompts:?}");
    assert!(
        prompts[0].contains("HOPWARD_KEY_COMMENT=login"),
        "{}",
        prompts[0]
    );
    let audit = agent.audit_until(|lines| {
        lines
            .iter()
            .any(|l| l["event"] == "sign" && l["class"] == "forwarded")
    });
    let forwarded: Vec<(&str, &str, &str)> = audit
        .iter()
        .filter(|l| l["class"] == "forwarded")
        .map(|l| {
            (
                l["event"].as_str().unwrap(),
                l["comment"].as_str().unwrap(),
                l["reason"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        forwarded,
        [
            ("list", "signing", "nothing else to target"),
            ("sign", "login", "refused"),
        ],
        "the signing key was never offered to the target, so never tried"
    );
}
