//! `ssh-add -d KEY` and `ssh-add -D`: keys removed once the policy allows
//! it, and the questions still open about them withdrawn.

use tracing::info;

use crate::confirm::broker::Withdraw;
use crate::daemon::authorize::{Listed, permitted};
use crate::policy::KeyOp;
use crate::protocol::reply::Reply;

use super::Session;
use super::refusal::{Audit, Refusal};

impl Session {
    pub(super) async fn remove(&mut self, key_blob: &[u8]) -> Result<Reply, Refusal> {
        let Some(identity) = self.agent.key(key_blob) else {
            return Err(Refusal::quiet());
        };
        // A key this connection cannot see cannot be removed through it. One
        // the policy hides is a refusal the remote side met (audited for a
        // forwarded peer, as a hidden key in a listing is); one an OpenSSH
        // constraint hides is not, as in ssh-agent.
        let hops = self.hop_views();
        let lister = self.lister(&hops, self.class());
        match permitted(&self.agent, &lister, Listed::Held(&identity)) {
            Ok(()) => {}
            Err(None) => return Err(Refusal::quiet()),
            Err(Some(rule)) => {
                let key = (identity.fingerprint.clone(), identity.comment.clone());
                return Err(Refusal::quiet().audited(Audit::Hidden { key, rule }));
            }
        }
        self.allow_key_op(
            KeyOp::Remove,
            Some((&identity.fingerprint, &identity.comment)),
        )
        .await?;
        let removed = self.agent.keystore().remove(key_blob);
        if removed {
            info!(conn = self.id, "removed key {}", identity.fingerprint);
            self.agent.withdraw_questions(
                Withdraw::Keys(std::slice::from_ref(&identity.fingerprint)),
                "key removed (ssh-add -d)",
            );
            Ok(Reply::Success)
        } else {
            Err(Refusal::quiet())
        }
    }

    pub(super) async fn remove_all(&mut self) -> Result<Reply, Refusal> {
        self.allow_key_op(KeyOp::RemoveAll, None).await?;
        match self.agent.keystore().remove_all() {
            Some(removed) => {
                info!(conn = self.id, "removed all {} keys", removed.len());
                let keys: Vec<String> = removed.iter().map(|id| id.fingerprint.clone()).collect();
                self.agent
                    .withdraw_questions(Withdraw::Keys(&keys), "every key removed (ssh-add -D)");
                Ok(Reply::Success)
            }
            None => Err(Refusal::quiet()),
        }
    }
}
