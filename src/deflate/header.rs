//! The `Sec-WebSocket-Extensions` header grammar (RFC 6455 §9.1) as a
//! pure parser: a list of extensions, each a name and `;`-separated
//! parameters with an optional token or quoted-string value.
//!
//! It knows nothing about permessage-deflate; `negotiate` reads the
//! parameters. Malformed elements are reported per element, so a server
//! can decline one bad offer and still consider the next.

use crate::http_token::is_token;

/// One extension element: `name; param; param=value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Element {
    /// The extension token, e.g. `permessage-deflate` (compared
    /// case-insensitively by callers).
    pub name: String,
    /// Parameters in order; a quoted value is already unescaped.
    pub params: Vec<(String, Option<String>)>,
}

/// Parses every header line of `Sec-WebSocket-Extensions` (several lines
/// form one list, RFC 7230 §3.2.2) into elements, in order. An element
/// that breaks the grammar is an `Err` naming why; empty list items
/// (`a, , b`) are skipped as RFC 7230 §7 allows.
pub(crate) fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Vec<Result<Element, String>> {
    let mut out = Vec::new();
    for line in lines {
        for item in split_outside_quotes(line, b',') {
            if item.trim().is_empty() {
                continue;
            }
            out.push(parse_element(item));
        }
    }
    out
}

/// Splits `s` on `sep` where it is not inside a quoted string. An
/// unterminated quote runs to the end (the element then fails to parse).
fn split_outside_quotes(s: &str, sep: u8) -> Vec<&str> {
    let bytes = s.as_bytes();
    let mut parts = Vec::new();
    let (mut start, mut in_quotes, mut escaped) = (0, false, false);
    for (i, &b) in bytes.iter().enumerate() {
        if in_quotes {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_quotes = false,
                _ => {}
            }
        } else if b == b'"' {
            in_quotes = true;
        } else if b == sep {
            parts.push(&s[start..i]);
            start = i + 1;
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_element(item: &str) -> Result<Element, String> {
    let mut pieces = split_outside_quotes(item, b';').into_iter();
    let name = pieces.next().unwrap_or("").trim();
    if !is_token(name) {
        return Err(format!("\"{name}\" is not an extension name"));
    }
    let mut params = Vec::new();
    for piece in pieces {
        params.push(parse_param(piece.trim())?);
    }
    Ok(Element {
        name: name.to_string(),
        params,
    })
}

fn parse_param(piece: &str) -> Result<(String, Option<String>), String> {
    let (name, value) = match piece.split_once('=') {
        None => (piece, None),
        Some((n, v)) => (n.trim_end(), Some(v.trim_start())),
    };
    if !is_token(name) {
        return Err(format!("\"{piece}\" is not a parameter"));
    }
    let value = match value {
        None => None,
        Some(v) if v.starts_with('"') => Some(
            unquote(v)
                .ok_or_else(|| format!("parameter {name} has a malformed quoted value {v}"))?,
        ),
        Some(v) if is_token(v) => Some(v.to_string()),
        Some(v) => return Err(format!("parameter {name} has an invalid value \"{v}\"")),
    };
    Ok((name.to_string(), value))
}

/// Unescapes a quoted-string; its content must be a token once unescaped
/// (RFC 6455 §9.1). `None` if malformed.
fn unquote(v: &str) -> Option<String> {
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.push(chars.next()?),
            '"' => return None,
            c => out.push(c),
        }
    }
    is_token(&out).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(name: &str, params: &[(&str, Option<&str>)]) -> Element {
        Element {
            name: name.into(),
            params: params
                .iter()
                .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
                .collect(),
        }
    }

    #[test]
    fn several_offers_in_one_line_and_across_lines() {
        let got = parse([
            "permessage-deflate; client_max_window_bits, permessage-deflate",
            "x-webkit-deflate-frame",
        ]);
        assert_eq!(
            got,
            vec![
                Ok(el(
                    "permessage-deflate",
                    &[("client_max_window_bits", None)]
                )),
                Ok(el("permessage-deflate", &[])),
                Ok(el("x-webkit-deflate-frame", &[])),
            ]
        );
    }

    #[test]
    fn whitespace_and_values() {
        let got = parse([
            "  permessage-deflate ;server_max_window_bits = 10 ; client_no_context_takeover  ",
        ]);
        assert_eq!(
            got,
            vec![Ok(el(
                "permessage-deflate",
                &[
                    ("server_max_window_bits", Some("10")),
                    ("client_no_context_takeover", None)
                ]
            ))]
        );
    }

    #[test]
    fn quoted_values_are_unescaped_and_may_hide_separators() {
        let got = parse([r#"permessage-deflate; server_max_window_bits="1\0", foo; a="x,y""#]);
        assert_eq!(
            got[0],
            Ok(el(
                "permessage-deflate",
                &[("server_max_window_bits", Some("10"))]
            ))
        );
        // "x,y" is quoted (so not split) but is not a token once unquoted.
        assert_eq!(got.len(), 2);
        assert!(got[1].is_err(), "{:?}", got[1]);
    }

    #[test]
    fn malformed_elements_are_errors_and_empty_items_skipped() {
        let got = parse(["permessage-deflate; =1, , ; x, good, bad name, a; b=\"open"]);
        assert!(got[0].is_err());
        assert!(got[1].is_err(), "empty name before ';'");
        assert_eq!(got[2], Ok(el("good", &[])));
        assert!(got[3].is_err());
        assert!(got[4].is_err(), "unterminated quote");
        assert_eq!(got.len(), 5);
        assert!(parse([""]).is_empty());
    }
}
