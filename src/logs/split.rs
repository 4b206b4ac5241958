//! Byte stream -> lines, for one pipe. Pure and synchronous, so it can be tested and benchmarked without
//! processes; it must not know about timestamps, streams, channels or files.
//!
//! Rules (the same whatever the read boundaries were, see the `chunking_does_not_change_lines` test):
//! - a line ends at `\n`; the `\n` and one trailing `\r` are not part of it;
//! - a line longer than [`MAX_LINE_BYTES`] is cut into pieces of at most that many bytes, cut on a UTF-8
//!   character boundary when the bytes are valid UTF-8; nothing is dropped, the pieces come out in order
//!   and only the last piece of a line had its `\r` stripped;
//! - bytes after the last `\n` are held until more bytes, the end of the stream ([`LineSplitter::finish`])
//!   or the length limit arrive. There is deliberately no idle flush: a line is never emitted half-way
//!   just because the service paused mid-line.

use memchr::memchr;

/// Longest line (in bytes) stored as one [`LogLine`](super::LogLine); longer lines become several.
pub const MAX_LINE_BYTES: usize = 16 * 1024;

/// Splits one pipe's bytes into lines; see the module documentation for the rules.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// Bytes after the last newline seen. Never longer than `MAX_LINE_BYTES + 1`, so a service that
    /// never writes a newline cannot make tend grow without bound.
    pending: Vec<u8>,
}

impl LineSplitter {
    pub fn new() -> LineSplitter {
        LineSplitter::default()
    }

    /// Feeds bytes read from the pipe, calling `emit` once per finished line or piece, in order.
    pub fn feed(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(&[u8])) {
        while let Some(nl) = memchr(b'\n', chunk) {
            let (line, rest) = (&chunk[..nl], &chunk[nl + 1..]);
            if self.pending.is_empty() {
                // Hot path: complete lines go straight from the read buffer, no copy.
                emit_line(line, emit);
            } else {
                self.pending.extend_from_slice(line);
                emit_line(&self.pending, emit);
                self.pending.clear();
            }
            chunk = rest;
        }
        if !chunk.is_empty() {
            self.pending.extend_from_slice(chunk);
            self.emit_full_pieces(emit);
        }
    }

    /// The stream ended: emits the held partial line, if any.
    pub fn finish(&mut self, emit: &mut impl FnMut(&[u8])) {
        if !self.pending.is_empty() {
            emit_line(&self.pending, emit);
            self.pending.clear();
        }
    }

    /// Hands over the held partial line without emitting it (the capture moves to another tend).
    pub fn take_pending(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.pending)
    }

    /// Bytes held waiting for the end of their line.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Emits the pieces of a still-growing line that [`emit_line`] would cut anyway. Waits until more
    /// than `MAX_LINE_BYTES + 1` bytes are held, so a `\r` that turns out to end the line is still stripped
    /// and the cut points do not depend on where reads ended.
    fn emit_full_pieces(&mut self, emit: &mut impl FnMut(&[u8])) {
        let mut start = 0;
        while self.pending.len() - start > MAX_LINE_BYTES + 1 {
            let cut = cut_point(&self.pending[start..]);
            emit(&self.pending[start..start + cut]);
            start += cut;
        }
        if start > 0 {
            self.pending.drain(..start);
        }
    }
}

/// Emits one complete line (without its `\n`), cut into pieces if it is too long.
fn emit_line(line: &[u8], emit: &mut impl FnMut(&[u8])) {
    let mut rest = line.strip_suffix(b"\r").unwrap_or(line);
    while rest.len() > MAX_LINE_BYTES {
        let cut = cut_point(rest);
        emit(&rest[..cut]);
        rest = &rest[cut..];
    }
    emit(rest);
}

