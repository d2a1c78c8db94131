//! FIDO security keys (`sk-ssh-ed25519@openssh.com`,
//! `sk-ecdsa-sha2-nistp256@openssh.com`): the agent keeps the key handle
//! sealed and has the token sign through its provider library, as
//! ssh-agent does through ssh-sk-helper.
//!
//! The provider is loaded only in a helper process (this same binary run
//! as `hopward __provider-helper`) that signs once and exits: a library
//! that crashes, hangs or lies costs one failed signature, never the agent,
//! and a connection waiting for a touch holds no lock. The agent waits for
//! the helper with a deadline, kills it when the deadline passes, and
//! verifies every signature it returns against the public key before it is
//! handed to anyone.

use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use zeroize::Zeroizing;

use crate::keys::shield::SealedSecret;
use crate::keys::sign::KeyError;
use crate::ssh::key::PublicParts;
use crate::ssh::pattern::match_pattern_list;
use crate::ssh::verify::{SkSignatureDetails, verify_sk};
use crate::ssh::wire::{Reader, WireError, put_mpint, put_string, put_u32};

/// The word that makes the binary a provider helper (argv\[1\]).
pub const HELPER_ARG: &str = "__provider-helper";
/// The name ssh-add sends for the built-in provider.
pub(crate) const INTERNAL: &str = "internal";
/// ssh-agent's default `-P` allow-list (`DEFAULT_ALLOWED_PROVIDERS`).
pub const DEFAULT_ALLOWED_PROVIDERS: &str = "/usr/lib*/*,/usr/local/lib*/*";
/// How long a signature may wait for its token (and a touch) by default.
/// FIDO tokens give up waiting for a touch after about 30 s themselves.
pub const DEFAULT_SIGN_TIMEOUT: Duration = Duration::from_secs(60);
/// `SSH_SK_USER_PRESENCE_REQD`: the token wants a touch for each signature.
pub(crate) const FLAG_USER_PRESENCE: u8 = 0x01;
/// The most a helper may write back; a signature is well under 1 KiB.
const MAX_REPLY: u64 = 64 * 1024;
/// The most a helper accepts as a request (data to sign is at most a frame).
const MAX_REQUEST: u64 = 512 * 1024;

/// Which middleware signs for a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Provider {
    /// hopward's own: libfido2, loaded in the helper
    /// ([`crate::sys::fido`]).
    Internal,
    /// A library, by its canonical path, allowed by `-P`.
    Library(PathBuf),
}

impl Provider {
    /// The provider as the audit and the logs name it.
    pub fn describe(&self) -> String {
        match self {
            Provider::Internal => INTERNAL.to_string(),
            Provider::Library(path) => path.display().to_string(),
        }
    }
}

/// Why a key's provider was refused when the key was added.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum ProviderRefusal {
    #[error("provider {0}: no such file")]
    Missing(String),
    #[error("provider {0} is not allowed by the -P allow-list")]
    NotAllowed(String),
    #[error("remote addition of providers is disabled (provider {0})")]
    Remote(String),
}

impl ProviderRefusal {
    /// A short name for the audit record's `reason`.
    pub fn kind(&self) -> &'static str {
        match self {
            ProviderRefusal::Missing(_) => "provider-missing",
            ProviderRefusal::NotAllowed(_) => "provider-not-allowed",
            ProviderRefusal::Remote(_) => "provider-remote",
        }
    }

    /// The provider as the request named it (or its real path), cleaned
    /// and bounded for display.
    pub fn shown(&self) -> &str {
        match self {
            ProviderRefusal::Missing(p)
            | ProviderRefusal::NotAllowed(p)
            | ProviderRefusal::Remote(p) => p,
        }
    }
}

/// Resolves the provider an `sk-provider@openssh.com` constraint names, as
/// ssh-agent's `process_add_identity`: `internal` as is; a library by its
/// real path, which must match the allow-list; none from a forwarded
/// connection unless `-O allow-remote-pkcs11` was given.
pub fn resolve_provider(
    requested: &str,
    allowlist: &str,
    remote: bool,
    allow_remote: bool,
) -> Result<Provider, ProviderRefusal> {
    if requested.eq_ignore_ascii_case(INTERNAL) {
        return Ok(Provider::Internal);
    }
    let shown = crate::text::clean(requested, 100);
    if remote && !allow_remote {
        return Err(ProviderRefusal::Remote(shown));
    }
    let canonical =
        std::fs::canonicalize(requested).map_err(|_| ProviderRefusal::Missing(shown.clone()))?;
    let text = canonical.to_string_lossy();
    if !match_pattern_list(&text, allowlist) {
        return Err(ProviderRefusal::NotAllowed(crate::text::clean(&text, 200)));
    }
    Ok(Provider::Library(canonical))
}

