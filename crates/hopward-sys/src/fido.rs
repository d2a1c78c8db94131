//! The built-in FIDO provider (`internal`): Yubico's libfido2
//! (`libfido2.so.1`), loaded with `dlopen` only in the provider helper
//! process, asked for one assertion the way OpenSSH's sk-usbhid does.
//!
//! Invariant: every libfido2 object made here is freed before returning;
//! the answer is copied into owned buffers.

use std::ffi::{CStr, c_char, c_int, c_void};

use libloading::os::unix::Library;

use super::sk_provider::{SkProviderError, SkSignature, function, load};

const LIBRARY: &CStr = c"libfido2.so.1";
const FIDO_OK: c_int = 0;
const FIDO_ERR_PIN_INVALID: c_int = 0x31;
const FIDO_ERR_PIN_REQUIRED: c_int = 0x36;
/// `fido_opt_t`.
const FIDO_OPT_FALSE: c_int = 1;
const FIDO_OPT_TRUE: c_int = 2;
/// How many tokens are looked at, as sk-usbhid's `MAX_FIDO_DEVICES`.
const MAX_DEVICES: usize = 8;
/// sk-api error codes the agent understands.
const SK_ERR_GENERAL: i32 = -1;
const SK_ERR_PIN_REQUIRED: i32 = -3;
const SK_ERR_DEVICE_NOT_FOUND: i32 = -4;

type Opaque = *mut c_void;

/// The libfido2 functions used, resolved once per helper.
struct Fido {
    init: unsafe extern "C" fn(c_int),
    info_new: unsafe extern "C" fn(usize) -> Opaque,
    info_manifest: unsafe extern "C" fn(Opaque, usize, *mut usize) -> c_int,
    info_ptr: unsafe extern "C" fn(Opaque, usize) -> Opaque,
    info_path: unsafe extern "C" fn(Opaque) -> *const c_char,
    info_free: unsafe extern "C" fn(*mut Opaque, usize),
    dev_new: unsafe extern "C" fn() -> Opaque,
    dev_open: unsafe extern "C" fn(Opaque, *const c_char) -> c_int,
    dev_close: unsafe extern "C" fn(Opaque) -> c_int,
    dev_free: unsafe extern "C" fn(*mut Opaque),
    assert_new: unsafe extern "C" fn() -> Opaque,
    assert_free: unsafe extern "C" fn(*mut Opaque),
    set_clientdata_hash: unsafe extern "C" fn(Opaque, *const u8, usize) -> c_int,
    set_rp: unsafe extern "C" fn(Opaque, *const c_char) -> c_int,
    allow_cred: unsafe extern "C" fn(Opaque, *const u8, usize) -> c_int,
    set_up: unsafe extern "C" fn(Opaque, c_int) -> c_int,
    set_uv: unsafe extern "C" fn(Opaque, c_int) -> c_int,
    get_assert: unsafe extern "C" fn(Opaque, Opaque, *const c_char) -> c_int,
    count: unsafe extern "C" fn(Opaque) -> usize,
    flags: unsafe extern "C" fn(Opaque, usize) -> u8,
    sigcount: unsafe extern "C" fn(Opaque, usize) -> u32,
    sig_ptr: unsafe extern "C" fn(Opaque, usize) -> *const u8,
    sig_len: unsafe extern "C" fn(Opaque, usize) -> usize,
}

fn load_error(reason: String) -> SkProviderError {
    SkProviderError::Load {
        path: "internal (libfido2.so.1)".into(),
        reason,
    }
}

/// Resolves `name` in libfido2 as a function of type `T`.
///
/// # Safety
/// `T` must be the C prototype of `name` in libfido2's fido.h.
unsafe fn resolve<T: Copy>(library: &'static Library, name: &CStr) -> Result<T, SkProviderError> {
    // SAFETY: the caller names the prototype.
    unsafe { function(library, name) }
        .ok_or_else(|| load_error(format!("no symbol {}", name.to_string_lossy())))
}

