//! Root on a bastion, over real sshd hosts on loopback: the user runs
//! `ssh -A bastion`, and on the bastion a proxy (tests/hostile/
//! agent_proxy.py) sits in front of the forwarded agent socket sshd made.
//! It records the binds the bastion's own `ssh` sends and replays them on
//! later connections, as the attacker this agent exists for would.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::sshd::Hosts;
use common::*;

struct World {
    tmp: tempfile::TempDir,
    hosts: Hosts,
    agent: Daemon,
}

fn world(policy: &str) -> World {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target", "deep"]);
    let script = confirm_command(tmp.path());
    let policy = format!(
        "[confirm]\nmethod = \"command\"\ncommand = [\"{}\"]\ntimeout = \"20s\"\n{policy}",
        script.display()
    );
    let agent = hosts.daemon().policy(&policy).start();
    hosts.login_key(&agent, "work");
    World { tmp, hosts, agent }
}

impl World {
    /// Runs `body` as a shell script on the bastion, reached with
    /// `ssh -A`. In it, `proxy MODE FILE` starts the hostile proxy on
    /// `$P` in front of the forwarded socket, `stop` ends it, `$SSH`
    /// is the lab's ssh, and `$D` a directory both sides see.
    fn on_bastion(&self, body: &str) -> Output {
        let dir = self.tmp.path();
        let proxy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/hostile/agent_proxy.py");
        let script = dir.join("bastion.sh");
        std::fs::write(
            &script,
            format!(
                "set -u\nD={d}\nP=$D/proxy.sock\nSSH='{ssh}'\n\
                 proxy() {{ rm -f $P; python3 {proxy} $P \"$SSH_AUTH_SOCK\" $1 $2 & echo $! > $D/proxy.pid; \
                 n=0; while [ ! -S $P ] && [ $n -lt 200 ]; do sleep 0.05; n=$((n+1)); done; }}\n\
                 stop() {{ kill $(cat $D/proxy.pid); }}\n{body}\n",
                d = dir.display(),
                ssh = self.hosts.inner_ssh(""),
                proxy = proxy.display(),
            ),
        )
        .unwrap();
        self.hosts.ssh(
            &self.agent.sock,
            &["-A", "bastion", &format!("sh {}", script.display())],
        )
    }

    fn answer(&self, answer: &str) {
        std::fs::write(self.tmp.path().join("answer"), answer).unwrap();
    }

    fn signs_through_bastion(&self, n: usize) -> Vec<serde_json::Value> {
        let through = |l: &serde_json::Value| {
            l["event"] == "sign" && l["chain"].as_array().is_some_and(|c| c.len() == 2)
        };
        let lines = self
            .agent
            .audit_until(|a| a.iter().filter(|l| through(l)).count() >= n);
        let signs: Vec<serde_json::Value> = lines.into_iter().filter(through).collect();
        assert_eq!(signs.len(), n, "{signs:#?}");
        signs
    }
}

