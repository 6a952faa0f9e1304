//! What the reader's forced command accepts: the pure check of `SSH_ORIGINAL_COMMAND`.
//!
//! Every login to the reader runs `dr-syncer-agent ssh-command`, whatever the client asked for; the
//! client's request arrives in `SSH_ORIGINAL_COMMAND` and is never given to a shell. Accepted:
//! - `dr-syncer-probe` (connectivity check) and `dr-syncer-probe PATH` (is this volume served here?);
//! - `dr-syncer-checksum PATH` (SHA-256 sums of files of an allowed volume, for sample verification);
//! - `dr-syncer-usage PATH` (the file count and bytes of an allowed volume, for the wiped-source brake:
//!   [`crate::usage`]);
//! - `rsync --server --sender OPTIONS . PATH...` — an rsync **sender** only (the reader is read-only),
//!   with options from an allow-list and paths inside one currently allowed volume.
//!
//! Modelled on rsync's `rrsync`, stricter where our client is known: no backslash escapes, no wildcards,
//! no relative paths, no `//`, `.` or `..`; options that read or write server-side files (`--log-file`,
//! `--files-from`, `--temp-dir`/`-T`, `--partial-dir`, `--backup-dir`, batch files,
//! `--exclude-from`), remove data (`--remove-source-files`), follow links out of the volume (`-L`,
//! `-k`, `-K`, `--copy-unsafe-links`, `--copy-devices`, `--insecure-links`), hide arguments from this
//! check (`-s`) or act as a receiver are refused. This module checks the text; [`crate::command`]
//! then opens the paths without following any symlink.

use std::path::{Path, PathBuf};

/// The probe command.
pub const PROBE_COMMAND: &str = "dr-syncer-probe";
/// The command that asks for the path of a grant (see [`crate::grants`]).
pub const RESOLVE_COMMAND: &str = "dr-syncer-resolve";
pub use dr_syncer_core::data::CHECKSUM_COMMAND;

/// A request the reader will serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// Connectivity check.
    Probe,
    /// Is this volume served here?
    ProbePath {
        /// The allowed volume.
        root: PathBuf,
    },
    /// The path of an allowed volume, asked by its grant's name.
    Resolve {
        /// The allowed volume.
        root: PathBuf,
    },
    /// Checksums of files of a volume (paths on standard input).
    Checksum {
        /// The allowed volume.
        root: PathBuf,
    },
    /// The file count and bytes of a volume.
    Usage {
        /// The allowed volume.
        root: PathBuf,
    },
    /// An rsync sender.
    Rsync {
        /// The client's options (checked), in order.
        options: Vec<String>,
        /// The allowed volume the paths are in.
        root: PathBuf,
        /// The paths, relative to `root` (`./` for the volume's contents), trailing `/` kept.
        paths: Vec<String>,
    },
}

/// Why a request was refused (shown to the client and logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

fn refuse<T>(message: impl Into<String>) -> Result<T, Refusal> {
    Err(Refusal(message.into()))
}

/// Single-letter options a sender may get: archive parts (`rlptgoD`), `A` ACLs, `X` xattrs, `H` hard
/// links, `S` sparse, `x` one file system, `E` executability, `U`/`N` times, `O`/`J` omit times, `I`
/// ignore times, `W` whole file, `c` checksum, `d` dirs, `m` prune, `n` dry run, `q`, `u`, `v`, `y`,
/// `z` compress, `R` relative.
const SHORT_ALLOWED: &str = "rlptgoDAXHSxEUNOJIWcdmnquvyzR";

/// Long options without a value a sender may get.
const LONG_FLAGS: &[&str] = &[
    "--numeric-ids",
    "--inplace",
    "--append",
    "--one-file-system",
    "--size-only",
    "--ignore-times",
    "--ignore-errors",
    "--ignore-existing",
    "--existing",
    "--delete",
    "--delete-before",
    "--delete-during",
    "--delete-delay",
    "--delete-after",
    "--delete-excluded",
    "--force",
    "--safe-links",
    "--munge-links",
    "--open-noatime",
    "--old-compress",
    "--new-compress",
    "--no-W",
    "--no-implied-dirs",
    "--list-only",
    "--msgs2stderr",
    "--no-msgs2stderr",
];

/// Checks an option's value.
type ValueCheck = fn(&str) -> bool;

