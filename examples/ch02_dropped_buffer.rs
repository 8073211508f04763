//! Chapter 2: the root cause, without redis-rs. We speak RESP to a real Redis over a plain
//! tokio `TcpStream` and read Pub/Sub messages through a `tokio::io::BufReader` (an 8 KiB read
//! buffer), in two ways:
//!
//! - long-lived: one `BufReader` for the whole run;
//! - fresh reader per message: a new `BufReader` for every message, dropped after one message,
//!   which is what redis-rs < 0.27 did with its `Framed` reader on every `on_message()` call.
//!
//! cargo run --example ch02_dropped_buffer
//! cargo run --example ch02_dropped_buffer -- --messages 100000

use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use lab::{Pace, Publisher, RedisServer, ResultLine, Tally};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::time::timeout;

/// The `client=` of this chapter's RESULT lines: no redis-rs, our own RESP reader.
const CLIENT: &str = "resp-model";

/// Stop when nothing has arrived for this long.
const QUIET: Duration = Duration::from_millis(1500);

#[derive(Parser, Debug)]
#[command(about = "Chapter 2: a long-lived read buffer versus a fresh one per message")]
struct Args {
    /// Run small experiments (CI runs every example this way).
    #[arg(long)]
    quick: bool,
    /// Messages per scenario.
    #[arg(long, default_value_t = 1000)]
    messages: u64,
}

/// A RESP reply that is not what a Pub/Sub connection should see at this point.
#[derive(Debug)]
struct NotAFrame {
    /// The line the reader found where a frame should start (shortened).
    found: String,
}

impl std::fmt::Display for NotAFrame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "expected a RESP frame, found {:?}", self.found)
    }
}

impl std::error::Error for NotAFrame {}

// ANCHOR: read_push
/// Reads one RESP2 array of bulk strings and integers (a `subscribe` confirmation or a
/// `message` push) from a buffered reader. `Ok(None)`: the server closed the connection.
///
/// The reader keeps whatever it has read beyond this frame in its buffer: the next call on
/// the *same* reader starts exactly where this one stopped.
async fn read_push<R: AsyncBufRead + Unpin>(reader: &mut R) -> Result<Option<Vec<Vec<u8>>>> {
    let mut line = Vec::new();
    if reader.read_until(b'\n', &mut line).await? == 0 {
        return Ok(None);
    }
    let count: usize = header(&line, b'*')?;
    let mut items = Vec::with_capacity(count);
    for _ in 0..count {
        line.clear();
        reader.read_until(b'\n', &mut line).await?;
        if line.first() == Some(&b':') {
            // An integer (the subscription count in a `subscribe` reply).
            items.push(line[1..line.len().saturating_sub(2)].to_vec());
            continue;
        }
        let len: usize = header(&line, b'$')?;
        let mut item = vec![0; len + 2]; // the payload and its trailing \r\n
        reader.read_exact(&mut item).await?;
        item.truncate(len);
        items.push(item);
    }
    Ok(Some(items))
}

/// `*3\r\n` -> 3 for `kind == b'*'`; anything else is not the start of a frame.
fn header(line: &[u8], kind: u8) -> Result<usize, NotAFrame> {
    let not_a_frame = || NotAFrame {
        found: String::from_utf8_lossy(&line[..line.len().min(24)]).into_owned(),
    };
    if line.first() != Some(&kind) || !line.ends_with(b"\r\n") {
        return Err(not_a_frame());
    }
    std::str::from_utf8(&line[1..line.len() - 2])
        .ok()
        .and_then(|digits| digits.parse().ok())
        .ok_or_else(not_a_frame)
}
// ANCHOR_END: read_push

/// Opens a TCP connection to the server and sends `SUBSCRIBE channel` (after AUTH, if the URL
/// has a password). The confirmation is left for the caller to read.
async fn connect_and_subscribe(client: &redis::Client, channel: &str) -> Result<TcpStream> {
    let info = client.get_connection_info();
    let redis::ConnectionAddr::Tcp(host, port) = info.addr() else {
        bail!("this model speaks plain TCP only; use a redis:// URL (no TLS, no unix socket)");
    };
    let mut stream = TcpStream::connect((host.as_str(), *port))
        .await
        .with_context(|| format!("connecting to {host}:{port}"))?;
    let settings = info.redis_settings();
    if let Some(password) = settings.password() {
        let mut auth = vec!["AUTH".as_bytes()];
        if let Some(username) = settings.username() {
            auth.push(username.as_bytes());
        }
        auth.push(password.as_bytes());
        stream.write_all(&command(&auth)).await?;
        let mut reply = [0u8; 5];
        stream.read_exact(&mut reply).await?;
        if &reply != b"+OK\r\n" {
            bail!("the server rejected AUTH (the password is not shown)");
        }
    }
    stream
        .write_all(&command(&[b"SUBSCRIBE", channel.as_bytes()]))
        .await?;
    Ok(stream)
}

