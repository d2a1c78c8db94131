//! session-bind and destination constraints over the wire, with hand-made
//! binds signed by throwaway host keys, each with its expected result.

mod common;

use common::*;
use hopward::keys::sign::SigningKey;
use hopward::protocol::request::SecretParts;
use hopward::ssh::key::PublicParts;
use hopward::ssh::key::ed25519_public;
use hopward::ssh::wire::{put_string, put_u32};

const SUCCESS: u8 = 6;
const FAILURE: u8 = 5;
/// A failed session-bind: OpenSSH 10.3+ answers a known extension that fails
/// with SSH_AGENT_EXTENSION_FAILURE, and so does hopward.
const EXTENSION_FAILURE: u8 = 28;
const SIGN_RESPONSE: u8 = 14;

/// An Ed25519 key made from a seed: host keys, CA keys and user keys.
struct Key {
    seed: [u8; 32],
    blob: Vec<u8>,
}

impl Key {
    fn new(seed: u8) -> Key {
        let seed = [seed; 32];
        Key {
            seed,
            blob: PublicParts::Ed25519(ed25519_public(&seed)).blob(),
        }
    }
    fn public(&self) -> [u8; 32] {
        ed25519_public(&self.seed)
    }
    /// `string alg || string sig` over `data`.
    fn sign(&self, data: &[u8]) -> Vec<u8> {
        let key = SigningKey::new(
            &PublicParts::Ed25519(self.public()),
            &SecretParts::Ed25519(&self.seed),
        )
        .unwrap();
        let sig = key.sign(data, 0).unwrap();
        let mut out = Vec::new();
        put_string(&mut out, sig.algorithm.as_bytes());
        put_string(&mut out, &sig.blob);
        out
    }
}

/// A host certificate for `host` signed by `ca`.
fn host_cert(host: &Key, ca: &Key, principals: &[&str], valid: (u64, u64)) -> Vec<u8> {
    host_cert_with(host, ca, principals, valid, b"")
}

/// A host certificate with these critical options (the encoded list).
fn host_cert_with(
    host: &Key,
    ca: &Key,
    principals: &[&str],
    valid: (u64, u64),
    critical: &[u8],
) -> Vec<u8> {
    let mut c = Vec::new();
    put_string(&mut c, b"ssh-ed25519-cert-v01@openssh.com");
    put_string(&mut c, &[7; 32]);
    put_string(&mut c, &host.public());
    c.extend_from_slice(&1u64.to_be_bytes());
    put_u32(&mut c, 2); // host certificate
    put_string(&mut c, b"test host");
    let mut list = Vec::new();
    for p in principals {
        put_string(&mut list, p.as_bytes());
    }
    put_string(&mut c, &list);
    c.extend_from_slice(&valid.0.to_be_bytes());
    c.extend_from_slice(&valid.1.to_be_bytes());
    put_string(&mut c, critical);
    put_string(&mut c, b"");
    put_string(&mut c, b"");
    put_string(&mut c, &ca.blob);
    let sig = ca.sign(&c);
    put_string(&mut c, &sig);
    c
}

fn bind_body(host_blob: &[u8], signer: &Key, sid: &[u8], forwarding: bool) -> Vec<u8> {
    let mut body = vec![27];
    put_string(&mut body, b"session-bind@openssh.com");
    put_string(&mut body, host_blob);
    put_string(&mut body, sid);
    put_string(&mut body, &signer.sign(sid));
    body.push(u8::from(forwarding));
    body
}

fn bind(s: &mut std::os::unix::net::UnixStream, host: &Key, sid: &[u8], forwarding: bool) -> u8 {
    request(s, &bind_body(&host.blob, host, sid, forwarding))[0]
}

fn userauth(sid: &[u8], user: &str, service: &str, key: &Key, hostkey: Option<&[u8]>) -> Vec<u8> {
    let mut d = Vec::new();
    put_string(&mut d, sid);
    d.push(50);
    put_string(&mut d, user.as_bytes());
    put_string(&mut d, service.as_bytes());
    let method: &[u8] = if hostkey.is_some() {
        b"publickey-hostbound-v00@openssh.com"
    } else {
        b"publickey"
    };
    put_string(&mut d, method);
    d.push(1);
    put_string(&mut d, b"ssh-ed25519");
    put_string(&mut d, &key.blob);
    if let Some(h) = hostkey {
        put_string(&mut d, h);
    }
    d
}

