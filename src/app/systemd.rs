//! Life under systemd: readiness notification (`sd_notify`) and whether our
//! standard error goes to the journal.

/// Tells systemd the agent is ready (`READY=1` to `$NOTIFY_SOCKET`), if it
/// asked to be told. Errors are logged, never fatal.
pub(crate) fn notify_ready() {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let socket = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("sd_notify: {e}");
            return;
        }
    };
    let bytes = path.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        abstract_send(&socket, name)
    } else {
        socket
            .send_to(b"READY=1", std::path::Path::new(&path))
            .map(|_| ())
    };
    if let Err(e) = sent {
        tracing::warn!("sd_notify to {}: {e}", path.to_string_lossy());
    }
}

#[cfg(target_os = "linux")]
fn abstract_send(socket: &std::os::unix::net::UnixDatagram, name: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt as _;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(b"READY=1", &addr).map(|_| ())
}

#[cfg(not(target_os = "linux"))]
fn abstract_send(_: &std::os::unix::net::UnixDatagram, _: &[u8]) -> std::io::Result<()> {
    Err(std::io::Error::other("abstract sockets need Linux"))
}

/// Whether standard error is connected to the journal (systemd sets
/// `JOURNAL_STREAM` to the device and inode of that stream).
pub(crate) fn stderr_is_journal() -> bool {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(stream) = std::env::var("JOURNAL_STREAM") else {
        return false;
    };
    let Some((dev, ino)) = stream.split_once(':') else {
        return false;
    };
    let Ok(meta) = std::fs::metadata("/proc/self/fd/2") else {
        return false;
    };
    dev.parse() == Ok(meta.dev()) && ino.parse() == Ok(meta.ino())
}
