//! `ssh-mldsa44-ed25519@openssh.com` keys, certificates and host keys with
//! OpenSSH 10.5's own programs: ssh-add, ssh-keygen -Y, logins to its sshd,
//! session-binds from ML-DSA host keys and host certificates, forwarding.

mod common;

use std::path::Path;
use std::process::Command;

use common::openssh105::{self, MLDSA, MLDSA_KEYGEN_TYPE};
use common::sshd::Hosts;
use common::*;

/// The `SHA256:` fingerprint of a `.pub` line (key or certificate).
fn fingerprint_of_pub(line: &str) -> String {
    use base64::Engine as _;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(line.split_whitespace().nth(1).unwrap())
        .unwrap();
    hopward::ssh::key::PublicKey::parse(&blob)
        .unwrap()
        .fingerprint()
}

/// The audit's sign records, once `done` holds for them.
fn signs_until(
    agent: &Daemon,
    done: impl Fn(&[serde_json::Value]) -> bool,
) -> Vec<serde_json::Value> {
    let of = |l: &[serde_json::Value]| -> Vec<serde_json::Value> {
        l.iter().filter(|x| x["event"] == "sign").cloned().collect()
    };
    of(&agent.audit_until(|l| done(&of(l))))
}

/// A signature for a login whose destination the agent verified through
/// the binds, not on a poisoned connection.
fn verified(sign: &serde_json::Value) -> bool {
    sign["destination"] == "verified" && sign["class"] != "poisoned"
}

