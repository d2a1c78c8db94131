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
    ok(run(Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&known_hosts)));
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

    /// `doctor --json`'s finding about hashed known_hosts.
    fn doctor_hashed(&self) -> serde_json::Value {
        let out = run(Command::new(HOPWARD)
            .args(["doctor", "--json", "-a"])
            .arg(&self.agent.sock)
            .env("HOPWARD_KNOWN_HOSTS", &self.known_hosts)
            .env("XDG_STATE_HOME", self.agent.dir.path().join("state")));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor --json: {e}: {}", text(&out)));
        report["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == "hashed-known-hosts")
            .unwrap_or_else(|| panic!("no hashed-known-hosts check: {report:#}"))
            .clone()
    }

    fn check(&self) -> String {
        stdout(&ok(run(Command::new(HOPWARD)
            .args(["policy", "check"])
            .arg(self.agent.dir.path().join("policy.toml"))
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
    let denied = wait_for(
        "the refused login's record",
        std::time::Duration::from_secs(10),
        || w.db_logins().into_iter().next(),
    );
    assert_eq!(denied["decision"], "deny", "{denied:#}");
    assert_eq!(denied["reason"], "default:forwarded_unknown", "{denied:#}");
    let db_hop = &denied["chain"][1];
    assert_eq!(db_hop["names"], serde_json::json!([]), "{denied:#}");
    assert_eq!(db_hop["hashed"], true, "{denied:#}");
    let explained = w.explain(&format!("bastion>{DB}"));
    assert!(explained.contains("decision: deny"), "{explained}");
    assert!(explained.contains("name not learned yet"), "{explained}");
    let checked = w.check();
    assert!(
        checked.contains("\"*.prod.example.com\" cannot match yet: known_hosts is hashed"),
        "{checked}"
    );
    let finding = w.doctor_hashed();
    assert_eq!(finding["ok"], false, "{finding:#}");
    assert!(
        finding["message"]
            .as_str()
            .unwrap()
            .contains("*.prod.example.com"),
        "{finding:#}"
    );
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
        w.agent
            .log_text()
            .contains("refused control request on a bound connection"),
        "{}",
        w.agent.log_text()
    );

    // One direct login by name: ssh's KnownHostsCommand reports it.
    let direct = w.ssh(&[DB, "true"]);
    assert!(direct.status.success(), "{}", text(&direct));
    assert!(w.learned().contains(&DB.to_string()), "{:?}", w.learned());
    let kept = w.agent.dir.path().join("state/hopward/learned_hosts");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&kept).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    assert!(std::fs::read_to_string(&kept).unwrap().contains(DB));

    // After: policy check, explain and the daemon all see the name.
    let checked = w.check();
    assert!(!checked.contains("cannot match yet"), "{checked}");
    let finding = w.doctor_hashed();
    assert_eq!(finding["ok"], true, "{finding:#}");
    let status = stdout(&ok(run(Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&w.agent.sock))));
    assert!(
        status.contains("host names:  2 learned from ssh"),
        "{status}"
    );
    let explained = w.explain(&format!("bastion>{DB}"));
    assert!(explained.contains("decision: confirm"), "{explained}");
    assert!(
        explained.contains("rule:     prod through the bastion"),
        "{explained}"
    );
    let after = w.through_bastion();
    assert!(after.status.success(), "{}", text(&after));
    let allowed = wait_for(
        "the allowed login's record",
        std::time::Duration::from_secs(10),
        || {
            w.db_logins()
                .into_iter()
                .find(|l| l["event"] == "sign" && l["decision"] == "allow")
        },
    );
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

/// `ssh -J bastion db1...`: the jump host's ssh reads the same config and
/// reports the bastion; the last hop's ssh reports db1.
#[test]
fn a_login_through_a_jump_host_teaches_both_names() {
    let w = world();
    let out = w.ssh(&["-J", "bastion", DB, "true"]);
    assert!(out.status.success(), "{}", text(&out));
    let learned = w.learned();
    assert!(
        learned.contains(&"bastion".to_string()) && learned.contains(&DB.to_string()),
        "{learned:?}"
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
    assert!(
        out.stdout.is_empty() && out.stderr.is_empty(),
        "{}",
        text(&out)
    );
    // Words ssh never sends are not a usage error either: ssh would fail.
    let out = run(Command::new(HOPWARD).args(["learn-host", "--what"]));
    assert!(
        out.status.success() && out.stdout.is_empty(),
        "{}",
        text(&out)
    );
}

/// The hosts of the differential test: a name, its host key seed, and how
/// known_hosts holds it.
#[derive(Clone, Copy, PartialEq)]
enum Held {
    Plain,
    /// Hashed, and its name reported by ssh (learned).
    Learned,
    /// Hashed, never reported.
    Hashed,
    /// In no known_hosts file (explain is given its fingerprint).
    Nowhere,
}

const POOL: &[(&str, u8, Held)] = &[
    ("bastion", 41, Held::Plain),
    ("jump.example.org", 42, Held::Plain),
    ("db1.prod.example.com", 43, Held::Learned),
    ("db2.prod.example.com", 44, Held::Hashed),
    ("web.stage.example.com", 45, Held::Learned),
    ("exact.prod.example.com", 46, Held::Hashed),
    ("edge", 47, Held::Hashed),
    ("stray", 48, Held::Nowhere),
    // Two keys, as a host with an RSA and an Ed25519 key has: ssh reported
    // the name with the second ([`OTHER_KEY`] is on the line before).
    ("db3.prod.example.com", 50, Held::Learned),
];

/// The first key of the host with two.
const OTHER_KEY: u8 = 49;

const DIFF_POLICY: &str = r#"
[defaults]
local = "allow"
forwarded = "confirm"
forwarded_unverified = "deny"
[confirm]
method = "command"
command = ["CONFIRM"]
timeout = "60s"
[[rule]]
name = "never web after db"
host = ["web.*"]
via = ["db1.*"]
action = "deny"
[[rule]]
name = "prod through the bastion"
host = ["*.prod.example.com"]
via = ["bastion"]
user = ["deploy"]
action = "allow"
[[rule]]
name = "exact name"
host = ["exact.prod.example.com"]
action = "notify"
[[rule]]
name = "stage asks"
host = ["*.stage.example.com"]
action = "confirm"
[[rule]]
name = "nothing through the jump host"
via = ["jump.example.org"]
action = "deny"
[[rule]]
name = "direct to db"
host = ["db*"]
via = []
action = "allow"
[[rule]]
name = "edge by name"
host = ["edge"]
action = "allow"
"#;

/// `policy explain` decides as the daemon does, over many generated chains
/// of hosts held plain, hashed and learned, hashed only, and nowhere: the
/// same rule (or default) for every one, the same allow or deny where no
/// one is asked. Each daemon decision is a real sign request on a real
/// connection, its binds signed by the hosts' keys.
#[test]
fn explain_decides_as_the_daemon_over_generated_chains() {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let tmp = tempdir();
    let line =
        |name: &str, seed: u8| format!("{name} ssh-ed25519 {}\n", b64.encode(host_key_blob(seed)));
    let plain_file = tmp.path().join("known_hosts");
    let hashed_file = tmp.path().join("known_hosts_hashed");
    let (mut plain, mut hashed) = (String::new(), String::new());
    for &(name, seed, held) in POOL {
        match held {
            Held::Plain => plain.push_str(&line(name, seed)),
            Held::Learned | Held::Hashed => {
                if seed == 50 {
                    hashed.push_str(&line(name, OTHER_KEY));
                }
                hashed.push_str(&line(name, seed))
            }
            Held::Nowhere => {}
        }
    }
    std::fs::write(&plain_file, plain).unwrap();
    std::fs::write(&hashed_file, hashed).unwrap();
    ok(run(Command::new("ssh-keygen")
        .arg("-H")
        .arg("-f")
        .arg(&hashed_file)));
    let files = format!("{}:{}", plain_file.display(), hashed_file.display());

    let confirm = confirm_command(tmp.path());
    let agent = Daemon::builder()
        .policy(&DIFF_POLICY.replace("CONFIRM", confirm.to_str().unwrap()))
        .env("HOPWARD_KNOWN_HOSTS", &files)
        .start();
    let key = keygen(tmp.path(), "id", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let pubtext = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let key_blob = b64
        .decode(pubtext.split_whitespace().nth(1).unwrap())
        .unwrap();
    let key_fp = stdout(&ok(run(Command::new("ssh-keygen")
        .arg("-lf")
        .arg(key.with_extension("pub")))))
    .split_whitespace()
    .nth(1)
    .unwrap()
    .to_string();

    // ssh reports the learned hosts (and a false pairing, which is not kept).
    for &(name, seed, held) in POOL {
        let reported = if held == Held::Learned { seed } else { 41 };
        ok(run(Command::new(HOPWARD)
            .args(["learn-host", "-a"])
            .arg(&agent.sock)
            .args([
                "HOSTNAME",
                name,
                &b64.encode(host_key_blob(reported)),
            ])));
    }
    let learned: Vec<String> = agent.status()["learned_hosts"]["newest"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(learned.len(), 4, "{learned:?}"); // bastion (its own key), db1, web, db3
    assert!(!learned.contains(&"db2.prod.example.com".to_string()));

    // A small deterministic generator: chains of one to four hops.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let mut seen_rules = std::collections::BTreeSet::new();
    let mut allows = 0;
    // The chains the README's rule is about come first, then random ones.
    let fixed: &[(&[usize], &str)] = &[
        (&[0, 2], "deploy"), // bastion > db1 (learned): the glob rule
        (&[0, 3], "deploy"), // bastion > db2 (hashed, not learned): unknown
        (&[0, 5], "deploy"), // bastion > exact (hashed, named exactly)
        (&[2, 4], "root"),   // db1 > web: the learned via
        (&[7, 2], "deploy"), // stray (nowhere) > db1
        (&[0, 8], "deploy"), // bastion > db3 (learned with its second key)
    ];
    for round in 0..150u32 {
        let (hops, user): (Vec<(&str, u8, Held)>, &str) = match fixed.get(round as usize) {
            Some((idx, user)) => (idx.iter().map(|&i| POOL[i]).collect(), user),
            None => {
                let len = 1 + next(4);
                let hops = (0..len).map(|_| POOL[next(POOL.len())]).collect();
                (hops, ["deploy", "root"][next(2)])
            }
        };
        let len = hops.len();

        // The daemon: binds for each hop, then a login to the last.
        let mut stream = agent.connect();
        let mut sid = Vec::new();
        for (i, &(_, seed, _)) in hops.iter().enumerate() {
            sid = format!("sid-{round}-{i}").into_bytes();
            let reply = request(&mut stream, &session_bind_request(seed, &sid, i + 1 < len));
            assert_eq!(reply, vec![6], "bind {i} of round {round}");
        }
        // As OpenSSH >= 8.9 logs in: host-bound to the last hop's key.
        let last_key = host_key_blob(hops[len - 1].1);
        let data = userauth_data(&sid, user, &key_blob, Some(&last_key));
        let prompts_before = confirm_prompts(tmp.path()).len();
        let reply = request(&mut stream, &sign_request(&key_blob, &data));
        drop(stream);
        let signed = reply.first() == Some(&14);
        let asked = confirm_prompts(tmp.path()).len() > prompts_before;

        // explain, given the same chain by name (by fingerprint for a host
        // no file holds).
        let chain: Vec<String> = hops
            .iter()
            .map(|&(name, seed, held)| {
                if held == Held::Nowhere {
                    hopward::ssh::key::fingerprint_of(&host_key_blob(seed))
                } else {
                    name.to_string()
                }
            })
            .collect();
        let explained = stdout(&ok(run(Command::new(HOPWARD)
            .args(["policy", "explain", "--policy"])
            .arg(agent.dir.path().join("policy.toml"))
            .args(["--key", &key_fp, "--comment", "x", "--user", user])
            .args(["--chain", &chain.join(">")])
            .env("HOPWARD_KNOWN_HOSTS", &files)
            .env("XDG_STATE_HOME", agent.dir.path().join("state")))));
        let field = |name: &str| {
            explained
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
                .unwrap_or_default()
        };
        let rule = field("rule:");
        let rule = rule.split(" (").next().unwrap_or_default();
        let decision = field("decision:");
        let context = format!("round {round}, chain {chain:?}, user {user}:\n{explained}");
        let expected = match decision.as_str() {
            "allow" | "notify" => (true, false),
            "deny" => (false, false),
            // Asked, and the confirmer says yes.
            "confirm" => (true, true),
            other => panic!("explain said {other:?}: {context}"),
        };
        assert_eq!((signed, asked), expected, "(signed, asked) {context}");
        // Every allow is written (refusals from one bastion may be counted
        // together): its rule is explain's.
        if signed {
            allows += 1;
            let records = agent.audit_until(|l| {
                l.iter()
                    .filter(|x| x["event"] == "sign" && x["decision"] == "allow")
                    .count()
                    >= allows
            });
            let record = records
                .iter()
                .filter(|x| x["event"] == "sign" && x["decision"] == "allow")
                .nth(allows - 1)
                .unwrap_or_else(|| panic!("no record of the allow: {context}"));
            assert_eq!(record["rule"], rule, "{context}\n{record:#}");
        }
        seen_rules.insert(rule.to_string());
    }
    // The generator reached the rules that hashed and learned names decide.
    for rule in [
        "prod through the bastion",
        "stage asks",
        "exact name",
        "default:forwarded_unknown",
        "direct to db",
    ] {
        assert!(
            seen_rules.contains(rule),
            "{rule} never decided: {seen_rules:?}"
        );
    }
}

/// `hopward install` writes its own ssh_config file, and adds an Include of
/// it on top of `~/.ssh/config` only when told (`--ssh-config`), once, and
/// keeping what was there; with `--no-ssh-config`, or nobody to ask, the
/// user's file is left as it is and the way to do it is printed. The file
/// it includes is one ssh reads: `ssh -G` sees IdentityAgent and the
/// KnownHostsCommand through it.
#[test]
fn install_offers_the_ssh_config_include_once_and_never_silently() {
    let home = tempdir();
    let runtime = home.path().join("run");
    std::fs::create_dir_all(&runtime).unwrap();
    std::fs::set_permissions(
        &runtime,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let ssh_dir = home.path().join(".ssh");
    std::fs::create_dir_all(&ssh_dir).unwrap();
    let config = ssh_dir.join("config");
    let mine = "Host work\n  User me\n";
    std::fs::write(&config, mine).unwrap();
    std::fs::set_permissions(&config, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let install = |flag: Option<&str>| {
        let mut cmd = Command::new(HOPWARD);
        cmd.args([
            "install",
            "--user",
            "--force",
            "--keep-others",
            "--bin",
            HOPWARD,
        ])
        .args(flag)
        .env("HOME", home.path())
        .env("XDG_RUNTIME_DIR", &runtime)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .stdin(std::process::Stdio::null());
        ok(run(&mut cmd))
    };
    let owned = home.path().join(".config/hopward/ssh_config");

    // Nobody to ask: the user's file stays, and the way is said.
    let out = stdout(&install(None));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), mine);
    assert!(out.contains("hopward install --ssh-config"), "{out}");
    let lines = std::fs::read_to_string(&owned).unwrap();
    assert!(lines.contains("KnownHostsCommand"), "{lines}");
    let out = stdout(&install(Some("--no-ssh-config")));
    assert_eq!(std::fs::read_to_string(&config).unwrap(), mine, "{out}");

    // Told: the include goes on top, once, and the rest is kept.
    install(Some("--ssh-config"));
    install(Some("--ssh-config"));
    let text = std::fs::read_to_string(&config).unwrap();
    assert!(text.ends_with(mine), "{text}");
    assert_eq!(text.matches("Include").count(), 1, "{text}");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600);
    // ssh reads ~/.ssh/config from the account's home, not $HOME: name it.
    let seen = stdout(&ok(run(Command::new("ssh")
        .arg("-F")
        .arg(&config)
        .args(["-G", "work"]))));
    let sock = runtime.join("hopward/agent.sock");
    assert!(
        seen.contains(&format!("identityagent {}", sock.display())),
        "{seen}"
    );
    assert!(seen.contains("knownhostscommand"), "{seen}");
    assert!(seen.contains("user me"), "{seen}");
}
