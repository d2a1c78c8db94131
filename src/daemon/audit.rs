//! The audit log: one JSON object per decision, appended to
//! `$XDG_STATE_HOME/hopward/audit.jsonl` (or `[audit] path`), rotated by size.
//!
//! Invariants: a record never holds key material or the data being signed;
//! writing happens on a thread of its own, so the signing path only pays
//! for building the record and a channel send; a write error is logged and
//! never stops the agent. On the writer thread every record is shaped
//! (outside text escaped and bounded, `shape`), refusals from one origin
//! past a rate are counted into one record (`coalesce`), and the file is
//! followed through renames, deletes and full disks (`file`); `hopward
//! status` reads how that goes through [`AuditSink::health`].

mod coalesce;
mod file;
#[cfg(test)]
mod golden_tests;
pub(crate) mod journal;
mod outcome;
mod shape;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::Serialize;

use coalesce::{Coalescer, Offer};
pub(crate) use file::Health;
use file::{AuditFile, Line};
pub(crate) use outcome::{Decision, Event, Reason};

use crate::trust::context::{HopView, RequestClass, RequestContext};
use crate::trust::peer::Peer;

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct AuditHop {
    pub(crate) names: Vec<String>,
    pub(crate) fingerprint: String,
    pub(crate) forwarded: bool,
    /// For a hop that is the first hop's word (see [`HopView::reported_by`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reported_by: Option<String>,
    /// A jump host (ProxyJump) the login tunnelled through: it comes before
    /// the chain's binds. Left out of every other hop, so records without
    /// a jump keep the bytes they always had.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) jump: bool,
    /// Its name rests on a hashed known_hosts entry (or, with no name, its
    /// key is on a hashed line and its name is not learned yet).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) hashed: bool,
}

impl From<&HopView> for AuditHop {
    fn from(h: &HopView) -> Self {
        AuditHop {
            names: h.names.clone(),
            fingerprint: h.fingerprint.clone(),
            forwarded: h.forwarding,
            reported_by: h.reported_by.clone(),
            jump: false,
            hashed: h.hashed,
        }
    }
}

impl AuditHop {
    /// The chain of a sign request: its jump hosts, then its binds.
    fn route(ctx: &RequestContext) -> Vec<AuditHop> {
        let jumps = ctx.jump.iter().map(|h| AuditHop {
            jump: true,
            ..AuditHop::from(h)
        });
        jumps.chain(ctx.chain.iter().map(AuditHop::from)).collect()
    }
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct AuditPeer {
    pub(crate) pid: Option<u32>,
    pub(crate) uid: u32,
    pub(crate) exe: Option<String>,
}

impl From<&Peer> for AuditPeer {
    fn from(p: &Peer) -> Self {
        AuditPeer {
            pid: p.pid,
            uid: p.uid,
            exe: p.exe.as_ref().map(|e| e.display().to_string()),
        }
    }
}

/// One decision.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AuditRecord {
    pub(crate) ts: String,
    pub(crate) event: Event,
    pub(crate) key: Option<String>,
    pub(crate) comment: Option<String>,
    pub(crate) decision: Decision,
    /// The rule that decided, or `default:<class>`, or `forwarded.<op>`.
    pub(crate) rule: String,
    pub(crate) reason: Reason,
    #[serde(serialize_with = "outcome::serialize_class")]
    pub(crate) class: RequestClass,
    pub(crate) chain: Vec<AuditHop>,
    /// For a sign request: `verified` (a login that belongs to the last
    /// bind; its host is the last hop), `unverified:<why>`, or `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) destination: Option<String>,
    pub(crate) user: Option<String>,
    /// The auth style of a `user:style` login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) user_style: Option<String>,
    #[serde(serialize_with = "outcome::serialize_purpose")]
    pub(crate) purpose: Option<crate::trust::binding::Purpose>,
    pub(crate) peer: AuditPeer,
    pub(crate) conn: u64,
    /// Set for a key the upstream agent holds (upstream mode).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) upstream: bool,
    /// The provider a hardware key uses (its library path, or `internal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) provider: Option<String>,
    /// Set when `[forwarded] brake` made the request ask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) brake: Option<AuditBrake>,
}

