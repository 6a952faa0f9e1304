use proptest::prelude::*;
use rstest::rstest;

use super::*;

/// rsync's digit grouping (`1,234,567`).
fn grouped(n: u64) -> String {
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

#[rstest]
#[case(
    "         32,768   0%    0.00kB/s    0:00:00",
    32_768,
    0,
    0.0,
    Some(0),
    None,
    None
)]
#[case(
    "     30,000,000  99%   20.53MB/s    0:00:01 (xfr#1, to-chk=2/4)",
    30_000_000,
    99,
    20.53 * 1048576.0,
    Some(1),
    Some(1),
    Some((2, 4))
)]
#[case("  1,073,741,824 100%  512.00MB/s    0:00:02 (xfr#4361, ir-chk=1000/5361)", 1_073_741_824, 100, 512.0 * 1048576.0, Some(2), Some(4361), Some((1000, 5361)))]
#[case("5   0%    0.00kB/s    0:00:00 (xfr#1, to-chk=0/4)", 5, 0, 0.0, Some(0), Some(1), Some((0, 4)))]
#[case(
    "   123456789  12%    1.00GB/s   ??:??:??",
    123_456_789,
    12,
    1073741824.0,
    None,
    None,
    None
)]
#[case(
    "      1,000  50%   10.00B/s  100:00:00",
    1000,
    50,
    10.0,
    Some(360_000),
    None,
    None
)]
fn progress_lines_parse(
    #[case] line: &str,
    #[case] bytes: u64,
    #[case] percent: u8,
    #[case] speed: f64,
    #[case] remaining: Option<u64>,
    #[case] xfr: Option<u64>,
    #[case] chk: Option<(u64, u64)>,
) {
    let p = parse_progress_line(line).unwrap_or_else(|| panic!("{line:?} should parse"));
    assert_eq!(p.bytes, bytes);
    assert_eq!(p.percent, Some(percent));
    assert!((p.bytes_per_second.unwrap() - speed).abs() < 1.0, "{p:?}");
    assert_eq!(p.remaining, remaining.map(Duration::from_secs));
    assert_eq!(p.files_transferred, xfr);
    assert_eq!(p.files_to_check.zip(p.files_total), chk);
}

#[rstest]
#[case("")]
#[case("Number of files: 4 (reg: 2, dir: 2)")]
#[case("sent 171 bytes  received 43 bytes  428.00 bytes/sec")]
#[case("total size is 30000005  speedup is 140186.94")]
#[case(">f+++++++++ big")]
#[case("rsync: [sender] link_stat \"/x\" failed: No such file or directory (2)")]
#[case("1,000 50% 10.00XB/s 0:00:00")]
#[case("1,000 50% 10.00kB/s 0:61:00")]
#[case("1,000 50% 10.00kB/s 0:00:00 (xfr#x, to-chk=1/2)")]
#[case("1,000 50% 10.00kB/s 0:00:00 (bogus)")]
#[case("-5 50% 10.00kB/s 0:00:00")]
fn other_lines_are_not_progress(#[case] line: &str) {
    assert_eq!(parse_progress_line(line), None, "{line:?}");
}

const STATS: &str = "
Number of files: 4,362 (reg: 4,361, dir: 1)
Number of created files: 0
Number of deleted files: 3 (reg: 3)
Number of regular files transferred: 44
Total file size: 1,073,741,824 bytes
Total transferred file size: 11,534,336 bytes
Literal data: 10,747,904 bytes
Matched data: 786,432 bytes
File list size: 131,072
File list generation time: 0.001 seconds
File list transfer time: 0.000 seconds
Total bytes sent: 98,304
Total bytes received: 10,995,000

sent 98,304 bytes  received 10,995,000 bytes  1,000,000.00 bytes/sec
total size is 1,073,741,824  speedup is 97.66
";

#[test]
fn stats_of_a_pull_are_read_from_the_receiver_side() {
    let stats = RsyncStats::parse(STATS.lines());
    assert!(stats.is_complete());
    assert_eq!(stats.files, Some(4362));
    assert_eq!(stats.files_deleted, Some(3));
    let t = stats.to_transfer_stats();
    assert_eq!(
        t.bytes_sent, 10_995_000,
        "what the reader sent = what we received"
    );
    assert_eq!(t.bytes_received, 98_304);
    assert_eq!(t.literal_bytes, 10_747_904);
    assert_eq!(t.total_bytes, 1_073_741_824);
    assert_eq!(
        (t.files_transferred, t.files_deleted, t.files_total),
        (44, 3, 4362)
    );
    assert!(!RsyncStats::parse(["Number of files: x"]).is_complete());
}

