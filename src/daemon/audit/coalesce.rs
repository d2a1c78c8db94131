//! Refusals from one origin that come faster than a person makes them are
//! coalesced: the first [`BURST`] in a [`WINDOW`] are written one by one,
//! the rest are counted, one record per kind of refusal (event and
//! reason), with the count and the first and last time.
//!
//! Invariants: every refusal offered is either handed back to be written or
//! counted in exactly one held summary (nothing is dropped); a summary
//! stands for at least one refusal, all of its kind unless it says
//! `mixed`; allows never pass through here; the tables are bounded
//! ([`MAX_ORIGINS`], [`MAX_KINDS`]). Pure: time comes in as an argument.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Refusals per origin written one by one in a window. `ssh` offering every
/// key of the agent to a server that takes none, or a person retrying a
/// login, stays well under it; a bastion that asks for more than this in a
/// minute is a program, and its refusals after the tenth tell nothing new.
pub(crate) const BURST: u32 = 10;

/// The window an origin's burst is counted in, and the longest a held
/// summary waits before it is written (while the refusal budget allows).
pub(crate) const WINDOW: Duration = Duration::from_secs(60);

/// Origins tracked at once; beyond, refusals share one origin, so the
/// table stays bounded whatever an attacker calls itself.
pub(crate) const MAX_ORIGINS: usize = 1024;

/// Kinds of refusal counted apart per origin; the last one takes every
/// further kind and says so (`mixed`).
pub(crate) const MAX_KINDS: usize = 8;

const OVERFLOW: &str = "(too many origins)";

/// What comes of an offered refusal.
#[derive(Debug, PartialEq)]
pub(crate) enum Offer {
    /// Write it as it is.
    Write(Value),
    /// Counted into a held summary.
    Held,
}

#[derive(Debug)]
struct Origin {
    window_start: Instant,
    written: u32,
    held: Vec<(String, Held)>,
}

#[derive(Debug)]
struct Held {
    /// The first refusal held, which the summary shows.
    record: Value,
    count: u64,
    first: String,
    last: String,
    mixed: bool,
}

impl Held {
    fn add(&mut self, ts: &str, mixed: bool) {
        self.count += 1;
        self.last = ts.to_string();
        self.mixed |= mixed;
    }

    fn merge(&mut self, other: Held, mixed: bool) {
        self.count += other.count;
        if other.first < self.first {
            self.first = other.first;
        }
        if other.last > self.last {
            self.last = other.last;
        }
        self.mixed |= mixed || other.mixed;
    }

    fn summary(mut self, origins: Option<u64>) -> Value {
        if let Value::Object(map) = &mut self.record {
            let mut c = json!({ "count": self.count, "first": self.first, "last": self.last });
            if self.mixed {
                c["mixed"] = json!(true);
            }
            if let Some(n) = origins {
                c["origins"] = json!(n);
            }
            map.insert("coalesced".into(), c);
        }
        self.record
    }
}

#[derive(Debug, Default)]
pub(crate) struct Coalescer {
    origins: HashMap<String, Origin>,
    /// Refusals counted into summaries since start.
    pub(crate) coalesced: u64,
}

