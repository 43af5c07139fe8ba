//! The feature hash: FNV-1a (64-bit) over Unicode scalar values, finished with MurmurHash3's
//! `fmix64`; the top `k` bits of the result select one of `2^k` buckets.
//!
//! The hash is defined on code points, not bytes, so an n-gram can never be cut inside a UTF-8
//! sequence, and it uses only wrapping 64-bit integer arithmetic, so every platform and every
//! build produces the same buckets. A model file stores the seed and `k`; changing this function
//! is a model format change (see `model::file::FORMAT_VERSION`).

/// FNV-1a 64-bit offset basis.
pub const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
/// FNV-1a 64-bit prime.
pub const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

/// Starts a hash for a namespace (char n-grams, word n-grams, targets...) and a model seed.
#[inline]
pub const fn start(namespace: u64, seed: u64) -> u64 {
    (FNV_OFFSET ^ seed.wrapping_mul(0x9e37_79b9_7f4a_7c15)).wrapping_add(namespace)
}

/// Extends a running hash by one code point (one FNV-1a step over the 32-bit scalar value).
#[inline]
pub const fn push(h: u64, c: char) -> u64 {
    (h ^ c as u64).wrapping_mul(FNV_PRIME)
}

/// MurmurHash3's 64-bit finalizer: spreads every input bit over the whole word.
#[inline]
pub const fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^= h >> 33;
    h
}

/// Maps a running hash to a bucket in `0..2^bits` (the top bits after finalization).
#[inline]
pub const fn bucket(h: u64, bits: u8) -> u32 {
    (fmix64(h) >> (64 - bits as u32)) as u32
}

/// Hashes a whole string in a namespace (used for targets and tests).
pub fn hash_str(s: &str, namespace: u64, seed: u64) -> u64 {
    s.chars().fold(start(namespace, seed), push)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// These values are part of the model format: if this test fails, every shipped model
    /// featurizes differently. Bump the model format version instead of editing the numbers.
    /// The values were cross-checked with an independent Python implementation of the hash.
    #[test]
    fn hash_is_stable_across_platforms_and_builds() {
        assert_eq!(hash_str("", 0, 0), 0xcbf2_9ce4_8422_2325);
        assert_eq!(bucket(hash_str("abc", 1, 0), 20), 0x532f1);
        assert_eq!(bucket(hash_str("سلام", 1, 0), 20), 0x103ca);
        assert_eq!(bucket(hash_str("سلام", 1, 7), 20), 0x74b76);
        assert_eq!(fmix64(1), 0xb456_bcfc_34c2_cb2c);
    }

    #[test]
    fn buckets_stay_in_range() {
        for bits in [1u8, 8, 18, 20, 24] {
            for s in ["a", "hello", "مرحبا", "😂"] {
                assert!(bucket(hash_str(s, 3, 1), bits) < (1u32 << bits));
            }
        }
    }

    #[test]
    fn namespaces_and_seeds_separate() {
        assert_ne!(hash_str("ab", 1, 0), hash_str("ab", 2, 0));
        assert_ne!(hash_str("ab", 1, 0), hash_str("ab", 1, 1));
    }
}
