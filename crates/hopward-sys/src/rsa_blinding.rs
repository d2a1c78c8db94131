//! RSA signatures by a key rebuilt for each signature, blinded with values
//! kept from one signature to the next.
//!
//! A shielded RSA key is rebuilt from its opened numbers for every
//! signature (`crate::keys::shield`). AWS-LC blinds every private-key
//! operation (the input is multiplied by rᵉ and the result by r⁻¹, so the
//! time the exponentiation takes says nothing about what it was given) and
//! keeps the blinding values in the key object. A key object made for one
//! signature has none, so AWS-LC drew them anew every time, with a modular
//! inversion modulo n that took almost a quarter of each RSA-3072
//! signature.
//!
//! Here the blinding values, and the Montgomery context of the modulus they
//! need, live beside the sealed key instead. They are made from the public
//! key (n, e) and randomness alone, and are kept and renewed exactly as
//! AWS-LC keeps and renews its own: squared after each use, drawn afresh
//! every 32 uses, one pair per signature in progress. The rebuilt key signs
//! with AWS-LC's own blinding off, on an input already blinded here; AWS-LC
//! still checks its result s against the public key (sᵉ must give back the
//! blinded input) before it is unblinded, the check that keeps a faulty
//! CRT signature from revealing p.
//!
//! Invariants: nothing kept here is derived from the private key; a
//! blinding pair serves one signature at a time (taken from the pool and
//! put back after); a pair whose update failed is dropped, never reused;
//! every number is wiped when freed. AWS-LC renews its own pairs after a
//! fork so that parent and child never blind alike; hopward forks only as
//! it starts, before it holds any key, and starts its helpers with exec,
//! so no pair is ever on both sides of a fork.

use std::os::raw::c_int;
use std::ptr;
use std::sync::Mutex;
#[cfg(any(test, feature = "testing"))]
use std::sync::atomic::{AtomicUsize, Ordering};

use aws_lc_sys as ffi;

use super::signing::{Owned, RsaHash, RsaNumbers, hash_nid};

/// Uses of one blinding pair before it is drawn afresh; AWS-LC's
/// `BN_BLINDING_COUNTER`.
const RENEW_EVERY: u32 = 32;
/// Pairs kept for reuse: more signatures than this at once make their pair
/// for the occasion and drop it after.
const MAX_KEPT: usize = 64;

/// The public half of an RSA key prepared for blinded signatures: n, e, the
/// Montgomery context of n and the blinding pairs not in use.
pub struct RsaBlinder {
    /// The public key as given, to refuse the numbers of any other key.
    public: (Vec<u8>, Vec<u8>),
    n: Owned<ffi::BIGNUM>,
    e: Owned<ffi::BIGNUM>,
    mont: Owned<ffi::BN_MONT_CTX>,
    /// Length of n in bytes: of the padded message and of the signature.
    size: usize,
    kept: Mutex<Vec<Blinding>>,
    /// How many pairs were drawn afresh, for tests of how often.
    #[cfg(any(test, feature = "testing"))]
    drawn: AtomicUsize,
}

// SAFETY: n, e and the Montgomery context are only read after `new`
// (AWS-LC takes them as const); the pairs are behind the mutex, and each is
// used by one thread at a time.
unsafe impl Send for RsaBlinder {}
// SAFETY: as above.
unsafe impl Sync for RsaBlinder {}

impl std::fmt::Debug for RsaBlinder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RsaBlinder({} bits)", self.size * 8)
    }
}

/// A blinding pair in Montgomery form: a = rᵉ·R and ai = r⁻¹·R mod n.
struct Blinding {
    a: Owned<ffi::BIGNUM>,
    ai: Owned<ffi::BIGNUM>,
    /// Uses since it was drawn; starts at the limit so the first use draws.
    uses: u32,
}

// SAFETY: two numbers owned by this value alone; AWS-LC BIGNUMs have no tie
// to the thread that made them.
unsafe impl Send for Blinding {}

impl RsaBlinder {
    /// Prepares the public key (n, e), big-endian. None if AWS-LC cannot
    /// make a Montgomery context for n (an even or zero modulus).
    pub fn new(n: &[u8], e: &[u8]) -> Option<Self> {
        let public = (n.to_vec(), e.to_vec());
        let (n, e) = (bignum(n)?, bignum(e)?);
        let ctx = new_ctx()?;
        // SAFETY: n and ctx are live; the context is owned by the guard.
        let mont = Owned::new(
            unsafe { ffi::BN_MONT_CTX_new_for_modulus(n.ptr, ctx.ptr) },
            ffi::BN_MONT_CTX_free,
        )?;
        // SAFETY: n is live.
        let size = unsafe { ffi::BN_num_bytes(n.ptr) } as usize;
        Some(RsaBlinder {
            public,
            n,
            e,
            mont,
            size,
            kept: Mutex::new(Vec::new()),
            #[cfg(any(test, feature = "testing"))]
            drawn: AtomicUsize::new(0),
        })
    }

