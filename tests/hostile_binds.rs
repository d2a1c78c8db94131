//! Root on a bastion, at the protocol level: after this machine's own ssh
//! bound the forwarded connection to the bastion, the attacker writes any
//! bytes it likes. Binds here are made by hand, signed by throwaway host
//! keys that a known_hosts file names, as a bastion that did a key exchange
//! with those hosts could present them. One test per point of what a hostile
//! bastion must not be able to steer.

mod common;

use std::os::unix::net::UnixStream;
use std::time::Duration;

use common::*;

const SUCCESS: u8 = 6;
const FAILURE: u8 = 5;
const SIGN_RESPONSE: u8 = 14;

/// Host key seeds, as `session_bind_request` makes them.
const BASTION: u8 = 1;
const TARGET: u8 = 2;
const DEEP: u8 = 3;
const JUMP: u8 = 4;
const NEGATED: u8 = 5;
const PORTED: u8 = 6;
const ADDRESSED: u8 = 7;
const UNKNOWN: u8 = 9;

struct World {
    tmp: tempfile::TempDir,
    agent: Daemon,
    key_blob: Vec<u8>,
}

fn known_hosts_line(names: &str, seed: u8) -> String {
    use base64::Engine as _;
    format!(
        "{names} ssh-ed25519 {}\n",
        base64::engine::general_purpose::STANDARD.encode(host_key_blob(seed))
    )
}

