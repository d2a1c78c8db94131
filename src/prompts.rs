//! Questions in flight: identical concurrent requests (same key, chain,
//! user and purpose) share one prompt, and the number of prompts open at
//! once is bounded so a flood (say, from a hostile bastion) is denied fast.
//!
//! Invariants: a question runs on a task of its own and ends when it is
//! answered, times out, or every request waiting on it has gone away (the
//! prompt is then withdrawn); a request that finds the limit reached is
//! denied at once; a connection handles one request at a time, so it never
//! has more than one question open.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::confirm::{Answer, Confirmer, Prompt};
use crate::grants::GrantScope;

/// Prompts open at once, across all connections.
pub const MAX_OPEN: usize = 8;
/// At most one flood notice per this interval.
const NOTICE_EVERY: Duration = Duration::from_secs(60);

type Inflight = Arc<Mutex<HashMap<GrantScope, Arc<watch::Sender<Option<Answer>>>>>>;

#[derive(Debug, Default)]
pub struct PromptBroker {
    inflight: Inflight,
    last_notice: Mutex<Option<Instant>>,
    last_unavailable_warning: Mutex<Option<Instant>>,
}

/// Why a question was not put.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAsked {
    /// Too many prompts are open; `notice` is true for the first refusal in
    /// a while, which should tell the person.
    Flood { notice: bool },
}

impl PromptBroker {
    /// True at most once a minute: whether "no way to ask" should be
    /// logged loudly, with how to fix it.
    pub fn should_warn_unavailable(&self) -> bool {
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

    pub fn open(&self) -> usize {
        self.inflight
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .len()
    }

    /// Asks (or joins an identical question already open) and waits for
    /// the answer. Dropping the returned future withdraws this request; the
    /// prompt is withdrawn when no request waits on it any more.
    pub async fn ask(
        &self,
        scope: GrantScope,
        confirmer: Arc<dyn Confirmer>,
        prompt: Prompt,
        timeout: Duration,
    ) -> Result<Answer, NotAsked> {
        let mut rx = {
            let mut map = self.inflight.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(tx) = map.get(&scope) {
                tx.subscribe()
            } else if map.len() >= MAX_OPEN {
                drop(map);
                let mut last = self.last_notice.lock().unwrap_or_else(|e| e.into_inner());
                let notice = last.is_none_or(|t| t.elapsed() >= NOTICE_EVERY);
                if notice {
                    *last = Some(Instant::now());
                }
                return Err(NotAsked::Flood { notice });
            } else {
                let (tx, rx) = watch::channel(None);
                let tx = Arc::new(tx);
                map.insert(scope.clone(), Arc::clone(&tx));
                let inflight = Arc::clone(&self.inflight);
                tokio::spawn(async move {
                    tokio::select! {
                        answer = confirmer.confirm(&prompt, timeout) => {
                            let _ = tx.send(Some(answer));
                        }
                        // Everyone waiting went away: withdraw the prompt
                        // (dropping the confirmer's future closes it).
                        () = tx.closed() => {}
                    }
                    inflight
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .remove(&scope);
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
    use crate::binding::Purpose;
    use crate::confirm::AnswerFuture;
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
            user: Some(user.into()),
            purpose: Purpose::Login,
        }
    }

    #[tokio::test]
    async fn identical_requests_share_one_prompt() {
        let broker = Arc::new(PromptBroker::default());
        let slow = Arc::new(Slow::default());
        let mut tasks = Vec::new();
        for _ in 0..10 {
            let (b, c) = (Arc::clone(&broker), Arc::clone(&slow) as Arc<dyn Confirmer>);
            tasks.push(tokio::spawn(async move {
                b.ask(scope("u"), c, Prompt::default(), Duration::from_secs(5))
                    .await
            }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap(), Ok(Answer::Allowed));
        }
        assert_eq!(slow.asked.load(Ordering::SeqCst), 1);
        assert_eq!(broker.open(), 0);
    }

    #[tokio::test]
    async fn flood_is_refused_at_once_and_noticed_once() {
        let broker = Arc::new(PromptBroker::default());
        let slow = Arc::new(Slow::default());
        let mut open = Vec::new();
        for i in 0..MAX_OPEN {
            let (b, c) = (Arc::clone(&broker), Arc::clone(&slow) as Arc<dyn Confirmer>);
            open.push(tokio::spawn(async move {
                b.ask(
                    scope(&format!("u{i}")),
                    c,
                    Prompt::default(),
                    Duration::from_secs(5),
                )
                .await
            }));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        let started = Instant::now();
        let first = broker
            .ask(
                scope("x"),
                slow.clone(),
                Prompt::default(),
                Duration::from_secs(5),
            )
            .await;
        let second = broker
            .ask(
                scope("y"),
                slow.clone(),
                Prompt::default(),
                Duration::from_secs(5),
            )
            .await;
        assert!(started.elapsed() < Duration::from_millis(100));
        assert_eq!(first, Err(NotAsked::Flood { notice: true }));
        assert_eq!(second, Err(NotAsked::Flood { notice: false }));
        for t in open {
            assert!(t.await.unwrap().is_ok());
        }
    }

    #[tokio::test]
    async fn a_prompt_nobody_waits_for_is_withdrawn() {
        let broker = Arc::new(PromptBroker::default());
        let slow = Arc::new(Slow::default());
        let waiting = broker.ask(
            scope("u"),
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
