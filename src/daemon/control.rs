//! The control channel for `hopward status`, `lock --forwarded` and
//! `grants`: a `control@hopward` agent-protocol extension whose body and
//! reply are JSON.
//!
//! Invariant: it answers only a local, unforwarded connection (no
//! session-bind at all) of the agent's owner or root; anything else gets
//! `SSH_AGENT_FAILURE`, so a forwarded peer can neither read nor change
//! anything through it. A request it takes and cannot carry out gets
//! `SSH_AGENT_EXTENSION_FAILURE`.

use std::time::Instant;

use serde::Deserialize;

use crate::daemon::agent::Agent;
use crate::policy::store::ReloadStatus;
pub(crate) use crate::protocol::control::EXTENSION;
use crate::protocol::control::{
    BrakeHop, BrakeStatus, CertificateStatus, ConfirmStatus, ControlRequest, EmptyReply,
    GrantStatus, JumpStatus, KeyStatus, LastReload, LearnedHost, LearnedHosts, LearnedReply,
    LockedReply, PolicyStatus, RevokedReply, StatusReply, UpstreamKeyStatus, UpstreamStatus,
    to_wire,
};

/// A control request, as the CLI sends it.
pub(crate) fn request(op: &ControlRequest) -> Vec<u8> {
    let mut body = vec![crate::protocol::request::SSH_AGENTC_EXTENSION];
    crate::ssh::wire::put_string(&mut body, EXTENSION.as_bytes());
    crate::ssh::wire::put_string(&mut body, to_wire(op).as_bytes());
    body
}

/// A certificate's validity for `status` (see [`CertificateStatus`]);
/// `None` for a plain key.
fn certificate_status(id: &crate::keys::keystore::Identity) -> Option<CertificateStatus> {
    let cert = id.cert?;
    let now = crate::ssh::cert::unix_now();
    let signed =
        |t: u64| i64::try_from(t).unwrap_or(i64::MAX) - i64::try_from(now).unwrap_or(i64::MAX);
    Some(CertificateStatus {
        valid_after: cert.valid_after,
        valid_before: cert.expires(),
        expires_in: cert.expires().map(signed),
        expired: cert.expired(now),
        drop_in: cert.drop_at().map(|at| at.saturating_sub(now)),
    })
}

/// `[forwarded] brake` for `status`: the limit and, per first forwarding
/// hop with destinations in the window, how many and whether it is asking;
/// `None` when the policy sets no brake.
fn brake_status(agent: &Agent, policy: &crate::policy::Policy) -> Option<BrakeStatus> {
    let settings = policy.brake?;
    let hops = agent
        .burst_counts(&settings, Instant::now())
        .into_iter()
        .map(|c| BrakeHop {
            hop: c.hop,
            hosts: c.hosts,
            engaged: c.engaged,
        })
        .collect();
    Some(BrakeStatus {
        hosts: settings.hosts,
        per: crate::duration::format(settings.per),
        hops,
    })
}