fn sign(s: &mut std::os::unix::net::UnixStream, key: &Key, data: &[u8]) -> u8 {
    let mut body = vec![13];
    put_string(&mut body, &key.blob);
    put_string(&mut body, data);
    put_u32(&mut body, 0);
    request(s, &body)[0]
}

/// One destination constraint: `(from (name, host key) or the origin,
/// to host name, to user, to key, to key is a CA)`.
type Allow<'a> = (
    Option<(&'a str, &'a [u8])>,
    &'a str,
    Option<&'a str>,
    &'a [u8],
    bool,
);

/// Adds `key` with destination constraints.
fn add_constrained(
    s: &mut std::os::unix::net::UnixStream,
    key: &Key,
    constraints: &[Allow<'_>],
) -> u8 {
    let hop = |user: &str, host: &str, keys: &[(&[u8], bool)]| {
        let mut h = Vec::new();
        put_string(&mut h, user.as_bytes());
        put_string(&mut h, host.as_bytes());
        put_string(&mut h, b"");
        for (k, ca) in keys {
            put_string(&mut h, k);
            h.push(u8::from(*ca));
        }
        h
    };
    let mut all = Vec::new();
    for (from, to_host, to_user, to_key, to_ca) in constraints {
        let from_hop = match from {
            None => hop("", "", &[]),
            Some((name, k)) => hop("", name, &[(k, false)]),
        };
        let to_hop = hop(to_user.unwrap_or(""), to_host, &[(to_key, *to_ca)]);
        let mut c = Vec::new();
        put_string(&mut c, &from_hop);
        put_string(&mut c, &to_hop);
        put_string(&mut c, b"");
        put_string(&mut all, &c);
    }
    let mut body = vec![25];
    put_string(&mut body, b"ssh-ed25519");
    put_string(&mut body, &key.public());
    let mut sk = key.seed.to_vec();
    sk.extend_from_slice(&key.public());
    put_string(&mut body, &sk);
    put_string(&mut body, b"constrained");
    body.push(255);
    put_string(&mut body, b"restrict-destination-v00@openssh.com");
    put_string(&mut body, &all);
    request(s, &body)[0]
}

fn add_plain(s: &mut std::os::unix::net::UnixStream, key: &Key) -> u8 {
    let mut body = vec![17];
    put_string(&mut body, b"ssh-ed25519");
    put_string(&mut body, &key.public());
    let mut sk = key.seed.to_vec();
    sk.extend_from_slice(&key.public());
    put_string(&mut body, &sk);
    put_string(&mut body, b"plain");
    request(s, &body)[0]
}

fn listed(s: &mut std::os::unix::net::UnixStream) -> u32 {
    let reply = request(s, &[11]);
    assert_eq!(reply[0], 12);
    u32::from_be_bytes([reply[1], reply[2], reply[3], reply[4]])
}

/// An agent holding `user` constrained to reach host `target` directly, or
/// through `bastion` when given.
struct Setup {
    agent: Daemon,
    user: Key,
    bastion: Key,
    target: Key,
}

fn setup() -> Setup {
    // Allow everything OpenSSH would: these tests are about its constraints.
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let (user, bastion, target) = (Key::new(1), Key::new(2), Key::new(3));
    let mut s = agent.connect();
    assert_eq!(
        add_constrained(
            &mut s,
            &user,
            &[
                (None, "target", None, &target.blob, false),
                (None, "bastion", None, &bastion.blob, false),
                (
                    Some(("bastion", &bastion.blob)),
                    "target",
                    Some("deploy"),
                    &target.blob,
                    false
                ),
            ],
        ),
        SUCCESS
    );
    Setup {
        agent,
        user,
        bastion,
        target,
    }
}

#[test]
fn constrained_key_signs_only_for_a_permitted_bound_request() {
    let t = setup();
    let mut s = t.agent.connect();
    // No bind at all: a constrained key refuses (ssh-add -T fails the same way).
    assert_eq!(sign(&mut s, &t.user, b"anything"), FAILURE);
    assert_eq!(bind(&mut s, &t.target, b"sid-1", false), SUCCESS);
    // Unparsable data on a bound connection.
    assert_eq!(sign(&mut s, &t.user, b"not a userauth request"), FAILURE);
    // Session id mismatch.
    assert_eq!(
        sign(
            &mut s,
            &t.user,
            &userauth(b"sid-X", "u", "ssh-connection", &t.user, None)
        ),
        FAILURE
    );
    // A service other than ssh-connection.
    assert_eq!(
        sign(
            &mut s,
            &t.user,
            &userauth(b"sid-1", "u", "ssh-userauth", &t.user, None)
        ),
        FAILURE
    );
    // Host key in a hostbound request that is not the bound one.
    assert_eq!(
        sign(
            &mut s,
            &t.user,
            &userauth(
                b"sid-1",
                "u",
                "ssh-connection",
                &t.user,
                Some(&t.bastion.blob)
            )
        ),
        FAILURE
    );
    // The permitted request.
    assert_eq!(
        sign(
            &mut s,
            &t.user,
            &userauth(b"sid-1", "u", "ssh-connection", &t.user, None)
        ),
        SIGN_RESPONSE
    );
    assert_eq!(
        sign(
            &mut s,
            &t.user,
            &userauth(
                b"sid-1",
                "u",
                "ssh-connection",
                &t.user,
                Some(&t.target.blob)
            )
        ),
        SIGN_RESPONSE
    );
    // The replies show each refusal; why each was refused (one reason per
    // rule of ssh-add -h) is told only in the log: a refusal by the
    // constraint is recorded as "constraint" alone.
    let log = t.agent.log_text();
    assert!(log.contains("unbound connection"), "{log}");
    assert!(log.contains("session id does not match"), "{log}");
    assert!(
        log.contains("host key in the request does not match"),
        "{log}"
    );
}

#[test]
fn forwarded_chain_rules() {
    let t = setup();
    // Through the bastion to the target as the allowed user.
    let mut s = t.agent.connect();
    assert_eq!(bind(&mut s, &t.bastion, b"sid-b", true), SUCCESS);
    // Signing on a forwarding hop.
    assert_eq!(
        sign(
            &mut s,
            &t.user,
            &userauth(b"sid-b", "u", "ssh-connection", &t.user, None)
        ),
        FAILURE
    );
    assert_eq!(bind(&mut s, &t.target, b"sid-t", false), SUCCESS);
    // Non-hostbound request once there is more than one bind.
    assert_eq!(
        sign(
            &mut s,
            &t.user,
            &userauth(b"sid-t", "deploy", "ssh-connection", &t.user, None)
        ),
        FAILURE
    );
    // Wrong user at the last hop.
    let wrong = userauth(
        b"sid-t",
        "root",
        "ssh-connection",
        &t.user,
        Some(&t.target.blob),
    );
    assert_eq!(sign(&mut s, &t.user, &wrong), FAILURE);
    let good = userauth(
        b"sid-t",
        "deploy",
        "ssh-connection",
        &t.user,
        Some(&t.target.blob),
    );
    assert_eq!(sign(&mut s, &t.user, &good), SIGN_RESPONSE);
    // A bind after the authentication bind fails and poisons the connection.
    assert_eq!(bind(&mut s, &t.bastion, b"sid-z", true), EXTENSION_FAILURE);
    assert_eq!(sign(&mut s, &t.user, &good), FAILURE);
    assert_eq!(
        listed(&mut s),
        0,
        "a poisoned connection hides constrained keys"
    );
    // The refused bind is audited with its reason; the constraint's
    // reasons, as above, only in the log.
    let audit = t
        .agent
        .audit_until(|a| a.iter().any(|l| l["event"] == "bind"));
    let binds: Vec<&serde_json::Value> = audit.iter().filter(|l| l["event"] == "bind").collect();
    assert_eq!(binds.len(), 1, "{audit:#?}");
    assert_eq!(binds[0]["reason"], "bind-after-auth");
    let log = t.agent.log_text();
    assert!(log.contains("sign on a forwarding hop"), "{log}");
    assert!(log.contains("bind after an authentication bind"), "{log}");
}

#[test]
fn listing_hides_keys_not_usable_past_the_current_hop() {
    let t = setup();
    let other = Key::new(9);
    let mut s = t.agent.connect();
    assert_eq!(add_plain(&mut s, &other), SUCCESS);
    assert_eq!(listed(&mut s), 2);
    // Forwarded to the bastion: the key may go on to the target, so it shows.
    let mut fwd = t.agent.connect();
    assert_eq!(bind(&mut fwd, &t.bastion, b"b1", true), SUCCESS);
    assert_eq!(listed(&mut fwd), 2);
    // Forwarded to the target: nothing permits use beyond it.
    let mut beyond = t.agent.connect();
    assert_eq!(bind(&mut beyond, &t.target, b"t1", true), SUCCESS);
    assert_eq!(listed(&mut beyond), 1, "only the unconstrained key");
    // An unknown host.
    let mut unknown = t.agent.connect();
    assert_eq!(bind(&mut unknown, &Key::new(8), b"u1", false), SUCCESS);
    assert_eq!(listed(&mut unknown), 1);
}

#[test]
fn bind_failures_poison_and_limits_hold() {
    let t = setup();
    // A bad signature poisons: later valid binds fail too.
    let mut s = t.agent.connect();
    let mut forged = bind_body(&t.target.blob, &Key::new(7), b"sid", false);
    assert_eq!(request(&mut s, &forged)[0], EXTENSION_FAILURE);
    assert_eq!(bind(&mut s, &t.target, b"sid2", false), EXTENSION_FAILURE);
    assert_eq!(
        sign(
            &mut s,
            &t.user,
            &userauth(b"sid2", "u", "ssh-connection", &t.user, None)
        ),
        FAILURE
    );
    // Trailing bytes in a bind.
    let mut s = t.agent.connect();
    forged = bind_body(&t.target.blob, &t.target, b"sid", false);
    forged.push(0);
    assert_eq!(request(&mut s, &forged)[0], EXTENSION_FAILURE);
    // Same session id: same key is a no-op, another key fails.
    let mut s = t.agent.connect();
    assert_eq!(bind(&mut s, &t.bastion, b"same", true), SUCCESS);
    assert_eq!(bind(&mut s, &t.bastion, b"same", true), SUCCESS);
    assert_eq!(bind(&mut s, &t.target, b"same", true), EXTENSION_FAILURE);
    // 16 binds are fine, the 17th is refused.
    let mut s = t.agent.connect();
    for i in 0..16u8 {
        assert_eq!(
            bind(&mut s, &t.bastion, &[b's', i], true),
            SUCCESS,
            "bind {i}"
        );
    }
    assert_eq!(bind(&mut s, &t.bastion, b"s17", true), EXTENSION_FAILURE);
    // Each refusal that poisoned a connection is audited once, with what
    // failed; the valid bind sent on the already poisoned first
    // connection adds no record of its own.
    let binds = |lines: &[serde_json::Value]| -> Vec<String> {
        lines
            .iter()
            .filter(|l| l["event"] == "bind")
            .map(|l| {
                assert_eq!(l["decision"], "deny", "{l}");
                assert_eq!(l["class"], "poisoned", "{l}");
                assert_eq!(l["rule"], "session-bind", "{l}");
                l["reason"].as_str().unwrap().to_string()
            })
            .collect()
    };
    let audit = t.agent.audit_until(|lines| binds(lines).len() >= 4);
    assert_eq!(
        binds(&audit),
        [
            "bind-bad-signature",
            "bind-malformed",
            "bind-session-key-mismatch",
            "bind-too-many"
        ],
    );
    // The bind records name the hops that did verify before the refusal.
    let too_many = audit
        .iter()
        .find(|l| l["reason"] == "bind-too-many")
        .unwrap();
    assert_eq!(too_many["chain"].as_array().unwrap().len(), 16);
    let log = t.agent.log_text();
    assert!(log.contains("does not verify"), "{log}");
    assert!(log.contains("different host key"), "{log}");
    assert!(log.contains("too many binds"), "{log}");
}

#[test]
fn host_certificates_are_checked_against_principals() {
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let (user, host, ca) = (Key::new(1), Key::new(2), Key::new(5));
    let mut s = agent.connect();
    // The key may reach "host_d", proven by any host certificate from `ca`.
    assert_eq!(
        add_constrained(&mut s, &user, &[(None, "host_d", None, &ca.blob, true)]),
        SUCCESS
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for (principal, validity, expect) in [
        ("host_d", (0, u64::MAX), SIGN_RESPONSE),
        ("host_e", (0, u64::MAX), FAILURE),
        ("host_d", (now + 3600, u64::MAX), FAILURE), // not valid yet: the bind fails
    ] {
        let cert = host_cert(&host, &ca, &[principal], validity);
        let mut c = agent.connect();
        let bound = request(&mut c, &bind_body(&cert, &host, b"sid", false))[0];
        let data = userauth(b"sid", "u", "ssh-connection", &user, Some(&cert));
        let signed = sign(&mut c, &user, &data);
        assert_eq!(
            signed, expect,
            "principal {principal} validity {validity:?} (bind {bound})"
        );
    }
    // A certificate whose CA signature is forged is refused at bind time.
    let mut cert = host_cert(&host, &ca, &["host_d"], (0, u64::MAX));
    let n = cert.len();
    cert[n - 5] ^= 1;
    let mut c = agent.connect();
    assert_eq!(
        request(&mut c, &bind_body(&cert, &host, b"sid", false))[0],
        EXTENSION_FAILURE
    );
    // The audit records both refused binds (not yet valid, forged), the
    // log says what was wrong.
    let binds = |a: &[serde_json::Value]| a.iter().filter(|l| l["event"] == "bind").count();
    let audit = agent.audit_until(|a| binds(a) >= 2);
    let reasons: Vec<&serde_json::Value> = audit
        .iter()
        .filter(|l| l["event"] == "bind")
        .map(|l| &l["reason"])
        .collect();
    assert_eq!(
        reasons,
        ["bind-bad-certificate", "bind-bad-certificate"],
        "{audit:#?}"
    );
    assert!(
        agent.log_text().contains("host certificate rejected"),
        "{}",
        agent.log_text()
    );
}

/// OpenSSH 10.3+: a host certificate's principals are patterns, so a
/// certificate for `host_*` satisfies `ssh-add -h host_d`; a certificate with
/// critical options never does (10.5's sshkey_cert_check_host).
#[test]
fn wildcard_host_certificate_principals_match_destinations() {
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let (user, host, ca) = (Key::new(1), Key::new(2), Key::new(5));
    let mut s = agent.connect();
    assert_eq!(
        add_constrained(&mut s, &user, &[(None, "host_d", None, &ca.blob, true)]),
        SUCCESS
    );
    let mut force = Vec::new();
    put_string(&mut force, b"force-command");
    put_string(&mut force, b"\0\0\0\x04true");
    for (principals, critical, expect) in [
        (&["host_*"][..], &b""[..], SIGN_RESPONSE),
        (&["h?st_d"][..], &b""[..], SIGN_RESPONSE),
        (&["other", "*"][..], &b""[..], SIGN_RESPONSE),
        (&["host_d*x"][..], &b""[..], FAILURE),
        (&["host_e*"][..], &b""[..], FAILURE),
        (&["HOST_*"][..], &b""[..], FAILURE),
        (&["host_*"][..], &force[..], FAILURE),
        (&["host_d"][..], &force[..], FAILURE),
    ] {
        let cert = host_cert_with(&host, &ca, principals, (0, u64::MAX), critical);
        let mut c = agent.connect();
        assert_eq!(
            request(&mut c, &bind_body(&cert, &host, b"sid", false))[0],
            SUCCESS
        );
        let data = userauth(b"sid", "u", "ssh-connection", &user, Some(&cert));
        assert_eq!(
            sign(&mut c, &user, &data),
            expect,
            "principals {principals:?}, critical options {critical:?}"
        );
    }
}

/// OpenSSH 10.4+ refuses a destination constraint whose user pattern is
/// longer than 256 bytes.
#[test]
fn destination_user_patterns_are_capped_at_256_bytes() {
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let (user, host) = (Key::new(1), Key::new(2));
    let mut s = agent.connect();
    let long = "u".repeat(257);
    assert_eq!(
        add_constrained(
            &mut s,
            &user,
            &[(None, "h", Some(&long), &host.blob, false)]
        ),
        FAILURE
    );
    assert_eq!(listed(&mut s), 0);
    // Refused while reading the constraint, before any decision the audit
    // records: the log names the reason.
    assert!(
        agent.log_text().contains("longer than 256 bytes"),
        "{}",
        agent.log_text()
    );
    let most = "*".repeat(256);
    assert_eq!(
        add_constrained(
            &mut s,
            &user,
            &[(None, "h", Some(&most), &host.blob, false)]
        ),
        SUCCESS
    );
    let mut c = agent.connect();
    assert_eq!(bind(&mut c, &host, b"sid", false), SUCCESS);
    let data = userauth(b"sid", "anyone", "ssh-connection", &user, Some(&host.blob));
    assert_eq!(sign(&mut c, &user, &data), SIGN_RESPONSE);
}

/// A host named only by a wildcard principal of a certificate whose CA
/// known_hosts trusts (`@cert-authority`) is that host for the policy too.
#[test]
fn policy_names_hosts_by_wildcard_certificate_principals() {
    use base64::Engine as _;
    let ca = Key::new(5);
    let tmp = tempdir();
    let known = tmp.path().join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "@cert-authority *.example.com ssh-ed25519 {}\n",
            base64::engine::general_purpose::STANDARD.encode(&ca.blob)
        ),
    )
    .unwrap();
    let agent = Daemon::builder()
        .policy(
            "[defaults]\nlocal = \"allow\"\nforwarded = \"allow\"\nforwarded_unverified = \"allow\"\n\
             [[rule]]\nname = \"no db\"\nhost = [\"db.prod.example.com\"]\naction = \"deny\"\n",
        )
        .env("HOPWARD_KNOWN_HOSTS", known.to_str().unwrap())
        .start();
    let (user, host) = (Key::new(1), Key::new(2));
    let mut s = agent.connect();
    assert_eq!(add_plain(&mut s, &user), SUCCESS);
    for (principals, critical, expect) in [
        (&["*.prod.example.com"][..], &b""[..], FAILURE),
        (&["db.prod.example.com"][..], &b""[..], FAILURE),
        (&["db.prod.example.co?"][..], &b""[..], FAILURE),
        (&["*.staging.example.com"][..], &b""[..], SIGN_RESPONSE),
        // Critical options: not a valid host certificate, so no name.
        (
            &["*.prod.example.com"][..],
            &b"\0\0\0\x01x\0\0\0\0"[..],
            SIGN_RESPONSE,
        ),
    ] {
        let cert = host_cert_with(&host, &ca, principals, (0, u64::MAX), critical);
        let mut c = agent.connect();
        assert_eq!(
            request(&mut c, &bind_body(&cert, &host, b"sid", false))[0],
            SUCCESS
        );
        let data = userauth(b"sid", "u", "ssh-connection", &user, Some(&cert));
        assert_eq!(
            sign(&mut c, &user, &data),
            expect,
            "principals {principals:?}, critical {critical:?}"
        );
    }
}

