//! The audit file itself: appends whole lines, follows the file when it is
//! renamed, deleted or its directory removed, rotates by size, and keeps
//! what it could not write for a later try.
//!
//! Invariants: before each write (a batch of lines) the open file is
//! checked against the path (device and inode), so records do not go to a
//! file that is no longer the audit log (what a rename in the microseconds
//! between the check and the write catches still lands in the renamed
//! file); a missing directory and file are made again (0700, 0600);
//! lines are written whole or not at all (a short write is cut back off);
//! a line that cannot be written waits in memory (up to [`BACKLOG_BYTES`])
//! and is tried again, and only what does not fit is dropped, counted in
//! `lost_records`; one warning per episode of failures, one line when it
//! ends; refusal lines may take at most half of a file ([`AuditFile::refusal_room`]),
//! so only other records can fill it up and rotate an allow out.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufRead as _, Write as _};
use std::os::unix::fs::{FileExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Lines kept in memory while the file cannot be written (a full disk, a
/// directory that cannot be made): enough for thousands of records, small
/// enough to hold on to for hours.
pub(crate) const BACKLOG_BYTES: usize = 4 * 1024 * 1024;

/// Most bytes written in one go.
const CHUNK_BYTES: usize = 256 * 1024;

/// One line to append.
#[derive(Debug, Clone)]
pub(crate) struct Line {
    /// The JSON text with its newline.
    pub(crate) bytes: Vec<u8>,
    /// A `deny` record (counts against the refusal budget).
    pub(crate) refusal: bool,
    /// How many decisions it records (a coalesced summary stands for many).
    pub(crate) records: u64,
}

/// How the audit file is doing, as `hopward status` shows it.
pub(crate) use crate::protocol::control::AuditHealth as Health;
/// How sending records to the journal goes.
pub(crate) use crate::protocol::control::JournalHealth;

struct Open {
    file: File,
    dev: u64,
    ino: u64,
}

pub(crate) struct AuditFile {
    path: PathBuf,
    max_bytes: u64,
    out: Option<Open>,
    /// Bytes of refusal lines in the current file.
    refusal_bytes: u64,
    /// The current file's size the last time it was looked at.
    size: u64,
    queue: VecDeque<Line>,
    queued_bytes: usize,
    queued_refusal_bytes: u64,
    health: Health,
    shared: Arc<Mutex<Health>>,
    /// The time as records show it.
    stamp: fn() -> String,
}

impl AuditFile {
    pub fn new(path: PathBuf, max_bytes: u64, stamp: fn() -> String) -> AuditFile {
        let health = Health {
            file: path.display().to_string(),
            writing: true,
            ..Health::default()
        };
        AuditFile {
            shared: Arc::new(Mutex::new(health.clone())),
            health,
            path,
            max_bytes,
            out: None,
            refusal_bytes: 0,
            size: 0,
            queue: VecDeque::new(),
            queued_bytes: 0,
            queued_refusal_bytes: 0,
            stamp,
        }
    }

    /// The health others read.
    pub(crate) fn shared(&self) -> Arc<Mutex<Health>> {
        Arc::clone(&self.shared)
    }

    /// Whether one more refusal fits in the current file's budget (half of
    /// `max_bytes`, counting those waiting to be written).
    pub(crate) fn refusal_room(&self) -> bool {
        self.refusal_room_bytes() > 0
    }

    /// Bytes of refusal lines the current file can still take.
    pub(crate) fn refusal_room_bytes(&self) -> u64 {
        (self.max_bytes / 2).saturating_sub(self.refusal_bytes + self.queued_refusal_bytes)
    }

    /// Whether lines wait for a retry.
    pub(crate) fn waiting(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Queues `line`; when memory for waiting lines is full it is dropped
    /// and counted.
    pub(crate) fn push(&mut self, line: Line) {
        if self.queued_bytes + line.bytes.len() > BACKLOG_BYTES {
            self.health.lost_records += line.records;
            return;
        }
        self.queued_bytes += line.bytes.len();
        if line.refusal {
            self.queued_refusal_bytes += line.bytes.len() as u64;
        }
        self.queue.push_back(line);
    }

    /// Writes every queued line it can; the rest wait for the next call.
    pub(crate) fn write_queued(&mut self) {
        // Lines go out in chunks (one check of the path and one write for
        // a batch); when a chunk does not fit, one line at a time, so a
        // nearly full disk still takes what it can.
        let mut one_by_one = false;
        let mut chunk = Vec::new();
        while !self.queue.is_empty() {
            chunk.clear();
            let mut lines = 0;
            let mut refusal_bytes = 0u64;
            for line in &self.queue {
                let fits_file =
                    self.size + (chunk.len() + line.bytes.len()) as u64 <= self.max_bytes;
                if lines > 0 && (one_by_one || !fits_file || chunk.len() >= CHUNK_BYTES) {
                    break;
                }
                chunk.extend_from_slice(&line.bytes);
                if line.refusal {
                    refusal_bytes += line.bytes.len() as u64;
                }
                lines += 1;
            }
            match self.append(&chunk, refusal_bytes) {
                Ok(()) => {
                    for line in self.queue.drain(..lines) {
                        self.queued_bytes -= line.bytes.len();
                        if line.refusal {
                            self.queued_refusal_bytes -= line.bytes.len() as u64;
                        }
                    }
                    if self.size > self.max_bytes {
                        self.rotate();
                    }
                }
                Err(_) if lines > 1 => one_by_one = true,
                Err(e) => {
                    self.failed(&e);
                    break;
                }
            }
        }
        self.health.waiting_records = self.queue.iter().map(|l| l.records).sum();
        // An episode ends when nothing waits any more: a nearly full disk
        // that takes a line now and then is still one episode.
        if self.queue.is_empty() {
            self.succeeded();
        }
    }

    /// Records how sending to the journal goes, for the next [`publish`].
    ///
    /// [`publish`]: AuditFile::publish
    pub(crate) fn journal_state(&mut self, state: JournalHealth) {
        self.health.journal = Some(state);
    }

    /// Publishes the health, with the coalescer's counts.
    pub(crate) fn publish(&mut self, coalesced: u64, held: u64) {
        self.health.coalesced_refusals = coalesced;
        self.health.held_refusals = held;
        if let Ok(mut shared) = self.shared.lock() {
            shared.clone_from(&self.health);
        }
    }

    /// Appends whole lines to the file the path names now, all or none.
    fn append(&mut self, bytes: &[u8], refusal_bytes: u64) -> std::io::Result<()> {
        self.follow_path()?;
        let Some(open) = self.out.as_mut() else {
            return Err(std::io::Error::other("audit file not open"));
        };
        let before = open.file.metadata()?.len();
        if before < self.size {
            // Truncated under us (copytruncate): what was counted is gone.
            self.refusal_bytes = 0;
            self.health.reopened += 1;
        }
        if let Err(e) = open.file.write_all(bytes) {
            // A short write leaves part of the chunk, maybe half a line;
            // cut it off so the lines are tried again whole.
            let _ = open.file.set_len(before);
            self.size = before;
            return Err(e);
        }
        self.size = before + bytes.len() as u64;
        self.refusal_bytes += refusal_bytes;
        Ok(())
    }

    /// Opens the path again when the open file is no longer the one it
    /// names (renamed, deleted, its directory removed) or none is open.
    fn follow_path(&mut self) -> std::io::Result<()> {
        if let Some(open) = &self.out {
            match std::fs::metadata(&self.path) {
                Ok(m) if m.dev() == open.dev && m.ino() == open.ino => return Ok(()),
                _ => {
                    tracing::info!(
                        "audit log {} was moved or removed; writing a new one",
                        self.path.display()
                    );
                    self.health.reopened += 1;
                    self.out = None;
                }
            }
        }
        let file = open(&self.path)?;
        let meta = file.metadata()?;
        self.size = meta.len();
        self.refusal_bytes = if meta.len() > 0 {
            end_with_newline(&file, meta.len())?;
            refusal_bytes_in(&file)
        } else {
            0
        };
        self.size = file.metadata()?.len();
        self.out = Some(Open {
            dev: meta.dev(),
            ino: meta.ino(),
            file,
        });
        Ok(())
    }

    /// Moves the full file to `<path>.1` (replacing the one there); the
    /// next line opens a new one.
    fn rotate(&mut self) {
        self.out = None;
        let mut rotated = self.path.as_os_str().to_owned();
        rotated.push(".1");
        if let Err(e) = std::fs::rename(&self.path, PathBuf::from(rotated)) {
            self.failed(&std::io::Error::new(
                e.kind(),
                format!("cannot rotate {}: {e}", self.path.display()),
            ));
        }
        self.refusal_bytes = 0;
        self.size = 0;
    }

    fn failed(&mut self, e: &std::io::Error) {
        self.health.write_errors += 1;
        self.health.last_error = Some(e.to_string());
        self.health.last_error_at = Some((self.stamp)());
        if self.health.writing {
            self.health.writing = false;
            self.health.error_episodes += 1;
            tracing::warn!(
                "cannot write audit log {}: {e}; records wait in memory and are tried \
                 again (hopward status shows how many); no further warning until it works",
                self.path.display()
            );
        }
    }

    fn succeeded(&mut self) {
        if !self.health.writing {
            self.health.writing = true;
            self.health.recovered_at = Some((self.stamp)());
            tracing::warn!(
                "audit log {} is written again after {} failed writes; {} records lost since start",
                self.path.display(),
                self.health.write_errors,
                self.health.lost_records
            );
        }
    }
}

/// Opens (creating) the audit file: its directory 0700, the file 0600,
/// never through a symlink.
fn open(path: &Path) -> std::io::Result<File> {
    if let Some(dir) = path.parent() {
        crate::paths::ensure_private_dir(dir)?;
    }
    // Readable too: the last byte and the refusal budget are read back.
    let file = OpenOptions::new()
        .create(true)
        .read(true)
        .append(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot open {}: {e}", path.display()))
        })?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other(format!(
            "{} is not a regular file",
            path.display()
        )));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(file)
}

/// Ends a file whose last line was cut off (a crash mid-write) with a
/// newline, so the next record is a line of its own.
fn end_with_newline(file: &File, len: u64) -> std::io::Result<()> {
    let mut last = [0u8; 1];
    file.read_at(&mut last, len - 1)?;
    if last[0] != b'\n' {
        (&*file).write_all(b"\n")?;
    }
    Ok(())
}

/// Bytes of refusal lines in an existing file (read once, when it is
/// opened, so a restart keeps the refusal budget of the file it goes on).
fn refusal_bytes_in(file: &File) -> u64 {
    // `read_at` leaves the offset of the append-mode file alone.
    let mut reader = std::io::BufReader::new(ReadAt { file, offset: 0 });
    let mut line = Vec::new();
    let mut total = 0u64;
    while reader.read_until(b'\n', &mut line).unwrap_or(0) > 0 {
        if is_refusal_line(&line) {
            total += line.len() as u64;
        }
        line.clear();
    }
    total
}

/// Reads a file from the start without moving its offset.
struct ReadAt<'a> {
    file: &'a File,
    offset: u64,
}

