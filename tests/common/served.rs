//! An agent served in the test's own process: a socket in a temporary
//! directory, a fake desk that the test drives, and the audit kept in
//! memory. It stops serving when dropped, so a failing test never leaves a
//! server behind.

use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};

use hopward::confirm::Desk;
use hopward::daemon::agent::{Agent, AgentOptions};
use hopward::daemon::audit::AuditSink;
use hopward::daemon::server::{SocketFile, serve};
use hopward::policy::store::PolicyStore;
use hopward::ssh::key::{PublicParts, ed25519_public};
use hopward::ssh::wire::put_string;
use hopward::testing::fakes::Records;

/// A served agent with the desk `D`; stops (and removes its socket) when
/// dropped.
pub struct Served<D> {
    pub socket: PathBuf,
    pub agent: Arc<Agent>,
    pub desk: Arc<D>,
    pub records: Arc<Records>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Holds the socket; taken by a test that watches the socket go.
    pub dir: Option<tempfile::TempDir>,
}

impl<D> Drop for Served<D> {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves `policy` in this process from `dir` (where the socket goes),
/// asking through `handle`, the desk `desk` hands out. Only the uid that
/// owns `dir` may connect, as only the owner may connect to the daemon.
pub fn serve_in_process<D>(
    dir: tempfile::TempDir,
    policy: PolicyStore,
    desk: Arc<D>,
    handle: Arc<dyn Desk>,
) -> Served<D> {
    let socket = dir.path().join("agent.sock");
    let records = Arc::new(Records::default());
    let uid = {
        use std::os::unix::fs::MetadataExt as _;
        std::fs::metadata(dir.path()).unwrap().uid()
    };
    let agent = Arc::new(
        Agent::new(
            AgentOptions::new(uid),
            policy,
            Arc::clone(&records) as Arc<dyn AuditSink>,
        )
        .with_desk(handle),
    );
    let listener = UnixListener::bind(&socket).unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        listener,
        SocketFile(Some(socket.clone())),
        Arc::clone(&agent),
        async move {
            let _ = stopped.await;
        },
    ));
    Served {
        socket,
        agent,
        desk,
        records,
        stop: Some(stop),
        dir: Some(dir),
    }
}

pub async fn connect<D>(served: &Served<D>) -> UnixStream {
    UnixStream::connect(&served.socket).await.unwrap()
}

/// The next reply frame's body, or `None` once the agent hung up.
pub async fn reply(stream: &mut UnixStream) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await.ok()?;
    let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
    stream.read_exact(&mut body).await.ok()?;
    Some(body)
}

/// Sends `body` as one frame and reads its reply.
pub async fn request(stream: &mut UnixStream, body: &[u8]) -> Vec<u8> {
    let mut frame = u32::try_from(body.len()).unwrap().to_be_bytes().to_vec();
    frame.extend_from_slice(body);
    stream.write_all(&frame).await.unwrap();
    reply(stream).await.expect("a reply")
}

/// An Ed25519 key made from `[seed; 32]`: its blob, and the add request
/// (with a lifetime in seconds, if any).
pub fn ed25519_key(seed: u8, lifetime: Option<u32>) -> (Vec<u8>, Vec<u8>) {
    let secret = [seed; 32];
    let public = ed25519_public(&secret);
    let blob = PublicParts::Ed25519(public).blob();
    let mut body = vec![if lifetime.is_some() { 25 } else { 17 }];
    put_string(&mut body, b"ssh-ed25519");
    put_string(&mut body, &public);
    let mut private = secret.to_vec();
    private.extend_from_slice(&public);
    put_string(&mut body, &private);
    put_string(&mut body, format!("key-{seed}").as_bytes());
    if let Some(seconds) = lifetime {
        body.push(1);
        body.extend_from_slice(&seconds.to_be_bytes());
    }
    (blob, body)
}