async fn status(agent: &Agent) -> StatusReply {
    // The reload count first: everything read after it is at least as new
    // as the reloads it counts.
    let reloads = agent.reloads();
    let (generation, policy) = agent.policy_snapshot();
    let now = Instant::now();
    let keys = agent
        .keystore()
        .list(now)
        .iter()
        .map(|id| KeyStatus {
            comment: id.comment.clone(),
            fingerprint: id.fingerprint.clone(),
            key_type: format!(
                "{}{}",
                id.key_type().label(),
                if id.public.is_cert { "-CERT" } else { "" }
            ),
            confirm: id.constraints.confirm,
            destination_constrained: !id.constraints.destinations.is_empty(),
            lifetime: id.constraints.lifetime,
            expires_in: id
                .expires
                .map(|e| e.saturating_duration_since(now).as_secs()),
            locked_in_memory: id.is_locked_in_memory(),
            provider: id.provider_name(),
            certificate: certificate_status(id),
        })
        .collect();
    let last_reload = match agent.policy_status() {
        ReloadStatus::Loaded => LastReload::Ok,
        // Refused at start, nothing good loaded since: there is no last
        // good policy to keep, only local use served as built in.
        ReloadStatus::Kept { errors } if policy.is_refusing_forwarded() => {
            LastReload::RefusingForwarded(errors)
        }
        ReloadStatus::Kept { errors } => LastReload::KeptLastGoodPolicy(errors),
    };
    let (can_ask, detail) = crate::confirm::available::can_ask(&policy.confirm).await;
    let grants = agent
        .grants()
        .list(now)
        .iter()
        .map(|g| GrantStatus {
            id: g.id,
            key: g.scope.key.clone(),
            chain: g.scope.chain.clone(),
            hosts: g.hosts.clone(),
            user: g.scope.user.clone(),
            purpose: g.scope.purpose.as_str().to_string(),
            rule: g.rule.clone(),
            expires_in: g.expires.saturating_duration_since(now).as_secs(),
        })
        .collect();
    let connections = agent
        .connection_classes()
        .into_iter()
        .map(|(class, n)| (class.to_string(), n))
        .collect();
    let upstream = agent.upstream().map(|(socket, timeout)| {
        let health = agent.upstream_health();
        UpstreamStatus {
            socket: socket.display().to_string(),
            reachable: health.reachable,
            error: health.error,
            timeout_secs: timeout.as_secs(),
            session_bind: health.session_bind,
            keys: health
                .keys
                .iter()
                .map(|k| UpstreamKeyStatus {
                    comment: k.comment.clone(),
                    fingerprint: k.fingerprint.clone(),
                    key_type: k.key_type.clone(),
                    // A key hopward holds as well is listed and signed as hopward's.
                    shadowed: agent.keystore().find(&k.blob, now).is_some(),
                })
                .collect(),
        }
    });
    StatusReply {
        version: env!("CARGO_PKG_VERSION").to_string(),
        pid: std::process::id(),
        locked: agent.keys_locked(),
        forwarded_locked: agent.forwarded_locked(),
        forwarded_locked_because: agent.locked_because(),
        keys,
        upstream,
        policy: PolicyStatus {
            file: policy.source.as_ref().map(|p| p.display().to_string()),
            watched: agent.policy_path().map(|p| p.display().to_string()),
            digest: policy
                .digest
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>(),
            rules: policy.rules.len(),
            last_reload,
            reloads: Some(reloads),
            generation: Some(generation),
        },
        confirm: ConfirmStatus {
            method: policy.confirm.method.as_str().to_string(),
            can_ask,
            detail,
            timeout_secs: policy.confirm.timeout.as_secs(),
        },
        brake: brake_status(agent, &policy),
        pending_prompts: agent.open_prompts(),
        // `null` when decisions only reach the daemon log.
        audit: Some(agent.audit_health()),
        grants,
        jumps: Some(jumps(agent)),
        connections,
        // What the open connections' binds hold, in bytes.
        bind_bytes: agent.bind_bytes(),
        learned_hosts: Some(learned_hosts(agent)),
    }
}

/// The jump binds remembered now (see [`crate::trust::jump`]): each local
/// ssh process's login that a login of its parent may tunnel through, as
/// `route` (jump hosts, then the host it bound), by name where known_hosts
/// names the host.
fn jumps(agent: &Agent) -> Vec<JumpStatus> {
    let policy = agent.policy_now();
    let name = |hop: &crate::trust::binding::Hop| {
        agent
            .known_hosts()
            .describe(hop, policy.exact_names())
            .into_iter()
            .next()
            .unwrap_or_else(|| hop.fingerprint())
    };
    agent
        .jump_binds(
            &crate::trust::process_table::Proc,
            std::time::Instant::now(),
        )
        .iter()
        .map(|j| JumpStatus {
            pid: j.pid,
            route: j
                .route
                .iter()
                .chain(std::iter::once(&j.host))
                .map(name)
                .collect(),
            age_secs: j.age.as_secs(),
        })
        .collect()
}

/// Learned host names for `status`: how many, and the newest few.
fn learned_hosts(agent: &Agent) -> LearnedHosts {
    const SHOWN: usize = 100;
    let all = agent.known_hosts().learned_list();
    let newest = all
        .iter()
        .rev()
        .take(SHOWN)
        .map(|(name, fingerprint)| LearnedHost {
            name: name.clone(),
            fingerprint: fingerprint.clone(),
        })
        .collect();
    LearnedHosts {
        count: all.len(),
        newest,
    }
}

/// `hopward learn-host` (ssh's `KnownHostsCommand`): the name ssh is
/// verifying and the key it was offered. Kept only if known_hosts confirms
/// that name with that key; this channel is open only to local,
/// unforwarded connections of the owner, so no forwarded peer reaches it.
fn learn_host(
    agent: &Agent,
    name: Option<&str>,
    key: Option<&str>,
) -> Result<LearnedReply, String> {
    use base64::Engine as _;
    let name = name.ok_or("learn-host needs a name")?;
    let key = key.ok_or("learn-host needs a key")?;
    // A key blob is a few hundred bytes; a certificate a few KiB.
    if key.len() > 16 * 1024 {
        return Err("the reported host key is too long".into());
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| "the reported host key is not base64".to_string())?;
    match agent.known_hosts().learn(&blob, name) {
        Ok(new) => {
            if new {
                tracing::info!(
                    "learned host name {} for {}",
                    crate::text::clean(name, 80),
                    crate::ssh::key::PublicKey::parse(&blob)
                        .map(|k| k.fingerprint())
                        .unwrap_or_default()
                );
            }
            Ok(LearnedReply { learned: new })
        }
        Err(e) => {
            tracing::info!("not learned: {e}");
            Err(e)
        }
    }
}

