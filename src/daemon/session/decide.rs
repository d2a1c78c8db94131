//! The request context of this connection's signatures and key operations,
//! handed to [`crate::daemon::authorize`] for the decision (which logs and
//! audits it).

use tracing::{debug, warn};

use crate::daemon::authorize::{Caller, Op, SignKey, Verdict, authorize};
use crate::policy::KeyOp;
use crate::trust::binding::SignedData;
use crate::trust::context::{Destination, RequestContext};

use super::Session;
use super::refusal::Refusal;

impl Session {
    /// The request context of a signature with `key` (fingerprint, comment,
    /// blob) over `signed`, decided by [`authorize`].
    pub(super) async fn authorize_sign(
        &self,
        key: (&str, &str, &[u8]),
        sign_key: SignKey<'_>,
        signed: &SignedData<'_>,
        data: &[u8],
    ) -> Verdict {
        let mut context =
            RequestContext::new(key, &self.chain, self.hop_views(), signed, &self.peer);
        context.jump = self.jump_views();
        match sign_key {
            SignKey::Upstream => {
                debug!(conn = self.id, "request context (upstream key): {context}")
            }
            SignKey::Held { .. } => debug!(conn = self.id, "request context: {context}"),
        }
        let caller = Caller {
            conn: self.id,
            context: &context,
            chain: &self.chain,
            login: self.logins.login(signed),
        };
        if context.purpose == crate::trust::binding::Purpose::Login
            && crate::daemon::cert_drop::refuses_to_sign(key.2)
        {
            warn!(conn = self.id, key = %key.0, "sign refused: the certificate has expired");
            let upstream = matches!(sign_key, SignKey::Upstream);
            return crate::daemon::authorize::refused_expired_certificate(
                &self.agent,
                &caller,
                upstream,
            );
        }
        let op = Op::Sign {
            key: sign_key,
            signed,
            data,
        };
        authorize(&self.agent, &caller, op).await
    }

    /// Decides a key operation (add, remove, lock ...) for this connection:
    /// local use is allowed; through a bound connection `[forwarded]` says.
    /// A refusal was logged and audited by the decision.
    pub(super) async fn allow_key_op(
        &self,
        op: KeyOp,
        key: Option<(&str, &str)>,
    ) -> Result<(), Refusal> {
        self.allow_key_op_with(op, key, None).await
    }

    /// [`Session::allow_key_op`] for a hardware key, whose provider the
    /// audit names.
    pub(super) async fn allow_key_op_with(
        &self,
        op: KeyOp,
        key: Option<(&str, &str)>,
        provider: Option<String>,
    ) -> Result<(), Refusal> {
        let (fp, comment) = key.unwrap_or(("(all keys)", "(all keys)"));
        let mut context = RequestContext::of_parts(
            (fp, comment),
            self.hop_views(),
            Destination::NotLogin,
            None,
            crate::trust::binding::Purpose::Other,
            &self.peer,
        );
        context.class = self.class();
        let caller = Caller {
            conn: self.id,
            context: &context,
            chain: &self.chain,
            login: None,
        };
        let verdict = authorize(&self.agent, &caller, Op::KeyOp { op, key, provider }).await;
        if verdict.allowed {
            Ok(())
        } else {
            Err(Refusal::quiet())
        }
    }
}
