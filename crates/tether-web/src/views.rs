//! The page layout and small pieces shared by the pages.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{html, Markup, DOCTYPE};
use tether_hub::SyncState;

use crate::auth::Auth;

/// The frame of every page. `refresh` reloads the page every 2 seconds
/// (while a sync runs).
pub(crate) fn layout(title: &str, auth: Option<&Auth>, refresh: bool, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                @if refresh { meta http-equiv="refresh" content="2"; }
                title { (title) " · Tether" }
                link rel="stylesheet" href="/static/tether.css";
            }
            body {
                header.topbar {
                    a.brand href="/" { "Tether" }
                    @if let Some(auth) = auth {
                        nav {
                            a href="/" { "Connected Apps" }
                            a href="/apps" { "Add an app" }
                            a href="/people" { "People" }
                            a href="/settings" { "Settings" }
                            @if auth.is_owner() { a href="/users" { "Users" } }
                            a href="/audit" { "Audit log" }
                            form.inline method="post" action="/logout" #logout-form {
                                input type="hidden" name="csrf" value=(auth.csrf());
                                button.link type="submit" { "Sign out" }
                            }
                        }
                    }
                }
                main { (body) }
            }
        }
    }
}

/// A page explaining what went wrong, with a stable code in
/// `data-error-code`, and a link onwards.
pub(crate) fn error_page(
    status: StatusCode,
    title: &str,
    message: &str,
    code: &str,
    link: Option<(&str, &str)>,
) -> Response {
    let (href, label) = link.unwrap_or(("/", "Back to Connected Apps"));
    let body = html! {
        section.error-card #error data-error-code=(code) {
            h1 { (title) }
            p.message { (message) }
            p { a.button href=(href) { (label) } }
        }
    };
    (status, layout(title, None, false, body)).into_response()
}

/// The label of a status badge.
pub(crate) fn status_label(status: &str) -> &'static str {
    match status {
        "active" => "Active",
        "syncing" => "Syncing",
        "expired" => "Connection expired",
        "error" => "Error",
        "pending" => "Pending",
        "disabled" => "Disabled",
        _ => "Unknown",
    }
}

pub(crate) fn badge(status: &str) -> Markup {
    html! { span class=(format!("badge status-{status}")) { (status_label(status)) } }
}

/// Live progress of a running sync.
pub(crate) fn progress(state: &SyncState) -> Markup {
    html! {
        div.progress {
            span.pages { (thousands(state.pages as i64)) " pages" }
            @for (kind, n) in &state.fetched {
                " · "
                span class=(format!("fetched fetched-{kind}")) { (thousands(*n as i64)) " " (plural(kind, *n as i64)) }
            }
            @if state.elapsed_ms > 0 {
                " · " span.elapsed { (duration_ms(state.elapsed_ms as i64)) }
            }
        }
    }
}

/// `account` → `accounts`, `role_assignment` → `role assignments`.
pub(crate) fn plural(kind: &str, n: i64) -> String {
    let k = kind.replace('_', " ");
    if n == 1 {
        k
    } else {
        format!("{k}s")
    }
}

/// `1234567` → `1,234,567`.
pub(crate) fn thousands(n: i64) -> String {
    let digits = n.unsigned_abs().to_string();
    let mut groups: Vec<&str> = digits
        .as_bytes()
        .rchunks(3)
        .map(|c| std::str::from_utf8(c).expect("ASCII digits"))
        .collect();
    groups.reverse();
    let sign = if n < 0 { "-" } else { "" };
    format!("{sign}{}", groups.join(","))
}

/// Unix ms as `2025-01-02 15:04 UTC`.
pub(crate) fn datetime(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| "—".into())
}

/// A time with its distance from now, in a `<time>` element.
pub(crate) fn time_ago(ms: i64) -> Markup {
    let iso = chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_default();
    let ago = (chrono::Utc::now().timestamp_millis() - ms).max(0);
    html! { time datetime=(iso) title=(datetime(ms)) { (duration_ms(ago)) " ago" } }
}

/// `1500` → `1.5 s`, `125000` → `2 min 5 s`.
pub(crate) fn duration_ms(ms: i64) -> String {
    let s = ms / 1000;
    match s {
        _ if ms < 1000 => format!("{ms} ms"),
        0..=9 => format!("{:.1} s", ms as f64 / 1000.0),
        10..=59 => format!("{s} s"),
        60..=3599 => format!("{} min {} s", s / 60, s % 60),
        3600..=86399 => format!("{} h {} min", s / 3600, (s % 3600) / 60),
        _ => format!("{} d {} h", s / 86400, (s % 86400) / 3600),
    }
}

/// A session duration in words.
pub(crate) fn duration_words(secs: i64) -> String {
    match secs {
        s if s % 86400 == 0 && s >= 86400 => {
            let d = s / 86400;
            if d == 1 {
                "24 hours".into()
            } else {
                format!("{d} days")
            }
        }
        s if s % 3600 == 0 && s >= 3600 => {
            let h = s / 3600;
            if h == 1 {
                "1 hour".into()
            } else {
                format!("{h} hours")
            }
        }
        s => format!("{} minutes", s / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(-1234567), "-1,234,567");
        assert_eq!(duration_ms(250), "250 ms");
        assert_eq!(duration_ms(1500), "1.5 s");
        assert_eq!(duration_ms(125_000), "2 min 5 s");
        assert_eq!(duration_words(3600), "1 hour");
        assert_eq!(duration_words(8 * 3600), "8 hours");
        assert_eq!(duration_words(86400), "24 hours");
        assert_eq!(duration_words(7 * 86400), "7 days");
        assert_eq!(plural("role_assignment", 2), "role assignments");
        assert_eq!(plural("account", 1), "account");
    }

    #[test]
    fn pages_escape_html() {
        let page = layout("<script>", None, false, html! { p { ("<b>&") } }).into_string();
        assert!(page.contains("&lt;script&gt;"));
        assert!(page.contains("&lt;b&gt;&amp;"));
        assert!(!page.contains("<script>"));
    }
}
