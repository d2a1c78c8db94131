//! Stand-ins for the edges, for tests that run the agent in-process: a
//! desk that answers from a script, and an audit sink that keeps records.

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
                    r.reason.clone(),
                )
            })
            .collect()
    }

    /// Whether every record so far is of an upstream key.
    pub fn all_upstream(&self) -> bool {
        self.0.lock().unwrap().iter().all(|r| r.upstream)
    }
}