/// What the agent keeps for one FIDO key.
#[derive(Debug)]
pub struct SecurityKey {
    pub provider: Provider,
    /// The key's sk flags, sent to the token with each signature.
    pub flags: u8,
    key_handle: SealedSecret,
}

impl SecurityKey {
    pub fn new(provider: Provider, flags: u8, key_handle: &[u8]) -> Result<Self, KeyError> {
        Ok(SecurityKey {
            provider,
            flags,
            key_handle: SealedSecret::seal(key_handle)?,
        })
    }

    /// Whether each signature waits for a touch.
    pub fn needs_touch(&self) -> bool {
        self.flags & FLAG_USER_PRESENCE != 0
    }

    /// Whether the sealed handle is locked out of swap.
    pub(crate) fn is_locked_in_memory(&self) -> bool {
        self.key_handle.is_locked_in_memory()
    }
}

/// Why a token signature failed.
#[derive(Debug, thiserror::Error)]
pub enum SkError {
    #[error("the sealed key handle does not open")]
    Sealed,
    #[error("cannot start the provider helper: {0}")]
    Spawn(std::io::Error),
    #[error(
        "the provider did not answer within {0:?} (no token, or no touch in time); helper killed"
    )]
    Timeout(Duration),
    #[error("the provider helper died without an answer ({0})")]
    Crashed(String),
    #[error("provider: {0}")]
    Provider(String),
    #[error("no token found by the provider")]
    NoDevice,
    #[error("the token needs a PIN, which the agent does not have")]
    PinRequired,
    #[error("the provider helper's answer is malformed: {0}")]
    Protocol(String),
    #[error("the token's signature does not verify against the key")]
    BadSignature,
}

impl From<WireError> for SkError {
    fn from(e: WireError) -> Self {
        SkError::Protocol(e.to_string())
    }
}

/// A verified FIDO signature in SSH wire form and what the token reported.
#[derive(Debug)]
pub struct SkSigned {
    pub blob: Vec<u8>,
    pub details: SkSignatureDetails,
}

/// Has the token sign `data` through the key's provider, in a helper
/// process, waiting at most `timeout`; the result is verified.
pub async fn sign(
    public: &PublicParts,
    key: &SecurityKey,
    data: &[u8],
    pin: Option<&[u8]>,
    timeout: Duration,
) -> Result<SkSigned, SkError> {
    // The helper knows `internal` as libfido2, hopward's built-in provider.
    let path: &[u8] = match &key.provider {
        Provider::Library(path) => path.as_os_str().as_encoded_bytes(),
        Provider::Internal => INTERNAL.as_bytes(),
    };
    let (alg, application) = match public {
        PublicParts::SkEd25519 { application, .. } => (1u32, application),
        PublicParts::SkEcdsa { application, .. } => (0u32, application),
        _ => return Err(SkError::Protocol("not a security key".into())),
    };
    let handle = key.key_handle.open().ok_or(SkError::Sealed)?;
    let mut request = Zeroizing::new(Vec::with_capacity(data.len() + handle.len() + 256));
    put_string(&mut request, path);
    put_u32(&mut request, alg);
    put_string(&mut request, data);
    put_string(&mut request, application.as_bytes());
    put_string(&mut request, &handle);
    request.push(key.flags);
    put_string(&mut request, pin.unwrap_or_default());
    drop(handle);
    let reply = run_helper(&request, timeout).await?;
    let signature = parse_reply(&reply)?;
    let mut blob = Vec::new();
    put_string(&mut blob, public.key_type().name().as_bytes());
    if alg == 1 {
        put_string(&mut blob, &signature.r);
    } else {
        let mut inner = Vec::new();
        put_mpint(&mut inner, &signature.r);
        put_mpint(&mut inner, &signature.s);
        put_string(&mut blob, &inner);
    }
    blob.push(signature.flags);
    put_u32(&mut blob, signature.counter);
    // A provider that lies (wrong key, wrong data, garbage) is caught here.
    let details = verify_sk(public, data, &blob).ok_or(SkError::BadSignature)?;
    Ok(SkSigned { blob, details })
}

