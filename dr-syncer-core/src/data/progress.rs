//! Parsers of rsync's output: `--info=progress2` updates and the `--stats` summary.
//!
//! rsync writes progress updates separated by carriage returns and everything else by newlines;
//! [`OutputParser`] splits a byte stream (in chunks of any size) into [`OutputLine`]s. The parsers never
//! panic and accept digit grouping (`1,234,567`), so they work with and without `--no-human-readable`;
//! the mover runs rsync with `LC_ALL=C` so that the separators are the C locale's.

use std::time::Duration;

use super::{TransferProgress, TransferStats};

/// Longest line kept; longer output is cut there (rsync's own lines are far shorter).
const MAX_LINE: usize = 64 * 1024;

/// One piece of rsync's standard output.
#[derive(Debug, Clone, PartialEq)]
pub enum OutputLine {
    /// A progress update.
    Progress(TransferProgress),
    /// Any other line (statistics, itemized changes, messages), without its line terminator.
    Text(String),
}

/// Splits rsync's standard output into lines and parses progress updates.
#[derive(Debug, Default)]
pub struct OutputParser {
    pending: Vec<u8>,
}

impl OutputParser {
    /// A parser with nothing buffered.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feed a chunk; returns the complete lines it finished.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<OutputLine> {
        let mut out = Vec::new();
        for &b in chunk {
            if b == b'\r' || b == b'\n' {
                self.flush_into(&mut out);
            } else if self.pending.len() < MAX_LINE {
                self.pending.push(b);
            }
        }
        out
    }

    /// The last, unterminated line, if any.
    pub fn finish(&mut self) -> Vec<OutputLine> {
        let mut out = Vec::new();
        self.flush_into(&mut out);
        out
    }

    fn flush_into(&mut self, out: &mut Vec<OutputLine>) {
        if self.pending.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        if line.trim().is_empty() {
            return;
        }
        out.push(match parse_progress_line(&line) {
            Some(p) => OutputLine::Progress(p),
            None => OutputLine::Text(line),
        });
    }
}

/// Parse one `--info=progress2` update, e.g.
/// `  30,000,000  99%   20.53MB/s    0:00:01 (xfr#1, to-chk=2/4)`.
pub fn parse_progress_line(line: &str) -> Option<TransferProgress> {
    let (main, extra) = match line.find('(') {
        Some(i) => (&line[..i], Some(&line[i..])),
        None => (line, None),
    };
    let fields: Vec<&str> = main.split_whitespace().collect();
    let [bytes, percent, speed, remaining] = fields.as_slice() else {
        return None;
    };
    let remaining = match *remaining {
        "??:??:??" => None,
        hms => Some(parse_hms(hms)?),
    };
    let mut progress = TransferProgress {
        bytes: parse_count(bytes)?,
        percent: Some(u8::try_from(percent.strip_suffix('%')?.parse::<u32>().ok()?.min(100)).ok()?),
        bytes_per_second: Some(parse_speed(speed)?),
        remaining,
        ..Default::default()
    };
    if let Some(extra) = extra {
        let inner = extra.strip_prefix('(')?.strip_suffix(')')?;
        for part in inner.split(',').map(str::trim) {
            if let Some(n) = part.strip_prefix("xfr#") {
                progress.files_transferred = Some(parse_count(n)?);
            } else if let Some(v) = part
                .strip_prefix("to-chk=")
                .or_else(|| part.strip_prefix("ir-chk="))
            {
                let (todo, total) = v.split_once('/')?;
                progress.files_to_check = Some(parse_count(todo)?);
                progress.files_total = Some(parse_count(total)?);
            } else {
                return None;
            }
        }
    }
    Some(progress)
}

/// A decimal count with optional `,`/`.` digit grouping (`30,000,000`).
fn parse_count(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit() || b == b',' || b == b'.') {
        return None;
    }
    let digits: String = s.chars().filter(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// A speed like `20.53MB/s` or `0.00kB/s` (rsync's units are powers of 1024).
fn parse_speed(s: &str) -> Option<f64> {
    let s = s.strip_suffix("/s")?;
    let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.' || c == ','))?;
    let (num, unit) = s.split_at(split);
    let num: f64 = num.replace(',', "").parse().ok()?;
    let factor = match unit {
        "B" => 1.0,
        "kB" | "KB" => 1024.0,
        "MB" => 1024.0 * 1024.0,
        "GB" => 1024.0 * 1024.0 * 1024.0,
        "TB" => 1024.0f64.powi(4),
        "PB" => 1024.0f64.powi(5),
        _ => return None,
    };
    let v = num * factor;
    v.is_finite().then_some(v)
}

/// `H:MM:SS` (hours may exceed 24); `??:??:??` (unknown) gives `None`.
fn parse_hms(s: &str) -> Option<Duration> {
    let mut parts = s.split(':');
    let (h, m, sec) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let h: u64 = h.parse().ok()?;
    let m: u64 = m.parse().ok()?;
    let sec: u64 = sec.parse().ok()?;
    if m >= 60 || sec >= 60 {
        return None;
    }
    Some(Duration::from_secs(
        h.checked_mul(3600)?.checked_add(m * 60 + sec)?,
    ))
}

/// The figures of rsync's `--stats` summary, from the receiving (writer's) side.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RsyncStats {
    /// `Number of files` (all kinds).
    pub files: Option<u64>,
    /// `Number of regular files transferred`.
    pub files_transferred: Option<u64>,
    /// `Number of deleted files`.
    pub files_deleted: Option<u64>,
    /// `Total file size`.
    pub total_size: Option<u64>,
    /// `Literal data`.
    pub literal_data: Option<u64>,
    /// `Matched data`.
    pub matched_data: Option<u64>,
    /// `Total bytes sent` (by this side).
    pub bytes_sent: Option<u64>,
    /// `Total bytes received` (by this side).
    pub bytes_received: Option<u64>,
}

impl RsyncStats {
    /// Parse the summary out of rsync's output lines (other lines are ignored).
    pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Self {
        let mut stats = RsyncStats::default();
        for line in lines {
            let Some((key, value)) = line.split_once(':') else {
                continue;
            };
            let first = value.split_whitespace().next().and_then(parse_count);
            let slot = match key.trim() {
                "Number of files" => &mut stats.files,
                "Number of regular files transferred" => &mut stats.files_transferred,
                "Number of deleted files" => &mut stats.files_deleted,
                "Total file size" => &mut stats.total_size,
                "Literal data" => &mut stats.literal_data,
                "Matched data" => &mut stats.matched_data,
                "Total bytes sent" => &mut stats.bytes_sent,
                "Total bytes received" => &mut stats.bytes_received,
                _ => continue,
            };
            if first.is_some() {
                *slot = first;
            }
        }
        stats
    }

    /// Whether the summary was found at all.
    pub fn is_complete(&self) -> bool {
        self.files.is_some() && self.bytes_sent.is_some() && self.bytes_received.is_some()
    }

    /// Statistics of a pull: what this (receiving) side received is what the reader sent.
    pub fn to_transfer_stats(&self) -> TransferStats {
        TransferStats {
            bytes_sent: self.bytes_received.unwrap_or(0),
            bytes_received: self.bytes_sent.unwrap_or(0),
            literal_bytes: self.literal_data.unwrap_or(0),
            total_bytes: self.total_size.unwrap_or(0),
            files_transferred: self.files_transferred.unwrap_or(0),
            files_deleted: self.files_deleted.unwrap_or(0),
            files_total: self.files.unwrap_or(0),
            ..Default::default()
        }
    }
}

#[cfg(test)]
#[path = "progress_tests.rs"]
mod tests;
