//! The `query` extension: the extensions this agent knows.

use crate::protocol::reply::Reply;

use super::Session;
use super::refusal::Refusal;

impl Session {
    /// As in ssh-agent, refused while locked, and any bytes after the name
    /// are ignored. `control@hopward` is listed only where it may be used.
    pub(super) fn query(&self) -> Result<Reply, Refusal> {
        if self.agent.keys_locked() {
            return Err(Refusal::quiet());
        }
        let control = self
            .control_allowed()
            .then_some(crate::daemon::control::EXTENSION);
        Ok(crate::protocol::reply::query_answer(
            crate::protocol::request::EXTENSIONS
                .into_iter()
                .chain(control),
        ))
    }
}