/// The fingerprints of a sign record's hops, first to last.
fn hop_fingerprints(sign: &serde_json::Value) -> Vec<String> {
    sign["chain"]
        .as_array()
        .map(|hops| {
            hops.iter()
                .map(|h| h["fingerprint"].as_str().unwrap_or("").to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The names of a sign record's hops, with `fwd` or `auth`.
fn hop_names(sign: &serde_json::Value) -> Vec<String> {
    sign["chain"]
        .as_array()
        .map(|hops| {
            hops.iter()
                .map(|h| {
                    let kind = if h["forwarded"] == true {
                        "fwd"
                    } else {
                        "auth"
                    };
                    format!("{} ({kind})", h["names"][0].as_str().unwrap_or("?"))
                })
                .collect()
        })
        .unwrap_or_default()
}

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

/// `ssh-keygen -Y sign` through the agent (only the `.pub` is given) and
/// `-Y verify` of the result by 10.5's ssh-keygen.
fn sshsig_round_trip(sock: &Path, dir: &Path, pubkey: &Path) {
    let keygen = openssh105::program("ssh-keygen");
    let message = dir.join("message");
    std::fs::write(&message, "a file to sign with ML-DSA\n").unwrap();
    let out = run(Command::new(&keygen)
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(pubkey)
        .arg(&message)
        .env("SSH_AUTH_SOCK", sock));
    ok(out);
    let signature = dir.join("message.sig");
    let armored = std::fs::read_to_string(&signature).unwrap();
    assert!(armored.starts_with("-----BEGIN SSH SIGNATURE-----"));
    let allowed = dir.join("allowed_signers");
    let key = std::fs::read_to_string(pubkey).unwrap();
    std::fs::write(&allowed, format!("me@example {key}")).unwrap();
    let verify = |data: &str| {
        run(Command::new(&keygen)
            .args(["-Y", "verify", "-n", "file", "-I", "me@example", "-f"])
            .arg(&allowed)
            .arg("-s")
            .arg(&signature)
            .stdin(std::fs::File::open(dir.join(data)).unwrap()))
    };
    let good = ok(verify("message"));
    assert!(
        stdout(&good).contains("Good \"file\" signature for me@example with MLDSA44-ED25519 key"),
        "{}",
        text(&good)
    );
    std::fs::write(dir.join("other"), "another file\n").unwrap();
    let bad = verify("other");
    assert!(
        !bad.status.success(),
        "a changed file verified: {}",
        text(&bad)
    );
    std::fs::remove_file(&signature).unwrap();
}

#[test]
fn mldsa_keys_add_list_sign_and_delete_with_openssh_10_5() {
    let tmp = tempdir();
    let agent = Daemon::start();
    let key = openssh105::keygen(tmp.path(), "pq", MLDSA_KEYGEN_TYPE);
    let pubkey = key.with_extension("pub");
    let pub_line = std::fs::read_to_string(&pubkey).unwrap();
    assert!(pub_line.starts_with(MLDSA), "{pub_line}");

    let added = ok(openssh105::ssh_add(&agent.sock, &[path_str(&key)]));
    assert!(text(&added).contains("Identity added"), "{}", text(&added));
    std::fs::rename(&key, tmp.path().join("moved-away")).unwrap();

    let listed = stdout(&ok(openssh105::ssh_add(&agent.sock, &["-l"])));
    assert_eq!(
        listed.trim(),
        format!("256 {} pq (MLDSA44-ED25519)", fingerprint_of_pub(&pub_line))
    );
    let public = stdout(&ok(openssh105::ssh_add(&agent.sock, &["-L"])));
    assert_eq!(public.trim(), pub_line.trim());

    // Signing: twice, since each ML-DSA signature is freshly randomised.
    sshsig_round_trip(&agent.sock, tmp.path(), &pubkey);
    sshsig_round_trip(&agent.sock, tmp.path(), &pubkey);
    // The audit log saw them as the agent's signatures.
    let lines = agent.audit_until(|lines| {
        lines
            .iter()
            .filter(|l| l["event"] == "sign" && l["decision"] == "allow")
            .count()
            >= 2
    });
    let fingerprint = fingerprint_of_pub(&pub_line);
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "sign" && l["key"] == fingerprint.as_str()),
        "{lines:?}"
    );

    // ssh-add -d with the public key, then nothing is listed.
    ok(openssh105::ssh_add(&agent.sock, &["-d", path_str(&pubkey)]));
    let empty = openssh105::ssh_add(&agent.sock, &["-l"]);
    assert!(
        stdout(&empty).contains("The agent has no identities"),
        "{}",
        text(&empty)
    );
    // Removed means removed: signing now fails.
    let message = tmp.path().join("message");
    let out = run(Command::new(openssh105::program("ssh-keygen"))
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(&pubkey)
        .arg(&message)
        .env("SSH_AUTH_SOCK", &agent.sock));
    assert!(!out.status.success(), "{}", text(&out));
}

#[test]
fn mldsa_certificates_add_list_and_remove_all() {
    let tmp = tempdir();
    let agent = Daemon::start();
    // The key certified by an ML-DSA CA: 10.5's ssh-add adds the key and,
    // from the -cert.pub next to it, the certificate.
    let ca = openssh105::keygen(tmp.path(), "ca", MLDSA_KEYGEN_TYPE);
    let key = openssh105::keygen(tmp.path(), "pq", MLDSA_KEYGEN_TYPE);
    ok(run(Command::new(openssh105::program("ssh-keygen"))
        .args(["-q", "-s"])
        .arg(&ca)
        .args(["-I", "pq cert", "-n", "me"])
        .arg(key.with_extension("pub"))));
    let added = ok(openssh105::ssh_add(&agent.sock, &[path_str(&key)]));
    assert!(
        text(&added).contains("Certificate added"),
        "{}",
        text(&added)
    );
    let listed = stdout(&ok(openssh105::ssh_add(&agent.sock, &["-l"])));
    assert!(listed.contains("pq (MLDSA44-ED25519)\n"), "{listed}");
    assert!(
        listed.contains("(MLDSA44-ED25519-CERT)"),
        "certificate not listed: {listed}"
    );
    let public = stdout(&ok(openssh105::ssh_add(&agent.sock, &["-L"])));
    assert!(
        public.contains("ssh-mldsa44-ed25519-cert-v01@openssh.com "),
        "{public}"
    );
    ok(openssh105::ssh_add(&agent.sock, &["-D"]));
    let empty = stdout(&openssh105::ssh_add(&agent.sock, &["-l"]));
    assert!(empty.contains("The agent has no identities"), "{empty}");
}

/// An add request for `public` (wire blob of an ML-DSA composite key) with
/// the private key `secret`.
fn add_request(public_key: &[u8], secret: &[u8]) -> Vec<u8> {
    let mut body = vec![17u8];
    put_string(&mut body, MLDSA.as_bytes());
    put_string(&mut body, public_key);
    put_string(&mut body, secret);
    put_string(&mut body, b"hand made");
    body
}

#[test]
fn malformed_or_mismatched_mldsa_keys_are_refused_and_the_agent_goes_on() {
    use base64::Engine as _;
    let tmp = tempdir();
    let agent = Daemon::start();
    let a = openssh105::keygen(tmp.path(), "a", MLDSA_KEYGEN_TYPE);
    let b = openssh105::keygen(tmp.path(), "b", MLDSA_KEYGEN_TYPE);
    let public_of = |key: &Path| {
        let line = std::fs::read_to_string(key.with_extension("pub")).unwrap();
        let blob = base64::engine::general_purpose::STANDARD
            .decode(line.split_whitespace().nth(1).unwrap())
            .unwrap();
        // string type, string key
        blob[4 + MLDSA.len() + 4..].to_vec()
    };
    let (a_public, b_public) = (public_of(&a), public_of(&b));
    let (a_secret, b_secret) = (
        openssh105::mldsa_secret_of(&a),
        openssh105::mldsa_secret_of(&b),
    );
    let mut stream = agent.connect();
    // The genuine pair is accepted (the requests below are well-formed).
    assert_eq!(
        request(&mut stream, &add_request(&a_public, &a_secret)),
        [6]
    );
    // b's ML-DSA seed with a's Ed25519 seed, and the other way round.
    let mixed = [
        [&b_secret[..32], &a_secret[32..]].concat(),
        [&a_secret[..32], &b_secret[32..]].concat(),
    ];
    for (what, public, secret) in [
        (
            "another key's private key",
            a_public.clone(),
            b_secret.to_vec(),
        ),
        (
            "another key's ML-DSA half",
            a_public.clone(),
            mixed[0].clone(),
        ),
        (
            "another key's Ed25519 half",
            a_public.clone(),
            mixed[1].clone(),
        ),
        (
            "a short public key",
            a_public[1..].to_vec(),
            a_secret.to_vec(),
        ),
        (
            "a short private key",
            a_public.clone(),
            a_secret[..63].to_vec(),
        ),
        (
            "a long private key",
            a_public.clone(),
            [&a_secret[..], &[0]].concat(),
        ),
        (
            "public halves of two keys",
            [&a_public[..1312], &b_public[1312..]].concat(),
            a_secret.to_vec(),
        ),
    ] {
        assert_eq!(
            request(&mut stream, &add_request(&public, &secret)),
            [5],
            "{what} was accepted"
        );
    }
    // Still serving, and only the genuine key is held.
    let listed = stdout(&ok(openssh105::ssh_add(&agent.sock, &["-l"])));
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("hand made (MLDSA44-ED25519)"), "{listed}");
}

#[test]
fn login_with_mldsa_user_keys_and_certificates_to_openssh_10_5() {
    let tmp = tempdir();
    let hosts = Hosts::start_lab(tmp.path(), &["server"], &openssh105::lab("ed25519"));
    let agent = Daemon::builder().debug().start();
    let key = openssh105::keygen(tmp.path(), "pq", MLDSA_KEYGEN_TYPE);
    let ca = openssh105::keygen(tmp.path(), "ca", MLDSA_KEYGEN_TYPE);
    ok(run(Command::new(openssh105::program("ssh-keygen"))
        .args(["-q", "-s"])
        .arg(&ca)
        .args(["-I", "pq cert", "-n", &hosts.user])
        .arg(key.with_extension("pub"))));
    ok(openssh105::ssh_add(&agent.sock, &[path_str(&key)]));
    std::fs::remove_file(&key).unwrap();

    let pubkey = key.with_extension("pub");
    hosts.authorize(&pubkey);
    for round in 0..3 {
        let out = hosts.ssh(
            &agent.sock,
            &[
                "-i",
                path_str(&pubkey),
                "-o",
                "IdentitiesOnly=yes",
                "server",
                "echo logged-in",
            ],
        );
        assert!(
            stdout(&out).contains("logged-in"),
            "round {round}: {}\nsshd:\n{}",
            text(&out),
            hosts.sshd_log("server")
        );
    }
    assert!(
        hosts
            .sshd_log("server")
            .contains(&format!("Accepted publickey for {} ", hosts.user)),
        "{}",
        hosts.sshd_log("server")
    );

    // The certificate, signed by an ML-DSA CA the server trusts.
    let ca_pub = std::fs::read_to_string(ca.with_extension("pub")).unwrap();
    std::fs::write(&hosts.authorized_keys, format!("cert-authority {ca_pub}")).unwrap();
    let cert = tmp.path().join("pq-cert.pub");
    let out = hosts.ssh(
        &agent.sock,
        &[
            "-i",
            path_str(&cert),
            "-o",
            "IdentitiesOnly=yes",
            "server",
            "echo cert-ok",
        ],
    );
    assert!(
        stdout(&out).contains("cert-ok"),
        "{}\nsshd:\n{}",
        text(&out),
        hosts.sshd_log("server")
    );
    // What the server accepted shows only in sshd's own log.
    assert!(
        hosts.sshd_log("server").contains("MLDSA44-ED25519-CERT"),
        "the server did not see the certificate: {}",
        hosts.sshd_log("server")
    );
    // Four logins (three with the key, one with the certificate), each
    // signed for a destination the binds verified.
    let signs = signs_until(&agent, |s| s.len() >= 4);
    assert!(signs.len() >= 4, "{signs:#?}");
    assert!(signs.iter().all(verified), "{signs:#?}");
}

/// Logs in `times` times to `host`, asserting each login and that the agent
/// verified every bind by `host_pub` (no poisoned connection).
fn logins_bind_to(hosts: &Hosts, agent: &Daemon, key: &Path, host: &str, times: usize) {
    let pubkey = key.with_extension("pub");
    for round in 0..times {
        let out = hosts.ssh(
            &agent.sock,
            &[
                "-i",
                path_str(&pubkey),
                "-o",
                "IdentitiesOnly=yes",
                host,
                "echo bound-login",
            ],
        );
        assert!(
            stdout(&out).contains("bound-login"),
            "login {round} to {host}: {}\nagent:\n{}",
            text(&out),
            agent.log_text()
        );
    }
    // Every login signed for a destination verified through the host's
    // bind (a poisoned connection would show in the record's class).
    let signs = signs_until(agent, |s| s.len() >= times);
    assert!(
        signs.len() >= times,
        "fewer signatures than logins: {signs:#?}"
    );
    assert!(signs.iter().all(verified), "{signs:#?}");
}

#[test]
fn mldsa_host_keys_bind_sessions_instead_of_poisoning_them() {
    let tmp = tempdir();
    let hosts = Hosts::start_lab(tmp.path(), &["server"], &openssh105::lab(MLDSA_KEYGEN_TYPE));
    let host_pub = &hosts.hosts[0].host_pub;
    assert!(host_pub.starts_with(MLDSA), "{host_pub}");
    let agent = Daemon::builder().debug().start();
    let key = openssh105::keygen(tmp.path(), "id", "ed25519");
    hosts.authorize(&key.with_extension("pub"));
    ok(openssh105::ssh_add(&agent.sock, &[path_str(&key)]));
    std::fs::remove_file(&key).unwrap();

    // 12 logins, as often as OpenSSH 10.5's own agent was seen to succeed.
    logins_bind_to(&hosts, &agent, &key, "server", 12);
    // Each signature's one hop is the bind by the ML-DSA host key, and the
    // request came with its destination: a direct login.
    let host = fingerprint_of_pub(host_pub);
    let signs = signs_until(&agent, |s| s.len() >= 12);
    assert!(
        signs
            .iter()
            .all(|l| hop_fingerprints(l) == [host.clone()] && l["class"] == "direct"),
        "not every login bound by the ML-DSA host key {host}: {signs:#?}"
    );
}

#[test]
fn forwarded_agent_through_mldsa_hosts() {
    let tmp = tempdir();
    let hosts = Hosts::start_lab(
        tmp.path(),
        &["bastion", "target"],
        &openssh105::lab(MLDSA_KEYGEN_TYPE),
    );
    let agent = hosts.daemon().policy(ALLOW_ALL).debug().start();
    let key = openssh105::keygen(tmp.path(), "pq", MLDSA_KEYGEN_TYPE);
    hosts.authorize(&key.with_extension("pub"));
    ok(openssh105::ssh_add(&agent.sock, &[path_str(&key)]));
    std::fs::remove_file(&key).unwrap();

    let inner = format!(
        "{} -l; {}",
        openssh105::program("ssh-add").display(),
        hosts.inner_ssh("-o IdentitiesOnly=no target echo reached-target")
    );
    let out = hosts.ssh(&agent.sock, &["-A", "bastion", &inner]);
    let printed = stdout(&out);
    assert!(
        printed.contains("reached-target"),
        "{}\nagent:\n{}",
        text(&out),
        agent.log_text()
    );
    assert!(
        printed.contains(" pq (MLDSA44-ED25519)"),
        "forwarded ssh-add -l on bastion: {}",
        text(&out)
    );
    // The target's signature request came through the bastion's forwarding
    // bind, both by ML-DSA host keys, named through known_hosts.
    let through = |l: &serde_json::Value| {
        l["class"] == "forwarded" && hop_names(l) == ["bastion (fwd)", "target (auth)"]
    };
    let signs = signs_until(&agent, |s| s.iter().any(through));
    assert!(signs.iter().all(verified), "{signs:#?}");
    let login = signs
        .iter()
        .find(|l| through(l))
        .unwrap_or_else(|| panic!("{signs:#?}"));
    let expected: Vec<String> = hosts
        .hosts
        .iter()
        .map(|h| fingerprint_of_pub(&h.host_pub))
        .collect();
    assert_eq!(hop_fingerprints(login), expected, "{login:#}");
}

#[test]
fn host_certificates_by_and_for_mldsa_keys_bind_sessions() {
    let tmp = tempdir();
    let key = openssh105::keygen(tmp.path(), "id", "ed25519");
    // Ed25519 host keys certified by an ML-DSA CA, then ML-DSA host keys
    // certified by an Ed25519 CA.
    for (case, ca_type, host_type) in [
        ("mldsa-ca", MLDSA_KEYGEN_TYPE, "ed25519"),
        ("mldsa-host", "ed25519", MLDSA_KEYGEN_TYPE),
    ] {
        let dir = tmp.path().join(case);
        std::fs::create_dir(&dir).unwrap();
        let ca = openssh105::keygen(&dir, "host_ca", ca_type);
        let mut lab = openssh105::lab(host_type);
        lab.host_ca = Some(ca);
        let hosts = Hosts::start_lab(&dir, &["server"], &lab);
        hosts.authorize(&key.with_extension("pub"));
        let agent = hosts.daemon().debug().start();
        ok(openssh105::ssh_add(&agent.sock, &[path_str(&key)]));
        logins_bind_to(&hosts, &agent, &key, "server", 2);
        // Named through the known_hosts @cert-authority line and the
        // certificate's principal; the server presented its certificate,
        // and the agent checked it: the hop is the certified host key.
        let cert_pub = std::fs::read_to_string(dir.join("host_server-cert.pub")).unwrap();
        let host = fingerprint_of_pub(&cert_pub);
        let signs = signs_until(&agent, |s| s.len() >= 2);
        assert!(
            signs.iter().all(|l| l["class"] == "direct"
                && hop_names(l) == ["server (auth)"]
                && hop_fingerprints(l) == [host.clone()]),
            "{case}: not bound by the certified host key {host}: {signs:#?}"
        );
    }
}

/// A signing key and public blob from a 10.5 `mldsa44-ed25519` key file.
fn mldsa_signer(key: &Path) -> (hopward::keys::sign::SigningKey, Vec<u8>) {
    use hopward::protocol::request::SecretParts;
    use hopward::ssh::key::PublicKey;
    let secret = openssh105::mldsa_secret_of(key);
    let line = std::fs::read_to_string(key.with_extension("pub")).unwrap();
    let blob = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode(line.split_whitespace().nth(1).unwrap())
            .unwrap()
    };
    let public = PublicKey::parse(&blob).unwrap();
    let signer =
        hopward::keys::sign::SigningKey::new(&public.parts, &SecretParts::MlDsa44Ed25519(&secret))
            .unwrap();
    (signer, blob)
}