fn world(policy: &str) -> World {
    let tmp = tempdir();
    let mut known = String::new();
    for (names, seed) in [
        ("bastion", BASTION),
        ("target", TARGET),
        ("deep", DEEP),
        ("jump", JUMP),
        ("db1,!db1", NEGATED),
        ("[db2]:2222", PORTED),
        ("[127.0.0.1]:22202,127.0.0.1,named", ADDRESSED),
    ] {
        known.push_str(&known_hosts_line(names, seed));
    }
    let known_hosts = tmp.path().join("known_hosts");
    std::fs::write(&known_hosts, known).unwrap();
    let script = confirm_command(tmp.path());
    let policy = format!(
        "[confirm]\nmethod = \"command\"\ncommand = [\"{}\"]\ntimeout = \"30s\"\n{policy}",
        script.display()
    );
    let agent = Daemon::builder()
        .policy(&policy)
        .env("HOPWARD_KNOWN_HOSTS", known_hosts.to_str().unwrap())
        .start();
    let key = keygen(tmp.path(), "work", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let key_blob =
        hopward::ssh::key::PublicParts::Ed25519(ed25519_public_of(&key.with_extension("pub")))
            .blob();
    World {
        tmp,
        agent,
        key_blob,
    }
}

impl World {
    fn answer(&self, answer: &str) {
        std::fs::write(self.tmp.path().join("answer"), answer).unwrap();
    }

    fn prompts(&self) -> Vec<String> {
        confirm_prompts(self.tmp.path())
    }

    /// A connection this machine's ssh bound to the bastion for forwarding,
    /// then the binds the bastion chose to send.
    fn forwarded(&self, binds: &[(u8, &[u8], bool)]) -> UnixStream {
        let mut s = self.agent.connect();
        assert_eq!(
            request(
                &mut s,
                &session_bind_request(BASTION, b"sid-laptop-bastion", true)
            )[0],
            SUCCESS
        );
        for (seed, sid, forwarding) in binds {
            assert_eq!(
                request(&mut s, &session_bind_request(*seed, sid, *forwarding))[0],
                SUCCESS,
                "bind to host {seed}"
            );
        }
        s
    }

    /// Signs a login as `user` on session `sid`, host-bound to `hostkey`.
    fn login(&self, s: &mut UnixStream, sid: &[u8], user: &str, hostkey: Option<u8>) -> u8 {
        let hostkey = hostkey.map(host_key_blob);
        let data = userauth_data(sid, user, &self.key_blob, hostkey.as_deref());
        request(s, &sign_request(&self.key_blob, &data))[0]
    }

    fn signs(&self, n: usize) -> Vec<serde_json::Value> {
        let lines = self
            .agent
            .audit_until(|a| a.iter().filter(|l| l["event"] == "sign").count() >= n);
        let signs: Vec<serde_json::Value> =
            lines.into_iter().filter(|l| l["event"] == "sign").collect();
        assert!(signs.len() >= n, "{signs:#?}");
        signs
    }
}

const DEEP_ONLY: &str = r#"
[defaults]
local = "allow"
forwarded = "deny"
forwarded_unknown = "deny"
forwarded_unverified = "deny"

[[rule]]
name = "deep through the bastion"
host = ["deep"]
via = ["bastion"]
action = "allow"

[[rule]]
name = "anyone through the bastion"
via = ["bastion"]
user = ["*"]
action = "allow"
"#;

/// Point 1. The bastion replays the bind to `deep` it saw earlier, then asks
/// for a login to another session: the bind's host is not where the
/// signature goes, so the `deep` rule must not match. Failed before: every
/// request below was signed under "deep through the bastion".
#[test]
fn a_replayed_bind_does_not_name_the_destination() {
    let w = world(DEEP_ONLY);
    // The honest login to deep: allowed by its rule.
    let mut honest = w.forwarded(&[(DEEP, b"sid-deep", false)]);
    assert_eq!(
        w.login(&mut honest, b"sid-deep", "me", Some(DEEP)),
        SIGN_RESPONSE
    );

    let cases: [(&[u8], Option<u8>, &str); 4] = [
        // The bastion's own session with target, host-bound to target.
        (b"sid-target", Some(TARGET), "unverified:session-id"),
        // deep's session id, but host-bound to target's key.
        (b"sid-deep", Some(TARGET), "unverified:host-key"),
        // deep's session id, plain publickey: not host-bound once forwarded.
        (b"sid-deep", None, "unverified:not-hostbound"),
        // Another session, plain publickey.
        (b"sid-target", None, "unverified:session-id"),
    ];
    for (sid, hostkey, _) in cases {
        let mut replayed = w.forwarded(&[(DEEP, b"sid-deep", false)]);
        assert_eq!(
            w.login(&mut replayed, sid, "me", hostkey),
            FAILURE,
            "{:?} {hostkey:?}",
            String::from_utf8_lossy(sid)
        );
    }
    let signs = w.signs(1 + cases.len());
    assert_eq!(signs[0]["decision"], "allow");
    assert_eq!(signs[0]["rule"], "deep through the bastion");
    assert_eq!(signs[0]["destination"], "verified");
    for (line, (_, _, destination)) in signs[1..].iter().zip(cases) {
        assert_eq!(line["decision"], "deny", "{line}");
        assert_eq!(line["class"], "forwarded_unverified", "{line}");
        assert_eq!(line["destination"], destination, "{line}");
        // Neither the host rule nor the catch-all through the bastion (which
        // names a user, a claim nothing checked) decided it.
        assert_eq!(line["rule"], "default:forwarded_unverified", "{line}");
    }
}

/// Point 1, with a rule that needs no destination: a login that does not
/// belong to its bind is still never better than `forwarded_unverified`.
#[test]
fn an_unbound_login_is_never_better_than_forwarded_unverified() {
    let w = world(
        r#"
[defaults]
forwarded = "deny"
forwarded_unverified = "deny"
[[rule]]
name = "all through the bastion"
via = ["bastion"]
action = "allow"
"#,
    );
    let mut s = w.forwarded(&[(TARGET, b"sid-target", false)]);
    assert_eq!(w.login(&mut s, b"sid-other", "me", Some(TARGET)), FAILURE);
    let mut s = w.forwarded(&[(TARGET, b"sid-target", false)]);
    assert_eq!(
        w.login(&mut s, b"sid-target", "me", Some(TARGET)),
        SIGN_RESPONSE
    );
    let signs = w.signs(2);
    assert_eq!(signs[0]["rule"], "default:forwarded_unverified");
    assert_eq!(signs[1]["rule"], "all through the bastion");
}

const REMEMBER: &str = r#"
[defaults]
forwarded = "confirm"
forwarded_unverified = "confirm"

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
"#;

/// Point 2. One yes for target, remembered; then the bastion replays
/// target's bind and asks for other sessions (one of them deep's, under a
/// deny rule). Failed before: both were signed with `reason: remembered`.
#[test]
fn a_remembered_yes_covers_only_what_was_approved() {
    let w = world(REMEMBER);
    let mut s = w.forwarded(&[(TARGET, b"sid-target-1", false)]);
    assert_eq!(
        w.login(&mut s, b"sid-target-1", "me", Some(TARGET)),
        SIGN_RESPONSE
    );
    assert_eq!(w.prompts().len(), 1);
    w.answer("no");

    // A new real session with target, same key and user: remembered.
    let mut again = w.forwarded(&[(TARGET, b"sid-target-2", false)]);
    assert_eq!(
        w.login(&mut again, b"sid-target-2", "me", Some(TARGET)),
        SIGN_RESPONSE
    );
    // Replayed target bind, the bastion's own session with deep.
    let mut replay = w.forwarded(&[(TARGET, b"sid-target-1", false)]);
    assert_eq!(w.login(&mut replay, b"sid-deep", "me", Some(DEEP)), FAILURE);
    // Replayed target bind, another session, not host-bound.
    let mut replay = w.forwarded(&[(TARGET, b"sid-target-1", false)]);
    assert_eq!(w.login(&mut replay, b"sid-elsewhere", "me", None), FAILURE);
    // Target again, as another user: not what was approved.
    let mut other_user = w.forwarded(&[(TARGET, b"sid-target-3", false)]);
    assert_eq!(
        w.login(&mut other_user, b"sid-target-3", "root", Some(TARGET)),
        FAILURE
    );

    let signs = w.signs(5);
    let reasons: Vec<&str> = signs
        .iter()
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(
        reasons,
        ["confirmed", "remembered", "refused", "refused", "refused"],
        "{signs:#?}"
    );
    // The replayed ones were asked about as logins nobody can place, and
    // the prompt said so.
    let prompts = w.prompts();
    assert_eq!(prompts.len(), 4, "{prompts:#?}");
    for p in &prompts[1..3] {
        assert!(p.contains("HOPWARD_DESTINATION=unverified"), "{p}");
        assert!(p.contains("CANNOT VERIFY"), "{p}");
    }
}

/// Point 3. sshd logs `root:x` in as root (auth style x): a rule for root
/// must see it. Failed before: the deny rule missed and it was allowed.
#[test]
fn user_style_does_not_dodge_a_user_rule() {
    let w = world(
        r#"
[defaults]
forwarded = "allow"
[[rule]]
name = "no root"
user = ["root"]
action = "deny"
"#,
    );
    for user in ["root:x", "root:", "root:bsdauth:more"] {
        let mut s = w.forwarded(&[(TARGET, user.as_bytes(), false)]);
        assert_eq!(
            w.login(&mut s, user.as_bytes(), user, Some(TARGET)),
            FAILURE,
            "{user}"
        );
    }
    let mut s = w.forwarded(&[(TARGET, b"sid-me", false)]);
    assert_eq!(
        w.login(&mut s, b"sid-me", "me:x", Some(TARGET)),
        SIGN_RESPONSE
    );
    let signs = w.signs(4);
    for line in &signs[..3] {
        assert_eq!(line["rule"], "no root", "{line}");
        assert_eq!(line["user"], "root", "{line}");
    }
    assert_eq!(signs[0]["user_style"], "x");
    assert_eq!(signs[3]["user"], "me");
    assert_eq!(signs[3]["user_style"], "x");
}

/// Point 4. Eight forwarded prompts wait (eight users); a local request
/// that needs a yes is still asked. Failed before: refused at once with
/// `reason: flood`. A ninth from the same bastion is the one refused.
#[test]
fn forwarded_requests_cannot_use_up_local_prompts() {
    let w = world(
        r#"
[defaults]
local = "confirm"
forwarded = "confirm"
"#,
    );
    w.answer("hold-forwarded");
    let mut held = Vec::new();
    for i in 0..8u8 {
        let sid = [b's', i];
        let mut s = w.forwarded(&[(TARGET, &sid, false)]);
        let data = userauth_data(
            &sid,
            &format!("user{i}"),
            &w.key_blob,
            Some(&host_key_blob(TARGET)),
        );
        write_frame(&mut s, &sign_request(&w.key_blob, &data));
        held.push(s);
    }
    // Wait until all eight are being asked.
    wait_until("all eight to be asked", Duration::from_secs(10), || {
        w.prompts().len() >= 8
    });
    assert_eq!(w.prompts().len(), 8);
    let mut flood = w.forwarded(&[(TARGET, b"sid-9", false)]);
    assert_eq!(
        w.login(&mut flood, b"sid-9", "user9", Some(TARGET)),
        FAILURE
    );
    // A local signature: asked, and allowed.
    let mut local = w.agent.connect();
    let data = userauth_data(b"sid-local", "me", &w.key_blob, None);
    assert_eq!(
        request(&mut local, &sign_request(&w.key_blob, &data))[0],
        SIGN_RESPONSE
    );
    // Another first hop has a budget of its own.
    let mut s = w.agent.connect();
    assert_eq!(
        request(
            &mut s,
            &session_bind_request(JUMP, b"sid-laptop-jump", true)
        )[0],
        SUCCESS
    );
    assert_eq!(
        request(&mut s, &session_bind_request(TARGET, b"sid-j", false))[0],
        SUCCESS
    );
    w.answer("yes");
    assert_eq!(w.login(&mut s, b"sid-j", "me", Some(TARGET)), SIGN_RESPONSE);
    let lines = w
        .agent
        .audit_until(|a| a.iter().filter(|l| l["event"] == "sign").count() >= 3);
    let reasons: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"] == "sign")
        .map(|l| l["reason"].as_str().unwrap())
        .collect();
    assert_eq!(reasons, ["flood", "confirmed", "confirmed"], "{lines:#?}");
    drop(held);
}

/// Point 5. While the user's own login to target waits for its prompt, the
/// bastion asks for its own session with target: same key, chain and user.
/// Each gets a prompt of its own, and one yes signs one. Failed before: one
/// prompt, and its yes signed both.
#[test]
fn only_identical_requests_share_a_prompt() {
    let w = world("[defaults]\nforwarded = \"confirm\"\n");
    w.answer("one-yes");
    let mut users = w.forwarded(&[(TARGET, b"sid-users-own", false)]);
    // Not 16 bytes long: with its length before it, such an id is 20 bytes,
    // and the request would also read as a login with a raw session id,
    // which no bind vouches for.
    let mut bastions = w.forwarded(&[(TARGET, b"sid-bastion-own", false)]);
    let target = host_key_blob(TARGET);
    for (s, sid) in [
        (&mut users, b"sid-users-own".as_slice()),
        (&mut bastions, b"sid-bastion-own"),
    ] {
        let data = userauth_data(sid, "me", &w.key_blob, Some(&target));
        write_frame(s, &sign_request(&w.key_blob, &data));
    }
    let replies = [read_reply(&mut users)[0], read_reply(&mut bastions)[0]];
    assert_eq!(
        replies.iter().filter(|r| **r == SIGN_RESPONSE).count(),
        1,
        "{replies:?}"
    );
    assert_eq!(w.prompts().len(), 2);
}

/// Point 6. The bastion presents jump's real key with the forwarding flag
/// set: `jump` is the bastion's word, and the prompt and audit say so.
#[test]
fn hops_past_the_first_are_marked_as_its_word() {
    let w = world("[defaults]\nforwarded = \"confirm\"\n");
    let mut s = w.forwarded(&[(JUMP, b"sid-jump", true), (TARGET, b"sid-t", false)]);
    assert_eq!(w.login(&mut s, b"sid-t", "me", Some(TARGET)), SIGN_RESPONSE);
    let signs = w.signs(1);
    let chain = signs[0]["chain"].as_array().unwrap();
    assert!(chain[0].get("reported_by").is_none(), "{chain:?}");
    assert_eq!(chain[1]["reported_by"], "bastion", "{chain:?}");
    let prompt = &w.prompts()[0];
    assert!(
        prompt.contains("Chain: bastion (fwd) > jump (fwd, reported by bastion) > target (auth)"),
        "{prompt}"
    );
}

/// Point 7. A bind signed by a key no known_hosts file knows is a class of
/// its own, and the prompt says hopward cannot tell which host it is.
/// Failed before: it was an ordinary `forwarded` prompt, and
/// `forwarded_unknown` was not a setting.
#[test]
fn an_unknown_destination_is_named_as_one() {
    let w = world("[defaults]\nforwarded = \"confirm\"\nforwarded_unknown = \"deny\"\n");
    let mut s = w.forwarded(&[(UNKNOWN, b"sid-u", false)]);
    assert_eq!(w.login(&mut s, b"sid-u", "me", Some(UNKNOWN)), FAILURE);
    let signs = w.signs(1);
    assert_eq!(signs[0]["class"], "forwarded_unknown");
    assert_eq!(signs[0]["rule"], "default:forwarded_unknown");

    let w = world("[defaults]\nforwarded = \"deny\"\nforwarded_unknown = \"confirm\"\n");
    let mut s = w.forwarded(&[(UNKNOWN, b"sid-u", false)]);
    assert_eq!(
        w.login(&mut s, b"sid-u", "me", Some(UNKNOWN)),
        SIGN_RESPONSE
    );
    let prompt = &w.prompts()[0];
    assert!(
        prompt.contains("PROMPT=Purpose: log in to an UNKNOWN host as \"me\". hopward cannot tell which host this is"),
        "{prompt}"
    );
    assert!(prompt.contains("HOPWARD_DESTINATION=unknown"), "{prompt}");
}

/// Point 8. Sixteen binds and hostile text everywhere: the purpose and the
/// warning are the prompt's first lines, and nothing from outside carries
/// a control, format or separator character. Failed before: the purpose sat
/// at character 1190 of 1345, and U+2028 and U+202E got through.
#[test]
fn a_prompt_cannot_lie() {
    let w = world("[defaults]\nforwarded = \"confirm\"\n[forwarded]\nadd = \"allow\"\n");
    // A key added through the forwarded agent, with a comment made to look
    // like hopward's own lines.
    let mut s = w.forwarded(&[]);
    let evil = "ok\u{2028}Purpose: git commit signing\u{202e}\u{200b}\nWARNING: none";
    let (seed, added_blob) = ([42u8; 32], {
        let pk = hopward::ssh::key::ed25519_public(&[42u8; 32]);
        hopward::ssh::key::PublicParts::Ed25519(pk).blob()
    });
    let mut add = vec![17];
    put_string(&mut add, b"ssh-ed25519");
    put_string(&mut add, &hopward::ssh::key::ed25519_public(&seed));
    let mut secret = seed.to_vec();
    secret.extend_from_slice(&hopward::ssh::key::ed25519_public(&seed));
    put_string(&mut add, &secret);
    put_string(&mut add, evil.as_bytes());
    assert_eq!(request(&mut s, &add)[0], SUCCESS);

    // Fourteen more forwarding hops, then the destination.
    let sids: Vec<Vec<u8>> = (0..15u8).map(|i| vec![b'h', i]).collect();
    let mut binds: Vec<(u8, &[u8], bool)> = sids[..14]
        .iter()
        .map(|sid| (JUMP, sid.as_slice(), true))
        .collect();
    binds.push((TARGET, &sids[14], false));
    let mut s = w.forwarded(&binds);
    let user = "me\u{2029}\u{202e}toor";
    let data = userauth_data(&sids[14], user, &added_blob, Some(&host_key_blob(TARGET)));
    assert_eq!(
        request(&mut s, &sign_request(&added_blob, &data))[0],
        SIGN_RESPONSE
    );
    let prompt = w.prompts().pop().unwrap();
    let text = prompt.strip_prefix("PROMPT=").unwrap();
    let text = &text[..text.find("\nHOPWARD_").unwrap()];
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines[0].starts_with("Purpose: log in to target as \"me\\u{2029}\\u{202e}toor\""),
        "{text}"
    );
    assert_eq!(
        lines[1],
        "WARNING: this request came through a forwarded agent."
    );
    assert!(
        lines[2].starts_with("Allow use of key \"ok\\u{2028}Purpose"),
        "{text}"
    );
    assert!(text.contains("… 12 more …"), "{text}");
    assert!(
        text.chars().count() < 1000,
        "{} chars:\n{text}",
        text.chars().count()
    );
    for hidden in ['\u{2028}', '\u{2029}', '\u{202e}', '\u{200b}'] {
        assert!(
            !prompt.contains(hidden),
            "{hidden:?} reached the confirmer:\n{prompt}"
        );
    }
}

