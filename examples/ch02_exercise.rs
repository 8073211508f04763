//! Chapter 2 exercise: a subscriber that hands out one message per call, like calling
//! `on_message().next()` in a loop, and still loses nothing, because the read buffer belongs
//! to the connection and not to the call. (This is, in miniature, what redis-rs 0.27 changed.)
//! Write `parse_push` and `next_push`.
//!
//! The starter, examples/ch02_exercise.rs, is the solution, examples/ch02_solution.rs, with
//! `todo!()` where you write the code.
//!
//! cargo run --example ch02_exercise
//! cargo test --example ch02_exercise -- --include-ignored   (the solution's tests, on your code)
//! cargo test --example ch02_solution

// Made from examples/ch02_solution.rs by `python3 ci/exercises.py generate`: book authors
// edit the solution and rerun it (CI checks that the two agree). Until the todo!()s
// are written, some parameters and imports are unused:
#![allow(unused)]

use std::time::Duration;

use anyhow::{Result, bail};
use lab::{Publisher, RedisServer, ResultLine, Tally};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The bytes at the start of the buffer are not a RESP frame.
#[derive(Debug, PartialEq)]
struct NotAFrame;

impl std::fmt::Display for NotAFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the buffer does not start with a RESP frame")
    }
}

impl std::error::Error for NotAFrame {}

/// One RESP2 array: `[b"message", b"channel", b"payload"]`, or a subscribe confirmation.
type Push = Vec<Vec<u8>>;

/// A Pub/Sub connection speaking RESP2 over TCP.
struct Subscriber {
    stream: TcpStream,
    /// Bytes read from the socket and not yet parsed. They stay here between calls.
    buffer: Vec<u8>,
}

// ANCHOR: starter
/// Parses one RESP2 array of bulk strings and integers from the start of `bytes`.
/// `Ok(None)`: the frame is not complete yet; `Ok(Some((items, used)))`: the frame took the
/// first `used` bytes. A buffer that does not start with `*` is `Err(NotAFrame)`.
///
/// A message looks like `*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\n0#...\r\n`; the
/// subscribe confirmation ends with an integer instead: `:1\r\n`.
fn parse_push(bytes: &[u8]) -> Result<Option<(Push, usize)>, NotAFrame> {
    todo!("parse the header line, then each item; return Ok(None) whenever bytes run out")
}

impl Subscriber {
    /// The next push (a `subscribe` confirmation or a `message`); `Ok(None)` when the server
    /// closed the connection. Must not lose bytes read beyond the frame it returns.
    async fn next_push(&mut self) -> Result<Option<Push>> {
        todo!("parse from self.buffer; read more with self.stream.read_buf(&mut self.buffer)")
    }
}
// ANCHOR_END: starter

impl Subscriber {
    /// Connects to a server without a password and subscribes to `channel`.
    async fn subscribe(client: &redis::Client, channel: &str) -> Result<Self> {
        let info = client.get_connection_info();
        let (redis::ConnectionAddr::Tcp(host, port), None) =
            (info.addr(), info.redis_settings().password())
        else {
            bail!("this exercise speaks plain TCP without AUTH: use a redis://host:port URL");
        };
        let mut stream = TcpStream::connect((host.as_str(), *port)).await?;
        let command = format!(
            "*2\r\n$9\r\nSUBSCRIBE\r\n${}\r\n{channel}\r\n",
            channel.len()
        );
        stream.write_all(command.as_bytes()).await?;
        let mut subscriber = Subscriber {
            stream,
            buffer: Vec::with_capacity(8192),
        };
        match subscriber.next_push().await? {
            Some(push) if push.first().is_some_and(|kind| kind == b"subscribe") => Ok(subscriber),
            other => bail!("expected the subscribe confirmation, got {other:?}"),
        }
    }
}

/// Subscribes, publishes a burst of `sent` messages, reads them one call at a time.
async fn burst(server: &RedisServer, sent: u64) -> Result<Tally> {
    let client = lab::connect::open(server.url()).await?;
    let channel = lab::unique_channel("ch02:exercise");
    let mut subscriber = Subscriber::subscribe(&client, &channel).await?;
    let mut con = client.get_multiplexed_async_connection().await?;
    let publisher = Publisher::new(&channel);
    let publishing = tokio::spawn(async move { publisher.send(&mut con, 0..sent).await });
    let mut tally = Tally::new(sent);
    while tally.received() < sent {
        let Ok(push) = tokio::time::timeout(Duration::from_secs(1), subscriber.next_push()).await
        else {
            break; // nothing for a second
        };
        match push? {
            Some(push) if push.len() == 3 => tally.record(lab::seq_of(&push[2])?),
            Some(_other) => {}
            None => break,
        }
    }
    publishing.await??;
    Ok(tally)
}

#[tokio::main]
async fn main() -> Result<()> {
    let server = RedisServer::from_env()?;
    let tally = burst(&server, 1000).await?;
    println!("missing: {}", tally.missing_summary(5));
    ResultLine::from_tally("exercise-burst", "resp-model", &tally, 0).print();
    Ok(())
}

// The solution's tests, each #[ignore]d until your code is written. Run them with
//     cargo test --example ch02_exercise -- --include-ignored
#[cfg(test)]
mod tests {
    use super::*;

    const TWO: &[u8] = b"*3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\n0#...\r\n";

    #[test]
    #[ignore = "needs your code: cargo test --example ch02_exercise -- --include-ignored"]
    fn parses_frames_cut_at_every_byte() {
        let first_len = TWO.iter().skip(1).position(|&b| b == b'*').unwrap() + 1;
        for cut in 0..TWO.len() {
            let parsed = parse_push(&TWO[..cut]).unwrap();
            if cut < first_len {
                assert_eq!(parsed, None, "cut at {cut}");
            } else {
                let (items, used) = parsed.unwrap();
                assert_eq!(used, first_len);
                assert_eq!(items, [&b"subscribe"[..], b"ch", b"1"]);
            }
        }
        let (items, used) = parse_push(&TWO[first_len..]).unwrap().unwrap();
        assert_eq!(used, TWO.len() - first_len);
        assert_eq!(items[2], b"0#...");
    }

    #[test]
    #[ignore = "needs your code: cargo test --example ch02_exercise -- --include-ignored"]
    fn a_buffer_that_starts_mid_frame_is_an_error() {
        assert_eq!(parse_push(b"ch\r\n$5\r\n0#...\r\n"), Err(NotAFrame));
        assert_eq!(parse_push(b"$7\r\nmessage\r\n"), Err(NotAFrame));
    }

    #[tokio::test]
    #[ignore = "needs your code: cargo test --example ch02_exercise -- --include-ignored"]
    async fn one_message_per_call_loses_nothing() {
        let server = RedisServer::start().unwrap();
        let tally = burst(&server, 1000).await.unwrap();
        assert_eq!(tally.lost(), 0, "missing: {}", tally.missing_summary(5));
    }
}
