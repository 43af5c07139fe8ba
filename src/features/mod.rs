//! Featurization stage: normalized text → hashed character and word n-gram counts.
//!
//! Character n-grams are cut inside word boundaries like scikit-learn's `char_wb` analyzer: every
//! whitespace-separated word is padded with one space on each side and every run of `min..=max`
//! *characters* (never bytes) inside it is one n-gram. Word n-grams are runs of 1..=`word_max`
//! tokens of two or more letters or digits. Every n-gram is hashed (see [`hash`]) into one of
//! `2^hash_bits` buckets; the scoring path counts buckets in a reusable [`Scratch`] and allocates
//! nothing per n-gram. TF-IDF weighting and L2 normalization live in [`weigh`], with the IDF
//! table owned by the model.

pub mod hash;

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::normalize::{NormalizeConfig, Normalizer};

/// Hash namespace of character n-grams.
const NS_CHAR: u64 = 1;
/// Hash namespace of word n-grams (plus the n-gram order).
const NS_WORD: u64 = 16;
/// Hash namespace of target crossings.
const NS_TARGET: u64 = 64;

/// Featurizer settings; stored inside model files so scoring featurizes exactly as training did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FeaturizerConfig {
    /// Text normalization applied before n-gram extraction.
    pub normalize: NormalizeConfig,
    /// Number of hash buckets is `2^hash_bits` (8..=24).
    pub hash_bits: u8,
    /// Seed mixed into every hash.
    pub seed: u64,
    /// Shortest character n-gram (in characters).
    pub char_min: u8,
    /// Longest character n-gram (in characters); 0 disables character n-grams.
    pub char_max: u8,
    /// Longest word n-gram (in tokens); 0 disables word n-grams.
    pub word_max: u8,
    /// Term frequency `1 + ln(count)` instead of the raw count.
    pub sublinear_tf: bool,
    /// L2-normalize character and word n-grams as two blocks of norm 1/√2 each (as
    /// scikit-learn's `FeatureUnion` of two TF-IDF vectorizers does), so the few word n-grams
    /// are not drowned by the many character n-grams; `false`: one joint L2 norm.
    pub block_norm: bool,
}

impl Default for FeaturizerConfig {
    fn default() -> Self {
        Self {
            normalize: NormalizeConfig::default(),
            hash_bits: 20,
            seed: 0,
            char_min: 1,
            char_max: 5,
            word_max: 2,
            sublinear_tf: true,
            block_norm: false,
        }
    }
}

impl FeaturizerConfig {
    /// Checks the ranges; the error names the field to fix.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |field: &str, why: String| {
            Err(ConfigError::Invalid {
                field: format!("featurizer.{field}"),
                reason: why,
            })
        };
        if !(8..=24).contains(&self.hash_bits) {
            return bad("hash_bits", format!("{} is outside 8..=24", self.hash_bits));
        }
        if self.char_max > 0 && (self.char_min == 0 || self.char_min > self.char_max) {
            return bad(
                "char_min",
                format!(
                    "must be in 1..=char_max ({}), got {}",
                    self.char_max, self.char_min
                ),
            );
        }
        if self.char_max > 8 {
            return bad("char_max", format!("{} is above 8", self.char_max));
        }
        if self.word_max > 3 {
            return bad("word_max", format!("{} is above 3", self.word_max));
        }
        if self.char_max == 0 && self.word_max == 0 {
            return bad("char_max", "character and word n-grams are both off".into());
        }
        Ok(())
    }

    /// Number of hash buckets.
    pub fn buckets(&self) -> usize {
        1usize << self.hash_bits
    }
}

/// One hashed feature of a comment: its bucket and how often it occurred.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Count {
    /// Bucket in `0..2^hash_bits`.
    pub bucket: u32,
    /// Occurrences in the comment (saturating at 255).
    pub count: u8,
    /// A word n-gram (else a character n-gram).
    pub word: bool,
}

