//! `hopward policy check` and `hopward policy explain` on the shipped
//! policies and on broken ones.

mod common;

use std::process::Command;

use common::*;

#[test]
fn shipped_policies_pass_policy_check() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policy");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let out = run(Command::new(HOPWARD).args(["policy", "check"]).arg(&path));
            assert!(out.status.success(), "{}: {}", path.display(), text(&out));
            checked += 1;
        }
    }
    assert!(
        checked >= 5,
        "expected the default and four examples, found {checked}"
    );
    // And a broken one fails with positions.
    let tmp = tempdir();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[[rule]]\nvia = [\"bastion\"]\naction = \"alow\"\n").unwrap();
    let out = run(Command::new(HOPWARD).args(["policy", "check"]).arg(&bad));
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("bad.toml:3:10: unknown action \"alow\""),
        "{}",
        text(&out)
    );
}

#[test]
fn policy_explain_names_the_rule() {
    let policy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policy/bastion.toml");
    let out = ok(run(Command::new(HOPWARD)
        .args(["policy", "explain", "--policy"])
        .arg(&policy)
        .args([
            "--chain",
            "bastion>db1.prod.example.com",
            "--user",
            "deploy",
        ])));
    let printed = stdout(&out);
    assert!(printed.contains("decision: confirm"), "{printed}");
    assert!(
        printed.contains("note:     brake: past 5 distinct destinations within 1m"),
        "{printed}"
    );
    assert!(
        printed.contains("rule:     production through the bastion"),
        "{printed}"
    );
    let out = ok(run(Command::new(HOPWARD)
        .args(["policy", "explain", "--policy"])
        .arg(&policy)
        .args(["--chain", "bastion>db1.prod.example.com", "--user", "root"])));
    assert!(stdout(&out).contains("decision: deny"), "{}", text(&out));
    let out = ok(run(Command::new(HOPWARD)
        .args(["policy", "explain", "--policy"])
        .arg(&policy)
        .args(["--chain", "bastion", "--unverified"])));
    assert!(
        stdout(&out).contains("default:forwarded_unverified"),
        "{}",
        text(&out)
    );
}

/// `--jump` dry-runs a direct login through jump hosts (`ssh -J a,b prod`)
/// against `jump` rules, and is refused with a forwarded chain.
#[test]
fn policy_explain_takes_jump_hosts() {
    let tmp = tempdir();
    let policy = tmp.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[defaults]\nlocal = \"deny\"\n\
         [[rule]]\nname = \"prod through a and b\"\nhost = [\"prod\"]\njump = [\"a\", \"b\"]\naction = \"allow\"\n",
    )
    .unwrap();
    let explain = |args: &[&str]| {
        run(Command::new(HOPWARD)
            .args(["policy", "explain", "--policy"])
            .arg(&policy)
            .args(args))
    };
    let out = ok(explain(&["--chain", "prod", "--jump", "a,b"]));
    let printed = stdout(&out);
    assert!(printed.contains("decision: allow"), "{printed}");
    assert!(
        printed.contains("rule:     prod through a and b"),
        "{printed}"
    );
    assert!(
        printed.contains("chain=[a (jump) > b (jump) > prod (auth)]"),
        "{printed}"
    );
    let out = ok(explain(&["--chain", "prod", "--jump", "b>a"]));
    assert!(stdout(&out).contains("decision: deny"), "{}", text(&out));
    let out = ok(explain(&["--chain", "prod"]));
    assert!(stdout(&out).contains("default:local"), "{}", text(&out));
    let out = explain(&["--chain", "bastion>prod", "--jump", "a"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("--jump describes a direct login"),
        "{}",
        text(&out)
    );
}

/// A rule that allows more because `via` names a hop past the first (the
/// first hop's word) is pointed out, and the file still passes.
#[test]
fn policy_check_warns_about_trusting_hops_past_the_first() {
    let tmp = tempdir();
    let file = tmp.path().join("policy.toml");
    std::fs::write(
        &file,
        "[defaults]\nforwarded = \"deny\"\n\n[[rule]]\nname = \"db via jump\"\nhost = [\"db\"]\nvia = [\"bastion\", \"jump\"]\naction = \"allow\"\n",
    )
    .unwrap();
    let out = run(Command::new(HOPWARD).args(["policy", "check"]).arg(&file));
    assert!(out.status.success(), "{}", text(&out));
    let expected = format!(
        "{}:4: warning: rule \"db via jump\" is more permissive (allow) because of hops past the first in `via` (jump); those are bastion's word",
        file.display()
    );
    assert!(stdout(&out).contains(&expected), "{}", text(&out));
}

/// Bug 7: a single value where a list is wanted got serde's words
/// ("expected a sequence") and no fix. Failed before.
#[test]
fn policy_check_says_how_to_write_a_list() {
    let tmp = tempdir();
    let file = tmp.path().join("policy.toml");
    std::fs::write(
        &file,
        "[[rule]]\nname = \"db\"\nhost = \"db1\"\naction = \"allow\"\n",
    )
    .unwrap();
    let out = run(Command::new(HOPWARD).args(["policy", "check"]).arg(&file));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(
        stdout(&out).trim(),
        format!(
            "{}:3:8: host takes a list: use host = [\"db1\"]",
            file.display()
        )
    );
}

