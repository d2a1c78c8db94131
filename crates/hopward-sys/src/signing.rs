//! Signing straight from opened key bytes, through AWS-LC's C interface.
//!
//! A shielded key is opened for every signature. Building an aws-lc-rs key
//! object from it would recompute the public key each time (a scalar
//! multiplication, as costly as the signature itself) or, for RSA, run the
//! full key check; these calls sign from the private numbers alone. That is
//! safe because the material was checked against the public key when the
//! key was added, and the shield's tag guarantees it is unchanged since.
//! RSA goes through here for every size and hash, including the 1024-bit
//! keys and SHA-1 (`ssh-rsa`) signatures that aws-lc-rs will not make.
//! When an RSA key is added, its CRT values are computed and the whole key
//! checked here too ([`rsa_crt_values`]).
//!
//! ML-DSA-44 signs and verifies here too, because OpenSSH's ML-DSA
//! composite gives ML-DSA a context string and aws-lc-rs only offers the
//! empty one.
//!
//! Invariants: every AWS-LC object is owned by an [`Owned`] guard and freed
//! (AWS-LC wipes freed memory) on every path; the functions return `None` on
//! any failure and never panic.

use std::os::raw::c_int;
use std::ptr;

use aws_lc_sys as ffi;
use zeroize::Zeroizing;

/// Length of an ML-DSA-44 public key (FIPS 204).
pub const MLDSA44_PUBLIC_LEN: usize = 1312;
/// Length of an ML-DSA-44 signature (FIPS 204).
pub const MLDSA44_SIGNATURE_LEN: usize = 2420;
/// Length of the seed an ML-DSA key is expanded from (FIPS 204 `xi`).
pub const MLDSA_SEED_LEN: usize = 32;

/// The NIST curves ECDSA keys use. This layer knows no SSH key types, so
/// the key model names its curve with this.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EcCurve {
    P256,
    P384,
    P521,
}

/// An AWS-LC object freed by its own destructor when dropped.
pub(super) struct Owned<T> {
    pub(super) ptr: *mut T,
    free: unsafe extern "C" fn(*mut T),
}

impl<T> Owned<T> {
    /// Takes ownership of `ptr`; None if the constructor returned null.
    pub(super) fn new(ptr: *mut T, free: unsafe extern "C" fn(*mut T)) -> Option<Self> {
        (!ptr.is_null()).then_some(Owned { ptr, free })
    }
}

impl<T> Owned<T> {
    /// Gives up ownership after a `set0` call took it over.
    fn release(self) {
        std::mem::forget(self);
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
pub fn ecdsa_sign(curve: EcCurve, scalar: &[u8], digest: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
    let (nid, size): (c_int, usize) = match curve {
        EcCurve::P256 => (ffi::NID_X9_62_prime256v1, 32),
        EcCurve::P384 => (ffi::NID_secp384r1, 48),
        EcCurve::P521 => (ffi::NID_secp521r1, 66),
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

/// The hash of an RSA PKCS#1 v1.5 signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaHash {
    Sha1,
    Sha256,
    Sha512,
}

/// The numbers of an RSA private key, big-endian.
#[derive(Clone, Copy)]
pub struct RsaNumbers<'a> {
    pub n: &'a [u8],
    pub e: &'a [u8],
    pub d: &'a [u8],
    pub p: &'a [u8],
    pub q: &'a [u8],
    pub dp: &'a [u8],
    pub dq: &'a [u8],
    pub iqmp: &'a [u8],
}

impl std::fmt::Debug for RsaNumbers<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaNumbers(redacted)")
    }
}

/// An AWS-LC RSA private key, built without the full key check (see the
/// module comment); wiped by AWS-LC when dropped.
pub struct RsaKey {
    rsa: Owned<ffi::RSA>,
}

// SAFETY: AWS-LC RSA keys may be used for private-key operations from
// several threads at once: the values it computes lazily on first use
// (Montgomery contexts, blinding) are guarded by the key's own lock.
unsafe impl Send for RsaKey {}
// SAFETY: as above.
unsafe impl Sync for RsaKey {}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RsaKey(redacted)")
    }
}

impl RsaKey {
    pub fn new(numbers: &RsaNumbers<'_>) -> Option<Self> {
        rsa_key(numbers).map(|rsa| RsaKey { rsa })
    }

