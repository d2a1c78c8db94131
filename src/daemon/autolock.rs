//! `[lock]`: forwarded use locks by itself after `idle` without a request
//! from this machine, and when the session's screen locks.
//!
//! What locks: forwarded use, as `hopward lock --forwarded` does (forwarded
//! connections cut, remembered approvals dropped, forwarded requests refused
//! until `hopward unlock --forwarded`). Local use keeps working: a local
//! program running as you can do anything you can anyway, while root on a
//! bastion is exactly who should lose the agent while you are away.
//!
//! Invariants: only requests from this machine reset the idle clock (a
//! bastion cannot keep the agent awake): a request counts once answered on
//! a connection still local by then, and a session-bind never counts
//! (`daemon/session.rs`); a screen-lock signal counts only
//! from the current owner of the screensaver's well-known name on the
//! session bus, or from logind on the system bus for a session of this
//! user; signals only ever lock, never unlock, so a forged one can at worst
//! lock forwarded use.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt as _;
use tracing::{debug, info, warn};

use crate::daemon::agent::Agent;

/// The screensaver interfaces whose `ActiveChanged(true)` means the screen
/// locked, each owned by the well-known name of the same spelling.
pub(crate) const SCREENSAVERS: [&str; 2] = ["org.freedesktop.ScreenSaver", "org.gnome.ScreenSaver"];

/// How often the idle clock and the `[lock]` settings are looked at.
const TICK: Duration = Duration::from_millis(500);

/// Starts the idle clock and, while `[lock] on_screen_lock` is set, the
/// screen-lock listeners. Must be called inside the runtime.
pub(crate) fn start(agent: &Arc<Agent>) {
    let agent = Arc::clone(agent);
    tokio::spawn(async move {
        let listening = Arc::new(AtomicBool::new(false));
        let mut last_attempt: Option<Instant> = None;
        loop {
            tokio::time::sleep(TICK).await;
            let settings = agent.policy_now().lock.clone();
            if let Some(idle) = settings.idle {
                let quiet = agent.last_local_request().elapsed();
                if quiet >= idle && !agent.forwarded_locked() {
                    agent.lock_forwarded_because(&format!(
                        "no request from this machine for {}",
                        crate::duration::format(idle)
                    ));
                }
            }
            // A bus that is not there is tried again now and then, not on
            // every tick.
            let retry = last_attempt.is_none_or(|t| t.elapsed() >= Duration::from_secs(30));
            if settings.on_screen_lock && !listening.load(Ordering::SeqCst) && retry {
                last_attempt = Some(Instant::now());
                listening.store(true, Ordering::SeqCst);
                let (agent, listening) = (Arc::clone(&agent), Arc::clone(&listening));
                tokio::spawn(async move {
                    let session = listen_session(&agent);
                    let system = listen_logind(&agent);
                    let (session, system) = tokio::join!(session, system);
                    for (bus, result) in [("session", session), ("system", system)] {
                        if let Err(e) = result {
                            info!("not listening for screen locks on the {bus} bus: {e}");
                        }
                    }
                    listening.store(false, Ordering::SeqCst);
                });
            }
        }
    });
}

fn lock_for_screen(agent: &Agent, source: &str) {
    if !agent.policy_now().lock.on_screen_lock {
        return;
    }
    if !agent.forwarded_locked() {
        agent.lock_forwarded_because(&format!("the screen locked ({source})"));
    }
}

/// The unique name that owns `name` on `conn`'s bus now.
async fn owner_of(conn: &zbus::Connection, name: &str) -> Option<String> {
    conn.call_method(
        Some("org.freedesktop.DBus"),
        "/org/freedesktop/DBus",
        Some("org.freedesktop.DBus"),
        "GetNameOwner",
        &(name,),
    )
    .await
    .ok()?
    .body()
    .deserialize::<String>()
    .ok()
}