impl Coalescer {
    /// Offers a refusal of `kind` from `origin` made at `ts`; `record`
    /// makes its record, only when it is written or becomes the one a
    /// summary shows (a flood pays for counting, not for shaping). `room`
    /// is false when the refusal budget of the file is spent, and then
    /// every refusal is held. A `local` origin has no burst limit: a
    /// program of this machine runs as the user and could write the file
    /// itself, so counting its refusals would only hide detail from the
    /// user; it is held only when the budget is spent.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn offer(
        &mut self,
        origin: &str,
        kind: &str,
        local: bool,
        ts: &str,
        now: Instant,
        room: bool,
        record: impl FnOnce() -> Value,
    ) -> Offer {
        let key = if self.origins.contains_key(origin) || self.origins.len() < MAX_ORIGINS {
            origin
        } else {
            OVERFLOW
        };
        let entry = self.origins.entry(key.to_string()).or_insert(Origin {
            window_start: now,
            written: 0,
            held: Vec::new(),
        });
        if entry.held.is_empty() && now.saturating_duration_since(entry.window_start) >= WINDOW {
            entry.window_start = now;
            entry.written = 0;
        }
        if room && entry.held.is_empty() && (local || entry.written < BURST) {
            entry.written = entry.written.saturating_add(1);
            return Offer::Write(record());
        }
        self.coalesced += 1;
        if let Some((_, held)) = entry.held.iter_mut().find(|(k, _)| k == kind) {
            held.add(ts, false);
        } else if entry.held.len() < MAX_KINDS {
            entry.held.push((
                kind.to_string(),
                Held {
                    record: record(),
                    count: 1,
                    first: ts.to_string(),
                    last: ts.to_string(),
                    mixed: false,
                },
            ));
        } else if let Some((_, held)) = entry.held.last_mut() {
            held.add(ts, true);
        }
        Offer::Held
    }

    /// Refusals held now (not yet in any written record).
    pub(crate) fn held(&self) -> u64 {
        self.origins
            .values()
            .flat_map(|o| o.held.iter())
            .map(|(_, h)| h.count)
            .sum()
    }

    /// When the next held summary falls due, if any is held.
    pub(crate) fn next_due(&self) -> Option<Instant> {
        self.origins
            .values()
            .filter(|o| !o.held.is_empty())
            .map(|o| o.window_start + WINDOW)
            .min()
    }

    /// The summaries whose window has ended (every one if `all`) and that
    /// `fits` takes, each with the number of refusals it stands for; an
    /// origin whose summaries all went out starts a new window. One `fits`
    /// refuses stays held. Origins with nothing held and an old window are
    /// forgotten.
    pub(crate) fn due(
        &mut self,
        now: Instant,
        all: bool,
        mut fits: impl FnMut(&Value) -> bool,
    ) -> Vec<(Value, u64)> {
        let mut out = Vec::new();
        self.origins.retain(|_, origin| {
            let ended = now.saturating_duration_since(origin.window_start) >= WINDOW;
            if origin.held.is_empty() {
                return !ended;
            }
            if !(ended || all) {
                return true;
            }
            let mut kept = Vec::new();
            for (kind, held) in origin.held.drain(..) {
                let count = held.count;
                let probe = held.record.clone();
                if kept.is_empty() && fits(&probe) {
                    out.push((held.summary(None), count));
                } else {
                    kept.push((kind, held));
                }
            }
            origin.held = kept;
            // Either way a new window: what did not fit is looked at again
            // when it ends, not at once (the writer would spin on it).
            origin.window_start = now;
            if origin.held.is_empty() {
                origin.written = 0;
            }
            true
        });
        out
    }

    /// Everything still held, as one record (the first held refusal of
    /// one origin, with the count, time span and number of origins of
    /// all): what a stop writes when the refusal budget has no room left.
    pub(crate) fn merge_rest(&mut self) -> Option<(Value, u64)> {
        let mut merged: Option<Held> = None;
        let mut origins = 0u64;
        for origin in self.origins.values_mut() {
            if origin.held.is_empty() {
                continue;
            }
            origins += 1;
            for (_, held) in origin.held.drain(..) {
                match &mut merged {
                    None => merged = Some(held),
                    Some(m) => m.merge(held, true),
                }
            }
        }
        merged.map(|m| {
            let count = m.count;
            (m.summary(Some(origins)), count)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(i: u64) -> Value {
        json!({ "ts": format!("t{i}"), "decision": "deny", "n": i })
    }

    #[test]
    fn a_flood_is_written_up_to_the_burst_then_counted_once() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        let mut written = 0;
        for i in 0..100 {
            if let Offer::Write(_) =
                c.offer("bastion", "k", false, &format!("t{}", i), t0, true, || {
                    refusal(i)
                })
            {
                written += 1;
            }
        }
        assert_eq!(written, BURST);
        assert_eq!(c.held(), 90);
        assert!(
            c.due(t0 + Duration::from_secs(59), false, |_| true)
                .is_empty()
        );
        let due = c.due(t0 + WINDOW, false, |_| true);
        assert_eq!(due.len(), 1);
        let (summary, count) = &due[0];
        assert_eq!(*count, 90);
        assert_eq!(summary["coalesced"]["count"], 90);
        assert_eq!(summary["coalesced"]["first"], "t10");
        assert_eq!(summary["coalesced"]["last"], "t99");
        assert_eq!(summary["n"], 10);
        assert_eq!(c.held(), 0);
        assert_eq!(c.coalesced, 90);
    }

    #[test]
    fn origins_have_their_own_burst() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        for i in 0..20 {
            c.offer("bastion", "k", false, &format!("t{}", i), t0, true, || {
                refusal(i)
            });
        }
        assert_eq!(
            c.offer("laptop", "k", false, &format!("t{}", 99), t0, true, || {
                refusal(99)
            }),
            Offer::Write(refusal(99))
        );
    }

    #[test]
    fn each_kind_of_refusal_is_counted_apart_up_to_a_bound() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        for i in 0..(u64::from(BURST) + 30) {
            let kind = if i % 2 == 0 { "flood" } else { "timeout" };
            c.offer("bastion", kind, false, "t", t0, true, || refusal(i));
        }
        for k in 0..20 {
            c.offer("bastion", &format!("k{k}"), false, "t", t0, true, || {
                refusal(100 + k)
            });
        }
        let due = c.due(t0 + WINDOW, false, |_| true);
        assert_eq!(due.len(), MAX_KINDS);
        assert_eq!(due[0].1, 15);
        assert_eq!(due[1].1, 15);
        let mixed = &due[MAX_KINDS - 1].0;
        assert_eq!(mixed["coalesced"]["mixed"], true);
        assert_eq!(due.iter().map(|d| d.1).sum::<u64>(), 50);
    }

    #[test]
    fn local_programs_have_no_burst_limit_only_the_budget() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        for i in 0..100 {
            assert!(matches!(
                c.offer("local 1000 /usr/bin/ssh", "k", true, "t", t0, true, || {
                    refusal(i)
                }),
                Offer::Write(_)
            ));
        }
        assert_eq!(
            c.offer("local 1000 /usr/bin/ssh", "k", true, "t", t0, false, || {
                refusal(100)
            }),
            Offer::Held
        );
    }

    #[test]
    fn without_room_everything_is_held_until_all_is_asked_for() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        assert_eq!(
            c.offer("a", "k", false, &format!("t{}", 1), t0, false, || refusal(
                1
            )),
            Offer::Held
        );
        assert_eq!(c.next_due(), Some(t0 + WINDOW));
        let due = c.due(t0, true, |_| true);
        assert_eq!(due.len(), 1);
        assert_eq!(due[0].1, 1);
    }

    #[test]
    fn what_does_not_fit_stays_held_and_a_stop_merges_it_into_one_record() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        for o in 0..5 {
            for i in 0..3 {
                c.offer(
                    &format!("o{o}"),
                    "k",
                    false,
                    &format!("t{}", o * 10 + i),
                    t0,
                    false,
                    || refusal(o * 10 + i),
                );
            }
        }
        let mut room = 2;
        let due = c.due(t0 + WINDOW, false, |_| {
            room -= 1;
            room >= 0
        });
        assert_eq!(due.len(), 2);
        assert_eq!(c.held(), 9);
        // What did not fit falls due again a window later, not at once.
        assert_eq!(c.next_due(), Some(t0 + WINDOW + WINDOW));
        let (merged, count) = c.merge_rest().unwrap();
        assert_eq!(count, 9);
        assert_eq!(merged["coalesced"]["count"], 9);
        assert_eq!(merged["coalesced"]["origins"], 3);
        assert_eq!(c.held(), 0);
        assert!(c.merge_rest().is_none());
    }

    #[test]
    fn the_origin_table_is_bounded() {
        let mut c = Coalescer::default();
        let t0 = Instant::now();
        for i in 0..(MAX_ORIGINS as u64 + 500) {
            c.offer(
                &format!("o{i}"),
                "k",
                false,
                &format!("t{}", i),
                t0,
                true,
                || refusal(i),
            );
        }
        assert!(c.origins.len() <= MAX_ORIGINS + 1);
        // Every refusal is accounted for: written or held.
        assert_eq!(
            c.held() + (MAX_ORIGINS as u64) + u64::from(BURST),
            MAX_ORIGINS as u64 + 500
        );
    }
}
