//! A test notification server on a real session bus: `dbus-run-session`
//! starts the bus; this serves `org.freedesktop.Notifications` on it with
//! zbus and answers each notification as told.

use std::collections::HashMap;
use std::io::BufRead as _;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use zbus::zvariant::OwnedValue;

const PATH: &str = "/org/freedesktop/Notifications";
const IFACE: &str = "org.freedesktop.Notifications";

/// How the server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Allow,
    AllowRemember,
    Deny,
    Dismiss,
    Silent,
}

#[derive(Debug, Clone)]
pub struct Shown {
    pub id: u32,
    pub summary: String,
    pub body: String,
    pub actions: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Record {
    pub shown: Vec<Shown>,
    pub closed: Vec<u32>,
}

struct Server {
    mode: Arc<Mutex<Mode>>,
    record: Arc<Mutex<Record>>,
    next: Mutex<u32>,
    conn: Arc<std::sync::OnceLock<zbus::Connection>>,
    delay: Duration,
    /// Advertise `body-markup`, as GNOME Shell, KDE, dunst and mako do.
    markup: bool,
}

#[zbus::interface(name = "org.freedesktop.Notifications")]
impl Server {
    fn get_capabilities(&self) -> Vec<String> {
        let mut caps = vec!["actions".to_string(), "body".to_string()];
        if self.markup {
            caps.push("body-markup".into());
        }
        caps
    }

    fn get_server_information(&self) -> (String, String, String, String) {
        (
            "hopward-test".into(),
            "hopward".into(),
            "1".into(),
            "1.2".into(),
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn notify(
        &self,
        _app_name: String,
        _replaces_id: u32,
        _app_icon: String,
        summary: String,
        body: String,
        actions: Vec<String>,
        _hints: HashMap<String, OwnedValue>,
        _expire_timeout: i32,
    ) -> u32 {
        let id = {
            let mut n = self.next.lock().unwrap();
            *n += 1;
            *n
        };
        let has_actions = !actions.is_empty();
        self.record.lock().unwrap().shown.push(Shown {
            id,
            summary,
            body,
            actions,
        });
        let mode = *self.mode.lock().unwrap();
        let conn = self.conn.get().cloned();
        let delay = self.delay;
        if let (Some(conn), true) = (conn, has_actions) {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                let _ = match mode {
                    Mode::Allow => {
                        conn.emit_signal(None::<&str>, PATH, IFACE, "ActionInvoked", &(id, "allow"))
                            .await
                    }
                    Mode::AllowRemember => {
                        conn.emit_signal(
                            None::<&str>,
                            PATH,
                            IFACE,
                            "ActionInvoked",
                            &(id, "allow-remember"),
                        )
                        .await
                    }
                    Mode::Deny => {
                        conn.emit_signal(None::<&str>, PATH, IFACE, "ActionInvoked", &(id, "deny"))
                            .await
                    }
                    Mode::Dismiss => {
                        conn.emit_signal(
                            None::<&str>,
                            PATH,
                            IFACE,
                            "NotificationClosed",
                            &(id, 2u32),
                        )
                        .await
                    }
                    Mode::Silent => Ok(()),
                };
            });
        }
        id
    }

    fn close_notification(&self, id: u32) {
        self.record.lock().unwrap().closed.push(id);
    }
}

/// A session bus from `dbus-run-session`, optionally with the notifier.
pub struct Bus {
    child: Child,
    pub address: String,
    pub mode: Arc<Mutex<Mode>>,
    pub record: Arc<Mutex<Record>>,
    runtime: Option<tokio::runtime::Runtime>,
    _conn: Option<zbus::Connection>,
}

impl Drop for Bus {
    fn drop(&mut self) {
        // dbus-run-session ends with its child; the child is `sleep` in our
        // process group.
        let _ = Command::new("kill")
            .arg("--")
            .arg(format!("-{}", self.child.id()))
            .status();
        let _ = self.child.wait();
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

impl Bus {
    /// A bus with no notification server.
    pub fn bare() -> Bus {
        use std::os::unix::process::CommandExt as _;
        assert!(
            std::path::Path::new("/usr/bin/dbus-run-session").exists(),
            "dbus-run-session is missing: scripts/test.sh installs dbus"
        );
        let mut child = Command::new("dbus-run-session")
            .args([
                "--",
                "sh",
                "-c",
                "echo \"$DBUS_SESSION_BUS_ADDRESS\"; exec sleep 600",
            ])
            .process_group(0)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        Bus {
            child,
            address: line.trim().to_string(),
            mode: Arc::new(Mutex::new(Mode::Silent)),
            record: Arc::default(),
            runtime: None,
            _conn: None,
        }
    }

    /// A bus with the test notification server, answering with `mode`
    /// after `delay`; it reads bodies as markup (`body-markup`).
    pub fn with_notifier(mode: Mode, delay: Duration) -> Bus {
        Bus::with_server(mode, delay, true)
    }

    /// [`Bus::with_notifier`] with a server that shows bodies as plain
    /// text (no `body-markup` capability).
    pub fn with_plain_notifier(mode: Mode, delay: Duration) -> Bus {
        Bus::with_server(mode, delay, false)
    }

    fn with_server(mode: Mode, delay: Duration, markup: bool) -> Bus {
        let mut bus = Bus::bare();
        *bus.mode.lock().unwrap() = mode;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let cell = Arc::new(std::sync::OnceLock::new());
        let server = Server {
            mode: Arc::clone(&bus.mode),
            record: Arc::clone(&bus.record),
            next: Mutex::new(0),
            conn: Arc::clone(&cell),
            delay,
            markup,
        };
        let address = bus.address.clone();
        let conn = rt.block_on(async move {
            zbus::connection::Builder::address(address.as_str())
                .unwrap()
                .name("org.freedesktop.Notifications")
                .unwrap()
                .serve_at(PATH, server)
                .unwrap()
                .build()
                .await
                .unwrap()
        });
        let _ = cell.set(conn.clone());
        bus.runtime = Some(rt);
        bus._conn = Some(conn);
        bus
    }

    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    pub fn shown(&self) -> Vec<Shown> {
        self.record.lock().unwrap().shown.clone()
    }

    pub fn closed(&self) -> Vec<u32> {
        self.record.lock().unwrap().closed.clone()
    }

    /// Waits until `n` notifications were shown.
    pub fn wait_shown(&self, n: usize) -> Vec<Shown> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let shown = self.shown();
            if shown.len() >= n || Instant::now() > deadline {
                return shown;
            }
            std::thread::sleep(super::POLL);
        }
    }

    /// Another client on the bus emits ActionInvoked for `id`, pretending to
    /// be the notification server.
    pub fn forge_allow(&self, id: u32) {
        let address = self.address.clone();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let conn = zbus::connection::Builder::address(address.as_str())
                .unwrap()
                .build()
                .await
                .unwrap();
            conn.emit_signal(None::<&str>, PATH, IFACE, "ActionInvoked", &(id, "allow"))
                .await
                .unwrap();
            conn.emit_signal(
                None::<&str>,
                PATH,
                IFACE,
                "ActionInvoked",
                &(id, "allow-remember"),
            )
            .await
            .unwrap();
        });
    }
}
