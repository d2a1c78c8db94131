//! PKCS#11 tokens through Debian's SoftHSM: `ssh-add -s`/`-e` with a PIN,
//! logins and SSHSIG signatures direct and through a forwarded agent under
//! a confirm rule, a wrong PIN, and a provider helper that crashes, hangs or
//! loses its token while its keys are loaded.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::sshd::Hosts;
use common::*;

const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";
/// Distinctive, so the leak scan can look for it in every log.
const PIN: &str = "739164825";

struct Token {
    conf: PathBuf,
    dir: PathBuf,
    /// Public key files of the token's keys.
    keys: Vec<PathBuf>,
}

/// A SoftHSM token in `dir` with an RSA and an ECDSA key.
fn token(dir: &Path) -> Token {
    assert!(
        Path::new(SOFTHSM).exists(),
        "{SOFTHSM} is missing: scripts/test.sh installs softhsm2"
    );
    record_pin(PIN);
    let tokdir = dir.join("tokens");
    std::fs::create_dir_all(&tokdir).unwrap();
    let conf = dir.join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokdir.display()
        ),
    )
    .unwrap();
    let util = |args: &[&str]| {
        ok(run(Command::new("softhsm2-util")
            .args(args)
            .env("SOFTHSM2_CONF", &conf)))
    };
    util(&[
        "--init-token",
        "--free",
        "--label",
        "hopward",
        "--pin",
        PIN,
        "--so-pin",
        "12345678",
    ]);
    let mut keys = Vec::new();
    for (i, (name, genpkey)) in [
        ("rsa", vec!["-algorithm", "rsa"]),
        (
            "ec",
            vec![
                "-algorithm",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:prime256v1",
            ],
        ),
    ]
    .into_iter()
    .enumerate()
    {
        let pem = dir.join(format!("{name}.pem"));
        let p8 = dir.join(format!("{name}.p8"));
        let out = ok(run(Command::new("openssl").arg("genpkey").args(&genpkey)));
        std::fs::write(&pem, &out.stdout).unwrap();
        let out = ok(run(Command::new("openssl")
            .args(["pkcs8", "-topk8", "-nocrypt", "-in"])
            .arg(&pem)));
        std::fs::write(&p8, &out.stdout).unwrap();
        let id = format!("0{}", i + 1);
        util(&[
            "--token",
            "hopward",
            "--label",
            &format!("token-{name}"),
            "--id",
            &id,
            "--pin",
            PIN,
            "--import",
            p8.to_str().unwrap(),
        ]);
        std::fs::set_permissions(&pem, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .unwrap();
        let public = ok(run(Command::new("ssh-keygen")
            .arg("-y")
            .arg("-f")
            .arg(&pem)));
        let pubfile = dir.join(format!("{name}.pub"));
        std::fs::write(&pubfile, &public.stdout).unwrap();
        keys.push(pubfile);
    }
    Token {
        conf,
        dir: tokdir,
        keys,
    }
}

/// An askpass program that gives `pin`.
fn pin_program(dir: &Path, pin: &str) -> PathBuf {
    let path = dir.join(format!("pin-{pin}.sh"));
    std::fs::write(&path, format!("#!/bin/sh\necho {pin}\n")).unwrap();
    std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    path
}

/// `ssh-add ARGS`, the PIN (if asked) from `pin`.
fn ssh_add_pin(agent: &Daemon, dir: &Path, pin: &str, args: &[&str]) -> Output {
    run(agent
        .ssh_add_cmd()
        .args(args)
        .env("SSH_ASKPASS", pin_program(dir, pin))
        .env("SSH_ASKPASS_REQUIRE", "force")
        .env("DISPLAY", ":0")
        .stdin(std::process::Stdio::null()))
}

fn start(dir: &Path, token: &Token, policy: &str) -> Daemon {
    start_with(Daemon::builder(), dir, token, policy)
}

fn start_with(builder: DaemonBuilder, dir: &Path, token: &Token, policy: &str) -> Daemon {
    builder
        .policy(policy)
        .env("SOFTHSM2_CONF", token.conf.to_str().unwrap())
        .env("HOPWARD_PROVIDER_TIMEOUT", "3s")
        .env(
            "HOPWARD_KNOWN_HOSTS",
            dir.join("known_hosts").to_str().unwrap(),
        )
        .start()
}