/// The request a body carries.
fn read_request(body: &[u8]) -> Result<ControlRequest, String> {
    let mut reader = crate::ssh::wire::Reader::new(body);
    let text = reader.text("control request").map_err(|e| e.to_string())?;
    reader.finish().map_err(|e| e.to_string())?;
    serde_json::from_str(text).map_err(|e| refused(text, &e))
}

/// Why a request that is not a [`ControlRequest`] is refused: not JSON,
/// an op this agent does not know (named as it came, `None` if it is not
/// text), or a known op with fields of the wrong shape.
fn refused(text: &str, error: &serde_json::Error) -> String {
    /// Only the op of a request, if it is text.
    #[derive(Deserialize)]
    struct Op {
        op: Option<String>,
    }
    if let Err(e) = serde_json::from_str::<serde::de::IgnoredAny>(text) {
        return format!("bad control request: {e}");
    }
    let op = serde_json::from_str::<Op>(text).ok().and_then(|r| r.op);
    match op {
        Some(op) if ControlRequest::OPS.contains(&op.as_str()) => {
            format!("bad control request: {error}")
        }
        other => format!("unknown control operation {other:?}"),
    }
}

/// Whether a control request body asks for `status` (which first asks the
/// upstream agent, if any, whether it answers).
pub(crate) fn wants_status(body: &[u8]) -> bool {
    let mut reader = crate::ssh::wire::Reader::new(body);
    reader
        .text("control request")
        .ok()
        .and_then(|text| serde_json::from_str::<ControlRequest>(text).ok())
        .is_some_and(|request| request == ControlRequest::Status)
}

/// Carries out a control request from an allowed connection; the reply
/// as the wire carries it.
pub(crate) async fn handle(agent: &Agent, body: &[u8]) -> Result<String, String> {
    Ok(match read_request(body)? {
        ControlRequest::Status => to_wire(&status(agent).await),
        ControlRequest::LearnHost { name, key } => {
            to_wire(&learn_host(agent, name.as_deref(), key.as_deref())?)
        }
        ControlRequest::LockForwarded => to_wire(&LockedReply {
            cut: agent.lock_forwarded(),
        }),
        ControlRequest::UnlockForwarded => {
            agent.unlock_forwarded();
            to_wire(&EmptyReply {})
        }
        ControlRequest::Revoke { id: Some(id) } if agent.grants().revoke(id) => {
            to_wire(&RevokedReply { revoked: 1 })
        }
        ControlRequest::Revoke { id: Some(id) } => {
            return Err(format!(
                "there is no grant {id} (it expired, was revoked, or never existed; \
                 hopward grants lists them)"
            ));
        }
        ControlRequest::Revoke { id: None } => {
            // A yes to an open question would be stored after the
            // clear: such questions are withdrawn with the rest.
            let revoked = agent.forget_approvals("remembered approvals revoked");
            to_wire(&RevokedReply { revoked })
        }
    })
}

#[cfg(test)]
mod tests {
    //! The replies keep the bytes they had on the wire: an agent in a known
    //! state, its answers compared with literal text.
    use std::sync::Arc;
    use std::time::Instant;

    use super::*;
    use crate::daemon::agent::AgentOptions;
    use crate::daemon::audit::AuditSink;
    use crate::keys::keystore::{Constraints, Identity};
    use crate::policy::store::PolicyStore;
    use crate::protocol::request::{NewKey, SecretParts};
    use crate::ssh::key::{PublicKey, PublicParts};
    use crate::testing::fakes::Records;

    const POLICY: &str = r#"
[confirm]
method = "command"
command = ["/nonexistent/confirm"]
timeout = "30s"
[forwarded]
brake = { hosts = 3, per = "1m" }
[[rule]]
name = "prod"
via = ["prod"]
action = "confirm"
"#;