    /// A PKCS#1 v1.5 signature over a precomputed `digest` made with `hash`.
    pub fn sign(&self, hash: RsaHash, digest: &[u8]) -> Option<Vec<u8>> {
        let nid = hash_nid(hash);
        // SAFETY: the key is live.
        let size = unsafe { ffi::RSA_size(self.rsa.ptr) } as usize;
        let mut signature = vec![0u8; size];
        let mut written: std::os::raw::c_uint = 0;
        // SAFETY: `digest` is readable for its length, `signature` has room
        // for RSA_size bytes (the most RSA_sign writes), the key is live.
        let ok = unsafe {
            ffi::RSA_sign(
                nid,
                digest.as_ptr(),
                digest.len(),
                signature.as_mut_ptr(),
                &mut written,
                self.rsa.ptr,
            )
        };
        if ok != 1 || written as usize > size {
            return None;
        }
        signature.truncate(written as usize);
        Some(signature)
    }
}

/// The AWS-LC key of `numbers`, built from them as they are (they were
/// checked when the key was added).
pub(super) fn rsa_key(numbers: &RsaNumbers<'_>) -> Option<Owned<ffi::RSA>> {
    // SAFETY: a fresh, empty key owned by the guard.
    let rsa = Owned::new(unsafe { ffi::RSA_new() }, ffi::RSA_free)?;
    let big = |bytes: &[u8]| {
        // SAFETY: reads `bytes.len()` bytes; the new BIGNUM is owned by
        // the guard (wiped when freed) until a set0 call takes it.
        Owned::new(
            unsafe { ffi::BN_bin2bn(bytes.as_ptr(), bytes.len(), ptr::null_mut()) },
            ffi::BN_clear_free,
        )
    };
    let (n, e, d) = (big(numbers.n)?, big(numbers.e)?, big(numbers.d)?);
    // SAFETY: all pointers are live; on success the key owns n, e and d.
    if unsafe { ffi::RSA_set0_key(rsa.ptr, n.ptr, e.ptr, d.ptr) } != 1 {
        return None;
    }
    [n, e, d].into_iter().for_each(Owned::release);
    let (p, q) = (big(numbers.p)?, big(numbers.q)?);
    // SAFETY: as above, for p and q.
    if unsafe { ffi::RSA_set0_factors(rsa.ptr, p.ptr, q.ptr) } != 1 {
        return None;
    }
    [p, q].into_iter().for_each(Owned::release);
    let (dp, dq, iqmp) = (big(numbers.dp)?, big(numbers.dq)?, big(numbers.iqmp)?);
    // SAFETY: as above, for the CRT values.
    if unsafe { ffi::RSA_set0_crt_params(rsa.ptr, dp.ptr, dq.ptr, iqmp.ptr) } != 1 {
        return None;
    }
    [dp, dq, iqmp].into_iter().for_each(Owned::release);
    Some(rsa)
}

/// AWS-LC's name for the hash of an RSA signature.
pub(super) fn hash_nid(hash: RsaHash) -> c_int {
    match hash {
        RsaHash::Sha1 => ffi::NID_sha1,
        RsaHash::Sha256 => ffi::NID_sha256,
        RsaHash::Sha512 => ffi::NID_sha512,
    }
}

/// Why [`rsa_crt_values`] refused the numbers of an RSA key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RsaRefusal {
    /// p × q is not the modulus: the private half belongs to another key.
    NotFactors,
    /// p × q is the modulus, but the numbers are not a usable RSA key (see
    /// [`rsa_crt_values`] for what is checked).
    Invalid,
}

/// The CRT values of an RSA private key, big-endian without leading zeros,
/// and the size of its modulus in bits. The values are wiped on drop.
pub struct RsaCrt {
    pub dp: Zeroizing<Vec<u8>>,
    pub dq: Zeroizing<Vec<u8>>,
    pub iqmp: Zeroizing<Vec<u8>>,
    pub bits: usize,
}

impl std::fmt::Debug for RsaCrt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaCrt({} bits, redacted)", self.bits)
    }
}

