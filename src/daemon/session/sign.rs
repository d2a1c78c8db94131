//! A sign request: find where the key lives, have the policy decide, sign,
//! and complete the decision's audit record with what came of it.

use crate::protocol::reply::Reply;
use crate::trust::binding::SignedData;

use super::Session;
use super::refusal::Refusal;

impl Session {
    pub(super) async fn sign(
        &mut self,
        key_blob: &[u8],
        data: &[u8],
        flags: u32,
    ) -> Result<Reply, Refusal> {
        let signer = self.signer(key_blob).await?;
        let signed_data = SignedData::parse(data);
        let (fingerprint, comment) = signer.names();
        // For an upstream key the upstream applies its own constraints
        // (ssh-add -h, -c) to the replayed binds; the policy decides before
        // it is ever asked.
        let verdict = self
            .authorize_sign(
                (fingerprint, comment, key_blob),
                signer.sign_key(key_blob),
                &signed_data,
                data,
            )
            .await;
        if !verdict.allowed {
            return Err(Refusal::quiet());
        }
        // A signature made outside this process (a token, the upstream)
        // that fails after the allow turns the audit record into a deny
        // that says so.
        match signer
            .sign(self, (key_blob, data, flags), &verdict.rule)
            .await
        {
            Ok(reply) => {
                verdict.signed();
                Ok(reply)
            }
            Err(failure) => {
                if let Some(reason) = failure.reason {
                    verdict.sign_failed(reason);
                }
                Err(failure.refusal)
            }
        }
    }
}