/// What the brake saw: `hosts` distinct destinations through the first
/// forwarding hop within `per`, more than its `limit`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub(crate) struct AuditBrake {
    pub(crate) hosts: usize,
    pub(crate) per: String,
    pub(crate) limit: u32,
}

impl From<&crate::policy::brake::Burst> for AuditBrake {
    fn from(burst: &crate::policy::brake::Burst) -> Self {
        AuditBrake {
            hosts: burst.hosts,
            per: crate::duration::format(burst.per),
            limit: burst.limit,
        }
    }
}

impl AuditRecord {
    /// A record for a sign request.
    pub(crate) fn sign(
        ctx: &RequestContext,
        allowed: bool,
        rule: &str,
        reason: Reason,
        conn: u64,
    ) -> Self {
        AuditRecord {
            ts: now_rfc3339(),
            event: Event::Sign,
            key: Some(ctx.key_fingerprint.clone()),
            comment: Some(ctx.key_comment.clone()),
            decision: Decision::of(allowed),
            rule: rule.to_string(),
            reason,
            class: ctx.class,
            chain: AuditHop::route(ctx),
            destination: Some(ctx.destination.label()),
            user: ctx.user.clone(),
            user_style: ctx.user_style.clone(),
            purpose: Some(ctx.purpose),
            peer: AuditPeer::from(&*ctx.peer),
            conn,
            upstream: false,
            provider: None,
            brake: None,
        }
    }
}

impl AuditRecord {
    /// A record for a key event (`list`, `add`, `remove`, `lock` ...) on a
    /// connection; the decision is filled in with [`AuditRecord::decided`].
    pub(crate) fn key_event(
        event: Event,
        key: Option<(&str, &str)>,
        class: RequestClass,
        hops: &[HopView],
        peer: &Peer,
        conn: u64,
    ) -> Self {
        AuditRecord {
            ts: now_rfc3339(),
            event,
            key: key.map(|(fp, _)| fp.to_string()),
            comment: key.map(|(_, c)| c.to_string()),
            decision: Decision::Deny,
            rule: String::new(),
            reason: Reason::Abandoned,
            class,
            chain: hops.iter().map(AuditHop::from).collect(),
            destination: None,
            user: None,
            user_style: None,
            purpose: None,
            peer: AuditPeer::from(peer),
            conn,
            upstream: false,
            provider: None,
            brake: None,
        }
    }

    pub(crate) fn decided(mut self, allowed: bool, rule: &str, reason: Reason) -> Self {
        self.decision = Decision::of(allowed);
        self.rule = rule.to_string();
        self.reason = reason;
        self
    }
}

/// Where records go; tests swap in a collector.
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    fn record(&self, record: AuditRecord);
    /// Waits until recorded decisions are durable.
    fn flush(&self) {}
    /// How writing the audit file goes (`None`: there is no file).
    fn health(&self) -> Option<Health> {
        None
    }
}

/// A sink for when no audit file can be had: the decision still reaches the
/// daemon log.
#[derive(Debug)]
pub(crate) struct LogOnly;

impl AuditSink for LogOnly {
    fn record(&self, record: AuditRecord) {
        let reason = crate::text::clean(&record.reason.to_string(), shape::MAX_OWN_CHARS);
        tracing::info!(event = record.event.as_str(), decision = record.decision.as_str(), reason = %reason, "audit");
    }
}

enum Msg {
    Record(Box<AuditRecord>),
    Flush(mpsc::Sender<()>),
}

/// The JSON-lines file writer.
#[derive(Debug)]
pub(crate) struct AuditLog {
    tx: mpsc::Sender<Msg>,
    health: Arc<Mutex<Health>>,
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditMsg")
    }
}

/// `$XDG_STATE_HOME/hopward/audit.jsonl`.
pub(crate) fn default_path() -> Option<PathBuf> {
    crate::paths::state_dir().map(|d| d.join("audit.jsonl"))
}

