//! ProxyJump is a route: `ssh -J bastion prod`, `ProxyCommand ssh -W`, and
//! `ssh -J a,b prod` over real sshd hosts with unmodified OpenSSH. The
//! policy refuses every direct login by default, so a login to prod is
//! signed only when hopward sees the jump host its ssh tunnels through.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};

use common::sshd::Hosts;
use common::*;

const POLICY: &str = r#"
[defaults]
local = "deny"
forwarded = "deny"
forwarded_unverified = "deny"

[confirm]
method = "command"
command = ["CONFIRM"]
timeout = "20s"

[[rule]]
name = "jump hosts, straight from here"
host = ["bastion", "a"]
jump = []
via = []
action = "allow"

[[rule]]
name = "a through the agent forwarded to prod"
host = ["a"]
via = ["prod"]
jump = []
action = "allow"

[[rule]]
name = "b through a"
host = ["b"]
jump = ["a"]
action = "allow"

[[rule]]
name = "prod through the bastion"
host = ["prod"]
jump = ["bastion"]
action = "allow"

[[rule]]
name = "prod through a and b"
host = ["prod"]
jump = ["a", "b"]
action = "confirm"
"#;

struct World {
    tmp: tempfile::TempDir,
    hosts: Hosts,
    agent: Daemon,
}

fn world() -> World {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "a", "b", "prod"]);
    let script = confirm_command(tmp.path());
    let agent = hosts
        .daemon()
        .policy(&POLICY.replace("CONFIRM", script.to_str().unwrap()))
        .start();
    hosts.login_key(&agent, "work");
    World { tmp, hosts, agent }
}

/// The first hop names of an audit record's chain, each with `(jump)` for
/// a jump host, and whether any other hop carries a `jump` key at all.
fn route(line: &serde_json::Value) -> Vec<String> {
    line["chain"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            let name = h["names"][0].as_str().unwrap_or("?").to_string();
            match &h["jump"] {
                serde_json::Value::Bool(true) => {
                    assert_eq!(h["forwarded"], false, "{line}");
                    format!("{name} (jump)")
                }
                serde_json::Value::Null => name,
                other => panic!("jump is true or absent, not {other}: {line}"),
            }
        })
        .collect()
}

/// The sign record of a login to `host`, once written.
fn login_to(agent: &Daemon, host: &str) -> serde_json::Value {
    agent.wait_audit(&format!("a login to {host}"), |l| {
        l["event"] == "sign" && route(l).last().map(String::as_str) == Some(host)
    })
}

fn reached(out: &std::process::Output, host: &str) {
    assert!(
        stdout(out).contains(&format!("reached-{host}")),
        "{}",
        text(out)
    );
}

#[test]
fn ssh_j_bastion_prod_is_a_route_through_the_bastion() {
    let w = world();
    let out = w.hosts.ssh(
        &w.agent.sock,
        &["-J", "bastion", "prod", "echo reached-prod"],
    );
    reached(&out, "prod");
    let prod = login_to(&w.agent, "prod");
    assert_eq!(prod["decision"], "allow", "{prod}");
    assert_eq!(prod["rule"], "prod through the bastion", "{prod}");
    assert_eq!(prod["class"], "direct", "nothing is forwarded: {prod}");
    assert_eq!(route(&prod), ["bastion (jump)", "prod"]);
    // The jump child's own login is a plain direct one, and its record
    // has no `jump` key anywhere: records without a jump keep their bytes.
    let bastion = login_to(&w.agent, "bastion");
    assert_eq!(
        bastion["rule"], "jump hosts, straight from here",
        "{bastion}"
    );
    assert!(!bastion.to_string().contains("jump\":"), "{bastion}");
    // `hopward log` shows the route.
    let log = ok(run(Command::new(HOPWARD)
        .args(["log", "--file"])
        .arg(w.agent.audit_path())));
    assert!(
        stdout(&log).contains("bastion (jump)>prod"),
        "{}",
        text(&log)
    );
}

#[test]
fn proxy_command_ssh_w_is_the_same_route_with_or_without_a_shell_between() {
    let w = world();
    let config = w.hosts.config.display().to_string();
    // ssh runs a ProxyCommand as `sh -c "exec CMD"`: the jump ssh is its
    // child. The second form keeps the shell, so it is a grandchild.
    let forms = [
        format!("ProxyCommand=ssh -F {config} -W %h:%p bastion"),
        format!("ProxyCommand=sh -c 'ssh -F {config} -W %h:%p bastion; exit $?'"),
    ];
    for (i, form) in forms.iter().enumerate() {
        let out = w
            .hosts
            .ssh(&w.agent.sock, &["-o", form, "prod", "echo reached-prod"]);
        reached(&out, "prod");
        let logins = w.agent.audit_until(|l| {
            l.iter()
                .filter(|x| {
                    x["event"] == "sign" && route(x).last().map(String::as_str) == Some("prod")
                })
                .count()
                > i
        });
        let prod: Vec<_> = logins
            .iter()
            .filter(|x| x["event"] == "sign" && route(x).last().map(String::as_str) == Some("prod"))
            .collect();
        assert_eq!(prod.len(), i + 1, "{form}: {logins:#?}");
        assert_eq!(route(prod[i]), ["bastion (jump)", "prod"], "{form}");
        assert_eq!(prod[i]["decision"], "allow", "{form}: {}", prod[i]);
    }
}

