//! Questions in flight: identical concurrent requests (the same key,
//! chain, user and purpose, and the same data to sign) share one prompt, and
//! the number of prompts open at once is bounded per origin so a flood (say,
//! from a hostile bastion) is denied fast without using up anyone else's.
//!
//! Invariants: a question runs on a task of its own and ends when it is
//! answered, times out, or every request waiting on it has gone away (the
//! prompt is then withdrawn); a request that finds its origin's limit
//! reached is denied at once; a forwarded origin (one first forwarding hop)
//! can only use up its own budget, never this machine's or another hop's;
//! a connection handles one request at a time, so it never has more than
//! one question open; a question whose grounds changed (its key dropped, the
//! agent locked, the policy reloaded) is withdrawn at once
//! ([`PromptBroker::withdraw`]): its prompt is closed and its waiters hear
//! [`Answer::Withdrawn`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{Notify, watch};

use crate::confirm::{Answer, Confirmer, Prompt};
use crate::policy::grants::GrantScope;
use crate::trust::context::{HopView, RequestClass};

/// How long past the prompt's timeout a confirmer may take to report
/// (an askpass program being killed, a notification being withdrawn).
const CONFIRMER_GRACE: Duration = Duration::from_secs(5);

/// Prompts open at once for one origin.
pub(crate) const MAX_OPEN: usize = 8;
/// Prompts open at once across all origins: a bound on windows on the
/// screen and tasks in memory, however many first hops there are.
pub(crate) const MAX_OPEN_TOTAL: usize = 4 * MAX_OPEN;
/// At most one flood notice per origin per this interval.
const NOTICE_EVERY: Duration = Duration::from_secs(60);

/// Whose prompt budget a question draws on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Origin {
    /// This machine: local programs and direct logins.
    Local,
    /// Everything that came through the forwarding hop with this host key
    /// fingerprint (the first hop, which this machine's own ssh bound).
    Forwarded(String),
}

impl Origin {
    pub(crate) fn of(class: RequestClass, chain: &[HopView]) -> Origin {
        if class.is_forwarded() {
            Origin::Forwarded(
                chain
                    .first()
                    .map(|h| h.fingerprint.clone())
                    .unwrap_or_default(),
            )
        } else {
            Origin::Local
        }
    }
}

/// One question: what a grant would cover, plus a digest of the exact data
/// (for a signature) or operation, so only identical requests share it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Question {
    pub scope: GrantScope,
    pub(crate) digest: [u8; 32],
    pub(crate) origin: Origin,
}

impl Question {
    pub fn new(scope: GrantScope, what: &[u8], origin: Origin) -> Question {
        Question {
            scope,
            digest: crate::ssh::digest::sha256(what),
            origin,
        }
    }
}

/// An open question: where its answer goes, and how to withdraw it.
#[derive(Debug)]
struct Open {
    answer: Arc<watch::Sender<Option<Answer>>>,
    withdraw: Arc<Notify>,
}

type Inflight = Arc<Mutex<HashMap<Question, Open>>>;

/// Which open questions to withdraw.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Withdraw<'a> {
    /// Every one (the agent locked, keys dropped wholesale, a new policy).
    All,
    /// Those about these keys (fingerprints): removed or expired.
    Keys(&'a [String]),
}

#[derive(Debug, Default)]
pub(crate) struct PromptBroker {
    inflight: Inflight,
    last_notice: Mutex<HashMap<Origin, Instant>>,
    last_unavailable_warning: Mutex<Option<Instant>>,
}

/// Why a question was not put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotAsked {
    /// Too many prompts are open for this origin (or in all); `notice` is
    /// true for the first refusal in a while, which should tell the person.
    Flood { notice: bool },
}