/// `ActiveChanged(true)` from a screensaver on the session bus.
async fn listen_session(agent: &Arc<Agent>) -> Result<(), String> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none_or(|a| a.is_empty())
        && std::env::var_os("XDG_RUNTIME_DIR").is_none()
    {
        return Err("no session bus (DBUS_SESSION_BUS_ADDRESS is not set)".into());
    }
    let conn = tokio::time::timeout(Duration::from_secs(5), zbus::Connection::session())
        .await
        .map_err(|_| "the session bus did not answer".to_string())?
        .map_err(|e| format!("cannot reach the session bus: {e}"))?;
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .member("ActiveChanged")
        .map(|b| b.build())
        .map_err(|e| format!("match rule: {e}"))?;
    let mut signals = zbus::MessageStream::for_match_rule(rule, &conn, Some(16))
        .await
        .map_err(|e| format!("cannot listen for ActiveChanged: {e}"))?;
    info!("listening for screen locks on the session bus");
    while let Some(Ok(msg)) = signals.next().await {
        let header = msg.header();
        let Some(interface) = header.interface().map(|i| i.to_string()) else {
            continue;
        };
        if !SCREENSAVERS.contains(&interface.as_str()) {
            continue;
        }
        let Ok(active) = msg.body().deserialize::<bool>() else {
            continue;
        };
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        // The real screensaver owns the well-known name of its interface;
        // anyone else on the bus can send the same signal.
        if owner_of(&conn, &interface).await.as_deref() != Some(sender.as_str()) {
            warn!(
                "ignored a screen-lock signal ({interface}.ActiveChanged) from {}, which does not own {interface}",
                crate::text::clean(&sender, 64)
            );
            continue;
        }
        debug!("{interface}.ActiveChanged({active}) from {sender}");
        if active {
            lock_for_screen(agent, &interface);
        }
    }
    Err("the session bus connection ended".into())
}

/// logind's `Lock` for a session of this user, on the system bus.
async fn listen_logind(agent: &Arc<Agent>) -> Result<(), String> {
    const LOGIND: &str = "org.freedesktop.login1";
    const SESSION: &str = "org.freedesktop.login1.Session";
    let conn = tokio::time::timeout(Duration::from_secs(5), zbus::Connection::system())
        .await
        .map_err(|_| "the system bus did not answer".to_string())?
        .map_err(|e| format!("cannot reach the system bus: {e}"))?;
    // The sender is checked below against logind's unique name, rather
    // than named in the rule.
    let rule = zbus::MatchRule::builder()
        .msg_type(zbus::message::Type::Signal)
        .interface(SESSION)
        .and_then(|b| b.member("Lock"))
        .map(|b| b.build())
        .map_err(|e| format!("match rule: {e}"))?;
    let mut signals = zbus::MessageStream::for_match_rule(rule, &conn, Some(16))
        .await
        .map_err(|e| format!("cannot listen for logind's Lock: {e}"))?;
    info!("listening for screen locks from logind");
    let me = crate::sys::effective_uid();
    while let Some(Ok(msg)) = signals.next().await {
        let header = msg.header();
        let sender = header.sender().map(|s| s.to_string()).unwrap_or_default();
        if owner_of(&conn, LOGIND).await.as_deref() != Some(sender.as_str()) {
            continue;
        }
        let Some(path) = header.path().map(|p| p.to_string()) else {
            continue;
        };
        // Only a session of this user: logind locks every user's sessions
        // with the same signal name.
        let user = conn
            .call_method(
                Some(LOGIND),
                path.as_str(),
                Some("org.freedesktop.DBus.Properties"),
                "Get",
                &(SESSION, "User"),
            )
            .await
            .ok()
            .and_then(|reply| {
                reply
                    .body()
                    .deserialize::<zbus::zvariant::OwnedValue>()
                    .ok()
            })
            .and_then(|v| <(u32, zbus::zvariant::OwnedObjectPath)>::try_from(v).ok())
            .map(|(uid, _)| uid);
        if user == Some(me) {
            lock_for_screen(agent, "logind");
        }
    }
    Err("the system bus connection ended".into())
}
