//! Lines mode: a program's output cut into lines, each one message.
//!
//! A line ends at `\n`; a `\r` before it is dropped too. A line that is
//! UTF-8 becomes a text message; one that is not becomes a binary message
//! with the same bytes (the connection stays open: a program printing a
//! stray Latin-1 byte should not lose its client). A line longer than the
//! route's `max_message_size` is an error (the worker closes with 1009).

use super::Output;

/// The unfinished last line of a program's output.
#[derive(Debug)]
pub struct Lines {
    partial: Vec<u8>,
    max: usize,
}

/// A line longer than `max_message_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong(pub usize);

impl Lines {
    /// A splitter for lines of at most `max` bytes (without the newline).
    pub fn new(max: usize) -> Lines {
        Lines {
            partial: Vec::new(),
            max,
        }
    }

    /// Appends the whole lines of `input` to `out`, keeping what follows
    /// the last newline for the next call.
    pub fn push(&mut self, mut input: &[u8], out: &mut Vec<Output>) -> Result<(), TooLong> {
        while let Some(nl) = input.iter().position(|&b| b == b'\n') {
            let mut line = std::mem::take(&mut self.partial);
            line.extend_from_slice(&input[..nl]);
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            self.check(line.len())?;
            out.push(message(line));
            input = &input[nl + 1..];
        }
        // An unfinished line may end in the `\r` of a `\r\n`.
        let len = self.partial.len() + input.len();
        let cr = input.last().or(self.partial.last()) == Some(&b'\r');
        self.check(len - usize::from(cr))?;
        self.partial.extend_from_slice(input);
        if self.partial.is_empty() {
            // Hold no buffer between lines.
            self.partial = Vec::new();
        }
        Ok(())
    }

    /// The program's output ended: its last line, if it had no newline.
    pub fn finish(&mut self) -> Option<Output> {
        let mut line = std::mem::take(&mut self.partial);
        if line.last() == Some(&b'\r') {
            line.pop();
        }
        (!line.is_empty()).then(|| message(line))
    }

    fn check(&self, len: usize) -> Result<(), TooLong> {
        if len > self.max {
            Err(TooLong(len))
        } else {
            Ok(())
        }
    }
}

/// A line without its `\r\n` or `\n`, as a message.
fn message(line: Vec<u8>) -> Output {
    match String::from_utf8(line) {
        Ok(text) => Output::Text(text),
        Err(e) => Output::Binary(e.into_bytes()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> (Vec<Output>, Option<Output>) {
        let mut lines = Lines::new(max);
        let mut out = Vec::new();
        for c in chunks {
            lines.push(c, &mut out).unwrap();
        }
        let last = lines.finish();
        (out, last)
    }

    #[test]
    fn lines_across_reads_with_crlf() {
        let (out, last) = split(&[b"ab", b"c\r\nde\n\nf\r", b"\ng"], 100);
        assert_eq!(
            out,
            vec![
                Output::Text("abc".into()),
                Output::Text("de".into()),
                Output::Text(String::new()),
                Output::Text("f".into()),
            ]
        );
        assert_eq!(last, Some(Output::Text("g".into())));
    }

    #[test]
    fn non_utf8_lines_are_binary() {
        let (out, last) = split(&[b"caf\xe9\n"], 100);
        assert_eq!(out, vec![Output::Binary(b"caf\xe9".to_vec())]);
        assert_eq!(last, None);
    }

    #[test]
    fn long_lines_are_refused() {
        let mut lines = Lines::new(4);
        let mut out = Vec::new();
        assert_eq!(lines.push(b"abcd\n", &mut out), Ok(()));
        assert_eq!(lines.push(b"abcd\r", &mut out), Ok(()));
        assert_eq!(lines.push(b"\n", &mut out), Ok(()));
        assert_eq!(lines.push(b"abc", &mut out), Ok(()));
        assert_eq!(lines.push(b"de\n", &mut out), Err(TooLong(5)));
        assert_eq!(Lines::new(4).push(b"abcdef", &mut out), Err(TooLong(6)));
    }
}
