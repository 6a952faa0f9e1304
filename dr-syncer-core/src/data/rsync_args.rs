//! rsync's command line for `RsyncSsh` (feature `data`): the fixed archive flags, the user's options (checked
//! against an allow-list), and the checks of an [`SshEndpoint`].

use std::{ffi::OsString, path::Path};

#[cfg(feature = "data")]
use crate::data::SshEndpoint;
use crate::data::{DataMoverError, TransferOptions, verify::VERIFY_PREFIX};

/// The archive flags of every run: `-a` (recursive, links, permissions, times, group, owner, devices
/// and specials), `-A` ACLs, `-H` hard links, `-S` sparse files, `-x` one file system, numeric ids
/// (uid/gid numbers kept as they are: names differ between clusters), plain numbers in the output.
pub(crate) const ARCHIVE_FLAGS: &[&str] = &["-aAHSx", "--numeric-ids", "--no-human-readable"];

/// Flags users may add through `rsyncOptions` (exact matches).
const ALLOWED_FLAGS: &[&str] = &[
    "-a",
    "--archive",
    "-v",
    "--verbose",
    "-c",
    "--checksum",
    "-z",
    "--compress",
    "-W",
    "--whole-file",
    "--no-whole-file",
    "--no-W",
    "-X",
    "--xattrs",
    "-A",
    "--acls",
    "-H",
    "--hard-links",
    "-S",
    "--sparse",
    "--inplace",
    "--append-verify",
    "--partial",
    "--delay-updates",
    "--delete-before",
    "--delete-during",
    "--delete-delay",
    "--delete-after",
    "--delete-excluded",
    "--ignore-errors",
    "--force",
    "--size-only",
    "-I",
    "--ignore-times",
    "-O",
    "--omit-dir-times",
    "-J",
    "--omit-link-times",
    "--preallocate",
    "--fsync",
    "-y",
    "--fuzzy",
    "--prune-empty-dirs",
    "-m",
    "--numeric-ids",
    "--open-noatime",
    "--no-inc-recursive",
    "--safe-links",
];

/// Checks an option's value.
type ValueCheck = fn(&str) -> bool;

/// Options users may add with a value (`--name=VALUE`), and the check of the value.
const ALLOWED_VALUED: &[(&str, ValueCheck)] = &[
    ("--bwlimit", is_rate),
    ("--compress-level", is_number),
    ("--compress-choice", is_word),
    ("--checksum-choice", is_word),
    ("--block-size", is_size),
    ("--max-size", is_size),
    ("--min-size", is_size),
    ("--max-delete", is_number),
    ("--modify-window", is_signed_number),
    ("--timeout", is_number),
    ("--contimeout", is_number),
    ("--exclude", is_pattern),
    ("--include", is_pattern),
];

fn is_number(v: &str) -> bool {
    !v.is_empty() && v.len() <= 20 && v.bytes().all(|b| b.is_ascii_digit())
}
fn is_signed_number(v: &str) -> bool {
    is_number(v.strip_prefix('-').unwrap_or(v))
}
fn is_size(v: &str) -> bool {
    let digits = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', 'b', 'B', 'i']);
    !digits.is_empty()
        && digits.len() <= 20
        && digits.bytes().all(|b| b.is_ascii_digit() || b == b'.')
        && v.len() - digits.len() <= 3
}
fn is_rate(v: &str) -> bool {
    is_size(v)
}
fn is_word(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b',')
}
fn is_pattern(v: &str) -> bool {
    // A pattern is sent as a filter rule; a leading modifier could turn it into a merge-file rule.
    !v.is_empty() && !v.starts_with([':', '.', '+', '-', '!']) && !v.chars().any(char::is_control)
}

/// Check the extra options a user asked for (`dataSyncConfig.rsyncOptions`) against the allow-list.
///
/// Allowed: tuning and selection flags (`--checksum`, `--compress`, `--whole-file`, `--inplace`,
/// `--partial`, the `--delete-*` timings, `--size-only`, `--xattrs`, …) and a few options with simple
/// values (`--bwlimit=`, `--compress-level=`, `--block-size=`, `--max-size=`, `--exclude=`, …), given
/// as one word (`--bwlimit=1000`). Refused: everything else — anything that changes where data goes
/// or comes from (`-e`, `--rsync-path`, `--files-from`, `--temp-dir`, `--partial-dir`, `--backup-dir`,
/// `--log-file`, batch files, `--remove-source-files`), follows symlinks out of the volume (`-L`, `-k`,
/// `--copy-unsafe-links`), or changes the output the mover parses (`--out-format`, `-h`, `--progress`).
///
/// # Errors
/// A message naming the first refused option.
pub fn validate_extra_options(options: &[String]) -> Result<(), String> {
    for opt in options {
        if ALLOWED_FLAGS.contains(&opt.as_str()) {
            continue;
        }
        let allowed = opt.split_once('=').is_some_and(|(name, value)| {
            ALLOWED_VALUED
                .iter()
                .any(|(allowed, check)| *allowed == name && check(value))
        });
        if !allowed {
            return Err(format!(
                "rsync option {opt:?} is not allowed (allowed: {} and {})",
                ALLOWED_FLAGS.join(" "),
                ALLOWED_VALUED
                    .iter()
                    .map(|(n, _)| format!("{n}=…"))
                    .collect::<Vec<_>>()
                    .join(" ")
            ));
        }
    }
    Ok(())
}