impl std::io::Read for ReadAt<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.file.read_at(buf, self.offset)?;
        self.offset += n as u64;
        Ok(n)
    }
}

fn is_refusal_line(line: &[u8]) -> bool {
    line.windows(17).any(|w| w == b"\"decision\":\"deny\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str, refusal: bool) -> Line {
        Line {
            bytes: format!("{text}\n").into_bytes(),
            refusal,
            records: 1,
        }
    }

    #[test]
    fn follows_a_renamed_a_deleted_file_and_a_removed_directory() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let path = state.join("audit.jsonl");
        let mut f = AuditFile::new(path.clone(), 1 << 20, String::new);
        f.push(line("{\"n\":1}", false));
        f.write_queued();
        std::fs::rename(&path, dir.path().join("moved")).unwrap();
        f.push(line("{\"n\":2}", false));
        f.write_queued();
        std::fs::remove_file(&path).unwrap();
        f.push(line("{\"n\":3}", false));
        f.write_queued();
        std::fs::remove_dir_all(&state).unwrap();
        f.push(line("{\"n\":4}", false));
        f.write_queued();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("moved")).unwrap(),
            "{\"n\":1}\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{\"n\":4}\n");
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&state), 0o700);
        assert_eq!(mode(&path), 0o600);
        f.publish(0, 0);
        let h = f.shared().lock().unwrap().clone();
        assert_eq!(h.reopened, 3);
        assert_eq!(h.write_errors, 0);
        assert!(h.writing);
    }

    #[test]
    fn what_cannot_be_written_waits_and_what_does_not_fit_is_counted() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the directory should be: every open fails.
        let blocker = dir.path().join("state");
        std::fs::write(&blocker, "").unwrap();
        let mut f = AuditFile::new(blocker.join("audit.jsonl"), 1 << 30, String::new);
        let big = "x".repeat(1024 * 1024 - 1);
        for _ in 0..6 {
            f.push(line(&big, false));
            f.write_queued();
        }
        f.publish(0, 0);
        let h = f.shared().lock().unwrap().clone();
        assert!(!h.writing);
        assert_eq!(h.error_episodes, 1, "one episode, however many failures");
        assert_eq!(h.write_errors, 6);
        assert_eq!(h.waiting_records, 4);
        assert_eq!(h.lost_records, 2);
        std::fs::remove_file(&blocker).unwrap();
        f.write_queued();
        f.publish(0, 0);
        let h = f.shared().lock().unwrap().clone();
        assert!(h.writing);
        assert_eq!(h.waiting_records, 0);
        assert_eq!(h.error_episodes, 1);
        let text = std::fs::read_to_string(blocker.join("audit.jsonl")).unwrap();
        assert_eq!(text.lines().count(), 4);
    }

    #[test]
    fn refusals_get_half_a_file_and_the_budget_survives_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        let mut f = AuditFile::new(path.clone(), 1000, String::new);
        let deny =
            "{\"decision\":\"deny\",\"pad\":\"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\"}";
        let mut pushed = 0;
        while f.refusal_room() {
            f.push(line(deny, true));
            pushed += 1;
        }
        f.write_queued();
        assert!(pushed * (deny.len() + 1) >= 500);
        assert!(
            !path.with_extension("jsonl.1").exists(),
            "refusals alone never rotate"
        );
        let again = AuditFile::new(path.clone(), 1000, String::new);
        let mut again = again;
        again.push(line("{\"decision\":\"allow\"}", false));
        again.write_queued();
        assert!(
            !again.refusal_room(),
            "the budget is read back from the file"
        );
    }

    #[test]
    fn a_torn_last_line_is_ended_before_the_next_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "{\"n\":1}\n{\"n\":").unwrap();
        let mut f = AuditFile::new(path.clone(), 1 << 20, String::new);
        f.push(line("{\"n\":2}", false));
        f.write_queued();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "{\"n\":1}\n{\"n\":\n{\"n\":2}\n");
    }
}