/// A command in RESP: an array of bulk strings.
fn command(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// Records a `message` push in the tally; ignores anything else.
fn record(tally: &mut Tally, push: &[Vec<u8>]) -> Result<()> {
    if let [kind, _channel, payload] = push
        && kind == b"message"
    {
        tally.record(lab::seq_of(payload)?);
    }
    Ok(())
}

/// What one reading strategy saw.
struct Outcome {
    ended_by: String,
    /// Undecoded bytes in the read buffer when the reader was dropped, summed over the run.
    dropped_bytes: usize,
    /// Readers that were dropped holding undecoded bytes.
    dropping_readers: u64,
    /// The first time that happened: how many messages had arrived, and how many bytes.
    first_drop: Option<(u64, usize)>,
}

// ANCHOR: long_lived
/// One `BufReader` for the whole run: bytes read ahead stay in its buffer for the next frame.
async fn long_lived(stream: TcpStream, tally: &mut Tally) -> Result<Outcome> {
    let mut reader = BufReader::new(stream);
    let ended_by = loop {
        if tally.received() == tally.sent() {
            break "all-received".to_string();
        }
        match timeout(QUIET, read_push(&mut reader)).await {
            Ok(Ok(Some(push))) => record(tally, &push)?,
            Ok(Ok(None)) => break "connection-closed".into(),
            Ok(Err(error)) => break format!("error:{error}"),
            Err(_quiet) => break "quiet".into(),
        }
    };
    Ok(Outcome {
        ended_by,
        dropped_bytes: 0,
        dropping_readers: 0,
        first_drop: None,
    })
}
// ANCHOR_END: long_lived

// ANCHOR: fresh_reader
/// A new `BufReader` for every message, as `on_message()` made a new `Framed` in redis-rs
/// < 0.27. When it goes out of scope, so does everything it read ahead.
async fn fresh_reader_per_message(mut stream: TcpStream, tally: &mut Tally) -> Result<Outcome> {
    let mut outcome = Outcome {
        ended_by: String::new(),
        dropped_bytes: 0,
        dropping_readers: 0,
        first_drop: None,
    };
    outcome.ended_by = loop {
        if tally.received() == tally.sent() {
            break "all-received".to_string();
        }
        let mut reader = BufReader::new(&mut stream);
        match timeout(QUIET, read_push(&mut reader)).await {
            Ok(Ok(Some(push))) => record(tally, &push)?,
            Ok(Ok(None)) => break "connection-closed".into(),
            // redis-rs swallowed this error and ended the stream: `None`. We say what it was.
            Ok(Err(error)) => break format!("error:{error}"),
            Err(_quiet) => break "quiet".into(),
        }
        // What this reader read from the socket but did not decode: gone with it.
        let left = reader.buffer().len();
        if left > 0 {
            outcome.dropped_bytes += left;
            outcome.dropping_readers += 1;
            outcome.first_drop.get_or_insert((tally.received(), left));
        }
    };
    Ok(outcome)
}
// ANCHOR_END: fresh_reader

async fn run(
    client: &redis::Client,
    name: &str,
    fresh: bool,
    pace: Pace,
    messages: u64,
) -> Result<ResultLine> {
    let channel = lab::unique_channel("ch02:model");
    let mut stream = connect_and_subscribe(client, &channel).await?;
    // Read the subscribe confirmation before anything is published, with a reader that reads
    // only this one frame (nothing else is on the wire yet).
    let confirmation = read_push(&mut BufReader::new(&mut stream)).await?;
    if !matches!(confirmation.as_deref(), Some([kind, ..]) if kind == b"subscribe") {
        bail!("expected the subscribe confirmation, got {confirmation:?}");
    }

    let mut publisher_con = client.get_multiplexed_async_connection().await?;
    let publisher = Publisher::new(&channel).payload_size(32).pace(pace);
    let publishing =
        tokio::spawn(async move { publisher.send(&mut publisher_con, 0..messages).await });
    let mut tally = Tally::new(messages);
    let outcome = if fresh {
        fresh_reader_per_message(stream, &mut tally).await?
    } else {
        long_lived(stream, &mut tally).await?
    };
    publishing.await??;

    println!(
        "{name:<19} received {:>6} of {:>6}, lost {:>6}; ended by {}",
        tally.received(),
        tally.sent(),
        tally.lost(),
        outcome.ended_by
    );
    if let Some((after, bytes)) = outcome.first_drop {
        println!(
            "{:<19} first dropped reader: after {after} message(s) it still held {bytes} undecoded \
             bytes; {} readers dropped {} bytes in all",
            "", outcome.dropping_readers, outcome.dropped_bytes
        );
    }
    println!("{:<19} missing: {}", "", tally.missing_summary(4));
    let ended_by = outcome
        .ended_by
        .split(':')
        .next()
        .unwrap_or_default()
        .to_string();
    Ok(ResultLine::from_tally(name, CLIENT, &tally, 0)
        .with("ended_by", ended_by)
        .with("dropped_bytes", outcome.dropped_bytes)
        .with("dropping_readers", outcome.dropping_readers))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let _quick = args.quick || lab::quick(); // the runs are short either way
    let server = RedisServer::from_env()?;
    println!("Redis at {}", server.display_url());
    let client = lab::connect::open(server.url()).await?;

    let mut results = Vec::new();
    for (name, fresh, pace) in [
        ("long-lived-burst", false, Pace::Burst),
        ("fresh-reader-burst", true, Pace::Burst),
        ("long-lived-paced", false, Pace::Rate(1000.0)),
        ("fresh-reader-paced", true, Pace::Rate(1000.0)),
    ] {
        let messages = if pace == Pace::Burst {
            args.messages
        } else {
            args.messages.min(1000)
        };
        results.push(run(&client, name, fresh, pace, messages).await?);
    }
    println!();
    for result in &results {
        result.print();
    }
    Ok(())
}
