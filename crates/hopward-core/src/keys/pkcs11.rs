//! PKCS#11 tokens (smart cards, PIV keys, SoftHSM): `ssh-add -s PROVIDER`
//! loads every key the token holds, `ssh-add -e PROVIDER` drops them.
//!
//! As ssh-agent does with ssh-pkcs11-helper, the provider library runs in a
//! helper process of its own (this binary run as `hopward __pkcs11-helper
//! PATH`), one per provider, for as long as its keys are loaded: a library
//! that crashes, hangs or lies, or a token that is pulled out, costs failed
//! signatures, never the agent. The agent talks to the helper over its
//! stdin/stdout with length-prefixed messages, one request at a time per
//! provider, each with a deadline; a helper past its deadline is killed.
//! Every signature the helper returns is verified against the public key
//! before it is handed on. The PIN goes to the helper once, when the token
//! is logged in, and is wiped from the agent's buffers right after.

use std::ffi::OsStr;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use zeroize::Zeroizing;

use crate::ssh::key::{KeyType, PublicKey, PublicParts};
use crate::ssh::wire::{Reader, WireError, put_mpint, put_string, put_u32};

/// The word that makes the binary a PKCS#11 helper (argv\[1\]).
pub const HELPER_ARG: &str = "__pkcs11-helper";
/// No message between agent and helper is anywhere near this long.
const MAX_MESSAGE: usize = 1024 * 1024;
const MSG_LOAD: u8 = 1;
const MSG_SIGN: u8 = 2;
const REPLY_OK: u8 = 0;
const REPLY_ERR: u8 = 1;

/// Why a PKCS#11 operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Pkcs11Error {
    #[error("cannot start the PKCS#11 helper: {0}")]
    Spawn(std::io::Error),
    #[error("the PKCS#11 provider did not answer within {0:?}; helper killed")]
    Timeout(Duration),
    #[error("the PKCS#11 helper is gone ({0})")]
    Gone(String),
    #[error("PKCS#11 provider: {0}")]
    Provider(String),
    #[error("the PKCS#11 helper's answer is malformed: {0}")]
    Protocol(String),
}

impl From<WireError> for Pkcs11Error {
    fn from(e: WireError) -> Self {
        Pkcs11Error::Protocol(e.to_string())
    }
}

/// The helper's pipes; one exchange at a time holds them.
struct HelperIo {
    stdin: tokio::process::ChildStdin,
    stdout: tokio::process::ChildStdout,
}

/// One loaded provider: its helper process, while it lives.
#[derive(Debug)]
pub struct Pkcs11Provider {
    /// The provider's real path (allowed by `-P`).
    pub path: PathBuf,
    /// Shared with the task of each exchange, which runs to its end even
    /// if its caller goes away.
    io: Arc<tokio::sync::Mutex<Option<HelperIo>>>,
    /// The helper process, apart from its pipes, so that [`Self::stop`]
    /// can end it while an exchange holds them (that exchange then reads
    /// the end of the pipe and fails at once).
    child: Arc<std::sync::Mutex<Option<tokio::process::Child>>>,
    timeout: Duration,
}

impl std::fmt::Debug for HelperIo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HelperIo")
    }
}

/// A key found on a token.
#[derive(Debug)]
pub struct TokenKey {
    pub public: PublicKey,
    pub label: String,
}

