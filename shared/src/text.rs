//! Unicode hygiene for what people type: one normal form (NFC, Unicode Standard Annex #15),
//! and none of the characters that are invisible or reorder text, which make two strings that
//! look alike compare different (a second account for `victim@corp.example`) or make text
//! shown to someone else say something it does not (an org name in a mail).

use std::borrow::Cow;

use icu_normalizer::ComposingNormalizerBorrowed;

/// `s` in Normalization Form C.
pub fn nfc(s: &str) -> Cow<'_, str> {
    ComposingNormalizerBorrowed::new_nfc().normalize(s)
}

/// Whether `s` holds compatibility variants (fullwidth `ｖ`, ligatures, superscripts …):
/// characters that NFKC folds onto others, so that the string only looks like another one.
pub fn has_compatibility_variants(s: &str) -> bool {
    ComposingNormalizerBorrowed::new_nfkc().normalize(s) != nfc(s)
}

/// The first character of `s` that must not appear in an identifier or a name: a control
/// character, a bidirectional control, or a character that is invisible or default
/// ignorable (Unicode's `Default_Ignorable_Code_Point`, which covers zero-width spaces and
/// joiners, the BOM, variation selectors, tags and Hangul fillers).
pub fn hidden_char(s: &str) -> Option<char> {
    s.chars().find(|c| c.is_control() || is_invisible(*c))
}

/// Bidirectional controls and `Default_Ignorable_Code_Point` (Unicode 16 DerivedCoreProperties).
fn is_invisible(c: char) -> bool {
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x061C
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x202A..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFF8
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decomposed_and_composed_forms_are_one_string() {
        assert_eq!(nfc("e\u{301}cole"), "école");
        assert_eq!(nfc("école"), "école");
    }

    #[test]
    fn fullwidth_letters_are_compatibility_variants() {
        assert!(has_compatibility_variants("ｖｉｃｔｉｍ"));
        assert!(has_compatibility_variants("ﬁnance"));
        assert!(!has_compatibility_variants("victim"));
        assert!(!has_compatibility_variants("jürgen"));
    }

    #[test]
    fn invisible_and_bidi_characters_are_found() {
        for s in [
            "vic\u{200B}tim",
            "a\u{200D}b",
            "\u{FEFF}acme",
            "evil\u{202E}moc.",
            "x\u{2066}y",
            "a\u{0007}",
            "tag\u{E0041}",
        ] {
            assert!(hidden_char(s).is_some(), "{s:?}");
        }
        assert_eq!(hidden_char("Acme GmbH & Co. KG"), None);
        assert_eq!(hidden_char("株式会社アクメ"), None);
    }
}