#[test]
fn a_stream_splits_on_carriage_returns_and_newlines() {
    let mut p = OutputParser::new();
    let mut lines = p.feed(b"\r      32,768   0%    0.00kB/s    0:00:00  \r  30,000,003 100%   20.53MB/s    0:00:01 (xfr#2, to-chk=0/4)\n\nNumber of files: 4 (reg: 2, dir: 2)\nsent 1");
    lines.extend(p.finish());
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(matches!(
        lines[0],
        OutputLine::Progress(TransferProgress { bytes: 32_768, .. })
    ));
    assert!(matches!(
        lines[1],
        OutputLine::Progress(TransferProgress {
            bytes: 30_000_003,
            percent: Some(100),
            ..
        })
    ));
    assert_eq!(
        lines[2],
        OutputLine::Text("Number of files: 4 (reg: 2, dir: 2)".into())
    );
    assert_eq!(lines[3], OutputLine::Text("sent 1".into()));
}

#[test]
fn overlong_lines_are_cut_not_kept() {
    let mut p = OutputParser::new();
    let lines = p.feed(&vec![b'x'; 3 * MAX_LINE]);
    assert!(lines.is_empty());
    let lines = p.finish();
    assert!(matches!(&lines[..], [OutputLine::Text(t)] if t.len() == MAX_LINE));
}

fn parse_all(chunks: &[&[u8]]) -> Vec<OutputLine> {
    let mut p = OutputParser::new();
    let mut out: Vec<OutputLine> = chunks.iter().flat_map(|c| p.feed(c)).collect();
    out.extend(p.finish());
    out
}

proptest! {
    /// Whatever rsync (or a broken pipe) writes, the parser never panics, and how the stream is cut into
    /// chunks does not change what it reports.
    #[test]
    fn any_bytes_in_any_chunks_parse_the_same(data in proptest::collection::vec(any::<u8>(), 0..2048), cuts in proptest::collection::vec(0usize..2048, 0..16)) {
        let whole = parse_all(&[&data]);
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c.min(data.len())).collect();
        cuts.sort_unstable();
        let mut chunks = Vec::new();
        let mut start = 0;
        for c in cuts {
            chunks.push(&data[start..c]);
            start = c;
        }
        chunks.push(&data[start..]);
        prop_assert_eq!(parse_all(&chunks), whole);
    }

    /// Lines from rsync's progress2 format parse back to the figures they were made of.
    #[test]
    fn formatted_progress_parses_back(
        bytes in any::<u64>(),
        percent in 0u8..=100,
        centi_speed in 0u64..100_000_000,
        unit in 0usize..4,
        secs in 0u64..1_000_000,
        xfr in proptest::option::of((0u64..10_000_000, 0u64..10_000_000, 0u64..10_000_000, any::<bool>())),
        width in 0usize..16,
    ) {
        let units = ["B/s", "kB/s", "MB/s", "GB/s"];
        let speed = format!("{}.{:02}{}", centi_speed / 100, centi_speed % 100, units[unit]);
        let hms = format!("{}:{:02}:{:02}", secs / 3600, secs / 60 % 60, secs % 60);
        let mut line = format!("{:>width$} {:>3}% {:>10} {:>10}", grouped(bytes), percent, speed, hms);
        if let Some((x, todo, total, ir)) = xfr {
            line.push_str(&format!(" (xfr#{x}, {}-chk={todo}/{total})", if ir { "ir" } else { "to" }));
        }
        let p = parse_progress_line(&line).expect("parses");
        prop_assert_eq!(p.bytes, bytes);
        prop_assert_eq!(p.percent, Some(percent));
        prop_assert_eq!(p.remaining, Some(Duration::from_secs(secs)));
        let expected = (centi_speed as f64 / 100.0) * 1024f64.powi(unit as i32);
        prop_assert!((p.bytes_per_second.unwrap() - expected).abs() <= expected * 1e-9 + 1e-6);
        prop_assert_eq!(p.files_transferred, xfr.map(|x| x.0));
        prop_assert_eq!(p.files_to_check.zip(p.files_total), xfr.map(|x| (x.1, x.2)));
    }

    /// A summary with any figures parses back to them.
    #[test]
    fn formatted_stats_parse_back(values in proptest::collection::vec(any::<u64>(), 8)) {
        let text = format!(
            "Number of files: {} (reg: 1)\nNumber of regular files transferred: {}\nNumber of deleted files: {}\nTotal file size: {} bytes\nLiteral data: {} bytes\nMatched data: {} bytes\nTotal bytes sent: {}\nTotal bytes received: {}\n",
            grouped(values[0]), values[1], grouped(values[2]), grouped(values[3]), values[4], grouped(values[5]), grouped(values[6]), values[7],
        );
        let s = RsyncStats::parse(text.lines());
        let parsed = vec![s.files, s.files_transferred, s.files_deleted, s.total_size, s.literal_data, s.matched_data, s.bytes_sent, s.bytes_received];
        prop_assert_eq!(parsed, values.iter().map(|v| Some(*v)).collect::<Vec<_>>());
    }
}