/// Bug 8: what `policy check` missed. Failed before: the malformed
/// fingerprints passed, none of the warnings was printed, and db1 (named
/// only in $HOPWARD_KNOWN_HOSTS, which the daemon reads) was reported as
/// unknown.
#[test]
fn policy_check_catches_bad_fingerprints_shadowed_rules_names_and_remember() {
    let tmp = tempdir();
    let host_key = keygen(tmp.path(), "hostkey", "ed25519", None);
    let known = tmp.path().join("known_hosts");
    std::fs::write(
        &known,
        format!(
            "db1 {}",
            std::fs::read_to_string(host_key.with_extension("pub")).unwrap()
        ),
    )
    .unwrap();
    let check = |file: &std::path::Path| {
        run(Command::new(HOPWARD)
            .args(["policy", "check"])
            .arg(file)
            .env("HOME", tmp.path())
            .env("HOPWARD_KNOWN_HOSTS", &known))
    };

    let bad = tmp.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nname = \"old key\"\nkeys = [\"SHA256:abc\", \"MD5:de:ad:be:ef\"]\naction = \"deny\"\n",
    )
    .unwrap();
    let out = check(&bad);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let printed = stdout(&out);
    let b = bad.display();
    assert!(
        printed.contains(&format!(
            "{b}:3:9: keys: \"SHA256:abc\" is not a SHA256 fingerprint"
        )),
        "{printed}"
    );
    assert!(
        printed.contains(&format!(
            "{b}:3:23: keys: \"MD5:de:ad:be:ef\": MD5 fingerprints are not matched"
        )),
        "{printed}"
    );

    let file = tmp.path().join("policy.toml");
    std::fs::write(
        &file,
        "[[rule]]\nname = \"db\"\nhost = [\"db1\"]\naction = \"allow\"\nremember = \"10m\"\n\n\
         [[rule]]\naction = \"confirm\"\n\n\
         [[rule]]\nname = \"db\"\nhost = [\"db2\"]\naction = \"deny\"\n",
    )
    .unwrap();
    let out = check(&file);
    assert!(out.status.success(), "{}", text(&out));
    let printed = stdout(&out);
    let f = file.display();
    for expected in [
        format!("{f}:5:12: warning: remember only applies to action = \"confirm\""),
        format!("{f}:7:1: warning: this rule has no name; the log will call it \"rule 2 ({f}:7)\""),
        format!("{f}:11:8: warning: the name \"db\" is also used by the rule at line 1"),
        format!(
            "{f}:10:1: warning: \"db\" can never match: the rule \"rule 2 ({f}:7)\" at line 7 matches every request first"
        ),
        format!("{f}:12:9: warning: no known_hosts entry names \"db2\""),
    ] {
        assert!(
            printed.contains(&expected),
            "missing {expected:?} in:\n{printed}"
        );
    }
    assert!(
        !printed.contains("\"db1\", so"),
        "db1 is in $HOPWARD_KNOWN_HOSTS:\n{printed}"
    );

    // explain says when a name it was given is in no known_hosts file.
    let explain = |chain: &str| {
        stdout(&ok(run(Command::new(HOPWARD)
            .args(["policy", "explain", "--policy"])
            .arg(&file)
            .args(["--chain", chain])
            .env("HOME", tmp.path())
            .env("HOPWARD_KNOWN_HOSTS", &known))))
    };
    let out = explain("db2");
    assert!(
        out.contains("note:     no known_hosts file names \"db2\"") && out.contains("unknown host"),
        "{out}"
    );
    assert!(!explain("db1").contains("note:"));
}

/// explain says whether the daemon lists the key to a connection bound
/// through the chain, with the rule that hides it.
#[test]
fn policy_explain_says_whether_the_key_is_listed() {
    let tmp = tempdir();
    let file = tmp.path().join("policy.toml");
    std::fs::write(
        &file,
        "[defaults]\nlocal = \"allow\"\n\
         [[rule]]\nname = \"github key\"\nkeys = [\"gh\"]\nhost = [\"github.com\"]\naction = \"allow\"\n\
         [[rule]]\nname = \"github only with it\"\nhost = [\"github.com\"]\naction = \"deny\"\n",
    )
    .unwrap();
    let explain = |comment: &str, chain: &str| {
        stdout(&ok(run(Command::new(HOPWARD)
            .args(["policy", "explain", "--policy"])
            .arg(&file)
            .args(["--comment", comment, "--chain", chain]))))
    };
    let hidden = explain("work", "github.com");
    assert!(
        hidden.contains("listed:   no (github only with it refuses it"),
        "{hidden}"
    );
    let shown = explain("gh", "github.com");
    assert!(shown.contains("listed:   yes"), "{shown}");
    let elsewhere = explain("work", "example.com");
    assert!(elsewhere.contains("listed:   yes"), "{elsewhere}");
    let local = explain("work", "");
    assert!(
        local.contains("listed:   yes (a connection without session-bind"),
        "{local}"
    );
}

/// `[forwarded] brake` is a field `policy check` knows: a good one is
/// shown, a bad one is an error at its place.
#[test]
fn policy_check_knows_the_brake() {
    let tmp = tempdir();
    let file = tmp.path().join("policy.toml");
    std::fs::write(&file, "[forwarded]\nbrake = { hosts = 3, per = \"30s\" }\n").unwrap();
    let out = ok(run(Command::new(HOPWARD)
        .args(["policy", "check"])
        .arg(&file)));
    assert!(
        stdout(&out).contains(
            "brake: past 3 distinct destinations within 30s through one first forwarding hop"
        ),
        "{}",
        text(&out)
    );
    std::fs::write(
        &file,
        "[forwarded]\nbrake = { hosts = 3, per = \"soon\" }\n",
    )
    .unwrap();
    let out = run(Command::new(HOPWARD).args(["policy", "check"]).arg(&file));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stdout(&out).contains("policy.toml:2:28:"), "{}", text(&out));
    std::fs::write(
        &file,
        "[forwarded]\nbrake = { hosts = 3, per = \"1m\", burst = 2 }\n",
    )
    .unwrap();
    let out = run(Command::new(HOPWARD).args(["policy", "check"]).arg(&file));
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(stdout(&out).contains("burst"), "{}", text(&out));
}
