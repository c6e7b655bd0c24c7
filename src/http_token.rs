//! The HTTP token rule (RFC 9110 §5.6.2, formerly RFC 7230 §3.2.6), in
//! one place for every caller that checks a name against it: subprotocol
//! names (the client's request, the route configuration, the admission
//! hook's choice), header names a handler sets, and permessage-deflate
//! extension and parameter names. It imports nothing of the crate.

/// Whether `s` is an HTTP token: one or more visible ASCII characters
/// other than separators, i.e. letters, digits and ``!#$%&'*+-.^_`|~``.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::is_token;

    #[test]
    fn tokens_are_tchars_only_and_not_empty() {
        for ok in ["chat", "chat.v2", "x-Custom_1", "!#$%&'*+-.^_`|~", "a"] {
            assert!(is_token(ok), "{ok:?}");
        }
        for bad in [
            "", "a b", "a,b", "a;b", "\"a\"", "a=b", "(a)", "a/b", "é", "a\t", "a\r\n",
        ] {
            assert!(!is_token(bad), "{bad:?}");
        }
    }
}
