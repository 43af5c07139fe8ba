//! Memory for the weight table, in 2 MB pages where Linux grants them.
//!
//! Every n-gram of a comment reads one row of a 16 MB table at a random place. In 4 KB pages
//! that is 4,096 pages, far more than the CPU's TLB holds, so nearly every row read also walks
//! the page tables, even when the row itself is in cache. In 2 MB pages the table is 8 pages.
//! Linux hands out such pages to a region that asks for them with `madvise(MADV_HUGEPAGE)`
//! (transparent huge pages, Debian's default `madvise` mode) before it is first written, so the
//! table is written (decoded from the model file, or copied) into a fresh, 2 MB-aligned
//! anonymous mapping that asks. Elsewhere (another OS, a small table, a refused mapping) it
//! stays an ordinary `Vec`. Only where the values live changes, never what they are.

use std::ops::Deref;

/// The quantized weights of a table: a slice of `i16`, in huge pages where possible.
pub struct Weights(Storage);

enum Storage {
    Heap(Vec<i16>),
    #[cfg(target_os = "linux")]
    Mapped(huge::Mapping),
}

impl Weights {
    /// Moves `values` into huge pages when the table is large enough to gain from them.
    pub fn new(values: Vec<i16>) -> Self {
        #[cfg(target_os = "linux")]
        if let Some(m) = huge::Mapping::copy_of(&values) {
            return Self(Storage::Mapped(m));
        }
        Self(Storage::Heap(values))
    }

    /// The table stored as `bytes` (little-endian `i16` pairs; a last odd byte is ignored),
    /// decoded straight into where it will live: a model load holds no second copy.
    pub fn from_le_bytes(bytes: &[u8]) -> Self {
        let decode = |out: &mut [i16]| {
            for (v, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *v = i16::from_le_bytes([b[0], b[1]]);
            }
        };
        let len = bytes.len() / 2;
        #[cfg(target_os = "linux")]
        if let Some(m) = huge::Mapping::filled(len, decode) {
            return Self(Storage::Mapped(m));
        }
        let mut values = vec![0; len];
        decode(&mut values);
        Self(Storage::Heap(values))
    }

    /// Whether the values live in a mapping that asked for huge pages (whether the kernel
    /// granted them shows in `AnonHugePages` of `/proc/self/smaps`).
    pub fn in_huge_pages(&self) -> bool {
        !matches!(self.0, Storage::Heap(_))
    }
}

impl Deref for Weights {
    type Target = [i16];
    fn deref(&self) -> &[i16] {
        match &self.0 {
            Storage::Heap(v) => v,
            #[cfg(target_os = "linux")]
            Storage::Mapped(m) => m.as_slice(),
        }
    }
}

impl Clone for Weights {
    fn clone(&self) -> Self {
        #[cfg(target_os = "linux")]
        if let Some(m) = huge::Mapping::copy_of(self) {
            return Self(Storage::Mapped(m));
        }
        Self(Storage::Heap(self.to_vec()))
    }
}

impl PartialEq for Weights {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Weights {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Weights({} values, huge pages: {})",
            self.len(),
            self.in_huge_pages()
        )
    }
}

#[cfg(target_os = "linux")]
mod huge {
    /// Size of a huge page on x86-64 and most arm64 kernels.
    const HUGE: usize = 2 << 20;

    /// An anonymous mapping holding a copy of a table, its start aligned to [`HUGE`].
    pub(super) struct Mapping {
        base: *mut libc::c_void,
        map_len: usize,
        data: *const i16,
        len: usize,
    }

    // SAFETY: the mapping is owned by this value alone, and written only in `filled`, before
    // the value is returned; after that it is read-only memory, which any thread may read.
    unsafe impl Send for Mapping {}
    // SAFETY: as above: shared references only ever read it.
    unsafe impl Sync for Mapping {}

