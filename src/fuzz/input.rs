//! Reads structured fields out of a fuzz input, never failing: what is missing reads as empty.

/// The unread rest of one input.
pub(crate) struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    /// Starts reading `data`.
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self(data)
    }

    /// The next byte (0 past the end).
    pub(crate) fn byte(&mut self) -> u8 {
        let (first, rest) = self.0.split_first().map_or((0, &[][..]), |(b, r)| (*b, r));
        self.0 = rest;
        first
    }

    /// A chunk prefixed by its length byte (shorter when the input ends first).
    #[cfg(feature = "service")]
    pub(crate) fn chunk(&mut self) -> &'a [u8] {
        let len = usize::from(self.byte());
        self.take(len)
    }

    /// The next `len` bytes (fewer when the input ends first).
    pub(crate) fn take(&mut self, len: usize) -> &'a [u8] {
        let (head, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        head
    }

    /// Everything not read yet.
    pub(crate) fn rest(self) -> &'a [u8] {
        self.0
    }
}

/// Writes a chunk as `Input::chunk` reads it (at most 255 bytes of `bytes`).
#[cfg(feature = "service")]
pub(crate) fn push_chunk(out: &mut Vec<u8>, bytes: &[u8]) {
    let bytes = &bytes[..bytes.len().min(255)];
    out.push(bytes.len() as u8);
    out.extend_from_slice(bytes);
}
