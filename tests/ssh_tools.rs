//! hopward with the real OpenSSH tools: ssh-add and ssh-keygen -Y.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::process::Command;
use std::time::Duration;

use common::*;

fn fingerprint(pubkey: &std::path::Path) -> String {
    let out = ok(run(Command::new("ssh-keygen").arg("-lf").arg(pubkey)));
    stdout(&out).split_whitespace().nth(1).unwrap().to_string()
}

#[test]
fn ssh_add_list_delete_and_delete_all() {
    let agent = Daemon::start();
    let keys = tempdir();
    let a = keygen(keys.path(), "a", "ed25519", None);
    let b = keygen(keys.path(), "b", "ecdsa", Some(256));

    let empty = agent.ssh_add(&["-l"]);
    assert_eq!(empty.status.code(), Some(1), "{}", text(&empty));
    assert!(stdout(&empty).contains("The agent has no identities."));

    ok(agent.ssh_add(&[a.to_str().unwrap(), b.to_str().unwrap()]));
    let listed = stdout(&ok(agent.ssh_add(&["-l"])));
    assert!(
        listed.contains(&fingerprint(&a.with_extension("pub"))),
        "{listed}"
    );
    assert!(
        listed.contains(&fingerprint(&b.with_extension("pub"))),
        "{listed}"
    );
    assert!(
        listed.contains(" a (ED25519)") && listed.contains(" b (ECDSA)"),
        "{listed}"
    );

    let full = stdout(&ok(agent.ssh_add(&["-L"])));
    let a_pub = std::fs::read_to_string(a.with_extension("pub")).unwrap();
    assert!(
        full.contains(a_pub.trim()),
        "-L must print the public key:\n{full}"
    );

    ok(agent.ssh_add(&["-d", a.to_str().unwrap()]));
    let after = stdout(&ok(agent.ssh_add(&["-l"])));
    assert!(
        !after.contains(" a (ED25519)") && after.contains(" b (ECDSA)"),
        "{after}"
    );

    // Re-adding an existing key replaces it rather than duplicating it.
    ok(agent.ssh_add(&[b.to_str().unwrap()]));
    assert_eq!(stdout(&ok(agent.ssh_add(&["-l"]))).lines().count(), 1);

    let removals = |audit: &[serde_json::Value]| -> Vec<serde_json::Value> {
        audit
            .iter()
            .filter(|l| l["event"] == "remove_all")
            .cloned()
            .collect()
    };
    let before = removals(&agent.audit(0)).len();
    ok(agent.ssh_add(&["-D"]));
    assert_eq!(agent.ssh_add(&["-l"]).status.code(), Some(1));
    // ssh-add -D sends type 19 and then the protocol-1 type 9: neither may
    // fail. Each is a removal the audit records as allowed (one that could
    // not be read would never reach a decision).
    let audit = agent.audit_until(|l| removals(l).len() >= before + 2);
    let removed = removals(&audit);
    assert_eq!(removed.len(), before + 2, "{audit:#?}");
    assert!(
        removed.iter().all(|l| l["decision"] == "allow"),
        "{removed:#?}"
    );
}