/// Reusable buffers of the scoring path: one per thread, so no n-gram allocates.
#[derive(Default, Debug)]
pub struct Scratch {
    /// The normalized text of the last comment.
    pub text: String,
    chars: Vec<char>,
    tokens: Vec<(u32, u32)>,
    buckets: Vec<u32>,
    /// `(char n-grams in buckets, tokens)` before each word of the text and after the last.
    marks: Vec<(u32, u32)>,
    /// Words of the text per piece ([`Featurizer::hash_pieces`]).
    piece_words: Vec<u32>,
    slots: Vec<u64>,
    used: Vec<u32>,
    /// Bucket counts of the last comment, in order of first occurrence.
    pub features: Vec<Count>,
}

/// Receives every n-gram the featurizer emits.
pub trait Sink {
    /// A character n-gram and its bucket.
    fn char_gram(&mut self, bucket: u32, gram: &[char]);
    /// A word n-gram (`tokens` are char ranges into `chars`) and its bucket.
    fn word_gram(&mut self, bucket: u32, chars: &[char], tokens: &[(u32, u32)]);
    /// The character n-grams of one word are all emitted; `tokens` word tokens so far.
    fn word_end(&mut self, _tokens: usize) {}
}

/// Turns text into hashed n-gram counts.
#[derive(Clone, Debug)]
pub struct Featurizer {
    config: FeaturizerConfig,
    normalizer: Normalizer,
}

impl Featurizer {
    /// Builds a featurizer after validating its config.
    pub fn new(config: FeaturizerConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let normalizer = Normalizer::new(config.normalize.clone());
        Ok(Self { config, normalizer })
    }

    /// The settings this featurizer was built from.
    pub fn config(&self) -> &FeaturizerConfig {
        &self.config
    }

    /// The normalizer every text goes through before its n-grams are cut.
    pub fn normalizer(&self) -> &Normalizer {
        &self.normalizer
    }

    /// Normalizes `text` and counts its hashed n-grams into `scratch.features`.
    pub fn count(&self, text: &str, scratch: &mut Scratch) {
        let mut text_buf = std::mem::take(&mut scratch.text);
        self.normalizer.normalize_into(text, &mut text_buf);
        scratch.text = text_buf;
        self.hash_text(scratch);
        let all = 0..scratch.buckets.len();
        count_ranges(std::iter::once(all), scratch);
    }

    /// Normalizes and hashes a long `text` once for itself and for its `pieces` (consecutive
    /// slices of it), so that [`Featurizer::count_piece`] and [`Featurizer::count_hashed`] then
    /// count exactly what [`Featurizer::count`] of a piece or of the text would, without
    /// normalizing or hashing anything twice. `false` (nothing hashed) when the pieces could
    /// normalize differently alone than inside the text
    /// ([`Normalizer::normalize_pieces_into`]); then count them one by one.
    pub fn hash_pieces(&self, text: &str, pieces: &[&str], scratch: &mut Scratch) -> bool {
        let mut text_buf = std::mem::take(&mut scratch.text);
        let ok = self.normalizer.normalize_pieces_into(
            text,
            pieces,
            &mut text_buf,
            &mut scratch.piece_words,
        );
        scratch.text = text_buf;
        if ok {
            self.hash_text(scratch);
        }
        ok
    }

    /// After [`Featurizer::hash_pieces`]: counts piece `i`'s n-grams into `scratch.features`,
    /// in the order `count` of that piece alone gives them. A piece's words are consecutive
    /// words of the text, so its n-grams are slices of the text's: its words' character
    /// n-grams, then for each order `n` its word n-grams that do not cross its ends.
    pub fn count_piece(&self, i: usize, scratch: &mut Scratch) {
        let first: u32 = scratch.piece_words[..i].iter().sum();
        let last = first + scratch.piece_words.get(i).copied().unwrap_or(0);
        let (char_start, tok_start) = scratch.marks[first as usize];
        let (char_end, tok_end) = scratch.marks[last as usize];
        let (char_total, tokens) = scratch.marks.last().copied().unwrap_or((0, 0));
        let (a, b, tokens) = (tok_start as usize, tok_end as usize, tokens as usize);
        // Word n-grams of order n start after the char n-grams and the lower orders' windows.
        let mut group = char_total as usize;
        let mut ranges = [0..0, 0..0, 0..0, 0..0];
        ranges[0] = char_start as usize..char_end as usize;
        for (n, range) in (1..=usize::from(self.config.word_max)).zip(&mut ranges[1..]) {
            if b >= a + n {
                *range = group + a..group + b + 1 - n;
            }
            group += (tokens + 1).saturating_sub(n);
        }
        count_ranges(ranges, scratch);
    }

