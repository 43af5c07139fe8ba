//! Script and language detection. The dominant writing system picks a head's per-script
//! calibration, breaks metrics down and tells whether a head has ever seen such text; the
//! language (ISO 639-1, by whatlang) is what the Perspective API reports as detected.

/// The dominant script of a text, written as its code: `ar`, `latin`, `other`.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
    utoipa::ToSchema,
)]
pub enum Script {
    /// Arabic letters (Arabic, Persian, Urdu blocks) are the majority of letters.
    #[serde(rename = "ar")]
    Arabic,
    /// Latin letters are the majority.
    #[serde(rename = "latin")]
    Latin,
    /// Neither, or no letters at all.
    #[serde(rename = "other")]
    Other,
}

impl Script {
    /// Short code used in model files, metrics and outputs: `ar`, `latin`, `other`.
    pub fn code(self) -> &'static str {
        match self {
            Script::Arabic => "ar",
            Script::Latin => "latin",
            Script::Other => "other",
        }
    }

    /// The name of this script's calibration inside a head (`lang:ar`, `lang:latin`).
    pub fn calibration_name(self) -> String {
        format!("lang:{}", self.code())
    }
}

/// Whether `text`, of majority script `script`, has any letter (emoji, digits and punctuation
/// alone are every head's to score).
pub fn has_letters(text: &str, script: Script) -> bool {
    script != Script::Other || text.chars().any(char::is_alphabetic)
}

/// The script most of `scripts` are in (`Other` when there are none): the one a site's
/// single calibration is fit for.
pub fn majority(scripts: impl IntoIterator<Item = Script>) -> Script {
    let mut counts = std::collections::BTreeMap::new();
    for s in scripts {
        *counts.entry(s).or_insert(0usize) += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(_, n)| n)
        .map_or(Script::Other, |(s, _)| s)
}

/// Counts Arabic and Latin letters and returns the majority script.
pub fn script(text: &str) -> Script {
    let (mut arabic, mut latin, mut other) = (0usize, 0usize, 0usize);
    for c in text.chars() {
        // Ranges first: `is_alphabetic` is a table lookup, needed only for other scripts.
        match c {
            'a'..='z' | 'A'..='Z' => latin += 1,
            _ if c.is_ascii() => {}
            '\u{0621}'..='\u{064A}' => arabic += 1,
            // Arabic comma, semicolon and question mark: not letters, without a table lookup.
            '\u{060C}' | '\u{061B}' | '\u{061F}' => {}
            _ if !c.is_alphabetic() => {}
            '\u{0600}'..='\u{06FF}'
            | '\u{0750}'..='\u{077F}'
            | '\u{08A0}'..='\u{08FF}'
            | '\u{FB50}'..='\u{FDFF}'
            | '\u{FE70}'..='\u{FEFF}' => arabic += 1,
            '\u{00C0}'..='\u{024F}' => latin += 1,
            _ => other += 1,
        }
    }
    if arabic > latin && arabic >= other && arabic > 0 {
        Script::Arabic
    } else if latin >= other && latin > 0 {
        Script::Latin
    } else {
        Script::Other
    }
}

/// Least whatlang confidence for a language to be reported. Its trigram detector guesses wildly
/// on a few words ("Go home you're drunk" comes out French at 0.23), so a weaker guess is
/// reported as no language rather than a wrong one.
const MIN_CONFIDENCE: f64 = 0.4;

/// Characters of a comment the language identifier reads.
const LANGUAGE_PREFIX: usize = 200;

mod combined;
mod profiles;

/// The languages [`language`] chooses from: those Perspective served, plus Persian and Urdu
/// (without them Persian text reads as Arabic). Comparing against every Latin-script profile
/// cost 40% of an analyze request's CPU (perf, `scripts/bench-http`), for a field no decision
/// depends on.
const ALLOWED: &[whatlang::Lang] = {
    use whatlang::Lang::*;
    &[
        Ara, Cmn, Ces, Nld, Eng, Fra, Deu, Hin, Ind, Ita, Jpn, Kor, Pol, Por, Rus, Spa, Swe, Pes,
        Urd,
    ]
};

/// The first 200 characters say as much as the whole comment, at a bounded cost: a record of a
/// 10,000-character comment must not spend most of its time on this field.
fn head(text: &str) -> &str {
    char_prefix(text, LANGUAGE_PREFIX)
}

/// The first `chars` characters of `text` (all of it when it is shorter), as a slice: no
/// character-by-character copy.
pub fn char_prefix(text: &str, chars: usize) -> &str {
    match text.char_indices().nth(chars) {
        Some((cut, _)) => &text[..cut],
        None => text,
    }
}

/// The most likely language of a text as an ISO 639-1 code (`en`, `ar`, ...), among
/// [`ALLOWED`], by whatlang's trigram and alphabet method; `None` when it cannot tell (no
/// letters, or too few words for a confident guess). Informational: what a head may score is
/// decided by [`script`]. Latin and Arabic text is scored by [`combined`], which answers what
/// whatlang answers in a fraction of the time; other scripts by whatlang itself.
pub fn language(text: &str) -> Option<&'static str> {
    let head = head(text);
    let guess = match whatlang::detect_script(head) {
        Some(s @ (whatlang::Script::Latin | whatlang::Script::Arabic)) => {
            combined::detect(head, s).map(|g| (g.lang, g.confidence))
        }
        Some(_) => detector().detect(head).map(|i| (i.lang(), i.confidence())),
        None => None,
    };
    guess
        .filter(|&(_, confidence)| confidence > RELIABLE || confidence >= MIN_CONFIDENCE)
        .map(|(lang, _)| iso_639_1(lang))
}

