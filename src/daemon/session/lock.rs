//! `ssh-add -x` and `ssh-add -X`: the agent locked with a passphrase, and
//! unlocked with it (a wrong one slows the next guess on this connection).

use std::time::Duration;

use tracing::info;

use crate::confirm::broker::Withdraw;
use crate::keys::keystore;
use crate::policy::KeyOp;
use crate::protocol::reply::Reply;
use crate::protocol::request::Passphrase;

use super::Session;
use super::refusal::Refusal;

impl Session {
    pub(super) async fn lock(&mut self, passphrase: Passphrase<'_>) -> Result<Reply, Refusal> {
        // OpenSSH refuses an empty lock passphrase.
        if self.agent.keys_locked() || passphrase.0.is_empty() {
            return Err(Refusal::quiet());
        }
        self.allow_key_op(KeyOp::Lock, None).await?;
        // The hash is slow on purpose; compute it off the async workers. The
        // copy is wiped when the closure drops it.
        let secret = zeroize::Zeroizing::new(passphrase.0.to_vec());
        let hashed = tokio::task::spawn_blocking(move || keystore::hash_passphrase(&secret)).await;
        let locked = match hashed {
            Ok(Ok(hash)) => self.agent.keystore().lock(hash).is_ok(),
            _ => false,
        };
        if !locked {
            return Err(Refusal::warn("lock failed"));
        }
        let dropped = self.agent.grants().clear();
        info!(conn = self.id, grants_dropped = dropped, "agent locked");
        self.agent
            .withdraw_questions(Withdraw::All, "agent locked (ssh-add -x)");
        Ok(Reply::Success)
    }

    pub(super) async fn unlock(&mut self, passphrase: Passphrase<'_>) -> Result<Reply, Refusal> {
        let Some(hash) = self.agent.keystore().lock_hash() else {
            return Err(Refusal::quiet());
        };
        self.allow_key_op(KeyOp::Unlock, None).await?;
        let expected = hash.clone();
        let secret = zeroize::Zeroizing::new(passphrase.0.to_vec());
        let verified =
            tokio::task::spawn_blocking(move || keystore::verify_passphrase(&secret, &hash))
                .await
                .unwrap_or(false);
        match self.agent.keystore().finish_unlock(&expected, verified) {
            Ok(()) => {
                info!(conn = self.id, "agent unlocked");
                Ok(Reply::Success)
            }
            // Slows guessing on this connection only.
            Err(delay) => Err(Refusal::warn_peer("unlock failed: incorrect passphrase")
                .then_wait(delay.min(Duration::from_secs(10)))),
        }
    }
}
