//! hopward in a desktop session: the socket unit under a real `systemd
//! --user` manager, audit records in a real journald, and `doctor` and
//! `install` finding the other agents a desktop starts.
//!
//! The manager and journald each run in a private mount namespace (`unshare
//! -m`, as root or through `sudo -n`) with tmpfs over /run/systemd (and the
//! journal's directories), so neither touches the machine's own; every
//! other file is in the test's temporary directory.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::Command;

use common::*;

/// A runtime directory as systemd wants one (0700).
fn runtime_dir(root: &Path) -> std::path::PathBuf {
    let run = root.join("run");
    std::fs::create_dir_all(&run).unwrap();
    std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
    run
}

/// Runs `script` with sh in a new mount namespace, environment `env` only.
fn in_namespace(script: &str, env: &[(&str, &Path)]) -> std::process::Output {
    let mut cmd = privileged("unshare");
    cmd.args(["-m", "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin"]);
    for (name, value) in env {
        cmd.arg(format!("{name}={}", value.display()));
    }
    cmd.args(["sh", "-euc", script]);
    run(&mut cmd)
}

/// What the user manager does with the units `hopward install` writes:
/// start the socket, stop both. Lines `ENV ...`, `LIST ...`, `STATE ...`.
const MANAGER: &str = r#"
mount -t tmpfs tmpfs /run/systemd
mkdir /run/systemd/system   # "booted with systemd", in this namespace only
export HOME XDG_RUNTIME_DIR
/lib/systemd/systemd --user >"$HOME/manager.log" 2>&1 &
manager=$!
trap 'systemctl --user exit 2>/dev/null || kill $manager; wait $manager || true' EXIT
i=0
until systemctl --user is-system-running >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -lt 500 ] || { echo "no manager"; cat "$HOME/manager.log"; exit 1; }
    sleep 0.02
done
systemctl --user start hopward.socket
echo "ENV $(systemctl --user show-environment | grep '^SSH_AUTH_SOCK=' || true)"
echo "LIST $(SSH_AUTH_SOCK=$XDG_RUNTIME_DIR/hopward/agent.sock ssh-add -l 2>&1 || true)"
echo "STATE $(systemctl --user is-active hopward.service || true)"
systemctl --user stop hopward.socket hopward.service
echo "ENV-AFTER $(systemctl --user show-environment | grep '^SSH_AUTH_SOCK=' || true)"
for unit in hopward.socket hopward.service; do
    echo "STATE-AFTER $unit $(systemctl --user show -p ActiveState,Result --value $unit | paste -sd, -)"
done
"#;

