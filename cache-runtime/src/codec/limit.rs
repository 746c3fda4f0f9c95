//! A writer that refuses to grow past a size limit, so an oversize value
//! costs at most the limit in memory and the time to encode that much.

use std::io;

/// Appends to a `Vec` until `room` bytes have been written, then fails
/// every write (and remembers that it did, since the codec's error may not
/// say why).
pub(crate) struct Limited<'a> {
    out: &'a mut Vec<u8>,
    room: usize,
    max_len: usize,
    pub(crate) overflowed: bool,
}

impl<'a> Limited<'a> {
    pub(crate) fn new(out: &'a mut Vec<u8>, room: usize) -> Self {
        let max_len = out.len().saturating_add(room);
        Limited {
            out,
            room,
            max_len,
            overflowed: false,
        }
    }
}

impl io::Write for Limited<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() > self.room {
            self.overflowed = true;
            return Err(io::Error::other("value over the shared size limit"));
        }
        self.room -= buf.len();
        let want = self.out.len() + buf.len();
        if want > self.out.capacity() {
            // Doubling, but never past the limit: a value just under it
            // costs the limit, not twice the limit.
            let target = (self.out.capacity() * 2).max(want).min(self.max_len);
            self.out.reserve_exact(target - self.out.len());
        }
        self.out.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
