//! One client connection's state (its chain of binds, its upstream link)
//! and the answer to each decoded request: the request context is built
//! here and decided by [`crate::daemon::authorize`]; the keys are used here.
//! In upstream mode it also lists the upstream agent's keys and passes it
//! the sign requests for them that the policy allowed (see
//! [`crate::daemon::upstream`]).
//!
//! Invariants: every request gets exactly one reply; every decision goes
//! through `authorize`, which audits it; anything that goes wrong on the way
//! to a decision denies;
//! waiting (a confirmation, an unlock delay, the upstream) happens on this
//! connection's task only; nothing from the upstream is stored beyond the
//! connection.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, info, warn};

use crate::daemon::agent::Agent;
use crate::confirm::broker::Withdraw;
use crate::daemon::authorize::{
    Caller, Listed, Lister, Op, SignKey, authorize, bind_refused, connection_refused, listed,
    permitted, provider_refused,
};
use crate::keys::keystore::{self, Constraints, Identity};
use crate::policy::KeyOp;
use crate::protocol::reply::{Reply, SSH_AGENT_SUCCESS};
use crate::protocol::request::{Constraint, NewKey, Passphrase, Request};
use crate::ssh::cert::unix_now;
use crate::text::clean;
use crate::trust::binding::{BindError, Chain, SignedData};
use crate::trust::context::{Destination, HopView, RequestClass, RequestContext};
use crate::trust::destination;
use crate::trust::process::Requester;

/// The state of one connection.
#[derive(Debug)]
pub struct Session {
    agent: Arc<Agent>,
    /// The process that connected; what `/proc` says of it is read only
    /// when a decision, an audit record or a prompt needs it.
    peer: Requester,
    id: u64,
    /// The hosts this connection came through, from session-bind.
    chain: Chain,
    /// The chain's hops with names, valid while the chain, the known_hosts
    /// files and the policy stay the same (names are looked up once per
    /// connection, not once per request).
    views: std::sync::Mutex<Option<(ViewsKey, Vec<HopView>)>>,
    /// Every session-bind this connection accepted, as received, in order:
    /// replayed on the upstream connection before anything is forwarded.
    binds: Vec<Vec<u8>>,
    /// This connection's own link to the upstream agent (upstream mode).
    upstream: crate::daemon::upstream::UpstreamLink,
    /// Refused over a connection limit: every request is refused and the
    /// connection is closed after the reply.
    over_limit: bool,
    /// A refusal because forwarded use is locked was audited on this
    /// connection already (see [`Session::refuse_locked`]).
    locked_refusal_audited: bool,
    /// The logins refused on this connection: one question per login.
    logins: crate::daemon::one_login::LoginAnswers,
    /// The jump hosts this connection's direct login tunnels through
    /// (see [`Session::note_direct_bind`]).
    jump: Vec<crate::trust::binding::Hop>,
}

/// What cached hop names depend on: hop count, known_hosts generation and
/// the generation of the policy in force (its exact names).
type ViewsKey = (usize, u64, u64);

fn status(ok: bool) -> Reply {
    Reply::status(ok)
}

fn failure() -> Reply {
    Reply::Failure
}

impl Session {
    pub fn new(agent: Arc<Agent>, peer: Requester, id: u64) -> Self {
        Session {
            agent,
            peer,
            id,
            chain: Chain::default(),
            views: std::sync::Mutex::new(None),
            binds: Vec::new(),
            upstream: crate::daemon::upstream::UpstreamLink::default(),
            over_limit: false,
            locked_refusal_audited: false,
            logins: Default::default(),
            jump: Vec::new(),
        }
    }

    /// What this connection's binds hold, in bytes.
    pub fn bind_bytes(&self) -> usize {
        self.chain.retained_bytes()
    }

    /// Whether the connection must be closed once this reply is written.
    pub fn closing(&self) -> bool {
        self.over_limit
    }

    pub fn peer(&self) -> &Requester {
        &self.peer
    }

    /// Whether this connection came through a forwarded agent (or may have:
    /// a poisoned connection is treated as forwarded).
    fn forwarded(&self) -> bool {
        self.chain.is_poisoned() || self.chain.hops().iter().any(|h| h.forwarding)
    }

    /// Answers one decoded request.
    pub async fn dispatch(&mut self, request: Request<'_>) -> Reply {
        if self.over_limit {
            return failure();
        }
        let control = matches!(
            request,
            Request::Extension {
                name: crate::daemon::control::EXTENSION,
                ..
            }
        );
        let bind = matches!(
            request,
            Request::Extension {
                name: "session-bind@openssh.com",
                ..
            }
        );
        let reply = self.answer(request).await;
        // Only this machine's own use keeps `[lock] idle` away: a request
        // counts once it is answered on a connection that is local by then.
        // A forwarded connection's first request is the bind, made while
        // its chain is still empty: never counted, nor is `status` polling.
        if !control && !bind && !self.forwarded() {
            self.agent.touch_local();
        }
        reply
    }