/// Point 9. Host names as OpenSSH reads known_hosts: `db1,!db1` does not
/// name db1; `[db2]:2222` is db2; a host name is shown before an address.
/// Failed before: the db1 rule allowed, the db2 deny rule missed (fail
/// open), and the prompt said `[127.0.0.1]:22202`.
#[test]
fn host_names_as_openssh_reads_known_hosts() {
    let w = world(
        r#"
[defaults]
forwarded = "confirm"
[[rule]]
name = "db1 is fine"
host = ["db1"]
action = "allow"
[[rule]]
name = "never db2"
host = ["db2"]
action = "deny"
"#,
    );
    w.answer("no");
    let mut s = w.forwarded(&[(NEGATED, b"sid-db1", false)]);
    assert_eq!(w.login(&mut s, b"sid-db1", "me", Some(NEGATED)), FAILURE);
    let mut s = w.forwarded(&[(PORTED, b"sid-db2", false)]);
    assert_eq!(w.login(&mut s, b"sid-db2", "me", Some(PORTED)), FAILURE);
    let mut s = w.forwarded(&[(ADDRESSED, b"sid-named", false)]);
    assert_eq!(
        w.login(&mut s, b"sid-named", "me", Some(ADDRESSED)),
        FAILURE
    );
    let signs = w.signs(3);
    assert_eq!(
        signs[0]["rule"], "default:forwarded_unknown",
        "{:#?}",
        signs[0]
    );
    assert_eq!(signs[1]["rule"], "never db2");
    let prompts = w.prompts();
    assert!(
        prompts
            .last()
            .unwrap()
            .contains("PROMPT=Purpose: log in to named as"),
        "{prompts:#?}"
    );
}

