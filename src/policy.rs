//! The input policy: what every producer (`classify`, `POST /v1/classify`, the Kafka stream)
//! does to a comment before the model sees it, in one function, [`InputPolicy::apply`].
//!
//! The text limit counts the characters the model actually reads: the text is measured after
//! the model's own normalization (so what normalization removes or squeezes, such as zero-width
//! characters, tatweel or a run of one repeated character, takes no room), and characters that
//! survive it but show nothing ([`counts`]: invisible and format characters, combining marks)
//! do not count either. Padding a comment with invisible characters cannot push the words after
//! them past the limit. The payload limits (`--max-payload-bytes`, the HTTP body limit) bound
//! the raw size.

use unicode_normalization::char::is_combining_mark;

use crate::classify::Comment;
use crate::normalize::{single_pass, Normalizer, STABLE_GROWTH};

/// The text limit when none is configured, in counted characters.
pub const DEFAULT_MAX_TEXT_CHARS: usize = 10_000;

/// The raw-size limit when none is configured, in bytes: a stream payload (`max_payload_bytes`)
/// or a `classify` input line (`--max-payload-bytes`) over it is refused as `too_large`.
pub const DEFAULT_MAX_PAYLOAD_BYTES: usize = 1_000_000;

/// Normalization makes a text at most this many times longer, in characters: no character
/// normalizes to more than 18 (U+FDFA; `tests::normalization_grows_a_text_at_most_max_growth_fold`
/// checks every one), the other rules only drop or squeeze, but masking a mention (`@x` becomes
/// `@user`) adds up to 3 characters to a token of at least 2: 18 × 2.5. A text this much shorter
/// than the limit cannot be over it, and is not normalized twice.
pub const MAX_GROWTH: usize = 45;

/// What every producer does to a comment before the model sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputPolicy {
    /// Domain for comments that name none (a site's calibration).
    pub default_domain: Option<String>,
    /// Longest text scored, in characters counted after normalization (see [`counts`]); a
    /// longer text is scored on its first `max_text_chars` of them.
    pub max_text_chars: usize,
}

impl Default for InputPolicy {
    fn default() -> Self {
        Self {
            default_domain: None,
            max_text_chars: DEFAULT_MAX_TEXT_CHARS,
        }
    }
}

impl InputPolicy {
    /// Gives `comment` the default domain if it names none and cuts its text to the limit as
    /// `normalizer` (the model's) counts it; returns whether the text was cut. A cut text is
    /// replaced by the normalized form of its prefix, which the model normalizes to itself.
    pub fn apply(&self, comment: &mut Comment, normalizer: &Normalizer) -> bool {
        if comment.domain.is_none() {
            comment.domain.clone_from(&self.default_domain);
        }
        match cut(&comment.text, self.max_text_chars, normalizer) {
            Some(prefix) => {
                comment.text = prefix;
                true
            }
            None => false,
        }
    }
}

/// The text the model should score when `text` has more than `max` counted characters after
/// `normalizer`: its normalized form up to the `max`-th of them. `None` when it is within
/// `max`, the common case, which a short text settles without normalizing.
pub fn cut(text: &str, max: usize, normalizer: &Normalizer) -> Option<String> {
    // ASCII and base Arabic text (nearly every comment) grows at most `STABLE_GROWTH`-fold, so
    // a comment of up to a third of the limit is settled without normalizing it (a 970-char
    // Arabic comment was normalized here just to be counted: 7% of the record path).
    let growth = if single_pass(text) {
        STABLE_GROWTH
    } else {
        MAX_GROWTH
    };
    if text.chars().count().saturating_mul(growth) <= max {
        return None;
    }
    let mut normalized = normalizer.normalize(text);
    let mut counted = 0usize;
    let end = normalized.char_indices().find_map(|(i, c)| {
        counted += usize::from(counts(c));
        (counted > max).then_some(i)
    })?;
    normalized.truncate(end);
    normalized.truncate(normalized.trim_end().len());
    Some(normalized)
}

/// Whether a character that survived normalization counts toward the text limit: not an
/// invisible or format character (Unicode's default-ignorable code points, such as ZWJ, the
/// word joiner U+2060, variation selectors and tags, and general category Cf), not a combining
/// mark, not tatweel.
pub fn counts(c: char) -> bool {
    !(is_default_ignorable(c) || is_format(c) || is_combining_mark(c) || c == '\u{0640}')
}

/// Unicode's Default_Ignorable_Code_Point property (DerivedCoreProperties.txt, Unicode 15.1).
fn is_default_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{115F}'..='\u{1160}'
            | '\u{17B4}'..='\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF0}'..='\u{FFF8}'
            | '\u{1BCA0}'..='\u{1BCA3}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// General category Cf characters that are not default-ignorable (Unicode 15.1).
