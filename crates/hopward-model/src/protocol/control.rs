//! The messages of the `control@hopward` extension (`hopward status`,
//! `lock --forwarded`, `grants`, `learn-host`): one set of types, written
//! by the agent and read by the command line.
//!
//! On the wire each message is JSON with its keys in sorted order, as it
//! always was ([`to_wire`]); a reader takes what it knows and leaves out
//! what it does not, so an older agent's answer still reads (missing
//! fields take their defaults).

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer, Serialize};

/// The extension name.
pub const EXTENSION: &str = "control@hopward";

/// A request, tagged by its `op`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum ControlRequest {
    /// Everything `hopward status` shows: [`StatusReply`].
    Status,
    /// A host name ssh is verifying and the key it was offered (base64):
    /// [`LearnedReply`]. Both are checked by the agent, which says which
    /// one is missing.
    LearnHost {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        key: Option<String>,
    },
    /// Lock forwarded use: [`LockedReply`].
    LockForwarded,
    /// Unlock forwarded use: an empty object.
    UnlockForwarded,
    /// Revoke one remembered approval, or all without `id`:
    /// [`RevokedReply`].
    Revoke {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        id: Option<u64>,
    },
}

impl ControlRequest {
    /// The op names a request may carry, for telling a malformed request
    /// from an unknown one.
    pub const OPS: [&'static str; 5] = [
        "status",
        "learn-host",
        "lock-forwarded",
        "unlock-forwarded",
        "revoke",
    ];
}

/// The reply to a request the agent took and could not carry out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReply {
    pub error: String,
}

/// How a reply is read first: an `error`, or not.
#[derive(Debug, Deserialize)]
struct MaybeError {
    #[serde(default)]
    error: Option<String>,
}

/// `learn-host`: whether the name was new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LearnedReply {
    pub learned: bool,
}

/// `lock-forwarded`: how many forwarded connections were cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedReply {
    pub cut: usize,
}

/// `revoke`: how many approvals were dropped.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevokedReply {
    pub revoked: usize,
}

/// `unlock-forwarded`: nothing to say.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmptyReply {}

/// `status`: the running agent.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusReply {
    pub version: String,
    pub pid: u32,
    /// `ssh-add -x`.
    pub locked: bool,
    pub forwarded_locked: bool,
    pub forwarded_locked_because: Option<String>,
    pub keys: Vec<KeyStatus>,
    /// Upstream mode only.
    pub upstream: Option<UpstreamStatus>,
    pub policy: PolicyStatus,
    pub confirm: ConfirmStatus,
    /// `[forwarded] brake`, when the policy sets one.
    pub brake: Option<BrakeStatus>,
    pub pending_prompts: usize,
    /// `null` when decisions only reach the daemon log; absent (`None`)
    /// from an agent from before audit health was reported.
    #[serde(deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub audit: Option<Option<AuditHealth>>,
    pub grants: Vec<GrantStatus>,
    /// Absent from an agent from before jump routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jumps: Option<Vec<JumpStatus>>,
    /// Open connections by class (`local`, `direct`, `forwarded` ...).
    pub connections: BTreeMap<String, usize>,
    /// What the open connections' binds hold, in bytes.
    pub bind_bytes: usize,
    /// Absent from an agent from before learned names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub learned_hosts: Option<LearnedHosts>,
}

/// A field that is there, even as `null`: `Some(None)`.
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

/// A key the agent holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct KeyStatus {
    pub comment: String,
    pub fingerprint: String,
    /// Its type's label, `-CERT` after it for a certificate.
    #[serde(rename = "type")]
    pub key_type: String,
    /// `ssh-add -c`.
    pub confirm: bool,
    /// `ssh-add -h`.
    pub destination_constrained: bool,
    /// `ssh-add -t`, in seconds.
    pub lifetime: Option<u32>,
    /// Seconds until the lifetime ends.
    pub expires_in: Option<u64>,
    /// Its pages are locked out of swap.
    pub locked_in_memory: bool,
    /// The provider of a hardware key (its library path, or `internal`).
    pub provider: Option<String>,
    pub certificate: Option<CertificateStatus>,
}

/// A certificate's validity: `valid_after` and `valid_before` (seconds
/// since the epoch; `valid_before` null when valid forever), `expires_in`
/// (seconds, negative once past), `expired` and `drop_in` (seconds until
/// the agent drops it).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct CertificateStatus {
    pub valid_after: u64,
    pub valid_before: Option<u64>,
    pub expires_in: Option<i64>,
    pub expired: bool,
    pub drop_in: Option<u64>,
}

/// The upstream agent (upstream mode).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamStatus {
    pub socket: String,
    /// `None`: not asked yet.
    pub reachable: Option<bool>,
    pub error: Option<String>,
    pub timeout_secs: u64,
    /// `Some(false)`: it refused a valid session-bind, so it knows none.
    pub session_bind: Option<bool>,
    pub keys: Vec<UpstreamKeyStatus>,
}

/// A key the upstream agent holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct UpstreamKeyStatus {
    pub comment: String,
    pub fingerprint: String,
    #[serde(rename = "type")]
    pub key_type: String,
    /// hopward holds it as well, and signs with its own.
    pub shadowed: bool,
}

/// The policy in force.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PolicyStatus {
    /// `None`: the built-in policy.
    pub file: Option<String>,
    /// The file watched for one to appear.
    pub watched: Option<String>,
    pub digest: String,
    pub rules: usize,
    pub last_reload: LastReload,
    /// Absent from an agent from before the counts.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reloads: Option<u64>,
    /// How many reloads changed the policy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
}

