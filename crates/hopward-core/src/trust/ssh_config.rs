//! The names ssh records a host under in known_hosts, for the host names a
//! policy's rules use: `[name]:port` for each port of `[known_hosts] ports`,
//! and what the user's ssh_config makes of the name, asked of `ssh -G`
//! (`HostKeyAlias`, else `HostName`, as `[hostname]:port` off port 22).
//!
//! Why: a hashed known_hosts entry can only be checked against a name
//! given in full, and ssh hashes `[db2]:2222`, not `db2`, for a host on
//! another port; a deny rule for `db2` would miss it.
//!
//! `ssh -G` is OpenSSH's own reading of its configuration (Include, Match,
//! first value wins), so nothing is guessed; it is run once per name when
//! a policy is loaded, never while a request waits, with a deadline.

use std::collections::HashMap;
use std::io::Read as _;
use std::time::{Duration, Instant};

/// At most this many names are asked about per policy load.
const MAX_NAMES: usize = 64;
/// Each `ssh -G` gets this long; all of them together, [`TOTAL`].
const EACH: Duration = Duration::from_secs(2);
const TOTAL: Duration = Duration::from_secs(5);

/// The other names under which known_hosts may hold each of `names`
/// (lower-cased), from `ports` and, when `ask_ssh`, from `ssh -G`.
pub fn lookup_names(
    names: &[String],
    ports: &[u16],
    ask_ssh: bool,
) -> HashMap<String, Vec<String>> {
    let started = Instant::now();
    let mut out: HashMap<String, Vec<String>> = HashMap::new();
    for name in names.iter().take(MAX_NAMES) {
        let name = name.to_ascii_lowercase();
        let mut forms: Vec<String> = ports.iter().map(|p| format!("[{name}]:{p}")).collect();
        if ask_ssh && started.elapsed() < TOTAL {
            if let Some(recorded) = ask(&name).filter(|r| *r != name) {
                if !forms.contains(&recorded) {
                    forms.push(recorded);
                }
            }
        }
        if !forms.is_empty() {
            out.insert(name, forms);
        }
    }
    out
}

/// What `ssh -G NAME` says ssh would look the host up as in known_hosts.
fn ask(name: &str) -> Option<String> {
    // Only plain host names: nothing that ssh could read as an option or
    // a user@host.
    if name.is_empty()
        || name.starts_with('-')
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-:".contains(&b))
    {
        return None;
    }
    let mut cmd = std::process::Command::new("ssh");
    if let Some(config) = std::env::var_os("HOPWARD_SSH_CONFIG").filter(|c| !c.is_empty()) {
        cmd.arg("-F").arg(config);
    }
    let mut child = cmd
        .args(["-G", "--", name])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map_err(|e| tracing::debug!("cannot run ssh -G {name}: {e}"))
        .ok()?;
    let deadline = Instant::now() + EACH;
    loop {
        match child.try_wait() {
            Ok(Some(status)) if status.success() => break,
            Ok(Some(_)) | Err(_) => return None,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                tracing::warn!(
                    "ssh -G {name} took longer than {EACH:?}; its ssh_config is not used"
                );
                return None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    let mut text = String::new();
    child
        .stdout
        .take()?
        .take(1 << 20)
        .read_to_string(&mut text)
        .ok()?;
    recorded_name(&text)
}

/// The known_hosts name in `ssh -G` output: `hostkeyalias` if set, else
/// `hostname`, bracketed with the port unless it is 22 (as ssh's
/// `put_host_port`).
pub(crate) fn recorded_name(output: &str) -> Option<String> {
    let mut hostname = None;
    let mut port = None;
    let mut alias = None;
    for line in output.lines() {
        let Some((key, value)) = line.split_once(' ') else {
            continue;
        };
        match key {
            "hostname" => hostname = Some(value.trim().to_ascii_lowercase()),
            "port" => port = value.trim().parse::<u16>().ok(),
            "hostkeyalias" if !value.trim().is_empty() && value.trim() != "none" => {
                alias = Some(value.trim().to_ascii_lowercase());
            }
            _ => {}
        }
    }
    if alias.is_some() {
        return alias;
    }
    let hostname = hostname.filter(|h| !h.is_empty())?;
    match port {
        Some(22) | None => Some(hostname),
        Some(p) => Some(format!("[{hostname}]:{p}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssh_g_output_gives_the_name_ssh_records() {
        assert_eq!(
            recorded_name("user me\nhostname 10.0.0.5\nport 2222\n").as_deref(),
            Some("[10.0.0.5]:2222")
        );
        assert_eq!(
            recorded_name("hostname DB2\nport 22\n").as_deref(),
            Some("db2")
        );
        assert_eq!(
            recorded_name("hostname 10.0.0.5\nport 2222\nhostkeyalias db2\n").as_deref(),
            Some("db2")
        );
        assert_eq!(recorded_name("port 22\n"), None);
    }

    #[test]
    fn ports_give_bracketed_names_and_odd_names_are_not_asked_about() {
        let names = lookup_names(&["DB2".into()], &[2222, 2200], false);
        assert_eq!(names["db2"], vec!["[db2]:2222", "[db2]:2200"]);
        assert!(lookup_names(&["db2".into()], &[], false).is_empty());
        assert_eq!(ask("-oProxyCommand=x"), None);
        assert_eq!(ask("a b"), None);
    }
}
