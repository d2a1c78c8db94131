//! Pages for shielded keys: an anonymous mapping of their own, locked out of
//! swap where RLIMIT_MEMLOCK allows, left out of core dumps, wiped before it
//! is unmapped.

use std::io;

/// Anonymous pages of our own, `mlock`ed when RLIMIT_MEMLOCK allows, left
/// out of core dumps, and wiped before they are unmapped.
///
/// The mapping is private to this value (never shared with the allocator),
/// so unlocking it on drop cannot unlock anything else. When locking fails
/// the pages still work; one warning per process says that keys may reach
/// swap, since repeating it for every key would only bury the first one.
pub struct LockedPages {
    ptr: std::ptr::NonNull<u8>,
    /// Bytes the caller asked for; the mapping is rounded up to pages.
    len: usize,
    mapped: usize,
    locked: bool,
}

// SAFETY: LockedPages owns its mapping exclusively; shared references only
// read it and writing needs `&mut`, as for a `Box<[u8]>`.
unsafe impl Send for LockedPages {}
// SAFETY: as above.
unsafe impl Sync for LockedPages {}

impl std::fmt::Debug for LockedPages {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the contents: they are key material.
        f.debug_struct("LockedPages")
            .field("len", &self.len)
            .field("locked", &self.locked)
            .finish_non_exhaustive()
    }
}

static MLOCK_WARNED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

impl LockedPages {
    /// Maps `len` zeroed bytes and tries to lock them into memory.
    pub fn new(len: usize) -> io::Result<Self> {
        // SAFETY: sysconf takes a plain integer.
        let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) })
            .ok()
            .filter(|&p| p > 0)
            .unwrap_or(4096);
        let mapped = len
            .max(1)
            .checked_next_multiple_of(page)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "mapping too large"))?;
        // SAFETY: a fresh private anonymous mapping; no existing memory is
        // touched and the result is checked against MAP_FAILED.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = std::ptr::NonNull::new(raw.cast::<u8>())
            .ok_or_else(|| io::Error::other("mmap returned a null mapping"))?;
        #[cfg(target_os = "linux")]
        // SAFETY: advice on the mapping we just made. Failure is harmless
        // (core dumps are already off; WIPEONFORK needs Linux 4.14), so the
        // results are ignored. WIPEONFORK gives a child forked to run a
        // confirmer zeroed pages here instead of a copy of the sealed keys.
        unsafe {
            libc::madvise(raw, mapped, libc::MADV_DONTDUMP);
            libc::madvise(raw, mapped, libc::MADV_WIPEONFORK);
        }
        // SAFETY: locks exactly the mapping we own.
        let locked = unsafe { libc::mlock(raw, mapped) } == 0;
        let lock_error = (!locked).then(io::Error::last_os_error);
        if let Some(err) = lock_error
            && !MLOCK_WARNED.swap(true, std::sync::atomic::Ordering::Relaxed)
        {
            tracing::warn!(
                "could not lock key memory into RAM ({err}; RLIMIT_MEMLOCK is {}): \
                 shielded keys may be written to swap; raise `ulimit -l` to prevent it",
                memlock_limit()
            );
        }
        Ok(LockedPages {
            ptr,
            len,
            mapped,
            locked,
        })
    }

    /// Whether the pages are locked into memory.
    pub fn is_locked(&self) -> bool {
        self.locked
    }
}

impl std::ops::Deref for LockedPages {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: the mapping is at least `len` bytes, readable, initialised
        // (anonymous pages start zeroed) and lives as long as `self`.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl std::ops::DerefMut for LockedPages {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as for Deref; `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for LockedPages {
    fn drop(&mut self) {
        // SAFETY: the whole mapping is ours and writable; no reference to it
        // outlives `self`.
        let all = unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.mapped) };
        zeroize::Zeroize::zeroize(all);
        let raw = self.ptr.as_ptr().cast::<libc::c_void>();
        // SAFETY: unlock and unmap exactly the mapping made in `new`; it is
        // not used after this point.
        unsafe {
            if self.locked {
                libc::munlock(raw, self.mapped);
            }
            libc::munmap(raw, self.mapped);
        }
    }
}

/// RLIMIT_MEMLOCK's soft limit in human form, for the warning.
fn memlock_limit() -> String {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } != 0 {
        return "unknown".into();
    }
    if limit.rlim_cur == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        format!("{} KiB", limit.rlim_cur / 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_start_zeroed_and_hold_what_is_written() {
        let mut pages = LockedPages::new(20_000).unwrap();
        assert_eq!(pages.len(), 20_000);
        assert!(pages.iter().all(|&b| b == 0));
        pages[19_999] = 7;
        pages[0] = 9;
        assert_eq!((pages[0], pages[19_999]), (9, 7));
        assert_eq!(pages.mapped % 4096, 0);
        assert!(pages.mapped >= 20_000);
        assert!(!format!("{pages:?}").contains('9'));
    }
}
