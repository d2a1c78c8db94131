//! `[forwarded] brake` over real sshd: a burst of logins from a bastion
//! reached with `ssh -A`. Past the limit every request through that bastion
//! is asked, even one an `allow` rule or a remembered approval would pass;
//! the prompt says how many hosts in how long; the audit reason says
//! `brake`; with nobody to ask, it is refused.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use common::sshd::Hosts;
use common::*;

const TARGETS: [&str; 4] = ["t1", "t2", "t3", "t4"];

/// A confirm command that counts its calls (one entry each, with its
/// prompt and environment) and says yes.
fn counting_confirmer(dir: &Path) -> PathBuf {
    let script = dir.join("confirm.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"PROMPT=$1\"; env | grep -E '^HOPWARD_' | sort; echo END; }} >> {d}/confirm.log\nexit 0\n",
            d = dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn calls(dir: &Path) -> Vec<String> {
    std::fs::read_to_string(dir.join("confirm.log"))
        .unwrap_or_default()
        .split("END\n")
        .filter(|c| !c.trim().is_empty())
        .map(str::to_string)
        .collect()
}

struct World {
    tmp: tempfile::TempDir,
    hosts: Hosts,
    agent: Daemon,
}

fn world(confirm: &str) -> World {
    let tmp = tempdir();
    let mut names = vec!["bastion"];
    names.extend(TARGETS);
    let hosts = Hosts::start(tmp.path(), &names);
    let script = counting_confirmer(tmp.path());
    let policy = format!(
        r#"
[defaults]
local = "allow"
forwarded = "deny"

[confirm]
{confirm}
timeout = "10s"

[forwarded]
brake = {{ hosts = 2, per = "1h" }}

[[rule]]
name = "t1 remembered"
host = ["t1"]
via = ["bastion"]
action = "confirm"
remember = "1h"

[[rule]]
name = "through the bastion"
via = ["bastion"]
action = "allow"
"#
    )
    .replace("CONFIRM", script.to_str().unwrap());
    let agent = hosts.daemon().policy(&policy).start();
    hosts.login_key(&agent, "work");
    World { tmp, hosts, agent }
}

/// Logs in to each of `targets` in turn from the bastion (one `ssh -A`
/// session, a loop of ssh on it); the output names each host reached.
fn burst(w: &World, targets: &[&str]) -> String {
    let script: Vec<String> = targets
        .iter()
        .map(|t| format!("{} echo reached-{t}", w.hosts.inner_ssh(t)))
        .collect();
    let out = w
        .hosts
        .ssh(&w.agent.sock, &["-A", "bastion", &script.join("; ")]);
    text(&out)
}

fn login_records(agent: &Daemon, n: usize) -> Vec<serde_json::Value> {
    let is_login = |r: &serde_json::Value| r["event"] == "sign" && r["class"] == "forwarded";
    agent
        .audit_until(|lines| lines.iter().filter(|r| is_login(r)).count() >= n)
        .into_iter()
        .filter(|r| is_login(r))
        .collect()
}

#[test]
fn past_the_limit_allowed_and_remembered_logins_are_asked_and_say_how_many() {
    let w = world("method = \"command\"\ncommand = [\"CONFIRM\"]");

    // t1 is asked once and remembered; t1 again passes on the approval;
    // t2 is allowed by its rule. Two hosts: under the brake.
    let out = burst(&w, &["t1", "t1", "t2"]);
    for t in ["t1", "t2"] {
        assert!(out.contains(&format!("reached-{t}")), "{out}");
    }
    assert_eq!(
        calls(w.tmp.path()).len(),
        1,
        "only t1's first login is asked"
    );

    // The third host through the bastion, and then every login through it,
    // t1's remembered one and t2's allowed one included, is asked.
    let out = burst(&w, &["t3", "t4", "t1", "t2"]);
    for t in ["t3", "t4", "t1", "t2"] {
        assert!(out.contains(&format!("reached-{t}")), "{out}");
    }
    let asked = calls(w.tmp.path());
    assert_eq!(
        asked.len(),
        5,
        "every login past the limit is asked: {asked:#?}"
    );
    assert!(
        asked[1].contains("HOPWARD_BRAKE=3 hosts through bastion in 1h"),
        "{}",
        asked[1]
    );
    assert!(
        asked[1].contains("BRAKE: 3 hosts through bastion in 1h"),
        "{}",
        asked[1]
    );
    assert!(
        asked[2].contains("HOPWARD_BRAKE=4 hosts through bastion in 1h"),
        "{}",
        asked[2]
    );
    assert!(asked[3].contains("HOPWARD_BRAKE=4 hosts"), "{}", asked[3]);
    assert!(!asked[0].contains("HOPWARD_BRAKE"), "{}", asked[0]);

    let records = login_records(&w.agent, 7);
    let reasons: Vec<&str> = records
        .iter()
        .map(|r| r["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        [
            "confirmed",
            "remembered",
            "through the bastion",
            "brake:confirmed",
            "brake:confirmed",
            "brake:confirmed",
            "brake:confirmed"
        ]
    );
    assert_eq!(records[3]["brake"]["hosts"], 3);
    assert_eq!(records[3]["brake"]["per"], "1h");
    assert_eq!(records[3]["brake"]["limit"], 2);
    assert!(records[2].get("brake").is_none(), "{}", records[2]);

    // status shows the bastion past the limit.
    let status = w.agent.status();
    assert_eq!(status["brake"]["hops"][0]["hop"], "bastion", "{status:#}");
    assert_eq!(status["brake"]["hops"][0]["hosts"], 4, "{status:#}");
    assert_eq!(status["brake"]["hops"][0]["engaged"], true, "{status:#}");
    let shown = stdout(&ok(run(std::process::Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&w.agent.sock))));
    assert!(shown.contains("bastion: 4 host(s), ASKING"), "{shown}");
}

#[test]
fn past_the_limit_with_nobody_to_ask_logins_are_refused() {
    // askpass with no SSH_ASKPASS and no display: nothing can ask.
    let w = world("method = \"askpass\"");
    let out = burst(&w, &["t2", "t3", "t4"]);
    assert!(out.contains("reached-t2"), "{out}");
    assert!(out.contains("reached-t3"), "{out}");
    assert!(!out.contains("reached-t4"), "{out}");
    let records = login_records(&w.agent, 3);
    let last = records.last().unwrap();
    assert_eq!(last["decision"], "deny", "{last}");
    assert_eq!(last["reason"], "brake:no-confirmer", "{last}");
    assert_eq!(last["brake"]["hosts"], 3, "{last}");
}
