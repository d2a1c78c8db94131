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

use serde_json::{Value, json};

use crate::daemon::agent::Agent;
use crate::policy::store::ReloadStatus;

/// The extension name.
pub const EXTENSION: &str = "control@hopward";

/// A control request, as the CLI sends it.
pub fn request(op: &Value) -> Vec<u8> {
    let mut body = vec![crate::protocol::request::SSH_AGENTC_EXTENSION];
    crate::ssh::wire::put_string(&mut body, EXTENSION.as_bytes());
    crate::ssh::wire::put_string(&mut body, op.to_string().as_bytes());
    body
}

/// A certificate's validity for `status`: `valid_after` and `valid_before`
/// (seconds since the epoch; `valid_before` null when valid forever),
/// `expires_in` (seconds, negative once past), `expired` and `drop_in`
/// (seconds until the agent drops it); null for a plain key.
fn certificate_status(id: &crate::keys::keystore::Identity) -> Value {
    let Some(cert) = id.cert else {
        return Value::Null;
    };
    let now = crate::ssh::cert::unix_now();
    let signed = |t: u64| i64::try_from(t).unwrap_or(i64::MAX) - i64::try_from(now).unwrap_or(i64::MAX);
    json!({
        "valid_after": cert.valid_after,
        "valid_before": cert.expires(),
        "expires_in": cert.expires().map(signed),
        "expired": cert.expired(now),
        "drop_in": cert.drop_at().map(|at| at.saturating_sub(now)),
    })
}

/// `[forwarded] brake` for `status`: the limit and, per first forwarding
/// hop with destinations in the window, how many and whether it is asking;
/// null when the policy sets no brake.
fn brake_status(agent: &Agent, policy: &crate::policy::Policy) -> Value {
    let Some(settings) = policy.brake else {
        return Value::Null;
    };
    let hops: Vec<Value> = agent
        .bursts
        .counts(&settings, Instant::now())
        .into_iter()
        .map(|c| json!({ "hop": c.hop, "hosts": c.hosts, "engaged": c.engaged }))
        .collect();
    json!({
        "hosts": settings.hosts,
        "per": crate::duration::format(settings.per),
        "hops": hops,
    })
}

async fn status(agent: &Agent) -> Value {
    // The reload count first: everything read after it is at least as new
    // as the reloads it counts.
    let reloads = agent.reloads();
    let (generation, policy) = agent.policy.snapshot();
    let now = Instant::now();
    let keys: Vec<Value> = agent
        .keystore
        .list(now)
        .iter()
        .map(|id| {
            json!({
                "comment": id.comment,
                "fingerprint": id.fingerprint,
                "type": format!("{}{}", id.key_type().label(), if id.public.is_cert { "-CERT" } else { "" }),
                "confirm": id.constraints.confirm,
                "destination_constrained": !id.constraints.destinations.is_empty(),
                "lifetime": id.constraints.lifetime,
                "expires_in": id.expires.map(|e| e.saturating_duration_since(now).as_secs()),
                "locked_in_memory": id.is_locked_in_memory(),
                "provider": id.provider_name(),
                "certificate": certificate_status(id),
            })
        })
        .collect();
    let reload = match agent.policy.status() {
        ReloadStatus::Loaded => json!("ok"),
        // Refused at start, nothing good loaded since: there is no last
        // good policy to keep, only local use served as built in.
        ReloadStatus::Kept { errors } if policy.is_refusing_forwarded() => {
            json!({ "refusing_forwarded": errors })
        }
        ReloadStatus::Kept { errors } => json!({ "kept_last_good_policy": errors }),
    };
    let (ok, why) = crate::confirm::available::can_ask(&policy.confirm).await;
    let grants: Vec<Value> = agent
        .grants
        .list(now)
        .iter()
        .map(|g| {
            json!({
                "id": g.id,
                "key": g.scope.key,
                "chain": g.scope.chain,
                "hosts": g.hosts,
                "user": g.scope.user,
                "purpose": g.scope.purpose.as_str(),
                "rule": g.rule,
                "expires_in": g.expires.saturating_duration_since(now).as_secs(),
            })
        })
        .collect();
    let connections: serde_json::Map<String, Value> = agent
        .connection_classes()
        .into_iter()
        .map(|(class, n)| (class.to_string(), json!(n)))
        .collect();
    let upstream = agent.upstream().map(|(socket, timeout)| {
        let health = agent.upstream.health();
        json!({
            "socket": socket.display().to_string(),
            "reachable": health.reachable,
            "error": health.error,
            "timeout_secs": timeout.as_secs(),
            "session_bind": health.session_bind,
            "keys": health.keys.iter().map(|k| json!({
                "comment": k.comment,
                "fingerprint": k.fingerprint,
                "type": k.key_type,
                // A key hopward holds as well is listed and signed as hopward's.
                "shadowed": agent.keystore.find(&k.blob, now).is_some(),
            })).collect::<Vec<_>>(),
        })
    });
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "pid": std::process::id(),
        "locked": agent.keystore.is_locked(),
        "forwarded_locked": agent.forwarded_locked(),
        "forwarded_locked_because": agent.locked_because(),
        "keys": keys,
        "upstream": upstream,
        "policy": {
            "file": policy.source.as_ref().map(|p| p.display().to_string()),
            "watched": agent.policy.path().map(|p| p.display().to_string()),
            "digest": policy.digest.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "rules": policy.rules.len(),
            "last_reload": reload,
            "reloads": reloads,
            "generation": generation,
        },
        "confirm": {
            "method": policy.confirm.method.as_str(),
            "can_ask": ok,
            "detail": why,
            "timeout_secs": policy.confirm.timeout.as_secs(),
        },
        "brake": brake_status(agent, &policy),
        "pending_prompts": agent.prompts.open(),
        // `null` when decisions only reach the daemon log.
        "audit": agent.audit.health(),
        "grants": grants,
        "jumps": jumps(agent),
        "connections": connections,
        // What the open connections' binds hold, in bytes.
        "bind_bytes": agent.bind_bytes(),
        "learned_hosts": learned_hosts(agent),
    })
}