/// Whether a path is safe to name on the reader: absolute, only `[A-Za-z0-9._~+@:=,/-]`, no `//`, no
/// `.` or `..` component. The reader applies the same rule (kubelet volume paths always pass).
pub(crate) fn check_remote_path(path: &str) -> Result<(), String> {
    let ok_chars = path
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._~+@:=,/-".contains(&b));
    let components_ok = path
        .trim_end_matches('/')
        .split('/')
        .skip(1)
        .all(|c| !c.is_empty() && c != "." && c != "..");
    if !path.starts_with('/') || !ok_chars || path.contains("//") || !components_ok || path == "/" {
        return Err(format!(
            "source path {path:?} must be an absolute volume path of [A-Za-z0-9._~+@:=,/-] without //, . or .."
        ));
    }
    Ok(())
}

/// Check an endpoint's fields before anything runs.
#[cfg(feature = "data")]
pub(crate) fn check_endpoint(ep: &SshEndpoint) -> Result<(), DataMoverError> {
    let bad = |m: String| Err(DataMoverError::InvalidRequest(m));
    if ep.host.is_empty()
        || ep.host.len() > 253
        || ep.host.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return bad(format!("invalid host {:?}", ep.host));
    }
    if ep.port == 0 {
        return bad("port 0 is invalid".into());
    }
    let user_ok = !ep.user.is_empty()
        && ep.user.len() <= 32
        && ep
            .user
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.')
        && !ep.user.starts_with('-');
    if !user_ok {
        return bad(format!("invalid user {:?}", ep.user));
    }
    check_remote_path(&ep.path).map_err(DataMoverError::InvalidRequest)?;
    crate::keys::HostKeyPins::parse(&ep.pinned_host_key)
        .map_err(|e| DataMoverError::InvalidRequest(format!("pinned host key: {e}")))?;
    if !ep.client_key.is_file() {
        return bad(format!(
            "client key {} is not a readable file",
            ep.client_key.display()
        ));
    }
    Ok(())
}

/// Check the options of a request.
pub(crate) fn check_options(opts: &TransferOptions) -> Result<(), DataMoverError> {
    let bad = |m: String| Err(DataMoverError::InvalidRequest(m));
    validate_extra_options(&opts.extra_options).map_err(DataMoverError::InvalidRequest)?;
    if let Some(p) = opts.exclude.iter().find(|p| !is_pattern(p)) {
        return bad(format!("invalid exclude pattern {p:?}"));
    }
    if opts.bandwidth_limit_kib == Some(0) {
        return bad("bandwidth limit 0 would stop the transfer; leave it unset for no limit".into());
    }
    if !(1..=100).contains(&opts.sample_percent) {
        return bad(format!(
            "sample percent {} is not within 1–100",
            opts.sample_percent
        ));
    }
    if opts.io_timeout.is_some_and(|t| t.as_secs() == 0) {
        return bad("an IO timeout must be at least one second".into());
    }
    Ok(())
}

/// What a run of rsync does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Mirror the source (`force_checksum`: compare contents, not size and time).
    Copy { force_checksum: bool },
    /// Compare by checksum without changing anything; itemized differences on stdout.
    VerifyFull,
}

/// The arguments of one rsync run (everything but the program).
pub(crate) fn rsync_args(
    opts: &TransferOptions,
    mode: Mode,
    rsh: &str,
    remote: &str,
    destination: &Path,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = ARCHIVE_FLAGS.iter().map(OsString::from).collect();
    if opts.xattrs {
        args.push("-X".into());
    }
    if opts.delete {
        args.push("--delete".into());
    }
    args.push("--stats".into());
    match mode {
        Mode::Copy { force_checksum } => {
            args.push("--info=progress2".into());
            if opts.resumable {
                args.push("--partial".into());
            }
            if force_checksum {
                args.push("--checksum".into());
            }
        }
        Mode::VerifyFull => {
            args.extend(["--checksum", "--dry-run"].map(OsString::from));
            args.push(format!("--out-format={VERIFY_PREFIX}%i %n").into());
        }
    }
    if let Some(kib) = opts.bandwidth_limit_kib {
        args.push(format!("--bwlimit={kib}").into());
    }
    if let Some(t) = opts.io_timeout {
        args.push(format!("--timeout={}", t.as_secs()).into());
    }
    for pattern in &opts.exclude {
        args.push(format!("--exclude={pattern}").into());
    }
    if mode != Mode::VerifyFull {
        args.extend(opts.extra_options.iter().map(OsString::from));
    }
    args.push("-e".into());
    args.push(rsh.into());
    args.push("--".into());
    args.push(remote.into());
    let mut dest = destination.as_os_str().to_owned();
    if !dest.to_string_lossy().ends_with('/') {
        dest.push("/");
    }
    args.push(dest);
    args
}

