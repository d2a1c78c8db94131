//! Desktop notifications (freedesktop.org `org.freedesktop.Notifications`)
//! with Allow / Deny (and "Allow for <duration>") actions, over zbus.
//!
//! Invariants: an answer counts only if it comes from the notification
//! server's unique bus name on its object path (the match rule names the
//! sender, and the sender is checked again), so no other bus client can
//! answer; the server must advertise the `actions` capability; the
//! notification is closed when the question times out or is withdrawn;
//! the body is markup-escaped for a server that reads markup
//! (`body-markup`) and sent as it is to one that shows text as text, so
//! text from outside can neither add markup nor show as `&gt;`.

use std::collections::HashMap;
use std::time::Duration;

use futures_util::StreamExt as _;
use zbus::Connection;
use zbus::zvariant::Value;

use super::{Answer, AnswerFuture, Confirmer, Prompt};

const NAME: &str = "org.freedesktop.Notifications";
const PATH: &str = "/org/freedesktop/Notifications";

const ALLOW: &str = "allow";
const ALLOW_REMEMBER: &str = "allow-remember";
const DENY: &str = "deny";

/// Asks through the desktop's notification server.
#[derive(Debug, Default, Clone)]
pub(crate) struct DesktopConfirmer;

/// A connection to the session bus and the notification server's unique
/// name, if it can show actions.
pub(crate) async fn probe() -> Result<(Connection, String), String> {
    let server = probe_server().await?;
    Ok((server.conn, server.owner))
}

/// The notification server found on the session bus.
struct Server {
    conn: Connection,
    owner: String,
    /// It reads the body as markup (`body-markup`).
    markup: bool,
}

/// [`probe`], also saying whether the server reads markup.
async fn probe_server() -> Result<Server, String> {
    let (conn, owner) = connect().await?;
    let caps = capabilities(&conn, &owner).await?;
    if !caps.iter().any(|c| c == "actions") {
        return Err(
            "the notification server cannot show buttons (no \"actions\" capability)".into(),
        );
    }
    let markup = caps.iter().any(|c| c == "body-markup");
    Ok(Server {
        conn,
        owner,
        markup,
    })
}

/// The server's `GetCapabilities`.
async fn capabilities(conn: &Connection, owner: &str) -> Result<Vec<String>, String> {
    conn.call_method(Some(owner), PATH, Some(NAME), "GetCapabilities", &())
        .await
        .map_err(|e| format!("GetCapabilities: {e}"))?
        .body()
        .deserialize()
        .map_err(|e| format!("GetCapabilities: {e}"))
}

/// A connection to the session bus and the notification server's unique
/// name (any server: a notice needs no buttons).
async fn connect() -> Result<(Connection, String), String> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_none_or(|a| a.is_empty())
        && std::env::var_os("XDG_RUNTIME_DIR").is_none()
    {
        return Err("no session bus (DBUS_SESSION_BUS_ADDRESS is not set)".into());
    }
    let conn = tokio::time::timeout(Duration::from_secs(3), Connection::session())
        .await
        .map_err(|_| "the session bus did not answer".to_string())?
        .map_err(|e| format!("cannot reach the session bus: {e}"))?;
    let owner: String = conn
        .call_method(
            Some("org.freedesktop.DBus"),
            "/org/freedesktop/DBus",
            Some("org.freedesktop.DBus"),
            "GetNameOwner",
            &(NAME,),
        )
        .await
        .map_err(|_| "no notification server on the session bus".to_string())?
        .body()
        .deserialize()
        .map_err(|e| format!("GetNameOwner: {e}"))?;
    Ok((conn, owner))
}

/// The body as the server should get it: escaped for a server that reads
/// markup, so nothing from outside (a key comment, a user or host name)
/// becomes markup; as it is for one that shows text as text, where
/// `&gt;` would show literally. (Control characters are cleaned before.)
fn body_for(text: &str, markup: bool) -> String {
    if markup {
        text.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
    } else {
        text.to_string()
    }
}

fn label(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 && s % 3600 == 0 {
        format!("{}h", s / 3600)
    } else if s >= 60 && s % 60 == 0 {
        format!("{}m", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Closes the notification if the question ends without an answer (timeout,
/// or the client went away and the future was dropped).
struct CloseOnDrop {
    conn: Connection,
    owner: String,
    id: u32,
    armed: bool,
}

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (conn, owner, id) = (self.conn.clone(), self.owner.clone(), self.id);
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = conn
                    .call_method(
                        Some(owner.as_str()),
                        PATH,
                        Some(NAME),
                        "CloseNotification",
                        &(id,),
                    )
                    .await;
            });
        }
    }
}

/// What to show.
struct Notification<'a> {
    icon: &'a str,
    summary: &'a str,
    body: &'a str,
    actions: Vec<&'a str>,
    hints: HashMap<&'a str, Value<'a>>,
    expire_ms: i32,
}

/// `Notify`: shows a notification and returns its id; `markup`: the
/// server reads the body as markup.
async fn show(
    conn: &Connection,
    owner: &str,
    markup: bool,
    n: Notification<'_>,
) -> zbus::Result<u32> {
    let args = (
        "hopward",
        0u32,
        n.icon,
        n.summary,
        body_for(n.body, markup),
        n.actions,
        n.hints,
        n.expire_ms,
    );
    conn.call_method(Some(owner), PATH, Some(NAME), "Notify", &args)
        .await?
        .body()
        .deserialize()
}

