//! Agent wire framing: `u32 length || body`, at most 256 KiB per frame.
//!
//! Invariants: a frame is handed out only when complete; bytes after it (a
//! second request in the same write) stay buffered for the next call; every
//! byte of a consumed frame is zeroized before the buffer is reused, because
//! `ssh-add` frames carry private keys and lock passphrases.

use tokio::io::{AsyncRead, AsyncReadExt as _};
use zeroize::Zeroize as _;

/// The largest frame accepted, as in OpenSSH (`AGENT_MAX_LEN`).
pub const MAX_FRAME: usize = 256 * 1024;

/// The buffer a connection keeps between frames. A larger one, left by a
/// large frame, is given back once that frame is consumed: otherwise every
/// connection that ever sent a 256 KiB frame would hold 256 KiB while it
/// sits idle. Honest requests (a signature, an `ssh-add` of an RSA or
/// ML-DSA key) fit in it.
const KEEP_CAPACITY: usize = 16 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame length {0} is out of range (1..={MAX_FRAME})")]
    BadLength(usize),
    #[error("connection closed in the middle of a frame")]
    Truncated,
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// The body length a frame's 4-byte header declares, once `bytes` holds
/// the header; not checked against anything.
pub fn declared_len(bytes: &[u8]) -> Option<usize> {
    let header: [u8; 4] = bytes.get(..4)?.try_into().ok()?;
    Some(u32::from_be_bytes(header) as usize)
}

/// Reads frames from one connection into a reused, zeroized buffer.
#[derive(Debug, Default)]
pub struct FrameReader {
    buf: Vec<u8>,
    /// Bytes of `buf` taken by the frame handed out last; dropped (and
    /// zeroized) at the next call.
    consumed: usize,
    /// Whether the buffer ever grew past what it keeps between frames.
    grew: bool,
}

impl FrameReader {
    pub fn new() -> Self {
        Self {
            buf: Vec::with_capacity(4096),
            consumed: 0,
            grew: false,
        }
    }

    /// The next complete frame body, or `Ok(None)` on a clean end of stream.
    pub async fn next<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<Option<&[u8]>, FrameError> {
        self.discard_consumed();
        loop {
            if let Some(len) = declared_len(&self.buf) {
                if len == 0 || len > MAX_FRAME {
                    return Err(FrameError::BadLength(len));
                }
                if self.buf.len() >= 4 + len {
                    self.consumed = 4 + len;
                    return Ok(Some(&self.buf[4..4 + len]));
                }
                self.reserve_wiped(4 + len - self.buf.len());
            } else {
                self.reserve_wiped(4096);
            }
            let n = reader.read_buf(&mut self.buf).await?;
            if n == 0 {
                return if self.buf.is_empty() {
                    Ok(None)
                } else {
                    Err(FrameError::Truncated)
                };
            }
        }
    }

    /// Reads whatever the peer sends next into the buffer, without handing
    /// out a frame; `Ok(0)` means the peer hung up. Used to notice a client
    /// that goes away while its request is still being decided.
    pub async fn fill<R: AsyncRead + Unpin>(
        &mut self,
        reader: &mut R,
    ) -> Result<usize, FrameError> {
        self.discard_consumed();
        self.reserve_wiped(4096);
        Ok(reader.read_buf(&mut self.buf).await?)
    }

    /// `Vec::reserve` that wipes the old allocation when it has to move:
    /// a plain reallocation would free a copy of a half-read key frame
    /// without wiping it.
    fn reserve_wiped(&mut self, additional: usize) {
        if self.buf.capacity() - self.buf.len() >= additional {
            return;
        }
        let mut bigger = Vec::with_capacity(self.buf.len() + additional.max(4096));
        self.grew |= bigger.capacity() > KEEP_CAPACITY;
        bigger.extend_from_slice(&self.buf);
        self.buf.zeroize();
        self.buf = bigger;
    }

    fn discard_consumed(&mut self) {
        if self.consumed == 0 {
            return;
        }
        self.buf[..self.consumed].zeroize();
        self.buf.drain(..self.consumed);
        // drain() moved the tail to the front but left its old copy past the
        // new length; wipe that too.
        for byte in self.buf.spare_capacity_mut().iter_mut().take(self.consumed) {
            byte.write(0);
        }
        self.consumed = 0;
        if self.buf.capacity() > KEEP_CAPACITY && self.buf.len() <= KEEP_CAPACITY / 2 {
            let mut smaller = Vec::with_capacity(KEEP_CAPACITY);
            smaller.extend_from_slice(&self.buf);
            self.buf.zeroize();
            self.buf = smaller;
        }
    }

    /// Wipes the frame handed out last, now rather than at the next read:
    /// for a connection whose next request does not come through this
    /// reader (hopward answers some requests straight off the socket).
    pub fn wipe_consumed(&mut self) {
        self.discard_consumed();
    }

    /// Whether a large frame (more than the buffer keeps between frames)
    /// was ever read: the memory it took is worth giving back to the
    /// system when the connection ends.
    pub fn grew(&self) -> bool {
        self.grew
    }