/// Asks for a security key's PIN with `$SSH_ASKPASS`, as ssh-agent does
/// when a token says it needs one; `None` if there is no way to ask or no
/// answer in time. The answer is wiped when dropped and never logged.
pub async fn ask_pin(prompt: &str, timeout: Duration) -> Option<Zeroizing<Vec<u8>>> {
    let askpass = crate::keys::askpass_env::AskpassEnv::from_env();
    let program = askpass.program?;
    if !askpass.can_display {
        return None;
    }
    let mut child = tokio::process::Command::new(program)
        .arg(prompt)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .ok()?;
    let stdout = child.stdout.take()?;
    let read = async {
        let mut answer = Zeroizing::new(Vec::new());
        stdout.take(1024).read_to_end(&mut answer).await.ok()?;
        child.wait().await.ok()?.success().then_some(answer)
    };
    let mut answer = tokio::time::timeout(timeout, read).await.ok()??;
    while answer.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
        answer.pop();
    }
    (!answer.is_empty()).then_some(answer)
}

/// This very program, to run as a helper. On Linux `/proc/self/exe`, which
/// the forked child still resolves to the agent's own image even after the
/// file was replaced or deleted by an upgrade.
pub(crate) fn helper_program() -> PathBuf {
    if cfg!(target_os = "linux") {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe().unwrap_or_else(|_| PathBuf::from("hopward"))
    }
}

/// Starts the helper, hands it the request, and waits for its answer; the
/// helper is killed if the deadline passes or this future is dropped.
async fn run_helper(request: &[u8], timeout: Duration) -> Result<Vec<u8>, SkError> {
    let mut child = tokio::process::Command::new(helper_program())
        // `ps` shows "hopward", not the /proc path it was started by.
        .arg0("hopward")
        .arg(HELPER_ARG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Providers print debugging to stderr; it must not reach the
        // agent's log, which may be a terminal or a file.
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(SkError::Spawn)?;
    let mut stdin = child.stdin.take();
    let stdout = child.stdout.take();
    let exchange = async {
        if let Some(mut pipe) = stdin.take() {
            // A helper that dies before reading is reported by its status.
            let _ = pipe.write_all(request).await;
            drop(pipe);
        }
        let mut reply = Vec::new();
        if let Some(pipe) = stdout {
            pipe.take(MAX_REPLY)
                .read_to_end(&mut reply)
                .await
                .map_err(|e| SkError::Protocol(e.to_string()))?;
        }
        let status = child
            .wait()
            .await
            .map_err(|e| SkError::Crashed(e.to_string()))?;
        Ok::<_, SkError>((reply, status))
    };
    let (reply, status) = match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result?,
        Err(_) => return Err(SkError::Timeout(timeout)),
    };
    if reply.is_empty() {
        return Err(SkError::Crashed(status.to_string()));
    }
    Ok(reply)
}

fn parse_reply(reply: &[u8]) -> Result<crate::sys::sk_provider::SkSignature, SkError> {
    let mut reader = Reader::new(reply);
    match reader.u8("helper status")? {
        0 => {
            let flags = reader.u8("sk flags")?;
            let counter = reader.u32("sk counter")?;
            let r = reader.string("signature r")?.to_vec();
            let s = reader.string("signature s")?.to_vec();
            reader.finish()?;
            Ok(crate::sys::sk_provider::SkSignature {
                flags,
                counter,
                r,
                s,
            })
        }
        _ => {
            let code = reader.u32("error code")? as i32;
            let message =
                crate::text::clean(&String::from_utf8_lossy(reader.string("message")?), 300);
            Err(match code {
                -3 => SkError::PinRequired,
                -4 => SkError::NoDevice,
                _ => SkError::Provider(message),
            })
        }
    }
}

