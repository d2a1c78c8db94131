//! State shared by every connection of one running agent: keys, the policy
//! in force, known hosts, remembered approvals, the audit sink, and what
//! `status` shows about the upstream agent (never used to decide).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::{Duration, Instant};
use tokio::sync::Notify;

use tracing::{info, warn};

use crate::confirm::broker::Withdraw;
use crate::daemon::audit::AuditSink;
use crate::keys::keystore::Keystore;
use crate::policy::grants::Grants;
use crate::policy::store::PolicyStore;
use crate::trust::known_hosts::KnownHosts;

/// Settings fixed at start-up.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// `-t`: lifetime for keys added without one.
    pub(crate) default_lifetime: Option<Duration>,
    /// The uid allowed to connect besides root.
    pub(crate) owner_uid: u32,
    /// known_hosts files that name host keys (the policy may add more).
    pub(crate) known_hosts: Vec<PathBuf>,
    /// `--upstream`: the agent hopward fronts; wins over the policy's
    /// `[upstream] socket`.
    pub(crate) upstream: Option<PathBuf>,
    /// `-P`: the patterns a provider's real path must match.
    pub(crate) provider_allowlist: String,
    /// `-O allow-remote-pkcs11`: providers may be named through a
    /// forwarded agent (refused by default, as OpenSSH 9.4+).
    pub(crate) allow_remote_providers: bool,
    /// FIDO applications that may sign any data (`-O websafe-allow`);
    /// `None` with `-O no-restrict-websafe`. Others sign only SSH logins
    /// and SSHSIG signatures.
    pub(crate) websafe_allowlist: Option<String>,
    /// How long a token signature (or a PKCS#11 operation) may take.
    pub(crate) provider_timeout: Duration,
    /// Ask `ssh -G` how ssh records the policy's host names in known_hosts
    /// (the daemon does; tests in one process need not run ssh).
    pub(crate) ask_ssh_config: bool,
}

impl AgentOptions {
    /// ssh-agent's defaults for everything but the owner.
    pub fn new(owner_uid: u32) -> Self {
        AgentOptions {
            default_lifetime: None,
            owner_uid,
            known_hosts: Vec::new(),
            upstream: None,
            provider_allowlist: crate::keys::sk::DEFAULT_ALLOWED_PROVIDERS.to_string(),
            allow_remote_providers: false,
            websafe_allowlist: Some("ssh:*".to_string()),
            provider_timeout: crate::keys::sk::DEFAULT_SIGN_TIMEOUT,
            ask_ssh_config: false,
        }
    }
}

/// The other names the policy's host names may be recorded under in
/// known_hosts (ports, ssh_config), found once per policy load.
fn lookup_names(policy: &crate::policy::Policy, ask_ssh: bool) -> HashMap<String, Vec<String>> {
    crate::trust::ssh_config::lookup_names(policy.exact_names(), &policy.known_hosts_ports, ask_ssh)
}

/// The running agent.
#[derive(Debug)]
pub struct Agent {
    // The parts are private: callers say what they do through methods, so
    // a change to one part stays here.
    keystore: Keystore,
    policy: PolicyStore,
    known_hosts: KnownHosts,
    grants: Grants,
    /// Destinations asked for through each first forwarding hop, for
    /// `[forwarded] brake`.
    bursts: crate::policy::brake::Bursts,
    audit: Arc<dyn AuditSink>,
    options: AgentOptions,
    next_connection: AtomicU64,
    /// Policy reloads tried since start, counted once each has had its
    /// effect (for `status`).
    reloads: AtomicU64,
    /// One reload at a time (SIGHUP and the file watcher run on different
    /// threads), so the count and the effects stay in step.
    reloading: Mutex<()>,
    /// Open connections: their class, and a handle to cut them.
    connections: Mutex<HashMap<u64, Connection>>,
    /// How many there are, read on every reply without the lock.
    open_connections: std::sync::atomic::AtomicUsize,
    /// The panic button: refuse everything that came through a forwarded
    /// agent until undone.
    forwarded_locked: AtomicBool,
    /// Why forwarded use is locked (`hopward lock --forwarded`, `idle`,
    /// `screen locked`), for `status`.
    locked_because: Mutex<Option<String>>,
    /// A refusal was told to the desk in this lock episode (one notice per
    /// episode; unlocking starts a new one).
    locked_told: AtomicBool,
    /// The last request from this machine (a connection with no forwarding
    /// hop), for `[lock] idle`, in milliseconds after `started`: an atomic,
    /// since every request sets it. Requests through a forwarded agent do
    /// not count: a bastion must not be able to keep the agent awake.
    last_local_request: AtomicU64,
    started: std::time::Instant,
    /// Questions waiting for an answer right now.
    prompts: crate::confirm::broker::PromptBroker,
    /// The verified direct binds of local ssh processes, for ProxyJump
    /// routes (see [`crate::trust::jump`]).
    jumps: crate::trust::jump::JumpBinds,
    /// What was last learnt about the upstream agent (for `status`).
    upstream: crate::daemon::upstream::UpstreamState,
    /// Loaded PKCS#11 providers by real path, each with its helper.
    pkcs11: Mutex<HashMap<PathBuf, Arc<crate::keys::pkcs11::Pkcs11Provider>>>,
    /// How questions and notices reach the person (the desktop, or what a
    /// test gives in [`Agent::with_desk`]).
    desk: Arc<dyn crate::confirm::Desk>,
    /// Notified when a connection that used much memory has ended, so the
    /// server gives the freed memory back to the system.
    memory_freed: Notify,
}

