//! Host names under `HashKnownHosts yes`, over real sshd with unmodified
//! OpenSSH: a known_hosts file hashed by `ssh-keygen -H`, the ssh config
//! from `hopward ssh-config`, and the README's first rule (`host =
//! ["*.prod.example.com"]`, `via = ["bastion"]`). A first login by name
//! teaches hopward the name; a later login through the bastion is decided
//! by the glob rule; `policy explain` decides as the daemon does before and
//! after. A name reported with a key the hashed entry does not confirm,
//! or through a forwarded agent, is not learned.

mod common;

use std::process::Command;

use common::sshd::Hosts;
use common::*;

const DB: &str = "db1.prod.example.com";

struct World {
    tmp: tempfile::TempDir,
    hosts: Hosts,
    agent: Daemon,
    known_hosts: std::path::PathBuf,
    /// The user's ssh config: `hopward ssh-config`'s lines, then the hosts'.
    config: std::path::PathBuf,
}

fn policy(confirm: &std::path::Path) -> String {
    format!(
        "[defaults]\nlocal = \"allow\"\nforwarded = \"deny\"\nforwarded_unverified = \"deny\"\n\
         [confirm]\nmethod = \"command\"\ncommand = [\"{}\"]\ntimeout = \"60s\"\n\
         [[rule]]\nname = \"prod through the bastion\"\nhost = [\"*.prod.example.com\"]\n\
         via = [\"bastion\"]\naction = \"confirm\"\n",
        confirm.display()
    )
}

fn world() -> World {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "db1"]);
    let known_hosts = tmp.path().join("known_hosts");
    // The host is known as db1.prod.example.com, and ssh_config maps that
    // name to its port on loopback.
    let plain = std::fs::read_to_string(&known_hosts).unwrap();
    std::fs::write(&known_hosts, plain.replace("db1 ", &format!("{DB} "))).unwrap();
    let port = hosts.hosts.iter().find(|h| h.name == "db1").unwrap().port;
    let mapping = format!(
        "Host {DB}\n  HostName 127.0.0.1\n  Port {port}\n  HostKeyAlias {DB}\n\n{}",
        std::fs::read_to_string(&hosts.config).unwrap()
    );
    let inner_config = tmp.path().join("inner_ssh_config");
    std::fs::write(&inner_config, &mapping).unwrap();
    // Debian's and Ubuntu's default: every name hashed.
    ok(run(Command::new("ssh-keygen").arg("-H").arg("-f").arg(&known_hosts)));
    let hashed = std::fs::read_to_string(&known_hosts).unwrap();
    assert!(
        !hashed.contains("prod") && !hashed.contains("bastion"),
        "{hashed}"
    );
    let confirm = confirm_command(tmp.path());
    let agent = Daemon::builder()
        .policy(&policy(&confirm))
        .env("HOPWARD_KNOWN_HOSTS", known_hosts.to_str().unwrap())
        .start();
    let key = keygen(tmp.path(), "id", "ed25519", None);
    hosts.authorize(&key.with_extension("pub"));
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let lines = stdout(&ok(run(Command::new(HOPWARD)
        .args(["ssh-config", "-a"])
        .arg(&agent.sock))));
    let config = tmp.path().join("user_ssh_config");
    std::fs::write(&config, format!("{lines}\n{mapping}")).unwrap();
    World {
        tmp,
        hosts,
        agent,
        known_hosts,
        config,
    }
}

impl World {
    /// `ssh -F <the user's config>` with no SSH_AUTH_SOCK: IdentityAgent
    /// from `hopward ssh-config` must find the agent.
    fn ssh(&self, args: &[&str]) -> std::process::Output {
        run(Command::new(&self.hosts.ssh_program)
            .arg("-F")
            .arg(&self.config)
            .args(args)
            .env_remove("SSH_AUTH_SOCK"))
    }

    /// `ssh -A bastion` (the user's config), then `ssh db1...` there.
    fn through_bastion(&self) -> std::process::Output {
        let inner = format!(
            "{} -F {} {DB} true",
            self.hosts.ssh_program.display(),
            self.tmp.path().join("inner_ssh_config").display()
        );
        self.ssh(&["-A", "bastion", &inner])
    }

    fn learned(&self) -> Vec<String> {
        self.agent.status()["learned_hosts"]["newest"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["name"].as_str().unwrap().to_string())
            .collect()
    }

    fn explain(&self, chain: &str) -> String {
        stdout(&ok(run(Command::new(HOPWARD)
            .args(["policy", "explain", "--policy"])
            .arg(self.agent.dir.path().join("policy.toml"))
            .args(["--chain", chain])
            .env("HOPWARD_KNOWN_HOSTS", &self.known_hosts)
            .env("XDG_STATE_HOME", self.agent.dir.path().join("state")))))
    }

    fn host_pub_b64(&self, name: &str) -> String {
        let file = if name == DB { "db1" } else { name };
        let text =
            std::fs::read_to_string(self.tmp.path().join(format!("host_{file}.pub"))).unwrap();
        text.split_whitespace().nth(1).unwrap().to_string()
    }

