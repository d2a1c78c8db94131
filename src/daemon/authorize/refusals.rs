//! Refusals no decision made (a session-bind, a provider, a connection
//! limit, forwarded use locked), each recorded once with its reason.

use crate::daemon::agent::Agent;
use crate::daemon::audit::{AuditRecord, Event, Reason};

use crate::trust::binding::Chain;
use crate::trust::context::{HopView, RequestClass};

/// Who a listing is for, or a refusal no decision made (a bind, a
/// provider): the connection, its chain (with names) and class.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Lister<'a> {
    pub(crate) conn: u64,
    pub(crate) chain: &'a Chain,
    pub(crate) hops: &'a [HopView],
    pub(crate) class: RequestClass,
    /// Read from `/proc` only if a refusal is recorded: a listing needs
    /// nothing about the process.
    pub(crate) peer: &'a crate::trust::process::Requester,
}

/// The one record of a refusal made outside [`authorize`](super::authorize): `event` by
/// `who`, `deny`, with its rule and reason.
pub(super) fn record_refusal(
    agent: &Agent,
    who: &Lister<'_>,
    event: Event,
    key: Option<(&str, &str)>,
    (rule, reason): (&str, Reason),
    provider: Option<String>,
) {
    let mut record = AuditRecord::key_event(event, key, who.class, who.hops, who.peer, who.conn)
        .decided(false, rule, reason);
    record.provider = provider;
    agent.record(record);
}

/// A key add refused for the provider it names (ssh-agent's checks: none
/// through a forwarded agent, the real path on the `-P` allow-list): an
/// `add` record, `deny`, the reason naming the check, `provider` the name
/// as requested (its real path for `provider-not-allowed`; cleaned). A
/// bastion trying to have the agent load a library of its choosing is
/// what this records.
pub(crate) fn provider_refused(
    agent: &Agent,
    who: &Lister<'_>,
    key: Option<(&str, &str)>,
    refusal: &crate::keys::sk::ProviderRefusal,
) {
    let reason = ("provider", Reason::Provider(refusal.clone()));
    record_refusal(
        agent,
        who,
        Event::Add,
        key,
        reason,
        Some(refusal.shown().to_string()),
    );
}

/// A session-bind hopward refused: the connection is poisoned from now on
/// (`who` has the class `poisoned`). Audited (`bind`, `deny`, the reason
/// names what failed) because it is what a forged or replayed bind from a
/// hostile hop looks like. Only the bind that poisons is audited; the
/// caller leaves out later binds on a poisoned connection, so one
/// connection adds at most one record.
pub(crate) fn bind_refused(
    agent: &Agent,
    who: &Lister<'_>,
    error: &crate::trust::binding::BindError,
) {
    let reason = ("session-bind", Reason::Bind(error.clone()));
    record_refusal(agent, who, Event::Bind, None, reason, None);
}

/// A connection refused because its first forwarding hop, or all
/// forwarded connections together, hold their limit of open connections:
/// a `connection` record, `deny`, rule `connection-limit`, the reason
/// naming the limit and its value, the chain the hop. A bastion opening
/// connection after connection is what this records.
pub(crate) fn connection_refused(
    agent: &Agent,
    who: &Lister<'_>,
    limit: crate::daemon::agent::ConnectionLimit,
) {
    let reason = ("connection-limit", limit_reason(limit));
    record_refusal(agent, who, Event::Connection, None, reason, None);
}

/// The reason a connection limit gives, with the limit's value.
fn limit_reason(limit: crate::daemon::agent::ConnectionLimit) -> Reason {
    use crate::daemon::agent::{
        ConnectionLimit, MAX_CONNECTIONS_PER_HOP, MAX_FORWARDED_CONNECTIONS,
    };
    match limit {
        ConnectionLimit::PerHop => Reason::OverPerFirstHop(MAX_CONNECTIONS_PER_HOP),
        ConnectionLimit::Forwarded => Reason::OverForwarded(MAX_FORWARDED_CONNECTIONS),
    }
}

/// A request refused because forwarded use is locked (`hopward lock
/// --forwarded`, `[lock] idle`, the screen lock): `event` by `who`,
/// `deny`, rule and reason `forwarded-locked`. The first refusal of a
/// lock episode also tells the person at the desk, once: a locked agent
/// that silently refuses a login made from elsewhere leaves them guessing.
pub(crate) fn forwarded_locked_refused(
    agent: &Agent,
    who: &Lister<'_>,
    event: Event,
    key: Option<(&str, &str)>,
) {
    let reason = ("forwarded-locked", Reason::ForwardedLocked);
    record_refusal(agent, who, event, key, reason, None);
    if agent.first_refusal_while_locked() {
        let through = who
            .hops
            .first()
            .map(|hop| {
                hop.names
                    .first()
                    .map_or_else(|| hop.fingerprint.clone(), |n| crate::text::clean(n, 80))
            })
            .unwrap_or_else(|| "a forwarded agent".into());
        let why = agent
            .locked_because()
            .unwrap_or_else(|| "hopward lock --forwarded".into());
        agent.notify(
            "hopward: forwarded use is locked",
            format!(
                "A request through {through} was refused: forwarded use is locked ({}).\n\
                 Undo with: hopward unlock --forwarded\n\
                 Further refusals until then are in the audit log (hopward log --decision deny).",
                crate::text::clean(&why, 120)
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::daemon::agent::ConnectionLimit;

    #[test]
    fn a_connection_limit_reason_is_the_one_the_daemon_log_gives() {
        for limit in [ConnectionLimit::PerHop, ConnectionLimit::Forwarded] {
            assert_eq!(limit_reason(limit).to_string(), limit.reason());
        }
    }
}