/// `string alg || string sig` as a session-bind carries it.
fn signature_blob(algorithm: &str, signature: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_string(&mut out, algorithm.as_bytes());
    put_string(&mut out, signature);
    out
}

fn bind(host_blob: &[u8], sid: &[u8], signature: &[u8]) -> Vec<u8> {
    let mut body = vec![27];
    put_string(&mut body, b"session-bind@openssh.com");
    put_string(&mut body, host_blob);
    put_string(&mut body, sid);
    put_string(&mut body, signature);
    body.push(0);
    body
}

/// A sign request for `key_blob` over a userauth request in session `sid`.
fn userauth_sign(key_blob: &[u8], sid: &[u8]) -> Vec<u8> {
    let mut data = Vec::new();
    put_string(&mut data, sid);
    data.push(50);
    put_string(&mut data, b"me");
    put_string(&mut data, b"ssh-connection");
    put_string(&mut data, b"publickey");
    data.push(1);
    put_string(&mut data, b"ssh-ed25519");
    put_string(&mut data, key_blob);
    let mut body = vec![13];
    put_string(&mut body, key_blob);
    put_string(&mut body, &data);
    body.extend_from_slice(&0u32.to_be_bytes());
    body
}

#[test]
fn hand_made_mldsa_binds_verify_and_forged_halves_poison_the_connection() {
    let tmp = tempdir();
    let agent = Daemon::start();
    let host = openssh105::keygen(tmp.path(), "host", MLDSA_KEYGEN_TYPE);
    let other = openssh105::keygen(tmp.path(), "other", MLDSA_KEYGEN_TYPE);
    let (host_key, host_blob) = mldsa_signer(&host);
    let (other_key, _) = mldsa_signer(&other);
    let user = keygen(tmp.path(), "user", "ed25519", None);
    ok(agent.ssh_add(&[path_str(&user)]));
    let user_blob = {
        use base64::Engine as _;
        let line = std::fs::read_to_string(user.with_extension("pub")).unwrap();
        base64::engine::general_purpose::STANDARD
            .decode(line.split_whitespace().nth(1).unwrap())
            .unwrap()
    };
    let sid = [0x42u8; 32];
    let good = host_key.sign(&sid, 0).unwrap();
    assert_eq!(good.algorithm, MLDSA);

    // A genuine bind: the login it names is signed.
    let mut stream = agent.connect();
    assert_eq!(
        request(
            &mut stream,
            &bind(&host_blob, &sid, &signature_blob(MLDSA, &good.blob))
        ),
        [6]
    );
    assert_eq!(
        request(&mut stream, &userauth_sign(&user_blob, &sid))[0],
        14
    );

    // Forgeries, each on a fresh connection: refused, and the connection
    // signs nothing for a destination afterwards.
    let from_other = other_key.sign(&sid, 0).unwrap();
    let spliced_mldsa = [&from_other.blob[..2420], &good.blob[2420..]].concat();
    let spliced_ed25519 = [&good.blob[..2420], &from_other.blob[2420..]].concat();
    let over_other_sid = host_key.sign(&[0x43; 32], 0).unwrap();
    for (what, signature) in [
        (
            "another key's ML-DSA half",
            signature_blob(MLDSA, &spliced_mldsa),
        ),
        (
            "another key's Ed25519 half",
            signature_blob(MLDSA, &spliced_ed25519),
        ),
        (
            "the Ed25519 half alone",
            signature_blob(MLDSA, &good.blob[2420..]),
        ),
        (
            "the ML-DSA half alone",
            signature_blob(MLDSA, &good.blob[..2420]),
        ),
        (
            "another session id",
            signature_blob(MLDSA, &over_other_sid.blob),
        ),
        (
            "the Ed25519 algorithm name",
            signature_blob("ssh-ed25519", &good.blob),
        ),
    ] {
        let mut stream = agent.connect();
        assert_eq!(
            // SSH_AGENT_EXTENSION_FAILURE: a known extension that failed,
            // as OpenSSH 10.3+ answers it.
            request(&mut stream, &bind(&host_blob, &sid, &signature)),
            [28],
            "{what} was accepted"
        );
        assert_eq!(
            request(&mut stream, &userauth_sign(&user_blob, &sid)),
            [5],
            "{what}: the poisoned connection still signed"
        );
    }
    // Each refusal above is recorded as a poisoned connection's.
    let poisoned = |l: &serde_json::Value| l["class"] == "poisoned" && l["decision"] == "deny";
    let signs = signs_until(&agent, |s| s.iter().filter(|l| poisoned(l)).count() >= 6);
    assert_eq!(
        signs.iter().filter(|l| poisoned(l)).count(),
        6,
        "{signs:#?}"
    );
}