/// Where to cut `bytes` (longer than `MAX_LINE_BYTES`): at the limit, moved back to the start of a
/// UTF-8 character if the limit falls inside one. Invalid UTF-8 is cut at the limit.
fn cut_point(bytes: &[u8]) -> usize {
    let is_continuation = |b: u8| b & 0xC0 == 0x80;
    let mut cut = MAX_LINE_BYTES;
    // A UTF-8 character is at most 4 bytes, so its start is at most 3 bytes back.
    while cut > MAX_LINE_BYTES - 3 && is_continuation(bytes[cut]) {
        cut -= 1;
    }
    if is_continuation(bytes[cut]) {
        MAX_LINE_BYTES
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split_in_chunks(input: &[u8], chunk: usize) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut splitter = LineSplitter::new();
        for piece in input.chunks(chunk.max(1)) {
            splitter.feed(piece, &mut |l: &[u8]| out.push(l.to_vec()));
            assert!(splitter.pending_len() <= MAX_LINE_BYTES + 1);
        }
        splitter.finish(&mut |l: &[u8]| out.push(l.to_vec()));
        out
    }

    fn split(input: &[u8]) -> Vec<Vec<u8>> {
        split_in_chunks(input, input.len())
    }

    #[test]
    fn splits_on_newline_and_strips_one_carriage_return() {
        assert_eq!(
            split(b"a\nb\r\n\nc\r\r\nd"),
            vec![
                b"a".to_vec(),
                b"b".to_vec(),
                b"".to_vec(),
                b"c\r".to_vec(),
                b"d".to_vec()
            ]
        );
    }

    #[test]
    fn partial_line_is_held_until_newline_or_finish() {
        let mut splitter = LineSplitter::new();
        let mut out: Vec<Vec<u8>> = Vec::new();
        splitter.feed(b"Traceback (most", &mut |l: &[u8]| out.push(l.to_vec()));
        assert!(out.is_empty(), "a partial line must not be emitted early");
        assert_eq!(splitter.pending_len(), 15);
        splitter.feed(b" recent call last):\n  File", &mut |l: &[u8]| {
            out.push(l.to_vec())
        });
        assert_eq!(out, vec![b"Traceback (most recent call last):".to_vec()]);
        splitter.finish(&mut |l: &[u8]| out.push(l.to_vec()));
        assert_eq!(out.last().unwrap(), b"  File");
        assert_eq!(splitter.pending_len(), 0);
    }

    #[test]
    fn empty_input_and_lone_newline() {
        assert!(split(b"").is_empty());
        assert_eq!(split(b"\n"), vec![Vec::<u8>::new()]);
    }

    #[test]
    fn long_line_is_cut_into_max_sized_pieces_without_loss() {
        let line = vec![b'x'; 100_000];
        let mut input = line.clone();
        input.push(b'\n');
        let pieces = split(&input);
        assert_eq!(pieces.len(), 100_000_usize.div_ceil(MAX_LINE_BYTES));
        assert!(pieces[..pieces.len() - 1]
            .iter()
            .all(|p| p.len() == MAX_LINE_BYTES));
        assert_eq!(pieces.concat(), line);
    }

    #[test]
    fn long_line_is_cut_on_char_boundaries() {
        for ch in ["é", "€", "🚀"] {
            for offset in 0..4 {
                let text = format!("{}{}", "a".repeat(offset), ch.repeat(40_000 / ch.len()));
                let pieces = split(text.as_bytes());
                assert!(pieces.len() > 1);
                for piece in &pieces {
                    assert!(piece.len() <= MAX_LINE_BYTES);
                    assert!(
                        std::str::from_utf8(piece).is_ok(),
                        "piece cut inside a character"
                    );
                }
                assert_eq!(pieces.concat(), text.as_bytes());
            }
        }
    }

    #[test]
    fn invalid_utf8_is_cut_at_the_limit() {
        let input = vec![0x80u8; MAX_LINE_BYTES * 2 + 5];
        let pieces = split(&input);
        assert_eq!(
            pieces.iter().map(Vec::len).collect::<Vec<_>>(),
            vec![MAX_LINE_BYTES, MAX_LINE_BYTES, 5]
        );
    }

    #[test]
    fn chunking_does_not_change_lines() {
        // Mixed short, empty, CRLF, multibyte, long and unterminated lines.
        let mut input = Vec::new();
        input.extend_from_slice(b"short\r\n\nsecond line\n");
        input.extend_from_slice("ü".repeat(MAX_LINE_BYTES).as_bytes());
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&[b'y'; MAX_LINE_BYTES + 1]);
        input.extend_from_slice(b"\r\n");
        input.extend_from_slice(&[b'z'; MAX_LINE_BYTES]);
        input.extend_from_slice(b"\ntail without newline");
        let whole = split(&input);
        for chunk in [
            1,
            2,
            3,
            7,
            100,
            4096,
            MAX_LINE_BYTES - 1,
            MAX_LINE_BYTES + 1,
        ] {
            assert_eq!(split_in_chunks(&input, chunk), whole, "chunk size {chunk}");
        }
        assert_eq!(whole.last().unwrap(), b"tail without newline");
        assert!(whole.iter().all(|l| !l.contains(&b'\n')));
        assert!(whole.iter().all(|l| l.last() != Some(&b'\r')));
    }
}
