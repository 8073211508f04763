//! Numbered messages, the publishers that number them, and heartbeats.
//!
//! Every experiment publishes payloads that say which message they are, so the tally can say
//! exactly which messages went missing, arrived twice or out of order, and a subscriber can
//! *notice* a loss instead of suffering it. Three forms, one parser ([`mark_of`]):
//!
//! | payload                          | what it is                                            |
//! |----------------------------------|-------------------------------------------------------|
//! | `42#.....`                       | message 42 of an anonymous publisher (a bare number)  |
//! | `billing:1764657000123:42#.....` | message 42 of publisher `billing`, run (epoch) `1764657000123` |
//! | `~hb:billing:1764657000123:43`   | heartbeat: `billing` in that run has published `0..43` |
//! | `~end:billing:1764657000123:43`  | the same, said once at exit: nothing more will come   |
//!
//! After the `#` comes padding up to the chosen size. A publisher name is 1 to 64 characters
//! of `A-Z a-z 0-9 _ . -`; the epoch is any `u64` that a restarted publisher does not reuse
//! (the lab takes the time in milliseconds). Numbers start at 0 in every epoch.
//!
//! Why the name and the epoch: a bare number only works for one publisher per channel that
//! never restarts. Two publishers on one channel interleave their numbers, and a restarted
//! one starts again from 0; a subscriber that compares bare numbers then "notices" losses
//! that never happened (chapter 3). A heartbeat has no `#`, so it never parses as a message;
//! it tells a subscriber what it should have seen even when no message follows a loss.
//! Heartbeats carry `next` (the number the publisher's next message would get) rather than
//! the last number sent, so a publisher that has sent nothing yet can say so (`next` = 0).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// The payload for message `seq` of an anonymous publisher, padded to `size` bytes (longer if
/// the number needs it).
///
/// ```
/// assert_eq!(lab::numbered(42, 16), b"42#.............".to_vec());
/// assert_eq!(lab::seq_of(&lab::numbered(42, 16)), Ok(42));
/// ```
pub fn numbered(seq: u64, size: usize) -> Vec<u8> {
    pad(format!("{seq}#").into_bytes(), size)
}

fn pad(mut payload: Vec<u8>, size: usize) -> Vec<u8> {
    if payload.len() < size {
        payload.resize(size, b'.');
    }
    payload
}

/// A named publisher in one of its runs: it numbers its messages from 0 and sends heartbeats.
///
/// ```
/// use lab::message::{Identity, Mark, Origin, mark_of};
///
/// let me = Identity::with_epoch("billing", 7);
/// let payload = me.message(42, 32);
/// assert_eq!(&payload[..17], b"billing:7:42#....");
/// let origin = Some(Origin { publisher: "billing", epoch: 7 });
/// assert_eq!(mark_of(&payload), Ok(Mark::Message { origin, seq: 42 }));
/// assert_eq!(lab::seq_of(&payload), Ok(42));
/// // A heartbeat is not a message.
/// assert!(lab::seq_of(&me.heartbeat(43, false)).is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Identity {
    publisher: String,
    epoch: u64,
}

impl Identity {
    /// `publisher` in a new run: a fresh epoch (milliseconds since 1970, strictly increasing
    /// within this process, so a publisher restarted in the same millisecond still differs).
    ///
    /// Panics if `publisher` is not 1 to 64 characters of `A-Z a-z 0-9 _ . -`: a name is
    /// chosen by the programmer, not read from input.
    pub fn new(publisher: &str) -> Self {
        static LAST: AtomicU64 = AtomicU64::new(0);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        let previous = LAST
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |last| {
                Some(now.max(last + 1))
            })
            .unwrap_or_default();
        Self::with_epoch(publisher, now.max(previous + 1))
    }

    /// `publisher` in run `epoch`.
    pub fn with_epoch(publisher: &str, epoch: u64) -> Self {
        assert!(
            valid_name(publisher.as_bytes()),
            "a publisher name is 1 to 64 characters of A-Z a-z 0-9 _ . - (got {publisher:?})"
        );
        Self {
            publisher: publisher.to_string(),
            epoch,
        }
    }

    /// The publisher's name.
    pub fn publisher(&self) -> &str {
        &self.publisher
    }

    /// This run's epoch.
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    /// How a subscriber sees this publisher's messages.
    pub fn origin(&self) -> Origin<'_> {
        Origin {
            publisher: &self.publisher,
            epoch: self.epoch,
        }
    }

    /// The payload for message `seq`, padded to `size` bytes.
    pub fn message(&self, seq: u64, size: usize) -> Vec<u8> {
        pad(
            format!("{}:{}:{seq}#", self.publisher, self.epoch).into_bytes(),
            size,
        )
    }

    /// A heartbeat: messages `0..next` of this run were published. `last`: the publisher is
    /// exiting, and nothing after `next - 1` will come.
    pub fn heartbeat(&self, next: u64, last: bool) -> Vec<u8> {
        let kind = if last { "end" } else { "hb" };
        format!("~{kind}:{}:{}:{next}", self.publisher, self.epoch).into_bytes()
    }
}

/// A named publisher's run, as read from a payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Origin<'a> {
    pub publisher: &'a str,
    pub epoch: u64,
}

impl<'a> Origin<'a> {
    /// Message `seq` of this run.
    pub fn message(self, seq: u64) -> Mark<'a> {
        Mark::Message {
            origin: Some(self),
            seq,
        }
    }
}

