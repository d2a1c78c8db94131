//! FIDO middleware (OpenSSH's sk-api.h) loaded with `dlopen`: only ever in
//! the provider helper process (`crate::keys::sk`), never in the agent, so a
//! library that crashes, hangs or scribbles over memory takes only the
//! helper with it.
//!
//! Invariant: the library's answer is copied out into owned buffers before
//! this module returns, and everything it allocated is freed with `free`
//! (sk-api says the caller frees the response with the C allocator).

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::Path;

/// The sk-api major version hopward speaks (`SSH_SK_VERSION_MAJOR` of
/// OpenSSH 8.9 to 10.x).
pub const SK_VERSION_MAJOR: u32 = 0x000a_0000;
const SK_VERSION_MAJOR_MASK: u32 = 0xffff_0000;
/// No signature part of any FIDO algorithm is anywhere near this long; a
/// longer one is a lie, refused before it is copied.
const MAX_SIGNATURE_PART: usize = 1024;

/// `struct sk_sign_response` of sk-api.h.
#[repr(C)]
struct SkSignResponse {
    flags: u8,
    counter: u32,
    sig_r: *mut u8,
    sig_r_len: usize,
    sig_s: *mut u8,
    sig_s_len: usize,
}

type ApiVersionFn = unsafe extern "C" fn() -> u32;
type SignFn = unsafe extern "C" fn(
    alg: u32,
    data: *const u8,
    data_len: usize,
    application: *const c_char,
    key_handle: *const u8,
    key_handle_len: usize,
    flags: u8,
    pin: *const c_char,
    options: *mut *mut c_void,
    response: *mut *mut SkSignResponse,
) -> c_int;

/// Why a provider could not sign.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SkProviderError {
    #[error("cannot load provider {path}: {reason}")]
    Load { path: String, reason: String },
    #[error("provider {path} has no symbol {symbol}")]
    Symbol { path: String, symbol: &'static str },
    #[error(
        "provider {path} speaks sk-api version {version:#010x}, hopward {SK_VERSION_MAJOR:#010x}"
    )]
    Version { path: String, version: u32 },
    /// `sk_sign` returned this error code (sk-api.h `SSH_SK_ERR_*`).
    #[error("sk_sign failed with code {0}")]
    Sign(i32),
    #[error("provider returned a malformed signature: {0}")]
    Malformed(&'static str),
}

/// What a token returned for one signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkSignature {
    pub flags: u8,
    pub counter: u32,
    pub r: Vec<u8>,
    /// Empty for Ed25519.
    pub s: Vec<u8>,
}

/// One `sk_sign` request.
#[derive(Debug)]
pub struct SkSignRequest<'a> {
    /// `SSH_SK_ECDSA` (0) or `SSH_SK_ED25519` (1).
    pub alg: u32,
    pub data: &'a [u8],
    pub application: &'a CStr,
    pub key_handle: &'a [u8],
    pub flags: u8,
    pub pin: Option<&'a CStr>,
}

/// Loads the library at `path` (already checked against the allow-list by
/// the agent) and asks it for one signature. Leaves the library loaded:
/// the helper process exits right after.
pub fn sign(path: &Path, request: &SkSignRequest<'_>) -> Result<SkSignature, SkProviderError> {
    let shown = path.display().to_string();
    let c_path =
        CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| SkProviderError::Load {
            path: shown.clone(),
            reason: "path holds a NUL".into(),
        })?;
    // SAFETY: a valid C string; RTLD_NOW resolves every symbol up front so a
    // broken library fails here rather than mid-call.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL) };
    if handle.is_null() {
        return Err(SkProviderError::Load {
            path: shown,
            reason: last_dl_error(),
        });
    }
    let version_sym = symbol(handle, c"sk_api_version").ok_or(SkProviderError::Symbol {
        path: shown.clone(),
        symbol: "sk_api_version",
    })?;
    // SAFETY: sk-api.h declares `uint32_t sk_api_version(void)`.
    let api_version: ApiVersionFn = unsafe { std::mem::transmute(version_sym) };
    // SAFETY: no arguments; the library is loaded.
    let version = unsafe { api_version() };
    if version & SK_VERSION_MAJOR_MASK != SK_VERSION_MAJOR {
        return Err(SkProviderError::Version {
            path: shown,
            version,
        });
    }
    let sign_sym = symbol(handle, c"sk_sign").ok_or(SkProviderError::Symbol {
        path: shown,
        symbol: "sk_sign",
    })?;
    // SAFETY: sk-api.h's `sk_sign` prototype, matched by `SignFn`.
    let sk_sign: SignFn = unsafe { std::mem::transmute(sign_sym) };
    let mut response: *mut SkSignResponse = std::ptr::null_mut();
    // SAFETY: every pointer is valid for the stated length for the whole
    // call; options is NULL as in OpenSSH's sshsk_sign; the response is
    // written through a valid out-pointer.
    let code = unsafe {
        sk_sign(
            request.alg,
            request.data.as_ptr(),
            request.data.len(),
            request.application.as_ptr(),
            request.key_handle.as_ptr(),
            request.key_handle.len(),
            request.flags,
            request.pin.map_or(std::ptr::null(), CStr::as_ptr),
            std::ptr::null_mut(),
            &mut response,
        )
    };
    if code != 0 {
        free_response(response);
        return Err(SkProviderError::Sign(code));
    }
    if response.is_null() {
        return Err(SkProviderError::Malformed("no response"));
    }
    // SAFETY: non-null and written by the library as a `sk_sign_response`.
    let resp = unsafe { &*response };
    let result = copy_part(resp.sig_r, resp.sig_r_len).and_then(|r| {
        let s = if resp.sig_s.is_null() {
            Vec::new()
        } else {
            copy_part(resp.sig_s, resp.sig_s_len)?
        };
        Ok(SkSignature {
            flags: resp.flags,
            counter: resp.counter,
            r,
            s,
        })
    });
    free_response(response);
    result
}

fn copy_part(ptr: *const u8, len: usize) -> Result<Vec<u8>, SkProviderError> {
    if ptr.is_null() || len == 0 {
        return Err(SkProviderError::Malformed("empty signature part"));
    }
    if len > MAX_SIGNATURE_PART {
        return Err(SkProviderError::Malformed("signature part too long"));
    }
    // SAFETY: the library promises `len` readable bytes at `ptr`; the
    // length was bounded above.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) }.to_vec())
}

fn free_response(response: *mut SkSignResponse) {
    if response.is_null() {
        return;
    }
    // SAFETY: sk-api allocates the response and its parts with the C
    // allocator and leaves them to the caller; each is freed once.
    unsafe {
        libc::free((*response).sig_r.cast());
        libc::free((*response).sig_s.cast());
        libc::free(response.cast());
    }
}

fn symbol(handle: *mut c_void, name: &CStr) -> Option<*mut c_void> {
    // SAFETY: a live handle from dlopen and a valid C string.
    let sym = unsafe { libc::dlsym(handle, name.as_ptr()) };
    (!sym.is_null()).then_some(sym)
}

fn last_dl_error() -> String {
    // SAFETY: dlerror returns NULL or a C string valid until the next dl*
    // call on this thread; it is copied at once.
    let err = unsafe { libc::dlerror() };
    if err.is_null() {
        return "unknown dlopen error".into();
    }
    // SAFETY: non-null C string from dlerror.
    unsafe { CStr::from_ptr(err) }
        .to_string_lossy()
        .into_owned()
}