/// Checks the RSA private key (n, e, d, p, q), all big-endian, and computes
/// its CRT values dP = d mod (p−1), dQ = d mod (q−1) and
/// qInv = q⁻¹ mod p, so that they never have to be trusted from the
/// client (a wrong one makes a faulty CRT signature, and a faulty signature
/// reveals p).
///
/// Refused with [`RsaRefusal::NotFactors`] when p × q ≠ n; otherwise with
/// [`RsaRefusal::Invalid`] unless AWS-LC's `RSA_check_key` accepts the
/// complete key (n odd and at most 16384 bits; e odd, 3 ≤ e < 2³³;
/// p, q < n; d·e ≡ 1 mod p−1 and mod q−1; the CRT values consistent) and
/// e < n.
///
/// Every temporary number is wiped: the ones made here are freed with
/// `BN_clear_free`, and AWS-LC cleanses the memory of the ones it makes
/// itself (`BN_CTX`, Montgomery context, the checked key) when it frees them.
pub fn rsa_crt_values(
    n: &[u8],
    e: &[u8],
    d: &[u8],
    p: &[u8],
    q: &[u8],
) -> Result<RsaCrt, RsaRefusal> {
    let result = rsa_crt_checked(n, e, d, p, q);
    // A refused key leaves entries on AWS-LC's thread-local error queue;
    // clear them so they cannot be mistaken for a later call's error.
    // SAFETY: takes no arguments and touches only this thread's queue.
    unsafe { ffi::ERR_clear_error() };
    result
}

fn rsa_crt_checked(n: &[u8], e: &[u8], d: &[u8], p: &[u8], q: &[u8]) -> Result<RsaCrt, RsaRefusal> {
    use RsaRefusal::{Invalid, NotFactors};
    // SAFETY: a fresh context, owned by the guard.
    let ctx = Owned::new(unsafe { ffi::BN_CTX_new() }, ffi::BN_CTX_free).ok_or(Invalid)?;
    let (n, e, d) = (bignum(n)?, bignum(e)?, bignum(d)?);
    let (p, q) = (bignum(p)?, bignum(q)?);

    let product = new_bignum()?;
    // SAFETY: all four pointers are live; BN_mul allows any sizes.
    if unsafe { ffi::BN_mul(product.ptr, p.ptr, q.ptr, ctx.ptr) } != 1 {
        return Err(Invalid);
    }
    // SAFETY: both numbers are live.
    if unsafe { ffi::BN_cmp(product.ptr, n.ptr) } != 0 {
        return Err(NotFactors);
    }

    let (p_minus_1, q_minus_1) = (new_bignum()?, new_bignum()?);
    let (dp, dq) = (new_bignum()?, new_bignum()?);
    // SAFETY: all pointers are live; BN_value_one returns a static constant.
    // BN_div fails (returns 0) for a zero divisor.
    let reduced = unsafe {
        let one = ffi::BN_value_one();
        ffi::BN_sub(p_minus_1.ptr, p.ptr, one) == 1
            && ffi::BN_sub(q_minus_1.ptr, q.ptr, one) == 1
            && ffi::BN_div(ptr::null_mut(), dp.ptr, d.ptr, p_minus_1.ptr, ctx.ptr) == 1
            && ffi::BN_div(ptr::null_mut(), dq.ptr, d.ptr, q_minus_1.ptr, ctx.ptr) == 1
    };
    if !reduced {
        return Err(Invalid);
    }

    // qInv through a blinded inversion in a Montgomery context that treats
    // p as secret; it needs q reduced mod p first (and p odd, above 1).
    let q_mod_p = new_bignum()?;
    // SAFETY: all pointers are live; BN_nnmod fails for p = 0.
    if unsafe { ffi::BN_nnmod(q_mod_p.ptr, q.ptr, p.ptr, ctx.ptr) } != 1 {
        return Err(Invalid);
    }
    // SAFETY: p and ctx are live; the new context is owned by the guard.
    let mont = Owned::new(
        unsafe { ffi::BN_MONT_CTX_new_consttime(p.ptr, ctx.ptr) },
        ffi::BN_MONT_CTX_free,
    )
    .ok_or(Invalid)?;
    let iqmp = new_bignum()?;
    let mut no_inverse: c_int = 0;
    // SAFETY: all pointers are live; `no_inverse` is a writable int.
    let inverted = unsafe {
        ffi::BN_mod_inverse_blinded(iqmp.ptr, &mut no_inverse, q_mod_p.ptr, mont.ptr, ctx.ptr)
    };
    if inverted != 1 {
        return Err(Invalid);
    }

    // SAFETY: both numbers are live.
    if unsafe { ffi::BN_cmp(e.ptr, n.ptr) } >= 0 {
        return Err(Invalid);
    }
    // RSA_new_private_key copies the numbers into a new key and runs
    // RSA_check_key on it; the copy is freed (and wiped) at once.
    // SAFETY: all eight numbers are live and only read; the key returned,
    // if any, is owned by the guard.
    let checked = Owned::new(
        unsafe {
            ffi::RSA_new_private_key(n.ptr, e.ptr, d.ptr, p.ptr, q.ptr, dp.ptr, dq.ptr, iqmp.ptr)
        },
        ffi::RSA_free,
    );
    if checked.is_none() {
        return Err(Invalid);
    }
    drop(checked);

    // SAFETY: n is live.
    let bits = unsafe { ffi::BN_num_bits(n.ptr) } as usize;
    Ok(RsaCrt {
        dp: bignum_bytes(&dp),
        dq: bignum_bytes(&dq),
        iqmp: bignum_bytes(&iqmp),
        bits,
    })
}