#[test]
fn destination_constraints_name_mldsa_host_keys() {
    let tmp = tempdir();
    let hosts = Hosts::start_lab(
        tmp.path(),
        &["server", "other"],
        &openssh105::lab(MLDSA_KEYGEN_TYPE),
    );
    let agent = Daemon::builder().debug().start();
    let key = openssh105::keygen(tmp.path(), "pq", MLDSA_KEYGEN_TYPE);
    hosts.authorize(&key.with_extension("pub"));
    // ssh-add -h: usable only to log in to "server", known by its ML-DSA
    // host key.
    let known_hosts = hosts.dir.join("known_hosts");
    ok(openssh105::ssh_add(
        &agent.sock,
        &["-H", path_str(&known_hosts), "-h", "server", path_str(&key)],
    ));
    // The same key without the constraint, in a second agent: it logs in to
    // either host, so a refusal below is the constraint's doing.
    let unconstrained = Daemon::start();
    ok(openssh105::ssh_add(&unconstrained.sock, &[path_str(&key)]));
    std::fs::remove_file(&key).unwrap();
    let login_with = |agent: &Daemon, host: &str| {
        hosts.ssh(
            &agent.sock,
            &[
                "-i",
                path_str(&key.with_extension("pub")),
                "-o",
                "IdentitiesOnly=yes",
                host,
                "echo constrained-login",
            ],
        )
    };
    let login = |host: &str| login_with(&agent, host);
    for host in ["server", "other"] {
        let out = login_with(&unconstrained, host);
        assert!(
            stdout(&out).contains("constrained-login"),
            "unconstrained key to {host}: {}",
            text(&out)
        );
    }
    let allowed = login("server");
    assert!(
        stdout(&allowed).contains("constrained-login"),
        "{}\nagent:\n{}",
        text(&allowed),
        agent.log_text()
    );
    let refused = login("other");
    assert!(
        !refused.status.success() && !stdout(&refused).contains("constrained-login"),
        "a key restricted to server logged in to other: {}",
        text(&refused)
    );
    let signs = signs_until(&agent, |s| !s.is_empty());
    assert!(
        !signs.is_empty() && signs.iter().all(verified),
        "{signs:#?}"
    );
    // The refused login asked for no signature (the key is hidden there),
    // so whether its bind verified shows only in the log.
    let log = agent.log_text();
    assert!(!log.contains("poisoned"), "{log}");
}