const CONFIRM_TOKEN: &str = r#"
[defaults]
local = "allow"
forwarded = "allow"
forwarded_unverified = "deny"

[confirm]
method = "command"
command = ["CONFIRM"]
timeout = "10s"

[[rule]]
name = "token keys ask"
keys = ["token-*"]
action = "confirm"
"#;

#[test]
fn token_keys_log_in_and_sign_direct_and_forwarded_under_a_confirm_rule() {
    let tmp = tempdir();
    let token = token(tmp.path());
    let hosts = Hosts::start(tmp.path(), &["bastion", "target"]);
    let confirm = confirm_command(tmp.path());
    let agent = start(
        tmp.path(),
        &token,
        &CONFIRM_TOKEN.replace("CONFIRM", confirm.to_str().unwrap()),
    );
    ok(ssh_add_pin(&agent, tmp.path(), PIN, &["-s", SOFTHSM]));
    let listed = stdout(&ok(agent.ssh_add(&["-l"])));
    assert!(
        listed.contains("token-rsa (RSA)") && listed.contains("token-ec (ECDSA)"),
        "{listed}"
    );
    let status = stdout(&ok(run(Command::new(HOPWARD)
        .args(["status", "-a"])
        .arg(&agent.sock))));
    let real = std::fs::canonicalize(SOFTHSM).unwrap();
    assert!(
        status.contains(&format!("on a token via {}", real.display())),
        "{status}"
    );
    for key in &token.keys {
        hosts.authorize(key);
        let direct = hosts.ssh(
            &agent.sock,
            &[
                "-i",
                key.to_str().unwrap(),
                "-o",
                "IdentitiesOnly=yes",
                "target",
                "echo",
                "reached-direct",
            ],
        );
        assert!(
            stdout(&direct).contains("reached-direct"),
            "{}",
            text(&direct)
        );
        let inner = hosts.inner_ssh("target echo reached-forwarded");
        let forwarded = hosts.ssh(&agent.sock, &["-A", "bastion", &inner]);
        assert!(
            stdout(&forwarded).contains("reached-forwarded"),
            "{}",
            text(&forwarded)
        );
        // SSHSIG with the token key.
        let message = tmp.path().join("message");
        std::fs::write(&message, "signed on a token\n").unwrap();
        let _ = std::fs::remove_file(tmp.path().join("message.sig"));
        ok(run(Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", "file", "-f"])
            .arg(key)
            .arg(&message)
            .env("SSH_AUTH_SOCK", &agent.sock)));
        let allowed = tmp.path().join("allowed_signers");
        std::fs::write(
            &allowed,
            format!("signer {}", std::fs::read_to_string(key).unwrap()),
        )
        .unwrap();
        let verified = ok(run(Command::new("ssh-keygen")
            .args(["-Y", "verify", "-n", "file", "-I", "signer", "-f"])
            .arg(&allowed)
            .arg("-s")
            .arg(tmp.path().join("message.sig"))
            .stdin(std::fs::File::open(&message).unwrap())));
        assert!(text(&verified).contains("Good \"file\" signature"));
        // And on the bastion, through the forwarded agent.
        std::fs::remove_file(tmp.path().join("message.sig")).unwrap();
        let remote = format!(
            "ssh-keygen -Y sign -n git -f {} {}",
            key.display(),
            message.display()
        );
        let signed = hosts.ssh(&agent.sock, &["-A", "bastion", &remote]);
        assert!(signed.status.success(), "{}", text(&signed));
        ok(run(Command::new("ssh-keygen")
            .args(["-Y", "verify", "-n", "git", "-I", "signer", "-f"])
            .arg(&allowed)
            .arg("-s")
            .arg(tmp.path().join("message.sig"))
            .stdin(std::fs::File::open(&message).unwrap())));
    }
    let prompts = confirm_prompts(tmp.path());
    assert!(
        prompts
            .iter()
            .any(|p| p.contains("HOPWARD_FORWARDED=1") && p.contains("HOPWARD_KEY_COMMENT=token-")),
        "{prompts:?}"
    );
    assert!(
        prompts
            .iter()
            .any(|p| p.contains("HOPWARD_PURPOSE=git") && p.contains("HOPWARD_FORWARDED=1")),
        "{prompts:?}"
    );
    assert!(prompts.iter().all(|p| p.contains("HOPWARD_TOUCH=0")));
    let audit = agent.audit_until(|l| l.iter().filter(|x| x["event"] == "sign").count() >= 8);
    let signs: Vec<_> = audit.iter().filter(|l| l["event"] == "sign").collect();
    assert!(signs.len() >= 8, "{audit:?}");
    for line in signs {
        assert_eq!(line["provider"], real.to_str().unwrap(), "{line}");
    }
    // Through a forwarded agent no provider may be loaded (OpenSSH 9.4+),
    // whatever the PIN. A software key logs in to the bastion meanwhile.
    ok(agent.ssh_add(&["-e", SOFTHSM]));
    let login = keygen(tmp.path(), "login", "ed25519", None);
    hosts.authorize(&login.with_extension("pub"));
    ok(agent.ssh_add(&[login.to_str().unwrap()]));
    agent.wait_audit("the login key's add", |x| {
        x["event"] == "add" && x["comment"] == "login"
    });
    let adds_before = agent
        .audit(0)
        .iter()
        .filter(|x| x["event"] == "add")
        .count();
    let remote = format!(
        "SSH_ASKPASS={} SSH_ASKPASS_REQUIRE=force DISPLAY=:0 ssh-add -s {SOFTHSM} </dev/null",
        pin_program(tmp.path(), PIN).display()
    );
    let out = hosts.ssh(&agent.sock, &["-A", "bastion", &remote]);
    assert!(!out.status.success(), "{}", text(&out));
    // The log says why, in words (behaviour of its own).
    assert!(
        agent
            .log_text()
            .contains("refused PKCS#11 add: remote addition of providers is disabled"),
        "{}\n{}",
        text(&out),
        agent.log_text()
    );
    assert!(!stdout(&agent.ssh_add(&["-l"])).contains("token-"));
    ok(ssh_add_pin(&agent, tmp.path(), PIN, &["-s", SOFTHSM]));
    // Refused before the policy is asked (which would allow it): the
    // forwarded add is audited as refused for its provider, and the local
    // add after it is the only other one.
    let audit =
        agent.audit_until(|l| l.iter().filter(|x| x["event"] == "add").count() > adds_before + 1);
    let adds: Vec<_> = audit.iter().filter(|x| x["event"] == "add").collect();
    assert_eq!(adds.len(), adds_before + 2, "{adds:#?}");
    let remote: Vec<_> = adds.iter().filter(|x| x["class"] != "local").collect();
    assert_eq!(remote.len(), 1, "{adds:#?}");
    assert_eq!(remote[0]["decision"], "deny", "{:#}", remote[0]);
    assert_eq!(remote[0]["reason"], "provider-remote", "{:#}", remote[0]);
    assert_eq!(remote[0]["provider"], SOFTHSM, "{:#}", remote[0]);

    // ssh-add -e drops every key of the token.
    ok(agent.ssh_add(&["-e", SOFTHSM]));
    assert!(!stdout(&agent.ssh_add(&["-l"])).contains("token-"));
    assert!(!agent.log_text().contains(PIN));
}

