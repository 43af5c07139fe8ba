//! whatlang 0.18's combined method (alphabet and trigram scores, weighed by length) for texts
//! of the Latin and Arabic scripts, restricted to the allowlist of [`super::language`], with the
//! same arithmetic, the same orders and the same sorts, so that it answers what whatlang answers
//! (checked on every training comment: `cargo bench --bench score -- language_agreement`).
//!
//! It is faster because of how the trigram distances are summed. whatlang looks each of a
//! profile's 300 trigrams up in the text's trigrams, for every candidate language (3,300
//! lookups for the 11 Latin ones). Here each of the text's trigrams (about as many as it has
//! characters) is looked up once in an index of all the profiles, and only the matches change
//! a language's distance from its maximum.

use std::collections::HashMap;
use std::sync::LazyLock;

use whatlang::{Lang, Script};

use super::profiles;

/// A trigram's largest distance (whatlang's `MAX_TRIGRAM_DISTANCE`).
const MAX_TRIGRAM_DISTANCE: i64 = 300;
/// A profile's largest distance (whatlang's `MAX_TOTAL_DISTANCE`).
const MAX_TOTAL_DISTANCE: i64 = MAX_TRIGRAM_DISTANCE * MAX_TRIGRAM_DISTANCE;
/// The text's trigrams that count, most frequent first (whatlang's `TEXT_TRIGRAMS_SIZE`).
const TEXT_TRIGRAMS_SIZE: usize = 600;

/// whatlang's alphabets (`alphabets/latin.rs`) of the allowed Latin-script languages.
const ALPHABETS: &[(Lang, &str)] = &[
    (Lang::Ces, "abcdefghijklmnopqrstuvwxyzáéíóúýčďěňřšťůž"),
    (Lang::Deu, "abcdefghijklmnopqrstuvwxyzßäöü"),
    (Lang::Eng, "abcdefghijklmnopqrstuvwxyz"),
    (Lang::Fra, "abcdefghijklmnopqrstuvwxyzàâçèéêëîïôùûüÿœ"),
    (Lang::Ind, "abcdefghijklmnopqrstuvwxyz"),
    (Lang::Ita, "abcdefghijklmnopqrstuvwxyzàèéìòù"),
    (Lang::Nld, "abcdefghijklmnopqrstuvwxyzàèéëïĳ"),
    (Lang::Pol, "abcdefghijklmnopqrstuvwxyzóąćęłńśźż"),
    (Lang::Por, "abcdefghijklmnopqrstuvwxyzàáâãçéêíóôõú"),
    (Lang::Spa, "abcdefghijklmnopqrstuvwxyz¡¿áéíñóúü"),
    (Lang::Swe, "abcdefghijklmnopqrstuvwxyzäåö"),
];

/// whatlang's stand-in alphabet scores of the Arabic script: these languages, 1 each.
const ARABIC_ALPHABET: [Lang; 3] = [Lang::Ara, Lang::Urd, Lang::Pes];

/// A language and its confidence, as whatlang's `Info` has them.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Guess {
    /// The language.
    pub lang: Lang,
    /// whatlang's confidence, 0..=1.
    pub confidence: f64,
}

/// One script's languages, trigram index and alphabets.
struct Tables {
    /// The allowed languages in the order of whatlang's profile list.
    trigram_langs: Vec<Lang>,
    /// Each language's profile length (300), in that order.
    profile_len: Vec<i64>,
    /// Packed trigram → (index into `trigram_langs`, rank in that profile), every occurrence.
    index: HashMap<u64, Vec<(usize, i64)>, BuildMix>,
    /// The allowed languages in the order of `Script::langs()`, with their alphabets (Latin);
    /// `None`: the Arabic script's stand-in scores.
    alphabets: Option<Vec<(Lang, Vec<char>)>>,
}