    /// After [`Featurizer::hash_pieces`]: counts the whole text's n-grams into
    /// `scratch.features`, as [`Featurizer::count`] of it would.
    pub fn count_hashed(&self, scratch: &mut Scratch) {
        let all = 0..scratch.buckets.len();
        count_ranges(std::iter::once(all), scratch);
    }

    /// Hashes every n-gram of the normalized `scratch.text` into `scratch.buckets`, in order,
    /// and marks where each word's character n-grams end in `scratch.marks`.
    fn hash_text(&self, scratch: &mut Scratch) {
        let mut grams = Buckets {
            grams: std::mem::take(&mut scratch.buckets),
            marks: std::mem::take(&mut scratch.marks),
        };
        grams.grams.clear();
        grams.marks.clear();
        grams.marks.push((0, 0));
        self.emit(
            &scratch.text,
            &mut scratch.chars,
            &mut scratch.tokens,
            &mut grams,
        );
        scratch.buckets = grams.grams;
        scratch.marks = grams.marks;
    }

    /// Lists every n-gram of `text` with its bucket (for explanations; allocates).
    pub fn grams(&self, text: &str) -> Vec<(u32, String)> {
        struct Collect(Vec<(u32, String)>);
        impl Sink for Collect {
            fn char_gram(&mut self, bucket: u32, gram: &[char]) {
                self.0.push((bucket, gram.iter().collect()));
            }
            fn word_gram(&mut self, bucket: u32, chars: &[char], tokens: &[(u32, u32)]) {
                let words: Vec<String> = tokens
                    .iter()
                    .map(|&(s, e)| chars[s as usize..e as usize].iter().collect())
                    .collect();
                self.0.push((bucket, format!("[{}]", words.join(" "))));
            }
        }
        let normalized = self.normalizer.normalize(text);
        let mut sink = Collect(Vec::new());
        self.emit(&normalized, &mut Vec::new(), &mut Vec::new(), &mut sink);
        sink.0
    }

    /// Emits all n-grams of already-normalized text to `sink`.
    pub fn emit<S: Sink>(
        &self,
        normalized: &str,
        chars: &mut Vec<char>,
        tokens: &mut Vec<(u32, u32)>,
        sink: &mut S,
    ) {
        let cfg = &self.config;
        let bits = cfg.hash_bits;
        // One decoding pass: the words one after the other, each followed by one space, after a
        // leading one (" w1 w2 "), so a word's padded slice shares its spaces with its
        // neighbours. Word tokens (runs of two or more letters, digits or underscores) never
        // contain a space, so they are found in the same pass.
        chars.clear();
        tokens.clear();
        chars.push(' ');
        // The normalizer leaves single ASCII spaces as the only whitespace.
        for word in crate::normalize::words_of(normalized) {
            let start = chars.len();
            if word.is_ascii() {
                // A byte iterator of known length: one capacity check, not one per char.
                chars.extend(word.bytes().map(char::from));
            } else {
                chars.extend(word.chars());
            }
            chars.push(' ');
            if cfg.char_max > 0 {
                self.char_grams_of_word(&chars[start - 1..], sink);
            }
            if cfg.word_max > 0 {
                word_tokens(chars, start, tokens);
            }
            sink.word_end(tokens.len());
        }
        if cfg.word_max == 0 {
            return;
        }
        for n in 1..=cfg.word_max as usize {
            let h0 = hash::start(NS_WORD + n as u64, cfg.seed);
            for w in tokens.windows(n) {
                let mut h = h0;
                for (k, &(s, e)) in w.iter().enumerate() {
                    if k > 0 {
                        h = hash::push(h, ' ');
                    }
                    h = chars[s as usize..e as usize]
                        .iter()
                        .fold(h, |h, &c| hash::push(h, c));
                }
                sink.word_gram(hash::bucket(h, bits), chars, w);
            }
        }
    }

