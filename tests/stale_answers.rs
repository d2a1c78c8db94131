//! A "yes" counts only while what it was given for still holds: a prompt
//! held open while its key is dropped (SIGUSR1, `ssh-add -D`, `-d`, a `-t`
//! lifetime ending), the agent is locked (`ssh-add -x`) or the policy is
//! reloaded is withdrawn, a late "yes" to it signs nothing, the audit says
//! what changed, and no remembered approval is left behind.
//!
//! Most run the agent in this process with a desk that holds every
//! question until the test answers it; one runs the real daemon with a
//! confirm command that waits for a file, and real `ssh-add` and
//! `ssh-keygen -Y sign`.

mod common;

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::served::{connect, ed25519_key, request};
use common::{Daemon, keygen, ok, session_bind_request, sign_request, tempdir, wait_until};
use hopward::confirm::Answer;
use hopward::policy::store::PolicyStore;
use hopward::ssh::wire::put_string;
use hopward::testing::fakes::HeldDesk;

const FAILURE: u8 = 5;
const SUCCESS: u8 = 6;
const SIGNED: u8 = 14;

const REMEMBER: &str = r#"
[defaults]
local = "allow"
forwarded = "confirm"
[[rule]]
name = "remember the bastion"
via = ["*"]
action = "confirm"
remember = "10m"
"#;

type Served = common::served::Served<HeldDesk>;

/// Serves `policy`, read from a file in the agent's directory (so it can
/// be rewritten and reloaded).
fn start(policy: &str) -> Served {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("policy.toml");
    std::fs::write(&path, policy).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    let parsed = hopward::policy::file::parse_file(&path).unwrap();
    let desk = HeldDesk::new();
    let handle = desk.desk();
    common::served::serve_in_process(dir, PolicyStore::new(Some(path), parsed), desk, handle)
}

/// Waits (polling, with a generous deadline) until `done` holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A sign request with `blob` through a forwarding hop (host 10), sent on
/// a connection of its own; resolves to the reply. Returns once its
/// question is open (the `asked`-th one).
async fn held_request(
    served: &Served,
    blob: &[u8],
    asked: usize,
) -> tokio::task::JoinHandle<Vec<u8>> {
    let mut c = connect(served).await;
    assert_eq!(
        request(&mut c, &session_bind_request(10, b"sid", true)).await,
        [SUCCESS]
    );
    let sign = sign_request(blob, b"data to sign");
    let pending = tokio::spawn(async move { request(&mut c, &sign).await });
    until("the question to be asked", || served.desk.asked() >= asked).await;
    pending
}

/// The last sign record's (decision, reason).
fn last_sign(served: &Served) -> (String, String) {
    served
        .records
        .seen()
        .into_iter()
        .rev()
        .find(|(event, ..)| event == "sign")
        .map(|(_, decision, reason)| (decision, reason))
        .expect("a sign record")
}

fn outcome(decision: &str, reason: &str) -> (String, String) {
    (decision.to_string(), reason.to_string())
}

/// The prompt held open is withdrawn (the desk saw its question closed),
/// the person's "yes" comes after, and the request is refused for
/// `reason` with no approval remembered.
async fn withdrawn_then_yes(
    served: &Served,
    pending: tokio::task::JoinHandle<Vec<u8>>,
    reason: &str,
) {
    until("the open prompt to be withdrawn", || {
        served.desk.withdrawn() == 1
    })
    .await;
    served.desk.answer(Answer::AllowedRemember);
    assert_eq!(pending.await.unwrap(), [FAILURE], "the late yes signed");
    assert_eq!(last_sign(served), outcome("deny", reason));
    assert!(
        served.agent.grants().list(Instant::now()).is_empty(),
        "a stale yes left an approval behind"
    );
}

/// SIGUSR1 during the prompt: withdrawn, refused; the key added again is
/// asked about again (no approval was stored from the stale yes), and the
/// fresh yes is remembered as usual.
#[tokio::test]
async fn sigusr1_during_a_prompt_refuses_the_late_yes_and_remembers_nothing() {
    let served = start(REMEMBER);
    let mut owner = connect(&served).await;
    let (blob, add) = ed25519_key(1, None);
    assert_eq!(request(&mut owner, &add).await, [SUCCESS]);
    let pending = held_request(&served, &blob, 1).await;
    served.agent.drop_keys_and_approvals();
    withdrawn_then_yes(&served, pending, "key-removed").await;

    assert_eq!(request(&mut owner, &add).await, [SUCCESS]);
    let again = held_request(&served, &blob, 2).await;
    assert_eq!(again.await.unwrap()[0], SIGNED);
    assert_eq!(served.desk.asked(), 2, "asked again after the re-add");
    assert_eq!(last_sign(&served), outcome("allow", "confirmed"));
    let remembered = held_request(&served, &blob, 2).await;
    assert_eq!(remembered.await.unwrap()[0], SIGNED);
    assert_eq!(last_sign(&served), outcome("allow", "remembered"));
}

