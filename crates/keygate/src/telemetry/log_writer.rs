//! Where every log line goes: stderr, through [`keygate_core::key::redact`].
//!
//! Handlers never log a key on purpose, but a value that came from a client
//! (a name, an app id, a driver's error quoting a statement) might hold one
//! pasted by mistake. Rather than trust every call site, each line, from
//! `tracing` and from the access log alike, passes through this writer,
//! which masks anything shaped like a key before it leaves the process.

use std::io::{self, Write};

/// A writer that masks keys in what it is given, then passes it on whole.
/// `tracing`'s formatter hands it one complete event per write, and the
/// access log whole lines, so a key is never split between two writes.
pub struct Redacting<W>(pub W);

impl<W: Write> Write for Redacting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => self.0.write_all(keygate_core::key::redact(text).as_bytes())?,
            Err(_) => {
                self.0.write_all(keygate_core::key::redact(&String::from_utf8_lossy(buf)).as_bytes())?
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// stderr behind [`Redacting`]: the `MakeWriter` of the process's logs.
pub fn stderr() -> Redacting<io::Stderr> {
    Redacting(io::stderr())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_shaped_value_is_masked_and_the_rest_kept() {
        let key = keygate_core::ApiKeySecret::generate().expect("rng");
        let mut out = Redacting(Vec::new());
        let line = format!("WARN keygate: invalid app_id `{}` from name={}\n", key.expose(), key.expose());
        out.write_all(line.as_bytes()).expect("write");
        out.write_all("plain é line\n".as_bytes()).expect("write");
        let written = String::from_utf8(out.0).expect("utf-8");
        assert!(!written.contains(&key.expose()[3..]), "{written}");
        assert_eq!(
            written,
            "WARN keygate: invalid app_id `ak_[redacted]` from name=ak_[redacted]\nplain é line\n"
        );
    }
}