impl Tables {
    fn new(list: &[(Lang, &[&str])], allowed: &[Lang], script: Script) -> Tables {
        let mut index: HashMap<u64, Vec<(usize, i64)>, BuildMix> = HashMap::default();
        let mut trigram_langs = Vec::new();
        let mut profile_len = Vec::new();
        for (lang, profile) in list.iter().filter(|(l, _)| allowed.contains(l)) {
            let li = trigram_langs.len();
            trigram_langs.push(*lang);
            profile_len.push(profile.len() as i64);
            for (rank, t) in profile.iter().enumerate() {
                let mut c = t.chars();
                if let (Some(a), Some(b), Some(d)) = (c.next(), c.next(), c.next()) {
                    index
                        .entry(pack(a, b, d))
                        .or_default()
                        .push((li, rank as i64));
                }
            }
        }
        let alphabets = (script == Script::Latin).then(|| {
            script
                .langs()
                .iter()
                .filter(|l| allowed.contains(l))
                .filter_map(|l| {
                    ALPHABETS
                        .iter()
                        .find(|(a, _)| a == l)
                        .map(|(_, chars)| (*l, chars.chars().collect()))
                })
                .collect()
        });
        Tables {
            trigram_langs,
            profile_len,
            index,
            alphabets,
        }
    }
}

static LATIN: LazyLock<Tables> =
    LazyLock::new(|| Tables::new(profiles::LATIN, super::ALLOWED, Script::Latin));
static ARABIC: LazyLock<Tables> =
    LazyLock::new(|| Tables::new(profiles::ARABIC, super::ALLOWED, Script::Arabic));

/// A multiplicative hash for packed trigrams (the index is built here, from fixed profiles; no
/// outside input chooses its keys, so no defence against flooding is needed).
#[derive(Clone, Copy, Default)]
struct BuildMix;

impl std::hash::BuildHasher for BuildMix {
    type Hasher = Mix;
    fn build_hasher(&self) -> Mix {
        Mix(0)
    }
}

/// The hasher of [`BuildMix`].
struct Mix(u64);

impl std::hash::Hasher for Mix {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0 ^ v)
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .rotate_left(29);
    }
}

/// A trigram as one number; the order of the numbers is the order of the character triples.
fn pack(a: char, b: char, c: char) -> u64 {
    (u64::from(a) << 42) | (u64::from(b) << 21) | u64::from(c)
}

/// whatlang's stop characters: ASCII punctuation, digits, symbols and controls.
fn is_stop_char(c: char) -> bool {
    matches!(c, '\u{0000}'..='\u{0040}' | '\u{005B}'..='\u{0060}' | '\u{007B}'..='\u{007E}')
}

/// whatlang's answer for `text` when its main script is `script` (Latin or Arabic); `None` for
/// other scripts (ask whatlang).
pub fn detect(text: &str, script: Script) -> Option<Guess> {
    let tables: &Tables = match script {
        Script::Latin => &LATIN,
        Script::Arabic => &ARABIC,
        _ => return None,
    };
    let lower = lowercase(text);
    let (alphabet, count) = alphabet_scores(&lower, tables);
    let (trigram, trigrams) = trigram_scores(&lower, tables);

    // combined::raw_detect
    let mut langs: Vec<Lang> = alphabet.iter().map(|x| x.0).collect();
    for (lang, _) in &trigram {
        if !langs.contains(lang) {
            langs.push(*lang);
        }
    }
    let alphabet_weight = (-(count as f64 / 300.0) + 2.0 / 3.0).clamp(1.0 / 3.0, 2.0 / 3.0);
    let trigram_weight = 1.0 - alphabet_weight;
    let mut scores: Vec<(Lang, f64)> = langs
        .into_iter()
        .map(|lang| {
            let a = alphabet
                .iter()
                .find(|(l, _)| *l == lang)
                .map_or(0.0, |x| x.1);
            let t = trigram
                .iter()
                .find(|(l, _)| *l == lang)
                .map_or(0.0, |x| x.1);
            (lang, a * alphabet_weight + t * trigram_weight)
        })
        .collect();
    scores.sort_unstable_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Less));

    // combined::detect
    let mut it = scores.into_iter();
    let (lang, first) = it.next()?;
    let confidence = match it.next() {
        Some((_, second)) => confidence(first, second, trigrams),
        None => 1.0,
    };
    Some(Guess { lang, confidence })
}