/// Quote a word for rsync's remote-shell command string (rsync splits it on spaces and honours single
/// quotes).
pub(crate) fn rsh_word(word: &str) -> Result<String, DataMoverError> {
    if word.contains('\'') || word.chars().any(char::is_control) {
        return Err(DataMoverError::InvalidRequest(format!(
            "cannot pass {word:?} to rsync's remote shell"
        )));
    }
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_./=:,+@-".contains(&b))
    {
        Ok(word.to_string())
    } else {
        Ok(format!("'{word}'"))
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[rstest]
    #[case(&["--checksum", "-z", "--bwlimit=1000", "--compress-level=3", "--exclude=*.tmp", "--max-size=10M", "--inplace", "--modify-window=-1"])]
    #[case(&[])]
    fn allowed_options_pass(#[case] opts: &[&str]) {
        let opts: Vec<String> = opts.iter().map(|s| s.to_string()).collect();
        assert_eq!(validate_extra_options(&opts), Ok(()));
    }

    #[rstest]
    #[case("-e")]
    #[case("--rsh=ssh")]
    #[case("--rsync-path=sh -c id")]
    #[case("--files-from=/etc/passwd")]
    #[case("--temp-dir=/tmp")]
    #[case("--partial-dir=/tmp")]
    #[case("--backup-dir=/tmp")]
    #[case("--log-file=/tmp/x")]
    #[case("--write-batch=x")]
    #[case("--read-batch=x")]
    #[case("--only-write-batch=x")]
    #[case("--remove-source-files")]
    #[case("-L")]
    #[case("--copy-links")]
    #[case("-k")]
    #[case("--copy-unsafe-links")]
    #[case("--out-format=%n")]
    #[case("-h")]
    #[case("--progress")]
    #[case("--bwlimit=1000; rm -rf /")]
    #[case("--bwlimit")]
    #[case("--exclude=: .rsync-filter")]
    #[case("--exclude=. /etc/passwd")]
    #[case("--filter=merge /etc/passwd")]
    #[case("--checksum --dry-run")]
    #[case("")]
    fn refused_options_are_named(#[case] opt: &str) {
        let err = validate_extra_options(&[opt.to_string()]).unwrap_err();
        assert!(err.contains(&format!("{opt:?}")), "{err}");
    }

    #[rstest]
    #[case("/var/lib/kubelet/pods/0d6c-11/volumes/kubernetes.io~csi/pvc-1/mount", true)]
    #[case("/data/vol/", true)]
    #[case("relative/path", false)]
    #[case("/", false)]
    #[case("/a//b", false)]
    #[case("/a/../b", false)]
    #[case("/a/./b", false)]
    #[case("/a/..", false)]
    #[case("/a b", false)]
    #[case("/a*", false)]
    #[case("/a\\b", false)]
    #[case("/a\nb", false)]
    #[case("/a;id", false)]
    fn remote_paths_are_checked(#[case] path: &str, #[case] ok: bool) {
        assert_eq!(check_remote_path(path).is_ok(), ok, "{path}");
    }

    #[test]
    fn arguments_carry_the_options() {
        let opts = TransferOptions {
            bandwidth_limit_kib: Some(500),
            exclude: vec!["cache/".into()],
            resumable: true,
            xattrs: true,
            extra_options: vec!["--compress".into()],
            ..Default::default()
        };
        let args = rsync_args(
            &opts,
            Mode::Copy {
                force_checksum: false,
            },
            "bridge --config /x",
            "u@reader:/v/",
            Path::new("/dst"),
        );
        let args: Vec<String> = args.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        for want in [
            "-aAHSx",
            "--numeric-ids",
            "-X",
            "--delete",
            "--partial",
            "--info=progress2",
            "--stats",
            "--bwlimit=500",
            "--timeout=300",
            "--exclude=cache/",
            "--compress",
        ] {
            assert!(args.contains(&want.to_string()), "{want} missing from {args:?}");
        }
        assert_eq!(
            &args[args.len() - 5..],
            ["-e", "bridge --config /x", "--", "u@reader:/v/", "/dst/"]
        );
        let verify = rsync_args(&opts, Mode::VerifyFull, "b", "r", Path::new("/dst/"));
        let verify: Vec<String> = verify.iter().map(|a| a.to_string_lossy().into_owned()).collect();
        assert!(verify.contains(&"--dry-run".to_string()) && verify.contains(&"--checksum".to_string()));
        assert!(!verify.contains(&"--compress".to_string()));
        assert_eq!(verify.last().unwrap(), "/dst/");
    }

    #[test]
    fn rsh_words_are_quoted() {
        assert_eq!(rsh_word("/usr/bin/agent").unwrap(), "/usr/bin/agent");
        assert_eq!(rsh_word("/tmp/a b").unwrap(), "'/tmp/a b'");
        assert!(rsh_word("it's").is_err());
    }
}