/// What the agent knows about one open connection.
#[derive(Debug)]
struct Connection {
    class: &'static str,
    forwarded: bool,
    cut: Arc<Notify>,
    /// The fingerprint of its first hop, when that hop forwards (the
    /// bastion every later request on it comes through).
    first_hop: Option<String>,
    /// What its binds hold ([`crate::trust::binding::Chain::retained_bytes`]).
    bind_bytes: usize,
}

/// Open connections one first forwarding hop may hold. An agent forwarded
/// to a bastion opens one connection per ssh (or per agent use) running
/// there at once; a hundred parallel Ansible forks stay under it. Each
/// connection's binds hold at most
/// [`crate::trust::binding::MAX_CHAIN_BYTES`], so one bastion pins at most
/// about 16 MiB of binds.
pub(crate) const MAX_CONNECTIONS_PER_HOP: usize = 128;

/// Open connections through any forwarding hop, all bastions together.
/// Connections from this machine are not counted: they are the owner's own
/// programs, and a bastion cannot open one (its connections are bound to
/// it by this machine's ssh before it can send anything).
pub(crate) const MAX_FORWARDED_CONNECTIONS: usize = 512;

/// Which limit refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ConnectionLimit {
    PerHop,
    Forwarded,
}

impl ConnectionLimit {
    /// The audit record's reason: which limit, and its value.
    pub(crate) fn reason(self) -> String {
        match self {
            ConnectionLimit::PerHop => format!("over-{MAX_CONNECTIONS_PER_HOP}-per-first-hop"),
            ConnectionLimit::Forwarded => format!("over-{MAX_FORWARDED_CONNECTIONS}-forwarded"),
        }
    }
}

impl Agent {
    pub fn new(options: AgentOptions, policy: PolicyStore, audit: Arc<dyn AuditSink>) -> Self {
        let mut files = options.known_hosts.clone();
        files.extend(policy.current().known_hosts.iter().cloned());
        let known_hosts = KnownHosts::new(files);
        known_hosts.set_lookup_names(lookup_names(&policy.current(), options.ask_ssh_config));
        Agent {
            keystore: Keystore::new(),
            known_hosts,
            policy,
            grants: Grants::default(),
            bursts: crate::policy::brake::Bursts::new(),
            audit,
            options,
            next_connection: AtomicU64::new(1),
            reloads: AtomicU64::new(0),
            reloading: Mutex::new(()),
            connections: Mutex::new(HashMap::new()),
            open_connections: std::sync::atomic::AtomicUsize::new(0),
            forwarded_locked: AtomicBool::new(false),
            locked_because: Mutex::new(None),
            locked_told: AtomicBool::new(false),
            last_local_request: AtomicU64::new(0),
            started: std::time::Instant::now(),
            prompts: crate::confirm::broker::PromptBroker::default(),
            jumps: crate::trust::jump::JumpBinds::default(),
            upstream: crate::daemon::upstream::UpstreamState::default(),
            pkcs11: Mutex::new(HashMap::new()),
            desk: Arc::new(crate::confirm::DesktopDesk::default()),
            memory_freed: Notify::new(),
        }
    }

    /// The agent with another way to reach the person.
    #[cfg(any(test, feature = "testing"))]
    pub fn with_desk(mut self, desk: Arc<dyn crate::confirm::Desk>) -> Self {
        self.desk = desk;
        self
    }

