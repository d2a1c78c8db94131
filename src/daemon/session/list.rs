//! `ssh-add -l`: the keys this connection may see, hopward's own and the
//! upstream's.

use crate::daemon::authorize::{Listed, listed};
use crate::protocol::reply::Reply;

use super::Session;
use super::refusal::Refusal;

impl Session {
    pub(super) async fn list(&mut self) -> Result<Reply, Refusal> {
        let class = self.class();
        let hops = self.hop_views();
        let mut shown = Vec::new();
        let own = self.agent.keys_now();
        let lister = self.lister(&hops, class);
        for id in own.iter().cloned() {
            if listed(&self.agent, &lister, Listed::Held(&id)) {
                shown.push(id);
            }
        }
        let mut upstream = self.upstream_listing().await;
        // A key both hold is hopward's: listed once, signed here, and not
        // listed at all where hopward's copy is hidden (it would be hopward
        // that is asked to sign with it).
        upstream.retain(|k| !own.iter().any(|id| id.blob() == k.blob.as_slice()));
        let lister = self.lister(&hops, class);
        upstream.retain(|k| {
            let key = Listed::Upstream {
                fingerprint: &k.fingerprint,
                comment: &k.comment,
            };
            listed(&self.agent, &lister, key)
        });
        let answer: Vec<(&[u8], &str)> = shown
            .iter()
            .map(|id| (id.blob(), id.comment.as_str()))
            .chain(
                upstream
                    .iter()
                    .map(|k| (k.blob.as_slice(), k.comment.as_str())),
            )
            .collect();
        Ok(crate::protocol::reply::identities_answer(
            answer.into_iter(),
        ))
    }
}