    /// Bytes received but not yet handed out (for tests and diagnostics).
    pub fn pending(&self) -> usize {
        self.buf.len() - self.consumed
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        // Zeroizes the whole capacity, not only the live bytes.
        self.buf.zeroize();
    }
}

/// Wraps a body in its length prefix.
pub fn encode(body: &[u8]) -> Vec<u8> {
    build(body.len(), |out| out.extend_from_slice(body))
}

/// A frame whose body `write` puts straight after the length prefix, with
/// room for about `capacity` body bytes (no copy of a body built first).
pub fn build(capacity: usize, write: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + capacity);
    out.extend_from_slice(&[0; 4]);
    write(&mut out);
    let len = u32::try_from(out.len() - 4).unwrap_or(u32::MAX);
    out[..4].copy_from_slice(&len.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_frame_larger_than_the_first_read_is_reassembled() {
        let body: Vec<u8> = (0..20_000u32).map(|i| i as u8).collect();
        let framed = encode(&body);
        // A reader that hands out 1000 bytes at a time, so the buffer grows.
        let mut reader = tokio_test_chunks(&framed, 1000);
        let mut frames = FrameReader::new();
        assert_eq!(frames.next(&mut reader).await.unwrap(), Some(&body[..]));
    }

    /// An AsyncRead over `data` that returns at most `chunk` bytes per read.
    fn tokio_test_chunks(data: &[u8], chunk: usize) -> impl AsyncRead + Unpin {
        let (client, mut server) = tokio::io::duplex(chunk);
        let data = data.to_vec();
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            server.write_all(&data).await.unwrap();
        });
        client
    }

    #[tokio::test]
    async fn splits_two_frames_from_one_write() {
        let data = [0, 0, 0, 1, 11, 0, 0, 0, 2, 27, 1];
        let mut reader = &data[..];
        let mut frames = FrameReader::new();
        assert_eq!(frames.next(&mut reader).await.unwrap(), Some(&[11u8][..]));
        assert_eq!(
            frames.next(&mut reader).await.unwrap(),
            Some(&[27u8, 1][..])
        );
        assert_eq!(frames.next(&mut reader).await.unwrap(), None);
    }

    #[tokio::test]
    async fn rejects_zero_and_oversize_lengths() {
        let mut frames = FrameReader::new();
        let zero = [0u8, 0, 0, 0];
        assert!(matches!(
            frames.next(&mut &zero[..]).await,
            Err(FrameError::BadLength(0))
        ));
        let mut frames = FrameReader::new();
        let big = ((MAX_FRAME + 1) as u32).to_be_bytes();
        assert!(matches!(
            frames.next(&mut &big[..]).await,
            Err(FrameError::BadLength(_))
        ));
    }

    #[tokio::test]
    async fn truncated_frame_is_an_error() {
        let mut frames = FrameReader::new();
        let data = [0u8, 0, 0, 5, 1, 2];
        assert!(matches!(
            frames.next(&mut &data[..]).await,
            Err(FrameError::Truncated)
        ));
    }

    #[tokio::test]
    async fn byte_at_a_time_assembles_one_frame() {
        let (mut client, mut server) = tokio::io::duplex(1);
        let writer = tokio::spawn(async move {
            use tokio::io::AsyncWriteExt as _;
            for b in [0u8, 0, 0, 3, 13, 14, 15] {
                client.write_all(&[b]).await.unwrap();
            }
        });
        let mut frames = FrameReader::new();
        assert_eq!(
            frames.next(&mut server).await.unwrap(),
            Some(&[13u8, 14, 15][..])
        );
        writer.await.unwrap();
    }

    #[tokio::test]
    async fn consumed_frames_are_wiped() {
        let data = [0u8, 0, 0, 2, 0xAA, 0xBB, 0, 0, 0, 1, 11];
        let mut reader = &data[..];
        let mut frames = FrameReader::new();
        frames.next(&mut reader).await.unwrap();
        frames.next(&mut reader).await.unwrap();
        assert!(!frames.buf.contains(&0xAA));
        assert_eq!(frames.pending(), 0);
    }

    /// A connection that sent one large frame does not keep a large buffer
    /// while it waits for the next one.
    #[tokio::test]
    async fn a_large_frame_leaves_no_large_buffer() {
        let mut data = encode(&vec![7u8; MAX_FRAME]);
        data.extend_from_slice(&[0, 0, 0, 1, 11]);
        let mut reader = &data[..];
        let mut frames = FrameReader::new();
        assert_eq!(
            frames.next(&mut reader).await.unwrap().unwrap().len(),
            MAX_FRAME
        );
        assert!(frames.buf.capacity() > MAX_FRAME);
        assert_eq!(frames.next(&mut reader).await.unwrap(), Some(&[11u8][..]));
        assert!(
            frames.buf.capacity() <= KEEP_CAPACITY,
            "{}",
            frames.buf.capacity()
        );
    }
}
