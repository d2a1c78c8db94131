//! `[forwarded] brake = { hosts = N, per = "DURATION" }`: a brake on bursts
//! through one bastion. Once more than `hosts` distinct destinations have
//! been asked for through the same first forwarding hop within `per`, every
//! further request through it is confirmed, whatever the rule said (`allow`,
//! `notify`, a remembered approval); a `deny` stays a deny.
//!
//! A person fans out to a few hosts a minute; a compromised bastion
//! scripting through `ssh -A` fans out to dozens. The first hop is the one
//! this machine's own ssh verified, so it is the one name a hostile bastion
//! cannot change; the destinations after it are its word, so the worst case
//! is assumed wherever one cannot be checked: a login whose destination is
//! not verified, and any signature that is not a login, counts as a
//! destination of its own.
//!
//! Memory is bounded whatever the bastion sends: at most [`MAX_HOPS`] first
//! hops and [`MAX_DESTINATIONS`] destinations per hop are remembered, the
//! oldest going first (a hop over the cap is braked anyway).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::trust::context::{Destination, RequestContext};

/// The brake as a policy file sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrakeSettings {
    /// How many distinct destinations pass as the rules say within `per`.
    pub hosts: u32,
    pub per: Duration,
}

/// The largest `hosts` a policy may set: past it the brake could never
/// engage, since no more destinations than [`MAX_DESTINATIONS`] are kept.
pub(crate) const MAX_HOSTS: u32 = 1000;
/// Destinations remembered per first hop.
pub(crate) const MAX_DESTINATIONS: usize = 1024;
/// First hops remembered at once.
pub(crate) const MAX_HOPS: usize = 256;
/// The longest window a policy may set.
pub(crate) const MAX_PER: Duration = Duration::from_secs(24 * 3600);

/// A request the brake caught: how many distinct destinations were asked
/// for through `hop` within `per`, this one included.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    pub hop: String,
    pub hosts: usize,
    pub per: Duration,
    /// The policy's `hosts`.
    pub limit: u32,
}

impl Burst {
    /// One line for the prompt and for `HOPWARD_BRAKE`.
    pub fn describe(&self) -> String {
        format!(
            "{}{} hosts through {} in {} (the brake allows {} without asking)",
            if self.hosts >= MAX_DESTINATIONS {
                "at least "
            } else {
                ""
            },
            self.hosts,
            self.hop,
            crate::duration::format(self.per),
            self.limit
        )
    }
}

/// What a destination is known as: a verified host key, or a request of
/// its own (unverified, not a login).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Dest {
    Host(String),
    Unique(u64),
}

#[derive(Debug, Default)]
struct HopLog {
    /// Each destination with when it was last asked for, oldest first.
    seen: VecDeque<(Dest, Instant)>,
    last: Option<Instant>,
    /// The hop as prompts and `status` name it.
    label: String,
}

/// One first forwarding hop as `hopward status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HopCount {
    pub hop: String,
    /// Distinct destinations within the window.
    pub hosts: usize,
    /// Past the limit: every request through it is asked.
    pub engaged: bool,
}

#[derive(Debug, Default)]
struct State {
    hops: HashMap<String, HopLog>,
    next_unique: u64,
}

/// The destinations asked for through each first forwarding hop, shared
/// by every connection of one agent.
#[derive(Debug, Default)]
pub struct Bursts {
    state: Mutex<State>,
}

impl Bursts {
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts the destination of `ctx` against its first forwarding hop and
    /// says whether the brake catches it. Only requests through a
    /// forwarding hop count; the caller leaves out those the policy denies
    /// (they are never signed). Counting and checking happen in one step,
    /// so requests fired at once cannot all slip under the limit.
    pub fn note(
        &self,
        settings: &BrakeSettings,
        ctx: &RequestContext,
        now: Instant,
    ) -> Option<Burst> {
        let first = ctx.chain.first().filter(|hop| hop.forwarding)?;
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let dest = match (ctx.destination, ctx.destination_hop()) {
            (Destination::Verified, Some(hop)) => Dest::Host(hop.fingerprint.clone()),
            _ => {
                state.next_unique += 1;
                Dest::Unique(state.next_unique)
            }
        };
        if !state.hops.contains_key(&first.fingerprint) && state.hops.len() >= MAX_HOPS {
            // Forget the hop that has been quiet longest.
            let quietest = state
                .hops
                .iter()
                .min_by_key(|(_, log)| log.last)
                .map(|(fp, _)| fp.clone());
            if let Some(fp) = quietest {
                state.hops.remove(&fp);
            }
        }
        let label = first
            .names
            .first()
            .map_or_else(|| first.fingerprint.clone(), |n| crate::text::clean(n, 64));
        let log = state.hops.entry(first.fingerprint.clone()).or_default();
        log.last = Some(now);
        log.label.clone_from(&label);
        while log
            .seen
            .front()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) >= settings.per)
        {
            log.seen.pop_front();
        }
        log.seen.retain(|(d, _)| *d != dest);
        log.seen.push_back((dest, now));
        while log.seen.len() > MAX_DESTINATIONS {
            log.seen.pop_front();
        }
        let hosts = log.seen.len();
        (hosts > settings.hosts as usize).then_some(Burst {
            hop: label,
            hosts,
            per: settings.per,
            limit: settings.hosts,
        })
    }
}