/// The jump binds remembered now (see [`crate::trust::jump`]): each local
/// ssh process's login that a login of its parent may tunnel through, as
/// `route` (jump hosts, then the host it bound), by name where known_hosts
/// names the host.
fn jumps(agent: &Agent) -> Vec<Value> {
    let (_, policy) = agent.policy.snapshot();
    let name = |hop: &crate::trust::binding::Hop| {
        agent
            .known_hosts
            .describe(hop, policy.exact_names())
            .into_iter()
            .next()
            .unwrap_or_else(|| hop.fingerprint())
    };
    agent
        .jumps
        .list(&crate::trust::process_table::Proc, std::time::Instant::now())
        .iter()
        .map(|j| {
            json!({
                "pid": j.pid,
                "route": j.route.iter().chain(std::iter::once(&j.host)).map(name).collect::<Vec<_>>(),
                "age_secs": j.age.as_secs(),
            })
        })
        .collect()
}

/// Learned host names for `status`: how many, and the newest few.
fn learned_hosts(agent: &Agent) -> Value {
    const SHOWN: usize = 100;
    let all = agent.known_hosts.learned_list();
    let newest: Vec<Value> = all
        .iter()
        .rev()
        .take(SHOWN)
        .map(|(name, fingerprint)| json!({ "name": name, "fingerprint": fingerprint }))
        .collect();
    json!({ "count": all.len(), "newest": newest })
}

/// `hopward learn-host` (ssh's `KnownHostsCommand`): the name ssh is
/// verifying and the key it was offered. Kept only if known_hosts confirms
/// that name with that key; this channel is open only to local,
/// unforwarded connections of the owner, so no forwarded peer reaches it.
fn learn_host(agent: &Agent, request: &Value) -> Result<Value, String> {
    use base64::Engine as _;
    let name = request["name"].as_str().ok_or("learn-host needs a name")?;
    let key = request["key"].as_str().ok_or("learn-host needs a key")?;
    // A key blob is a few hundred bytes; a certificate a few KiB.
    if key.len() > 16 * 1024 {
        return Err("the reported host key is too long".into());
    }
    let blob = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| "the reported host key is not base64".to_string())?;
    match agent.known_hosts.learn(&blob, name) {
        Ok(new) => {
            if new {
                tracing::info!(
                    "learned host name {} for {}",
                    crate::text::clean(name, 80),
                    crate::ssh::key::PublicKey::parse(&blob).map(|k| k.fingerprint()).unwrap_or_default()
                );
            }
            Ok(json!({ "learned": new }))
        }
        Err(e) => {
            tracing::info!("not learned: {e}");
            Err(e)
        }
    }
}

/// Whether a control request body asks for `status` (which first asks the
/// upstream agent, if any, whether it answers).
pub fn wants_status(body: &[u8]) -> bool {
    let mut reader = crate::ssh::wire::Reader::new(body);
    reader
        .text("control request")
        .ok()
        .and_then(|text| serde_json::from_str::<Value>(text).ok())
        .is_some_and(|v| v["op"] == "status")
}

/// Carries out a control request from an allowed connection.
pub async fn handle(agent: &Agent, body: &[u8]) -> Result<Value, String> {
    let mut reader = crate::ssh::wire::Reader::new(body);
    let text = reader.text("control request").map_err(|e| e.to_string())?;
    reader.finish().map_err(|e| e.to_string())?;
    let request: Value =
        serde_json::from_str(text).map_err(|e| format!("bad control request: {e}"))?;
    match request["op"].as_str() {
        Some("status") => Ok(status(agent).await),
        Some("learn-host") => learn_host(agent, &request),
        Some("lock-forwarded") => Ok(json!({ "cut": agent.lock_forwarded() })),
        Some("unlock-forwarded") => {
            agent.unlock_forwarded();
            Ok(json!({}))
        }
        Some("revoke") => match request["id"].as_u64() {
            Some(id) if agent.grants.revoke(id) => Ok(json!({ "revoked": 1 })),
            Some(id) => Err(format!(
                "there is no grant {id} (it expired, was revoked, or never existed; \
                 hopward grants lists them)"
            )),
            None => {
                let revoked = agent.grants.clear();
                // A yes to an open question would be stored after the
                // clear: such questions are withdrawn with the rest.
                agent.withdraw_questions(
                    crate::confirm::broker::Withdraw::All,
                    "remembered approvals revoked",
                );
                Ok(json!({ "revoked": revoked }))
            }
        },
        other => Err(format!("unknown control operation {other:?}")),
    }
}
