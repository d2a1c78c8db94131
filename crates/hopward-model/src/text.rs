//! Text that came from outside (key comments, user names, host names,
//! SSHSIG namespaces, paths) made safe to show: no character that moves the
//! cursor, changes direction, hides itself or breaks a line, and a bound on
//! its length, so it can never forge or push out a line of hopward's own.
//!
//! Invariant: the output of [`clean`] holds no control (Cc), format (Cf),
//! line separator (Zl) or paragraph separator (Zp) character; each one in
//! the input shows as a visible `\u{..}` escape, so `ro\u{200b}ot` can not
//! pass for `root`.

/// Whether `c` must not reach a person's screen as itself: controls (C0,
/// DEL, C1), Unicode format characters (bidi embeddings, overrides and
/// isolates, zero-width characters, the BOM, tags, interlinear
/// annotations ...), and the line and paragraph separators.
pub fn is_hidden(c: char) -> bool {
    if c.is_control() {
        return true;
    }
    matches!(
        c as u32,
        0x00AD
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF9..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// `text` with every hidden character shown as an escape, cut to at most
/// `max_chars` characters (then ending in `…`).
pub fn clean(text: &str, max_chars: usize) -> String {
    let mut out = String::new();
    let mut shown = 0;
    for c in text.chars() {
        let piece = if is_hidden(c) {
            format!("\\u{{{:x}}}", c as u32)
        } else {
            c.to_string()
        };
        let len = piece.chars().count();
        if shown + len > max_chars {
            out.push('…');
            return out;
        }
        shown += len;
        out.push_str(&piece);
    }
    out
}

/// [`clean`], in double quotes, with `"` and `\` escaped: outside text shown
/// this way can not close its quotes and continue as hopward's own words.
pub fn quoted(text: &str, max_chars: usize) -> String {
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{}\"", clean(&escaped, max_chars))
}

/// Bytes from outside as text, losing nothing: valid UTF-8 as it is, each
/// byte that is not part of valid UTF-8 as `\xNN`. Borrowed when the bytes
/// are UTF-8. Show the result through [`clean`] like any outside text.
pub fn from_bytes(bytes: &[u8]) -> std::borrow::Cow<'_, str> {
    if let Ok(text) = std::str::from_utf8(bytes) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        out.push_str(chunk.valid());
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_format_and_separators_are_shown_as_escapes() {
        assert_eq!(clean("a\nb\x1b[31mc", 100), "a\\u{a}b\\u{1b}[31mc");
        assert_eq!(clean("ro\u{200b}ot", 100), "ro\\u{200b}ot");
        for hidden in [
            '\u{2028}',
            '\u{2029}',
            '\u{202e}',
            '\u{2066}',
            '\u{feff}',
            '\u{85}',
            '\u{e0041}',
            '\u{200d}',
            '\u{61c}',
        ] {
            let out = clean(&format!("x{hidden}y"), 100);
            assert!(!out.contains(hidden), "{hidden:?} got through: {out}");
            assert!(out.contains("\\u{"), "{hidden:?} vanished: {out}");
        }
        assert_eq!(clean("héllo wörld", 100), "héllo wörld");
    }

    #[test]
    fn length_is_bounded_with_escapes_counted() {
        assert_eq!(clean("abcdef", 3), "abc…");
        assert_eq!(clean("abc", 3), "abc");
        let long = "\u{202e}".repeat(1000);
        assert!(clean(&long, 64).chars().count() <= 65);
    }

    #[test]
    fn quoted_text_cannot_close_its_quotes() {
        assert_eq!(quoted("work", 64), "\"work\"");
        assert_eq!(quoted("a\" ok? \\", 64), "\"a\\\" ok? \\\\\"");
    }

    #[test]
    fn bytes_that_are_not_utf8_show_escaped() {
        assert_eq!(from_bytes(b"root"), "root");
        assert!(matches!(from_bytes(b"root"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(from_bytes(b"ro\xffot\xc3"), "ro\\xffot\\xc3");
        assert_eq!(from_bytes("d\u{e9}j\u{e0}".as_bytes()), "d\u{e9}j\u{e0}");
    }
}
