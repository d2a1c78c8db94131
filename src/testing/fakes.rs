//! Stand-ins for the edges, for tests that run the agent in-process: a
//! desk that answers from a script, one that holds every question until
//! the test answers it, and an audit sink that keeps records.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::confirm::{Answer, AnswerFuture, Confirmer, Desk, Prompt};
use crate::daemon::audit::{AuditRecord, AuditSink};
use crate::policy::ConfirmSettings;

/// Answers questions in order (`None`: never answers); counts questions
/// and notices. Asked once more than scripted, it panics: a test must say
/// what every question gets.
#[derive(Debug, Default)]
pub struct ScriptedDesk {
    answers: Mutex<VecDeque<Option<Answer>>>,
    asked: AtomicUsize,
    notices: AtomicUsize,
    /// Nothing can ask: every question gets "no way to ask".
    unavailable: bool,
}

impl ScriptedDesk {
    pub fn new(answers: impl IntoIterator<Item = Option<Answer>>) -> Arc<ScriptedDesk> {
        Arc::new(ScriptedDesk {
            answers: Mutex::new(answers.into_iter().collect()),
            ..ScriptedDesk::default()
        })
    }

    /// A desk with no way to ask.
    pub fn unavailable() -> Arc<ScriptedDesk> {
        Arc::new(ScriptedDesk {
            unavailable: true,
            ..ScriptedDesk::default()
        })
    }

    /// The desk to give the agent.
    pub fn desk(self: &Arc<Self>) -> Arc<dyn Desk> {
        Arc::new(ScriptedHandle(Arc::clone(self)))
    }

    pub fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }

    pub fn notices(&self) -> usize {
        self.notices.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct ScriptedHandle(Arc<ScriptedDesk>);

impl Desk for ScriptedHandle {
    fn confirmer(&self, _settings: &ConfirmSettings) -> Arc<dyn Confirmer> {
        Arc::new(ScriptedHandle(Arc::clone(&self.0)))
    }

    fn notify(&self, _summary: &'static str, _body: String) {
        self.0.notices.fetch_add(1, Ordering::SeqCst);
    }
}

impl Confirmer for ScriptedHandle {
    fn confirm<'a>(&'a self, _prompt: &'a Prompt, _timeout: Duration) -> AnswerFuture<'a> {
        let desk = &self.0;
        if desk.unavailable {
            return Box::pin(std::future::ready(Answer::Unavailable(
                "nothing can ask here".into(),
            )));
        }
        desk.asked.fetch_add(1, Ordering::SeqCst);
        let next = desk.answers.lock().unwrap().pop_front();
        Box::pin(async move {
            match next {
                Some(Some(answer)) => answer,
                Some(None) => std::future::pending().await,
                None => panic!("asked more often than the script says"),
            }
        })
    }
}

/// Holds every question open until [`HeldDesk::answer`], then gives that
/// answer to each question still open (and to every later one at once).
/// Counts questions, and withdrawals: questions whose prompt was closed
/// before they were answered.
#[derive(Debug)]
pub struct HeldDesk {
    answer: tokio::sync::watch::Sender<Option<Answer>>,
    asked: AtomicUsize,
    withdrawn: Arc<AtomicUsize>,
}

impl HeldDesk {
    pub fn new() -> Arc<HeldDesk> {
        Arc::new(HeldDesk {
            answer: tokio::sync::watch::channel(None).0,
            asked: AtomicUsize::new(0),
            withdrawn: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The desk to give the agent.
    pub fn desk(self: &Arc<Self>) -> Arc<dyn Desk> {
        Arc::new(HeldHandle(Arc::clone(self)))
    }

    /// The person answers every open (and later) question with `answer`.
    pub fn answer(&self, answer: Answer) {
        self.answer.send_replace(Some(answer));
    }

    pub fn asked(&self) -> usize {
        self.asked.load(Ordering::SeqCst)
    }

    /// Questions withdrawn (their prompt closed) before an answer.
    pub fn withdrawn(&self) -> usize {
        self.withdrawn.load(Ordering::SeqCst)
    }
}

#[derive(Debug)]
struct HeldHandle(Arc<HeldDesk>);

impl Desk for HeldHandle {
    fn confirmer(&self, _settings: &ConfirmSettings) -> Arc<dyn Confirmer> {
        Arc::new(HeldHandle(Arc::clone(&self.0)))
    }

    fn notify(&self, _summary: &'static str, _body: String) {}
}

/// Counts a question's future dropped before it answered.
struct Withdrawal(Arc<AtomicUsize>, bool);

impl Drop for Withdrawal {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Confirmer for HeldHandle {
    fn confirm<'a>(&'a self, _prompt: &'a Prompt, _timeout: Duration) -> AnswerFuture<'a> {
        let desk = &self.0;
        desk.asked.fetch_add(1, Ordering::SeqCst);
        let mut answers = desk.answer.subscribe();
        let guard = Withdrawal(Arc::clone(&desk.withdrawn), false);
        Box::pin(async move {
            // Moved whole into the future, so dropping the future counts.
            let mut guard = guard;
            let answer = match answers.wait_for(Option::is_some).await {
                Ok(answer) => answer.clone().unwrap_or(Answer::Refused),
                Err(_) => Answer::Refused,
            };
            guard.1 = true;
            answer
        })
    }
}

/// Keeps every audit record.
#[derive(Debug, Default)]
pub struct Records(Mutex<Vec<AuditRecord>>);

impl AuditSink for Records {
    fn record(&self, record: AuditRecord) {
        self.0.lock().unwrap().push(record);
    }
}

impl Records {
    /// `(event, decision, reason)` of every record so far.
    pub fn seen(&self) -> Vec<(String, String, String)> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|r| {
                (
                    r.event.to_string(),
                    r.decision.to_string(),
                    r.reason.to_string(),
                )
            })
            .collect()
    }

    /// Whether every record so far is of an upstream key.
    pub fn all_upstream(&self) -> bool {
        self.0.lock().unwrap().iter().all(|r| r.upstream)
    }
}
