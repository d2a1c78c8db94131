//! FIDO security keys held by hopward and signed through OpenSSH's test
//! token (Debian's `openssh-tests` sk-dummy.so): logins and SSHSIG
//! signatures direct and through a forwarded agent under a confirm rule,
//! the provider allow-list, and providers that crash, hang, lie or find no
//! token.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::sshd::Hosts;
use common::*;

const SK_DUMMY: &str = "/usr/lib/openssh/regress/misc/sk-dummy/sk-dummy.so";

fn sk_dummy() -> &'static str {
    assert!(
        Path::new(SK_DUMMY).exists(),
        "{SK_DUMMY} is missing: scripts/test.sh installs openssh-tests"
    );
    SK_DUMMY
}

/// A FIDO key made on the test token.
fn sk_keygen(dir: &Path, name: &str, kind: &str) -> PathBuf {
    let path = dir.join(name);
    ok(run(Command::new("ssh-keygen")
        .args([
            "-q",
            "-t",
            kind,
            "-w",
            sk_dummy(),
            "-N",
            "",
            "-C",
            name,
            "-f",
        ])
        .arg(&path)));
    path
}

/// `ssh-add KEY` naming `provider` (as SSH_SK_PROVIDER does).
fn add_with(agent: &Daemon, key: &Path, provider: &str) -> Output {
    run(agent
        .ssh_add_cmd()
        .env("SSH_SK_PROVIDER", provider)
        .arg(key))
}

/// `ssh-add -T KEY.pub`: the agent signs a challenge and ssh-add verifies it.
fn test_sign(agent: &Daemon, key: &Path) -> Output {
    run(agent.ssh_add_cmd().arg("-T").arg(key.with_extension("pub")))
}

const CONFIRM_FIDO: &str = r#"
[defaults]
local = "allow"
forwarded = "allow"
forwarded_unverified = "deny"

[confirm]
method = "command"
command = ["CONFIRM"]
timeout = "10s"

[[rule]]
name = "fido keys ask"
keys = ["fido-*"]
action = "confirm"
"#;

#[test]
fn sk_keys_log_in_direct_and_forwarded_under_a_confirm_rule() {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target"]);
    let confirm = confirm_command(tmp.path());
    let agent = hosts
        .daemon()
        .policy(&CONFIRM_FIDO.replace("CONFIRM", confirm.to_str().unwrap()))
        .start();
    for kind in ["ed25519-sk", "ecdsa-sk"] {
        let key = sk_keygen(tmp.path(), &format!("fido-{kind}"), kind);
        hosts.authorize(&key.with_extension("pub"));
        ok(agent.ssh_add(&["-D"]));
        ok(add_with(&agent, &key, SK_DUMMY));
        let asked_before = confirm_prompts(tmp.path()).len();

        let direct = hosts.ssh(&agent.sock, &["target", "echo", "reached-direct"]);
        assert!(
            stdout(&direct).contains("reached-direct"),
            "{kind}: {}",
            text(&direct)
        );
        let inner = hosts.inner_ssh("target echo reached-forwarded");
        let forwarded = hosts.ssh(&agent.sock, &["-A", "bastion", &inner]);
        assert!(
            stdout(&forwarded).contains("reached-forwarded"),
            "{kind}: {}",
            text(&forwarded)
        );
        let prompts = confirm_prompts(tmp.path());
        let new = &prompts[asked_before..];
        assert!(new.len() >= 2, "{kind}: not asked for both logins: {new:?}");
        for prompt in new {
            assert!(prompt.contains("HOPWARD_TOUCH=1"), "{prompt}");
            assert!(prompt.contains("touch the token"), "{prompt}");
        }
        assert!(
            new.iter()
                .any(|p| p.contains("HOPWARD_FORWARDED=1")
                    && p.contains("HOPWARD_CHAIN=bastion>target")),
            "{kind}: the forwarded login was not asked as one: {new:?}"
        );
    }
    let audit = agent.audit_until(|lines| {
        lines
            .iter()
            .filter(|l| l["event"] == "sign" && l["decision"] == "allow")
            .count()
            >= 4
    });
    let signs: Vec<_> = audit.iter().filter(|l| l["event"] == "sign").collect();
    assert!(signs.len() >= 4, "{audit:?}");
    for line in &signs {
        assert_eq!(line["provider"], SK_DUMMY, "{line}");
        assert_eq!(line["reason"], "confirmed", "{line}");
    }
    assert!(
        audit
            .iter()
            .any(|l| l["event"] == "add" && l["provider"] == SK_DUMMY),
        "{audit:?}"
    );

    // A "no" at the prompt: the token is never asked, the login fails.
    std::fs::write(tmp.path().join("answer"), "no").unwrap();
    let refused = hosts.ssh(
        &agent.sock,
        &["-o", "BatchMode=yes", "target", "echo", "reached-refused"],
    );
    assert!(
        !stdout(&refused).contains("reached-refused"),
        "{}",
        text(&refused)
    );
    // The audit records the refusal, and no signature was allowed after the
    // ones above: the token was never asked.
    let allowed = |audit: &[serde_json::Value]| {
        audit
            .iter()
            .filter(|l| l["event"] == "sign" && l["decision"] == "allow")
            .count()
    };
    let refusal = agent.wait_audit("the refused login", |l| {
        l["event"] == "sign" && l["decision"] == "deny" && l["reason"] == "refused"
    });
    assert_eq!(refusal["comment"], "fido-ecdsa-sk", "{refusal}");
    assert_eq!(allowed(&agent.audit(0)), allowed(&audit), "{audit:?}");
}