impl Bursts {
    /// The first hops with destinations inside the window now, busiest
    /// first.
    pub fn counts(&self, settings: &BrakeSettings, now: Instant) -> Vec<HopCount> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let mut counts: Vec<HopCount> = state
            .hops
            .values()
            .map(|log| {
                let hosts = log
                    .seen
                    .iter()
                    .filter(|(_, at)| now.saturating_duration_since(*at) < settings.per)
                    .count();
                HopCount {
                    hop: log.label.clone(),
                    hosts,
                    engaged: hosts > settings.hosts as usize,
                }
            })
            .filter(|c| c.hosts > 0)
            .collect();
        counts.sort_by(|a, b| b.hosts.cmp(&a.hosts).then_with(|| a.hop.cmp(&b.hop)));
        counts
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::trust::binding::Purpose;
    use crate::trust::context::HopView;
    use crate::trust::peer::Peer;

    fn ctx(first: &str, target: Option<&str>) -> RequestContext {
        let mut chain = vec![HopView::named(first, true)];
        let destination = match target {
            Some(t) => {
                chain.push(HopView::named(t, false));
                Destination::Verified
            }
            None => Destination::NotLogin,
        };
        RequestContext::of_parts(
            ("SHA256:key", "key"),
            chain,
            destination,
            None,
            Purpose::Login,
            &Arc::new(Peer::with_facts(0, None, Default::default())),
        )
    }

    const TWO_A_MINUTE: BrakeSettings = BrakeSettings {
        hosts: 2,
        per: Duration::from_secs(60),
    };

    #[test]
    fn past_the_limit_every_request_through_the_hop_is_caught() {
        let bursts = Bursts::new();
        let now = Instant::now();
        assert_eq!(
            bursts.note(&TWO_A_MINUTE, &ctx("bastion", Some("a")), now),
            None
        );
        assert_eq!(
            bursts.note(&TWO_A_MINUTE, &ctx("bastion", Some("b")), now),
            None
        );
        // The same host again is not a new destination.
        assert_eq!(
            bursts.note(&TWO_A_MINUTE, &ctx("bastion", Some("a")), now),
            None
        );
        let third = bursts
            .note(&TWO_A_MINUTE, &ctx("bastion", Some("c")), now)
            .unwrap();
        assert_eq!((third.hosts, third.hop.as_str()), (3, "bastion"));
        assert!(
            third
                .describe()
                .starts_with("3 hosts through bastion in 1m"),
            "{}",
            third.describe()
        );
        // Now even a host seen before is asked for.
        assert!(
            bursts
                .note(&TWO_A_MINUTE, &ctx("bastion", Some("a")), now)
                .is_some()
        );
        // Another bastion has its own count.
        assert_eq!(
            bursts.note(&TWO_A_MINUTE, &ctx("other", Some("c")), now),
            None
        );
        let counts = bursts.counts(&TWO_A_MINUTE, now);
        assert_eq!(
            counts,
            [
                HopCount {
                    hop: "bastion".into(),
                    hosts: 3,
                    engaged: true
                },
                HopCount {
                    hop: "other".into(),
                    hosts: 1,
                    engaged: false
                },
            ]
        );
        assert!(
            bursts
                .counts(&TWO_A_MINUTE, now + Duration::from_secs(60))
                .is_empty()
        );
    }

    #[test]
    fn the_window_forgets_old_destinations() {
        let bursts = Bursts::new();
        let now = Instant::now();
        for t in ["a", "b", "c"] {
            let _ = bursts.note(&TWO_A_MINUTE, &ctx("bastion", Some(t)), now);
        }
        let later = now + Duration::from_secs(61);
        assert_eq!(
            bursts.note(&TWO_A_MINUTE, &ctx("bastion", Some("d")), later),
            None
        );
    }

    #[test]
    fn what_cannot_be_verified_counts_as_a_new_destination_each_time() {
        let bursts = Bursts::new();
        let now = Instant::now();
        assert_eq!(bursts.note(&TWO_A_MINUTE, &ctx("bastion", None), now), None);
        assert_eq!(bursts.note(&TWO_A_MINUTE, &ctx("bastion", None), now), None);
        assert!(
            bursts
                .note(&TWO_A_MINUTE, &ctx("bastion", None), now)
                .is_some()
        );
    }

    #[test]
    fn requests_from_this_machine_are_not_counted() {
        let bursts = Bursts::new();
        let now = Instant::now();
        let mut direct = ctx("bastion", Some("a"));
        direct.chain[0].forwarding = false;
        for _ in 0..10 {
            assert_eq!(bursts.note(&TWO_A_MINUTE, &direct, now), None);
        }
    }

    #[test]
    fn memory_stays_bounded_however_many_destinations_and_hops() {
        let bursts = Bursts::new();
        let now = Instant::now();
        let wide = BrakeSettings {
            hosts: MAX_HOSTS,
            per: MAX_PER,
        };
        for i in 0..(MAX_DESTINATIONS + 50) {
            let _ = bursts.note(&wide, &ctx("bastion", Some(&format!("h{i}"))), now);
        }
        for i in 0..(MAX_HOPS + 10) {
            let _ = bursts.note(&wide, &ctx(&format!("b{i}"), Some("x")), now);
        }
        let state = bursts.state.lock().unwrap();
        assert!(state.hops.len() <= MAX_HOPS);
        assert!(
            state
                .hops
                .values()
                .all(|h| h.seen.len() <= MAX_DESTINATIONS)
        );
    }
}
