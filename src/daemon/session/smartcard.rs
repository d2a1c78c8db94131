//! `ssh-add -s PROVIDER` and `ssh-add -e PROVIDER`: a PKCS#11 token's keys
//! loaded through a helper process, and dropped with it.

use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, info};

use crate::confirm::broker::Withdraw;
use crate::keys::keystore::{Constraints, Identity};
use crate::policy::KeyOp;
use crate::protocol::reply::Reply;
use crate::protocol::request::{Constraint, Passphrase};
use crate::text::clean;

use super::Session;
use super::refusal::{Audit, Refusal, Said};

/// A refusal naming the provider it is about.
fn about(provider: &str, text: impl Into<String>) -> Refusal {
    Refusal::said(Said::WarnProvider {
        provider: provider.to_string(),
        text: text.into(),
    })
}

impl Session {
    /// As ssh-agent's `process_add_smartcard_key`, a provider named through
    /// a forwarded agent is refused (unless `-O allow-remote-pkcs11`), its
    /// real path must match `-P`, and `[forwarded] add` of the policy
    /// decides as for any key. The provider runs in a helper process; the
    /// PIN goes there only.
    pub(super) async fn add_smartcard(
        &mut self,
        provider: &str,
        pin: Passphrase<'_>,
        constraints: &[Constraint<'_>],
    ) -> Result<Reply, Refusal> {
        let mut parsed = Constraints::default();
        let mut associated: Option<(bool, &[&[u8]])> = None;
        for constraint in constraints {
            let duplicate = match constraint {
                Constraint::AssociatedCerts { certs_only, certs } => {
                    associated.replace((*certs_only, certs)).is_some()
                }
                Constraint::SkProvider(_) => {
                    return Err(Refusal::warn(
                        "refused PKCS#11 add: sk-provider is not valid here",
                    ));
                }
                common => self.common_constraint(&mut parsed, common, "refused PKCS#11 add")?,
            };
            if duplicate {
                return Err(Refusal::warn(
                    "refused PKCS#11 add: a constraint is given twice",
                ));
            }
        }
        self.default_lifetime(&mut parsed);
        let options = self.agent.options();
        let path = match crate::keys::sk::resolve_provider(
            provider,
            &options.provider_allowlist,
            self.remote(),
            options.allow_remote_providers,
        ) {
            Ok(crate::keys::sk::Provider::Library(path)) => path,
            Ok(crate::keys::sk::Provider::Internal) => {
                return Err(Refusal::warn(
                    "refused PKCS#11 add: \"internal\" is not a PKCS#11 provider",
                ));
            }
            Err(e) => {
                return Err(
                    Refusal::warn_peer(format!("refused PKCS#11 add: {e}")).audited(
                        Audit::Provider {
                            key: None,
                            refusal: e,
                        },
                    ),
                );
            }
        };
        let shown = path.display().to_string();
        if self.agent.pkcs11_loaded(&path) {
            // As ssh-agent: keys already held are not added again, so a
            // provider whose keys are all still here adds nothing and fails;
            // one whose keys were dropped (ssh-add -D) loads afresh.
            let held = self
                .agent
                .keys_now()
                .iter()
                .any(|id| id.pkcs11().is_some_and(|p| p.path == path));
            if held {
                return Err(about(
                    &shown,
                    "refused PKCS#11 add: its keys are already loaded (ssh-add -e first)",
                ));
            }
            if let Some(old) = self.agent.take_pkcs11(&path) {
                old.stop().await;
            }
        }
        self.allow_key_op_with(KeyOp::Add, Some((&shown, &shown)), Some(shown.clone()))
            .await?;
        let pin = zeroize::Zeroizing::new(pin.0.to_vec());
        let timeout = self.agent.provider_timeout();
        let (provider, keys) =
            match crate::keys::pkcs11::Pkcs11Provider::load(path.clone(), &pin, timeout).await {
                Ok(loaded) => loaded,
                Err(e) => return Err(about(&shown, format!("PKCS#11 add failed: {e}"))),
            };
        drop(pin);
        let provider = Arc::new(provider);
        let now = Instant::now();
        let (certs_only, certs) = associated.unwrap_or((false, &[]));
        let mut identities = Vec::new();
        for key in keys {
            let comment = if key.label.is_empty() {
                shown.clone()
            } else {
                key.label.clone()
            };
            for cert in certs {
                match crate::ssh::key::PublicKey::parse(cert) {
                    Ok(cert) if cert.is_cert && cert.parts == key.public.parts => {
                        identities.push(Identity::on_pkcs11_token(
                            cert,
                            comment.clone(),
                            parsed.clone(),
                            Arc::clone(&provider),
                            now,
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => debug!(conn = self.id, "associated certificate skipped: {e}"),
                }
            }
            if !certs_only {
                identities.push(Identity::on_pkcs11_token(
                    key.public,
                    comment,
                    parsed.clone(),
                    Arc::clone(&provider),
                    now,
                ));
            }
        }
        if identities.is_empty() {
            let refusal = about(&shown, "PKCS#11 add: no usable keys on the token");
            provider.stop().await;
            return Err(refusal);
        }
        let count = identities.len();
        for identity in identities {
            let fp = identity.fingerprint.clone();
            if let Err(e) = self.agent.add_key(identity) {
                let refusal = Refusal::warn(format!("refused to add token key {fp}: {e}"));
                self.agent.keystore().remove_provider(&path);
                provider.stop().await;
                return Err(refusal);
            }
            info!(conn = self.id, key = %fp, provider = %shown, "added token key");
        }
        self.agent.set_pkcs11(path, provider);
        info!(conn = self.id, provider = %shown, keys = count, "PKCS#11 provider loaded");
        Ok(Reply::Success)
    }

    /// `ssh-add -e PROVIDER`: drops the token's keys and stops its helper.
    pub(super) async fn remove_smartcard(&mut self, provider: &str) -> Result<Reply, Refusal> {
        let Ok(path) = std::fs::canonicalize(provider) else {
            return Err(Refusal::warn(format!(
                "PKCS#11 remove: no such provider {}",
                clean(provider, 100)
            )));
        };
        let shown = path.display().to_string();
        if !self.agent.pkcs11_loaded(&path) {
            return Err(about(&shown, "PKCS#11 remove: provider not loaded"));
        }
        self.allow_key_op_with(KeyOp::Remove, Some((&shown, &shown)), Some(shown.clone()))
            .await?;
        let Some(removed) = self.agent.keystore().remove_provider(&path) else {
            return Err(Refusal::quiet());
        };
        let keys: Vec<String> = removed.iter().map(|id| id.fingerprint.clone()).collect();
        self.agent.withdraw_questions(
            Withdraw::Keys(&keys),
            "PKCS#11 provider removed (ssh-add -e)",
        );
        if let Some(helper) = self.agent.take_pkcs11(&path) {
            helper.stop().await;
        }
        info!(conn = self.id, provider = %shown, keys = keys.len(), "PKCS#11 provider removed");
        Ok(Reply::Success)
    }
}