    /// The records of a login to db1 through the bastion: the listing
    /// (where a refusal is decided first) and the signature.
    fn db_logins(&self) -> Vec<serde_json::Value> {
        self.agent
            .audit(0)
            .into_iter()
            .filter(|l| {
                (l["event"] == "sign" || l["event"] == "list")
                    && l["chain"].as_array().is_some_and(|c| c.len() == 2)
            })
            .collect()
    }
}

#[test]
fn a_first_login_by_name_lets_the_glob_rule_match_through_the_bastion() {
    let w = world();

    // Before: the hashed line hides db1's name, so the glob cannot match:
    // the daemon refuses, explain says so too, and the record calls the
    // host known with its name not learned yet.
    let before = w.through_bastion();
    assert!(!before.status.success(), "{}", text(&before));
    let denied = wait_for("the refused login's record", std::time::Duration::from_secs(10), || {
        w.db_logins().into_iter().next()
    });
    assert_eq!(denied["decision"], "deny", "{denied:#}");
    assert_eq!(denied["reason"], "default:forwarded_unknown", "{denied:#}");
    let db_hop = &denied["chain"][1];
    assert_eq!(db_hop["names"], serde_json::json!([]), "{denied:#}");
    assert_eq!(db_hop["hashed"], true, "{denied:#}");
    let explained = w.explain(&format!("bastion>{DB}"));
    assert!(explained.contains("decision: deny"), "{explained}");
    assert!(explained.contains("name not learned yet"), "{explained}");
    assert!(confirm_prompts(w.tmp.path()).is_empty());

    // A name reported with a key its hashed entry does not confirm (the
    // bastion's) is not learned; nor is a true one sent through a
    // forwarded agent (the bastion's own ssh could run anything).
    ok(run(Command::new(HOPWARD)
        .args(["learn-host", "-a"])
        .arg(&w.agent.sock)
        .args(["HOSTNAME", DB, &w.host_pub_b64("bastion")])));
    let remote = format!(
        "{} learn-host -a \"$SSH_AUTH_SOCK\" HOSTNAME {DB} {}",
        HOPWARD,
        w.host_pub_b64(DB)
    );
    let forwarded = w.ssh(&["-A", "bastion", &remote]);
    assert!(forwarded.status.success(), "{}", text(&forwarded));
    // (The ssh to the bastion reported the bastion, which is true.)
    assert_eq!(w.learned(), vec!["bastion".to_string()]);
    assert!(
        w.agent.log_text().contains("refused control request on a bound connection"),
        "{}",
        w.agent.log_text()
    );

    // One direct login by name: ssh's KnownHostsCommand reports it.
    let direct = w.ssh(&[DB, "true"]);
    assert!(direct.status.success(), "{}", text(&direct));
    assert!(w.learned().contains(&DB.to_string()), "{:?}", w.learned());
    let kept = w.agent.dir.path().join("state/hopward/learned_hosts");
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kept).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(&kept).unwrap().contains(DB));

    // After: explain and the daemon both take the glob rule.
    let explained = w.explain(&format!("bastion>{DB}"));
    assert!(explained.contains("decision: confirm"), "{explained}");
    assert!(explained.contains("rule:     prod through the bastion"), "{explained}");
    let after = w.through_bastion();
    assert!(after.status.success(), "{}", text(&after));
    let allowed = wait_for("the allowed login's record", std::time::Duration::from_secs(10), || {
        w.db_logins()
            .into_iter()
            .find(|l| l["event"] == "sign" && l["decision"] == "allow")
    });
    assert_eq!(allowed["rule"], "prod through the bastion", "{allowed:#}");
    assert_eq!(allowed["chain"][1]["names"][0], DB, "{allowed:#}");
    assert_eq!(allowed["chain"][1]["hashed"], true, "{allowed:#}");
    let prompts = confirm_prompts(w.tmp.path());
    assert_eq!(prompts.len(), 1, "{prompts:#?}");
    assert!(
        prompts[0].contains(&format!("log in to {DB}"))
            && prompts[0].contains("name verified through a hashed known_hosts entry"),
        "{}",
        prompts[0]
    );
}

#[test]
fn learn_host_is_quiet_and_succeeds_with_no_agent() {
    let tmp = tempdir();
    let out = run(Command::new(HOPWARD)
        .args(["learn-host", "-a"])
        .arg(tmp.path().join("nobody.sock"))
        .args(["HOSTNAME", DB, "AAAA"]));
    assert!(out.status.success(), "{}", text(&out));
    assert!(out.stdout.is_empty() && out.stderr.is_empty(), "{}", text(&out));
    // Words ssh never sends are not a usage error either: ssh would fail.
    let out = run(Command::new(HOPWARD).args(["learn-host", "--what"]));
    assert!(out.status.success() && out.stdout.is_empty(), "{}", text(&out));
}
