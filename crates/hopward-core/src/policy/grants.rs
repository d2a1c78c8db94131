//! Remembered approvals (`remember = "10m"` on a confirm rule): an answered
//! prompt covers exactly the same key, chain of host keys, class,
//! destination status, user (with its auth style) and purpose until it
//! expires on the monotonic clock.
//!
//! Invariants: grants are cleared on lock and on every successful policy
//! reload, so a changed rule never inherits an old "yes"; every clear moves
//! the store's epoch, and a "yes" asked for before a clear is never stored
//! after it ([`Grants::add_if`]); a login whose
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
    /// Host key fingerprints of the jump hosts (ProxyJump) before the
    /// chain: a yes for a login through a bastion is not one for the same
    /// host reached another way.
    pub jump: Vec<String>,
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
            jump: ctx.jump.iter().map(|h| h.fingerprint.clone()).collect(),
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
struct Store {
    /// The last grant id handed out.
    last_id: u64,
    /// Clears so far: the store's epoch.
    epoch: u64,
    grants: Vec<Grant>,
}

#[derive(Debug, Default)]
pub struct Grants {
    inner: Mutex<Store>,
}

impl Grants {
    fn lock(&self) -> std::sync::MutexGuard<'_, Store> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The store's epoch: it moves with every [`Grants::clear`].
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// Adds a grant (replacing one with the same scope), only if no clear
    /// happened since `epoch` was read (checked under the same lock as the
    /// insert, so a clear cannot slip in between); `None` otherwise.
    pub fn add_if(
        &self,
        epoch: u64,
        scope: GrantScope,
        hosts: Vec<String>,
        rule: &str,
        ttl: Duration,
        now: Instant,
    ) -> Option<u64> {
        let mut g = self.lock();
        (g.epoch == epoch).then(|| Self::insert(&mut g, scope, hosts, rule, ttl, now))
    }

    /// The live grant covering `scope`, if any.
    /// The remembered yes for exactly `scope`, given under `rule`: a yes
    /// given under one rule never answers a request another rule decides
    /// (a rule on the requesting process, `cwd` say, can make two requests
    /// with the same scope meet different rules).
    pub fn find(&self, scope: &GrantScope, rule: &str, now: Instant) -> Option<u64> {
        let mut g = self.lock();
        g.grants.retain(|grant| grant.expires > now);
        g.grants
            .iter()
            .find(|grant| grant.scope == *scope && grant.rule == rule)
            .map(|grant| grant.id)
    }

    fn insert(
        g: &mut Store,
        scope: GrantScope,
        hosts: Vec<String>,
        rule: &str,
        ttl: Duration,
        now: Instant,
    ) -> u64 {
        g.last_id += 1;
        let id = g.last_id;
        g.grants.retain(|grant| grant.scope != scope);
        g.grants.push(Grant {
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
        g.grants.retain(|grant| grant.expires > now);
        g.grants.clone()
    }

    pub fn revoke(&self, id: u64) -> bool {
        let mut g = self.lock();
        let before = g.grants.len();
        g.grants.retain(|grant| grant.id != id);
        g.grants.len() != before
    }

    /// Drops every grant and moves the epoch (even with none to drop: a
    /// question open now must not leave one behind).
    pub fn clear(&self) -> usize {
        let mut g = self.lock();
        g.epoch += 1;
        let n = g.grants.len();
        g.grants.clear();
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
            jump: Vec::new(),
        }
    }

    #[test]
    fn grants_cover_exactly_their_scope_until_expiry() {
        let g = Grants::default();
        let now = Instant::now();
        let add = |g: &Grants| {
            let epoch = g.epoch();
            g.add_if(
                epoch,
                scope("deploy"),
                vec![],
                "r",
                Duration::from_secs(60),
                now,
            )
            .unwrap()
        };
        let id = add(&g);
        assert_eq!(g.find(&scope("deploy"), "r", now), Some(id));
        // Another rule deciding the same scope is not answered by this yes.
        assert_eq!(g.find(&scope("deploy"), "another rule", now), None);
        assert_eq!(g.find(&scope("root"), "r", now), None);
        assert_eq!(
            g.find(&scope("deploy"), "r", now + Duration::from_secs(61)),
            None
        );
        let id2 = add(&g);
        assert!(g.revoke(id2));
        assert_eq!(g.find(&scope("deploy"), "r", now), None);
    }

    #[test]
    fn a_yes_asked_for_before_a_clear_is_not_stored_after_it() {
        let g = Grants::default();
        let now = Instant::now();
        let ttl = Duration::from_secs(600);
        let before = g.epoch();
        assert_eq!(
            g.clear(),
            0,
            "nothing to drop, the epoch moves all the same"
        );
        assert_eq!(
            g.add_if(before, scope("deploy"), vec![], "r", ttl, now),
            None
        );
        assert_eq!(g.find(&scope("deploy"), "r", now), None);
        let id = g.add_if(g.epoch(), scope("deploy"), vec![], "r", ttl, now);
        assert!(id.is_some());
        assert_eq!(g.find(&scope("deploy"), "r", now), id);
    }
}
