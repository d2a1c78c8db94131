//! One question per login: a no for one key of a login answers the other
//! keys ssh tries in that login.
//!
//! ssh tries each key the server accepts in turn, and a refused signature
//! only makes it try the next one: a login through a bastion with two
//! keys would ask twice, and with nobody at the desk wait one timeout per
//! key. The person was asked about the login, so their no (or a timeout, a
//! confirmer that failed, no way to ask) stands for every key of it.
//!
//! A login is one connection (this value lives in its session), one SSH
//! session id and one user, as the signed userauth data names them. Only
//! refusals are shared, and only with requests that would ask: a key a
//! rule allows without asking is still allowed, one it denies still
//! denied. A yes is never shared; each key that asks is a question of its
//! own.

use std::sync::Mutex;

use crate::confirm::Answer;
use crate::ssh::digest::Sha256;
use crate::trust::binding::SignedData;

/// How many refused logins a connection remembers; one is what ssh needs
/// (it logs in once per connection), the rest bounds a client that keeps
/// trying others.
const REMEMBERED: usize = 4;

/// The audit reason of a request answered by an earlier refusal.
pub(crate) const SAME_LOGIN: &str = "same-login";

/// The logins refused on one connection, most recent last.
#[derive(Debug, Default)]
pub(crate) struct LoginAnswers {
    refused: Mutex<Vec<([u8; 32], &'static str)>>,
}

/// One login, as a sign request names it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ThisLogin<'a> {
    answers: &'a LoginAnswers,
    id: [u8; 32],
}

impl LoginAnswers {
    /// The login `signed` belongs to, if it is a userauth request.
    pub(crate) fn login<'a>(&'a self, signed: &SignedData<'_>) -> Option<ThisLogin<'a>> {
        let SignedData::Userauth(auth) = signed else {
            return None;
        };
        // Hashed with both lengths, so that no session id and user can
        // pass for another pair.
        let mut hasher = Sha256::new();
        hasher.update(&(auth.session_id.len() as u64).to_le_bytes());
        hasher.update(auth.session_id);
        hasher.update(&(auth.user.len() as u64).to_le_bytes());
        hasher.update(auth.user);
        Some(ThisLogin {
            answers: self,
            id: hasher.finish(),
        })
    }
}

impl ThisLogin<'_> {
    /// The reason an earlier key of this login was refused with, if one
    /// was.
    pub(crate) fn refused_before(&self) -> Option<&'static str> {
        let refused = self
            .answers
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        refused
            .iter()
            .find(|(id, _)| *id == self.id)
            .map(|(_, reason)| *reason)
    }

    /// Notes the answer to a question about a key of this login: a no, a
    /// timeout, a failed confirmer or no way to ask stands for the login.
    /// A flood or a withdrawn question said nothing about it.
    pub(crate) fn answered(&self, answer: &Answer) {
        if !matches!(
            answer,
            Answer::Refused | Answer::TimedOut | Answer::Failed(_) | Answer::Unavailable(_)
        ) {
            return;
        }
        let mut refused = self
            .answers
            .refused
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if refused.iter().any(|(id, _)| *id == self.id) {
            return;
        }
        if refused.len() == REMEMBERED {
            refused.remove(0);
        }
        refused.push((self.id, answer.reason()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::binding::Userauth;

    fn auth<'a>(session_id: &'a [u8], user: &'a [u8]) -> SignedData<'a> {
        SignedData::Userauth(Userauth {
            session_id,
            user,
            service: b"ssh-connection",
            sig_follows: 1,
            algorithm: "ssh-ed25519",
            key_blob: b"key",
            host_key: None,
            raw_session_id: false,
        })
    }

    #[test]
    fn a_no_stands_for_the_same_session_and_user_only() {
        let answers = LoginAnswers::default();
        let first = auth(b"session-1", b"deploy");
        let login = answers.login(&first).unwrap();
        assert_eq!(login.refused_before(), None);
        login.answered(&Answer::TimedOut);
        assert_eq!(
            answers
                .login(&auth(b"session-1", b"deploy"))
                .unwrap()
                .refused_before(),
            Some("timeout")
        );
        assert_eq!(
            answers
                .login(&auth(b"session-2", b"deploy"))
                .unwrap()
                .refused_before(),
            None
        );
        assert_eq!(
            answers
                .login(&auth(b"session-1", b"root"))
                .unwrap()
                .refused_before(),
            None
        );
        // The boundary between session id and user is part of the login.
        assert_eq!(
            answers
                .login(&auth(b"session-1d", b"eploy"))
                .unwrap()
                .refused_before(),
            None
        );
        assert!(answers.login(&SignedData::Other).is_none());
    }

    #[test]
    fn only_refusals_are_shared_and_few_are_kept() {
        let answers = LoginAnswers::default();
        for answer in [Answer::Allowed, Answer::Flood, Answer::Withdrawn] {
            let login = answers.login(&auth(b"s", b"u")).unwrap();
            login.answered(&answer);
            assert_eq!(login.refused_before(), None, "{answer:?}");
        }
        let sessions: Vec<Vec<u8>> = (0..=REMEMBERED as u8).map(|i| vec![i]).collect();
        for s in &sessions {
            answers
                .login(&auth(s, b"u"))
                .unwrap()
                .answered(&Answer::Refused);
        }
        let oldest = answers.login(&auth(&sessions[0], b"u")).unwrap();
        assert_eq!(oldest.refused_before(), None, "the oldest is forgotten");
        let newest = answers.login(&auth(&sessions[REMEMBERED], b"u")).unwrap();
        assert_eq!(newest.refused_before(), Some("refused"));
    }
}