impl PromptBroker {
    /// True at most once a minute: whether "no way to ask" should be
    /// logged loudly, with how to fix it.
    pub(crate) fn should_warn_unavailable(&self) -> bool {
        let mut last = self
            .last_unavailable_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|t| t.elapsed() >= NOTICE_EVERY);
        if due {
            *last = Some(Instant::now());
        }
        due
    }

    pub(crate) fn open(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Withdraws the open questions `which` names and returns how many.
    /// They leave the table at once, so a request that comes after this
    /// opens a question of its own rather than joining a withdrawn one.
    pub(crate) fn withdraw(&self, which: Withdraw<'_>) -> usize {
        let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
        let mut withdrawn = 0;
        map.retain(|question, open| {
            let hit = match which {
                Withdraw::All => true,
                Withdraw::Keys(keys) => keys.contains(&question.scope.key),
            };
            if hit {
                // A stored permit: the question's task sees it even if it
                // has not reached its wait yet.
                open.withdraw.notify_one();
                withdrawn += 1;
            }
            !hit
        });
        withdrawn
    }

    /// Asks (or joins an identical question already open) and waits for
    /// the answer. Dropping the returned future withdraws this request; the
    /// prompt is withdrawn when no request waits on it any more.
    pub(crate) async fn ask(
        &self,
        question: Question,
        confirmer: Arc<dyn Confirmer>,
        prompt: Prompt,
        timeout: Duration,
    ) -> Result<Answer, NotAsked> {
        let mut rx = {
            let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(open) = map.get(&question) {
                open.answer.subscribe()
            } else if map.len() >= MAX_OPEN_TOTAL
                || map.keys().filter(|q| q.origin == question.origin).count() >= MAX_OPEN
            {
                drop(map);
                let mut last = self.last_notice.lock().unwrap_or_else(|e| e.into_inner());
                let notice = last
                    .get(&question.origin)
                    .is_none_or(|t| t.elapsed() >= NOTICE_EVERY);
                if notice {
                    last.retain(|_, t| t.elapsed() < NOTICE_EVERY);
                    last.insert(question.origin.clone(), Instant::now());
                }
                return Err(NotAsked::Flood { notice });
            } else {
                let (tx, rx) = watch::channel(None);
                let tx = Arc::new(tx);
                let withdraw = Arc::new(Notify::new());
                map.insert(
                    question.clone(),
                    Open {
                        answer: Arc::clone(&tx),
                        withdraw: Arc::clone(&withdraw),
                    },
                );
                let inflight = Arc::clone(&self.inflight);
                tokio::spawn(async move {
                    // Each confirmer bounds its own wait; this bounds a
                    // confirmer that does not (a hung back-end is a deny).
                    let bounded = tokio::time::timeout(
                        timeout + CONFIRMER_GRACE,
                        confirmer.confirm(&prompt, timeout),
                    );
                    // Dropping the confirmer's future (the two branches
                    // below) closes its prompt: the notification is closed,
                    // the askpass program ended.
                    tokio::select! {
                        answer = bounded => {
                            let _ = tx.send(Some(answer.unwrap_or(Answer::TimedOut)));
                        }
                        // Everyone waiting went away.
                        () = tx.closed() => {}
                        // Its grounds changed: no answer to it may count.
                        () = withdraw.notified() => {
                            let _ = tx.send(Some(Answer::Withdrawn));
                        }
                    }
                    let mut map = inflight.lock().unwrap_or_else(|e| e.into_inner());
                    // Only this question's own entry: a withdrawn one is
                    // gone already, and an identical request may have
                    // opened a new one since.
                    if map
                        .get(&question)
                        .is_some_and(|open| Arc::ptr_eq(&open.answer, &tx))
                    {
                        map.remove(&question);
                    }
                });
                rx
            }
        };
        loop {
            if let Some(answer) = rx.borrow_and_update().clone() {
                return Ok(answer);
            }
            if rx.changed().await.is_err() {
                // The question ended without an answer reaching us.
                return Ok(Answer::Failed("the question was withdrawn".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::confirm::AnswerFuture;
    use crate::trust::binding::Purpose;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug, Default)]
    struct Slow {
        asked: AtomicUsize,
        withdrawn: Arc<AtomicUsize>,
    }

    struct CountDrop(Arc<AtomicUsize>, bool);
    impl Drop for CountDrop {
        fn drop(&mut self) {
            if !self.1 {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }

    impl Confirmer for Slow {
        fn confirm<'a>(&'a self, _p: &'a Prompt, _t: Duration) -> AnswerFuture<'a> {
            self.asked.fetch_add(1, Ordering::SeqCst);
            let withdrawn = Arc::clone(&self.withdrawn);
            Box::pin(async move {
                let mut guard = CountDrop(withdrawn, false);
                tokio::time::sleep(Duration::from_millis(300)).await;
                guard.1 = true;
                Answer::Allowed
            })
        }
    }

    fn scope(user: &str) -> GrantScope {
        GrantScope {
            key: "k".into(),
            chain: vec!["h".into()],
            class: RequestClass::Direct,
            destination: crate::trust::context::Destination::Verified,
            user: Some(user.into()),
            user_exact: true,
            user_style: None,
            purpose: Purpose::Login,
            jump: Vec::new(),
        }
    }

    fn question(user: &str, data: &[u8], origin: &Origin) -> Question {
        Question::new(scope(user), data, origin.clone())
    }

    fn ask(
        broker: &Arc<PromptBroker>,
        confirmer: &Arc<Slow>,
        q: Question,
    ) -> tokio::task::JoinHandle<Result<Answer, NotAsked>> {
        let (b, c) = (
            Arc::clone(broker),
            Arc::clone(confirmer) as Arc<dyn Confirmer>,
        );
        tokio::spawn(async move { b.ask(q, c, Prompt::default(), Duration::from_secs(5)).await })
    }

    #[tokio::test]
    async fn identical_requests_share_one_prompt() {
        let broker = Arc::new(PromptBroker::default());
        let slow = Arc::new(Slow::default());
        let tasks: Vec<_> = (0..10)
            .map(|_| ask(&broker, &slow, question("u", b"data", &Origin::Local)))
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(Answer::Allowed));
        }
        assert_eq!(slow.asked.load(Ordering::SeqCst), 1);
        assert_eq!(broker.open(), 0);
    }

    /// The same key, chain, user and purpose, but other data (another
    /// session's login): each is its own question, so one "yes" signs one.
    #[tokio::test]
    async fn different_data_gets_its_own_prompt() {
        let broker = Arc::new(PromptBroker::default());
        let slow = Arc::new(Slow::default());
        let a = ask(
            &broker,
            &slow,
            question("u", b"session one", &Origin::Local),
        );
        let b = ask(
            &broker,
            &slow,
            question("u", b"session two", &Origin::Local),
        );
        assert!(a.await.unwrap().is_ok() && b.await.unwrap().is_ok());
        assert_eq!(slow.asked.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn flood_is_refused_at_once_and_noticed_once() {
        let broker = Arc::new(PromptBroker::default());
        let slow = Arc::new(Slow::default());
        let bastion = Origin::Forwarded("SHA256:bastion".into());
        let open: Vec<_> = (0..MAX_OPEN)
            .map(|i| ask(&broker, &slow, question(&format!("u{i}"), b"d", &bastion)))
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let first = ask(&broker, &slow, question("x", b"d", &bastion))
            .await
            .unwrap();
        let second = ask(&broker, &slow, question("y", b"d", &bastion))
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(first, Err(NotAsked::Flood { notice: true }));
        assert_eq!(second, Err(NotAsked::Flood { notice: false }));
        for t in open {
            assert!(t.await.unwrap().is_ok());
        }
    }

    /// A bastion that fills its own budget leaves this machine's, and
    /// another bastion's, untouched.
    #[tokio::test]
    async fn a_forwarded_origin_only_uses_up_its_own_budget() {
        let broker = Arc::new(PromptBroker::default());
        let slow = Arc::new(Slow::default());
        let bastion = Origin::Forwarded("SHA256:bastion".into());
        let open: Vec<_> = (0..MAX_OPEN)
            .map(|i| ask(&broker, &slow, question(&format!("u{i}"), b"d", &bastion)))
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        let refused = ask(&broker, &slow, question("more", b"d", &bastion));
        assert_eq!(
            refused.await.unwrap(),
            Err(NotAsked::Flood { notice: true })
        );
        let local = ask(&broker, &slow, question("me", b"d", &Origin::Local));
        let other = Origin::Forwarded("SHA256:other".into());
        let elsewhere = ask(&broker, &slow, question("me", b"d", &other));
        assert_eq!(local.await.unwrap(), Ok(Answer::Allowed));
        assert_eq!(elsewhere.await.unwrap(), Ok(Answer::Allowed));
        for t in open {
            assert!(t.await.unwrap().is_ok());
        }
    }

    /// A question whose grounds changed is withdrawn: the prompt closes,
    /// every request waiting on it hears so, questions about other keys
    /// stay, and a new identical request gets a prompt of its own.
    #[tokio::test]
    async fn a_withdrawn_question_closes_its_prompt_and_answers_withdrawn() {
        let broker = Arc::new(PromptBroker::default());
        let slow = Arc::new(Slow::default());
        let about = |key: &str| {
            Question::new(
                GrantScope {
                    key: key.into(),
                    ..scope("u")
                },
                b"d",
                Origin::Local,
            )
        };
        let first = ask(&broker, &slow, about("gone"));
        let joined = ask(&broker, &slow, about("gone"));
        let other = ask(&broker, &slow, about("kept"));
        while broker.open() < 2 {
            tokio::task::yield_now().await;
        }
        assert_eq!(broker.withdraw(Withdraw::Keys(&["gone".to_string()])), 1);
        assert_eq!(broker.open(), 1, "withdrawn at once");
        assert_eq!(first.await.unwrap(), Ok(Answer::Withdrawn));
        assert_eq!(joined.await.unwrap(), Ok(Answer::Withdrawn));
        while slow.withdrawn.load(Ordering::SeqCst) < 1 {
            tokio::task::yield_now().await;
        }
        let again = ask(&broker, &slow, about("gone"));
        assert_eq!(again.await.unwrap(), Ok(Answer::Allowed));
        assert_eq!(other.await.unwrap(), Ok(Answer::Allowed));
        assert_eq!(slow.asked.load(Ordering::SeqCst), 3);
        assert_eq!(broker.withdraw(Withdraw::All), 0);
    }

    #[tokio::test]
    async fn a_prompt_nobody_waits_for_is_withdrawn() {
        let broker = Arc::new(PromptBroker::default());
        let slow = Arc::new(Slow::default());
        let waiting = broker.ask(
            question("u", b"d", &Origin::Local),
            slow.clone(),
            Prompt::default(),
            Duration::from_secs(5),
        );
        let _ = tokio::time::timeout(Duration::from_millis(50), waiting).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(
            slow.withdrawn.load(Ordering::SeqCst),
            1,
            "the prompt was not withdrawn"
        );
        assert_eq!(broker.open(), 0);
    }
}