/// What a payload says about the stream of messages: see the [module docs](self).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mark<'a> {
    /// Message `seq` of `origin`; `None` for a bare `<seq>#` (an anonymous publisher).
    Message {
        origin: Option<Origin<'a>>,
        seq: u64,
    },
    /// `origin` has published messages `0..next`; `last`: it is exiting.
    Heartbeat {
        origin: Origin<'a>,
        next: u64,
        last: bool,
    },
}

impl Mark<'_> {
    /// A bare number: message `seq` of the anonymous publisher.
    pub fn bare(seq: u64) -> Mark<'static> {
        Mark::Message { origin: None, seq }
    }
}

/// Read a payload in any of the three forms, or say why it is none of them.
pub fn mark_of(payload: &[u8]) -> Result<Mark<'_>, BadPayload> {
    if let Some(rest) = payload.strip_prefix(b"~") {
        return heartbeat_of(rest).ok_or(BadPayload::NoSequenceNumber);
    }
    let hash = payload
        .iter()
        .position(|&byte| byte == b'#')
        .ok_or(BadPayload::NoSequenceNumber)?;
    let mut fields = payload[..hash].rsplitn(3, |&byte| byte == b':');
    let seq = fields
        .next()
        .and_then(number)
        .ok_or(BadPayload::NoSequenceNumber)?;
    match (fields.next(), fields.next()) {
        (None, _) => Ok(Mark::bare(seq)),
        (Some(epoch), Some(publisher)) => Ok(Mark::Message {
            origin: Some(origin(publisher, epoch).ok_or(BadPayload::NoSequenceNumber)?),
            seq,
        }),
        (Some(_), None) => Err(BadPayload::NoSequenceNumber),
    }
}

/// `hb:<publisher>:<epoch>:<next>` or `end:...`, after the `~`.
fn heartbeat_of(text: &[u8]) -> Option<Mark<'_>> {
    let (last, rest) = if let Some(rest) = text.strip_prefix(b"hb:") {
        (false, rest)
    } else {
        (true, text.strip_prefix(b"end:")?)
    };
    let mut fields = rest.rsplitn(3, |&byte| byte == b':');
    let next = number(fields.next()?)?;
    let epoch = fields.next()?;
    let origin = origin(fields.next()?, epoch)?;
    Some(Mark::Heartbeat { origin, next, last })
}

fn origin<'a>(publisher: &'a [u8], epoch: &[u8]) -> Option<Origin<'a>> {
    if !valid_name(publisher) {
        return None;
    }
    Some(Origin {
        // Checked above: ASCII only.
        publisher: std::str::from_utf8(publisher).ok()?,
        epoch: number(epoch)?,
    })
}

fn valid_name(name: &[u8]) -> bool {
    (1..=64).contains(&name.len())
        && name
            .iter()
            .all(|&byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'))
}

/// Decimal digits that fit a `u64` (at most 20 of them; anything else is not one of ours).
fn number(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 20 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(digits).ok()?.parse().ok()
}

/// The sequence number of a message made by [`numbered`] or [`Identity::message`], or why
/// it is not one (a heartbeat is not a message).
pub fn seq_of(payload: &[u8]) -> Result<u64, BadPayload> {
    match mark_of(payload)? {
        Mark::Message { seq, .. } => Ok(seq),
        Mark::Heartbeat { .. } => Err(BadPayload::Heartbeat),
    }
}

/// Why a payload is not a numbered message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadPayload {
    /// It does not start with `<seq>#` or `<publisher>:<epoch>:<seq>#`.
    NoSequenceNumber,
    /// It is a heartbeat, not a message.
    Heartbeat,
}

impl fmt::Display for BadPayload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadPayload::NoSequenceNumber => write!(
                f,
                "payload does not start with `<seq>#` or `<publisher>:<epoch>:<seq>#`"
            ),
            BadPayload::Heartbeat => write!(f, "payload is a heartbeat, not a message"),
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
    fn named_messages_and_heartbeats_round_trip() {
        let me = Identity::with_epoch("orders-1.eu_west", u64::MAX);
        let origin = Some(me.origin());
        for seq in [0, 9, u64::MAX] {
            assert_eq!(
                mark_of(&me.message(seq, 64)),
                Ok(Mark::Message { origin, seq })
            );
        }
        for (next, last) in [(0, false), (43, true)] {
            assert_eq!(
                mark_of(&me.heartbeat(next, last)),
                Ok(Mark::Heartbeat {
                    origin: me.origin(),
                    next,
                    last
                })
            );
            assert_eq!(
                seq_of(&me.heartbeat(next, last)),
                Err(BadPayload::Heartbeat)
            );
        }
    }

    #[test]
    fn a_restarted_publisher_gets_a_new_epoch() {
        let first = Identity::new("p");
        let second = Identity::new("p");
        assert!(second.epoch() > first.epoch());
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
            b"7:12#",
            b"p::12#",
            b":1:12#",
            b"p q:1:12#",
            b"\xff:1:12#",
            b"p:1:x#",
            b"~hb:p:1",
            b"~hb:p:1:2#",
            b"~beat:p:1:2",
            b"~hb::1:2",
            b"{\"not\": \"numbered\"}",
        ] {
            assert_eq!(
                mark_of(bad),
                Err(BadPayload::NoSequenceNumber),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        let long_name = format!("{}:1:2#", "p".repeat(65));
        assert!(mark_of(long_name.as_bytes()).is_err());
    }
}
