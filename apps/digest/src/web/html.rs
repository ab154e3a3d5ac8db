//! HTML pages as strings: one escaping function that every value passes through, and the
//! layout every page shares (fingerprinted asset links, no inline script or style, so the
//! Content-Security-Policy can forbid both).

use std::fmt::Write;

use super::assets;

/// `text` with `& < > " '` replaced by entities: safe in element content and in quoted
/// attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Who is looking at the page: their name and the form token for the sign-out button.
pub(crate) struct Viewer<'a> {
    pub(crate) username: Option<&'a str>,
    pub(crate) csrf: &'a str,
}

/// A whole page: `body` is already-escaped HTML.
pub(crate) fn page(title: &str, viewer: &Viewer<'_>, body: &str) -> String {
    let mut nav = String::new();
    match viewer.username {
        Some(name) => {
            let _ = write!(
                nav,
                r#"<a href="/files" id="nav-files">My files</a>
<span id="signed-in-as">{name}</span>
<form method="post" action="/signout" id="signout-form" class="inline">
<input type="hidden" name="csrf" value="{csrf}">
<button type="submit" id="signout">Sign out</button>
</form>"#,
                name = esc(name),
                csrf = esc(viewer.csrf),
            );
        }
        None => nav.push_str(
            r#"<a href="/signin" id="nav-signin">Sign in</a> <a href="/signup" id="nav-signup">Sign up</a>"#,
        ),
    }
    format!(
        r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · digest</title>
<link rel="icon" href="{icon}" type="image/svg+xml">
<link rel="stylesheet" href="{css}">
<script src="{js}" defer></script>
</head>
<body>
<header><a href="/" class="brand">digest</a><nav>{nav}</nav></header>
<main>
<h1>{title}</h1>
{body}
</main>
</body>
</html>
"#,
        title = esc(title),
        icon = assets::path("favicon.svg"),
        css = assets::path("app.css"),
        js = assets::path("app.js"),
    )
}

/// A message box (`kind` is `error` or `info`), or nothing.
pub(crate) fn message(kind: &str, text: Option<&str>) -> String {
    text.map_or_else(String::new, |t| {
        format!(
            r#"<p id="message" class="message {kind}" role="alert">{}</p>"#,
            esc(t)
        )
    })
}

/// A byte count for people: `1.5 MiB`.
pub(crate) fn bytes(n: i64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    #[allow(clippy::cast_precision_loss)] // display only
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} bytes")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_that_could_open_markup() {
        assert_eq!(
            esc(r#"<script>alert("x")</script> & 'y'"#),
            "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39;"
        );
    }

    #[test]
    fn byte_counts() {
        assert_eq!(bytes(12), "12 bytes");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(3 << 30), "3.0 GiB");
    }
}
