//! What API callers and pages see of a stored reason (issue 7, section 3):
//! a connection's `status_reason` and a run's error message are written
//! where the failure happens (the sync engine, the token manager) and may
//! hold an app's answer. [`public_reason`] keeps the hub's own words and
//! the kind of failure, withholds the connector's text (which often quotes
//! the app's body: `answered 401 to ...: {body}`, `HTTP 500: {body}`)
//! and the token endpoint's `error_description`, keeps the short payload
//! excerpt of unreadable data (the operator needs it to see what came back;
//! it is at most [`tether_core::error::EXCERPT_LEN`] characters), strips
//! control characters and caps the length at [`PUBLIC_REASON_LEN`]. The
//! full text stays in the store and in the server log.

/// The longest reason shown, in characters.
pub const PUBLIC_REASON_LEN: usize = 300;

/// How `tether_core::SourceError` displays each kind (its `#[error]`
/// formats), and what to say instead of the connector's text.
const SOURCE_KINDS: &[(&str, &str)] = &[
    (
        "the app refused the credentials:",
        "the app refused the credentials",
    ),
    ("missing permission", "the credentials lack a permission"),
    (
        "rate limited by the app",
        "the app rate-limited the requests",
    ),
    (
        "temporary failure talking to the app:",
        "the app could not be reached or failed for now",
    ),
    (
        "the app sent data Tether cannot read:",
        "the app sent data Tether cannot read",
    ),
    (
        "not available for this account:",
        "the app does not offer this for this account",
    ),
    (
        "misconfigured:",
        "the app refused the connection's settings (wrong organisation or base URL?)",
    ),
];

use crate::short_code;

const WITHHELD: &str = "the server log has the app's answer";

/// `text` with control and bidirectional-override characters gone and runs
/// of whitespace collapsed (`tether_core::text::sanitize`, the one
/// sanitiser of an app's words).
fn clean(text: &str) -> String {
    tether_core::text::sanitize(text, usize::MAX)
}

fn truncate(text: String) -> String {
    tether_core::text::sanitize(&text, PUBLIC_REASON_LEN)
}

/// An app's text (a name, an id) as an event carries it: control and
/// bidirectional characters gone, at most [`PUBLIC_REASON_LEN`] characters.
pub(crate) fn plain_text(text: &str) -> String {
    truncate(clean(text))
}

/// The public form of a stored reason or run error message; see the
/// module documentation.
pub fn public_reason(text: &str) -> String {
    let text = clean(text);
    // tether-sync prefixes a run's error with the stream that failed.
    let (stream, rest) = match text
        .strip_prefix("stream `")
        .and_then(|r| r.split_once("`: "))
    {
        Some((name, rest)) if !name.contains('`') => (Some(name), rest),
        _ => (None, text.as_str()),
    };
    let prefix = stream
        .map(|s| format!("stream `{s}`: "))
        .unwrap_or_default();
    for (display, public) in SOURCE_KINDS {
        if !rest.starts_with(display) {
            continue;
        }
        let mut out = format!("{prefix}{public}");
        if let Some(bound) = rest
            .strip_prefix("the app sent data Tether cannot read: the answer from ")
            .and_then(|after| after.split_once(" (payload starts: "))
            .map(|(said, _)| said)
            .filter(|said| said.contains(" exceeded "))
        {
            // The hub's own words (`tether_core::http::answer_too_large`):
            // the host, the connection, the bound and what to do.
            out = format!("{prefix}the answer from {bound}");
        } else if let Some(at) = rest.rfind(" (payload starts: ") {
            // The excerpt the operator needs, already bounded by the core.
            out.push_str(&rest[at..]);
        } else if let Some(wait) = rest
            .strip_prefix("rate limited by the app (retry in ")
            .and_then(|r| r.split_once("s)"))
            .map(|(n, _)| n)
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        {
            out.push_str(&format!(" (retry in {wait}s)"));
        }
        out.push_str("; ");
        out.push_str(WITHHELD);
        return truncate(out);
    }
    // The token manager's reasons: the hub's words around the token
    // endpoint's error code and description.
    if let Some((app, after)) = rest.split_once(" refused the refresh token: ") {
        let code = after
            .split([':', '.', ' '])
            .next()
            .filter(|c| short_code(c))
            .map(|c| format!(" (`{c}`)"))
            .unwrap_or_default();
        return truncate(format!(
            "{prefix}{app} refused the refresh token{code}. Reconnect the connection; {WITHHELD}."
        ));
    }
    if let Some((app, _)) = rest.split_once(" refused the connection's client credentials") {
        return truncate(format!(
            "{prefix}{app} refused the connection's client credentials. Give the connection a valid client id and secret; {WITHHELD}."
        ));
    }
    truncate(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tether_core::SourceError;

    #[test]
    fn an_answer_over_its_bound_is_told_in_the_hubs_words() {
        let e = SourceError::BadData {
            message: tether_core::http::answer_too_large(
                "api.acme.test",
                Some("Acme - Eng"),
                32 << 20,
                tether_core::http::PAGE_LIMIT_SETTING,
            ),
            excerpt: String::new(),
        };
        let shown = public_reason(&format!("stream `users`: {e}"));
        assert!(
            shown.starts_with(
                "stream `users`: the answer from api.acme.test for Acme - Eng exceeded 32 MiB;"
            ),
            "{shown}"
        );
        assert!(shown.contains("max_page_mib"), "{shown}");
        // A connector's own bad-data text is still withheld.
        let other = SourceError::bad_data("odd: the answer from x exceeded y", b"{}");
        let shown = public_reason(&other.to_string());
        assert!(!shown.contains("exceeded"), "{shown}");
    }

    #[test]
    fn the_connectors_text_is_withheld() {
        let e = SourceError::CredentialsRejected {
            reason: "Acme answered 401 to GET /orgs/acme: {\"leak\":\"AKIA123\"}".into(),
        };
        let shown = public_reason(&format!("stream `members`: {e}"));
        assert_eq!(
            shown,
            "stream `members`: the app refused the credentials; the server log has the app's answer"
        );
    }

    #[test]
    fn the_bad_data_excerpt_stays() {
        let e = SourceError::bad_data("members is not a list", b"<html>oops</html>");
        let shown = public_reason(&e.to_string());
        assert!(
            shown.starts_with(
                "the app sent data Tether cannot read (payload starts: \"<html>oops</html>\")"
            ),
            "{shown}"
        );
    }

    #[test]
    fn control_characters_go_and_length_is_capped() {
        let shown = public_reason(&format!(
            "sync held\u{1b}[31m for\n\tconfirmation: {}",
            "x".repeat(1000)
        ));
        assert!(!shown.chars().any(|c| c.is_control()), "{shown:?}");
        assert!(
            shown.starts_with("sync held[31m for confirmation: x"),
            "{shown}"
        );
        assert_eq!(shown.chars().count(), PUBLIC_REASON_LEN);
        assert!(shown.ends_with('…'));
    }

    #[test]
    fn token_endpoint_descriptions_are_withheld() {
        let shown = public_reason(
            "Acme IdP refused the refresh token: bad_refresh_token: <script>x</script>. Reconnect the connection.",
        );
        assert_eq!(
            shown,
            "Acme IdP refused the refresh token (`bad_refresh_token`). Reconnect the connection; the server log has the app's answer."
        );
    }
}