    /// The keys held here, for the handlers that add, remove, lock and
    /// expire them (each operation is its own, under the store's lock).
    pub(crate) fn keystore(&self) -> &Keystore {
        &self.keystore
    }

    /// The key held here with this public blob, unless it expired or the
    /// agent is locked.
    pub(crate) fn key(&self, blob: &[u8]) -> Option<Arc<crate::keys::keystore::Identity>> {
        self.keystore.find(blob, Instant::now())
    }

    /// The keys held here now, in the order they were added; none while
    /// the agent is locked.
    pub(crate) fn keys_now(&self) -> Vec<Arc<crate::keys::keystore::Identity>> {
        self.keystore.list(Instant::now())
    }

    /// Adds a key (one with the same public key is replaced, as OpenSSH
    /// does); fails while the agent is locked.
    pub(crate) fn add_key(
        &self,
        identity: crate::keys::keystore::Identity,
    ) -> Result<(), crate::keys::keystore::LockError> {
        self.keystore.add(identity)
    }

    /// Whether the agent is locked with a passphrase (`ssh-add -x`).
    pub(crate) fn keys_locked(&self) -> bool {
        self.keystore.is_locked()
    }

    /// The policy in force now.
    pub(crate) fn policy_now(&self) -> Arc<crate::policy::Policy> {
        self.policy.current()
    }

    /// The policy in force now with its generation, which a reload moves
    /// on (to tell whether a decision's policy is still the one in force).
    pub(crate) fn policy_snapshot(&self) -> (u64, Arc<crate::policy::Policy>) {
        self.policy.snapshot()
    }

    /// The policy file reloads read (`None` for the built-in policy).
    pub(crate) fn policy_path(&self) -> Option<&std::path::Path> {
        self.policy.path()
    }

    /// How the last load of the policy file went.
    pub(crate) fn policy_status(&self) -> crate::policy::store::ReloadStatus {
        self.policy.status()
    }

    /// Reads the policy file as a reload would, without putting it in
    /// force (the watcher reads twice to see that a write has settled).
    pub(crate) fn read_policy_file(
        &self,
    ) -> Result<crate::policy::Policy, Vec<crate::policy::file::PolicyError>> {
        self.policy.read()
    }

    /// Whether the policy file on disk says something else than what is in
    /// force (or than the errors kept).
    pub(crate) fn policy_differs_on_disk(&self) -> bool {
        self.policy.differs_on_disk()
    }

    /// The policy store itself, for tests that put a new policy in force
    /// without a reload's other effects.
    #[cfg(test)]
    pub(crate) fn policy_store(&self) -> &PolicyStore {
        &self.policy
    }

    /// The known_hosts files and learned names that put names to hosts.
    pub(crate) fn known_hosts(&self) -> &KnownHosts {
        &self.known_hosts
    }

    /// Remembered approvals, for the enforcement that finds and adds them
    /// against the epoch its decision was made in.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// Drops every remembered approval and withdraws the open questions
    /// (a yes to one would be stored after the clear); `why` is logged.
    /// Returns how many approvals were dropped.
    pub(crate) fn forget_approvals(&self, why: &str) -> usize {
        let dropped = self.grants.clear();
        self.withdraw_questions(Withdraw::All, why);
        dropped
    }

    /// Counts this request toward `[forwarded] brake`; the burst it
    /// belongs to, if the brake catches it.
    pub(crate) fn note_burst(
        &self,
        settings: &crate::policy::brake::BrakeSettings,
        ctx: &crate::trust::context::RequestContext,
        now: Instant,
    ) -> Option<crate::policy::brake::Burst> {
        self.bursts.note(settings, ctx, now)
    }

    /// Destinations per first forwarding hop in the brake's window (for
    /// `status`).
    pub(crate) fn burst_counts(
        &self,
        settings: &crate::policy::brake::BrakeSettings,
        now: Instant,
    ) -> Vec<crate::policy::brake::HopCount> {
        self.bursts.counts(settings, now)
    }

    /// Writes one record to the audit log.
    pub(crate) fn record(&self, record: crate::daemon::audit::AuditRecord) {
        self.audit.record(record);
    }

    /// The audit sink, for what outlives a borrow of the agent (a pending
    /// decision's record, the flush at exit).
    pub(crate) fn audit_sink(&self) -> Arc<dyn AuditSink> {
        Arc::clone(&self.audit)
    }

    /// How the audit log is doing (`None` when decisions only reach the
    /// daemon log).
    pub(crate) fn audit_health(&self) -> Option<crate::daemon::audit::Health> {
        self.audit.health()
    }

