//! What the logs may show. Text logs escape control characters in every field and
//! message (a newline in a message field or an external command's stderr cannot forge a
//! log line, an escape sequence cannot clear the screen), and no log shows an HTTP(S)
//! URL's path or query: a Slack or webhook URL carries its secret there, and the HTTP
//! client (`ureq`) logs the URLs it calls at debug and trace. Its targets are also capped
//! at info, whatever `RUST_LOG` asks, since it logs request headers too.

use std::fmt::Write as _;

/// Directives appended to every filter: the HTTP client's own logs, which print the
/// URLs and headers of requests, stay at info or above.
pub const CAPPED_TARGETS: &[&str] = &["ureq=info", "ureq_proto=info", "rustls=info"];

/// `text` safe for one log line: control characters escaped (`\n`, `\r`, `\t`, others as
/// `\u{..}`), and each `http://` or `https://` URL cut to its scheme and host.
pub fn scrub(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = find_url(rest) {
        escape_into(&rest[..at], &mut out);
        let url = &rest[at..];
        let end = url
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '<' | '>' | '`'))
            .unwrap_or(url.len());
        let (scheme, after) = url[..end].split_once("://").unwrap_or(("", &url[..end]));
        let host_end = after.find(['/', '?', '#']).unwrap_or(after.len());
        // A password in the authority is dropped too.
        let host = after[..host_end].rsplit('@').next().unwrap_or("");
        escape_into(&format!("{scheme}://{host}"), &mut out);
        if host_end < after.len() {
            out.push_str("/[redacted]");
        }
        rest = &url[end..];
    }
    escape_into(rest, &mut out);
    out
}

/// Where the next `http://` or `https://` starts, case-insensitively.
fn find_url(text: &str) -> Option<usize> {
    let lower = text.to_ascii_lowercase();
    [lower.find("http://"), lower.find("https://")]
        .into_iter()
        .flatten()
        .min()
}

fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// The text formatter's fields: `name=value`, space-separated, the message bare, each
/// value scrubbed.
pub fn text_fields() -> impl for<'w> tracing_subscriber::fmt::FormatFields<'w> + 'static {
    use tracing_subscriber::field::MakeExt;
    tracing_subscriber::fmt::format::debug_fn(|writer, field, value| {
        let text = scrub(&format!("{value:?}"));
        if field.name() == "message" {
            write!(writer, "{text}")
        } else {
            write!(writer, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_url_paths_redacted() {
        assert_eq!(
            scrub("bad\n2026-01-01T00:00:00Z ERROR forged\x1b[2J"),
            "bad\\n2026-01-01T00:00:00Z ERROR forged\\u{1b}[2J"
        );
        assert_eq!(
            scrub("POST https://hooks.slack.com/services/T0/B0/XyZ?x=1 failed"),
            "POST https://hooks.slack.com/[redacted] failed"
        );
        assert_eq!(
            scrub("to \"HTTP://user:pw@example.com:8080/hook\""),
            "to \"HTTP://example.com:8080/[redacted]\""
        );
        assert_eq!(
            scrub("nats://127.0.0.1:4222 ok"),
            "nats://127.0.0.1:4222 ok"
        );
    }
}
