//! `ssh-add KEY`: a key (with its constraints, and for a FIDO key its
//! provider) added once the policy allows it.

use std::time::Instant;

use tracing::info;

use crate::keys::keystore::{Constraints, Identity};
use crate::policy::KeyOp;
use crate::protocol::reply::Reply;
use crate::protocol::request::{Constraint, NewKey};
use crate::text::clean;

use super::Session;
use super::refusal::{Audit, Refusal};

impl Session {
    pub(super) async fn add(
        &mut self,
        key: &NewKey<'_>,
        constraints: &[Constraint<'_>],
    ) -> Result<Reply, Refusal> {
        let mut parsed = Constraints::default();
        let mut sk_provider = None;
        for constraint in constraints {
            let duplicate = match constraint {
                Constraint::SkProvider(name) => sk_provider.replace(*name).is_some(),
                Constraint::AssociatedCerts { .. } => {
                    return Err(Refusal::warn(
                        "refused to add key: associated certificates are only for PKCS#11 tokens",
                    ));
                }
                common => self.common_constraint(&mut parsed, common, "refused to add key")?,
            };
            if duplicate {
                return Err(Refusal::warn(
                    "refused to add key: a constraint is given twice",
                ));
            }
        }
        if let Some(name) = sk_provider {
            if !key.public.parts.key_type().is_security_key() {
                return Err(Refusal::warn(format!(
                    "refused to add key: a provider was named for {}, which is not a security key",
                    key.public.parts.key_type().name()
                )));
            }
            let options = self.agent.options();
            match crate::keys::sk::resolve_provider(
                name,
                &options.provider_allowlist,
                self.remote(),
                options.allow_remote_providers,
            ) {
                Ok(provider) => parsed.sk_provider = Some(provider),
                Err(e) => {
                    let fingerprint = key.public.fingerprint();
                    let comment = clean(&key.comment, 80);
                    return Err(Refusal::warn_peer(format!(
                        "refused to add key {fingerprint}: {e}"
                    ))
                    .audited(Audit::Provider {
                        key: Some((fingerprint, comment)),
                        refusal: e,
                    }));
                }
            }
        }
        self.default_lifetime(&mut parsed);
        let identity = Identity::new(key, parsed, Instant::now()).map_err(|e| {
            Refusal::warn(format!(
                "refused to add key {}: {e}",
                key.public.fingerprint()
            ))
        })?;
        let (fp, comment) = (identity.fingerprint.clone(), identity.comment.clone());
        let provider = identity.security_key().map(|k| k.provider.describe());
        self.allow_key_op_with(KeyOp::Add, Some((&fp, &comment)), provider.clone())
            .await?;
        let (confirm, lifetime) = (identity.constraints.confirm, identity.constraints.lifetime);
        let restricted = !identity.constraints.destinations.is_empty();
        match self.agent.add_key(identity) {
            Ok(()) => {
                info!(conn = self.id, key = %fp, comment = %clean(&comment, 80), confirm, lifetime = ?lifetime, restricted, provider = ?provider, "added key");
                Ok(Reply::Success)
            }
            Err(e) => Err(Refusal::warn(format!("refused to add key {fp}: {e}"))),
        }
    }
}