    async fn answer(&mut self, request: Request<'_>) -> Reply {
        if self.agent.forwarded_locked() && self.forwarded() {
            // The panic button is pressed: nothing through a forwarded agent.
            warn!(conn = self.id, peer = %self.peer, "refused: forwarded use is locked (hopward unlock --forwarded)");
            self.refuse_locked(&request);
            return match request {
                Request::ListIdentities => {
                    crate::protocol::reply::identities_answer(std::iter::empty())
                }
                _ => failure(),
            };
        }
        match request {
            Request::ListIdentities => self.list().await,
            Request::Sign {
                key_blob,
                data,
                flags,
            } => self.sign(key_blob, data, flags).await,
            Request::Add { key, constraints } => self.add(&key, &constraints).await,
            Request::Remove { key_blob } => self.remove(key_blob).await,
            Request::RemoveAll => self.remove_all().await,
            Request::Lock(passphrase) => self.lock(passphrase).await,
            Request::Unlock(passphrase) => self.unlock(passphrase).await,
            Request::AddSmartcard {
                provider,
                pin,
                constraints,
            } => self.add_smartcard(provider, pin, &constraints).await,
            Request::RemoveSmartcard { provider } => self.remove_smartcard(provider).await,
            Request::Extension {
                name: "session-bind@openssh.com",
                body,
            } => self.session_bind(body),
            Request::Extension {
                name: crate::daemon::control::EXTENSION,
                body,
            } => self.control(body).await,
            Request::Extension { name: "query", .. } => self.query(),
            Request::Extension { name, .. } => {
                debug!(conn = self.id, "unsupported extension {}", clean(name, 80));
                failure()
            }
        }
    }

    /// The `query` extension. As in ssh-agent, refused while locked, and any
    /// bytes after the name are ignored. `control@hopward` is listed only
    /// where it may be used.
    fn query(&self) -> Reply {
        if self.agent.keystore.is_locked() {
            return failure();
        }
        let control = self
            .control_allowed()
            .then_some(crate::daemon::control::EXTENSION);
        crate::protocol::reply::query_answer(
            crate::protocol::request::EXTENSIONS
                .into_iter()
                .chain(control),
        )
    }

    /// Whether the control channel is open to this connection: a local,
    /// unforwarded connection of the owner (or root).
    fn control_allowed(&self) -> bool {
        let unbound = self.chain.hops().is_empty() && !self.chain.is_poisoned();
        unbound && self.peer.may_connect(self.agent.options.owner_uid)
    }

    /// The control channel: only for a local, unforwarded connection of the
    /// owner (or root). Refusing it there is `SSH_AGENT_FAILURE`, as ssh-agent
    /// refuses extensions while locked; a control request that runs and fails
    /// is answered with its error, so `hopward` can say what went wrong.
    async fn control(&mut self, body: &[u8]) -> Reply {
        if !self.control_allowed() {
            warn!(conn = self.id, peer = %self.peer, "refused control request on a bound connection");
            return failure();
        }
        if crate::daemon::control::wants_status(body) {
            // Status says whether upstream answers now, not when last used.
            self.probe_upstream().await;
        }
        // A request this agent cannot carry out is answered with what went
        // wrong: a bare failure reads as "not allowed on this connection".
        let reply = match crate::daemon::control::handle(&self.agent, body).await {
            Ok(reply) => reply,
            Err(e) => {
                info!(conn = self.id, "control request failed: {e}");
                use crate::protocol::control::{ErrorReply, to_wire};
                to_wire(&ErrorReply { error: e })
            }
        };
        let mut out = vec![SSH_AGENT_SUCCESS];
        crate::ssh::wire::put_string(&mut out, reply.as_bytes());
        Reply::Encoded(out)
    }

    fn session_bind(&mut self, body: &[u8]) -> Reply {
        let hops_before = self.chain.hops().len();
        let result = self.chain.bind(body, unix_now());
        // Every bind that grew the chain is kept for the upstream, in order,
        // even one refused below because forwarded use is locked: the chain
        // keeps it, so the upstream must see it too, or a later unlock would
        // leave the upstream a shorter (looser) chain than hopward's. The
        // same bind sent again adds nothing and is not kept, so a client
        // cannot grow this list (and the replay) without end: it holds at
        // most the chain's 16.
        if self.chain.hops().len() > hops_before {
            self.binds.push(body.to_vec());
        }
        self.agent.set_class(
            self.id,
            RequestClass::of(&self.chain).as_str(),
            self.forwarded(),
            self.chain.retained_bytes(),
        );
        // The first bind is this machine's own ssh naming the bastion the
        // connection comes through; a bastion gets only so many.
        if result.is_ok()
            && hops_before == 0
            && let Some(first) = self.chain.hops().first().filter(|h| h.forwarding)
            && let Err(limit) = self.agent.claim_first_hop(self.id, &first.fingerprint())
        {
            warn!(
                conn = self.id,
                peer = %self.peer,
                host = %first.fingerprint(),
                "refused a connection through a forwarding hop: {}; closing it",
                limit.reason()
            );
            let hops = self.hop_views();
            connection_refused(
                &self.agent,
                &self.lister(&hops, RequestClass::of(&self.chain)),
                limit,
            );
            self.over_limit = true;
            return failure();
        }
        // A bind that poisons is audited whatever comes next, also when
        // forwarded use is locked (a poisoned connection counts as
        // forwarded). Later binds on it add nothing.
        if let Err(e) = &result
            && *e != BindError::Poisoned
        {
            let hops = self.hop_views();
            bind_refused(&self.agent, &self.lister(&hops, RequestClass::of(&self.chain)), e);
            // That record is this connection's refusal; a lock in force
            // adds no second one for the same bind.
            self.locked_refusal_audited = true;
        }
        if self.agent.forwarded_locked() && self.forwarded() {
            warn!(
                conn = self.id,
                "refused session-bind: forwarded use is locked"
            );
            self.refuse_locked(&Request::Extension {
                name: "session-bind@openssh.com",
                body,
            });
            return failure();
        }
        if result.is_ok() && hops_before == 0 {
            self.note_direct_bind();
        }
        match result {
            Ok(()) => {
                if let Some(hop) = self.chain.last() {
                    debug!(
                        conn = self.id,
                        host = %hop.fingerprint(),
                        forwarding = hop.forwarding,
                        hops = self.chain.hops().len(),
                        "session bound"
                    );
                }
                status(true)
            }
            Err(e) => {
                warn!(conn = self.id, peer = %self.peer, "session-bind refused, connection poisoned: {e}");
                // A known extension that failed: OpenSSH 10.3+'s reply.
                Reply::ExtensionFailure
            }
        }
    }