#[test]
fn sshsig_signatures_with_sk_keys_direct_and_forwarded() {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion"]);
    let confirm = confirm_command(tmp.path());
    let agent = hosts
        .daemon()
        .policy(&CONFIRM_FIDO.replace("CONFIRM", confirm.to_str().unwrap()))
        .start();
    let key = sk_keygen(tmp.path(), "fido-sign", "ed25519-sk");
    hosts.authorize(&key.with_extension("pub"));
    ok(add_with(&agent, &key, SK_DUMMY));
    let message = tmp.path().join("message");
    std::fs::write(&message, "signed by a token\n").unwrap();
    let allowed = tmp.path().join("allowed_signers");
    std::fs::write(
        &allowed,
        format!(
            "signer {}",
            std::fs::read_to_string(key.with_extension("pub")).unwrap()
        ),
    )
    .unwrap();
    let pubkey = key.with_extension("pub");
    let verify = |namespace: &str| {
        let sig = tmp.path().join("message.sig");
        let out = run(Command::new("ssh-keygen")
            .args(["-Y", "verify", "-n", namespace, "-I", "signer", "-f"])
            .arg(&allowed)
            .arg("-s")
            .arg(&sig)
            .stdin(std::fs::File::open(&message).unwrap()));
        std::fs::remove_file(&sig).unwrap();
        out
    };

    ok(run(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(&pubkey)
        .arg(&message)
        .env("SSH_AUTH_SOCK", &agent.sock)));
    let good = ok(verify("file"));
    assert!(
        text(&good).contains("Good \"file\" signature"),
        "{}",
        text(&good)
    );

    // On the bastion, through the forwarded agent.
    let remote = format!(
        "ssh-keygen -Y sign -n git -f {} {}",
        pubkey.display(),
        message.display()
    );
    let forwarded = hosts.ssh(&agent.sock, &["-A", "bastion", &remote]);
    assert!(forwarded.status.success(), "{}", text(&forwarded));
    ok(verify("git"));
    let prompts = confirm_prompts(tmp.path());
    assert!(
        prompts
            .iter()
            .any(|p| p.contains("HOPWARD_PURPOSE=git") && p.contains("HOPWARD_FORWARDED=1")),
        "{prompts:?}"
    );
}

