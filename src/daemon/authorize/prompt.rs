//! The question a request puts to the person at the desk.

use crate::confirm::{Prompt, Target};
use crate::trust::context::{Destination, RequestContext};

/// The question for a request context; `operation` for key operations.
pub(crate) fn prompt_for(ctx: &RequestContext, operation: Option<&str>) -> Prompt {
    let target = match (ctx.destination, ctx.destination_hop()) {
        (Destination::Verified, Some(hop)) if hop.names.is_empty() && hop.hashed => {
            Target::Unlearned(hop.fingerprint.clone())
        }
        (Destination::Verified, Some(hop)) if hop.hashed => {
            Target::HashedHost(hop.label().to_string())
        }
        (Destination::Verified, Some(hop)) if hop.names.is_empty() => {
            Target::Unknown(hop.fingerprint.clone())
        }
        (Destination::Verified, Some(hop)) => Target::Host(hop.label().to_string()),
        (Destination::Unverified(_), _) => Target::Unverified,
        _ => Target::None,
    };
    Prompt {
        key_fingerprint: ctx.key_fingerprint.clone(),
        key_comment: ctx.key_comment.clone(),
        hops: ctx.route_labels(),
        chain_names: ctx
            .jump
            .iter()
            .map(|h| format!("{} (jump)", h.label()))
            .chain(ctx.chain.iter().map(|h| h.label().to_string()))
            .collect(),
        forwarded: ctx.chain.iter().any(|h| h.forwarding),
        target,
        user: ctx.user.clone(),
        user_style: ctx.user_style.clone(),
        purpose: operation.is_none().then_some(ctx.purpose),
        namespace: None,
        operation: operation.map(str::to_string),
        peer_pid: ctx.peer.pid,
        peer_exe: ctx.peer.exe.as_ref().map(|e| e.display().to_string()),
        peer_parents: ctx.peer.parents.clone(),
        peer_cwd: ctx
            .peer
            .process
            .cwd
            .as_ref()
            .map(|d| d.display().to_string()),
        remember: None,
        touch: false,
        brake: None,
    }
}