    /// A first bind that is an authentication bind (`ssh host` from this
    /// machine): the route is the one a jump child of this process bound
    /// (ProxyJump), and this bind is remembered as a jump for the ssh
    /// processes above it. A forwarding first bind gets no route: what
    /// comes through it has its own chain of binds.
    fn note_direct_bind(&mut self) {
        let [hop] = self.chain.hops() else {
            return;
        };
        if hop.forwarding {
            return;
        }
        let table = crate::trust::process_table::Proc;
        // The start time through the connection's pin: a client that exits
        // right after its bind cannot lend it to whoever gets its pid next.
        let Some(process) = self
            .peer
            .pid
            .zip(self.peer.start_time())
            .map(|(pid, start)| crate::trust::process_table::ProcessId { pid, start })
        else {
            return;
        };
        let now = Instant::now();
        let route = self.agent.jumps.route_for(&table, process, now);
        self.agent
            .jumps
            .remember(&table, process, hop, route.clone(), now);
        if !route.is_empty() {
            debug!(conn = self.id, jumps = route.len(), "a direct login through jump hosts");
        }
        self.jump = route;
    }

    /// The jump hosts of this connection's login, with their names.
    fn jump_views(&self) -> Vec<HopView> {
        if self.jump.is_empty() {
            return Vec::new();
        }
        let (_, policy) = self.agent.policy.snapshot();
        RequestContext::jump_views(&self.jump, &self.agent.known_hosts, policy.exact_names())
    }

    /// Leaves a trace of a request refused because forwarded use is
    /// locked: an audit record (`forwarded-locked`) for the connection's
    /// first such refusal and for every signature asked for, and one
    /// desktop notice per lock episode. One forwarded login is one
    /// connection with two binds and a listing; a record for each would
    /// say three times what happened once, while every signature asked
    /// for is a use of a key and recorded. A bastion that floods is
    /// coalesced by the audit writer.
    fn refuse_locked(&mut self, request: &Request<'_>) {
        let (event, key) = match request {
            Request::Sign { key_blob, .. } => {
                let comment = self
                    .agent
                    .keystore
                    .find(key_blob, std::time::Instant::now())
                    .map(|id| id.comment.clone())
                    .unwrap_or_default();
                (crate::daemon::audit::Event::Sign, Some((crate::ssh::key::fingerprint_of(key_blob), comment)))
            }
            _ if self.locked_refusal_audited => return,
            Request::ListIdentities => (crate::daemon::audit::Event::List, None),
            Request::Add { .. } | Request::AddSmartcard { .. } => (crate::daemon::audit::Event::Add, None),
            Request::Remove { .. } | Request::RemoveSmartcard { .. } => (crate::daemon::audit::Event::Remove, None),
            Request::RemoveAll => (crate::daemon::audit::Event::RemoveAll, None),
            Request::Lock(_) => (crate::daemon::audit::Event::Lock, None),
            Request::Unlock(_) => (crate::daemon::audit::Event::Unlock, None),
            Request::Extension {
                name: "session-bind@openssh.com",
                ..
            } => (crate::daemon::audit::Event::Bind, None),
            Request::Extension { .. } => (crate::daemon::audit::Event::Extension, None),
        };
        self.locked_refusal_audited = true;
        let hops = self.hop_views();
        let who = self.lister(&hops, RequestClass::of(&self.chain));
        crate::daemon::authorize::forwarded_locked_refused(
            &self.agent,
            &who,
            event,
            key.as_ref().map(|(fp, comment)| (fp.as_str(), comment.as_str())),
        );
    }

    /// The chain with verified names, including exact names the policy
    /// mentions that only hashed known_hosts entries confirm.
    fn hop_views(&self) -> Vec<HopView> {
        if self.chain.hops().is_empty() {
            return Vec::new();
        }
        let (policy_generation, policy) = self.agent.policy.snapshot();
        let key = (
            self.chain.hops().len(),
            self.agent.known_hosts.generation(),
            policy_generation,
        );
        let mut cache = self.views.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((cached_key, views)) = cache.as_ref() {
            if *cached_key == key {
                return views.clone();
            }
        }
        let views =
            RequestContext::hop_views(&self.chain, &self.agent.known_hosts, policy.exact_names());
        *cache = Some((key, views.clone()));
        views
    }

    async fn list(&mut self) -> Reply {
        let class = RequestClass::of(&self.chain);
        let hops = self.hop_views();
        let mut shown = Vec::new();
        let own = self.agent.keystore.list(Instant::now());
        let lister = self.lister(&hops, class);
        for id in own.iter().cloned() {
            if listed(&self.agent, &lister, Listed::Held(&id)) {
                shown.push(id);
            }
        }
        let mut upstream = self.upstream_listing().await;
        // A key both hold is hopward's: listed once, signed here, and not
        // listed at all where hopward's copy is hidden (it would be hopward
        // that is asked to sign with it).
        upstream.retain(|k| !own.iter().any(|id| id.blob() == k.blob.as_slice()));
        let lister = self.lister(&hops, class);
        upstream.retain(|k| {
            let key = Listed::Upstream {
                fingerprint: &k.fingerprint,
                comment: &k.comment,
            };
            listed(&self.agent, &lister, key)
        });
        let answer: Vec<(&[u8], &str)> = shown
            .iter()
            .map(|id| (id.blob(), id.comment.as_str()))
            .chain(
                upstream
                    .iter()
                    .map(|k| (k.blob.as_slice(), k.comment.as_str())),
            )
            .collect();
        crate::protocol::reply::identities_answer(answer.into_iter())
    }

