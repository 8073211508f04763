//! The RESULT line: one per scenario, at the end of every message-moving example.
//!
//! ```text
//! RESULT scenario=loop-burst-0ms client=redis-0.25.5 sent=1000 received=1 lost=999 noticed=0
//! ```
//!
//! `lost` is counted by the harness (`sent - received`); `noticed` is how many of those the
//! subscriber itself detected and reported (drop counters, sequence gaps, a disconnect it
//! saw). `lost - noticed` is *silent* loss. Extra `key=value` pairs may follow
//! (`msg_per_s=`, `rss_mb=`). Tests read these lines with [`parse_results`], so the numbers a
//! chapter shows and the numbers a test checks come from the same program.

use std::fmt;
use std::str::FromStr;

use anyhow::{Context, Result, anyhow, bail, ensure};

use crate::tally::Tally;

/// One `RESULT ...` line.
#[derive(Clone, Debug, PartialEq)]
pub struct ResultLine {
    pub scenario: String,
    pub client: String,
    pub sent: u64,
    pub received: u64,
    pub lost: u64,
    pub noticed: u64,
    /// Further `key=value` pairs, in order.
    pub extra: Vec<(String, String)>,
}

impl ResultLine {
    /// A result from counts. `noticed` is what the subscriber reported as lost.
    pub fn new(scenario: &str, client: &str, sent: u64, received: u64, noticed: u64) -> Self {
        Self {
            scenario: scenario.to_string(),
            client: client.to_string(),
            sent,
            received,
            lost: sent.saturating_sub(received),
            noticed,
            extra: Vec::new(),
        }
    }

    /// A result from the harness's tally.
    pub fn from_tally(scenario: &str, client: &str, tally: &Tally, noticed: u64) -> Self {
        Self::new(scenario, client, tally.sent(), tally.received(), noticed)
    }

    /// Add a `key=value` pair (spaces in the value become `_`).
    pub fn with(mut self, key: &str, value: impl fmt::Display) -> Self {
        self.extra.push((
            key.to_string(),
            value.to_string().replace(char::is_whitespace, "_"),
        ));
        self
    }

    /// Messages lost that nobody noticed.
    pub fn silent_loss(&self) -> u64 {
        self.lost.saturating_sub(self.noticed)
    }

    /// An extra value by key.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.extra
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// An extra value parsed as a number.
    pub fn get_f64(&self, key: &str) -> Result<f64> {
        let value = self
            .get(key)
            .ok_or_else(|| anyhow!("RESULT {} has no {key}=", self.scenario))?;
        value
            .parse()
            .with_context(|| format!("RESULT {} has {key}={value}, not a number", self.scenario))
    }

    /// Print the line on stdout.
    pub fn print(&self) {
        println!("{self}");
    }
}

impl fmt::Display for ResultLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "RESULT scenario={} client={} sent={} received={} lost={} noticed={}",
            self.scenario, self.client, self.sent, self.received, self.lost, self.noticed
        )?;
        for (key, value) in &self.extra {
            write!(f, " {key}={value}")?;
        }
        Ok(())
    }
}

impl FromStr for ResultLine {
    type Err = anyhow::Error;

    fn from_str(line: &str) -> Result<Self> {
        let mut words = line.split_whitespace();
        ensure!(
            words.next() == Some("RESULT"),
            "not a RESULT line: {line:?}"
        );
        let mut pairs = Vec::new();
        for word in words {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| anyhow!("`{word}` is not key=value in {line:?}"))?;
            ensure!(!key.is_empty(), "empty key in {line:?}");
            pairs.push((key.to_string(), value.to_string()));
        }
        let mut take = |key: &str| -> Result<String> {
            let index = pairs
                .iter()
                .position(|(k, _)| k == key)
                .ok_or_else(|| anyhow!("RESULT line without {key}=: {line:?}"))?;
            Ok(pairs.remove(index).1)
        };
        let scenario = take("scenario")?;
        let client = take("client")?;
        let mut number = |key: &str| -> Result<u64> {
            let value = take(key)?;
            value
                .parse()
                .with_context(|| format!("{key}={value} is not a count in {line:?}"))
        };
        let sent = number("sent")?;
        let received = number("received")?;
        let lost = number("lost")?;
        let noticed = number("noticed")?;
        if sent.checked_sub(received) != Some(lost) {
            bail!("lost={lost} is not sent - received ({sent} - {received}) in {line:?}");
        }
        Ok(Self {
            scenario,
            client,
            sent,
            received,
            lost,
            noticed,
            extra: pairs,
        })
    }
}

/// Every RESULT line in a program's output (other lines are ignored). A malformed RESULT
/// line is an error, not skipped.
pub fn parse_results(output: &str) -> Result<Vec<ResultLine>> {
    output
        .lines()
        .map(str::trim)
        .filter(|line| line.starts_with("RESULT "))
        .map(str::parse)
        .collect()
}

/// The one result with this scenario and client, or an error that lists what there was.
pub fn find<'a>(results: &'a [ResultLine], scenario: &str, client: &str) -> Result<&'a ResultLine> {
    results
        .iter()
        .find(|r| r.scenario == scenario && r.client == client)
        .ok_or_else(|| {
            let have: Vec<String> = results
                .iter()
                .map(|r| format!("{}/{}", r.scenario, r.client))
                .collect();
            anyhow!("no RESULT for scenario={scenario} client={client}; have: {have:?}")
        })
}

/// `1234567` as `1,234,567`, for the tables the examples write.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let line = ResultLine::new("loop-burst", "redis-0.25.5", 1000, 1, 0)
            .with("handler_ms", 1)
            .with("note", "stream ended");
        let text = line.to_string();
        assert_eq!(
            text,
            "RESULT scenario=loop-burst client=redis-0.25.5 sent=1000 received=1 lost=999 \
             noticed=0 handler_ms=1 note=stream_ended"
        );
        let parsed: ResultLine = text.parse().unwrap();
        assert_eq!(parsed, line);
        assert_eq!(parsed.silent_loss(), 999);
        assert_eq!(parsed.get_f64("handler_ms").unwrap(), 1.0);
    }

    #[test]
    fn rejects_inconsistent_or_incomplete_lines() {
        for bad in [
            "RESULT scenario=a client=b sent=10 received=9 lost=2 noticed=0",
            "RESULT scenario=a client=b sent=10 received=9 noticed=0",
            "RESULT scenario=a client=b sent=ten received=9 lost=1 noticed=0",
            "RESULT scenario=a client=b sent=10 received=9 lost=1 noticed=0 junk",
        ] {
            assert!(bad.parse::<ResultLine>().is_err(), "{bad}");
        }
        let output = "hello\nRESULT scenario=a client=b sent=1 received=1 lost=0 noticed=0\n";
        assert_eq!(parse_results(output).unwrap().len(), 1);
        assert!(parse_results("RESULT scenario=a").is_err());
    }

    #[test]
    fn thousands_groups_digits_by_three() {
        assert_eq!(super::thousands(0), "0");
        assert_eq!(super::thousands(999), "999");
        assert_eq!(super::thousands(1_000), "1,000");
        assert_eq!(super::thousands(2_000_000), "2,000,000");
    }
}
