//! Certificates expire in the agent: a certificate past its `valid_before`
//! never signs a login, and once OpenSSH's grace after it has passed the
//! agent drops it, whoever added it (an `ssh-add` older than 10.1, a
//! forwarded add, a token); one added already past the grace is kept.
//!
//! OpenSSH 10.1+'s `ssh-add` asks for exactly this drop by giving a
//! certificate the lifetime `valid_before + 300 s - now` (`CERT_EXPIRY_GRACE`
//! in its `ssh-add.c`); the agent does the same by itself so every path
//! ends alike. Times here are wall-clock seconds since the epoch, the clock
//! servers judge a certificate by, never the monotonic clock, which stands
//! still while a laptop sleeps.

use std::time::{Duration, Instant};

use crate::ssh::cert::Certificate;
use crate::ssh::key::PublicKey;

/// How long after `valid_before` a certificate stays in the agent: OpenSSH's
/// `CERT_EXPIRY_GRACE` (5 minutes), so `ssh-add -l` looks the same whichever
/// added it.
pub(crate) const GRACE_SECS: u64 = 5 * 60;

/// The audit reason (and rule) of everything done to an expired
/// certificate: a signature refused, a drop, an add refused.
pub const REASON: &str = "cert-expired";

/// OpenSSH's "valid forever" (`ssh-keygen -V forever`).
const FOREVER: u64 = u64::MAX;

/// The validity window of a certificate the agent holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertValidity {
    pub valid_after: u64,
    pub valid_before: u64,
}

impl CertValidity {
    /// The window of `public` when it is a certificate that parses; `None`
    /// for a plain key. A certificate blob that does not parse has no window
    /// to act on: servers refuse it whatever the agent does.
    pub(crate) fn of(public: &PublicKey) -> Option<CertValidity> {
        Self::of_blob(&public.blob).filter(|_| public.is_cert)
    }

    /// The window of a certificate blob; `None` when it is not one.
    pub fn of_blob(blob: &[u8]) -> Option<CertValidity> {
        let cert = Certificate::parse(blob).ok()?;
        Some(CertValidity {
            valid_after: cert.valid_after,
            valid_before: cert.valid_before,
        })
    }

    /// When it stops being valid; `None` for a certificate valid forever.
    pub fn expires(&self) -> Option<u64> {
        (self.valid_before != FOREVER).then_some(self.valid_before)
    }

    /// Past `valid_before` at `now`: OpenSSH's servers refuse it
    /// (`valid_after <= now < valid_before` is what they accept), so the
    /// agent never signs with it.
    pub fn expired(&self, now: u64) -> bool {
        self.expires().is_some_and(|before| now >= before)
    }

    /// When the agent drops it: `valid_before` plus the grace.
    pub fn drop_at(&self) -> Option<u64> {
        self.expires()
            .map(|before| before.saturating_add(GRACE_SECS))
    }

    /// Whether the agent should no longer hold it at `now`.
    pub(crate) fn dropped(&self, now: u64) -> bool {
        self.drop_at().is_some_and(|at| now >= at)
    }
}

/// The monotonic instant that lies `deadline - now_unix` seconds after
/// `now` (at once if the deadline has passed): the reaper sleeps on
/// instants, and re-plans from the wall clock each time it wakes.
pub(crate) fn instant_of(deadline: u64, now_unix: u64, now: Instant) -> Instant {
    // A `valid_before` near the end of time (any certificate may carry one)
    // must not overflow the clock: a century is as good as never.
    const CENTURY: u64 = 100 * 365 * 24 * 3600;
    let wait = deadline.saturating_sub(now_unix).min(CENTURY);
    now.checked_add(Duration::from_secs(wait))
        .unwrap_or(now + Duration::from_secs(365 * 24 * 3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window(valid_after: u64, valid_before: u64) -> CertValidity {
        CertValidity {
            valid_after,
            valid_before,
        }
    }

    #[test]
    fn a_certificate_stops_signing_at_valid_before_and_is_dropped_after_the_grace() {
        let cert = window(100, 1_000);
        assert!(!cert.expired(999));
        assert!(
            cert.expired(1_000),
            "valid_before itself is outside the window, as in sshd"
        );
        assert!(!cert.dropped(1_000 + GRACE_SECS - 1));
        assert!(cert.dropped(1_000 + GRACE_SECS));
        assert_eq!(cert.drop_at(), Some(1_300));
    }

    #[test]
    fn a_certificate_valid_forever_never_expires() {
        let cert = window(0, u64::MAX);
        assert_eq!(cert.expires(), None);
        assert!(!cert.expired(u64::MAX - 1));
        assert!(!cert.dropped(u64::MAX));
    }

    #[test]
    fn a_certificate_not_yet_valid_still_signs() {
        // A server with a clock ahead of this machine's may accept it; its
        // own check decides.
        assert!(!window(2_000, 3_000).expired(1_000));
    }

    #[test]
    fn deadlines_in_the_past_are_due_at_once() {
        let now = Instant::now();
        assert_eq!(instant_of(10, 20, now), now);
        assert_eq!(instant_of(30, 20, now), now + Duration::from_secs(10));
    }

    /// A `valid_before` anywhere up to the end of time (a certificate may
    /// carry any) is a deadline far away, never a clock overflow.
    #[test]
    fn a_deadline_at_the_end_of_time_does_not_overflow() {
        let now = Instant::now();
        for deadline in [u64::MAX - 1, 1 << 63, (1 << 63) + 12345] {
            assert!(instant_of(deadline, 1_000, now) > now + Duration::from_secs(3600));
        }
    }
}
