//! Text an app wrote, made safe to store and show.
//!
//! An app's words (a token endpoint's `error_description`, an API's error
//! message, a Bridge connector's task report) reach statuses, run
//! histories, pages and webhooks. [`sanitize_message`] is the one function
//! every such message passes before the store keeps it: line breaks and
//! tabs become spaces, other control characters (C0, DEL, C1) and the
//! bidirectional overrides that could reorder what an operator reads are
//! dropped, runs of whitespace collapse to one space, and the text is cut
//! at [`MESSAGE_LEN`] characters (on a character boundary, ending with `…`).

/// The longest message kept, in characters (`…` included).
pub const MESSAGE_LEN: usize = 500;

/// `text` as a stored message: see the module documentation.
pub fn sanitize_message(text: &str) -> String {
    sanitize(text, MESSAGE_LEN)
}

/// Like [`sanitize_message`], with a cap of `max_chars` characters (`…`
/// included; `usize::MAX` for none).
pub fn sanitize(text: &str, max_chars: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_chars.saturating_mul(4)));
    let mut chars = 0usize;
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() || is_bidi_control(c) {
            space = true;
            continue;
        }
        if c.is_control() || is_invisible_format(c) {
            continue;
        }
        if space && chars > 0 {
            out.push(' ');
            chars += 1;
        }
        space = false;
        out.push(c);
        chars += 1;
        if chars > max_chars {
            // Too long: keep what fits with the ellipsis.
            let keep = out
                .char_indices()
                .nth(max_chars.saturating_sub(1))
                .map_or(out.len(), |(at, _)| at);
            out.truncate(keep);
            out.truncate(out.trim_end().len());
            if max_chars > 0 {
                out.push('…');
            }
            return out;
        }
    }
    out
}

/// The bidirectional embedding, override and isolate controls (and the
/// marks), which can make text read in another order than it is stored.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{061c}')
}

/// Zero-width characters and the byte-order mark, which hide text.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_breaks_become_spaces_and_controls_go() {
        assert_eq!(
            sanitize_message("bad\r\n\ttoken\u{7}\u{1b}[31m red\u{7f}\u{9b}!"),
            "bad token[31m red!"
        );
        assert_eq!(sanitize_message("  a \n\n b  "), "a b");
        assert_eq!(sanitize_message("left\u{202e}dlrow"), "left dlrow");
        assert_eq!(sanitize_message("zero\u{200b}width"), "zerowidth");
        assert_eq!(sanitize_message(""), "");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary_with_an_ellipsis() {
        let text = "é".repeat(MESSAGE_LEN + 10);
        let out = sanitize_message(&text);
        assert_eq!(out.chars().count(), MESSAGE_LEN);
        assert!(out.ends_with('…'));
        assert!(out.starts_with("éé"));

        let exact = "x".repeat(MESSAGE_LEN);
        assert_eq!(sanitize_message(&exact), exact);

        // The cut never leaves a space before the ellipsis.
        assert_eq!(sanitize("abc def ghi", 5), "abc…");
        assert_eq!(sanitize("abcdef", 1), "…");
        assert_eq!(sanitize("abcdef", 0), "");
    }
}