impl Pkcs11Provider {
    /// Starts a helper for `path`, logs in with `pin` and lists the keys.
    pub async fn load(
        path: PathBuf,
        pin: &[u8],
        timeout: Duration,
    ) -> Result<(Pkcs11Provider, Vec<TokenKey>), Pkcs11Error> {
        let mut child = tokio::process::Command::new(crate::keys::sk::helper_program())
            // `ps` shows "hopward", not the /proc path it was started by.
            .arg0("hopward")
            .arg(HELPER_ARG)
            .arg(&path)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Token libraries log to stderr (SoftHSM at DEBUG); none of it
            // belongs in the agent's log.
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(Pkcs11Error::Spawn)?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(Pkcs11Error::Gone("no pipes".into()));
        };
        let provider = Pkcs11Provider {
            path,
            io: Arc::new(tokio::sync::Mutex::new(Some(HelperIo { stdin, stdout }))),
            child: Arc::new(std::sync::Mutex::new(Some(child))),
            timeout,
        };
        let mut request = Zeroizing::new(vec![MSG_LOAD]);
        put_string(&mut request, pin);
        let reply = provider.exchange(&request).await?;
        let mut reader = Reader::new(&reply);
        let count = reader.u32("key count")?;
        let mut keys = Vec::new();
        for _ in 0..count {
            let blob = reader.string("key blob")?;
            let label = String::from_utf8_lossy(reader.string("label")?).into_owned();
            // A key hopward cannot parse is left out, as OpenSSH leaves out
            // key types it does not know.
            if let Ok(public) = PublicKey::parse(blob) {
                keys.push(TokenKey { public, label });
            }
        }
        reader.finish()?;
        Ok((provider, keys))
    }

    /// Has the token sign `data` with the key `key_blob` (a plain key);
    /// returns the SSH signature blob, verified against the key.
    pub async fn sign(
        &self,
        key: &PublicParts,
        data: &[u8],
        flags: u32,
    ) -> Result<Vec<u8>, Pkcs11Error> {
        let mut request = vec![MSG_SIGN];
        put_string(&mut request, &key.blob());
        put_string(&mut request, data);
        put_u32(&mut request, flags);
        let reply = self.exchange(&request).await?;
        let mut reader = Reader::new(&reply);
        let blob = reader.string("signature")?.to_vec();
        reader.finish()?;
        if !crate::ssh::verify::verify(key, data, &blob) {
            return Err(Pkcs11Error::Provider(
                "the token's signature does not verify against the key".into(),
            ));
        }
        Ok(blob)
    }

    /// Stops the helper (the token is logged out when it exits), at once
    /// even while an exchange waits on it.
    pub async fn stop(&self) {
        stop_helper(&self.child).await;
        self.io.lock().await.take();
    }

    /// Sends one request and waits for its reply; any failure stops the
    /// helper for good, since its state is then unknown.
    ///
    /// Waiting for the helper can be given up (a request whose client left
    /// while it queued sends nothing); once the request is sent, the
    /// exchange runs to its end in a task of its own, or a caller that went
    /// away would leave its reply to be read by the next one.
    async fn exchange(&self, request: &[u8]) -> Result<Vec<u8>, Pkcs11Error> {
        let io = Arc::clone(&self.io).lock_owned().await;
        // A login request carries the PIN: the task's copy is wiped too.
        let request = Zeroizing::new(request.to_vec());
        let child = Arc::clone(&self.child);
        let (timeout, path) = (self.timeout, self.path.clone());
        let task = tokio::spawn(exchange_on(io, Arc::clone(&child), request, timeout, path));
        match task.await {
            Ok(result) => result,
            Err(e) => {
                // Ended half way: where the helper's pipes stand is unknown.
                stop_helper(&child).await;
                Err(Pkcs11Error::Gone(format!("the exchange stopped: {e}")))
            }
        }
    }
}

/// Kills the helper process and reaps it, if it still runs: how it ended.
async fn stop_helper(
    child: &std::sync::Mutex<Option<tokio::process::Child>>,
) -> Option<std::process::ExitStatus> {
    let mut child = child.lock().unwrap_or_else(|e| e.into_inner()).take()?;
    let _ = child.start_kill();
    child.wait().await.ok()
}

/// One request and its reply on the helper's pipes, which `io` holds.
async fn exchange_on(
    mut io: tokio::sync::OwnedMutexGuard<Option<HelperIo>>,
    child: Arc<std::sync::Mutex<Option<tokio::process::Child>>>,
    request: Zeroizing<Vec<u8>>,
    timeout: Duration,
    path: PathBuf,
) -> Result<Vec<u8>, Pkcs11Error> {
    let Some(pipes) = io.as_mut() else {
        return Err(Pkcs11Error::Gone("stopped after an earlier failure".into()));
    };
    let talk = async {
        let mut frame = Zeroizing::new((request.len() as u32).to_be_bytes().to_vec());
        frame.extend_from_slice(&request);
        pipes
            .stdin
            .write_all(&frame)
            .await
            .map_err(|e| Pkcs11Error::Gone(e.to_string()))?;
        let mut len = [0u8; 4];
        pipes
            .stdout
            .read_exact(&mut len)
            .await
            .map_err(|e| Pkcs11Error::Gone(e.to_string()))?;
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_MESSAGE || len == 0 {
            return Err(Pkcs11Error::Protocol(format!("reply of {len} bytes")));
        }
        let mut body = vec![0u8; len];
        pipes
            .stdout
            .read_exact(&mut body)
            .await
            .map_err(|e| Pkcs11Error::Gone(e.to_string()))?;
        Ok(body)
    };
    let result = match tokio::time::timeout(timeout, talk).await {
        Ok(result) => result,
        Err(_) => Err(Pkcs11Error::Timeout(timeout)),
    };
    let body = match result {
        Ok(body) => body,
        Err(e) => {
            // Said here too: the caller that would say it may have gone.
            tracing::warn!(provider = %path.display(), "stopping the PKCS#11 helper: {e}");
            io.take();
            let status = stop_helper(&child).await;
            if let (Pkcs11Error::Gone(_), Some(status)) = (&e, status) {
                return Err(Pkcs11Error::Gone(status.to_string()));
            }
            return Err(e);
        }
    };
    match body.split_first() {
        Some((&REPLY_OK, rest)) => Ok(rest.to_vec()),
        Some((_, rest)) => {
            let mut reader = Reader::new(rest);
            let message = reader.string("error").unwrap_or(b"unreadable error");
            Err(Pkcs11Error::Provider(crate::text::clean(
                &String::from_utf8_lossy(message),
                300,
            )))
        }
        None => Err(Pkcs11Error::Protocol("empty reply".into())),
    }
}