/// Shows a notification without buttons and waits for nothing but the
/// server's receipt; says why when it could not be shown.
pub(crate) async fn tell(summary: &str, body: &str) -> Result<(), String> {
    let (conn, owner) = tokio::time::timeout(Duration::from_secs(5), connect())
        .await
        .map_err(|_| "the session bus did not answer".to_string())??;
    // A server that does not say what it reads gets escaped text: `&gt;`
    // on the screen is a nuisance, markup from outside could mislead.
    let markup = tokio::time::timeout(Duration::from_secs(5), capabilities(&conn, &owner))
        .await
        .map_or(true, |caps| {
            caps.map_or(true, |c| c.iter().any(|c| c == "body-markup"))
        });
    let note = Notification {
        icon: "dialog-information",
        summary,
        body,
        actions: Vec::new(),
        hints: HashMap::new(),
        expire_ms: 10_000,
    };
    tokio::time::timeout(Duration::from_secs(5), show(&conn, &owner, markup, note))
        .await
        .map_err(|_| "the notification server did not answer".to_string())?
        .map(|_| ())
        .map_err(|e| format!("Notify: {e}"))
}

impl DesktopConfirmer {
    async fn ask(&self, prompt: &Prompt, timeout: Duration) -> Answer {
        // Chosen by the policy, the desktop is the way to ask: no bus or no
        // notification server is this confirmer failing (`auto` probes
        // first and tries the next way instead).
        let Server {
            conn,
            owner,
            markup,
        } = match probe_server().await {
            Ok(found) => found,
            Err(why) => return Answer::Failed(why),
        };
        // Subscribe before showing the notification, so no answer is missed,
        // and only to signals from the server's unique name on its path.
        let rule = zbus::MatchRule::builder()
            .msg_type(zbus::message::Type::Signal)
            .sender(owner.as_str())
            .and_then(|b| b.path(PATH))
            .and_then(|b| b.interface(NAME))
            .map(|b| b.build());
        let rule = match rule {
            Ok(rule) => rule,
            Err(e) => return Answer::Failed(format!("match rule: {e}")),
        };
        let mut signals = match zbus::MessageStream::for_match_rule(rule, &conn, Some(16)).await {
            Ok(s) => s,
            Err(e) => return Answer::Failed(format!("cannot listen for answers: {e}")),
        };
        let mut actions = vec![ALLOW, "Allow"];
        let remember_label = prompt.remember.map(|d| format!("Allow for {}", label(d)));
        if let Some(l) = &remember_label {
            actions.extend([ALLOW_REMEMBER, l.as_str()]);
        }
        actions.extend([DENY, "Deny"]);
        let mut hints: HashMap<&str, Value<'_>> = HashMap::new();
        hints.insert("urgency", Value::U8(2));
        hints.insert("category", Value::from("device"));
        let summary = if prompt.forwarded {
            "hopward: forwarded agent request"
        } else {
            "hopward: allow this key?"
        };
        let expire = i32::try_from(timeout.as_millis()).unwrap_or(i32::MAX);
        let text = prompt.text();
        let note = Notification {
            icon: "dialog-password",
            summary,
            body: &text,
            actions,
            hints,
            expire_ms: expire,
        };
        let shown = show(&conn, &owner, markup, note).await;
        let id = match shown {
            Ok(id) => id,
            Err(e) => return Answer::Failed(format!("Notify: {e}")),
        };
        let mut guard = CloseOnDrop {
            conn: conn.clone(),
            owner: owner.clone(),
            id,
            armed: true,
        };
        let wait = async {
            while let Some(Ok(msg)) = signals.next().await {
                let header = msg.header();
                // The match rule already names the sender; check anyway.
                if header.sender().map(|s| s.as_str()) != Some(owner.as_str()) {
                    continue;
                }
                match header.member().map(|m| m.as_str()) {
                    Some("ActionInvoked") => {
                        let Ok((nid, action)) = msg.body().deserialize::<(u32, String)>() else {
                            continue;
                        };
                        if nid != id {
                            continue;
                        }
                        return match action.as_str() {
                            ALLOW => Answer::AllowedOnce,
                            ALLOW_REMEMBER => Answer::AllowedRemember,
                            _ => Answer::Refused,
                        };
                    }
                    // Dismissed without an answer.
                    Some("NotificationClosed")
                        if msg
                            .body()
                            .deserialize::<(u32, u32)>()
                            .is_ok_and(|(nid, _)| nid == id) =>
                    {
                        return Answer::Refused;
                    }
                    _ => {}
                }
            }
            Answer::Failed("the session bus connection ended".into())
        };
        let answer = tokio::time::timeout(timeout, wait)
            .await
            .unwrap_or(Answer::TimedOut);
        // Answered (or dismissed) notifications are gone already; anything
        // else is closed by the guard.
        guard.armed = matches!(answer, Answer::TimedOut | Answer::Failed(_));
        answer
    }
}

impl Confirmer for DesktopConfirmer {
    fn confirm<'a>(&'a self, prompt: &'a Prompt, timeout: Duration) -> AnswerFuture<'a> {
        Box::pin(self.ask(prompt, timeout))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_body_is_escaped_only_for_a_server_that_reads_markup() {
        let text = "Chain: bastion (fwd) > target (auth)\nKey: \"<b>x</b> & <a href=\"u\">\"";
        assert_eq!(body_for(text, false), text, "shown as text, as it is");
        let escaped = body_for(text, true);
        assert_eq!(
            escaped,
            "Chain: bastion (fwd) &gt; target (auth)\nKey: \"&lt;b&gt;x&lt;/b&gt; &amp; \
             &lt;a href=\"u\"&gt;\""
        );
        // Nothing from outside is left that a markup reader would take as
        // a tag or an entity of its own.
        assert!(!escaped.contains('<') && !escaped.contains('>'));
        assert!(
            !escaped
                .replace("&amp;", "")
                .replace("&lt;", "")
                .replace("&gt;", "")
                .contains('&')
        );
    }
}
