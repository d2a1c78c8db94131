//! Remembered approvals (`remember = "10m"` on a confirm rule): an answered
//! prompt covers exactly the same key, chain of host keys, class,
//! destination status, user (with its auth style) and purpose until it
//! expires on the monotonic clock.
//!
//! Invariants: grants are cleared on lock and on every successful policy
//! reload, so a changed rule never inherits an old "yes"; a login whose
//! destination nobody verified is never remembered (the policy drops
//! `remember` for it), so a replayed bind cannot borrow a "yes" given for
//! the host it names.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::trust::binding::Purpose;
use crate::trust::context::{Destination, RequestClass, RequestContext};

/// What a grant covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GrantScope {
    pub key: String,
    /// Host key fingerprints of the chain, in order.
    pub chain: Vec<String>,
    pub class: RequestClass,
    pub destination: Destination,
    pub user: Option<String>,
    /// Whether `user` is the account as sent, not an escaped form of bytes
    /// (so `r\xffoot` typed out and the byte 0xff are not the same user).
    pub user_exact: bool,
    pub user_style: Option<String>,
    pub purpose: Purpose,
}

impl GrantScope {
    pub fn of(ctx: &RequestContext) -> GrantScope {
        GrantScope {
            key: ctx.key_fingerprint.clone(),
            chain: ctx.chain.iter().map(|h| h.fingerprint.clone()).collect(),
            class: ctx.class,
            destination: ctx.destination,
            user: ctx.user.clone(),
            user_exact: ctx.user_exact,
            user_style: ctx.user_style.clone(),
            purpose: ctx.purpose,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub id: u64,
    pub scope: GrantScope,
    /// The chain as the log shows it (a verified name, else the
    /// fingerprint), for `hopward grants`; not part of what is covered.
    pub hosts: Vec<String>,
    pub rule: String,
    pub expires: Instant,
}

#[derive(Debug, Default)]
pub struct Grants {
    inner: Mutex<(u64, Vec<Grant>)>,
}

impl Grants {
    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, Vec<Grant>)> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The live grant covering `scope`, if any.
    pub fn find(&self, scope: &GrantScope, now: Instant) -> Option<u64> {
        let mut g = self.lock();
        g.1.retain(|grant| grant.expires > now);
        g.1.iter()
            .find(|grant| grant.scope == *scope)
            .map(|grant| grant.id)
    }

    pub fn add(
        &self,
        scope: GrantScope,
        hosts: Vec<String>,
        rule: &str,
        ttl: Duration,
        now: Instant,
    ) -> u64 {
        let mut g = self.lock();
        g.0 += 1;
        let id = g.0;
        g.1.retain(|grant| grant.scope != scope);
        g.1.push(Grant {
            id,
            scope,
            hosts,
            rule: rule.to_string(),
            expires: now + ttl,
        });
        id
    }

    pub fn list(&self, now: Instant) -> Vec<Grant> {
        let mut g = self.lock();
        g.1.retain(|grant| grant.expires > now);
        g.1.clone()
    }

    pub fn revoke(&self, id: u64) -> bool {
        let mut g = self.lock();
        let before = g.1.len();
        g.1.retain(|grant| grant.id != id);
        g.1.len() != before
    }

    pub fn clear(&self) -> usize {
        let mut g = self.lock();
        let n = g.1.len();
        g.1.clear();
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(user: &str) -> GrantScope {
        GrantScope {
            key: "SHA256:k".into(),
            chain: vec!["SHA256:b".into(), "SHA256:t".into()],
            class: RequestClass::Forwarded,
            destination: Destination::Verified,
            user: Some(user.into()),
            user_exact: true,
            user_style: None,
            purpose: Purpose::Login,
        }
    }

    #[test]
    fn grants_cover_exactly_their_scope_until_expiry() {
        let g = Grants::default();
        let now = Instant::now();
        let id = g.add(scope("deploy"), vec![], "r", Duration::from_secs(60), now);
        assert_eq!(g.find(&scope("deploy"), now), Some(id));
        assert_eq!(g.find(&scope("root"), now), None);
        assert_eq!(
            g.find(&scope("deploy"), now + Duration::from_secs(61)),
            None
        );
        let id2 = g.add(scope("deploy"), vec![], "r", Duration::from_secs(60), now);
        assert!(g.revoke(id2));
        assert_eq!(g.find(&scope("deploy"), now), None);
    }
}