#[test]
fn ssh_j_a_b_is_a_route_of_two_jumps_and_the_prompt_says_so() {
    let w = world();
    let out = w
        .hosts
        .ssh(&w.agent.sock, &["-J", "a,b", "prod", "echo reached-prod"]);
    reached(&out, "prod");
    let b = login_to(&w.agent, "b");
    assert_eq!(
        (&b["decision"], &b["rule"]),
        (&"allow".into(), &"b through a".into())
    );
    assert_eq!(route(&b), ["a (jump)", "b"]);
    let prod = login_to(&w.agent, "prod");
    assert_eq!(route(&prod), ["a (jump)", "b (jump)", "prod"]);
    assert_eq!(prod["rule"], "prod through a and b", "{prod}");
    assert_eq!(prod["reason"], "confirmed", "{prod}");
    let prompts = confirm_prompts(w.tmp.path());
    assert_eq!(prompts.len(), 1, "{prompts:#?}");
    assert!(
        prompts[0].contains("Chain: a (jump) > b (jump) > prod (auth)"),
        "{}",
        prompts[0]
    );
    assert!(
        prompts[0].contains("HOPWARD_CHAIN=a (jump)>b (jump)>prod\n"),
        "{}",
        prompts[0]
    );
    assert!(prompts[0].contains("HOPWARD_FORWARDED=0"), "{}", prompts[0]);
}

/// `ssh -A -J bastion prod`: the login to prod is a jumped one, and what
/// comes back through the agent forwarded to prod has prod as its first
/// (forwarding) hop and no jump hosts, though the same ssh, with its jump
/// child alive, opened that connection too.
#[test]
fn the_agent_forwarded_through_a_jumped_login_gets_no_jump_hosts() {
    let w = world();
    let inner = w.hosts.inner_ssh("a echo reached-a");
    let out = w
        .hosts
        .ssh(&w.agent.sock, &["-A", "-J", "bastion", "prod", &inner]);
    reached(&out, "a");
    let prod = login_to(&w.agent, "prod");
    assert_eq!(route(&prod), ["bastion (jump)", "prod"], "{prod}");
    // Matched by a rule with `jump = []`: the forwarded request has none.
    let a = login_to(&w.agent, "a");
    assert_eq!(route(&a), ["prod", "a"], "{a}");
    assert_eq!(a["chain"][0]["forwarded"], true, "{a}");
    assert_eq!(a["class"], "forwarded", "{a}");
    assert_eq!(
        (&a["decision"], &a["rule"]),
        (
            &"allow".into(),
            &"a through the agent forwarded to prod".into()
        ),
        "{a}"
    );
}

/// An ssh that bound the bastion and stays logged in, started by the test
/// (not by the ssh that then logs in to prod).
fn logged_in_elsewhere(hosts: &Hosts, sock: &Path) -> std::process::Child {
    Command::new(&hosts.ssh_program)
        .arg("-F")
        .arg(&hosts.config)
        .args(["bastion", "cat"])
        .env("SSH_AUTH_SOCK", sock)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ssh bastion")
}

#[test]
fn a_direct_login_is_no_jump_while_an_unrelated_ssh_holds_the_bastion() {
    let w = world();
    let mut other = logged_in_elsewhere(&w.hosts, &w.agent.sock);
    let bastion = login_to(&w.agent, "bastion");
    assert_eq!(bastion["decision"], "allow", "{bastion}");
    // The daemon remembers that bind as a possible jump while it lives.
    let status = w.agent.wait_status("the bastion bind remembered", |s| {
        s["jumps"].as_array().is_some_and(|j| {
            j.iter()
                .any(|j| j["route"] == serde_json::json!(["bastion"]))
        })
    });
    assert!(other.try_wait().unwrap().is_none(), "{status}");
    let shown = ok(run(Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&w.agent.sock)));
    assert!(
        stdout(&shown).contains(&format!("ssh pid {}: bastion (jump)", other.id())),
        "{}",
        text(&shown)
    );
    let out = w.hosts.ssh(&w.agent.sock, &["prod", "echo reached-prod"]);
    assert!(!out.status.success(), "{}", text(&out));
    let prod = login_to(&w.agent, "prod");
    assert_eq!(route(&prod), ["prod"], "{prod}");
    assert_eq!(
        (&prod["decision"], &prod["rule"]),
        (&"deny".into(), &"default:local".into()),
        "{prod}"
    );
    drop(other.stdin.take());
    let _ = other.kill();
    let _ = other.wait();
}