#[test]
fn lifetime_from_ssh_add_and_from_daemon_default() {
    let agent = Daemon::builder().arg("-t").arg("3").start();
    let keys = tempdir();
    let short = keygen(keys.path(), "short", "ed25519", None);
    let longer = keygen(keys.path(), "longer", "ed25519", None);
    let added = std::time::Instant::now();
    ok(agent.ssh_add(&[short.to_str().unwrap()])); // daemon default: 3 s
    ok(agent.ssh_add(&["-t", "60", longer.to_str().unwrap()]));
    assert_eq!(stdout(&ok(agent.ssh_add(&["-l"]))).lines().count(), 2);
    // The lifetime has to pass for real: wait until the short key is gone,
    // then check that it was not gone early.
    wait_until("the 3 s key to expire", Duration::from_secs(15), || {
        !stdout(&agent.ssh_add(&["-l"])).contains("short")
    });
    assert!(
        added.elapsed() >= Duration::from_millis(2500),
        "the key expired after {:?}",
        added.elapsed()
    );
    let left = stdout(&ok(agent.ssh_add(&["-l"])));
    assert!(left.contains("longer") && !left.contains("short"), "{left}");
    let status = agent.status();
    let keys = status["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 1, "{status:#}");
    assert_eq!(keys[0]["comment"], "longer", "{status:#}");
    assert_eq!(keys[0]["lifetime"], 60, "{status:#}");
}

/// An askpass program that answers what `answer_file` says and counts calls.
fn askpass(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let answer = dir.join("answer");
    let script = dir.join("askpass");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\necho \"$SSH_ASKPASS_PROMPT|$1\" >> {dir}/asked\nexec sh {answer}\n",
            dir = dir.display(),
            answer = answer.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    (script, answer)
}

#[test]
fn confirm_constraint_asks_askpass_and_follows_the_answer() {
    let tmp = tempdir();
    let (script, answer) = askpass(tmp.path());
    let agent = Daemon::builder()
        .env("SSH_ASKPASS", script.to_str().unwrap())
        .env("SSH_ASKPASS_REQUIRE", "force")
        .start();
    let key = keygen(tmp.path(), "confirmed", "ed25519", None);
    ok(agent.ssh_add(&["-c", key.to_str().unwrap()]));
    let data = tmp.path().join("data");
    std::fs::write(&data, "hello").unwrap();
    let sign = || {
        let _ = std::fs::remove_file(tmp.path().join("data.sig"));
        run(Command::new("ssh-keygen")
            .args(["-Y", "sign", "-n", "file", "-f"])
            .arg(key.with_extension("pub"))
            .arg(&data)
            .env("SSH_AUTH_SOCK", &agent.sock))
    };

    std::fs::write(&answer, "echo yes").unwrap();
    ok(sign());
    std::fs::write(&answer, "exit 1").unwrap();
    assert!(
        !sign().status.success(),
        "askpass said no, yet the agent signed"
    );
    std::fs::write(&answer, "echo sure").unwrap();
    assert!(!sign().status.success(), "garbage from askpass must deny");

    let asked = std::fs::read_to_string(tmp.path().join("asked")).unwrap();
    assert_eq!(
        asked.matches("Allow use of key \"confirmed\"?").count(),
        3,
        "{asked}"
    );
}

#[test]
fn lock_and_unlock_with_ssh_add_x() {
    let tmp = tempdir();
    let agent = Daemon::start();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let pass = |word: &str| {
        let script = tmp.path().join(format!("pass-{word}"));
        std::fs::write(&script, format!("#!/bin/sh\necho {word}\n")).unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        script
    };
    let with_pass = |flag: &str, word: &str| {
        run(agent
            .ssh_add_cmd()
            .arg(flag)
            .env("SSH_ASKPASS", pass(word))
            .env("SSH_ASKPASS_REQUIRE", "force"))
    };
    ok(with_pass("-x", "hunter2"));
    let locked = agent.ssh_add(&["-l"]);
    assert_eq!(
        locked.status.code(),
        Some(1),
        "locked agent lists no keys\n{}",
        text(&locked)
    );
    assert!(!agent.ssh_add(&[key.to_str().unwrap()]).status.success());

    let started = std::time::Instant::now();
    assert!(!with_pass("-X", "wrong").status.success());
    assert!(
        started.elapsed() >= Duration::from_millis(100),
        "a wrong unlock must be delayed"
    );
    ok(with_pass("-X", "hunter2"));
    assert!(stdout(&ok(agent.ssh_add(&["-l"]))).contains(" k (ED25519)"));
    // A leak check: what the log holds is the point.
    let log = agent.log_text();
    assert!(
        !log.contains("hunter2"),
        "passphrase leaked into the log:\n{log}"
    );
}

#[test]
fn ssh_keygen_sign_and_verify_with_every_key_type_and_certificate() {
    let tmp = tempdir();
    let agent = Daemon::start();
    let ca = keygen(tmp.path(), "ca", "ed25519", None);
    let ca_pub = std::fs::read_to_string(ca.with_extension("pub")).unwrap();
    let data = tmp.path().join("message");
    std::fs::write(&data, "signed by the agent").unwrap();
    let mut signers = format!("* cert-authority,namespaces=\"file\" {ca_pub}");

    for (name, kind, bits) in KEY_TYPES {
        let key = keygen(tmp.path(), name, kind, *bits);
        let cert = certify(&ca, &key);
        ok(agent.ssh_add(&[key.to_str().unwrap()])); // adds key and certificate
        let pubkey = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        signers.push_str(&format!("{name} namespaces=\"file\" {pubkey}"));
        // Move the private key away so only the agent can sign.
        std::fs::rename(&key, key.with_extension("moved")).unwrap();

        for (signer, principal) in [(key.with_extension("pub"), *name), (cert, "me")] {
            let sig = tmp.path().join("message.sig");
            let _ = std::fs::remove_file(&sig);
            ok(run(Command::new("ssh-keygen")
                .args(["-Y", "sign", "-n", "file", "-f"])
                .arg(&signer)
                .arg(&data)
                .env("SSH_AUTH_SOCK", &agent.sock)));
            std::fs::write(tmp.path().join("allowed"), &signers).unwrap();
            let verified = run(Command::new("ssh-keygen")
                .args(["-Y", "verify", "-n", "file", "-f"])
                .arg(tmp.path().join("allowed"))
                .args(["-I", principal, "-s"])
                .arg(&sig)
                .stdin(std::fs::File::open(&data).unwrap()));
            assert!(
                verified.status.success(),
                "{name} via {}: {}",
                signer.display(),
                text(&verified)
            );
        }
    }
    let listed = stdout(&ok(agent.ssh_add(&["-l"])));
    assert_eq!(listed.lines().count(), 2 * KEY_TYPES.len(), "{listed}");
    assert!(
        listed.contains("(ED25519-CERT)") && listed.contains("(RSA-CERT)"),
        "{listed}"
    );
}

#[test]
fn rsa_signature_algorithm_follows_the_request_flags() {
    let tmp = tempdir();
    let agent = Daemon::start();
    let key = keygen(tmp.path(), "rsa", "rsa", Some(2048));
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let data = tmp.path().join("m");
    std::fs::write(&data, "x").unwrap();
    // ssh-keygen -Y sign asks for rsa-sha2-512.
    ok(run(Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(key.with_extension("pub"))
        .arg(&data)
        .env("SSH_AUTH_SOCK", &agent.sock)));
    let sig = std::fs::read_to_string(tmp.path().join("m.sig")).unwrap();
    let b64: String = sig.lines().filter(|l| !l.starts_with("-----")).collect();
    let out = ok(run(Command::new("sh")
        .arg("-c")
        .arg(format!("echo {b64} | base64 -d"))));
    assert!(
        out.stdout.windows(12).any(|w| w == b"rsa-sha2-512"),
        "SSHSIG must carry rsa-sha2-512"
    );
}

#[test]
fn a_missing_pkcs11_provider_is_refused_with_a_log_line() {
    let agent = Daemon::start();
    let out = run(agent
        .ssh_add_cmd()
        .args(["-s", "/nonexistent/pkcs11.so"])
        .env("SSH_ASKPASS", "/bin/true")
        .env("SSH_ASKPASS_REQUIRE", "force")
        .stdin(std::process::Stdio::null()));
    assert!(!out.status.success());
    assert!(
        agent
            .log_text()
            .contains("refused PKCS#11 add: provider /nonexistent/pkcs11.so: no such file"),
        "{}",
        agent.log_text()
    );
}

/// Submissions the daemon `pid` has made through its io_uring rings: a
/// reply and the take of its request count two.
fn ring_submissions(pid: u32) -> u64 {
    let mut submitted = 0;
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
    {
        let target = std::fs::read_link(fd.path()).unwrap_or_default();
        if !target.to_string_lossy().contains("io_uring") {
            continue;
        }
        let info = std::fs::read_to_string(format!(
            "/proc/{pid}/fdinfo/{}",
            fd.file_name().to_string_lossy()
        ))
        .unwrap_or_default();
        submitted += info
            .lines()
            .find_map(|l| l.strip_prefix("SqHead:"))
            .map_or(0, |n| n.trim().parse::<u64>().unwrap());
    }
    submitted
}

#[test]
fn requests_written_in_two_parts_are_answered_with_their_take() {
    // OpenSSH's clients write a request's length and then its body. The
    // daemon waits for the whole request on the socket and takes it off
    // with its reply, in one io_uring submission, rather than reading the
    // body while the client already waits for the reply.
    let agent = Daemon::start();
    let keys = tempdir();
    let key = keygen(keys.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let before = ring_submissions(agent.pid());
    for _ in 0..10 {
        ok(agent.ssh_add(&["-l"]));
    }
    let listed = ring_submissions(agent.pid()) - before;
    assert!(
        listed >= 20,
        "10 lists by ssh-add made {listed} ring submissions, not a reply and a take each"
    );
    // The same, with the client pausing between the two writes, so the
    // daemon surely sees the length alone first.
    let mut stream = agent.connect();
    let before = ring_submissions(agent.pid());
    for _ in 0..3 {
        use std::io::Write as _;
        stream.write_all(&1u32.to_be_bytes()).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        stream.write_all(&[11]).unwrap();
        let reply = read_reply(&mut stream);
        assert_eq!(reply[0], 12, "an identities answer");
    }
    let paused = ring_submissions(agent.pid()) - before;
    assert!(
        paused >= 6,
        "3 lists written in two parts made {paused} ring submissions"
    );
}
