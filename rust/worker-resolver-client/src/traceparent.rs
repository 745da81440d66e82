//! W3C Trace Context `traceparent` values for the client's requests.

use std::fmt;

/// A W3C `traceparent` (version 00): 16-byte trace id, 8-byte parent span id, sampled flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceParent {
    /// The trace id (never all zeros).
    pub trace_id: u128,
    /// The span id of the request (never zero).
    pub span_id: u64,
    /// The `sampled` flag.
    pub sampled: bool,
}

impl TraceParent {
    /// A new random trace, sampled.
    pub fn random() -> Self {
        let trace_id = loop {
            let t = rand::random::<u128>();
            if t != 0 {
                break t;
            }
        };
        let span_id = loop {
            let s = rand::random::<u64>();
            if s != 0 {
                break s;
            }
        };
        TraceParent {
            trace_id,
            span_id,
            sampled: true,
        }
    }
}

impl fmt::Display for TraceParent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_as_w3c_version_00() {
        let t = TraceParent {
            trace_id: 0x4bf92f3577b34da6a3ce929d0e0e4736,
            span_id: 0x00f067aa0ba902b7,
            sampled: true,
        };
        assert_eq!(
            t.to_string(),
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        );
    }

    #[test]
    fn random_ids_are_valid() {
        let t = TraceParent::random();
        let s = t.to_string();
        assert_eq!(s.len(), 55);
        assert!(t.trace_id != 0 && t.span_id != 0);
        assert!(s.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }
}