/// `text.to_lowercase()`, with the letters that have no case (ASCII lower case, base Arabic)
/// copied without a look-up in Unicode's case table.
fn lowercase(text: &str) -> String {
    if text.contains('Σ') {
        // Its lower case depends on its neighbours (final sigma): the standard library knows how.
        return text.to_lowercase();
    }
    // The ASCII prefix (all of most Latin comments) in one go, as the standard library does.
    let ascii = text
        .bytes()
        .position(|b| !b.is_ascii())
        .unwrap_or(text.len());
    let (head, rest) = text.split_at(ascii);
    let mut out = String::with_capacity(text.len());
    out.push_str(head);
    out.make_ascii_lowercase();
    for c in rest.chars() {
        match c {
            _ if c.is_ascii() => out.push(c.to_ascii_lowercase()),
            '\u{0621}'..='\u{064A}' => out.push(c),
            _ => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// whatlang's `calculate_confidence`.
fn confidence(highest: f64, second: f64, count: usize) -> f64 {
    if highest == 0.0 {
        return 0.0;
    }
    if second == 0.0 {
        return highest;
    }
    let confident_rate = (3.0 / count as f64) + 0.015;
    let rate = (highest - second) / second;
    if rate > confident_rate {
        1.0
    } else {
        rate / confident_rate
    }
}

/// whatlang's alphabet scores (normalized, best first) and the count of letters they are over.
fn alphabet_scores(lower: &str, tables: &Tables) -> (Vec<(Lang, f64)>, usize) {
    let Some(alphabets) = &tables.alphabets else {
        let scores = ARABIC_ALPHABET
            .iter()
            .filter(|l| tables.trigram_langs.contains(l))
            .map(|&l| (l, 1.0))
            .collect();
        return (scores, 1);
    };
    let mut max_raw_score = 0usize;
    let mut hits = vec![0usize; alphabets.len()];
    for c in lower.chars().filter(|&c| !is_stop_char(c)) {
        max_raw_score += 1;
        if c.is_ascii_lowercase() {
            // in every Latin alphabet
            hits.iter_mut().for_each(|h| *h += 1);
            continue;
        }
        for (h, (_, alphabet)) in hits.iter_mut().zip(alphabets) {
            *h += usize::from(alphabet.contains(&c));
        }
    }
    let mut raw: Vec<(Lang, usize)> = alphabets
        .iter()
        .zip(&hits)
        .map(|((l, _), &h)| (*l, (2 * h).saturating_sub(max_raw_score)))
        .collect();
    raw.sort_unstable_by_key(|(_, score)| std::cmp::Reverse(*score));
    let scores = raw
        .iter()
        .map(|&(l, s)| (l, s as f64 / max_raw_score as f64))
        .collect();
    (scores, max_raw_score)
}

/// `counted` stably sorted by count, highest first: a counting sort, as the counts are small
/// (at most the number of trigrams) and nearly all 1.
fn by_count_descending(counted: Vec<(u32, u64)>) -> Vec<(u32, u64)> {
    let most = counted.iter().map(|&(n, _)| n as usize).max().unwrap_or(0);
    // starts[n]: where the first trigram counted n times goes (the higher counts before it).
    let mut starts = vec![0usize; most + 2];
    for &(n, _) in &counted {
        starts[most - n as usize + 1] += 1;
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut out = vec![(0, 0); counted.len()];
    for (n, g) in counted {
        let at = &mut starts[most - n as usize];
        out[*at] = (n, g);
        *at += 1;
    }
    out
}

/// whatlang's trigram scores (best first) and the number of distinct trigrams of the text.
fn trigram_scores(lower: &str, tables: &Tables) -> (Vec<(Lang, f64)>, usize) {
    // trigrams::utils::count, as packed numbers
    let mut grams: Vec<u64> = Vec::with_capacity(lower.len() + 1);
    let mut chars = lower
        .chars()
        .map(|c| if is_stop_char(c) { ' ' } else { c })
        .chain(Some(' '));
    let mut c1 = ' ';
    let Some(mut c2) = chars.next() else {
        return (Vec::new(), 0);
    };
    for c3 in chars {
        if !(c2 == ' ' && (c1 == ' ' || c3 == ' ')) {
            grams.push(pack(c1, c2, c3));
        }
        c1 = c2;
        c2 = c3;
    }
    // Descending, so that runs come out in descending trigram order...
    grams.sort_unstable_by(|a, b| b.cmp(a));
    let mut counted: Vec<(u32, u64)> = Vec::with_capacity(grams.len());
    for g in grams {
        match counted.last_mut() {
            Some((n, last)) if *last == g => *n += 1,
            _ => counted.push((1, g)),
        }
    }
    // ...and a stable sort by count keeps that order among equal counts: most frequent first,
    // ties by the trigram, descending, which is whatlang's `b.cmp(a)` on (count, trigram).
    let mut counted = by_count_descending(counted);
    counted.truncate(TEXT_TRIGRAMS_SIZE);
    let unique = counted.len();

    // calculate_scores_in_profiles / calculate_distance, summed over the matches only
    let mut dist: Vec<i64> = tables
        .profile_len
        .iter()
        .map(|&n| n * MAX_TRIGRAM_DISTANCE)
        .collect();
    for (position, (_, g)) in counted.iter().enumerate() {
        if let Some(entries) = tables.index.get(g) {
            for &(li, rank) in entries {
                if let Some(d) = dist.get_mut(li) {
                    *d += (position as i64 - rank).abs() - MAX_TRIGRAM_DISTANCE;
                }
            }
        }
    }
    let count = unique as i64;
    let mut distances: Vec<(Lang, u32)> = tables
        .trigram_langs
        .iter()
        .zip(&dist)
        .map(|(&l, &d)| {
            let mut d = d;
            if MAX_TRIGRAM_DISTANCE > count {
                d -= (MAX_TRIGRAM_DISTANCE - count) * MAX_TRIGRAM_DISTANCE;
            }
            (l, d.clamp(0, MAX_TOTAL_DISTANCE) as u32)
        })
        .collect();
    distances.sort_unstable_by_key(|(_, d)| *d);
    let max_dist = unique as u32 * MAX_TRIGRAM_DISTANCE as u32;
    let scores = distances
        .iter()
        .map(|&(l, d)| {
            (
                l,
                f64::from(max_dist.saturating_sub(d)) / f64::from(max_dist),
            )
        })
        .collect();
    (scores, unique)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_counting_sort_is_the_stable_sort() {
        let counted: Vec<(u32, u64)> = (0..500u64)
            .map(|g| (((g * 7919) % 13) as u32 / 4 + 1, 1000 - g))
            .collect();
        let mut want = counted.clone();
        want.sort_by_key(|&(n, _)| std::cmp::Reverse(n));
        assert_eq!(by_count_descending(counted), want);
        assert_eq!(by_count_descending(Vec::new()), Vec::new());
    }

    #[test]
    fn lowercase_is_the_standard_librarys() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let one = c.to_string();
            assert_eq!(lowercase(&one), one.to_lowercase(), "{c:?}");
        }
        for text in ["ΟΔΟΣ ΣΑΣ", "Go HOME", "İstanbul مرحبا ÄÖÜ", ""] {
            assert_eq!(lowercase(text), text.to_lowercase(), "{text}");
        }
    }
}