    fn agent() -> Agent {
        let policy = crate::policy::file::parse_str(POLICY, "test policy").unwrap();
        let agent = Agent::new(
            AgentOptions::new(0),
            PolicyStore::new(None, policy),
            Arc::new(Records::default()) as Arc<dyn AuditSink>,
        );
        let seed = [7u8; 32];
        let parts = PublicParts::Ed25519(crate::ssh::key::ed25519_public(&seed));
        let new = NewKey {
            public: PublicKey {
                blob: parts.blob(),
                parts,
                is_cert: false,
            },
            secret: SecretParts::Ed25519(&seed),
            comment: "me@desk".into(),
        };
        let constraints = Constraints {
            confirm: true,
            ..Constraints::default()
        };
        let identity = Identity::new(&new, constraints, Instant::now()).unwrap();
        agent.add_key(identity).unwrap();
        agent
    }

    async fn ask(agent: &Agent, request: &str) -> Result<String, String> {
        let mut body = Vec::new();
        crate::ssh::wire::put_string(&mut body, request.as_bytes());
        handle(agent, &body).await.map(|reply| reply.to_string())
    }

    #[tokio::test]
    async fn status_keeps_its_bytes() {
        let agent = agent();
        let text = ask(&agent, r#"{"op":"status"}"#).await.unwrap();
        let locked = if text.contains(r#""locked_in_memory":true"#) {
            "true"
        } else {
            "false"
        };
        let text = text
            .replace(&format!(r#""pid":{}"#, std::process::id()), r#""pid":1"#)
            .replace(env!("CARGO_PKG_VERSION"), "V")
            .replace(
                &format!(r#""locked_in_memory":{locked}"#),
                r#""locked_in_memory":L"#,
            );
        assert_eq!(
            text,
            concat!(
                r#"{"audit":null,"bind_bytes":0,"brake":{"hops":[],"hosts":3,"per":"1m"},"confirm":{"can_ask""#,
                r#":false,"detail":"/nonexistent/confirm is not an executable file","method":"command","timeo"#,
                r#"ut_secs":30},"connections":{},"forwarded_locked":false,"forwarded_locked_because":null,"gr"#,
                r#"ants":[],"jumps":[],"keys":[{"certificate":null,"comment":"me@desk","confirm":true,"destin"#,
                r#"ation_constrained":false,"expires_in":null,"fingerprint":"SHA256:z/fSv0Z0RZS+Lccbc6ZoOWwt/"#,
                r#"fbj1VFJGSBKQbo4icE","lifetime":null,"locked_in_memory":L,"provider":null,"type":"ED25519"}"#,
                r#"],"learned_hosts":{"count":0,"newest":[]},"locked":false,"pending_prompts":0,"pid":1,"poli"#,
                r#"cy":{"digest":"e271a69b95103fb5a6f4f4e863c775df29ddb1767e9375cc064eb7b740c3d314","file":nu"#,
                r#"ll,"generation":0,"last_reload":"ok","reloads":0,"rules":1,"watched":null},"upstream":null"#,
                r#","version":"V"}"#,
            )
        );
    }

    #[tokio::test]
    async fn the_other_replies_keep_their_bytes() {
        let agent = agent();
        assert_eq!(
            ask(&agent, r#"{"op":"lock-forwarded"}"#).await.unwrap(),
            r#"{"cut":0}"#
        );
        assert_eq!(
            ask(&agent, r#"{"op":"unlock-forwarded"}"#).await.unwrap(),
            "{}"
        );
        assert_eq!(
            ask(&agent, r#"{"op":"revoke"}"#).await.unwrap(),
            r#"{"revoked":0}"#
        );
        assert_eq!(
            ask(&agent, r#"{"op":"revoke","id":7}"#).await,
            Err(
                "there is no grant 7 (it expired, was revoked, or never existed; \
                 hopward grants lists them)"
                    .into()
            )
        );
        assert_eq!(
            ask(&agent, r#"{"op":"learn-host","key":"AAAA"}"#).await,
            Err("learn-host needs a name".into())
        );
        assert_eq!(
            ask(&agent, r#"{"op":"learn-host","name":"h"}"#).await,
            Err("learn-host needs a key".into())
        );
        assert_eq!(
            ask(&agent, r#"{"op":"no-such-op"}"#).await,
            Err(r#"unknown control operation Some("no-such-op")"#.into())
        );
        assert_eq!(
            ask(&agent, r#"{"op":5}"#).await,
            Err("unknown control operation None".into())
        );
        assert_eq!(
            ask(&agent, "[]").await,
            Err("unknown control operation None".into())
        );
        assert_eq!(
            ask(&agent, "{nope").await,
            Err("bad control request: key must be a string at line 1 column 2".into())
        );
    }
}