/// `hopward __provider-helper`: reads one sign request on stdin, has the
/// provider sign, writes the answer on stdout, exits.
pub fn helper_main() -> ExitCode {
    // The key handle passes through this process: no core dumps, no ptrace.
    let _ = crate::sys::harden_process();
    // A helper must not outlive the agent, even one stuck in its library:
    // the agent's held signals are let through and its death sends SIGTERM.
    let _ = crate::sys::release_agent_signals();
    crate::sys::terminate_with_parent();
    let mut request = Zeroizing::new(Vec::new());
    if std::io::stdin()
        .take(MAX_REQUEST)
        .read_to_end(&mut request)
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    let reply = match helper_sign(&request) {
        Ok(sig) => {
            let mut out = vec![0u8, sig.flags];
            put_u32(&mut out, sig.counter);
            put_string(&mut out, &sig.r);
            put_string(&mut out, &sig.s);
            out
        }
        Err((code, message)) => {
            let mut out = vec![1u8];
            put_u32(&mut out, code as u32);
            put_string(&mut out, message.as_bytes());
            out
        }
    };
    let mut stdout = std::io::stdout().lock();
    if stdout
        .write_all(&reply)
        .and_then(|()| stdout.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn helper_sign(request: &[u8]) -> Result<crate::sys::sk_provider::SkSignature, (i32, String)> {
    use crate::sys::sk_provider::{SkProviderError, SkSignRequest};
    let bad = |e: WireError| (0, format!("bad request: {e}"));
    let mut reader = Reader::new(request);
    let path = reader.string("provider").map_err(bad)?;
    let alg = reader.u32("alg").map_err(bad)?;
    let data = reader.string("data").map_err(bad)?;
    let application = reader.string("application").map_err(bad)?;
    let key_handle = reader.string("key handle").map_err(bad)?;
    let flags = reader.u8("flags").map_err(bad)?;
    let pin = reader.string("pin").map_err(bad)?;
    reader.finish().map_err(bad)?;
    let application = std::ffi::CString::new(application)
        .map_err(|_| (0, "application holds a NUL".to_string()))?;
    let pin = if pin.is_empty() {
        None
    } else {
        Some(zeroize::Zeroizing::new(
            std::ffi::CString::new(pin).map_err(|_| (0, "PIN holds a NUL".to_string()))?,
        ))
    };
    let sign_request = SkSignRequest {
        alg,
        data,
        application: &application,
        key_handle,
        flags,
        pin: pin.as_deref().map(|p| p.as_c_str()),
    };
    let signed = if path == INTERNAL.as_bytes() {
        crate::sys::fido::sign(&sign_request)
    } else {
        let path = Path::new(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(path));
        crate::sys::sk_provider::sign(path, &sign_request)
    };
    signed.map_err(|e| {
        let code = match e {
            SkProviderError::Sign(code) => code,
            _ => 0,
        };
        (code, e.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matches_like_openssh() {
        assert!(match_pattern_list(
            "/usr/lib/x86_64-linux-gnu/libsk.so",
            DEFAULT_ALLOWED_PROVIDERS
        ));
        assert!(match_pattern_list(
            "/usr/local/lib64/p.so",
            DEFAULT_ALLOWED_PROVIDERS
        ));
        assert!(!match_pattern_list("/tmp/p.so", DEFAULT_ALLOWED_PROVIDERS));
        assert!(match_pattern_list("/tmp/p.so", "/*"));
        assert!(!match_pattern_list("/tmp/p.so", "/*,!/tmp/*"));
        assert!(!match_pattern_list("/tmp/p.so", ""));
    }

    #[test]
    fn providers_resolve_by_real_path_and_allow_list() {
        assert_eq!(
            resolve_provider("Internal", "", true, false),
            Ok(Provider::Internal)
        );
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("p.so");
        std::fs::write(&lib, b"").unwrap();
        let link = dir.path().join("link.so");
        std::os::unix::fs::symlink(&lib, &link).unwrap();
        let real = std::fs::canonicalize(&lib).unwrap();
        assert_eq!(
            resolve_provider(link.to_str().unwrap(), "/*", false, false),
            Ok(Provider::Library(real.clone()))
        );
        assert!(matches!(
            resolve_provider(
                link.to_str().unwrap(),
                DEFAULT_ALLOWED_PROVIDERS,
                false,
                false
            ),
            Err(ProviderRefusal::NotAllowed(_))
        ));
        assert!(matches!(
            resolve_provider(link.to_str().unwrap(), "/*", true, false),
            Err(ProviderRefusal::Remote(_))
        ));
        assert_eq!(
            resolve_provider(link.to_str().unwrap(), "/*", true, true),
            Ok(Provider::Library(real))
        );
        assert!(matches!(
            resolve_provider("/nonexistent/p.so", "/*", false, false),
            Err(ProviderRefusal::Missing(_))
        ));
    }

    #[test]
    fn helper_errors_map_to_clear_failures() {
        let mut reply = vec![1u8];
        put_u32(&mut reply, (-4i32) as u32);
        put_string(&mut reply, b"device not found");
        assert!(matches!(parse_reply(&reply), Err(SkError::NoDevice)));
        assert!(matches!(parse_reply(&[0, 1]), Err(SkError::Protocol(_))));
    }
}