    /// A PKCS#1 v1.5 signature over a precomputed `digest` made with
    /// `hash`, by the key `numbers`; None unless its n and e are this
    /// blinder's (values blinded for another modulus would come back as a
    /// wrong signature).
    pub fn sign(&self, numbers: &RsaNumbers<'_>, hash: RsaHash, digest: &[u8]) -> Option<Vec<u8>> {
        if (numbers.n, numbers.e) != (&self.public.0[..], &self.public.1[..]) {
            return None;
        }
        let padded = self.pkcs1_padded(hash, digest)?;
        let ctx = new_ctx()?;
        let kept = self.kept.lock().ok()?.pop();
        let mut blinding = kept.map_or_else(Blinding::new, Some)?;
        self.renew(&mut blinding, &ctx)?;

        let blinded = self.multiply(&padded, &blinding.a, &ctx)?;
        let key = unblinded_key(numbers)?;
        let mut raw = vec![0u8; self.size];
        let mut written = 0usize;
        // SAFETY: the key is live; `raw` has room for RSA_size bytes, the
        // most RSA_sign_raw writes; `blinded` is readable for its length.
        let ok = unsafe {
            ffi::RSA_sign_raw(
                key.ptr,
                &mut written,
                raw.as_mut_ptr(),
                raw.len(),
                blinded.as_ptr(),
                blinded.len(),
                ffi::RSA_NO_PADDING as c_int,
            )
        };
        drop(key);
        if ok != 1 || written != self.size {
            return None;
        }
        let signature = self.multiply(&raw, &blinding.ai, &ctx)?;

        if let Ok(mut kept) = self.kept.lock()
            && kept.len() < MAX_KEPT
        {
            kept.push(blinding);
        }
        Some(signature)
    }

    /// EMSA-PKCS1-v1_5: 00 01 FF…FF 00, then the DigestInfo of `digest`,
    /// as long as n.
    fn pkcs1_padded(&self, hash: RsaHash, digest: &[u8]) -> Option<Vec<u8>> {
        let (mut info, mut info_len, mut allocated): (*mut u8, usize, c_int) =
            (ptr::null_mut(), 0, 0);
        // SAFETY: `digest` is readable for its length; AWS-LC checks that
        // length against the hash and stores a pointer, a length and whether
        // the buffer is its own to free.
        let ok = unsafe {
            ffi::RSA_add_pkcs1_prefix(
                &mut info,
                &mut info_len,
                &mut allocated,
                hash_nid(hash),
                digest.as_ptr(),
                digest.len(),
            )
        };
        if ok != 1 || info.is_null() {
            return None;
        }
        // SAFETY: AWS-LC returned `info_len` readable bytes at `info`.
        let digest_info = unsafe { std::slice::from_raw_parts(info, info_len) }.to_vec();
        if allocated != 0 {
            // SAFETY: allocated by AWS-LC for us, freed once.
            unsafe { ffi::OPENSSL_free(info.cast()) };
        }
        // At least eight bytes of FF, as RFC 8017 requires.
        let fill = self.size.checked_sub(digest_info.len() + 3)?;
        if fill < 8 {
            return None;
        }
        let mut padded = Vec::with_capacity(self.size);
        padded.extend_from_slice(&[0, 1]);
        padded.resize(2 + fill, 0xff);
        padded.push(0);
        padded.extend_from_slice(&digest_info);
        Some(padded)
    }

    /// `value` (big-endian, below n) times the number `factor` holds in
    /// Montgomery form, mod n, as `size` big-endian bytes.
    fn multiply(
        &self,
        value: &[u8],
        factor: &Owned<ffi::BIGNUM>,
        ctx: &Owned<ffi::BN_CTX>,
    ) -> Option<Vec<u8>> {
        let x = bignum(value)?;
        let mut out = vec![0u8; self.size];
        // SAFETY: all pointers are live; x and factor are below n, as
        // BN_mod_mul_montgomery requires; `out` has room for `size` bytes.
        let ok = unsafe {
            ffi::BN_mod_mul_montgomery(x.ptr, x.ptr, factor.ptr, self.mont.ptr, ctx.ptr) == 1
                && ffi::BN_bn2bin_padded(out.as_mut_ptr(), out.len(), x.ptr) == 1
        };
        ok.then_some(out)
    }