    /// Emits the character n-grams of one padded word (`char_wb` semantics).
    #[inline]
    fn char_grams_of_word<S: Sink>(&self, word: &[char], sink: &mut S) {
        let (min, max) = (self.config.char_min as usize, self.config.char_max as usize);
        let bits = self.config.hash_bits;
        let h0 = hash::start(NS_CHAR, self.config.seed);
        let len = word.len();
        if len < min {
            // scikit-learn counts a word shorter than the shortest n-gram once, whole.
            let h = word.iter().fold(h0, |h, &c| hash::push(h, c));
            sink.char_gram(hash::bucket(h, bits), word);
            return;
        }
        for start in 0..len {
            let rest = &word[start..];
            let mut h = h0;
            for (n, &c) in rest.iter().take(max).enumerate() {
                h = hash::push(h, c);
                if n + 1 >= min {
                    sink.char_gram(hash::bucket(h, bits), &rest[..n + 1]);
                }
            }
        }
    }

    /// Maps a bucket to its copy in a target's subspace (target-conditioned heads).
    #[inline]
    pub fn cross(&self, bucket: u32, target: u64) -> u32 {
        hash::bucket(hash::fmix64(bucket as u64 ^ target), self.config.hash_bits)
    }

    /// The hash of a target name, as [`Featurizer::cross`] takes it.
    pub fn target_key(&self, target: &str) -> u64 {
        hash::hash_str(target, NS_TARGET, self.config.seed)
    }
}

/// Appends the word tokens of `chars[start..]` (one word, then its trailing space) to
/// `tokens` as char ranges.
#[inline]
fn word_tokens(chars: &[char], start: usize, tokens: &mut Vec<(u32, u32)>) {
    let mut run = start;
    for (i, &c) in chars.iter().enumerate().skip(start) {
        if !is_word_char(c) {
            if i - run >= 2 {
                tokens.push((run as u32, i as u32));
            }
            run = i + 1;
        }
    }
}

#[inline]
fn is_word_char(c: char) -> bool {
    match c {
        'a'..='z' | 'A'..='Z' | '0'..='9' | '_' => true,
        // Arabic letters and digits: the common non-ASCII case, without a table lookup.
        '\u{0621}'..='\u{064A}' | '\u{0660}'..='\u{0669}' => true,
        // Arabic comma, semicolon and question mark end many words: no table lookup either.
        '\u{060C}' | '\u{061B}' | '\u{061F}' => false,
        _ if c.is_ascii() => false,
        _ => c.is_alphanumeric(),
    }
}

/// Initial size of the counting hash table (grows for long comments).
const MIN_SLOTS: usize = 4096;

/// Counts buckets in a small open-addressing hash table (linear probing) whose slots hold the
/// key and the place of its count, `(bucket + 1) | index << 32`, so a probe reads one slot
/// only; it stays in L1/L2 cache for a typical comment, where a dense array of 2^20 counters
/// would not.
struct Counter {
    slots: Vec<u64>,
    /// The slot of every entry of `features`, so clearing needs no probing.
    used: Vec<u32>,
    features: Vec<Count>,
}