/// Long options with a value, and the check of the value.
const LONG_VALUED: &[(&str, ValueCheck)] = &[
    ("--timeout", is_number),
    ("--bwlimit", is_size),
    ("--compress-level", is_number),
    ("--compress-choice", is_word),
    ("--checksum-choice", is_word),
    ("--checksum-seed", is_number),
    ("--block-size", is_size),
    ("--max-size", is_size),
    ("--min-size", is_size),
    ("--modify-window", is_signed),
    ("--max-alloc", is_size),
];

fn is_number(v: &str) -> bool {
    !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit())
}
fn is_signed(v: &str) -> bool {
    is_number(v.strip_prefix('-').unwrap_or(v))
}
fn is_size(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 24
        && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'.')
        && v.as_bytes()[0].is_ascii_digit()
}
fn is_word(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b',')
}

/// Check one option word.
fn check_option(word: &str) -> Result<(), Refusal> {
    if let Some(long) = word.strip_prefix("--") {
        let (name, value) = match long.split_once('=') {
            Some((n, v)) => (format!("--{n}"), Some(v)),
            None => (word.to_string(), None),
        };
        let ok = match value {
            None => LONG_FLAGS.contains(&name.as_str()),
            Some(v) => LONG_VALUED.iter().any(|(n, check)| *n == name && check(v)),
        };
        return if ok {
            Ok(())
        } else {
            refuse(format!("option {name} is not allowed on this server"))
        };
    }
    let Some(short) = word.strip_prefix('-') else {
        return refuse(format!("unexpected argument {word:?} before \".\""));
    };
    // `-B1024` (block size), `-@1` (modify window).
    if let Some(num) = short.strip_prefix(['B', '@'])
        && !num.is_empty()
    {
        return if is_signed(num) {
            Ok(())
        } else {
            refuse(format!("invalid option {word:?}"))
        };
    }
    // Letters, then rsync's capability string `e[digits].[letters]` (a stock client sends it).
    let (letters, caps) = match short.find('e') {
        Some(i) => (&short[..i], Some(&short[i + 1..])),
        None => (short, None),
    };
    if letters.is_empty() && caps.is_none() {
        return refuse(format!("invalid option {word:?}"));
    }
    if let Some(bad) = letters.chars().find(|c| !SHORT_ALLOWED.contains(*c)) {
        return refuse(format!("option -{bad} is not allowed on this server"));
    }
    if let Some(caps) = caps {
        let digits = caps.trim_start_matches(|c: char| c.is_ascii_digit());
        let ok = digits
            .strip_prefix('.')
            .is_some_and(|rest| rest.bytes().all(|b| b.is_ascii_alphabetic()));
        if !ok {
            return refuse(format!("invalid option {word:?}"));
        }
    }
    Ok(())
}

/// Check a path's text: absolute, `[A-Za-z0-9._~+@:=,/-]`, no `//`, no `.` or `..` component.
fn check_path_text(path: &str) -> Result<(), Refusal> {
    if !path.starts_with('/') {
        return refuse(format!("path {path:?} is not absolute"));
    }
    if let Some(c) = path
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._~+@:=,/-".contains(*c)))
    {
        return refuse(format!("path {path:?} contains {c:?}"));
    }
    if path.contains("//") {
        return refuse(format!("path {path:?} contains //"));
    }
    if path
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .any(|c| c == "." || c == "..")
    {
        return refuse(format!("path {path:?} contains a . or .. component"));
    }
    Ok(())
}

/// The allowed root that contains `path`, and `path` relative to it (without trailing `/`, `""` for
/// the root itself).
fn locate<'r>(path: &str, roots: &'r [PathBuf]) -> Result<(&'r Path, String), Refusal> {
    let trimmed = path.trim_end_matches('/');
    for root in roots {
        let Some(root_text) = root.to_str() else {
            continue;
        };
        let root_text = root_text.trim_end_matches('/');
        if trimmed == root_text {
            return Ok((root, String::new()));
        }
        if let Some(rest) = trimmed.strip_prefix(root_text).and_then(|r| r.strip_prefix('/')) {
            return Ok((root, rest.to_string()));
        }
    }
    refuse(format!("path {path:?} is not a volume served by this node"))
}