fn is_format(c: char) -> bool {
    matches!(
        c,
        '\u{0600}'..='\u{0605}'
            | '\u{06DD}'
            | '\u{070F}'
            | '\u{0890}'..='\u{0891}'
            | '\u{08E2}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}'
            | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}'
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comment(text: &str) -> Comment {
        Comment::parse(
            serde_json::json!({"id": 1, "text": text})
                .to_string()
                .as_bytes(),
        )
        .expect("valid comment")
    }

    fn policy(max: usize) -> InputPolicy {
        InputPolicy {
            default_domain: Some("site".into()),
            max_text_chars: max,
        }
    }

    const ABUSE: &str = "you are a stupid idiot";

    #[test]
    fn invisible_padding_takes_no_room() {
        let n = Normalizer::default();
        for pad in [
            "\u{200B}",
            "\u{200C}",
            "\u{200E}",
            "\u{200F}",
            "\u{FEFF}",
            "\u{2060}",
            "\u{00AD}",
            "\u{200D}",
            "\u{0640}",
            "\u{FE0F}",
            "\u{E0041}",
            " ",
            "\n",
            "x",
        ] {
            let mut c = comment(&format!("{}{ABUSE}", pad.repeat(10_000)));
            let cut = policy(10_000).apply(&mut c, &n);
            assert!(
                c.text.ends_with(ABUSE),
                "{pad:?}: the words after the padding survive"
            );
            assert!(!cut, "{pad:?}: within the limit once normalized");
        }
        // Alternating invisibles are not squeezed by normalization, but do not count either.
        let mut c = comment(&format!("{}{ABUSE}", "\u{200D}\u{2060}".repeat(10_000)));
        assert!(!policy(10_000).apply(&mut c, &n));
        assert!(c.text.ends_with(ABUSE));
        // Nor do stacked combining marks.
        let mut c = comment(&format!("a{} {ABUSE}", "\u{0301}\u{0300}".repeat(10_000)));
        assert!(!policy(10_000).apply(&mut c, &n));
        assert!(c.text.ends_with(ABUSE));
    }

    #[test]
    fn a_long_text_is_cut_after_the_limit_in_counted_characters() {
        let n = Normalizer::default();
        let mut c = comment(&format!("{}{}", "\u{200B}ab ".repeat(20), "tail"));
        assert!(policy(10).apply(&mut c, &n));
        assert_eq!(c.text, "ab ab ab a");
        assert_eq!(
            n.normalize(&c.text),
            c.text,
            "the model reads the cut text as it is"
        );
        let mut c = comment("مرحبا بكم");
        assert!(policy(5).apply(&mut c, &n));
        assert_eq!(c.text, "مرحبا");
        let mut c = comment("short");
        assert!(!policy(5).apply(&mut c, &n));
        assert_eq!(
            c.text, "short",
            "a text within the limit is left as it came"
        );
    }

    #[test]
    fn the_default_domain_fills_only_a_missing_one() {
        let n = Normalizer::default();
        let mut c = comment("hi");
        policy(10).apply(&mut c, &n);
        assert_eq!(c.domain.as_deref(), Some("site"));
        let mut c = Comment::parse(br#"{"text": "hi", "domain": "own"}"#).expect("valid");
        policy(10).apply(&mut c, &n);
        assert_eq!(c.domain.as_deref(), Some("own"));
    }

    #[test]
    fn normalization_grows_a_text_at_most_max_growth_fold() {
        let n = Normalizer::default();
        let (mut worst, mut at) = (0.0f64, String::new());
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            // Alone, as a mention's first letter, and next to itself (a run to squeeze).
            for s in [format!("{c}"), format!("@{c}"), format!("{c}{c}")] {
                let grown = n.normalize(&s).chars().count() as f64 / s.chars().count() as f64;
                if grown > worst {
                    (worst, at) = (grown, s);
                }
            }
        }
        assert!(worst <= MAX_GROWTH as f64, "{at:?} grows {worst}-fold");
        assert!(worst > 1.0, "some text grows");
    }

    #[test]
    fn single_pass_text_grows_at_most_stable_growth_fold() {
        let loose = Normalizer::new(crate::normalize::NormalizeConfig {
            max_repeat: 1,
            ..Default::default()
        });
        for n in [Normalizer::default(), loose] {
            for s in [
                "@x ".repeat(50),
                "@x".to_string(),
                "@w. ".repeat(30),
                "@x.w. ".repeat(30),
                "@ا ".repeat(40),
                "w. a@b.cd www. @@x @_ http:// ".repeat(10),
                "ـــ @ب، ".repeat(20),
            ] {
                assert!(single_pass(&s), "{s:?}");
                let grown = n.normalize(&s).chars().count();
                assert!(
                    grown <= s.chars().count() * STABLE_GROWTH,
                    "{s:?} grows to {grown}"
                );
            }
        }
        // Every ASCII or Arabic-block character alone and as a mention's first letter.
        let n = Normalizer::default();
        for c in (0..0x700u32)
            .filter_map(char::from_u32)
            .filter(|c| single_pass(&c.to_string()))
        {
            for s in [format!("{c}"), format!("@{c}"), format!("{c}{c}")] {
                let grown = n.normalize(&s).chars().count();
                assert!(grown <= s.chars().count() * STABLE_GROWTH, "{s:?}");
            }
        }
    }

    #[test]
    fn visible_characters_count() {
        for c in ['a', 'ب', '1', ' ', '😂', '!', '中'] {
            assert!(counts(c), "{c:?}");
        }
    }
}