fn write_frame(s: &mut UnixStream, body: &[u8]) {
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    std::io::Write::write_all(s, &frame).unwrap();
}

/// `SSHSIG` data with `namespace`, as `ssh-keygen -Y sign` asks for it.
fn sshsig_data(namespace: &str) -> Vec<u8> {
    let mut d = b"SSHSIG".to_vec();
    put_string(&mut d, namespace.as_bytes());
    put_string(&mut d, b"");
    put_string(&mut d, b"sha512");
    put_string(&mut d, &[7; 64]);
    d
}

/// What is not a login has no destination, so no bind after the first
/// forwarding hop may make its decision better: the bastion's own host key
/// in a self-made authentication bind, an unknown host's, a named host's,
/// or more forwarding hops. Failed before: each chain ending in an
/// authentication bind was `forwarded` and the git and file signatures
/// were allowed.
#[test]
fn binds_after_the_bastion_do_not_loosen_non_login_signatures() {
    let w = world(
        r#"
[defaults]
forwarded = "allow"
forwarded_unknown = "allow"
forwarded_unverified = "deny"
[[rule]]
name = "git to target"
via = ["bastion", "target"]
purpose = "git"
action = "allow"
"#,
    );
    let chains: [&[(u8, &[u8], bool)]; 5] = [
        &[],
        &[(BASTION, b"sid-self-made", false)],
        &[(UNKNOWN, b"sid-unknown", false)],
        &[(TARGET, b"sid-target", false)],
        &[(TARGET, b"sid-target", true), (DEEP, b"sid-deep", false)],
    ];
    for binds in chains {
        for namespace in ["git", "file", "other@example.com"] {
            let mut s = w.forwarded(binds);
            let data = sshsig_data(namespace);
            assert_eq!(
                request(&mut s, &sign_request(&w.key_blob, &data))[0],
                FAILURE,
                "{namespace} after {binds:?}"
            );
        }
    }
    // Past 10 refusals a minute through one bastion the audit counts them
    // into coalesced records, written when the agent stops: every record,
    // single or coalesced, must say the same, and together they count all.
    let mut w = w;
    assert!(w.agent.terminate().success());
    let signs: Vec<serde_json::Value> = w
        .agent
        .audit(0)
        .into_iter()
        .filter(|l| l["event"] == "sign")
        .collect();
    let counted: u64 = signs
        .iter()
        .map(|l| l["coalesced"]["count"].as_u64().unwrap_or(1))
        .sum();
    assert_eq!(counted, chains.len() as u64 * 3, "{signs:#?}");
    for line in &signs {
        assert_eq!(line["decision"], "deny", "{line}");
        assert_eq!(line["class"], "forwarded_unverified", "{line}");
        assert_eq!(line["rule"], "default:forwarded_unverified", "{line}");
        assert_eq!(line["chain"].as_array().unwrap().len(), 1, "{line}");
    }
}