/// `hopward __pkcs11-helper PATH`: serves load and sign requests for one
/// provider on stdin/stdout until stdin closes.
pub fn helper_main(path: &OsStr) -> ExitCode {
    // The PIN and a logged-in session live here: no core dumps, no ptrace.
    let _ = crate::sys::harden_process();
    // A helper must not outlive the agent, even one stuck in its library:
    // the agent's held signals are let through and its death sends SIGTERM.
    let _ = crate::sys::release_agent_signals();
    crate::sys::terminate_with_parent();
    let mut token: Option<helper::Token> = None;
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    loop {
        let mut len = [0u8; 4];
        if stdin.read_exact(&mut len).is_err() {
            return ExitCode::SUCCESS;
        }
        let len = u32::from_be_bytes(len) as usize;
        if len == 0 || len > MAX_MESSAGE {
            return ExitCode::FAILURE;
        }
        let mut body = Zeroizing::new(vec![0u8; len]);
        if stdin.read_exact(&mut body).is_err() {
            return ExitCode::FAILURE;
        }
        let result = helper::handle(Path::new(path), &mut token, &body);
        let mut reply = Vec::new();
        match result {
            Ok(payload) => {
                reply.push(REPLY_OK);
                reply.extend_from_slice(&payload);
            }
            Err(message) => {
                reply.push(REPLY_ERR);
                put_string(&mut reply, message.as_bytes());
            }
        }
        let mut frame = (reply.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&reply);
        if stdout
            .write_all(&frame)
            .and_then(|()| stdout.flush())
            .is_err()
        {
            return ExitCode::FAILURE;
        }
    }
}

/// The helper's side: cryptoki calls, only ever in the helper process.
mod helper {
    use super::*;
    use aws_lc_rs::digest::{self, digest as hash};
    use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
    use cryptoki::mechanism::Mechanism;
    use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
    use cryptoki::object::{
        Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle,
    };
    use cryptoki::session::{Session, UserType};

    /// A logged-in token and the keys found on it.
    pub(crate) struct Token {
        // Kept so the library stays loaded for the sessions.
        _context: Pkcs11,
        sessions: Vec<Session>,
        /// Public key blob, type, index of its session, private key object.
        keys: Vec<(Vec<u8>, KeyType, usize, ObjectHandle)>,
    }

    pub(crate) fn handle(
        path: &Path,
        token: &mut Option<Token>,
        body: &[u8],
    ) -> Result<Vec<u8>, String> {
        let mut reader = Reader::new(body);
        let kind = reader.u8("message type").map_err(|e| e.to_string())?;
        match kind {
            MSG_LOAD => {
                let pin = reader.string("pin").map_err(|e| e.to_string())?;
                let pin = Zeroizing::new(String::from_utf8_lossy(pin).into_owned());
                let loaded = load(path, &pin)?;
                let mut out = Vec::new();
                put_u32(&mut out, loaded.1.len() as u32);
                for (blob, label) in &loaded.1 {
                    put_string(&mut out, blob);
                    put_string(&mut out, label.as_bytes());
                }
                *token = Some(loaded.0);
                Ok(out)
            }
            MSG_SIGN => {
                let blob = reader.string("key blob").map_err(|e| e.to_string())?;
                let data = reader.string("data").map_err(|e| e.to_string())?;
                let flags = reader.u32("flags").map_err(|e| e.to_string())?;
                let token = token.as_ref().ok_or("no token loaded")?;
                let (_, key_type, session, object) = token
                    .keys
                    .iter()
                    .find(|(b, ..)| b == blob)
                    .ok_or("no such key on the token")?;
                let signature = sign(&token.sessions[*session], *object, *key_type, data, flags)?;
                let mut out = Vec::new();
                put_string(&mut out, &signature);
                Ok(out)
            }
            other => Err(format!("unknown message {other}")),
        }
    }

