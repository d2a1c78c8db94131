//! FIDO middleware (OpenSSH's sk-api.h) loaded with `dlopen`: only ever in
//! the provider helper process (`crate::keys::sk`), never in the agent, so a
//! library that crashes, hangs or scribbles over memory takes only the
//! helper with it.
//!
//! Invariant: the library's answer is copied out into owned buffers before
//! this module returns, and everything it allocated is freed with `free`
//! (sk-api says the caller frees the response with the C allocator).

use std::ffi::{CStr, CString, OsStr, c_char, c_int, c_void};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

use libloading::os::unix::{Library, RTLD_LOCAL, RTLD_NOW};

/// The sk-api major version hopward speaks (`SSH_SK_VERSION_MAJOR` of
/// OpenSSH 8.9 to 10.x).
pub(crate) const SK_VERSION_MAJOR: u32 = 0x000a_0000;
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
    // SAFETY: `sign` runs only in the provider helper process, on a path the
    // agent checked against the allow-list before it started the helper.
    let library = unsafe { load(&c_path) }.map_err(|reason| SkProviderError::Load {
        path: shown.clone(),
        reason,
    })?;
    // SAFETY: sk-api.h declares `uint32_t sk_api_version(void)`.
    let api_version = unsafe { function::<ApiVersionFn>(library, c"sk_api_version") }.ok_or(
        SkProviderError::Symbol {
            path: shown.clone(),
            symbol: "sk_api_version",
        },
    )?;
    // SAFETY: no arguments; the library is loaded.
    let version = unsafe { api_version() };
    if version & SK_VERSION_MAJOR_MASK != SK_VERSION_MAJOR {
        return Err(SkProviderError::Version {
            path: shown,
            version,
        });
    }
    // SAFETY: sk-api.h's `sk_sign` prototype, matched by `SignFn`.
    let sk_sign =
        unsafe { function::<SignFn>(library, c"sk_sign") }.ok_or(SkProviderError::Symbol {
            path: shown,
            symbol: "sk_sign",
        })?;
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

/// Loads the library `file` for the rest of the helper process, or says
/// why not in `dlerror`'s words. Every symbol is bound now (`RTLD_NOW`), so
/// a broken library fails here rather than mid-call; it is never unloaded:
/// the helper exits right after its one signature, and unloading code that
/// may still run (a thread, an exit handler) is what would crash.
///
/// # Safety
/// Loading runs the library's initialisers: call this only in the provider
/// helper process, on a file the agent checked against the allow-list.
pub(super) unsafe fn load(file: &CStr) -> Result<&'static Library, String> {
    // The name goes in with its NUL, so libloading neither copies it nor
    // sees anything but the checked C string.
    let name = OsStr::from_bytes(file.to_bytes_with_nul());
    // SAFETY: the caller's contract above.
    match unsafe { Library::open(Some(name), RTLD_NOW | RTLD_LOCAL) } {
        Ok(library) => Ok(Box::leak(Box::new(library))),
        Err(e @ libloading::Error::DlOpen { .. }) => Err(e.to_string()),
        Err(_) => Err("unknown dlopen error".into()),
    }
}

/// The function `name` of `library`, or None when the library has no such
/// symbol (or it is NULL).
///
/// # Safety
/// `F` must be the `extern "C" fn` pointer type of `name`'s C prototype.
pub(super) unsafe fn function<F: Copy>(library: &'static Library, name: &CStr) -> Option<F> {
    // SAFETY: the caller names the prototype. Read as `Option<F>`, a symbol
    // that resolves to NULL is None, never a function pointer to call.
    let symbol = unsafe { library.get::<Option<F>>(name.to_bytes_with_nul()) }.ok()?;
    *symbol
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(path: &str) -> SkProviderError {
        let request = SkSignRequest {
            alg: 1,
            data: b"data",
            application: c"ssh:",
            key_handle: b"handle",
            flags: 0x01,
            pin: None,
        };
        sign(Path::new(path), &request).unwrap_err()
    }

    #[test]
    fn a_missing_library_is_refused_in_dlerror_s_words() {
        let path = "/nonexistent/hopward-provider.so";
        let SkProviderError::Load {
            path: named,
            reason,
        } = refusal(path)
        else {
            panic!("not a load error");
        };
        assert_eq!(named, path);
        assert!(reason.contains(path), "{reason}");
        assert!(reason.contains("No such file"), "{reason}");
    }

    #[test]
    fn a_library_without_the_sk_api_is_refused_naming_the_symbol() {
        // The C library is loaded already and has no sk-api.
        let error = refusal("libc.so.6");
        assert_eq!(
            error,
            SkProviderError::Symbol {
                path: "libc.so.6".into(),
                symbol: "sk_api_version",
            }
        );
        assert_eq!(
            error.to_string(),
            "provider libc.so.6 has no symbol sk_api_version"
        );
    }

    #[test]
    fn a_path_holding_a_nul_is_never_loaded() {
        let error = refusal("/usr/lib/libsk.so\0/tmp/evil.so");
        assert!(
            matches!(&error, SkProviderError::Load { reason, .. } if reason == "path holds a NUL"),
            "{error:?}"
        );
    }
}