/// Failed before: the socket unit set nothing in the manager's environment,
/// so programs the session started did not find hopward.
#[test]
fn the_socket_unit_exports_ssh_auth_sock_while_it_listens_and_stops_clean() {
    let dir = tempdir();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let run_dir = runtime_dir(dir.path());
    let bin = shared_binary(dir.path());
    ok(run(Command::new(HOPWARD)
        .args(["install", "--user", "--keep-others", "--bin"])
        .arg(&bin)
        .env("HOME", &home)
        .env("XDG_RUNTIME_DIR", &run_dir)
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")));
    let out = in_namespace(MANAGER, &[("HOME", &home), ("XDG_RUNTIME_DIR", &run_dir)]);
    let said = stdout(&out);
    assert!(out.status.success(), "{}", text(&out));
    let sock = run_dir.join("hopward/agent.sock");
    let line = |tag: &str| {
        said.lines()
            .find_map(|l| l.strip_prefix(&format!("{tag} ")))
            .unwrap_or_else(|| panic!("no {tag} in {said}"))
            .to_string()
    };
    assert_eq!(line("ENV"), format!("SSH_AUTH_SOCK={}", sock.display()));
    assert_eq!(line("LIST"), "The agent has no identities.");
    assert_eq!(line("STATE"), "active");
    assert_eq!(line("ENV-AFTER"), "", "stopping takes SSH_AUTH_SOCK out");
    for unit in ["hopward.socket", "hopward.service"] {
        let mut state: Vec<String> = line(&format!("STATE-AFTER {unit}"))
            .split(',')
            .map(str::to_string)
            .collect();
        state.sort();
        assert_eq!(
            state,
            ["inactive", "success"],
            "stopped, not failed: {said}"
        );
    }
}

/// A real journald for the script, writing under $JOURNAL: the daemon with
/// `[audit] journald = true` adds a key and signs once, then journalctl and
/// `hopward log --journal` read what it sent.
const JOURNAL: &str = r#"
mount -t tmpfs tmpfs /run/systemd
mkdir -p /run/log && mount --bind "$JOURNAL" /run/log
mount -t tmpfs tmpfs /var/log/journal 2>/dev/null || true
SYSTEMD_LOG_TARGET=console /lib/systemd/systemd-journald >"$DIR/journald.log" 2>&1 &
journald=$!
trap 'kill $daemon $journald 2>/dev/null || true; wait || true' EXIT
i=0
until [ -S /run/systemd/journal/socket ]; do
    i=$((i + 1)); [ $i -lt 500 ] || { cat "$DIR/journald.log"; exit 1; }
    sleep 0.02
done
export XDG_CONFIG_HOME="$DIR/config" XDG_STATE_HOME="$DIR/state" HOME="$DIR"
"$HOPWARD" daemon -D -a "$DIR/agent.sock" --policy "$DIR/policy.toml" 2>"$DIR/daemon.log" &
daemon=$!
i=0
until [ -S "$DIR/agent.sock" ]; do
    i=$((i + 1)); [ $i -lt 500 ] || { cat "$DIR/daemon.log"; exit 1; }
    sleep 0.02
done
export SSH_AUTH_SOCK="$DIR/agent.sock"
ssh-add -q "$DIR/key"
echo hello >"$DIR/data"
ssh-keygen -q -Y sign -n file -f "$DIR/key.pub" "$DIR/data"
"$HOPWARD" status --json -a "$DIR/agent.sock" | sed -n 's/^ *"dropped_records": \(.*\),$/DROPPED \1/p'
kill $daemon; wait $daemon || true                          # flushes the audit log
i=0
until [ "$(journalctl -q -o json MESSAGE_ID=e6907a719856490fad29c3474d12f05a EVENT=sign | wc -l)" -ge 1 ]; do
    i=$((i + 1)); [ $i -lt 500 ] || { echo "nothing in the journal"; exit 1; }
    sleep 0.02
done
echo "RAW $(journalctl -q -o json MESSAGE_ID=e6907a719856490fad29c3474d12f05a EVENT=sign)"
"$HOPWARD" log --journal --json --decision allow | sed 's/^/LOG /'
"$HOPWARD" log --journal | sed 's/^/TEXT /'
"#;

/// Failed before: `journald` was an unknown key and nothing reached the
/// journal.
#[test]
fn journald_gets_every_record_as_fields_and_hopward_log_reads_them_back() {
    let dir = tempdir();
    let root = dir.path();
    std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let journal = root.join("journal");
    std::fs::create_dir_all(&journal).unwrap();
    let key = keygen(root, "key", "ed25519", None);
    assert_eq!(key, root.join("key"));
    std::fs::write(
        root.join("policy.toml"),
        format!(
            "[audit]\njournald = true\npath = \"{}\"\n",
            root.join("audit.jsonl").display()
        ),
    )
    .unwrap();
    let check = run(Command::new(HOPWARD)
        .args(["policy", "check"])
        .arg(root.join("policy.toml")));
    assert!(check.status.success(), "{}", text(&check));
    let out = in_namespace(
        JOURNAL,
        &[
            ("DIR", root),
            ("JOURNAL", &journal),
            ("HOPWARD", Path::new(HOPWARD)),
        ],
    );
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert_eq!(
        said.lines().find_map(|l| l.strip_prefix("DROPPED ")),
        Some("0"),
        "status shows the journal and nothing dropped: {said}"
    );
    let raw: serde_json::Value = serde_json::from_str(
        said.lines()
            .find_map(|l| l.strip_prefix("RAW "))
            .unwrap_or_else(|| panic!("{said}")),
    )
    .unwrap();
    // The file's record, field by field, upper-cased.
    let file = std::fs::read_to_string(root.join("audit.jsonl")).unwrap();
    let record: serde_json::Value = file
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["event"] == "sign")
        .unwrap_or_else(|| panic!("no sign record in {file}"));
    for field in [
        "ts", "event", "decision", "key", "comment", "rule", "reason", "class",
    ] {
        assert_eq!(
            raw[field.to_ascii_uppercase()].as_str(),
            record[field].as_str(),
            "{field}: {raw:#}"
        );
    }
    assert_eq!(raw["PEER_UID"], record["peer"]["uid"].to_string());
    assert_eq!(raw["SYSLOG_IDENTIFIER"], "hopward");
    assert_eq!(raw["PRIORITY"], "6");
    assert_eq!(raw["_TRANSPORT"], "journal", "the native protocol");
    assert!(
        raw["MESSAGE"].as_str().unwrap().starts_with("allow sign "),
        "{raw:#}"
    );
    // hopward log --journal gives back the file's records (but for null
    // fields, which the journal does not hold).
    let logged: Vec<serde_json::Value> = said
        .lines()
        .filter_map(|l| l.strip_prefix("LOG "))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let from_file: Vec<serde_json::Value> = file
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|r| r["decision"] == "allow")
        .map(without_nulls)
        .collect();
    assert_eq!(logged, from_file, "{said}");
    let text_lines: Vec<&str> = said
        .lines()
        .filter_map(|l| l.strip_prefix("TEXT "))
        .collect();
    assert!(text_lines[0].starts_with("TIME"), "{said}");
    assert!(
        text_lines
            .iter()
            .any(|l| l.contains("sign") && l.contains("allow")),
        "{said}"
    );
}

fn without_nulls(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => map
            .into_iter()
            .filter(|(_, v)| !v.is_null())
            .map(|(k, v)| (k, without_nulls(v)))
            .collect(),
        other => other,
    }
}