    /// Readies a pair for its next use: squares it, or every
    /// [`RENEW_EVERY`] uses draws it afresh (AWS-LC's
    /// `bn_blinding_update`).
    fn renew(&self, blinding: &mut Blinding, ctx: &Owned<ffi::BN_CTX>) -> Option<()> {
        blinding.uses += 1;
        if blinding.uses < RENEW_EVERY {
            // SAFETY: all pointers are live; both numbers are below n.
            let squared = unsafe {
                ffi::BN_mod_mul_montgomery(
                    blinding.a.ptr,
                    blinding.a.ptr,
                    blinding.a.ptr,
                    self.mont.ptr,
                    ctx.ptr,
                ) == 1
                    && ffi::BN_mod_mul_montgomery(
                        blinding.ai.ptr,
                        blinding.ai.ptr,
                        blinding.ai.ptr,
                        self.mont.ptr,
                        ctx.ptr,
                    ) == 1
            };
            return squared.then_some(());
        }
        let mut no_inverse: c_int = 0;
        // AWS-LC's `bn_blinding_create_param`: r random in [1, n), ai its
        // inverse in Montgomery form (BN_from_montgomery then the inversion
        // gives R/r), a = rᵉ in Montgomery form.
        // SAFETY: all pointers are live; the outputs are distinct numbers.
        let drawn = unsafe {
            ffi::BN_rand_range_ex(blinding.a.ptr, 1, self.n.ptr) == 1
                && ffi::BN_from_montgomery(blinding.ai.ptr, blinding.a.ptr, self.mont.ptr, ctx.ptr)
                    == 1
                && ffi::BN_mod_inverse_blinded(
                    blinding.ai.ptr,
                    &mut no_inverse,
                    blinding.ai.ptr,
                    self.mont.ptr,
                    ctx.ptr,
                ) == 1
                && ffi::BN_mod_exp_mont(
                    blinding.a.ptr,
                    blinding.a.ptr,
                    self.e.ptr,
                    self.n.ptr,
                    ctx.ptr,
                    self.mont.ptr,
                ) == 1
                && ffi::BN_to_montgomery(blinding.a.ptr, blinding.a.ptr, self.mont.ptr, ctx.ptr)
                    == 1
        };
        if !drawn {
            return None;
        }
        blinding.uses = 0;
        #[cfg(any(test, feature = "testing"))]
        self.drawn.fetch_add(1, Ordering::Relaxed);
        Some(())
    }

    /// How many blinding pairs were drawn afresh so far.
    #[cfg(any(test, feature = "testing"))]
    pub fn drawn(&self) -> usize {
        self.drawn.load(Ordering::Relaxed)
    }

    /// How many pairs wait for reuse.
    #[cfg(any(test, feature = "testing"))]
    pub fn kept(&self) -> usize {
        self.kept.lock().map_or(0, |kept| kept.len())
    }
}

impl Blinding {
    fn new() -> Option<Self> {
        Some(Blinding {
            // SAFETY: fresh numbers, owned by their guards.
            a: Owned::new(unsafe { ffi::BN_new() }, ffi::BN_clear_free)?,
            // SAFETY: as above.
            ai: Owned::new(unsafe { ffi::BN_new() }, ffi::BN_clear_free)?,
            uses: RENEW_EVERY - 1,
        })
    }
}

/// The private key `numbers` with AWS-LC's own blinding off: only
/// [`RsaBlinder::sign`] uses it, on an input it blinded itself.
fn unblinded_key(numbers: &RsaNumbers<'_>) -> Option<Owned<ffi::RSA>> {
    let key = super::signing::rsa_key(numbers)?;
    // SAFETY: the key is live; this only sets a flag bit.
    unsafe { ffi::RSA_set_flags(key.ptr, ffi::RSA_FLAG_NO_BLINDING as c_int) };
    Some(key)
}

/// A new BIGNUM holding `bytes` (big-endian), wiped when freed.
fn bignum(bytes: &[u8]) -> Option<Owned<ffi::BIGNUM>> {
    // SAFETY: BN_bin2bn reads `bytes.len()` bytes and returns a new BIGNUM,
    // owned by the guard.
    Owned::new(
        unsafe { ffi::BN_bin2bn(bytes.as_ptr(), bytes.len(), ptr::null_mut()) },
        ffi::BN_clear_free,
    )
}

fn new_ctx() -> Option<Owned<ffi::BN_CTX>> {
    // SAFETY: a fresh context, owned by the guard.
    Owned::new(unsafe { ffi::BN_CTX_new() }, ffi::BN_CTX_free)
}