/// A new BIGNUM holding `bytes` (big-endian), wiped when freed.
fn bignum(bytes: &[u8]) -> Result<Owned<ffi::BIGNUM>, RsaRefusal> {
    // SAFETY: BN_bin2bn reads `bytes.len()` bytes and returns a new BIGNUM,
    // owned by the guard.
    Owned::new(
        unsafe { ffi::BN_bin2bn(bytes.as_ptr(), bytes.len(), ptr::null_mut()) },
        ffi::BN_clear_free,
    )
    .ok_or(RsaRefusal::Invalid)
}

/// A new BIGNUM holding zero, wiped when freed.
fn new_bignum() -> Result<Owned<ffi::BIGNUM>, RsaRefusal> {
    // SAFETY: a fresh BIGNUM, owned by the guard.
    Owned::new(unsafe { ffi::BN_new() }, ffi::BN_clear_free).ok_or(RsaRefusal::Invalid)
}

/// The value of a non-negative BIGNUM, big-endian without leading zeros.
fn bignum_bytes(number: &Owned<ffi::BIGNUM>) -> Zeroizing<Vec<u8>> {
    // SAFETY: the number is live.
    let len = unsafe { ffi::BN_num_bytes(number.ptr) } as usize;
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    // SAFETY: `bytes` has room for BN_num_bytes bytes, all BN_bn2bin writes.
    unsafe { ffi::BN_bn2bin(number.ptr, bytes.as_mut_ptr()) };
    bytes
}

/// An ML-DSA-44 key expanded from its 32-byte seed (FIPS 204 key generation
/// from ξ, the form OpenSSH stores); AWS-LC wipes it when dropped.
pub struct MlDsa44Key {
    pkey: Owned<ffi::EVP_PKEY>,
}

// SAFETY: signing only reads the key: EVP_DigestSignInit takes a reference
// on the EVP_PKEY and never changes it, so one key may sign from several
// threads at once.
unsafe impl Send for MlDsa44Key {}
// SAFETY: as above.
unsafe impl Sync for MlDsa44Key {}

impl std::fmt::Debug for MlDsa44Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MlDsa44Key(redacted)")
    }
}

impl MlDsa44Key {
    /// Expands `seed` into the key pair it determines.
    pub fn from_seed(seed: &[u8; MLDSA_SEED_LEN]) -> Option<Self> {
        // SAFETY: reads exactly `seed.len()` bytes; a 32-byte input selects
        // key generation from a seed. The new key is owned by the guard.
        let pkey = Owned::new(
            unsafe {
                ffi::EVP_PKEY_pqdsa_new_raw_private_key(ffi::NID_MLDSA44, seed.as_ptr(), seed.len())
            },
            ffi::EVP_PKEY_free,
        )?;
        Some(MlDsa44Key { pkey })
    }

    /// The public key this seed makes.
    pub fn public_key(&self) -> Option<[u8; MLDSA44_PUBLIC_LEN]> {
        let mut out = [0u8; MLDSA44_PUBLIC_LEN];
        let mut len = out.len();
        // SAFETY: `out` has room for `len` bytes; AWS-LC writes at most that
        // many and stores the length written.
        let ok =
            unsafe { ffi::EVP_PKEY_get_raw_public_key(self.pkey.ptr, out.as_mut_ptr(), &mut len) };
        (ok == 1 && len == MLDSA44_PUBLIC_LEN).then_some(out)
    }

