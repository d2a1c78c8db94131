//! OpenSSH's own agent regression scripts (Debian package openssh-tests) with
//! hopward standing in for ssh-agent through a one-line wrapper.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;

use common::*;

/// Runs OpenSSH regression scripts with hopward's built-in policy. That
/// policy asks before a signature through a forwarded agent, so the agent
/// gets an askpass program that answers yes and records each question;
/// returns how many questions were asked.
fn regress(tests: &[&str]) -> usize {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/openssh/regress.sh");
    assert!(
        Path::new("/usr/lib/openssh/regress/run-tests").exists(),
        "openssh-tests is missing: scripts/test.sh installs it"
    );
    let tmp = tempdir();
    let bin = shared_binary(tmp.path());
    let wrapper = tmp.path().join("ssh-agent");
    std::fs::write(
        &wrapper,
        format!("#!/bin/sh\nexec {} daemon \"$@\"\n", bin.display()),
    )
    .unwrap();
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let work = tmp.path().join("work");
    let asked = tmp.path().join("asked");
    let askpass = tmp.path().join("askpass-yes");
    std::fs::write(
        &askpass,
        format!(
            "#!/bin/sh\necho \"$HOPWARD_CHAIN\" >> {}\necho yes\n",
            asked.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&askpass, std::fs::Permissions::from_mode(0o755)).unwrap();
    // The suite refuses to run as root, so it runs as the test user.
    let mut cmd = {
        require_root_and_test_user();
        ok(run(privileged("chown").arg(TEST_USER).arg(tmp.path())));
        let mut c = privileged("runuser");
        c.args(["-u", TEST_USER, "--"]);
        c.arg(&script);
        c
    };
    // Keep the suite away from the invoking user's own agent and state.
    cmd.arg(&wrapper)
        .arg(&work)
        .args(tests)
        .current_dir(tmp.path());
    cmd.env_remove("SSH_AUTH_SOCK")
        .env_remove("SSH_AGENT_PID")
        .env_remove("XDG_RUNTIME_DIR");
    cmd.env("XDG_STATE_HOME", tmp.path().join("state"));
    cmd.env("SSH_ASKPASS", &askpass)
        .env("SSH_ASKPASS_REQUIRE", "force");
    cmd.env_remove("HOPWARD_POLICY")
        .env("XDG_CONFIG_HOME", tmp.path().join("config"));
    let out = run(&mut cmd);
    let printed = text(&out);
    assert!(out.status.success(), "{printed}");
    for t in tests {
        assert!(
            printed.contains(&format!("run test {t}.sh")),
            "{t} did not run:\n{printed}"
        );
    }
    assert!(!printed.contains("FAIL"), "{printed}");
    std::fs::read_to_string(&asked).map_or(0, |t| t.lines().count())
}

#[test]
fn openssh_agent_sh() {
    let asked = regress(&["agent"]);
    // agent.sh logs in through a forwarded agent: the default policy asked.
    assert!(asked >= 1, "the forwarded login was not confirmed");
}

#[test]
fn openssh_agent_timeout_sh() {
    regress(&["agent-timeout"]);
}

#[test]
fn openssh_agent_subprocess_sh() {
    regress(&["agent-subprocess"]);
}

#[test]
fn openssh_agent_restrict_sh() {
    regress(&["agent-restrict"]);
}