/// OpenSSH 10.5 accepts a host certificate only when its CA signed with an
/// algorithm in SSH_ALLOWED_CA_SIGALGS: an RSA CA's SHA-1 `ssh-rsa`
/// signature does not prove a destination, its `rsa-sha2-512` one does.
#[test]
fn host_certificates_signed_with_sha1_rsa_are_refused() {
    use base64::Engine as _;
    let tmp = tempdir();
    let decode = |path: &std::path::Path| {
        let text = std::fs::read_to_string(path).unwrap();
        let field = text.split_whitespace().nth(1).unwrap().to_string();
        base64::engine::general_purpose::STANDARD
            .decode(field)
            .unwrap()
    };
    let ca_path = keygen(tmp.path(), "rsa-ca", "rsa", Some(2048));
    let host_path = keygen(tmp.path(), "host", "ed25519", None);
    let seed = ed25519_seed_of(&host_path);
    let host = Key {
        seed,
        blob: PublicParts::Ed25519(ed25519_public(&seed)).blob(),
    };
    let ca_blob = decode(&ca_path.with_extension("pub"));
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let user = Key::new(1);
    let mut s = agent.connect();
    assert_eq!(
        add_constrained(&mut s, &user, &[(None, "host_d", None, &ca_blob, true)]),
        SUCCESS
    );
    for (alg, expect) in [("rsa-sha2-512", SIGN_RESPONSE), ("ssh-rsa", FAILURE)] {
        ok(run(std::process::Command::new("ssh-keygen")
            .args(["-q", "-s"])
            .arg(&ca_path)
            .args(["-h", "-t", alg, "-I", "host", "-n", "host_d"])
            .arg(host_path.with_extension("pub"))));
        let cert = decode(&tmp.path().join("host-cert.pub"));
        let mut c = agent.connect();
        assert_eq!(
            request(&mut c, &bind_body(&cert, &host, b"sid", false))[0],
            SUCCESS,
            "{alg}"
        );
        let data = userauth(b"sid", "u", "ssh-connection", &user, Some(&cert));
        assert_eq!(sign(&mut c, &user, &data), expect, "CA signature {alg}");
    }
}