/// A provider built for one failure (`MODE`): 1 crashes in `sk_sign`, 2
/// hangs, 3 returns a signature that does not verify, 4 finds no token
/// (as after the token was pulled out), 5 speaks another sk-api version, 6
/// wants the PIN 58203917 (and then finds no token, which tells the test
/// the PIN arrived).
fn faulty_provider(dir: &Path, mode: u32) -> PathBuf {
    let source = dir.join("faulty.c");
    std::fs::write(
        &source,
        r#"
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
struct sk_sign_response { uint8_t flags; uint32_t counter; uint8_t *sig_r;
    size_t sig_r_len; uint8_t *sig_s; size_t sig_s_len; };
uint32_t sk_api_version(void) { return MODE == 5 ? 0x00090000 : 0x000a0000; }
int sk_enroll(uint32_t a, const uint8_t *c, size_t cl, const char *app,
    uint8_t f, const char *pin, void **o, void **r) { return -2; }
int sk_load_resident_keys(const char *pin, void **o, void ***r, size_t *n)
    { return -2; }
int sk_sign(uint32_t alg, const uint8_t *data, size_t data_len,
    const char *application, const uint8_t *kh, size_t kh_len, uint8_t flags,
    const char *pin, void **options, struct sk_sign_response **out) {
    struct sk_sign_response *r;
    switch (MODE) {
    case 1: *(volatile int *)0 = 1; return -1;
    case 2: for (;;) pause();
    case 3:
        r = calloc(1, sizeof *r); r->flags = 1; r->counter = 7;
        r->sig_r = calloc(1, 64); r->sig_r_len = 64; r->sig_r[0] = 1;
        *out = r; return 0;
    case 4: return -4;
    case 6:
        if (pin == NULL) return -3;
        return strcmp(pin, "58203917") == 0 ? -4 : -1;
    }
    return -1;
}
"#,
    )
    .unwrap();
    let lib = dir.join(format!("faulty-{mode}.so"));
    ok(run(Command::new("cc")
        .args(["-shared", "-fPIC", "-o"])
        .arg(&lib)
        .arg(format!("-DMODE={mode}"))
        .arg(&source)));
    lib
}

