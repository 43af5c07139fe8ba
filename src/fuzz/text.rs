//! Harness of the `text` target: the normalizer and the featurizer on arbitrary text, under a
//! configuration the input picks.
//!
//! Input: a normalizer byte (bits 0-5: lowercase, teh marbuta, URLs, mentions, e-mails, Arabic
//! rules; bits 6-7: `max_repeat` 0..=3), two featurizer bytes (hash bits 8..=15, `char_min`,
//! `char_max`, `word_max`, seed), then the text (invalid UTF-8 is replaced, as
//! `String::from_utf8_lossy` does).
//!
//! Invariants, for every configuration:
//! - the normalizer never panics, is deterministic (whatever the output buffer held before) and
//!   idempotent: `normalize(normalize(x)) == normalize(x)`, as its module doc claims;
//! - its output is bounded (at most [`GROWTH`] bytes per input byte) and canonical: words
//!   separated by single ASCII spaces, no whitespace at either end or anywhere else, no dropped
//!   invisible character, no run of one character longer than `max_repeat`, and under the
//!   Arabic rules no tashkeel, tatweel or Arabic-Indic digit;
//! - the featurizer never panics; every bucket is below `2^hash_bits` and occurs once; the
//!   counts agree with [`Featurizer::grams`] (each is the number of n-grams in its bucket,
//!   saturating at 255), so there are at most as many features as n-grams, and at most
//!   `(3·char_max + word_max + 1) · (characters + 2)` of those; counting is deterministic
//!   (a reused scratch gives what a fresh one gives) and counting the normalized text gives
//!   the same features as counting the text.

use std::collections::HashMap;

use super::input::Input;
use crate::features::{Featurizer, FeaturizerConfig, Scratch};
use crate::normalize::{NormalizeConfig, Normalizer};

/// Most output bytes per input byte: NFKC grows a character at most 11 times in bytes (U+FDFA),
/// case folding 1.5 times, and `@user` is 2.5 times `@x`.
pub const GROWTH: usize = 42;

/// The configurations an input picks with its first three bytes.
pub fn configs(n: u8, f1: u8, f2: u8) -> (NormalizeConfig, FeaturizerConfig) {
    let bit = |i: u8| n & (1 << i) != 0;
    let normalize = NormalizeConfig {
        lowercase: bit(0),
        teh_marbuta_to_heh: bit(1),
        mask_urls: bit(2),
        mask_mentions: bit(3),
        mask_emails: bit(4),
        arabic: bit(5),
        max_repeat: n >> 6,
    };
    let char_max = (f1 >> 3) & 7;
    let featurizer = FeaturizerConfig {
        normalize: normalize.clone(),
        hash_bits: 8 + (f1 & 7),
        seed: u64::from(f2 >> 4),
        char_min: (1 + (f2 & 3)).min(char_max.max(1)),
        char_max,
        word_max: (f1 >> 6) & 3,
        sublinear_tf: true,
        block_norm: false,
    };
    (normalize, featurizer)
}

/// Runs one input through the normalizer and the featurizer and checks the invariants above.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let (n, f1, f2) = (input.byte(), input.byte(), input.byte());
    let text = String::from_utf8_lossy(input.rest());
    let (normalize, featurizer) = configs(n, f1, f2);
    let normalized = check_normalizer(&Normalizer::new(normalize), &text);
    // Out-of-range settings are refused, never a panic; the rest are checked.
    if let Ok(featurizer) = Featurizer::new(featurizer) {
        check_featurizer(&featurizer, &text, &normalized);
    }
}

/// Checks the normalizer on `text` and returns its output.
fn check_normalizer(n: &Normalizer, text: &str) -> String {
    let once = n.normalize(text);
    let mut reused = String::from("left over from before");
    n.normalize_into(text, &mut reused);
    assert_eq!(reused, once, "normalizing is deterministic");
    assert!(
        once.len() <= GROWTH * text.len(),
        "{} bytes out of {}",
        once.len(),
        text.len()
    );
    assert!(
        !once.starts_with(' ') && !once.ends_with(' ') && !once.contains("  "),
        "single spaces between words: {once:?}"
    );
    let cfg = n.config();
    let mut run = (' ', 0u32);
    for c in once.chars() {
        assert!(
            c == ' ' || !c.is_whitespace(),
            "whitespace {c:?} in {once:?}"
        );
        assert!(
            !matches!(c, '\u{200B}' | '\u{200C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}'),
            "invisible {c:?} in {once:?}"
        );
        if cfg.arabic {
            assert!(
                !matches!(c, '\u{064B}'..='\u{065F}' | '\u{0670}' | '\u{0640}' | '\u{0660}'..='\u{0669}' | '\u{06F0}'..='\u{06F9}'),
                "Arabic rule left {c:?} in {once:?}"
            );
        }
        run = if c == run.0 { (c, run.1 + 1) } else { (c, 1) };
        assert!(
            cfg.max_repeat == 0 || run.1 <= u32::from(cfg.max_repeat),
            "a run of {c:?} longer than {} in {once:?}",
            cfg.max_repeat
        );
    }
    assert_eq!(n.normalize(&once), once, "normalizing is idempotent");
    once
}

/// Checks the featurizer on `text` (`normalized`: its normalized form).
fn check_featurizer(f: &Featurizer, text: &str, normalized: &str) {
    let cfg = f.config();
    let mut scratch = Scratch::default();
    f.count(
        "a different text, first, so that the scratch is not fresh",
        &mut scratch,
    );
    f.count(text, &mut scratch);
    assert_eq!(scratch.text, normalized, "the featurizer normalizes");
    let features = scratch.features.clone();

    let mut grams: HashMap<u32, usize> = HashMap::new();
    let listed = f.grams(text);
    for (bucket, _) in &listed {
        *grams.entry(*bucket).or_default() += 1;
    }
    let chars = normalized.chars().count();
    let most = (3 * usize::from(cfg.char_max) + usize::from(cfg.word_max) + 1) * (chars + 2);
    assert!(
        listed.len() <= most,
        "{} n-grams of {chars} characters",
        listed.len()
    );
    assert_eq!(features.len(), grams.len(), "one feature per bucket");
    for feature in &features {
        assert!(
            (feature.bucket as usize) < cfg.buckets(),
            "bucket {}",
            feature.bucket
        );
        let n = grams.get(&feature.bucket).copied().unwrap_or(0);
        assert_eq!(
            usize::from(feature.count),
            n.min(255),
            "bucket {}: count against n-grams",
            feature.bucket
        );
    }

    let mut fresh = Scratch::default();
    f.count(text, &mut fresh);
    assert_eq!(fresh.features, features, "counting is deterministic");
    f.count(normalized, &mut fresh);
    assert_eq!(
        fresh.features, features,
        "the normalized text counts the same"
    );
}