/// sshd logs `root:\xff` in as root: the name is bytes, split at the first
/// `:`. Neither a name that is not UTF-8 nor a "signature follows" byte
/// other than 1 (sshd verifies for any non-zero one) turns the login into
/// "other" data that a rule for anything else through the bastion lets
/// through. An account that is not UTF-8 matches deny rules by its escaped
/// form and no other rule's user pattern. Failed before: the first two were
/// `purpose: other` and signed under the notify rule.
#[test]
fn a_login_hopward_cannot_read_as_text_is_still_a_login() {
    let w = world(
        r#"
[defaults]
forwarded = "deny"
forwarded_unverified = "deny"
[[rule]]
name = "no root through the bastion"
via = ["bastion"]
user = ["root"]
action = "deny"
[[rule]]
name = "escaped names"
user = ["r?xff*"]
action = "deny"
[[rule]]
name = "r accounts"
via = ["bastion"]
user = ["r*"]
action = "allow"
[[rule]]
name = "anything else through the bastion"
via = ["bastion"]
action = "notify"
"#,
    );
    let raw_user = |user: &[u8], sig_follows: u8| {
        let mut d = userauth_data(
            b"sid-target",
            "x",
            &w.key_blob,
            Some(&host_key_blob(TARGET)),
        );
        let at = 4 + b"sid-target".len() + 1;
        let mut u = Vec::new();
        put_string(&mut u, user);
        d.splice(at..at + 5, u);
        let sig_at = d.len() - (4 + 51) - (4 + w.key_blob.len()) - (4 + 11) - 1;
        assert_eq!(d[sig_at], 1);
        d[sig_at] = sig_follows;
        d
    };
    type Case<'a> = (&'a [u8], u8, u8, &'a str, &'a str, &'a str);
    let cases: [Case; 5] = [
        (
            b"root:\xff",
            1,
            FAILURE,
            "root",
            "verified",
            "no root through the bastion",
        ),
        (
            b"root",
            2,
            FAILURE,
            "root",
            "verified",
            "no root through the bastion",
        ),
        (
            b"r\xffoot",
            1,
            FAILURE,
            "r\\xffoot",
            "verified",
            "escaped names",
        ),
        (
            b"r\xfe",
            1,
            SIGN_RESPONSE,
            "r\\xfe",
            "verified",
            "anything else through the bastion",
        ),
        // Starts like a login, reads as none sshd makes: the account is
        // the C string's, and nothing ties it to the bind.
        (
            b"root\0",
            1,
            FAILURE,
            "root",
            "unverified:unreadable",
            "no root through the bastion",
        ),
    ];
    for (user, sig, reply, ..) in cases {
        let mut s = w.forwarded(&[(TARGET, b"sid-target", false)]);
        let data = raw_user(user, sig);
        assert_eq!(
            request(&mut s, &sign_request(&w.key_blob, &data))[0],
            reply,
            "{user:?} {sig}"
        );
    }
    let signs = w.signs(cases.len());
    for (line, (_, _, _, account, destination, rule)) in signs.iter().zip(cases) {
        assert_eq!(line["purpose"], "login", "{line}");
        assert_eq!(line["user"], account, "{line}");
        assert_eq!(line["destination"], destination, "{line}");
        assert_eq!(line["rule"], rule, "{line}");
    }
    assert_eq!(signs[0]["user_style"], "\\xff");
}