    /// The settings fixed at start-up.
    pub(crate) fn options(&self) -> &AgentOptions {
        &self.options
    }

    /// The uid allowed to connect besides root.
    pub(crate) fn owner_uid(&self) -> u32 {
        self.options.owner_uid
    }

    /// How long a token signature (or a PKCS#11 operation) may take.
    pub(crate) fn provider_timeout(&self) -> Duration {
        self.options.provider_timeout
    }

    /// Asks the person through the desk, sharing the question with
    /// identical ones already open (bounded in number).
    pub(crate) async fn ask(
        &self,
        question: crate::confirm::broker::Question,
        prompt: crate::confirm::Prompt,
        settings: &crate::policy::ConfirmSettings,
    ) -> Result<crate::confirm::Answer, crate::confirm::broker::NotAsked> {
        let confirmer = self.desk.confirmer(settings);
        self.prompts
            .ask(question, confirmer, prompt, settings.timeout)
            .await
    }

    /// True at most once a minute: whether "no way to ask" is logged
    /// loudly, with how to fix it.
    pub(crate) fn should_warn_unavailable(&self) -> bool {
        self.prompts.should_warn_unavailable()
    }

    /// Questions waiting for an answer right now.
    pub(crate) fn open_prompts(&self) -> usize {
        self.prompts.open()
    }

    /// Shows the person a notice; returns at once, shown or not.
    pub(crate) fn notify(&self, summary: &'static str, body: String) {
        self.desk.notify(summary, body);
    }

    /// Remembers the verified direct bind of a local ssh `process` to
    /// `host`, and returns the jump hosts that login tunnels through
    /// (see [`crate::trust::jump`]).
    pub(crate) fn remember_direct_bind(
        &self,
        table: &dyn crate::trust::process_table::ProcessTable,
        process: crate::trust::process_table::ProcessId,
        host: &crate::trust::binding::Hop,
        now: Instant,
    ) -> Vec<crate::trust::binding::Hop> {
        let route = self.jumps.route_for(table, process, now);
        self.jumps
            .remember(table, process, host, route.clone(), now);
        route
    }

    /// The jump binds remembered now, oldest first (for `status`).
    pub(crate) fn jump_binds(
        &self,
        table: &dyn crate::trust::process_table::ProcessTable,
        now: Instant,
    ) -> Vec<crate::trust::jump::Remembered> {
        self.jumps.list(table, now)
    }

    /// Notes what a request to the upstream agent learnt: its keys, that
    /// it answered, or how it failed (for `status`).
    pub(crate) fn record_upstream(
        &self,
        outcome: Result<
            Option<&[crate::daemon::upstream::UpstreamKey]>,
            &crate::daemon::upstream::UpstreamError,
        >,
    ) {
        self.upstream.record(outcome);
    }

    /// Notes whether the upstream agent knows session-bind; true when that
    /// is news (so it is logged once, not on every connection).
    pub(crate) fn record_upstream_binds(&self, supported: bool) -> bool {
        self.upstream.record_binds(supported)
    }

    /// What was last learnt about the upstream agent (for `status`).
    pub(crate) fn upstream_health(&self) -> crate::daemon::upstream::Health {
        self.upstream.health()
    }