/// How the last reload went.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LastReload {
    /// `"ok"`.
    #[default]
    Ok,
    /// Refused at start, nothing good loaded since: local use is served as
    /// built in, everything forwarded refused.
    RefusingForwarded(Vec<String>),
    /// The reload failed; the last good policy stays.
    KeptLastGoodPolicy(Vec<String>),
}

/// Whether questions can be asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ConfirmStatus {
    pub method: String,
    pub can_ask: bool,
    /// How it asks, or why it cannot.
    pub detail: String,
    pub timeout_secs: u64,
}

/// `[forwarded] brake`: the limit, and each first forwarding hop with
/// destinations in the window.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrakeStatus {
    pub hosts: u32,
    pub per: String,
    pub hops: Vec<BrakeHop>,
}

/// One first forwarding hop under the brake.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct BrakeHop {
    pub hop: String,
    /// Distinct destinations within the window.
    pub hosts: usize,
    /// Past the limit: every request through it is asked.
    pub engaged: bool,
}

/// A remembered approval.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct GrantStatus {
    pub id: u64,
    pub key: String,
    /// Host key fingerprints of the chain.
    pub chain: Vec<String>,
    /// The chain as the log shows it.
    pub hosts: Vec<String>,
    pub user: Option<String>,
    pub purpose: String,
    pub rule: String,
    pub expires_in: u64,
}

/// A local ssh process's login that its parent's next login may tunnel
/// through (ProxyJump).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JumpStatus {
    pub pid: u32,
    /// The jump hosts, then the host it bound.
    pub route: Vec<String>,
    pub age_secs: u64,
}

/// Host names learned from ssh: how many, and the newest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LearnedHosts {
    pub count: usize,
    pub newest: Vec<LearnedHost>,
}

/// One learned host name.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct LearnedHost {
    pub name: String,
    pub fingerprint: String,
}

/// How the audit file is doing.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct AuditHealth {
    pub file: String,
    /// The last write succeeded (or none was needed yet).
    pub writing: bool,
    /// Failed write attempts since start.
    pub write_errors: u64,
    /// Runs of failures, each ended by a successful write (or still open).
    pub error_episodes: u64,
    /// Decisions whose record was dropped because the disk could not take
    /// it and memory for waiting ones was full.
    pub lost_records: u64,
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    /// When writing worked again after the last episode.
    pub recovered_at: Option<String>,
    /// Times the file was found renamed, deleted or truncated under the
    /// writer, or its directory gone, and a new one was opened.
    pub reopened: u64,
    /// Records waiting in memory for the file to take them.
    pub waiting_records: u64,
    /// Refusals counted into a coalesced record since start.
    pub coalesced_refusals: u64,
    /// Refusals counted, not yet written in a coalesced record.
    pub held_refusals: u64,
    /// How sending to the journal goes (`[audit] journald = true`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub journal: Option<JournalHealth>,
}

/// How sending records to the journal goes.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct JournalHealth {
    /// Records journald did not take (not running, full, refused).
    pub dropped_records: u64,
    pub last_error: Option<String>,
}

/// A message as the wire carries it: JSON with sorted keys (the order a
/// `serde_json::Value` object keeps), so the bytes stay what they were
/// when messages were built as values.
pub fn to_wire<T: Serialize>(message: &T) -> String {
    serde_json::to_value(message).map_or_else(|_| "null".into(), |v| v.to_string())
}

/// Reads a reply: the agent's `error`, cleaned for a terminal, or the
/// reply itself.
pub fn read_reply<R: DeserializeOwned>(text: &str) -> Result<R, String> {
    let maybe: MaybeError = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if let Some(error) = maybe.error {
        return Err(crate::text::clean(&error, 300));
    }
    serde_json::from_str(text).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_keep_their_bytes() {
        assert_eq!(to_wire(&ControlRequest::Status), r#"{"op":"status"}"#);
        assert_eq!(
            to_wire(&ControlRequest::Revoke { id: Some(3) }),
            r#"{"id":3,"op":"revoke"}"#
        );
        assert_eq!(
            to_wire(&ControlRequest::Revoke { id: None }),
            r#"{"op":"revoke"}"#
        );
        let learn = ControlRequest::LearnHost {
            name: Some("h".into()),
            key: Some("AAAA".into()),
        };
        assert_eq!(
            to_wire(&learn),
            r#"{"key":"AAAA","name":"h","op":"learn-host"}"#
        );
        assert_eq!(to_wire(&EmptyReply {}), "{}");
    }

    #[test]
    fn every_op_name_is_a_request() {
        for op in ControlRequest::OPS {
            let request = serde_json::from_str::<ControlRequest>(&format!(r#"{{"op":"{op}"}}"#));
            assert!(request.is_ok(), "{op}: {request:?}");
        }
    }

    #[test]
    fn an_older_agents_status_reads_with_what_it_lacks_left_out() {
        let old: StatusReply =
            read_reply(r#"{"pid": 7, "policy": {"last_reload": "ok"}}"#).unwrap();
        assert_eq!(old.pid, 7);
        assert_eq!(old.audit, None);
        assert_eq!(old.jumps, None);
        let no_file: StatusReply = read_reply(r#"{"audit": null}"#).unwrap();
        assert_eq!(no_file.audit, Some(None));
        let kept: PolicyStatus =
            read_reply(r#"{"last_reload": {"kept_last_good_policy": ["bad"]}}"#).unwrap();
        assert_eq!(
            kept.last_reload,
            LastReload::KeptLastGoodPolicy(vec!["bad".into()])
        );
    }

    #[test]
    fn an_error_reply_is_the_error_cleaned() {
        let reply = read_reply::<EmptyReply>(r#"{"error": "no grant 3\u001b[2J"}"#);
        assert_eq!(reply, Err("no grant 3\\u{1b}[2J".into()));
    }
}
