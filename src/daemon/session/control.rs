//! The control channel (`control@hopward`): `hopward status`, `lock
//! --forwarded` and the other commands, on this machine's own connections.

use tracing::info;

use crate::protocol::reply::{Reply, SSH_AGENT_SUCCESS};

use super::Session;
use super::refusal::Refusal;

impl Session {
    /// Only for a local, unforwarded connection of the owner (or root).
    /// Refusing it there is `SSH_AGENT_FAILURE`, as ssh-agent refuses
    /// extensions while locked; a control request that runs and fails is
    /// answered with its error, so `hopward` can say what went wrong.
    pub(super) async fn control(&mut self, body: &[u8]) -> Result<Reply, Refusal> {
        if !self.control_allowed() {
            return Err(Refusal::warn_peer(
                "refused control request on a bound connection",
            ));
        }
        if crate::daemon::control::wants_status(body) {
            // Status says whether upstream answers now, not when last used.
            self.probe_upstream().await;
        }
        // A request this agent cannot carry out is answered with what went
        // wrong: a bare failure reads as "not allowed on this connection".
        let reply = match crate::daemon::control::handle(&self.agent, body).await {
            Ok(reply) => reply,
            Err(e) => {
                info!(conn = self.id, "control request failed: {e}");
                use crate::protocol::control::{ErrorReply, to_wire};
                to_wire(&ErrorReply { error: e })
            }
        };
        let mut out = vec![SSH_AGENT_SUCCESS];
        crate::ssh::wire::put_string(&mut out, reply.as_bytes());
        Ok(Reply::Encoded(out))
    }
}
