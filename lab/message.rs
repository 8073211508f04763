//! Numbered messages.
//!
//! Every experiment publishes payloads that say which message they are: the decimal sequence
//! number, a `#`, then `.` padding up to the chosen size. `numbered(42, 16)` is
//! `42#.............`. A subscriber recovers the number with [`seq_of`], so the tally can say
//! exactly which messages went missing, arrived twice or out of order.

use std::fmt;

/// The payload for message `seq`, padded to `size` bytes (longer if the number needs it).
///
/// ```
/// assert_eq!(lab::numbered(42, 16), b"42#.............".to_vec());
/// assert_eq!(lab::seq_of(&lab::numbered(42, 16)), Ok(42));
/// ```
pub fn numbered(seq: u64, size: usize) -> Vec<u8> {
    let mut payload = format!("{seq}#").into_bytes();
    if payload.len() < size {
        payload.resize(size, b'.');
    }
    payload
}

/// The sequence number of a payload made by [`numbered`], or why it is not one.
pub fn seq_of(payload: &[u8]) -> Result<u64, BadPayload> {
    let digits_end = payload
        .iter()
        .position(|&byte| byte == b'#')
        .ok_or(BadPayload::NoSequenceNumber)?;
    let digits = &payload[..digits_end];
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(BadPayload::NoSequenceNumber);
    }
    // At most 20 ASCII digits fit a u64; anything else is not one of ours.
    std::str::from_utf8(digits)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or(BadPayload::NoSequenceNumber)
}

/// Why a payload is not a numbered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadPayload {
    /// It does not start with `<digits>#`.
    NoSequenceNumber,
}

impl fmt::Display for BadPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadPayload::NoSequenceNumber => write!(f, "payload does not start with `<seq>#`"),
        }
    }
}

impl std::error::Error for BadPayload {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_pads() {
        for (seq, size) in [(0, 0), (7, 16), (123_456, 256), (u64::MAX, 4096)] {
            let payload = numbered(seq, size);
            assert!(payload.len() >= size);
            assert_eq!(seq_of(&payload), Ok(seq));
        }
        assert_eq!(numbered(5, 4), b"5#..");
    }

    #[test]
    fn rejects_what_is_not_numbered() {
        for bad in [
            &b""[..],
            b"#",
            b"abc#",
            b"12",
            b"\xff\xfe#",
            b"99999999999999999999999#",
        ] {
            assert_eq!(seq_of(bad), Err(BadPayload::NoSequenceNumber), "{bad:?}");
        }
    }
}