fn names(line: &serde_json::Value) -> Vec<&str> {
    line["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["names"][0].as_str().unwrap_or("?"))
        .collect()
}

/// Point 1 over real hosts. The policy allows only `deep` through the
/// bastion. The proxy records the bind of an `ssh deep`, then puts it in
/// place of the bind `ssh target` sends. Failed before: `ssh target` logged
/// in, and the audit line named the `deep` rule.
#[test]
fn a_replayed_bind_does_not_open_another_host() {
    let w = world(
        r#"
[defaults]
forwarded = "deny"
forwarded_unverified = "deny"
[[rule]]
name = "deep through the bastion"
host = ["deep"]
via = ["bastion"]
action = "allow"
"#,
    );
    let out = w.on_bastion(
        "proxy record $D/binds\nSSH_AUTH_SOCK=$P $SSH deep echo reached-deep\nstop\n\
         proxy replay $D/binds\nSSH_AUTH_SOCK=$P $SSH target echo reached-target\nstop",
    );
    let stdout = stdout(&out);
    assert!(stdout.contains("reached-deep"), "{}", text(&out));
    assert!(!stdout.contains("reached-target"), "{}", text(&out));
    let signs = w.signs_through_bastion(2);
    assert_eq!(names(&signs[0]), ["bastion", "deep"]);
    assert_eq!(signs[0]["rule"], "deep through the bastion");
    // The replayed bind is what the agent saw, and it did not count.
    assert_eq!(names(&signs[1]), ["bastion", "deep"], "{:#?}", signs[1]);
    assert_eq!(signs[1]["decision"], "deny");
    assert_eq!(signs[1]["class"], "forwarded_unverified");
    assert_eq!(signs[1]["destination"], "unverified:session-id");
    assert_eq!(signs[1]["rule"], "default:forwarded_unverified");
}

/// A bind that does not verify: the proxy flips one bit of the target's
/// signature in the bind `ssh target` sends. The connection is poisoned, so
/// the login fails although a rule allows the target through the bastion
/// (an honest `ssh target` right after it logs in), and the audit has the
/// refused bind with the hop that did verify.
#[test]
fn a_forged_bind_is_refused_and_audited() {
    let w = world(
        r#"
[defaults]
forwarded = "deny"
forwarded_unverified = "deny"
[[rule]]
name = "target through the bastion"
host = ["target"]
via = ["bastion"]
action = "allow"
"#,
    );
    let out = w.on_bastion(
        "proxy forge -\nSSH_AUTH_SOCK=$P $SSH target echo forged-reached-target\nstop\n\
         $SSH target echo honest-reached-target",
    );
    let stdout = stdout(&out);
    assert!(!stdout.contains("forged-reached-target"), "{}", text(&out));
    assert!(stdout.contains("honest-reached-target"), "{}", text(&out));
    let allowed = |l: &&serde_json::Value| l["event"] == "sign" && l["decision"] == "allow";
    let audit = w.agent.audit_until(|a| {
        a.iter().any(|l| l["event"] == "bind") && a.iter().filter(allowed).count() >= 2
    });
    let binds: Vec<&serde_json::Value> = audit.iter().filter(|l| l["event"] == "bind").collect();
    assert_eq!(binds.len(), 1, "{audit:#?}");
    assert_eq!(binds[0]["decision"], "deny");
    assert_eq!(binds[0]["reason"], "bind-bad-signature");
    assert_eq!(binds[0]["class"], "poisoned");
    assert_eq!(names(binds[0]), ["bastion"], "{:#?}", binds[0]);
    // Two signatures were allowed: the login to the bastion and the honest
    // login through it. Whatever the poisoned connection asked was denied.
    let allowed: Vec<&serde_json::Value> = audit.iter().filter(allowed).collect();
    assert_eq!(allowed.len(), 2, "{audit:#?}");
    assert_eq!(allowed[0]["class"], "direct");
    assert_eq!(names(allowed[1]), ["bastion", "target"]);
    assert_eq!(allowed[1]["rule"], "target through the bastion");
    assert!(
        audit
            .iter()
            .filter(|l| l["class"] == "poisoned")
            .all(|l| l["decision"] == "deny"),
        "{audit:#?}"
    );
}

/// Point 2 over real hosts. One yes for `target`, remembered for 10
/// minutes; a later honest `ssh target` is covered. Then the proxy replays
/// target's bind in front of `ssh deep`, which a rule denies. Failed
/// before: `ssh deep` logged in with `reason: remembered`.
#[test]
fn a_remembered_yes_does_not_travel_with_a_replayed_bind() {
    let w = world(
        r#"
[defaults]
forwarded = "deny"
forwarded_unverified = "deny"
[[rule]]
name = "never deep"
host = ["deep"]
action = "deny"
[[rule]]
name = "target with a yes"
host = ["target"]
via = ["bastion"]
action = "confirm"
remember = "10m"
"#,
    );
    let out = w.on_bastion(
        "proxy record $D/binds\nSSH_AUTH_SOCK=$P $SSH target echo reached-target-1\nstop\n\
         echo no > $D/answer\n$SSH target echo reached-target-2\n\
         proxy replay $D/binds\nSSH_AUTH_SOCK=$P $SSH deep echo reached-deep\nstop",
    );
    let stdout = stdout(&out);
    assert!(stdout.contains("reached-target-1"), "{}", text(&out));
    assert!(stdout.contains("reached-target-2"), "{}", text(&out));
    assert!(!stdout.contains("reached-deep"), "{}", text(&out));
    let signs = w.signs_through_bastion(3);
    let reasons: Vec<&str> = signs
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["confirmed", "remembered", "default:forwarded_unverified"],
        "{signs:#?}"
    );
    assert_eq!(names(&signs[2]), ["bastion", "target"]);
    assert_eq!(confirm_prompts(w.tmp.path()).len(), 1);
    // `hopward grants` names the hosts as the log does.
    let grants = common::stdout(&ok(run(Command::new(HOPWARD)
        .args(["grants", "-a"])
        .arg(&w.agent.sock))));
    assert!(
        grants.contains("grants (1)") && grants.contains(" bastion>target user "),
        "{grants}"
    );
}