impl Counter {
    /// The slot of `bucket`: where it is, or the empty slot where it belongs.
    #[inline]
    fn find(slots: &[u64], bucket: u32) -> usize {
        let mask = slots.len() - 1;
        let key = bucket.wrapping_add(1);
        // Buckets are the top bits of a finalized hash: their low bits are already spread.
        let mut i = bucket as usize & mask;
        loop {
            let s = slots[i];
            if s == 0 || s as u32 == key {
                return i;
            }
            i = (i + 1) & mask;
        }
    }

    #[inline]
    fn add(&mut self, bucket: u32, word: bool) {
        let i = Self::find(&self.slots, bucket);
        let s = self.slots[i];
        if s == 0 {
            let index = self.features.len();
            self.features.push(Count {
                bucket,
                count: 1,
                word,
            });
            self.slots[i] = u64::from(bucket.wrapping_add(1)) | (index as u64) << 32;
            self.used.push(i as u32);
            if self.features.len() * 2 > self.slots.len() {
                self.grow();
            }
        } else if let Some(f) = self.features.get_mut((s >> 32) as usize) {
            f.count = f.count.saturating_add(1);
        }
    }

    #[cold]
    fn grow(&mut self) {
        self.slots = vec![0; self.slots.len() * 2];
        self.used.clear();
        for (k, f) in self.features.iter().enumerate() {
            let i = Self::find(&self.slots, f.bucket);
            self.slots[i] = u64::from(f.bucket.wrapping_add(1)) | (k as u64) << 32;
            self.used.push(i as u32);
        }
    }

    /// Empties the used slots only, so a table grown by one long comment stays cheap.
    fn clear(&mut self) {
        for &i in &self.used {
            self.slots[i as usize] = 0;
        }
        self.used.clear();
    }
}

/// Flag bit of a word n-gram in [`Buckets`] (buckets have at most 24 bits).
const WORD_GRAM: u32 = 1 << 31;

/// Collects the bucket of every n-gram in order, word n-grams flagged with [`WORD_GRAM`], and
/// after each word `(char n-grams so far, word tokens so far)`.
struct Buckets {
    grams: Vec<u32>,
    marks: Vec<(u32, u32)>,
}

impl Sink for Buckets {
    #[inline]
    fn char_gram(&mut self, bucket: u32, _gram: &[char]) {
        self.grams.push(bucket);
    }
    #[inline]
    fn word_gram(&mut self, bucket: u32, _chars: &[char], _tokens: &[(u32, u32)]) {
        self.grams.push(bucket | WORD_GRAM);
    }
    #[inline]
    fn word_end(&mut self, tokens: usize) {
        let grams = u32::try_from(self.grams.len()).unwrap_or(u32::MAX);
        self.marks
            .push((grams, u32::try_from(tokens).unwrap_or(u32::MAX)));
    }
}

/// Counts the buckets of `ranges` of `scratch.buckets`, in order, into `scratch.features`.
fn count_ranges(ranges: impl IntoIterator<Item = Range<usize>>, scratch: &mut Scratch) {
    if scratch.slots.len() < MIN_SLOTS {
        scratch.slots = vec![0; MIN_SLOTS];
    }
    let mut counter = Counter {
        slots: std::mem::take(&mut scratch.slots),
        used: std::mem::take(&mut scratch.used),
        features: std::mem::take(&mut scratch.features),
    };
    counter.features.clear();
    // Hashing comes first (into `buckets`), then counting: two tight loops instead of one
    // whose counting branches stall the hashing.
    for range in ranges {
        for &b in scratch.buckets.get(range).unwrap_or_default() {
            counter.add(b & !WORD_GRAM, b & WORD_GRAM != 0);
        }
    }
    counter.clear();
    scratch.slots = counter.slots;
    scratch.used = counter.used;
    scratch.features = counter.features;
}

/// Term frequency of a count: `1 + ln(count)` when sublinear, else the count.
#[inline]
pub fn tf(count: u8, sublinear: bool) -> f32 {
    if count == 1 {
        // Most n-grams occur once; skip the logarithm.
        1.0
    } else if sublinear {
        1.0 + (count as f32).ln()
    } else {
        count as f32
    }
}