impl AuditLog {
    /// Starts the writer thread for `path`, rotating at `max_bytes`, and
    /// sending each record to the journal socket `journal` as well, if set.
    pub(crate) fn start(path: PathBuf, max_bytes: u64, journal: Option<PathBuf>) -> AuditLog {
        let (tx, rx) = mpsc::channel::<Msg>();
        let mut file = AuditFile::new(path, max_bytes, now_rfc3339);
        let journal = journal.map(|path| journal::Journal::new(&path));
        if let Some(j) = &journal {
            // Shown from the start, not from the first record.
            file.journal_state(file::JournalHealth {
                dropped_records: j.dropped,
                last_error: j.last_error.clone(),
            });
            file.publish(0, 0);
        }
        let health = file.shared();
        let spawned = std::thread::Builder::new()
            .name("audit".into())
            .spawn(move || write_loop(file, journal, &rx));
        if let Err(e) = spawned {
            tracing::warn!("audit log disabled: cannot start its writer: {e}");
            if let Ok(mut h) = health.lock() {
                h.writing = false;
                h.last_error = Some(format!("cannot start the audit writer: {e}"));
            }
        }
        AuditLog { tx, health }
    }
}

impl AuditSink for AuditLog {
    fn record(&self, record: AuditRecord) {
        let _ = self.tx.send(Msg::Record(Box::new(record)));
    }

    /// Waits until everything sent so far is on disk (tests, shutdown),
    /// held refusal counts included.
    fn flush(&self) {
        let (done_tx, done_rx) = mpsc::channel();
        if self.tx.send(Msg::Flush(done_tx)).is_ok() {
            let _ = done_rx.recv_timeout(std::time::Duration::from_secs(5));
        }
    }

    fn health(&self) -> Option<Health> {
        self.health.lock().ok().map(|h| h.clone())
    }
}

/// How long the writer naps after writing a record before it looks for
/// more. Records sent while it naps need no wake-up (no futex call on the
/// signing path, no thread switch on a busy core); when a nap brings
/// nothing, it parks until the next record. The first record after a quiet
/// spell is written at once, later ones at most this much later.
const BATCH_NAP: Duration = Duration::from_millis(20);

/// How often lines that could not be written are tried again.
const RETRY: Duration = Duration::from_secs(1);