/// Point 5 over real hosts. The user's `ssh target` and the bastion's own
/// `ssh target` (through the proxy) wait for a prompt at the same time:
/// same key, same chain of hosts, same user, other sessions. Each is asked
/// on its own and one yes logs one in. Failed before: one prompt, and its
/// yes logged both in.
#[test]
fn one_yes_signs_one_session() {
    let w = world("[defaults]\nforwarded = \"confirm\"\n");
    w.answer("one-yes");
    let out = w.on_bastion(
        "proxy pass $D/none\n\
         SSH_AUTH_SOCK=$P $SSH target echo reached-by-bastion & a=$!\n\
         $SSH target echo reached-by-user & b=$!\n\
         wait $a $b\nstop",
    );
    let stdout = stdout(&out);
    assert_eq!(stdout.matches("reached-by-").count(), 1, "{}", text(&out));
    let prompts = confirm_prompts(w.tmp.path());
    assert_eq!(prompts.len(), 2, "{prompts:#?}");
    let signs = w.signs_through_bastion(2);
    let mut decisions: Vec<&str> = signs
        .iter()
        .map(|l| l["decision"].as_str().unwrap())
        .collect();
    decisions.sort();
    assert_eq!(decisions, ["allow", "deny"]);
}

/// Data that is not a login has no destination: through the bastion it is
/// decided by the bastion alone. The proxy records the bind of an honest
/// `ssh deep`, then puts it on every later connection before the client's
/// first request, so `ssh-keygen -Y sign` (git) arrives on a chain that
/// ends in an authentication bind to `deep`. Failed before: the chain
/// counted as a forwarded login, `forwarded = "allow"` decided, and the
/// bastion got a git signature the policy meant to refuse.
#[test]
fn a_bind_added_after_the_bastion_does_not_open_git_signing() {
    let w = world(
        "[defaults]\nforwarded = \"allow\"\nforwarded_unknown = \"allow\"\n\
         forwarded_unverified = \"deny\"\n",
    );
    let out = w.on_bastion(
        "echo commit > $D/msg\n\
         proxy record $D/binds\nSSH_AUTH_SOCK=$P $SSH deep echo reached-deep\nstop\n\
         proxy prebind $D/binds\n\
         SSH_AUTH_SOCK=$P ssh-keygen -Y sign -f $D/work.pub -n git $D/msg && echo signed\nstop\n\
         ssh-keygen -Y sign -f $D/work.pub -n file $D/msg && echo signed\n",
    );
    let stdout = stdout(&out);
    assert!(stdout.contains("reached-deep"), "{}", text(&out));
    assert!(!stdout.contains("signed"), "{}", text(&out));
    assert!(!w.tmp.path().join("msg.sig").exists());
    let sshsig = |l: &serde_json::Value| {
        l["event"] == "sign" && (l["purpose"] == "git" || l["purpose"] == "file")
    };
    let lines = w
        .agent
        .audit_until(|a| a.iter().filter(|l| sshsig(l)).count() >= 2);
    let signs: Vec<&serde_json::Value> = lines.iter().filter(|l| sshsig(l)).collect();
    assert_eq!(signs.len(), 2, "{signs:#?}");
    for line in signs {
        assert_eq!(line["decision"], "deny", "{line}");
        assert_eq!(line["class"], "forwarded_unverified", "{line}");
        assert_eq!(line["rule"], "default:forwarded_unverified", "{line}");
        // Decided by the first hop only: the added bind is not in it.
        assert_eq!(names(line), ["bastion"], "{line}");
    }
}

/// Over real sshd: `ssh -l "$(printf 'ME:\377')" target` from the bastion
/// logs in as ME (sshd cuts the name at the first `:`; the rest, not UTF-8,
/// is the auth style). A rule denies ME through the bastion and a notify
/// rule lets anything else through. Failed before: the name was not UTF-8,
/// so the data was "other", the notify rule matched and the login went
/// through.
#[test]
fn a_user_name_that_is_not_utf8_is_still_the_account_sshd_logs_in() {
    let tmp_user = common::sshd::current_user();
    let w = world(&format!(
        r#"
[defaults]
forwarded = "deny"
forwarded_unverified = "deny"
[[rule]]
name = "no {tmp_user} through the bastion"
via = ["bastion"]
user = ["{tmp_user}"]
action = "deny"
[[rule]]
name = "anything else through the bastion"
via = ["bastion"]
action = "notify"
"#
    ));
    let out = w.on_bastion(&format!(
        "$SSH -l \"$(printf '{tmp_user}:\\377')\" target echo reached-target"
    ));
    assert!(!stdout(&out).contains("reached-target"), "{}", text(&out));
    let signs = w.signs_through_bastion(1);
    let line = &signs[0];
    assert_eq!(names(line), ["bastion", "target"]);
    assert_eq!(line["decision"], "deny", "{line}");
    assert_eq!(line["purpose"], "login", "{line}");
    assert_eq!(line["user"], tmp_user.as_str(), "{line}");
    assert_eq!(line["user_style"], "\\xff", "{line}");
    assert_eq!(line["destination"], "verified", "{line}");
    assert_eq!(
        line["rule"],
        format!("no {tmp_user} through the bastion").as_str()
    );
}