/// The grant name of a `dr-syncer-resolve NAME` request (`None` for any other request).
///
/// # Errors
/// [`Refusal`] when the name is not `[A-Za-z0-9_.-]{1,200}` or starts with `.`.
pub fn resolve_name(command: Option<&str>) -> Result<Option<String>, Refusal> {
    let Some(command) = command else {
        return Ok(None);
    };
    let words: Vec<&str> = command.split(' ').filter(|w| !w.is_empty()).collect();
    match words.as_slice() {
        [RESOLVE_COMMAND, name] => {
            let ok = name.len() <= 200
                && !name.starts_with('.')
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
            if ok {
                Ok(Some((*name).to_string()))
            } else {
                refuse(format!("invalid grant name {name:?}"))
            }
        }
        [RESOLVE_COMMAND, ..] => refuse("usage: dr-syncer-resolve NAME"),
        _ => Ok(None),
    }
}

/// Check `SSH_ORIGINAL_COMMAND` against the allowed volume roots.
///
/// # Errors
/// [`Refusal`] with the reason.
pub fn check(command: Option<&str>, roots: &[PathBuf]) -> Result<Request, Refusal> {
    let Some(command) = command else {
        return refuse("interactive sessions are not allowed; this server only serves rsync");
    };
    if let Some(c) = command.chars().find(|c| c.is_control() || *c == '\\') {
        return refuse(format!("the command contains {c:?}"));
    }
    let words: Vec<&str> = command.split(' ').filter(|w| !w.is_empty()).collect();
    match words.as_slice() {
        [] => refuse("interactive sessions are not allowed; this server only serves rsync"),
        [PROBE_COMMAND] => Ok(Request::Probe),
        [PROBE_COMMAND, path] => {
            check_path_text(path)?;
            let (root, rel) = locate(path, roots)?;
            if !rel.is_empty() {
                return refuse(format!("{path:?} is inside a volume, not a volume"));
            }
            Ok(Request::ProbePath { root: root.into() })
        }
        [CHECKSUM_COMMAND, path] => {
            check_path_text(path)?;
            let (root, rel) = locate(path, roots)?;
            if !rel.is_empty() {
                return refuse(format!("{path:?} is inside a volume, not a volume"));
            }
            Ok(Request::Checksum { root: root.into() })
        }
        [crate::usage::USAGE_COMMAND, path] => {
            check_path_text(path)?;
            let (root, rel) = locate(path, roots)?;
            if !rel.is_empty() {
                return refuse(format!("{path:?} is inside a volume, not a volume"));
            }
            Ok(Request::Usage { root: root.into() })
        }
        ["rsync", "--server", "--sender", rest @ ..] => check_rsync(rest, roots),
        ["rsync", "--server", ..] => refuse("only reading is allowed: the rsync receiver (write) is refused"),
        ["rsync", ..] => refuse("rsync must run as a server (--server --sender)"),
        [first, ..] => refuse(format!(
            "command {first:?} is not allowed; this server only serves rsync"
        )),
    }
}

fn check_rsync(words: &[&str], roots: &[PathBuf]) -> Result<Request, Refusal> {
    let Some(dot) = words.iter().position(|w| *w == ".") else {
        return refuse("invalid rsync server command (no \".\" argument)");
    };
    let (options, paths) = (&words[..dot], &words[dot + 1..]);
    for option in options {
        check_option(option)?;
    }
    if paths.is_empty() {
        return refuse("no path given");
    }
    let mut root: Option<&Path> = None;
    let mut relative = Vec::new();
    for path in paths {
        check_path_text(path)?;
        let (r, rel) = locate(path, roots)?;
        if root.is_some_and(|prev| prev != r) {
            return refuse("all paths must be inside the same volume");
        }
        root = Some(r);
        let trailing = path.ends_with('/');
        relative.push(match (rel.is_empty(), trailing) {
            (true, true) => "./".to_string(),
            (true, false) => {
                return refuse(format!(
                    "name the volume's contents with a trailing slash ({path}/), not the volume itself"
                ));
            }
            (false, true) => format!("{rel}/"),
            (false, false) => rel,
        });
    }
    Ok(Request::Rsync {
        options: options.iter().map(|s| s.to_string()).collect(),
        root: root.map(Path::to_path_buf).unwrap_or_default(),
        paths: relative,
    })
}

#[cfg(test)]
#[path = "forced_tests.rs"]
mod tests;