    /// A key blob and its label, as the agent is told them.
    type Listed = Vec<(Vec<u8>, String)>;

    fn load(path: &Path, pin: &str) -> Result<(Token, Listed), String> {
        let context =
            Pkcs11::new(path).map_err(|e| format!("cannot load {}: {e}", path.display()))?;
        context
            .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(|e| format!("C_Initialize: {e}"))?;
        let slots = context
            .get_slots_with_token()
            .map_err(|e| format!("C_GetSlotList: {e}"))?;
        let mut keys: Vec<(Vec<u8>, KeyType, usize, ObjectHandle)> = Vec::new();
        let mut listed = Vec::new();
        let mut sessions = Vec::new();
        for slot in slots {
            // A slot whose token cannot be opened (SoftHSM's empty slot, a
            // token not initialised) has no keys; the others may.
            let Ok(session) = context.open_ro_session(slot) else {
                continue;
            };
            if !pin.is_empty() {
                let secret = cryptoki::types::AuthPin::from(pin.to_string());
                match session.login(UserType::User, Some(&secret)) {
                    Ok(()) => {}
                    Err(cryptoki::error::Error::Pkcs11(
                        cryptoki::error::RvError::UserAlreadyLoggedIn,
                        _,
                    )) => {}
                    Err(cryptoki::error::Error::Pkcs11(
                        cryptoki::error::RvError::PinIncorrect,
                        _,
                    )) => return Err("C_Login: incorrect PIN".into()),
                    Err(e) => return Err(format!("C_Login: {e}")),
                }
            }
            let publics = session
                .find_objects(&[Attribute::Class(ObjectClass::PUBLIC_KEY)])
                .map_err(|e| format!("C_FindObjects: {e}"))?;
            for object in publics {
                let Ok(attributes) = session.get_attributes(
                    object,
                    &[
                        AttributeType::KeyType,
                        AttributeType::Id,
                        AttributeType::Label,
                        AttributeType::Modulus,
                        AttributeType::PublicExponent,
                        AttributeType::EcParams,
                        AttributeType::EcPoint,
                    ],
                ) else {
                    continue;
                };
                let Some((parts, id, label)) = public_parts(&attributes) else {
                    continue;
                };
                let Ok(private) = session.find_objects(&[
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::Id(id),
                ]) else {
                    continue;
                };
                let Some(&private) = private.first() else {
                    continue;
                };
                let blob = parts.blob();
                if keys.iter().any(|(b, ..)| *b == blob) {
                    continue;
                }
                listed.push((blob.clone(), label));
                keys.push((blob, parts.key_type(), sessions.len(), private));
            }
            sessions.push(session);
        }
        Ok((
            Token {
                _context: context,
                sessions,
                keys,
            },
            listed,
        ))
    }

    /// The SSH public key of a token's public key object, its CKA_ID and
    /// its label.
    fn public_parts(attributes: &[Attribute]) -> Option<(PublicParts, Vec<u8>, String)> {
        let (mut kind, mut id, mut label) = (None, None, String::new());
        let (mut n, mut e, mut params, mut point) = (None, None, None, None);
        for attribute in attributes {
            match attribute {
                Attribute::KeyType(k) => kind = Some(*k),
                Attribute::Id(v) => id = Some(v.clone()),
                Attribute::Label(v) => label = String::from_utf8_lossy(v).into_owned(),
                Attribute::Modulus(v) => n = Some(v.clone()),
                Attribute::PublicExponent(v) => e = Some(v.clone()),
                Attribute::EcParams(v) => params = Some(v.clone()),
                Attribute::EcPoint(v) => point = Some(v.clone()),
                _ => {}
            }
        }
        let parts = match kind? {
            k if k == CkKeyType::RSA => PublicParts::Rsa {
                e: strip_zeros(&e?),
                n: strip_zeros(&n?),
            },
            k if k == CkKeyType::EC => {
                let curve = match params?.as_slice() {
                    [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07] => {
                        KeyType::EcdsaP256
                    }
                    [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22] => KeyType::EcdsaP384,
                    [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23] => KeyType::EcdsaP521,
                    _ => return None,
                };
                PublicParts::Ecdsa(curve, der_octets(&point?))
            }
            k if k == CkKeyType::EC_EDWARDS => {
                let params = params?;
                // OID 1.3.101.112, or the printable string "edwards25519".
                if params != [0x06, 0x03, 0x2b, 0x65, 0x70] && !params.ends_with(b"edwards25519") {
                    return None;
                }
                PublicParts::Ed25519(der_octets(&point?).try_into().ok()?)
            }
            _ => return None,
        };
        Some((parts, id?, label))
    }

