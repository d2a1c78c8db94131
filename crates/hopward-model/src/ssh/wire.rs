//! SSH wire primitives (RFC 4251 §5): a bounds-checked reader over a borrowed
//! byte slice and the matching writers.
//!
//! Invariant: the reader never panics and never allocates; every read either
//! returns a sub-slice of the input or an error naming what was short.

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("truncated {0}")]
    Truncated(&'static str),
    #[error("{0} is not valid")]
    Invalid(&'static str),
    #[error("{0} unexpected trailing bytes")]
    Trailing(usize),
}

/// Reads SSH wire types from a byte slice.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Reader { rest: bytes }
    }

    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    pub fn remaining(&self) -> usize {
        self.rest.len()
    }

    /// Fails unless everything was read.
    pub fn finish(&self) -> Result<(), WireError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(WireError::Trailing(self.rest.len()))
        }
    }

    pub fn bytes(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.rest.len() < n {
            return Err(WireError::Truncated(what));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    pub fn u8(&mut self, what: &'static str) -> Result<u8, WireError> {
        Ok(self.bytes(1, what)?[0])
    }

    pub fn bool(&mut self, what: &'static str) -> Result<bool, WireError> {
        Ok(self.u8(what)? != 0)
    }

    pub fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, WireError> {
        let b = self.bytes(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_be_bytes(a))
    }

    /// A length-prefixed `string`.
    pub fn string(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let len = self.u32(what)? as usize;
        self.bytes(len, what)
    }

    /// A `string` that must be UTF-8 text.
    pub fn text(&mut self, what: &'static str) -> Result<&'a str, WireError> {
        std::str::from_utf8(self.string(what)?).map_err(|_| WireError::Invalid(what))
    }

    /// A non-negative `mpint`, returned as big-endian magnitude without the
    /// sign-padding zero.
    pub(crate) fn mpint(&mut self, what: &'static str) -> Result<&'a [u8], WireError> {
        let raw = self.string(what)?;
        match raw.first() {
            None => Ok(raw),
            Some(b) if b & 0x80 != 0 => Err(WireError::Invalid(what)),
            Some(0) => {
                let rest = &raw[1..];
                // A leading zero is only allowed to clear the sign bit.
                if rest.first().is_none_or(|b| b & 0x80 == 0) {
                    Err(WireError::Invalid(what))
                } else {
                    Ok(rest)
                }
            }
            Some(_) => Ok(raw),
        }
    }
}

pub fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

pub fn put_string(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u32(out, bytes.len() as u32);
    out.extend_from_slice(bytes);
}

/// SSH `mpint` of an unsigned big-endian integer.
pub fn put_mpint(out: &mut Vec<u8>, bytes: &[u8]) {
    let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    let trimmed = &bytes[start..];
    let pad = trimmed.first().is_some_and(|&b| b & 0x80 != 0);
    put_u32(out, (trimmed.len() + usize::from(pad)) as u32);
    if pad {
        out.push(0);
    }
    out.extend_from_slice(trimmed);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mpint_round_trip_and_strictness() {
        for value in [&[][..], &[1], &[0x80, 0], &[0x7f, 0xff]] {
            let mut out = Vec::new();
            put_mpint(&mut out, value);
            let mut r = Reader::new(&out);
            assert_eq!(r.mpint("x").unwrap(), value);
            r.finish().unwrap();
        }
        // negative, and a needless leading zero
        assert!(Reader::new(&[0, 0, 0, 1, 0x80]).mpint("x").is_err());
        assert!(Reader::new(&[0, 0, 0, 2, 0, 1]).mpint("x").is_err());
    }

    #[test]
    fn mpint_writer_pads_and_strips() {
        let mut out = Vec::new();
        put_mpint(&mut out, &[0, 0, 0x80, 1]);
        assert_eq!(out, vec![0, 0, 0, 3, 0, 0x80, 1]);
    }

    #[test]
    fn short_input_is_an_error_not_a_panic() {
        let mut r = Reader::new(&[0, 0, 1, 0, 1]);
        assert_eq!(r.string("blob"), Err(WireError::Truncated("blob")));
        assert_eq!(
            Reader::new(&[1, 2]).u32("n"),
            Err(WireError::Truncated("n"))
        );
        assert_eq!(Reader::new(&[1]).finish(), Err(WireError::Trailing(1)));
    }
}