    fn providers(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<crate::keys::pkcs11::Pkcs11Provider>>> {
        self.pkcs11.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether the PKCS#11 provider at this real path is loaded.
    pub(crate) fn pkcs11_loaded(&self, path: &std::path::Path) -> bool {
        self.providers().contains_key(path)
    }

    pub(crate) fn set_pkcs11(
        &self,
        path: PathBuf,
        provider: Arc<crate::keys::pkcs11::Pkcs11Provider>,
    ) {
        self.providers().insert(path, provider);
    }

    pub(crate) fn take_pkcs11(
        &self,
        path: &std::path::Path,
    ) -> Option<Arc<crate::keys::pkcs11::Pkcs11Provider>> {
        self.providers().remove(path)
    }

    fn connections(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Connection>> {
        self.connections.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Registers a new connection; the returned handle is notified when the
    /// connection must be cut.
    pub(crate) fn register(&self, id: u64) -> Arc<Notify> {
        let cut = Arc::new(Notify::new());
        let earlier = self.connections().insert(
            id,
            Connection {
                class: "local",
                forwarded: false,
                cut: Arc::clone(&cut),
                first_hop: None,
                bind_bytes: 0,
            },
        );
        if earlier.is_none() {
            self.open_connections
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        cut
    }

    pub(crate) fn unregister(&self, id: u64) {
        if self.connections().remove(&id).is_some() {
            self.open_connections
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
        }
    }

    /// How many connections are open now.
    pub(crate) fn open_connections(&self) -> usize {
        self.open_connections
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records a connection's class, and what its binds hold, after a
    /// session-bind.
    pub(crate) fn set_class(
        &self,
        id: u64,
        class: &'static str,
        forwarded: bool,
        bind_bytes: usize,
    ) {
        if let Some(c) = self.connections().get_mut(&id) {
            c.class = class;
            c.forwarded = forwarded;
            c.bind_bytes = bind_bytes;
        }
    }

    /// Counts connection `id` as one through the first forwarding hop
    /// `fingerprint`, unless that hop, or all forwarded connections
    /// together, already hold their limit. Checked and counted under one
    /// lock, so connections racing in cannot all slip under it.
    pub(crate) fn claim_first_hop(
        &self,
        id: u64,
        fingerprint: &str,
    ) -> Result<(), ConnectionLimit> {
        let mut connections = self.connections();
        let (mut same_hop, mut forwarded) = (0, 0);
        for c in connections.values() {
            if let Some(hop) = &c.first_hop {
                forwarded += 1;
                same_hop += usize::from(hop == fingerprint);
            }
        }
        if same_hop >= MAX_CONNECTIONS_PER_HOP {
            return Err(ConnectionLimit::PerHop);
        }
        if forwarded >= MAX_FORWARDED_CONNECTIONS {
            return Err(ConnectionLimit::Forwarded);
        }
        if let Some(c) = connections.get_mut(&id) {
            c.first_hop = Some(fingerprint.to_string());
        }
        Ok(())
    }

    /// Says that a connection which used much memory has ended and freed it.
    /// Notices coalesce: many ends while memory is being given back ask for
    /// one more round.
    pub(crate) fn memory_freed(&self) {
        self.memory_freed.notify_one();
    }

    /// Waits until [`Agent::memory_freed`] is called.
    pub(crate) async fn wait_memory_freed(&self) {
        self.memory_freed.notified().await;
    }

    /// What the binds of all open connections hold, in bytes (`status`).
    pub(crate) fn bind_bytes(&self) -> usize {
        self.connections().values().map(|c| c.bind_bytes).sum()
    }

    /// Open connections counted by class.
    pub(crate) fn connection_classes(&self) -> Vec<(&'static str, usize)> {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for c in self.connections().values() {
            match counts.iter_mut().find(|(k, _)| *k == c.class) {
                Some((_, n)) => *n += 1,
                None => counts.push((c.class, 1)),
            }
        }
        counts.sort();
        counts
    }

    /// The upstream agent's socket and how long a request to it may take:
    /// `--upstream`, else the policy in force (so a reload can change it).
    pub(crate) fn upstream(&self) -> Option<(PathBuf, Duration)> {
        let policy = self.policy.current();
        let socket = self
            .options
            .upstream
            .clone()
            .or_else(|| policy.upstream.socket.clone())?;
        Some((socket, policy.upstream.timeout))
    }

    pub(crate) fn forwarded_locked(&self) -> bool {
        self.forwarded_locked.load(Ordering::SeqCst)
    }

    /// The panic button: cuts every connection that came through a
    /// forwarded agent, drops remembered approvals, and refuses forwarded
    /// requests until [`Agent::unlock_forwarded`]. Returns how many
    /// connections were cut.
    pub fn lock_forwarded(&self) -> usize {
        self.lock_forwarded_because("hopward lock --forwarded")
    }

    /// [`Agent::lock_forwarded`], saying why (shown by `status`).
    pub(crate) fn lock_forwarded_because(&self, why: &str) -> usize {
        *self
            .locked_because
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(why.to_string());
        // Locking what was unlocked starts a new episode, with a notice of
        // its own; pressing the button again while locked does not.
        if !self.forwarded_locked.load(Ordering::SeqCst) {
            self.locked_told.store(false, Ordering::SeqCst);
        }
        self.forwarded_locked.store(true, Ordering::SeqCst);
        self.forget_approvals(why);
        let cut: Vec<Arc<Notify>> = self
            .connections()
            .values()
            .filter(|c| c.forwarded)
            .map(|c| Arc::clone(&c.cut))
            .collect();
        for c in &cut {
            c.notify_one();
        }
        info!(
            cut = cut.len(),
            "forwarded use locked ({why}): forwarded connections cut, approvals dropped"
        );
        cut.len()
    }

    pub(crate) fn unlock_forwarded(&self) {
        *self
            .locked_because
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = None;
        // Unlocking is the person at the desk: the idle clock starts again.
        self.touch_local();
        self.forwarded_locked.store(false, Ordering::SeqCst);
        info!("forwarded use unlocked");
    }

    /// Whether this is the first refusal of the current lock episode (the
    /// one to tell the desk about); true once per episode.
    pub(crate) fn first_refusal_while_locked(&self) -> bool {
        !self.locked_told.swap(true, Ordering::SeqCst)
    }

    /// SIGUSR1, as in ssh-agent 10.0: every key goes (locked or not, as
    /// ssh-agent does) and, since an approval was given for keys that are no
    /// longer here, every remembered approval with them. Connections stay
    /// open and the agent keeps serving. Returns (keys, approvals) dropped.
    pub fn drop_keys_and_approvals(&self) -> (usize, usize) {
        let keys = self.keystore.clear();
        let grants = self.forget_approvals("SIGUSR1");
        info!(
            keys,
            grants_dropped = grants,
            "SIGUSR1: removed every key and remembered approval"
        );
        (keys, grants)
    }

    /// Withdraws the open questions `which` names, after what they rested
    /// on changed (`why`): their prompts close, and each request they
    /// held is denied with the reason the change gives
    /// ([`crate::daemon::authorize`] checks again after every answer, so
    /// this is to stop asking, not what makes the deny).
    pub(crate) fn withdraw_questions(&self, which: Withdraw<'_>, why: &str) {
        let withdrawn = self.prompts.withdraw(which);
        if withdrawn > 0 {
            info!(withdrawn, "open prompts withdrawn: {why}");
        }
    }

    /// Why forwarded use is locked, if it is.
    pub(crate) fn locked_because(&self) -> Option<String> {
        self.locked_because
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Records a request from this machine (for `[lock] idle`).
    pub(crate) fn touch_local(&self) {
        let ms = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_local_request.fetch_max(ms, Ordering::Relaxed);
    }

    /// When this machine last sent a request.
    pub(crate) fn last_local_request(&self) -> std::time::Instant {
        self.started + Duration::from_millis(self.last_local_request.load(Ordering::Relaxed))
    }

    /// A number that names a connection in log lines.
    pub(crate) fn connection_id(&self) -> u64 {
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Policy reloads tried since start, whatever came of them.
    pub(crate) fn reloads(&self) -> u64 {
        self.reloads.load(Ordering::Acquire)
    }

    /// Re-reads the policy file; on error the last good policy stays and the
    /// errors are logged. A reload that changed the policy drops remembered
    /// approvals; one that read the same text keeps them.
    pub fn reload_policy(&self) {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        self.apply_reload(self.policy.read());
        // After the reload has had its effect: whoever sees the new count
        // sees the policy, names and approvals it left.
        self.reloads.fetch_add(1, Ordering::Release);
    }

    /// Puts in force what the policy watcher read once the file's write had
    /// finished and settled (see [`crate::daemon::policy_watch`]); as
    /// [`Agent::reload_policy`] otherwise.
    pub(crate) fn adopt_policy(
        &self,
        loaded: Result<crate::policy::Policy, Vec<crate::policy::file::PolicyError>>,
    ) {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(|e| e.into_inner());
        self.apply_reload(loaded);
        self.reloads.fetch_add(1, Ordering::Release);
    }

    fn apply_reload(
        &self,
        loaded: Result<crate::policy::Policy, Vec<crate::policy::file::PolicyError>>,
    ) {
        match self.policy.adopt(loaded) {
            Ok(reloaded) if !reloaded.changed => {
                info!(
                    policy = ?self.policy.path(),
                    "policy reloaded: unchanged, remembered approvals kept"
                );
            }
            Ok(reloaded) => {
                let policy = reloaded.policy;
                let mut files = self.options.known_hosts.clone();
                files.extend(policy.known_hosts.iter().cloned());
                self.known_hosts.set_files(files);
                self.known_hosts
                    .set_lookup_names(lookup_names(&policy, self.options.ask_ssh_config));
                let dropped = self.forget_approvals("policy reloaded");
                info!(
                    policy = ?self.policy.path(),
                    rules = policy.rules.len(),
                    grants_dropped = dropped,
                    "policy reloaded"
                );
            }
            Err(errors) => {
                for e in &errors {
                    warn!("policy reload failed, keeping the last good policy: {e}");
                }
            }
        }
    }
}