    fn strip_zeros(bytes: &[u8]) -> Vec<u8> {
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        bytes[start..].to_vec()
    }

    /// CKA_EC_POINT is a DER OCTET STRING holding the point; some tokens
    /// give the bare point instead.
    fn der_octets(value: &[u8]) -> Vec<u8> {
        let Some((&0x04, rest)) = value.split_first() else {
            return value.to_vec();
        };
        let (len, body) = match rest.split_first() {
            Some((&l, body)) if l < 0x80 => (l as usize, body),
            Some((&0x81, [l, body @ ..])) => (*l as usize, body),
            Some((&0x82, [a, b, body @ ..])) => ((*a as usize) << 8 | *b as usize, body),
            _ => return value.to_vec(),
        };
        if body.len() == len {
            body.to_vec()
        } else {
            value.to_vec()
        }
    }

    /// DigestInfo prefixes of PKCS#1 v1.5 (RFC 8017, 9.2 note 1).
    const SHA1_PREFIX: &[u8] = &[
        0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04, 0x14,
    ];
    const SHA256_PREFIX: &[u8] = &[
        0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    const SHA512_PREFIX: &[u8] = &[
        0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x03,
        0x05, 0x00, 0x04, 0x40,
    ];

    fn sign(
        session: &Session,
        object: ObjectHandle,
        key_type: KeyType,
        data: &[u8],
        flags: u32,
    ) -> Result<Vec<u8>, String> {
        let algorithm = crate::keys::sign::signature_algorithm(key_type, flags);
        let raw = |mechanism: &Mechanism, input: &[u8]| {
            session
                .sign(mechanism, object, input)
                .map_err(|e| format!("C_Sign: {e}"))
        };
        let signature = match key_type {
            KeyType::Rsa => {
                let mut input = Vec::new();
                match algorithm {
                    "rsa-sha2-256" => {
                        input.extend_from_slice(SHA256_PREFIX);
                        input.extend_from_slice(hash(&digest::SHA256, data).as_ref());
                    }
                    "rsa-sha2-512" => {
                        input.extend_from_slice(SHA512_PREFIX);
                        input.extend_from_slice(hash(&digest::SHA512, data).as_ref());
                    }
                    // SHA-1 for `ssh-rsa` signatures, which OpenSSH still
                    // asks a token for when the client wants them.
                    _ => {
                        input.extend_from_slice(SHA1_PREFIX);
                        input.extend_from_slice(
                            hash(&digest::SHA1_FOR_LEGACY_USE_ONLY, data).as_ref(),
                        );
                    }
                }
                raw(&Mechanism::RsaPkcs, &input)?
            }
            KeyType::EcdsaP256 | KeyType::EcdsaP384 | KeyType::EcdsaP521 => {
                let hashed_with = match key_type {
                    KeyType::EcdsaP256 => &digest::SHA256,
                    KeyType::EcdsaP384 => &digest::SHA384,
                    _ => &digest::SHA512,
                };
                let fixed = raw(&Mechanism::Ecdsa, hash(hashed_with, data).as_ref())?;
                if fixed.len() % 2 != 0 || fixed.is_empty() {
                    return Err("ECDSA signature of odd length".into());
                }
                let (r, s) = fixed.split_at(fixed.len() / 2);
                let mut inner = Vec::new();
                put_mpint(&mut inner, r);
                put_mpint(&mut inner, s);
                inner
            }
            KeyType::Ed25519 => raw(
                &Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure)),
                data,
            )?,
            _ => return Err("key type not supported on tokens".into()),
        };
        let mut out = Vec::new();
        put_string(&mut out, algorithm.as_bytes());
        put_string(&mut out, &signature);
        Ok(out)
    }
}