fn write_loop(file: AuditFile, journal: Option<journal::Journal>, rx: &mpsc::Receiver<Msg>) {
    let mut writer = Writer {
        file,
        coalescer: Coalescer::default(),
        journal,
    };
    loop {
        // Park until there is something to do, or something falls due.
        let first = match writer.next_wakeup() {
            None => rx.recv().map_err(|_| mpsc::RecvTimeoutError::Disconnected),
            Some(at) => rx.recv_timeout(at.saturating_duration_since(Instant::now())),
        };
        match first {
            Ok(msg) => writer.handle(msg),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                writer.write(false);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        loop {
            writer.write(false);
            std::thread::sleep(BATCH_NAP);
            let mut got = false;
            loop {
                match rx.try_recv() {
                    Ok(msg) => {
                        got = true;
                        writer.handle(msg);
                    }
                    Err(mpsc::TryRecvError::Empty) => break,
                    Err(mpsc::TryRecvError::Disconnected) => {
                        writer.write(true);
                        return;
                    }
                }
            }
            if !got {
                break;
            }
        }
    }
    writer.write(true);
}

/// Shapes, coalesces and hands records to the file.
struct Writer {
    file: AuditFile,
    coalescer: Coalescer,
    /// `[audit] journald`: every line the file gets goes here too.
    journal: Option<journal::Journal>,
}

impl Writer {
    fn handle(&mut self, msg: Msg) {
        match msg {
            Msg::Record(record) => self.take(&record, Instant::now()),
            Msg::Flush(done) => {
                self.write(true);
                let _ = done.send(());
            }
        }
    }

    /// Shapes `record` and queues it, or counts it into its origin's
    /// coalesced record.
    fn take(&mut self, record: &AuditRecord, now: Instant) {
        let refusal = record.decision == Decision::Deny;
        if !refusal {
            // The hot path: most records are already in shape.
            if let Ok(line) = serde_json::to_vec(record) {
                if shape::plain_line(&line) {
                    self.queue_bytes(line, false, 1);
                    return;
                }
            }
        }
        let shaped = || serde_json::to_value(record).map_or(serde_json::Value::Null, shape::shape);
        let value = if refusal {
            let room = self.file.refusal_room();
            let (origin, local) = origin(record);
            let kind = format!("{} {}", record.event, record.reason);
            match self
                .coalescer
                .offer(&origin, &kind, local, &record.ts, now, room, shaped)
            {
                Offer::Write(value) => value,
                Offer::Held => return,
            }
        } else {
            shaped()
        };
        if value.is_object() {
            self.queue(&value, refusal, 1);
        }
    }

    fn queue(&mut self, value: &serde_json::Value, refusal: bool, records: u64) {
        if let Ok(bytes) = serde_json::to_vec(value) {
            self.queue_bytes(bytes, refusal, records);
        }
    }

    fn queue_bytes(&mut self, mut bytes: Vec<u8>, refusal: bool, records: u64) {
        if let Some(journal) = &mut self.journal {
            // The line as the file gets it (shaped, coalesced), so the
            // two never disagree.
            if let Ok(value) = serde_json::from_slice::<serde_json::Value>(&bytes) {
                journal.send(&value);
            }
        }
        bytes.push(b'\n');
        self.file.push(Line {
            bytes,
            refusal,
            records,
        });
    }

    /// Queues the coalesced records that are due (all of them when `all`:
    /// a flush, the end) and writes what is queued.
    fn write(&mut self, all: bool) {
        let mut room = self.file.refusal_room_bytes();
        let fits = |summary: &serde_json::Value| {
            let len = serde_json::to_vec(summary).map_or(u64::MAX, |b| b.len() as u64 + 1);
            room.checked_sub(len).map(|left| room = left).is_some()
        };
        for (summary, count) in self.coalescer.due(Instant::now(), all, fits) {
            self.queue(&summary, true, count);
        }
        if all {
            // No room left for one record per origin: one for them all.
            if let Some((merged, count)) = self.coalescer.merge_rest() {
                self.queue(&merged, true, count);
            }
        }
        self.file.write_queued();
        if let Some(journal) = &self.journal {
            self.file.journal_state(file::JournalHealth {
                dropped_records: journal.dropped,
                last_error: journal.last_error.clone(),
            });
        }
        self.file
            .publish(self.coalescer.coalesced, self.coalescer.held());
    }

    /// When the loop must wake up without a record: to retry lines the
    /// file did not take, or to write a coalesced record that fell due.
    fn next_wakeup(&self) -> Option<Instant> {
        let retry = self.file.waiting().then(|| Instant::now() + RETRY);
        let due = self
            .coalescer
            .next_due()
            .filter(|_| self.file.refusal_room());
        match (retry, due) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// Who a refusal is charged to: the first forwarding hop (all a bastion
/// sends shares it, whatever it claims past it), else the local program;
/// and whether that is local.
fn origin(record: &AuditRecord) -> (String, bool) {
    match record.chain.iter().find(|hop| hop.forwarded) {
        Some(hop) => (format!("fwd {}", hop.fingerprint), false),
        None => (
            format!(
                "local {} {}",
                record.peer.uid,
                record.peer.exe.as_deref().unwrap_or("?")
            ),
            true,
        ),
    }
}

/// UTC now as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub(crate) fn now_rfc3339() -> String {
    humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string()
}

/// The last second RFC 3339 can write (9999-12-31T23:59:59Z).
const LAST_RFC3339_SECOND: u64 = 253_402_300_799;

/// UTC at `secs` since the epoch as `YYYY-MM-DDTHH:MM:SSZ` (a certificate's
/// end in `hopward status`). A time past the year 9999, which a
/// certificate may name, is shown as the last second that has a date.
pub(crate) fn rfc3339_at(secs: u64) -> String {
    let at = std::time::UNIX_EPOCH + Duration::from_secs(secs.min(LAST_RFC3339_SECOND));
    humantime::format_rfc3339_seconds(at).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_given_time_is_shown_in_utc() {
        assert_eq!(rfc3339_at(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_at(1_800_000_000), "2027-01-15T08:00:00Z");
        assert_eq!(rfc3339_at(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_at(u64::MAX - 1), "9999-12-31T23:59:59Z");
    }

    #[test]
    fn timestamp_shape() {
        let ts = now_rfc3339();
        assert_eq!(ts.len(), 24, "{ts}");
        assert!(ts.starts_with("20") && ts.ends_with('Z'), "{ts}");
    }

    fn record(
        decision: Decision,
        user: &str,
        exe: &str,
        forwarded_from: Option<&str>,
    ) -> AuditRecord {
        AuditRecord {
            ts: now_rfc3339(),
            event: Event::Sign,
            key: Some("SHA256:k".into()),
            comment: Some("work".into()),
            decision,
            rule: "r".into(),
            reason: Reason::Rule("r".into()),
            class: RequestClass::Local,
            chain: forwarded_from
                .map(|fp| AuditHop {
                    names: vec!["bastion".into()],
                    fingerprint: fp.into(),
                    forwarded: true,
                    reported_by: None,
                    jump: false,
                    hashed: false,
                })
                .into_iter()
                .collect(),
            destination: None,
            user: Some(user.into()),
            user_style: None,
            purpose: Some(crate::trust::binding::Purpose::Login),
            peer: AuditPeer {
                pid: Some(1),
                uid: 0,
                exe: Some(exe.into()),
            },
            conn: 1,
            upstream: false,
            provider: None,
            brake: None,
        }
    }

    fn lines(path: &std::path::Path) -> Vec<serde_json::Value> {
        let mut rotated = path.as_os_str().to_owned();
        rotated.push(".1");
        [PathBuf::from(rotated), path.to_path_buf()]
            .iter()
            .flat_map(|p| {
                std::fs::read_to_string(p)
                    .unwrap_or_default()
                    .lines()
                    .map(|l| serde_json::from_str(l).unwrap())
                    .collect::<Vec<serde_json::Value>>()
            })
            .collect()
    }

    #[test]
    fn refusals_from_any_number_of_origins_never_rotate_an_allow_out() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut w = Writer {
            journal: None,
            file: AuditFile::new(path.clone(), 64 * 1024, now_rfc3339),
            coalescer: Coalescer::default(),
        };
        let now = Instant::now();
        w.take(&record(Decision::Allow, "kept", "/bin/ssh", None), now);
        w.write(false);
        let huge = "\u{9b}".repeat(20_000);
        // A bastion, and hundreds of local programs, each a new origin.
        for i in 0..600 {
            let origin = (i % 3 == 0).then_some("SHA256:bastion");
            w.take(
                &record(Decision::Deny, &huge, &format!("/tmp/p{i}"), origin),
                now,
            );
            if i % 100 == 0 {
                w.write(false);
            }
        }
        w.write(false);
        // Later windows, then the stop.
        w.write(false);
        w.write(true);
        let all = lines(&path);
        assert!(
            all.iter().any(|v| v["user"] == "kept"),
            "the allow was rotated out"
        );
        let counted: u64 = all
            .iter()
            .filter(|v| v["decision"] == "deny")
            .map(|v| v["coalesced"]["count"].as_u64().unwrap_or(1))
            .sum();
        assert_eq!(counted, 600, "every refusal is written or counted");
        let refusal_bytes: usize = std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .filter(|l| l.contains("\"decision\":\"deny\""))
            .map(|l| l.len() + 1)
            .sum();
        assert!(
            refusal_bytes < 40 * 1024,
            "{refusal_bytes} bytes of refusals"
        );
    }

    #[test]
    fn writes_lines_and_rotates() {
        let dir = std::env::temp_dir().join(format!("hopward-audit-{}", std::process::id()));
        let path = dir.join("audit.jsonl");
        let log = AuditLog::start(path.clone(), 600, None);
        let rec = AuditRecord {
            ts: now_rfc3339(),
            event: Event::Sign,
            key: Some("SHA256:k".into()),
            comment: None,
            decision: Decision::Allow,
            rule: "default:local".into(),
            reason: Reason::Rule("default:local".into()),
            class: RequestClass::Local,
            chain: vec![],
            destination: None,
            user: None,
            user_style: None,
            purpose: Some(crate::trust::binding::Purpose::Login),
            peer: AuditPeer {
                pid: Some(1),
                uid: 0,
                exe: None,
            },
            conn: 1,
            upstream: false,
            provider: None,
            brake: None,
        };
        for _ in 0..5 {
            log.record(rec.clone());
        }
        log.flush();
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        let rotated = std::fs::read_to_string(dir.join("audit.jsonl.1")).unwrap_or_default();
        let lines: Vec<&str> = text.lines().chain(rotated.lines()).collect();
        assert_eq!(lines.len(), 5);
        let v: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(v["event"], "sign");
        assert_eq!(v["decision"], "allow");
        assert!(!rotated.is_empty(), "600 bytes must have rotated");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
