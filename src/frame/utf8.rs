//! Incremental UTF-8 validation of a text message whose bytes arrive in
//! pieces: std's `from_utf8` on each whole piece, and at most 3 bytes of an
//! unfinished character carried to the next one.

/// Validates a byte stream piece by piece; fails at the first piece that
/// holds a byte which cannot be part of valid UTF-8, whatever follows.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Utf8Validator {
    /// The start of a character cut by the end of the last piece.
    carry: [u8; 4],
    /// How many bytes of `carry` are in use (0..=3).
    carried: u8,
}

impl Utf8Validator {
    /// Feeds the next piece; `false` once the stream cannot be UTF-8.
    pub fn feed(&mut self, mut data: &[u8]) -> bool {
        if self.carried > 0 {
            let have = usize::from(self.carried);
            let want = char_width(self.carry[0]);
            let take = want.saturating_sub(have).min(data.len());
            self.carry[have..have + take].copy_from_slice(&data[..take]);
            match std::str::from_utf8(&self.carry[..have + take]) {
                Ok(_) => self.carried = 0,
                // Still unfinished: the piece was too short to finish it.
                Err(e) if e.error_len().is_none() => {
                    self.carried = (have + take) as u8;
                    return true;
                }
                Err(_) => return false,
            }
            data = &data[take..];
        }
        // Most text is ASCII, which `is_ascii` confirms several times
        // faster than `from_utf8` (a vector at a time, no setup).
        if data.is_ascii() {
            return true;
        }
        match std::str::from_utf8(data) {
            Ok(_) => true,
            Err(e) if e.error_len().is_some() => false,
            Err(e) => {
                let rest = &data[e.valid_up_to()..];
                self.carry[..rest.len()].copy_from_slice(rest);
                self.carried = rest.len() as u8;
                true
            }
        }
    }

    /// Whether the bytes so far end on a character boundary (a message
    /// must, when its last frame is complete).
    pub fn is_complete(&self) -> bool {
        self.carried == 0
    }
}

/// The length of the character that starts with `lead` (a valid lead byte,
/// since `from_utf8` reported it as merely unfinished).
fn char_width(lead: u8) -> usize {
    match lead {
        0xf0..=0xff => 4,
        0xe0..=0xef => 3,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLES: &[&[u8]] = &[
        "κόσμε".as_bytes(),
        "a€b𝄞c".as_bytes(),
        b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
        b"\xf4\x90\x80\x80",
        b"\xf0\x8f\xbf\xbf",
        b"\xc0\xaf",
        b"\xef\xbf\xbf",
        b"\xf4\x8f\xbf\xbf",
        b"\xed\x9f\xbf",
        b"\xe0\x9f\xbf",
        b"\x80",
        b"\xfe",
        b"\xe2\x82",
        b"abc\xf0\x9d\x84",
    ];

    #[test]
    fn agrees_with_std_at_every_split() {
        for s in SAMPLES {
            let valid = std::str::from_utf8(s).is_ok();
            for a in 0..=s.len() {
                for b in a..=s.len() {
                    let mut v = Utf8Validator::default();
                    let ok = v.feed(&s[..a]) && v.feed(&s[a..b]) && v.feed(&s[b..]);
                    assert_eq!(ok && v.is_complete(), valid, "{s:?} cut at {a},{b}");
                }
            }
        }
    }

    #[test]
    fn fails_at_the_first_bad_piece() {
        let mut v = Utf8Validator::default();
        assert!(v.feed(b"ok \xe0"));
        // E0 80 can never become a character: no need to wait for more.
        assert!(!v.feed(b"\x80"));
        let mut v = Utf8Validator::default();
        assert!(v.feed(b"\xf0\x9d"));
        assert!(!v.is_complete());
        assert!(v.feed(b"\x84"));
        assert!(v.feed(b"\x9e"));
        assert!(v.is_complete());
    }
}