impl Fido {
    fn load() -> Result<Fido, SkProviderError> {
        // SAFETY: `sign` runs only in the provider helper process, which the
        // agent starts for `internal` after its allow-list check.
        let library =
            unsafe { load(LIBRARY) }.map_err(|_| load_error("libfido2 is not installed".into()))?;
        // SAFETY: each name is paired with its fido.h prototype.
        unsafe {
            Ok(Fido {
                init: resolve(library, c"fido_init")?,
                info_new: resolve(library, c"fido_dev_info_new")?,
                info_manifest: resolve(library, c"fido_dev_info_manifest")?,
                info_ptr: resolve(library, c"fido_dev_info_ptr")?,
                info_path: resolve(library, c"fido_dev_info_path")?,
                info_free: resolve(library, c"fido_dev_info_free")?,
                dev_new: resolve(library, c"fido_dev_new")?,
                dev_open: resolve(library, c"fido_dev_open")?,
                dev_close: resolve(library, c"fido_dev_close")?,
                dev_free: resolve(library, c"fido_dev_free")?,
                assert_new: resolve(library, c"fido_assert_new")?,
                assert_free: resolve(library, c"fido_assert_free")?,
                set_clientdata_hash: resolve(library, c"fido_assert_set_clientdata_hash")?,
                set_rp: resolve(library, c"fido_assert_set_rp")?,
                allow_cred: resolve(library, c"fido_assert_allow_cred")?,
                set_up: resolve(library, c"fido_assert_set_up")?,
                set_uv: resolve(library, c"fido_assert_set_uv")?,
                get_assert: resolve(library, c"fido_dev_get_assert")?,
                count: resolve(library, c"fido_assert_count")?,
                flags: resolve(library, c"fido_assert_flags")?,
                sigcount: resolve(library, c"fido_assert_sigcount")?,
                sig_ptr: resolve(library, c"fido_assert_sig_ptr")?,
                sig_len: resolve(library, c"fido_assert_sig_len")?,
            })
        }
    }

    /// The paths of the tokens plugged in now.
    fn device_paths(&self) -> Vec<std::ffi::CString> {
        let mut paths = Vec::new();
        // SAFETY: the list is made, read within its reported length and
        // freed here; each path is copied before the free.
        unsafe {
            let mut list = (self.info_new)(MAX_DEVICES);
            if list.is_null() {
                return paths;
            }
            let mut found = 0usize;
            if (self.info_manifest)(list, MAX_DEVICES, &mut found) == FIDO_OK {
                for i in 0..found.min(MAX_DEVICES) {
                    let info = (self.info_ptr)(list, i);
                    let path = if info.is_null() {
                        std::ptr::null()
                    } else {
                        (self.info_path)(info)
                    };
                    if !path.is_null() {
                        paths.push(CStr::from_ptr(path).to_owned());
                    }
                }
            }
            (self.info_free)(&mut list, MAX_DEVICES);
        }
        paths
    }

    /// One assertion on the token at `path`: `Ok(None)` when the token
    /// does not hold the credential.
    fn assert_on(
        &self,
        path: &CStr,
        request: &super::sk_provider::SkSignRequest<'_>,
        digest: &[u8],
        user_presence: bool,
    ) -> Result<SkSignature, i32> {
        // SAFETY: device and assertion are made, used and freed here; every
        // pointer handed to libfido2 is valid for the call; the signature is
        // copied before the assertion is freed.
        unsafe {
            let mut dev = (self.dev_new)();
            if dev.is_null() {
                return Err(SK_ERR_GENERAL);
            }
            if (self.dev_open)(dev, path.as_ptr()) != FIDO_OK {
                (self.dev_free)(&mut dev);
                return Err(SK_ERR_DEVICE_NOT_FOUND);
            }
            let mut assertion = (self.assert_new)();
            let result = if assertion.is_null() {
                Err(SK_ERR_GENERAL)
            } else {
                let uv = request.flags & 0x04 != 0;
                let set = (self.set_clientdata_hash)(assertion, digest.as_ptr(), digest.len())
                    == FIDO_OK
                    && (self.set_rp)(assertion, request.application.as_ptr()) == FIDO_OK
                    && (self.allow_cred)(
                        assertion,
                        request.key_handle.as_ptr(),
                        request.key_handle.len(),
                    ) == FIDO_OK
                    && (self.set_up)(
                        assertion,
                        if user_presence {
                            FIDO_OPT_TRUE
                        } else {
                            FIDO_OPT_FALSE
                        },
                    ) == FIDO_OK
                    && (!uv || (self.set_uv)(assertion, FIDO_OPT_TRUE) == FIDO_OK);
                if !set {
                    Err(SK_ERR_GENERAL)
                } else {
                    let pin = request.pin.map_or(std::ptr::null(), CStr::as_ptr);
                    match (self.get_assert)(dev, assertion, pin) {
                        FIDO_OK if (self.count)(assertion) == 1 => {
                            let ptr = (self.sig_ptr)(assertion, 0);
                            let len = (self.sig_len)(assertion, 0);
                            if ptr.is_null() || len == 0 || len > 1024 {
                                Err(SK_ERR_GENERAL)
                            } else {
                                Ok(SkSignature {
                                    flags: (self.flags)(assertion, 0),
                                    counter: (self.sigcount)(assertion, 0),
                                    r: std::slice::from_raw_parts(ptr, len).to_vec(),
                                    s: Vec::new(),
                                })
                            }
                        }
                        FIDO_ERR_PIN_REQUIRED | FIDO_ERR_PIN_INVALID => Err(SK_ERR_PIN_REQUIRED),
                        _ => Err(SK_ERR_GENERAL),
                    }
                }
            };
            if !assertion.is_null() {
                (self.assert_free)(&mut assertion);
            }
            (self.dev_close)(dev);
            (self.dev_free)(&mut dev);
            result
        }
    }
}