    /// A (hedged, randomised) ML-DSA-44 signature over `message` with the
    /// context string `context` (at most 255 bytes).
    pub fn sign(&self, message: &[u8], context: &[u8]) -> Option<Vec<u8>> {
        // SAFETY: a fresh digest context, owned by the guard; freeing it also
        // frees the key context EVP_DigestSignInit attaches to it.
        let md = Owned::new(unsafe { ffi::EVP_MD_CTX_new() }, ffi::EVP_MD_CTX_free)?;
        let mut pctx: *mut ffi::EVP_PKEY_CTX = ptr::null_mut();
        // SAFETY: md and the key are live; no digest (ML-DSA hashes the
        // message itself) and no engine. `pctx` receives a borrowed pointer.
        let init = unsafe {
            ffi::EVP_DigestSignInit(
                md.ptr,
                &mut pctx,
                ptr::null(),
                ptr::null_mut(),
                self.pkey.ptr,
            )
        };
        if init != 1 || pctx.is_null() {
            return None;
        }
        // SAFETY: pctx is live while md is; the context is copied.
        if unsafe { ffi::EVP_PKEY_CTX_set_signature_context(pctx, context.as_ptr(), context.len()) }
            != 1
        {
            return None;
        }
        let mut signature = vec![0u8; MLDSA44_SIGNATURE_LEN];
        let mut len = signature.len();
        // SAFETY: `signature` has room for `len` bytes, the most ML-DSA-44
        // writes; `message` is readable for its length.
        let ok = unsafe {
            ffi::EVP_DigestSign(
                md.ptr,
                signature.as_mut_ptr(),
                &mut len,
                message.as_ptr(),
                message.len(),
            )
        };
        (ok == 1 && len == MLDSA44_SIGNATURE_LEN).then_some(signature)
    }
}

/// Whether `signature` is an ML-DSA-44 signature by `public_key` over
/// `message` with the context string `context`.
pub fn mldsa44_verify(
    public_key: &[u8; MLDSA44_PUBLIC_LEN],
    message: &[u8],
    context: &[u8],
    signature: &[u8],
) -> bool {
    let verified = || -> Option<()> {
        // SAFETY: reads `public_key.len()` bytes; the key is owned by the guard.
        let pkey = Owned::new(
            unsafe {
                ffi::EVP_PKEY_pqdsa_new_raw_public_key(
                    ffi::NID_MLDSA44,
                    public_key.as_ptr(),
                    public_key.len(),
                )
            },
            ffi::EVP_PKEY_free,
        )?;
        // SAFETY: as in MlDsa44Key::sign.
        let md = Owned::new(unsafe { ffi::EVP_MD_CTX_new() }, ffi::EVP_MD_CTX_free)?;
        let mut pctx: *mut ffi::EVP_PKEY_CTX = ptr::null_mut();
        // SAFETY: as in MlDsa44Key::sign, for verification.
        let init = unsafe {
            ffi::EVP_DigestVerifyInit(md.ptr, &mut pctx, ptr::null(), ptr::null_mut(), pkey.ptr)
        };
        if init != 1 || pctx.is_null() {
            return None;
        }
        // SAFETY: pctx is live while md is; the context is copied.
        if unsafe { ffi::EVP_PKEY_CTX_set_signature_context(pctx, context.as_ptr(), context.len()) }
            != 1
        {
            return None;
        }
        // SAFETY: both buffers are readable for their lengths; AWS-LC checks
        // the signature length itself.
        let ok = unsafe {
            ffi::EVP_DigestVerify(
                md.ptr,
                signature.as_ptr(),
                signature.len(),
                message.as_ptr(),
                message.len(),
            )
        };
        (ok == 1).then_some(())
    };
    let result = verified().is_some();
    // A failed verification leaves an entry on AWS-LC's thread-local error
    // queue; clear it so it cannot be mistaken for a later call's error.
    // SAFETY: takes no arguments and touches only this thread's queue.
    unsafe { ffi::ERR_clear_error() };
    result
}