#[test]
fn policy_check_knows_journald_and_its_type() {
    let dir = tempdir();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[audit]\njournald = \"yes\"\n").unwrap();
    let out = run(Command::new(HOPWARD).args(["policy", "check"]).arg(&bad));
    assert!(!out.status.success(), "{}", text(&out));
    assert!(
        stdout(&out).contains("bad.toml:2:") && stdout(&out).contains("expected a boolean"),
        "{}",
        text(&out)
    );
}

/// Runs `hopward ARGS` in a home of its own: `home`, with the runtime
/// directory and the systemd unit data directory of the test.
fn in_home(root: &Path, args: &[&str]) -> std::process::Output {
    run(Command::new(HOPWARD)
        .args(args)
        .env("HOME", root.join("home"))
        .env("XDG_RUNTIME_DIR", root.join("run"))
        .env("XDG_DATA_DIRS", root.join("share"))
        .env("XDG_CONFIG_DIRS", root.join("xdg"))
        .env("SSH_AUTH_SOCK", root.join("home/.1password/agent.sock"))
        .env_remove("XDG_CONFIG_HOME")
        .env_remove("XDG_DATA_HOME")
        .env_remove("GNUPGHOME")
        .env_remove("DBUS_SESSION_BUS_ADDRESS"))
}

/// Failed before: doctor looked for other agents only by process and by
/// asking a user manager, so a socket-activated gcr, a 1Password socket and
/// gpg-agent's ssh support went unseen.
#[test]
fn doctor_names_the_other_agents_and_install_hands_over_from_them() {
    let dir = tempdir();
    let root = dir.path();
    let home = root.join("home");
    runtime_dir(root);
    // gcr as a distribution ships it, enabled by the user.
    let units = root.join("share/systemd/user");
    std::fs::create_dir_all(&units).unwrap();
    std::fs::write(
        units.join("gcr-ssh-agent.socket"),
        "[Socket]\nListenStream=%t/gcr/ssh\n[Install]\nWantedBy=sockets.target\n",
    )
    .unwrap();
    std::fs::write(units.join("gcr-ssh-agent.service"), "[Service]\n").unwrap();
    let wants = home.join(".config/systemd/user/sockets.target.wants");
    std::fs::create_dir_all(&wants).unwrap();
    std::os::unix::fs::symlink(
        units.join("gcr-ssh-agent.socket"),
        wants.join("gcr-ssh-agent.socket"),
    )
    .unwrap();
    // 1Password listening, and SSH_AUTH_SOCK pointing at it.
    std::fs::create_dir_all(home.join(".1password")).unwrap();
    let op = std::os::unix::net::UnixListener::bind(home.join(".1password/agent.sock")).unwrap();
    // It answers what it does not know, as an agent does: SSH_AGENT_FAILURE.
    std::thread::spawn(move || {
        for mut conn in op.incoming().flatten() {
            let _ = std::io::Write::write_all(&mut conn, &[0, 0, 0, 1, 5]);
        }
    });
    // gpg-agent with ssh support.
    std::fs::create_dir_all(home.join(".gnupg")).unwrap();
    std::fs::write(home.join(".gnupg/gpg-agent.conf"), "enable-ssh-support\n").unwrap();

    let doctor = || {
        let none = root.join("run/none.sock");
        let out = in_home(root, &["doctor", "--json", "-a", none.to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(1), "{}", text(&out));
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let find = |name: &str| {
            report["checks"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["check"] == name)
                .unwrap_or_else(|| panic!("no {name}: {report:#}"))
                .clone()
        };
        (find("other-agents"), find("ssh-auth-sock"))
    };
    let (others, auth) = doctor();
    assert_eq!(others["ok"], false);
    let message = others["message"].as_str().unwrap();
    let fix = others["fix"].as_str().unwrap();
    assert!(
        message.contains("gcr-ssh-agent (gcr-ssh-agent.socket enabled)"),
        "{message}"
    );
    assert!(
        message.contains("1Password's SSH agent (listening on"),
        "{message}"
    );
    assert!(message.contains("gpg-agent's ssh support"), "{message}");
    assert!(
        fix.contains("systemctl --user mask --now gcr-ssh-agent.socket gcr-ssh-agent.service"),
        "{fix}"
    );
    assert!(fix.contains("Settings > Developer"), "{fix}");
    assert!(
        auth["message"]
            .as_str()
            .unwrap()
            .contains("is not hopward but 1Password's SSH agent"),
        "{auth:#}"
    );

    let out = in_home(
        root,
        &["install", "--user", "--hand-over", "--bin", HOPWARD],
    );
    assert!(out.status.success(), "{}", text(&out));
    let said = stdout(&out);
    assert!(said.contains("masked gcr-ssh-agent.socket"), "{said}");
    assert!(said.contains("yours to do: 1Password"), "{said}");
    assert_eq!(
        std::fs::read_link(home.join(".config/systemd/user/gcr-ssh-agent.socket")).unwrap(),
        Path::new("/dev/null")
    );
    let (others, _) = doctor();
    let message = others["message"].as_str().unwrap();
    assert!(!message.contains("gcr-ssh-agent"), "{message}");
    assert!(!message.contains("gpg-agent"), "{message}");
    assert!(message.contains("1Password"), "{message}");
}