/// Signs through the first token that holds the credential: with one token
/// it is asked directly; with several, each is first asked silently (no
/// touch), as sk-usbhid probes them, so only the right one blinks.
pub fn sign(
    request: &super::sk_provider::SkSignRequest<'_>,
) -> Result<SkSignature, SkProviderError> {
    let fido = Fido::load()?;
    // SAFETY: fido_init takes a flags integer; 0 is the default.
    unsafe { (fido.init)(0) };
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, request.data);
    let digest = digest.as_ref();
    let paths = fido.device_paths();
    let presence = request.flags & 0x01 != 0;
    let chosen = match paths.as_slice() {
        [] => return Err(SkProviderError::Sign(SK_ERR_DEVICE_NOT_FOUND)),
        [only] => only.clone(),
        many => many
            .iter()
            .find(|path| fido.assert_on(path, request, digest, false).is_ok())
            .cloned()
            .ok_or(SkProviderError::Sign(SK_ERR_DEVICE_NOT_FOUND))?,
    };
    let mut signature = fido
        .assert_on(&chosen, request, digest, presence)
        .map_err(SkProviderError::Sign)?;
    if request.alg == 0 {
        // ECDSA comes DER-encoded from the token; the agent wants r and s.
        let (r, s) = der_ecdsa(&signature.r)
            .ok_or(SkProviderError::Malformed("ECDSA signature is not DER"))?;
        signature.r = r;
        signature.s = s;
    }
    Ok(signature)
}

/// `SEQUENCE { INTEGER r, INTEGER s }` with short lengths (a P-256
/// signature is at most 72 bytes).
fn der_ecdsa(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let [0x30, len, body @ ..] = der else {
        return None;
    };
    if usize::from(*len) != body.len() {
        return None;
    }
    let integer = |bytes: &[u8]| -> Option<(Vec<u8>, usize)> {
        let [0x02, len, rest @ ..] = bytes else {
            return None;
        };
        let len = usize::from(*len);
        (len > 0 && len <= 33 && rest.len() >= len).then(|| (rest[..len].to_vec(), 2 + len))
    };
    let (r, used) = integer(body)?;
    let (s, used_s) = integer(&body[used..])?;
    (used + used_s == body.len()).then_some((r, s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_ecdsa_signatures_split_into_r_and_s() {
        let der = [0x30, 0x08, 0x02, 0x02, 0x00, 0x81, 0x02, 0x02, 0x01, 0x02];
        assert_eq!(der_ecdsa(&der), Some((vec![0x00, 0x81], vec![0x01, 0x02])));
        assert_eq!(der_ecdsa(&der[..9]), None);
        assert_eq!(der_ecdsa(&[0x30, 0x00]), None);
    }
}
