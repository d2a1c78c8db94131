//! Signing straight from opened key bytes, through AWS-LC's C interface.
//!
//! A shielded key is opened for every signature. Building an aws-lc-rs key
//! object from it would recompute the public key each time (a scalar
//! multiplication, as costly as the signature itself); these calls sign from
//! the private scalar or seed alone. The public half is not needed: the
//! material was checked against it when the key was added, and the shield's
//! tag guarantees it is unchanged since.
//!
//! Invariants: every AWS-LC object is owned by an [`Owned`] guard and freed
//! (AWS-LC wipes freed memory) on every path; the functions return `None` on
//! any failure and never panic.

use std::os::raw::c_int;
use std::ptr;

use aws_lc_sys as ffi;

use crate::proto::KeyType;

/// An AWS-LC object freed by its own destructor when dropped.
struct Owned<T> {
    ptr: *mut T,
    free: unsafe extern "C" fn(*mut T),
}

impl<T> Owned<T> {
    /// Takes ownership of `ptr`; None if the constructor returned null.
    fn new(ptr: *mut T, free: unsafe extern "C" fn(*mut T)) -> Option<Self> {
        (!ptr.is_null()).then_some(Owned { ptr, free })
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `ptr` came non-null from the matching constructor and is
        // freed exactly once, here.
        unsafe { (self.free)(self.ptr) }
    }
}

/// An Ed25519 signature over `message` by `private_key` (the 32-byte seed
/// followed by the 32-byte public key, AWS-LC's private key layout).
pub fn ed25519_sign(private_key: &[u8; 64], message: &[u8]) -> Option<[u8; 64]> {
    let mut signature = [0u8; 64];
    // SAFETY: ED25519_sign reads 64 bytes of key and `message.len()` bytes of
    // message, and writes 64 bytes of signature; all three buffers are that
    // large and live for the call.
    let ok = unsafe {
        ffi::ED25519_sign(
            signature.as_mut_ptr(),
            message.as_ptr(),
            message.len(),
            private_key.as_ptr(),
        )
    };
    (ok == 1).then_some(signature)
}

/// The ECDSA signature `(r, s)` over a precomputed `digest` by the private
/// scalar `scalar` (big-endian) on `curve`; r and s are big-endian, padded
/// to the size of the curve order.
pub fn ecdsa_sign(curve: KeyType, scalar: &[u8], digest: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (nid, size): (c_int, usize) = match curve {
        KeyType::EcdsaP256 => (ffi::NID_X9_62_prime256v1, 32),
        KeyType::EcdsaP384 => (ffi::NID_secp384r1, 48),
        KeyType::EcdsaP521 => (ffi::NID_secp521r1, 66),
        _ => return None,
    };
    // SAFETY: a fresh key for a built-in curve; owned by the guard.
    let key = Owned::new(
        unsafe { ffi::EC_KEY_new_by_curve_name(nid) },
        ffi::EC_KEY_free,
    )?;
    {
        // SAFETY: BN_bin2bn reads `scalar.len()` bytes and returns a new
        // BIGNUM, owned by the guard and wiped when freed.
        let d = Owned::new(
            unsafe { ffi::BN_bin2bn(scalar.as_ptr(), scalar.len(), ptr::null_mut()) },
            ffi::BN_clear_free,
        )?;
        // SAFETY: both pointers are live; the key copies the scalar (and
        // rejects zero or out-of-range values).
        if unsafe { ffi::EC_KEY_set_private_key(key.ptr, d.ptr) } != 1 {
            return None;
        }
    }
    // SAFETY: `digest` is readable for its length; the key is live and has
    // its group and private key set, which is all ECDSA_do_sign uses.
    let signature = Owned::new(
        unsafe { ffi::ECDSA_do_sign(digest.as_ptr(), digest.len(), key.ptr) },
        ffi::ECDSA_SIG_free,
    )?;
    let (mut r, mut s) = (ptr::null(), ptr::null());
    // SAFETY: the signature is live; get0 only stores two borrowed pointers.
    unsafe { ffi::ECDSA_SIG_get0(signature.ptr, &mut r, &mut s) };
    if r.is_null() || s.is_null() {
        return None;
    }
    let (mut r_bytes, mut s_bytes) = (vec![0u8; size], vec![0u8; size]);
    // SAFETY: r and s are borrowed from the live signature; each output
    // buffer is `size` bytes, the length passed.
    let padded = unsafe {
        ffi::BN_bn2bin_padded(r_bytes.as_mut_ptr(), size, r) == 1
            && ffi::BN_bn2bin_padded(s_bytes.as_mut_ptr(), size, s) == 1
    };
    padded.then_some((r_bytes, s_bytes))
}