#[tokio::test]
async fn ssh_add_d_all_during_a_prompt_refuses_the_late_yes() {
    let served = start(REMEMBER);
    let mut owner = connect(&served).await;
    let (blob, add) = ed25519_key(2, None);
    assert_eq!(request(&mut owner, &add).await, [SUCCESS]);
    let pending = held_request(&served, &blob, 1).await;
    assert_eq!(request(&mut owner, &[19]).await, [SUCCESS]);
    withdrawn_then_yes(&served, pending, "key-removed").await;
}

/// `ssh-add -d` of the key asked about withdraws its prompt; a prompt
/// about another key stays open and its yes still signs.
#[tokio::test]
async fn ssh_add_d_during_a_prompt_refuses_the_late_yes_for_that_key_only() {
    let served = start(REMEMBER);
    let mut owner = connect(&served).await;
    let (blob, add) = ed25519_key(3, None);
    let (other, add_other) = ed25519_key(4, None);
    assert_eq!(request(&mut owner, &add).await, [SUCCESS]);
    assert_eq!(request(&mut owner, &add_other).await, [SUCCESS]);
    let pending = held_request(&served, &blob, 1).await;
    let bystander = held_request(&served, &other, 2).await;
    let mut remove = vec![18];
    put_string(&mut remove, &blob);
    assert_eq!(request(&mut owner, &remove).await, [SUCCESS]);
    until("the open prompt to be withdrawn", || {
        served.desk.withdrawn() == 1
    })
    .await;
    served.desk.answer(Answer::AllowedRemember);
    assert_eq!(pending.await.unwrap(), [FAILURE], "the late yes signed");
    assert_eq!(bystander.await.unwrap()[0], SIGNED);
    assert_eq!(served.desk.withdrawn(), 1, "only the removed key's prompt");
    let mut signs: Vec<_> = served
        .records
        .seen()
        .into_iter()
        .filter(|(event, ..)| event == "sign")
        .map(|(_, decision, reason)| (decision, reason))
        .collect();
    signs.sort();
    assert_eq!(
        signs,
        [
            outcome("allow", "confirmed"),
            outcome("deny", "key-removed")
        ]
    );
    // Only the bystander's yes is remembered.
    assert_eq!(served.agent.grants().list(Instant::now()).len(), 1);
}

#[tokio::test]
async fn ssh_add_x_during_a_prompt_refuses_the_late_yes() {
    let served = start(REMEMBER);
    let mut owner = connect(&served).await;
    let (blob, add) = ed25519_key(5, None);
    assert_eq!(request(&mut owner, &add).await, [SUCCESS]);
    let pending = held_request(&served, &blob, 1).await;
    let mut lock = vec![22];
    put_string(&mut lock, b"passphrase");
    assert_eq!(request(&mut owner, &lock).await, [SUCCESS]);
    // Unlocked again before the answer: the lock still happened.
    let mut unlock = vec![23];
    put_string(&mut unlock, b"passphrase");
    until("the open prompt to be withdrawn", || {
        served.desk.withdrawn() == 1
    })
    .await;
    assert_eq!(request(&mut owner, &unlock).await, [SUCCESS]);
    withdrawn_then_yes(&served, pending, "locked").await;
}

#[tokio::test]
async fn a_lifetime_ending_during_a_prompt_refuses_the_late_yes() {
    let served = start(REMEMBER);
    let mut owner = connect(&served).await;
    // Three seconds: the question is open long before it ends (even on a
    // loaded machine), and the reaper ends it while the prompt waits.
    let (blob, add) = ed25519_key(6, Some(3));
    assert_eq!(request(&mut owner, &add).await, [SUCCESS]);
    let pending = held_request(&served, &blob, 1).await;
    withdrawn_then_yes(&served, pending, "key-expired").await;
}

/// The policy is rewritten to deny while the prompt waits: the old rule's
/// yes signs nothing, and the new rule refuses without asking.
#[tokio::test]
async fn a_reload_to_deny_during_a_prompt_refuses_the_late_yes() {
    let served = start(REMEMBER);
    let mut owner = connect(&served).await;
    let (blob, add) = ed25519_key(7, None);
    assert_eq!(request(&mut owner, &add).await, [SUCCESS]);
    let pending = held_request(&served, &blob, 1).await;
    let path = served.dir.as_ref().unwrap().path().join("policy.toml");
    std::fs::write(
        &path,
        "[[rule]]\nname = \"nothing through a bastion\"\nvia = [\"*\"]\naction = \"deny\"\n",
    )
    .unwrap();
    served.agent.reload_policy();
    withdrawn_then_yes(&served, pending, "policy-changed").await;
    let mut c = connect(&served).await;
    assert_eq!(
        request(&mut c, &session_bind_request(10, b"sid", true)).await,
        [SUCCESS]
    );
    assert_eq!(
        request(&mut c, &sign_request(&blob, b"data to sign")).await,
        [FAILURE]
    );
    assert_eq!(
        last_sign(&served),
        outcome("deny", "nothing through a bastion")
    );
    assert_eq!(served.desk.asked(), 1);
}