/// TF-IDF weighs counts with `idf` and L2-normalizes them into `out` as (bucket, value): one
/// joint norm, or (with `block_norm`) character and word blocks of norm 1/√2 each. Training
/// and scoring both call this, so they cannot drift apart. `idf` is called once per count, in
/// order (the scoring path uses that to prefetch the rows of the counts ahead).
pub fn weigh(
    counts: &[Count],
    mut idf: impl FnMut(u32) -> f32,
    sublinear: bool,
    block_norm: bool,
    out: &mut Vec<(u32, f32)>,
) {
    out.clear();
    out.reserve(counts.len());
    // Two sums in registers (an indexed array would chain every addition through memory).
    let (mut chars, mut words) = (0.0f32, 0.0f32);
    for c in counts {
        let v = tf(c.count, sublinear) * idf(c.bucket);
        if block_norm && c.word {
            words += v * v;
        } else {
            chars += v * v;
        }
        out.push((c.bucket, v));
    }
    let norms = [chars, words];
    let scale = |n: f32| {
        if n <= 0.0 {
            0.0
        } else if block_norm {
            std::f32::consts::FRAC_1_SQRT_2 / n.sqrt()
        } else {
            n.sqrt().recip()
        }
    };
    let inv = [scale(norms[0]), scale(norms[1])];
    for (c, (_, v)) in counts.iter().zip(out.iter_mut()) {
        *v *= inv[usize::from(block_norm && c.word)];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn featurizer(char_min: u8, char_max: u8, word_max: u8) -> Featurizer {
        Featurizer::new(FeaturizerConfig {
            char_min,
            char_max,
            word_max,
            ..FeaturizerConfig::default()
        })
        .expect("valid config")
    }

    fn strings(f: &Featurizer, text: &str) -> Vec<String> {
        f.grams(text).into_iter().map(|(_, s)| s).collect()
    }

    #[test]
    fn char_ngrams_follow_char_wb_on_ascii() {
        // scikit-learn: CountVectorizer(analyzer="char_wb", ngram_range=(2, 3)) on "ab c".
        let got = strings(&featurizer(2, 3, 0), "ab c");
        let mut want = vec![" a", " ab", "ab", "ab ", "b ", " c", " c ", "c "];
        let mut got_sorted = got.clone();
        got_sorted.sort();
        want.sort();
        assert_eq!(got_sorted, want);
    }

    #[test]
    fn char_ngrams_never_split_multibyte_characters() {
        let f = featurizer(1, 3, 0);
        for gram in strings(&f, "مرحبا 😂👊 naïve") {
            // Every gram is whole chars: it round-trips through chars and is 1..=3 long.
            let n = gram.chars().count();
            assert!((1..=3).contains(&n), "{gram:?}");
        }
        let grams = strings(&f, "سلام");
        assert!(grams.contains(&" سل".to_string()));
        assert!(grams.contains(&"لام".to_string()));
        assert!(grams.contains(&"م ".to_string()));
    }

    #[test]
    fn word_ngrams_are_unigrams_and_bigrams_of_two_letter_tokens() {
        let got = strings(&featurizer(1, 0, 2).tap_char_off(), "go home, a drunk");
        assert_eq!(
            got,
            vec!["[go]", "[home]", "[drunk]", "[go home]", "[home drunk]"]
        );
    }

    impl Featurizer {
        fn tap_char_off(self) -> Self {
            let mut cfg = self.config.clone();
            cfg.char_max = 0;
            Featurizer::new(cfg).expect("valid")
        }
    }

    #[test]
    fn counts_match_grams_and_scratch_is_reusable() {
        let f = featurizer(1, 5, 2);
        let mut scratch = Scratch::default();
        let text = "the cat sat on the mat, the end";
        f.count(
            "something much longer to dirty the scratch buffers first",
            &mut scratch,
        );
        f.count(text, &mut scratch);
        let total: usize = scratch.features.iter().map(|c| c.count as usize).sum();
        assert_eq!(total, f.grams(text).len());
        let mut buckets: Vec<u32> = scratch.features.iter().map(|c| c.bucket).collect();
        buckets.sort_unstable();
        buckets.dedup();
        assert_eq!(buckets.len(), scratch.features.len(), "buckets are unique");
    }

    #[test]
    fn counting_table_grows_and_clears_between_comments() {
        let f = featurizer(1, 5, 2);
        let long: String = (0..400).map(|i| format!("w{i} ")).collect();
        let short = "a short comment, with a short word";
        let mut fresh = Scratch::default();
        f.count(short, &mut fresh);
        let mut reused = Scratch::default();
        f.count(&long, &mut reused);
        assert!(
            reused.features.len() > MIN_SLOTS / 2,
            "the long text forces a grow"
        );
        f.count(short, &mut reused);
        assert_eq!(fresh.features, reused.features);
    }

    #[test]
    fn a_piece_counts_as_it_would_alone_even_where_buckets_collide() {
        // 256 buckets: character and word n-grams collide, so a bucket's `word` flag depends
        // on which of its n-grams comes first in the piece, not in the whole text.
        let f = Featurizer::new(FeaturizerConfig {
            hash_bits: 8,
            block_norm: true,
            ..FeaturizerConfig::default()
        })
        .expect("valid config");
        let text = "The council met again. It voted, again, for the lanes! Traffic? \
                    Worse than ever; ask anyone who lives on Main Street.";
        let cuts = [0, 22, 39, 54, 63, text.len()];
        let pieces: Vec<&str> = cuts.windows(2).map(|w| &text[w[0]..w[1]]).collect();
        let mut alone = Scratch::default();
        let mut scratch = Scratch::default();
        assert!(f.hash_pieces(text, &pieces, &mut scratch));
        for (i, piece) in pieces.iter().enumerate() {
            f.count(piece, &mut alone);
            f.count_piece(i, &mut scratch);
            assert_eq!(scratch.features, alone.features, "piece {i}");
            assert!(
                alone.features.iter().any(|c| c.word),
                "word n-grams are counted"
            );
        }
        f.count_hashed(&mut scratch);
        f.count(text, &mut alone);
        assert_eq!(scratch.features, alone.features, "the whole text");
    }

    /// A count of bucket `bucket`, occurring `count` times, of a word n-gram or not.
    fn c(bucket: u32, count: u8, word: bool) -> Count {
        Count {
            bucket,
            count,
            word,
        }
    }

    #[test]
    fn weigh_is_l2_normalized() {
        let counts = [c(1, 1, false), c(2, 3, false)];
        let mut out = Vec::new();
        weigh(&counts, |b| b as f32, true, false, &mut out);
        let norm: f32 = out.iter().map(|(_, v)| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-6);
        assert!(out[1].1 > out[0].1);
    }

    #[test]
    fn block_norm_gives_char_and_word_blocks_equal_mass() {
        let counts = [c(1, 1, false), c(2, 2, false), c(3, 1, true)];
        let mut out = Vec::new();
        weigh(&counts, |_| 2.0, true, true, &mut out);
        let chars: f32 = out[..2].iter().map(|(_, v)| v * v).sum();
        let words: f32 = out[2..].iter().map(|(_, v)| v * v).sum();
        assert!(
            (chars - 0.5).abs() < 1e-6 && (words - 0.5).abs() < 1e-6,
            "{chars} {words}"
        );
    }

    #[test]
    fn word_chars_are_letters_digits_and_underscore() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            assert_eq!(is_word_char(c), c == '_' || c.is_alphanumeric(), "{c:?}");
        }
    }

    #[test]
    fn bad_config_names_the_field() {
        let err = Featurizer::new(FeaturizerConfig {
            hash_bits: 30,
            ..FeaturizerConfig::default()
        })
        .expect_err("30 bits refused");
        assert!(err.to_string().contains("featurizer.hash_bits"), "{err}");
    }
}
