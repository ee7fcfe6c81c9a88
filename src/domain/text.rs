//! Text that crosses a trust boundary: what people type into drafts, and what ERPs send back
//! (answers, ack files, callbacks, server messages). No I/O.
//!
//! PostgreSQL refuses a NUL in `text` and `\u0000` in `jsonb`: one such byte in a batched
//! statement fails the whole batch, other orgs' rows included. So nothing an ERP sends is
//! stored before it went through [`clean`] (free text) or [`is_clean_identifier`]
//! (identifiers, which are refused rather than altered: a changed order number is a wrong one).

/// The replacement for a character that cannot be kept (U+FFFD, as in lossy UTF-8 decoding).
pub const REPLACEMENT: char = '\u{FFFD}';

/// Control characters (C0, DEL, C1) other than tab, line feed and carriage return, which
/// free text such as an ERP's error message legitimately contains.
pub fn is_forbidden_control(c: char) -> bool {
    c.is_control() && !matches!(c, '\t' | '\n' | '\r')
}

/// Unicode's explicit direction controls (embeddings, overrides, isolates, marks): invisible,
/// yet they reorder what a reader sees ("Trojan Source"). Kept in stored text, shown visibly.
pub fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Free text from outside, made storable: forbidden control characters (NUL included) become
/// U+FFFD, and the text is cut to `max_chars` characters.
pub fn clean(text: &str, max_chars: usize) -> String {
    text.chars()
        .take(max_chars)
        .map(|c| {
            if is_forbidden_control(c) {
                REPLACEMENT
            } else {
                c
            }
        })
        .collect()
}

/// True when an identifier (an order number, an error code, a file name) holds no control
/// character at all (line breaks included: an identifier is one line).
pub fn is_clean_identifier(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

/// Makes every string in a JSON value storable ([`clean`] without a length limit), keys
/// included; the shape is kept.
pub fn clean_json(value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::String(s) if s.chars().any(is_forbidden_control) => *s = clean(s, usize::MAX),
        Value::Array(items) => items.iter_mut().for_each(clean_json),
        Value::Object(map) => {
            if map.keys().any(|k| k.chars().any(is_forbidden_control)) {
                let entries = std::mem::take(map);
                for (k, mut v) in entries {
                    clean_json(&mut v);
                    map.insert(clean(&k, usize::MAX), v);
                }
            } else {
                map.values_mut().for_each(clean_json);
            }
        }
        _ => {}
    }
}

/// The text with every direction control shown as a visible marker (`⟦U+202E⟧`), for pages
/// that display text from outside.
pub fn reveal_bidi(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(is_bidi_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if is_bidi_control(c) {
            out.push_str(&format!("⟦U+{:04X}⟧", c as u32));
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clean_replaces_nul_and_controls_but_keeps_line_breaks() {
        assert_eq!(
            clean("a\0b\u{7}c\nd\te\r", 100),
            "a\u{FFFD}b\u{FFFD}c\nd\te\r"
        );
        assert_eq!(clean("äöü\u{85}", 100), "äöü\u{FFFD}");
        assert_eq!(clean("abcdef", 3), "abc");
        assert_eq!(clean("", 3), "");
    }

    #[test]
    fn identifiers_with_any_control_are_not_clean() {
        assert!(is_clean_identifier("SO-4711 ÄÖ"));
        for bad in ["a\0", "a\nb", "\u{1b}[31m", "x\u{9f}"] {
            assert!(!is_clean_identifier(bad), "{bad:?}");
        }
    }

    #[test]
    fn json_is_cleaned_everywhere() {
        let mut v = serde_json::json!({"a\u{0}": ["x\u{0}", {"m": "ok\u{1}"}], "n": 1});
        clean_json(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"a\u{FFFD}": ["x\u{FFFD}", {"m": "ok\u{FFFD}"}], "n": 1})
        );
    }

    #[test]
    fn bidi_controls_are_revealed() {
        assert_eq!(reveal_bidi("plain"), "plain");
        assert_eq!(reveal_bidi("ab\u{202E}cd"), "ab⟦U+202E⟧cd");
        assert!(is_bidi_control('\u{2067}'));
        assert!(!is_bidi_control('a'));
    }
}
