//! Logging in to real sshd instances on loopback through hopward.

mod common;

use common::sshd::Hosts;
use common::*;

#[test]
fn login_with_every_key_type_through_the_agent() {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["server"]);
    let agent = Daemon::start();
    let ca = keygen(tmp.path(), "ca", "ed25519", None);
    for (name, kind, bits) in KEY_TYPES {
        let key = keygen(tmp.path(), name, kind, *bits);
        certify(&ca, &key);
        ok(agent.ssh_add(&[key.to_str().unwrap()]));
        std::fs::remove_file(&key).unwrap();
    }
    for (name, _, _) in KEY_TYPES {
        // Only this key is authorized, and only the agent holds its private half.
        std::fs::write(&hosts.authorized_keys, "").unwrap();
        let pubkey = tmp.path().join(format!("{name}.pub"));
        hosts.authorize(&pubkey);
        let out = hosts.ssh(
            &agent.sock,
            &[
                "-i",
                pubkey.to_str().unwrap(),
                "-o",
                "IdentitiesOnly=yes",
                "server",
                "echo logged-in",
            ],
        );
        assert!(stdout(&out).contains("logged-in"), "{name}: {}", text(&out));
    }
    // A certificate login: authorize the CA instead of the keys.
    let ca_pub = std::fs::read_to_string(ca.with_extension("pub")).unwrap();
    std::fs::write(
        &hosts.authorized_keys,
        format!("cert-authority,principals=\"me\" {ca_pub}"),
    )
    .unwrap();
    for (name, _, _) in KEY_TYPES {
        let cert = tmp.path().join(format!("{name}-cert.pub"));
        let out = hosts.ssh(
            &agent.sock,
            &[
                "-i",
                cert.to_str().unwrap(),
                "-o",
                "IdentitiesOnly=yes",
                "server",
                "echo cert-ok",
            ],
        );
        assert!(
            stdout(&out).contains("cert-ok"),
            "{name} certificate: {}",
            text(&out)
        );
    }
}

#[test]
fn forwarded_agent_logs_in_to_a_second_host() {
    let tmp = tempdir();
    let hosts = Hosts::start(tmp.path(), &["bastion", "target"]);
    let agent = Daemon::builder().policy(ALLOW_ALL).start();
    let key = keygen(tmp.path(), "id", "ed25519", None);
    hosts.authorize(&key.with_extension("pub"));
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    std::fs::remove_file(&key).unwrap();

    let inner = format!(
        "ssh-add -l; {}",
        hosts.inner_ssh("target echo reached-target")
    );
    let out = hosts.ssh(&agent.sock, &["-A", "bastion", &inner]);
    let printed = stdout(&out);
    assert!(printed.contains("reached-target"), "{}", text(&out));
    assert!(
        printed.contains(" id (ED25519)"),
        "forwarded ssh-add -l on bastion: {}",
        text(&out)
    );

    // Without -A the bastion has no agent and cannot go on.
    let out = hosts.ssh(&agent.sock, &["bastion", &hosts.inner_ssh("target true")]);
    assert!(!out.status.success(), "{}", text(&out));
}