    /// The upstream agent this connection may use, and the bound on each
    /// request to it. `None` without an upstream, and for hopward's own
    /// connections: an upstream socket that leads back to this agent must
    /// not make it call itself without end.
    fn upstream_target(&self) -> Option<(std::path::PathBuf, Duration)> {
        let target = self.agent.upstream()?;
        // getpid is a system call each time, and this runs on every upstream
        // request; it is first read in the serving process (after any fork).
        static OWN_PID: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
        if self.peer.pid == Some(*OWN_PID.get_or_init(std::process::id)) {
            debug!(
                conn = self.id,
                "upstream not used on hopward's own connection (the upstream socket leads back here)"
            );
            return None;
        }
        Some(target)
    }

    /// Why upstream keys are out of reach on this connection right now, if
    /// they are: a locked agent hides them as it hides its own keys, and a
    /// connection poisoned by a bind hopward refused never reaches upstream
    /// (the upstream would see a chain without the bad bind).
    fn upstream_barred(&self) -> Option<&'static str> {
        if self.agent.keystore.is_locked() {
            Some("the agent is locked")
        } else if self.chain.is_poisoned() {
            Some("a session-bind on this connection was refused")
        } else if self.upstream.is_poisoned() {
            Some("the upstream agent refused a session-bind on this connection")
        } else {
            None
        }
    }

    /// The upstream's keys as it lists them on this connection (its own
    /// restrictions applied to the replayed binds); empty, with a log line,
    /// when it cannot be asked.
    async fn upstream_listing(&mut self) -> Vec<crate::daemon::upstream::UpstreamKey> {
        let Some((path, timeout)) = self.upstream_target() else {
            return Vec::new();
        };
        if let Some(why) = self.upstream_barred() {
            debug!(
                conn = self.id,
                "upstream keys left out of the listing: {why}"
            );
            return Vec::new();
        }
        match self.upstream.list(&path, &self.binds, timeout).await {
            Ok(keys) => {
                let keys = keys.to_vec();
                self.agent.upstream.record(Ok(None));
                self.note_bind_support();
                keys
            }
            Err(e) => {
                warn!(conn = self.id, peer = %self.peer, "upstream keys left out of the listing: {e}");
                self.agent.upstream.record(Err(&e));
                Vec::new()
            }
        }
    }

    /// Notes (once for the agent) an upstream that turned out to know no
    /// session-bind on this connection.
    fn note_bind_support(&self) {
        if self.binds.is_empty() {
            return;
        }
        let supported = !self.upstream.binds_unsupported();
        if self.agent.upstream.record_binds(supported) && !supported {
            warn!(
                conn = self.id,
                "the upstream agent knows no session-bind (it refused a valid one): \
                 binds are not passed to it, and only hopward's policy restricts its keys"
            );
        }
    }

    /// For `hopward status`: asks the upstream for its keys on a connection
    /// of its own (no binds: everything it would list locally).
    async fn probe_upstream(&self) {
        let Some((path, timeout)) = self.upstream_target() else {
            return;
        };
        let mut link = crate::daemon::upstream::UpstreamLink::default();
        match link.list(&path, &[], timeout).await {
            Ok(keys) => self.agent.upstream.record(Ok(Some(keys))),
            Err(e) => self.agent.upstream.record(Err(&e)),
        }
    }

    /// Who a listing on this connection is for.
    fn lister<'a>(&'a self, hops: &'a [HopView], class: RequestClass) -> Lister<'a> {
        Lister {
            conn: self.id,
            chain: &self.chain,
            hops,
            class,
            peer: &self.peer,
        }
    }

    /// The request context of a signature with `key` (fingerprint, comment,
    /// blob) over `signed`, decided by [`authorize`].
    async fn authorize_sign(
        &self,
        key: (&str, &str, &[u8]),
        sign_key: SignKey<'_>,
        signed: &SignedData<'_>,
        data: &[u8],
    ) -> crate::daemon::authorize::Verdict {
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

    async fn sign(&mut self, key_blob: &[u8], data: &[u8], flags: u32) -> Reply {
        let Some(identity) = self.agent.keystore.find(key_blob, Instant::now()) else {
            return self.sign_upstream(key_blob, data, flags).await;
        };
        let signed_data = SignedData::parse(data);
        let key = SignKey::Held {
            identity: &identity,
            blob: key_blob,
        };
        let names = (identity.fingerprint.as_str(), identity.comment.as_str(), key_blob);
        let verdict = self.authorize_sign(names, key, &signed_data, data).await;
        if !verdict.allowed {
            return failure();
        }

        // A hardware key signs outside this process: one that fails after
        // the allow turns the audit record into a deny that says so.
        let on_hardware = if let Some(token) = identity.security_key() {
            Some(
                self.sign_on_token(&identity, token, data)
                    .await
                    .ok_or(crate::daemon::audit::Reason::TokenFailed),
            )
        } else if let Some(provider) = identity.pkcs11() {
            debug!(conn = self.id, key = %identity.fingerprint, provider = %provider.path.display(), "asking the PKCS#11 token to sign");
            Some(
                provider
                    .sign(&identity.public.parts, data, flags)
                    .await
                    .map_err(|e| {
                        warn!(conn = self.id, key = %identity.fingerprint, provider = %provider.path.display(), "PKCS#11 signature failed: {e}");
                        crate::daemon::audit::Reason::ProviderFailed
                    }),
            )
        } else {
            None
        };
        if let Some(signed) = on_hardware {
            return match signed {
                Ok(blob) => {
                    verdict.signed();
                    crate::protocol::reply::sign_response_blob(&blob)
                }
                Err(reason) => {
                    verdict.sign_failed(reason);
                    failure()
                }
            };
        }
        let signed = if matches!(
            identity.key_type(),
            crate::ssh::key::KeyType::Rsa | crate::ssh::key::KeyType::MlDsa44Ed25519
        ) {
            // RSA takes milliseconds, ML-DSA (a key expansion and a
            // signature) about 0.15 ms: keep them off the async workers so
            // other connections are not stalled behind them.
            let identity = Arc::clone(&identity);
            let data = data.to_vec();
            tokio::task::spawn_blocking(move || identity.sign(&data, flags))
                .await
                .unwrap_or(Err(crate::keys::sign::SignError::Failed))
        } else {
            identity.sign(data, flags)
        };
        match signed {
            Ok(sig) => crate::protocol::reply::sign_response(sig.algorithm, &sig.blob),
            Err(e) => {
                warn!(conn = self.id, key = %identity.fingerprint, "sign failed: {e}");
                failure()
            }
        }
    }

    /// A sign request for a key hopward does not hold: decided by the policy
    /// exactly as for its own keys, then, only if allowed, passed to the
    /// upstream on this connection's own link (binds replayed first).
    async fn sign_upstream(&mut self, key_blob: &[u8], data: &[u8], flags: u32) -> Reply {
        let no_such_key = |conn: u64| {
            debug!(conn, "sign: no such key {}", describe_blob(key_blob));
            failure()
        };
        let Some((path, timeout)) = self.upstream_target() else {
            return no_such_key(self.id);
        };
        if let Some(why) = self.upstream_barred() {
            warn!(conn = self.id, peer = %self.peer, "sign refused for a key hopward does not hold: {why}");
            return failure();
        }
        let key = match self.upstream.known_key(key_blob) {
            Some(key) => key.clone(),
            // Not listed on this connection yet (or changed since): ask.
            None => match self.upstream.list(&path, &self.binds, timeout).await {
                Ok(keys) => match keys.iter().find(|k| k.blob == key_blob) {
                    Some(key) => key.clone(),
                    None => return no_such_key(self.id),
                },
                Err(e) => {
                    warn!(conn = self.id, peer = %self.peer, "sign refused: cannot list the upstream's keys: {e}");
                    self.agent.upstream.record(Err(&e));
                    return failure();
                }
            },
        };
        let signed_data = SignedData::parse(data);
        // The upstream applies its own constraints (ssh-add -h, -c) to the
        // replayed binds; the policy decides before it is ever asked.
        let names = (key.fingerprint.as_str(), key.comment.as_str(), key_blob);
        let verdict = self
            .authorize_sign(names, SignKey::Upstream, &signed_data, data)
            .await;
        if !verdict.allowed {
            return failure();
        }
        let result = self
            .upstream
            .sign(&path, &self.binds, (key_blob, data, flags), timeout)
            .await;
        match result {
            Ok(reply) => {
                self.note_bind_support();
                verdict.signed();
                Reply::Encoded(reply)
            }
            Err(e) => {
                // Allowed here, yet no signature: the audit says where it stopped.
                let reason = match e {
                    crate::daemon::upstream::UpstreamError::Refused { .. }
                    | crate::daemon::upstream::UpstreamError::BindRefused { .. }
                    | crate::daemon::upstream::UpstreamError::Poisoned => {
                        crate::daemon::audit::Reason::UpstreamRefused
                    }
                    _ => crate::daemon::audit::Reason::UpstreamFailed,
                };
                warn!(conn = self.id, peer = %self.peer, key = %key.fingerprint, "allowed by rule {}, but the upstream did not sign: {e}", verdict.rule);
                self.agent.upstream.record(Err(&e));
                verdict.sign_failed(reason);
                failure()
            }
        }
    }

    /// Has a FIDO token sign, after the policy allowed it: off this
    /// connection's lock-free path, in a helper process, with a deadline.
    /// The signature blob, or `None` (logged) when the token did not sign.
    async fn sign_on_token(
        &self,
        identity: &Identity,
        token: &crate::keys::sk::SecurityKey,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        let provider = token.provider.describe();
        if token.needs_touch() {
            info!(conn = self.id, key = %identity.fingerprint, provider = %provider, "waiting for the security key: touch it to sign");
        }
        let timeout = self.agent.options.provider_timeout;
        let mut signed =
            crate::keys::sk::sign(&identity.public.parts, token, data, None, timeout).await;
        if matches!(signed, Err(crate::keys::sk::SkError::PinRequired)) {
            // As ssh-agent: the token wants its PIN (a verify-required key);
            // ask once with askpass and try again.
            let prompt = format!(
                "Enter PIN{}for {} key {}: ",
                if token.needs_touch() {
                    " and confirm user presence "
                } else {
                    " "
                },
                identity.key_type().name(),
                identity.fingerprint
            );
            match crate::keys::sk::ask_pin(&prompt, timeout).await {
                Some(pin) => {
                    signed = crate::keys::sk::sign(
                        &identity.public.parts,
                        token,
                        data,
                        Some(&pin),
                        timeout,
                    )
                    .await;
                }
                None => {
                    warn!(conn = self.id, key = %identity.fingerprint, "the security key needs a PIN and there is no askpass to ask for it (SSH_ASKPASS with DISPLAY, or SSH_ASKPASS_REQUIRE=force)");
                }
            }
        }
        match signed {
            Ok(signed) => {
                debug!(conn = self.id, key = %identity.fingerprint, flags = signed.details.flags, counter = signed.details.counter, "security key signed");
                Some(signed.blob)
            }
            Err(e) => {
                warn!(conn = self.id, key = %identity.fingerprint, provider = %provider, "security key signature failed: {e}");
                None
            }
        }
    }

    /// Audits an add refused for its provider.
    fn provider_refused(
        &self,
        key: Option<(&str, &str)>,
        refusal: &crate::keys::sk::ProviderRefusal,
    ) {
        let hops = self.hop_views();
        let who = self.lister(&hops, RequestClass::of(&self.chain));
        provider_refused(&self.agent, &who, key, refusal);
    }

    /// Decides a key operation (add, remove, lock ...) for this connection:
    /// local use is allowed; through a bound connection `[forwarded]` says.
    async fn allow_key_op(&self, op: KeyOp, key: Option<(&str, &str)>) -> bool {
        self.allow_key_op_with(op, key, None).await
    }

    /// [`Session::allow_key_op`] for a hardware key, whose provider the
    /// audit names.
    async fn allow_key_op_with(
        &self,
        op: KeyOp,
        key: Option<(&str, &str)>,
        provider: Option<String>,
    ) -> bool {
        let class = RequestClass::of(&self.chain);
        let (fp, comment) = key.unwrap_or(("(all keys)", "(all keys)"));
        let mut context = RequestContext::of_parts(
            (fp, comment),
            self.hop_views(),
            Destination::NotLogin,
            None,
            crate::trust::binding::Purpose::Other,
            &self.peer,
        );
        context.class = class;
        let caller = Caller {
            conn: self.id,
            context: &context,
            chain: &self.chain,
            login: None,
        };
        authorize(&self.agent, &caller, Op::KeyOp { op, key, provider })
            .await
            .allowed
    }

    /// Whether this connection counts as remote for loading providers:
    /// ssh-agent's `socket_is_remote`, any session-bind at all.
    fn remote(&self) -> bool {
        !self.chain.hops().is_empty() || self.chain.is_poisoned()
    }

    /// `-t` of the daemon, for a key added without a lifetime of its own.
    fn default_lifetime(&self, parsed: &mut Constraints) {
        if parsed.lifetime.is_none() {
            parsed.lifetime = self
                .agent
                .options
                .default_lifetime
                .map(|d| u32::try_from(d.as_secs()).unwrap_or(u32::MAX));
        }
    }

    /// The constraints every kind of add takes: a lifetime, `-c`, and
    /// destinations. `Ok(true)` when the constraint was given already; a
    /// bad destination constraint, or a kind the caller should have taken
    /// itself, is logged (after `refusal`) and refused.
    fn common_constraint(
        &self,
        parsed: &mut Constraints,
        constraint: &Constraint<'_>,
        refusal: &str,
    ) -> Result<bool, ()> {
        match constraint {
            Constraint::Lifetime(secs) => Ok(parsed.lifetime.replace(*secs).is_some()),
            Constraint::Confirm => Ok(std::mem::replace(&mut parsed.confirm, true)),
            Constraint::RestrictDestination(body) => match destination::parse_constraints(body) {
                Ok(list) => {
                    let had = !parsed.destinations.is_empty();
                    parsed.destinations = list;
                    Ok(had)
                }
                Err(e) => {
                    warn!(conn = self.id, "{refusal}: bad destination constraint: {e}");
                    Err(())
                }
            },
            other => {
                warn!(
                    conn = self.id,
                    "{refusal}: constraint {other:?} is not valid here"
                );
                Err(())
            }
        }
    }

    async fn add(&mut self, key: &NewKey<'_>, constraints: &[Constraint<'_>]) -> Reply {
        let mut parsed = Constraints::default();
        let mut sk_provider = None;
        for constraint in constraints {
            let duplicate = match constraint {
                Constraint::SkProvider(name) => sk_provider.replace(*name).is_some(),
                Constraint::AssociatedCerts { .. } => {
                    warn!(
                        conn = self.id,
                        "refused to add key: associated certificates are only for PKCS#11 tokens"
                    );
                    return failure();
                }
                common => match self.common_constraint(&mut parsed, common, "refused to add key") {
                    Ok(duplicate) => duplicate,
                    Err(()) => return failure(),
                },
            };
            if duplicate {
                warn!(
                    conn = self.id,
                    "refused to add key: a constraint is given twice"
                );
                return failure();
            }
        }
        if let Some(name) = sk_provider {
            if !key.public.parts.key_type().is_security_key() {
                warn!(
                    conn = self.id,
                    "refused to add key: a provider was named for {}, which is not a security key",
                    key.public.parts.key_type().name()
                );
                return failure();
            }
            let options = &self.agent.options;
            match crate::keys::sk::resolve_provider(
                name,
                &options.provider_allowlist,
                self.remote(),
                options.allow_remote_providers,
            ) {
                Ok(provider) => parsed.sk_provider = Some(provider),
                Err(e) => {
                    let fingerprint = key.public.fingerprint();
                    warn!(conn = self.id, peer = %self.peer, "refused to add key {fingerprint}: {e}");
                    let comment = clean(&key.comment, 80);
                    self.provider_refused(Some((&fingerprint, &comment)), &e);
                    return failure();
                }
            }
        }
        self.default_lifetime(&mut parsed);
        let identity = match Identity::new(key, parsed, Instant::now()) {
            Ok(identity) => identity,
            Err(e) => {
                warn!(
                    conn = self.id,
                    "refused to add key {}: {e}",
                    key.public.fingerprint()
                );
                return failure();
            }
        };
        let (fp, comment) = (identity.fingerprint.clone(), identity.comment.clone());
        let provider = identity.security_key().map(|k| k.provider.describe());
        if !self
            .allow_key_op_with(KeyOp::Add, Some((&fp, &comment)), provider.clone())
            .await
        {
            return failure();
        }
        let (confirm, lifetime) = (identity.constraints.confirm, identity.constraints.lifetime);
        let restricted = !identity.constraints.destinations.is_empty();
        match self.agent.keystore.add(identity) {
            Ok(()) => {
                info!(conn = self.id, key = %fp, comment = %clean(&comment, 80), confirm, lifetime = ?lifetime, restricted, provider = ?provider, "added key");
                status(true)
            }
            Err(e) => {
                warn!(conn = self.id, "refused to add key {fp}: {e}");
                failure()
            }
        }
    }

    /// `ssh-add -s PROVIDER`: as ssh-agent's `process_add_smartcard_key`,
    /// a provider named through a forwarded agent is refused (unless
    /// `-O allow-remote-pkcs11`), its real path must match `-P`, and
    /// `[forwarded] add` of the policy decides as for any key. The
    /// provider runs in a helper process; the PIN goes there only.
    async fn add_smartcard(
        &mut self,
        provider: &str,
        pin: Passphrase<'_>,
        constraints: &[Constraint<'_>],
    ) -> Reply {
        let mut parsed = Constraints::default();
        let mut associated: Option<(bool, &[&[u8]])> = None;
        for constraint in constraints {
            let duplicate = match constraint {
                Constraint::AssociatedCerts { certs_only, certs } => {
                    associated.replace((*certs_only, certs)).is_some()
                }
                Constraint::SkProvider(_) => {
                    warn!(
                        conn = self.id,
                        "refused PKCS#11 add: sk-provider is not valid here"
                    );
                    return failure();
                }
                common => {
                    match self.common_constraint(&mut parsed, common, "refused PKCS#11 add") {
                        Ok(duplicate) => duplicate,
                        Err(()) => return failure(),
                    }
                }
            };
            if duplicate {
                warn!(
                    conn = self.id,
                    "refused PKCS#11 add: a constraint is given twice"
                );
                return failure();
            }
        }
        self.default_lifetime(&mut parsed);
        let options = &self.agent.options;
        let path = match crate::keys::sk::resolve_provider(
            provider,
            &options.provider_allowlist,
            self.remote(),
            options.allow_remote_providers,
        ) {
            Ok(crate::keys::sk::Provider::Library(path)) => path,
            Ok(crate::keys::sk::Provider::Internal) => {
                warn!(
                    conn = self.id,
                    "refused PKCS#11 add: \"internal\" is not a PKCS#11 provider"
                );
                return failure();
            }
            Err(e) => {
                warn!(conn = self.id, peer = %self.peer, "refused PKCS#11 add: {e}");
                self.provider_refused(None, &e);
                return failure();
            }
        };
        let shown = path.display().to_string();
        if self.agent.pkcs11_loaded(&path) {
            // As ssh-agent: keys already held are not added again, so a
            // provider whose keys are all still here adds nothing and fails;
            // one whose keys were dropped (ssh-add -D) loads afresh.
            let held = self
                .agent
                .keystore
                .list(Instant::now())
                .iter()
                .any(|id| id.pkcs11().is_some_and(|p| p.path == path));
            if held {
                warn!(conn = self.id, provider = %shown, "refused PKCS#11 add: its keys are already loaded (ssh-add -e first)");
                return failure();
            }
            if let Some(old) = self.agent.take_pkcs11(&path) {
                old.stop().await;
            }
        }
        if !self
            .allow_key_op_with(KeyOp::Add, Some((&shown, &shown)), Some(shown.clone()))
            .await
        {
            return failure();
        }
        let pin = zeroize::Zeroizing::new(pin.0.to_vec());
        let (provider, keys) = match crate::keys::pkcs11::Pkcs11Provider::load(
            path.clone(),
            &pin,
            options.provider_timeout,
        )
        .await
        {
            Ok(loaded) => loaded,
            Err(e) => {
                warn!(conn = self.id, provider = %shown, "PKCS#11 add failed: {e}");
                return failure();
            }
        };
        drop(pin);
        let provider = Arc::new(provider);
        let now = Instant::now();
        let (certs_only, certs) = associated.unwrap_or((false, &[]));
        let mut identities = Vec::new();
        for key in keys {
            let comment = if key.label.is_empty() {
                shown.clone()
            } else {
                key.label.clone()
            };
            for cert in certs {
                match crate::ssh::key::PublicKey::parse(cert) {
                    Ok(cert) if cert.is_cert && cert.parts == key.public.parts => {
                        identities.push(Identity::on_pkcs11_token(
                            cert,
                            comment.clone(),
                            parsed.clone(),
                            Arc::clone(&provider),
                            now,
                        ));
                    }
                    Ok(_) => {}
                    Err(e) => debug!(conn = self.id, "associated certificate skipped: {e}"),
                }
            }
            if !certs_only {
                identities.push(Identity::on_pkcs11_token(
                    key.public,
                    comment,
                    parsed.clone(),
                    Arc::clone(&provider),
                    now,
                ));
            }
        }
        if identities.is_empty() {
            warn!(conn = self.id, provider = %shown, "PKCS#11 add: no usable keys on the token");
            provider.stop().await;
            return failure();
        }
        let count = identities.len();
        for identity in identities {
            let fp = identity.fingerprint.clone();
            if let Err(e) = self.agent.keystore.add(identity) {
                warn!(conn = self.id, "refused to add token key {fp}: {e}");
                self.agent.keystore.remove_provider(&path);
                provider.stop().await;
                return failure();
            }
            info!(conn = self.id, key = %fp, provider = %shown, "added token key");
        }
        self.agent.set_pkcs11(path, provider);
        info!(conn = self.id, provider = %shown, keys = count, "PKCS#11 provider loaded");
        status(true)
    }

    /// `ssh-add -e PROVIDER`: drops the token's keys and stops its helper.
    async fn remove_smartcard(&mut self, provider: &str) -> Reply {
        let Ok(path) = std::fs::canonicalize(provider) else {
            warn!(
                conn = self.id,
                "PKCS#11 remove: no such provider {}",
                clean(provider, 100)
            );
            return failure();
        };
        let shown = path.display().to_string();
        if !self.agent.pkcs11_loaded(&path) {
            warn!(conn = self.id, provider = %shown, "PKCS#11 remove: provider not loaded");
            return failure();
        }
        if !self
            .allow_key_op_with(KeyOp::Remove, Some((&shown, &shown)), Some(shown.clone()))
            .await
        {
            return failure();
        }
        let Some(removed) = self.agent.keystore.remove_provider(&path) else {
            return failure();
        };
        let keys: Vec<String> = removed.iter().map(|id| id.fingerprint.clone()).collect();
        self.agent
            .withdraw_questions(Withdraw::Keys(&keys), "PKCS#11 provider removed (ssh-add -e)");
        if let Some(helper) = self.agent.take_pkcs11(&path) {
            helper.stop().await;
        }
        info!(conn = self.id, provider = %shown, keys = keys.len(), "PKCS#11 provider removed");
        status(true)
    }

    async fn remove(&mut self, key_blob: &[u8]) -> Reply {
        let Some(identity) = self.agent.keystore.find(key_blob, Instant::now()) else {
            return failure();
        };
        // A key this connection cannot see cannot be removed through it.
        let hops = self.hop_views();
        let lister = self.lister(&hops, RequestClass::of(&self.chain));
        if permitted(&self.agent, &lister, Listed::Held(&identity)).is_err() {
            return failure();
        }
        if !self
            .allow_key_op(
                KeyOp::Remove,
                Some((&identity.fingerprint, &identity.comment)),
            )
            .await
        {
            return failure();
        }
        let removed = self.agent.keystore.remove(key_blob);
        if removed {
            info!(conn = self.id, "removed key {}", identity.fingerprint);
            self.agent.withdraw_questions(
                Withdraw::Keys(std::slice::from_ref(&identity.fingerprint)),
                "key removed (ssh-add -d)",
            );
        }
        status(removed)
    }

    async fn remove_all(&mut self) -> Reply {
        if !self.allow_key_op(KeyOp::RemoveAll, None).await {
            return failure();
        }
        match self.agent.keystore.remove_all() {
            Some(removed) => {
                info!(conn = self.id, "removed all {} keys", removed.len());
                let keys: Vec<String> = removed.iter().map(|id| id.fingerprint.clone()).collect();
                self.agent
                    .withdraw_questions(Withdraw::Keys(&keys), "every key removed (ssh-add -D)");
                status(true)
            }
            None => failure(),
        }
    }

    async fn lock(&mut self, passphrase: Passphrase<'_>) -> Reply {
        // OpenSSH refuses an empty lock passphrase.
        if self.agent.keystore.is_locked() || passphrase.0.is_empty() {
            return failure();
        }
        if !self.allow_key_op(KeyOp::Lock, None).await {
            return failure();
        }
        // The hash is slow on purpose; compute it off the async workers. The
        // copy is wiped when the closure drops it.
        let secret = zeroize::Zeroizing::new(passphrase.0.to_vec());
        let hashed = tokio::task::spawn_blocking(move || keystore::hash_passphrase(&secret)).await;
        let locked = match hashed {
            Ok(Ok(hash)) => self.agent.keystore.lock(hash).is_ok(),
            _ => false,
        };
        if locked {
            let dropped = self.agent.grants.clear();
            info!(conn = self.id, grants_dropped = dropped, "agent locked");
            self.agent
                .withdraw_questions(Withdraw::All, "agent locked (ssh-add -x)");
        } else {
            warn!(conn = self.id, "lock failed");
        }
        status(locked)
    }

    async fn unlock(&mut self, passphrase: Passphrase<'_>) -> Reply {
        let Some(hash) = self.agent.keystore.lock_hash() else {
            return failure();
        };
        if !self.allow_key_op(KeyOp::Unlock, None).await {
            return failure();
        }
        let expected = hash.clone();
        let secret = zeroize::Zeroizing::new(passphrase.0.to_vec());
        let verified =
            tokio::task::spawn_blocking(move || keystore::verify_passphrase(&secret, &hash))
                .await
                .unwrap_or(false);
        match self.agent.keystore.finish_unlock(&expected, verified) {
            Ok(()) => {
                info!(conn = self.id, "agent unlocked");
                status(true)
            }
            Err(delay) => {
                warn!(conn = self.id, peer = %self.peer, "unlock failed: incorrect passphrase");
                // Slows guessing on this connection only.
                tokio::time::sleep(delay.min(Duration::from_secs(10))).await;
                failure()
            }
        }
    }
}

/// A key blob for log lines: its fingerprint, or that it did not parse.
fn describe_blob(blob: &[u8]) -> String {
    crate::ssh::key::PublicKey::parse(blob)
        .map(|k| k.fingerprint())
        .unwrap_or_else(|_| "(unparsable key)".into())
}