/// [`language`] computed by whatlang alone: the reference [`combined`] is checked against.
pub fn language_whatlang(text: &str) -> Option<&'static str> {
    detector()
        .detect(head(text))
        .filter(|info| info.is_reliable() || info.confidence() >= MIN_CONFIDENCE)
        .map(|info| iso_639_1(info.lang()))
}

/// The raw guesses (language, confidence) of the fast path and of whatlang for `text`, the
/// same unless [`combined`] is wrong; `None` where the fast path does not apply or there are
/// no letters.
pub fn guesses(text: &str) -> [Option<(whatlang::Lang, f64)>; 2] {
    let head = head(text);
    let theirs = detector().detect(head).map(|i| (i.lang(), i.confidence()));
    let ours = match whatlang::detect_script(head) {
        Some(s @ (whatlang::Script::Latin | whatlang::Script::Arabic)) => {
            combined::detect(head, s).map(|g| (g.lang, g.confidence))
        }
        _ => theirs,
    };
    [ours, theirs]
}

/// whatlang's own reliability threshold (`Info::is_reliable`: a confidence above it).
const RELIABLE: f64 = 0.9;

fn detector() -> &'static whatlang::Detector {
    static DETECTOR: std::sync::LazyLock<whatlang::Detector> =
        std::sync::LazyLock::new(|| whatlang::Detector::with_allowlist(ALLOWED.to_vec()));
    &DETECTOR
}

/// whatlang's ISO 639-3 languages as ISO 639-1 codes (the codes Perspective's clients send).
fn iso_639_1(lang: whatlang::Lang) -> &'static str {
    use whatlang::Lang::*;
    match lang {
        Epo => "eo",
        Eng => "en",
        Rus => "ru",
        Cmn => "zh",
        Spa => "es",
        Por => "pt",
        Ita => "it",
        Ben => "bn",
        Fra => "fr",
        Deu => "de",
        Ukr => "uk",
        Kat => "ka",
        Ara => "ar",
        Hin => "hi",
        Jpn => "ja",
        Heb => "he",
        Yid => "yi",
        Pol => "pl",
        Amh => "am",
        Jav => "jv",
        Kor => "ko",
        Nob => "nb",
        Dan => "da",
        Swe => "sv",
        Fin => "fi",
        Tur => "tr",
        Nld => "nl",
        Hun => "hu",
        Ces => "cs",
        Ell => "el",
        Bul => "bg",
        Bel => "be",
        Mar => "mr",
        Kan => "kn",
        Ron => "ro",
        Slv => "sl",
        Hrv => "hr",
        Srp => "sr",
        Mkd => "mk",
        Lit => "lt",
        Lav => "lv",
        Est => "et",
        Tam => "ta",
        Vie => "vi",
        Urd => "ur",
        Tha => "th",
        Guj => "gu",
        Uzb => "uz",
        Pan => "pa",
        Aze => "az",
        Ind => "id",
        Tel => "te",
        Pes => "fa",
        Mal => "ml",
        Ori => "or",
        Mya => "my",
        Nep => "ne",
        Sin => "si",
        Khm => "km",
        Tuk => "tk",
        Aka => "ak",
        Zul => "zu",
        Sna => "sn",
        Afr => "af",
        Lat => "la",
        Slk => "sk",
        Cat => "ca",
        Tgl => "tl",
        Hye => "hy",
        Cym => "cy",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_the_majority_script() {
        assert_eq!(script("اللهم انصر جندك"), Script::Arabic);
        assert_eq!(script("Go home you're drunk"), Script::Latin);
        assert_eq!(script("@USER هذا كلام فارغ URL"), Script::Arabic);
        assert_eq!(script("😂😂 123"), Script::Other);
        assert_eq!(script(""), Script::Other);
    }

    #[test]
    fn names_languages_by_their_two_letter_codes() {
        assert_eq!(language("اللهم انصر جندك على اعدائك"), Some("ar"));
        assert_eq!(
            language("The vaccine saved my mother's life, and I am grateful"),
            Some("en")
        );
        assert_eq!(language("😂😂 123"), None);
        assert_eq!(language("Go home you're drunk"), None, "too short to tell");
    }

    #[test]
    fn the_fast_path_answers_what_whatlang_answers() {
        for text in [
            "اللهم انصر جندك على اعدائك",
            "The vaccine saved my mother's life, and I am grateful",
            "Go home you're drunk",
            "@USER هذا كلام فارغ URL",
            "Le vaccin a sauvé la vie de ma mère, et je suis reconnaissante",
            "Die Ordnung muss für immer in diesem Codebase bleiben",
            "این یک متن فارسی است که باید فارسی شناخته شود",
            "یہ اردو کا ایک جملہ ہے جو پہچانا جانا چاہیے",
            "Además de todo lo anteriormente dicho, también encontramos...",
            "a",
            "ok 👍",
            "Мы хотим видеть дальше, чем окна дома напротив",
        ] {
            assert_eq!(language(text), language_whatlang(text), "{text}");
            let head = head(text);
            if let Some(s @ (whatlang::Script::Latin | whatlang::Script::Arabic)) =
                whatlang::detect_script(head)
            {
                let ours = combined::detect(head, s).map(|g| (g.lang, g.confidence));
                let theirs = detector().detect(head).map(|i| (i.lang(), i.confidence()));
                assert_eq!(ours, theirs, "{text}");
            }
        }
    }

    #[test]
    fn serde_writes_the_code() {
        for s in [Script::Arabic, Script::Latin, Script::Other] {
            let json = serde_json::to_string(&s).expect("serializes");
            assert_eq!(json, format!("\"{}\"", s.code()));
            assert_eq!(serde_json::from_str::<Script>(&json).ok(), Some(s));
        }
    }
}