#[test]
fn a_wrong_pin_adds_nothing_and_is_never_logged() {
    let tmp = tempdir();
    let token = token(tmp.path());
    let agent = start(tmp.path(), &token, ALLOW_ALL);
    let wrong = "604417293";
    record_pin(wrong);
    let refused = ssh_add_pin(&agent, tmp.path(), wrong, &["-s", SOFTHSM]);
    assert!(!refused.status.success(), "{}", text(&refused));
    // The log names the wrong PIN as the cause (behaviour of its own) and
    // never holds the PIN.
    let log = agent.log_text();
    assert!(log.contains("incorrect PIN"), "{log}");
    assert!(!log.contains(wrong) && !log.contains(PIN));
    assert!(!stdout(&agent.ssh_add(&["-l"])).contains("token-"));
    // The right PIN afterwards works: nothing was left half loaded.
    ok(ssh_add_pin(&agent, tmp.path(), PIN, &["-s", SOFTHSM]));
    ok(agent.ssh_add(&["-T", token.keys[0].to_str().unwrap()]));
}

fn signal(pid: u32, name: &str) {
    ok(run(Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())));
}

#[test]
fn a_crashed_hung_or_emptied_token_fails_signatures_and_the_agent_stays_up() {
    let tmp = tempdir();
    let token = token(tmp.path());
    // With debug lines, which say when a request reaches the token.
    let mut agent = start_with(Daemon::builder().debug(), tmp.path(), &token, ALLOW_ALL);
    let software = keygen(tmp.path(), "software", "ed25519", None);
    ok(agent.ssh_add(&[software.to_str().unwrap()]));
    let rsa = token.keys[0].to_str().unwrap().to_string();
    // (decision, reason) of each sign record with the token's key.
    let token_signs = |agent: &Daemon, n: usize| {
        agent.outcomes(n, |l| l["event"] == "sign" && !l["provider"].is_null())
    };
    let asked = |agent: &Daemon| {
        agent
            .log_text()
            .matches("asking the PKCS#11 token to sign")
            .count()
    };
    // Stops the token's helper and starts `ssh-add -T` with the token's
    // key; returns the helper and the client once the agent has asked the
    // helper (and so decided on the request).
    let stuck_signature = |agent: &Daemon, what: &str| {
        let helpers = children_with(agent.pid(), "__pkcs11-helper");
        assert_eq!(helpers.len(), 1, "{helpers:?}");
        signal(helpers[0], "STOP");
        let before = asked(agent);
        let client = agent
            .ssh_add_cmd()
            .args(["-T", &rsa])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        wait_until(what, Duration::from_secs(10), || asked(agent) > before);
        (helpers[0], client)
    };

    // A helper that hangs: the signature fails at the deadline, others are
    // served meanwhile, the helper is killed.
    ok(ssh_add_pin(&agent, tmp.path(), PIN, &["-s", SOFTHSM]));
    ok(agent.ssh_add(&["-T", &rsa]));
    let started = Instant::now();
    // The agent has allowed the hung request and is now waiting for the
    // helper; its audit record waits for the token's answer.
    let (_, mut hung) = stuck_signature(&agent, "the hung request to reach the token");
    let other = Instant::now();
    ok(agent.ssh_add(&["-T", &format!("{}.pub", software.display())]));
    assert!(
        other.elapsed() < Duration::from_secs(2),
        "a software key waited for the token"
    );
    let status = wait_for(
        "the hung token to be given up",
        Duration::from_secs(20).saturating_sub(started.elapsed()),
        || hung.try_wait().unwrap(),
    );
    assert!(!status.success());
    // The first signature was allowed and made; the hung one is recorded
    // as allowed by the policy and then failed by the token. Why it failed
    // is in the log.
    assert_eq!(
        token_signs(&agent, 2),
        [
            ("allow".to_string(), "default:local".to_string()),
            ("deny".to_string(), "provider-failed".to_string())
        ]
    );
    assert!(
        agent.log_text().contains("did not answer within 3s"),
        "{}",
        agent.log_text()
    );
    wait_until(
        "the hung helper to be killed",
        Duration::from_secs(5),
        || children_with(agent.pid(), "__pkcs11-helper").is_empty(),
    );
    // Its keys now fail at once; -e and -s bring the token back.
    assert!(!agent.ssh_add(&["-T", &rsa]).status.success());
    ok(agent.ssh_add(&["-e", SOFTHSM]));
    ok(ssh_add_pin(&agent, tmp.path(), PIN, &["-s", SOFTHSM]));
    ok(agent.ssh_add(&["-T", &rsa]));

    // A client that hangs up while the token works: the exchange with the
    // helper still runs to its end, so the next signature gets its own
    // reply, not the abandoned one's.
    let (helper, mut gone) = stuck_signature(&agent, "the abandoned request to reach the token");
    gone.kill().unwrap();
    let _ = gone.wait();
    // Its record is written once the connection has gone.
    token_signs(&agent, 5);
    signal(helper, "CONT");
    ok(agent.ssh_add(&["-T", &rsa]));
    assert_eq!(
        children_with(agent.pid(), "__pkcs11-helper"),
        [helper],
        "the same helper serves on"
    );

    // `ssh-add -e` while a signature waits on the token: the helper ends
    // at once, not at the deadline, and the waiting signature fails.
    let deadlines = |agent: &Daemon| agent.log_text().matches("did not answer within").count();
    let (_, mut waiting) = stuck_signature(&agent, "the request to reach the token before -e");
    let deadlines_before = deadlines(&agent);
    ok(agent.ssh_add(&["-e", SOFTHSM]));
    assert!(!waiting.wait().unwrap().success());
    assert_eq!(
        deadlines(&agent),
        deadlines_before,
        "-e waited for the token's deadline:\n{}",
        agent.log_text()
    );
    ok(ssh_add_pin(&agent, tmp.path(), PIN, &["-s", SOFTHSM]));

    // A helper that crashes.
    let helpers = children_with(agent.pid(), "__pkcs11-helper");
    signal(helpers[0], "KILL");
    let failed = agent.ssh_add(&["-T", &rsa]);
    assert!(!failed.status.success());
    assert!(
        agent
            .log_text()
            .contains("PKCS#11 signature failed: the PKCS#11 helper is gone")
    );
    // Made, hung, failed at once, made after -e and -s, abandoned, made,
    // ended by -e, crashed.
    let allowed = ("allow".to_string(), "default:local".to_string());
    let failed = ("deny".to_string(), "provider-failed".to_string());
    assert_eq!(
        token_signs(&agent, 8),
        [
            allowed.clone(),
            failed.clone(),
            failed.clone(),
            allowed.clone(),
            ("deny".to_string(), "abandoned-after-allow".to_string()),
            allowed,
            failed.clone(),
            failed
        ]
    );
    assert!(agent.alive());
    ok(agent.ssh_add(&["-T", &format!("{}.pub", software.display())]));

    // The token taken away under a loaded provider.
    ok(agent.ssh_add(&["-e", SOFTHSM]));
    ok(ssh_add_pin(&agent, tmp.path(), PIN, &["-s", SOFTHSM]));
    std::fs::remove_dir_all(&token.dir).unwrap();
    let gone = agent.ssh_add(&["-T", &token.keys[1].to_string_lossy()]);
    let log = agent.log_text();
    assert!(agent.alive());
    ok(agent.ssh_add(&["-T", &format!("{}.pub", software.display())]));
    // SoftHSM notices its objects are gone: a clean failure, logged.
    assert!(!gone.status.success(), "{}", text(&gone));
    assert!(
        log.contains("PKCS#11 signature failed: PKCS#11 provider: C_Sign"),
        "{log}"
    );
}

