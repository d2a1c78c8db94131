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