    impl Mapping {
        /// A copy of `values` in a mapping that asked for huge pages; `None` for a table
        /// smaller than one huge page, or when the kernel refuses the mapping.
        pub(super) fn copy_of(values: &[i16]) -> Option<Self> {
            Self::filled(values.len(), |out| out.copy_from_slice(values))
        }

        /// `len` values that `fill` writes, in a mapping that asked for huge pages; `None`
        /// as for [`Mapping::copy_of`] (then `fill` is not called).
        pub(super) fn filled(len: usize, fill: impl FnOnce(&mut [i16])) -> Option<Self> {
            let bytes = len.checked_mul(std::mem::size_of::<i16>())?;
            if bytes < HUGE {
                return None;
            }
            let rounded = bytes.div_ceil(HUGE) * HUGE;
            // One huge page more than needed, so an aligned start fits inside.
            let map_len = rounded + HUGE;
            // SAFETY: an anonymous private mapping at an address the kernel chooses touches no
            // existing memory; the result is checked before use.
            let base = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    map_len,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                    -1,
                    0,
                )
            };
            if base == libc::MAP_FAILED {
                return None;
            }
            let offset = (HUGE - base as usize % HUGE) % HUGE;
            // SAFETY: `offset < HUGE`, so `start..start + rounded` lies inside the mapping.
            let start = unsafe { base.cast::<u8>().add(offset) };
            // SAFETY: the range is inside our own mapping. A refusal (a kernel without THP)
            // leaves ordinary pages, which hold the same values, so its result is ignored.
            unsafe { libc::madvise(start.cast(), rounded, libc::MADV_HUGEPAGE) };
            let data = start.cast::<i16>();
            // Owned before it is filled, so that a panic in `fill` still unmaps it.
            let mapping = Self {
                base,
                map_len,
                data,
                len,
            };
            // SAFETY: `data` is aligned (a page boundary), writable, has room for `len` values,
            // which an anonymous mapping holds as zeros (so every one is initialized), and
            // nothing else refers to it yet (`mapping` hands out no slice until this returns).
            fill(unsafe { std::slice::from_raw_parts_mut(data, len) });
            Some(mapping)
        }

        pub(super) fn as_slice(&self) -> &[i16] {
            // SAFETY: `filled` wrote `len` values at `data`, and the mapping lives as long as
            // `self`.
            unsafe { std::slice::from_raw_parts(self.data, self.len) }
        }
    }

    impl Drop for Mapping {
        fn drop(&mut self) {
            // SAFETY: `base` and `map_len` are exactly what `mmap` returned and was given, and
            // no slice of it outlives `self`.
            unsafe { libc::munmap(self.base, self.map_len) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_table_keeps_its_values_wherever_it_lives() {
        let values: Vec<i16> = (0..(3 << 20))
            .map(|i: i32| (i % 65_521 - 32_000) as i16)
            .collect();
        let w = Weights::new(values.clone());
        assert_eq!(&*w, &values[..]);
        #[cfg(target_os = "linux")]
        assert!(w.in_huge_pages(), "a 6 MB table is mapped for huge pages");
        let copy = w.clone();
        assert_eq!(copy, w);
        drop(w);
        assert_eq!(&*copy, &values[..], "a clone outlives its original");
    }

    #[test]
    fn a_table_decodes_from_its_bytes_wherever_it_lives() {
        for len in [3usize, 3 << 20] {
            let values: Vec<i16> = (0..len)
                .map(|i| ((i % 65_521) as i32 - 32_000) as i16)
                .collect();
            let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
            let w = Weights::from_le_bytes(&bytes);
            assert_eq!(&*w, &values[..], "{len} values");
            assert_eq!(w.in_huge_pages(), cfg!(target_os = "linux") && len > 3);
        }
    }

    #[test]
    fn a_small_table_stays_on_the_heap() {
        let w = Weights::new(vec![1, -2, 3]);
        assert_eq!(&*w, &[1, -2, 3]);
        assert!(!w.in_huge_pages());
    }
}
