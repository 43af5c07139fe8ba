//! Script detection: which writing system dominates a comment. Used to pick a head's
//! per-language calibration and to break metrics down by language.

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

/// Counts Arabic and Latin letters and returns the majority script.
pub fn script(text: &str) -> Script {
    let (mut arabic, mut latin, mut other) = (0usize, 0usize, 0usize);
    for c in text.chars() {
        // Ranges first: `is_alphabetic` is a table lookup, needed only for other scripts.
        match c {
            'a'..='z' | 'A'..='Z' => latin += 1,
            _ if c.is_ascii() => {}
            '\u{0621}'..='\u{064A}' => arabic += 1,
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
    fn serde_writes_the_code() {
        for s in [Script::Arabic, Script::Latin, Script::Other] {
            let json = serde_json::to_string(&s).expect("serializes");
            assert_eq!(json, format!("\"{}\"", s.code()));
            assert_eq!(serde_json::from_str::<Script>(&json).ok(), Some(s));
        }
    }
}