#[test]
fn with_allow_remote_pkcs11_the_forwarded_add_rule_decides() {
    let tmp = tempdir();
    let token = token(tmp.path());
    let hosts = Hosts::start(tmp.path(), &["bastion"]);
    let login = keygen(tmp.path(), "login", "ed25519", None);
    hosts.authorize(&login.with_extension("pub"));
    let remote = format!(
        "SSH_ASKPASS={} SSH_ASKPASS_REQUIRE=force DISPLAY=:0 ssh-add -s {SOFTHSM} </dev/null",
        pin_program(tmp.path(), PIN).display()
    );
    for (rule, loads) in [("deny", false), ("allow", true)] {
        let policy = format!("{ALLOW_ALL}\n[forwarded]\nadd = \"{rule}\"\n");
        let agent = hosts
            .daemon()
            .policy(&policy)
            .arg("-Oallow-remote-pkcs11")
            .env("SOFTHSM2_CONF", token.conf.to_str().unwrap())
            .start();
        ok(agent.ssh_add(&[login.to_str().unwrap()]));
        let out = hosts.ssh(&agent.sock, &["-A", "bastion", &remote]);
        assert_eq!(out.status.success(), loads, "{rule}: {}", text(&out));
        let listed = stdout(&agent.ssh_add(&["-l"]));
        assert_eq!(listed.contains("token-rsa"), loads, "{rule}: {listed}");
        let audit = agent.audit_until(|l| {
            l.iter()
                .any(|x| x["event"] == "add" && x["class"] != "local")
        });
        let add = audit
            .iter()
            .find(|l| l["event"] == "add" && l["class"] != "local")
            .unwrap_or_else(|| panic!("{rule}: no forwarded add audited: {audit:?}"));
        assert_eq!(add["decision"], rule, "{add}");
        let real = std::fs::canonicalize(SOFTHSM).unwrap();
        assert_eq!(add["provider"], real.to_str().unwrap(), "{add}");
    }
}