#[test]
fn crashing_hanging_lying_and_absent_providers_fail_the_signature_only() {
    let tmp = tempdir();
    let agent = Daemon::builder()
        .policy(ALLOW_ALL)
        .arg("-P/*")
        .env("HOPWARD_PROVIDER_TIMEOUT", "3s")
        .start();
    // One key, enrolled on the test token; every faulty provider is handed
    // the same key handle.
    let key = sk_keygen(tmp.path(), "fido-faults", "ed25519-sk");
    let good = sk_keygen(tmp.path(), "fido-good", "ecdsa-sk");
    ok(add_with(&agent, &good, SK_DUMMY));
    let cases = [
        (1, "died without an answer"),
        (3, "does not verify"),
        (4, "no token found"),
        (5, "sk-api version"),
    ];
    for (mode, expected) in cases {
        let lib = faulty_provider(tmp.path(), mode);
        ok(add_with(&agent, &key, lib.to_str().unwrap()));
        let signed = test_sign(&agent, &key);
        assert!(!signed.status.success(), "mode {mode}: {}", text(&signed));
        // A clear log line for each fault is the behaviour under test, and
        // the audit records the allowed request as failed by the token.
        let log = agent.log_text();
        assert!(
            log.contains("security key signature failed") && log.contains(expected),
            "mode {mode}: no clear log line for {expected:?}:\n{log}"
        );
        // The agent is up and the good key still signs.
        ok(test_sign(&agent, &good));
    }

    // (decision, reason) of each sign record with the faulty key.
    let fault_signs =
        |n: usize| agent.outcomes(n, |l| l["event"] == "sign" && l["comment"] == "fido-faults");
    let failed = ("deny".to_string(), "token-failed".to_string());
    assert_eq!(fault_signs(cases.len()), vec![failed.clone(); cases.len()]);

    // A provider that hangs: other connections are served meanwhile, the
    // signature fails at the deadline and the helper is killed.
    let lib = faulty_provider(tmp.path(), 2);
    ok(add_with(&agent, &key, lib.to_str().unwrap()));
    let started = Instant::now();
    let mut hanging = agent
        .ssh_add_cmd()
        .arg("-T")
        .arg(key.with_extension("pub"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until(
        "the helper of the hanging signature to run",
        Duration::from_secs(10),
        || children_with(agent.pid(), "__provider-helper").len() == 1,
    );
    let listed = Instant::now();
    let list = ok(agent.ssh_add(&["-l"]));
    assert!(stdout(&list).contains("fido-faults"));
    ok(test_sign(&agent, &good));
    assert!(
        listed.elapsed() < Duration::from_secs(2),
        "another connection waited for the hanging provider"
    );
    let status = wait_for(
        "the hanging signature to be given up",
        Duration::from_secs(20).saturating_sub(started.elapsed()),
        || hanging.try_wait().unwrap(),
    );
    assert!(!status.success());
    assert!(started.elapsed() >= Duration::from_secs(3));
    // The log names the deadline; the audit has the failed signature.
    assert!(agent.log_text().contains("did not answer within 3s"));
    assert_eq!(
        fault_signs(cases.len() + 1),
        vec![failed.clone(); cases.len() + 1]
    );
    wait_until(
        "the hung helper to be killed",
        Duration::from_secs(5),
        || children_with(agent.pid(), "__provider-helper").is_empty(),
    );
    let mut agent = agent;
    assert!(agent.alive());

    // An agent killed outright takes a hung helper with it.
    let mut hanging = agent
        .ssh_add_cmd()
        .arg("-T")
        .arg(key.with_extension("pub"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let helpers = wait_for(
        "the helper of the hanging signature to run",
        Duration::from_secs(10),
        || Some(children_with(agent.pid(), "__provider-helper")).filter(|h| h.len() == 1),
    );
    agent.child.kill().unwrap();
    agent.child.wait().unwrap();
    wait_until(
        "the helper to die with the agent",
        Duration::from_secs(5),
        || !running(helpers[0]),
    );
    let _ = hanging.wait();
}

#[test]
fn providers_outside_the_allow_list_or_named_remotely_are_refused() {
    let tmp = tempdir();
    // ssh-agent's default -P list: /usr/lib*/* and /usr/local/lib*/*.
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let key = sk_keygen(tmp.path(), "fido-allow", "ed25519-sk");
    let copy = tmp.path().join("copy-of-sk-dummy.so");
    std::fs::copy(sk_dummy(), &copy).unwrap();
    let refused = add_with(&agent, &key, copy.to_str().unwrap());
    assert!(!refused.status.success(), "{}", text(&refused));
    // The audit records the refused add with the check and the provider;
    // the log line names the allow-list.
    let audit = agent.wait_audit("the refused add", |l| {
        l["event"] == "add" && l["decision"] == "deny"
    });
    assert_eq!(audit["reason"], "provider-not-allowed", "{audit}");
    assert_eq!(audit["comment"], "fido-allow", "{audit}");
    assert!(
        audit["provider"]
            .as_str()
            .is_some_and(|p| p.ends_with("copy-of-sk-dummy.so")),
        "{audit}"
    );
    assert!(
        agent
            .log_text()
            .contains("is not allowed by the -P allow-list"),
        "{}",
        agent.log_text()
    );
    assert!(!stdout(&agent.ssh_add(&["-l"])).contains("fido-allow"));
    // A symlink into an allowed place is judged by where it points.
    let link = tmp.path().join("link.so");
    std::os::unix::fs::symlink(sk_dummy(), &link).unwrap();
    ok(add_with(&agent, &key, link.to_str().unwrap()));
    ok(test_sign(&agent, &key));

    // Through a forwarded agent no provider may be named (OpenSSH 9.4+).
    let hosts = Hosts::start(tmp.path(), &["bastion"]);
    let login = keygen(tmp.path(), "login", "ed25519", None);
    hosts.authorize(&login.with_extension("pub"));
    ok(agent.ssh_add(&[login.to_str().unwrap()]));
    let remote = format!(
        "SSH_SK_PROVIDER={SK_DUMMY} ssh-add {}",
        tmp.path().join("fido-allow").display()
    );
    ok(agent.ssh_add(&["-d", key.with_extension("pub").to_str().unwrap()]));
    let out = hosts.ssh(&agent.sock, &["-A", "bastion", &remote]);
    assert!(!out.status.success(), "{}", text(&out));
    // Refused before the policy decides, and audited with the forwarding
    // hop in the chain; the log line names the reason.
    let audit = agent.wait_audit("the remote add", |l| {
        l["event"] == "add" && l["reason"] == "provider-remote"
    });
    assert_eq!(audit["decision"], "deny", "{audit}");
    assert_eq!(audit["provider"], SK_DUMMY, "{audit}");
    assert_eq!(audit["class"], "forwarded", "{audit}");
    assert_eq!(audit["chain"][0]["forwarded"], true, "{audit}");
    assert!(
        agent
            .log_text()
            .contains("remote addition of providers is disabled"),
        "{}",
        agent.log_text()
    );
    assert!(!stdout(&agent.ssh_add(&["-l"])).contains("fido-allow"));
}

#[test]
fn a_token_that_wants_a_pin_gets_it_from_askpass_and_never_in_a_log() {
    let tmp = tempdir();
    let pin = "58203917";
    record_pin(pin);
    let askpass = tmp.path().join("pin.sh");
    std::fs::write(
        &askpass,
        format!(
            "#!/bin/sh\necho \"$1\" >> {}/asked\necho {pin}\n",
            tmp.path().display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &askpass,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let agent = Daemon::builder()
        .policy(ALLOW_ALL)
        .arg("-P/*")
        .env("SSH_ASKPASS", askpass.to_str().unwrap())
        .env("SSH_ASKPASS_REQUIRE", "force")
        .start();
    let key = sk_keygen(tmp.path(), "fido-pin", "ed25519-sk");
    let lib = faulty_provider(tmp.path(), 6);
    ok(add_with(&agent, &key, lib.to_str().unwrap()));
    assert!(!test_sign(&agent, &key).status.success());
    let asked = std::fs::read_to_string(tmp.path().join("asked")).unwrap_or_default();
    assert!(
        asked.starts_with(
            "Enter PIN and confirm user presence for sk-ssh-ed25519@openssh.com key SHA256:"
        ),
        "{asked:?}"
    );
    // The log names the provider's answer (behaviour of its own) and never
    // holds the PIN.
    let log = agent.log_text();
    // The provider saw the PIN: it answered "no token", not "PIN required".
    assert!(log.contains("no token found by the provider"), "{log}");
    assert!(!log.contains(pin));
}

/// The built-in provider (libfido2). No FIDO token is plugged into the test
/// machines, so this shows the library is loaded and asked, and that no
/// token gives a clean failure; signing on a real token is not tested here.
#[test]
fn the_internal_provider_asks_libfido2_and_fails_cleanly_without_a_token() {
    assert!(
        Path::new("/usr/lib/x86_64-linux-gnu/libfido2.so.1").exists(),
        "libfido2 is missing: scripts/test.sh installs libfido2-1"
    );
    let hidraw = std::fs::read_dir("/dev")
        .unwrap()
        .filter_map(|e| e.ok())
        .any(|e| e.file_name().to_string_lossy().starts_with("hidraw"));
    assert!(
        !hidraw,
        "a HID device is present: this test expects no token"
    );
    let tmp = tempdir();
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let key = sk_keygen(tmp.path(), "fido-internal", "ed25519-sk");
    ok(add_with(&agent, &key, "internal"));
    let added = agent.wait_audit("the add", |l| l["event"] == "add");
    assert_eq!(added["provider"], "internal", "{added}");
    let started = Instant::now();
    assert!(!test_sign(&agent, &key).status.success());
    assert!(started.elapsed() < Duration::from_secs(10));
    let signed = agent.wait_audit("the signature request", |l| l["event"] == "sign");
    assert_eq!(signed["provider"], "internal", "{signed}");
    assert_eq!(signed["decision"], "deny", "{signed}");
    assert_eq!(signed["reason"], "token-failed", "{signed}");
    // Why the allowed request still failed is in the log: a clean, named
    // failure is the behaviour under test.
    let log = agent.log_text();
    assert!(
        log.contains("security key signature failed: no token found by the provider")
            && log.contains("provider=internal"),
        "{log}"
    );
    let mut agent = agent;
    assert!(agent.alive());
}

/// The private key file of a FIDO key made on the test token, with its
/// application set to `application` (ssh-keygen only makes `ssh:` ones;
/// the test token signs for any). Returns the key's public blob.
fn with_application(key: &Path, application: &str, out: &Path) -> Vec<u8> {
    use base64::Engine as _;
    struct R<'a>(&'a [u8]);
    impl<'a> R<'a> {
        fn take(&mut self, n: usize) -> &'a [u8] {
            let (a, b) = self.0.split_at(n);
            self.0 = b;
            a
        }
        fn string(&mut self) -> &'a [u8] {
            let n = u32::from_be_bytes(self.take(4).try_into().unwrap()) as usize;
            self.take(n)
        }
    }
    let armored = std::fs::read_to_string(key).unwrap();
    let body: String = armored
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    let file = base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap();
    let mut r = R(&file);
    let magic = r.take(15).to_vec();
    let (cipher, kdf, kdf_options) = (r.string(), r.string(), r.string());
    assert_eq!((cipher, kdf), (&b"none"[..], &b"none"[..]));
    let count = r.take(4).to_vec();
    let mut public = R(r.string());
    let key_type = public.string().to_vec();
    assert_eq!(key_type, b"sk-ssh-ed25519@openssh.com");
    let pk = public.string().to_vec();
    let mut private = R(r.string());
    let checks = private.take(8).to_vec();
    private.string();
    private.string();
    private.string();
    let flags = private.take(1).to_vec();
    let (handle, reserved, comment) = (private.string(), private.string(), private.string());

    let mut public_blob = Vec::new();
    put_string(&mut public_blob, &key_type);
    put_string(&mut public_blob, &pk);
    put_string(&mut public_blob, application.as_bytes());
    let mut section = checks;
    put_string(&mut section, &key_type);
    put_string(&mut section, &pk);
    put_string(&mut section, application.as_bytes());
    section.extend_from_slice(&flags);
    put_string(&mut section, handle);
    put_string(&mut section, reserved);
    put_string(&mut section, comment);
    let mut pad = 1u8;
    while section.len() % 8 != 0 {
        section.push(pad);
        pad += 1;
    }
    let mut file = magic;
    put_string(&mut file, cipher);
    put_string(&mut file, kdf);
    put_string(&mut file, kdf_options);
    file.extend_from_slice(&count);
    put_string(&mut file, &public_blob);
    put_string(&mut file, &section);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&file);
    let mut armored = String::from("-----BEGIN OPENSSH PRIVATE KEY-----\n");
    for line in encoded.as_bytes().chunks(70) {
        armored.push_str(std::str::from_utf8(line).unwrap());
        armored.push('\n');
    }
    armored.push_str("-----END OPENSSH PRIVATE KEY-----\n");
    std::fs::write(out, armored).unwrap();
    std::fs::set_permissions(out, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    public_blob
}

/// OpenSSH's agent default (`websafe-allow=ssh:*`): a FIDO key made for a
/// web application signs only what that agent reads as a userauth request
/// by the key (session id, `ssh-connection`, signature byte 1, the key's
/// own algorithm, a host key that is a key) or an SSHSIG signature; never a
/// web challenge, nor data made to look like a login. `-O websafe-allow`
/// naming the application lifts it. Failed before: a request for another
/// service, with signature byte 2, with another algorithm, or host-bound to
/// something that is no key was signed.
#[test]
fn a_fido_key_for_a_web_application_signs_only_ssh_data() {
    const SIGN_RESPONSE: u8 = 14;
    const FAILURE: u8 = 5;
    let tmp = tempdir();
    let made = sk_keygen(tmp.path(), "fido-web", "ed25519-sk");
    let web = tmp.path().join("fido-web-app");
    let blob = with_application(&made, "https://example.com", &web);
    let login = |service: &[u8], sig: u8, alg: &[u8], host_key: Option<&[u8]>| {
        let mut d = Vec::new();
        put_string(&mut d, &[7; 32]);
        d.push(50);
        put_string(&mut d, b"me");
        put_string(&mut d, service);
        let method: &[u8] = match host_key {
            Some(_) => b"publickey-hostbound-v00@openssh.com",
            None => b"publickey",
        };
        put_string(&mut d, method);
        d.push(sig);
        put_string(&mut d, alg);
        put_string(&mut d, &blob);
        if let Some(h) = host_key {
            put_string(&mut d, h);
        }
        d
    };
    let alg = b"sk-ssh-ed25519@openssh.com";
    let host = host_key_blob(2);
    let mut sshsig = b"SSHSIG".to_vec();
    for field in [&b"file"[..], b"", b"sha512", &[1; 64]] {
        put_string(&mut sshsig, field);
    }
    let mut trailing = login(b"ssh-connection", 1, alg, None);
    trailing.push(0);
    let cases: [(&str, Vec<u8>, u8); 8] = [
        (
            "login",
            login(b"ssh-connection", 1, alg, None),
            SIGN_RESPONSE,
        ),
        (
            "host-bound login",
            login(b"ssh-connection", 1, alg, Some(&host)),
            SIGN_RESPONSE,
        ),
        ("SSHSIG", sshsig, SIGN_RESPONSE),
        (
            "web challenge",
            b"{\"challenge\":\"c2lnbiBtZQ\"}".to_vec(),
            FAILURE,
        ),
        ("other service", login(b"webauthn", 1, alg, None), FAILURE),
        (
            "signature byte 2",
            login(b"ssh-connection", 2, alg, None),
            FAILURE,
        ),
        (
            "other algorithm",
            login(b"ssh-connection", 1, b"ssh-ed25519", None),
            FAILURE,
        ),
        (
            "host key no key",
            login(b"ssh-connection", 1, alg, Some(b"junk")),
            FAILURE,
        ),
    ];
    let policy = "[defaults]\nlocal = \"allow\"\n";
    let strict = Daemon::builder().policy(policy).start();
    ok(add_with(&strict, &web, SK_DUMMY));
    let mut unread = cases.to_vec();
    unread.push(("trailing data", trailing, FAILURE));
    for (what, data, expected) in &unread {
        let mut s = strict.connect();
        let reply = request(&mut s, &sign_request(&blob, data));
        assert_eq!(reply[0], *expected, "{what}");
    }
    // Named by -O websafe-allow, the application signs anything.
    let open = Daemon::builder()
        .policy(policy)
        .arg("-Owebsafe-allow=ssh:*,https://example.com")
        .start();
    ok(add_with(&open, &web, SK_DUMMY));
    for (what, data, _) in &unread {
        let mut s = open.connect();
        let reply = request(&mut s, &sign_request(&blob, data));
        assert_eq!(reply[0], SIGN_RESPONSE, "allowed: {what}");
    }
}