/// A confirm command that records its pid in `asked` (one line per
/// question) and answers yes once the file `go` exists.
fn waiting_confirmer(dir: &Path) -> PathBuf {
    let script = dir.join("confirm.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nd={}\necho $$ >> $d/asked\n\
             while [ ! -e $d/go ]; do sleep 0.05; done\nexit 0\n",
            dir.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    script
}

fn asked(dir: &Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("asked"))
        .unwrap_or_default()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect()
}

/// Whether `pid` has ended (gone, or a zombie nobody reaped yet).
fn ended(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

fn sign_file(agent: &Daemon, key: &Path, data: &Path) -> std::process::Child {
    let _ = std::fs::remove_file(data.with_extension("sig"));
    Command::new("ssh-keygen")
        .args(["-Y", "sign", "-n", "file", "-f"])
        .arg(key.with_extension("pub"))
        .arg(data)
        .env("SSH_AUTH_SOCK", &agent.sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("run ssh-keygen")
}

/// The real daemon: SIGUSR1 while `ssh-keygen -Y sign` waits on the
/// confirm command. The command is ended (the prompt withdrawn), the
/// late yes signs nothing, the audit says `key-removed`; after `ssh-add`
/// again the next signature is asked about again (`remember = "10m"`
/// kept nothing from the stale yes).
#[test]
fn the_daemon_withdraws_a_prompt_on_sigusr1_and_the_late_yes_signs_nothing() {
    let tmp = tempdir();
    let confirm = waiting_confirmer(tmp.path());
    let agent = Daemon::builder()
        .policy(&format!(
            "[defaults]\nlocal = \"confirm\"\n[confirm]\nmethod = \"command\"\n\
             command = [\"{}\"]\ntimeout = \"120s\"\n\
             [[rule]]\nname = \"files\"\npurpose = \"file\"\naction = \"confirm\"\nremember = \"10m\"\n",
            confirm.display()
        ))
        .start();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let data = tmp.path().join("data");
    std::fs::write(&data, "x").unwrap();

    let mut signing = sign_file(&agent, &key, &data);
    wait_until(
        "the confirm command to be asked",
        Duration::from_secs(20),
        || asked(tmp.path()).len() == 1,
    );
    let prompt = asked(tmp.path())[0];
    ok(common::run(
        Command::new("kill").args(["-USR1", &agent.pid().to_string()]),
    ));
    wait_until(
        "the prompt to be withdrawn",
        Duration::from_secs(20),
        || ended(prompt),
    );
    std::fs::write(tmp.path().join("go"), "").unwrap();
    assert!(!signing.wait().unwrap().success(), "the late yes signed");
    let refused = agent.wait_audit("the refused signature", |l| l["event"] == "sign");
    assert_eq!(
        (&refused["decision"], &refused["reason"]),
        (&"deny".into(), &"key-removed".into()),
        "{refused}"
    );

    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    assert!(sign_file(&agent, &key, &data).wait().unwrap().success());
    assert_eq!(
        asked(tmp.path()).len(),
        2,
        "not asked again after the re-add"
    );
    assert_eq!(
        agent.outcomes(2, |l| l["event"] == "sign"),
        [
            outcome("deny", "key-removed"),
            outcome("allow", "confirmed")
        ]
    );
}

/// Over a real session bus: `ssh-add -D` while a desktop prompt is shown
/// closes the notification at once (not at its timeout), and the request
/// is refused as `key-removed`.
#[test]
fn ssh_add_d_all_closes_the_open_desktop_notification() {
    use common::notifier::{Bus, Mode};
    let bus = Bus::with_notifier(Mode::Silent, Duration::ZERO);
    let tmp = tempdir();
    let agent = Daemon::builder()
        .policy("[defaults]\nlocal = \"confirm\"\n[confirm]\nmethod = \"desktop\"\ntimeout = \"120s\"\n")
        .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
        .start();
    let key = keygen(tmp.path(), "k", "ed25519", None);
    ok(agent.ssh_add(&[key.to_str().unwrap()]));
    let data = tmp.path().join("data");
    std::fs::write(&data, "x").unwrap();
    let mut signing = sign_file(&agent, &key, &data);
    let id = bus.wait_shown(1)[0].id;
    ok(agent.ssh_add(&["-D"]));
    wait_until(
        "the notification to be closed",
        Duration::from_secs(20),
        || bus.closed().contains(&id),
    );
    assert!(!signing.wait().unwrap().success());
    assert_eq!(
        agent.outcomes(1, |l| l["event"] == "sign"),
        [outcome("deny", "key-removed")]
    );
}
