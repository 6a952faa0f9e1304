//! A volume's file count and size, for the wiped-source brake.
//!
//! PVC data is mirrored, deletions included — except from a source that looks wiped: a production
//! volume that is empty, or nearly empty, while its DR copy is not is far more likely an accident (a
//! re-created claim, a bad restore, `rm -rf`) than something to mirror, and the DR copy may be the only
//! copy left. Before a transfer the mover asks the reader for the source's usage
//! (`dr-syncer-usage PATH`, served by the forced command) and counts its own destination; a source that
//! [`looks_wiped`] is not copied unless the mover is told to (`--allow-wiped-source`).

use std::{
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
};

/// The request the reader answers with a volume's [`Usage`].
pub const USAGE_COMMAND: &str = "dr-syncer-usage";

/// Files (everything but directories) and bytes of a volume.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Entries other than directories (files, symlinks, devices, FIFOs).
    pub files: u64,
    /// Bytes of the regular files.
    pub bytes: u64,
}

impl Usage {
    /// The reader's reply: `files=N bytes=B`.
    pub fn to_reply(self) -> String {
        format!("files={} bytes={}", self.files, self.bytes)
    }

    /// Parse a reply (`None` when it is not one).
    pub fn parse(reply: &str) -> Option<Usage> {
        let mut files = None;
        let mut bytes = None;
        for word in reply.split_whitespace() {
            match word.split_once('=') {
                Some(("files", v)) => files = v.parse().ok(),
                Some(("bytes", v)) => bytes = v.parse().ok(),
                _ => {}
            }
        }
        Some(Usage {
            files: files?,
            bytes: bytes?,
        })
    }
}

/// Count `dir`'s files and bytes: symlinks are not followed, other filesystems not entered (as rsync's
/// `-x`), and the top-level `lost+found` (which a freshly made filesystem has) is left out.
///
/// # Errors
/// Reading a directory failed.
pub fn count(dir: &Path) -> std::io::Result<Usage> {
    let dev = std::fs::metadata(dir)?.dev(); // (the root may be a descriptor's /proc link)
    let mut usage = Usage::default();
    let mut stack: Vec<PathBuf> = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d)? {
            let entry = entry?;
            if d == dir && entry.file_name() == "lost+found" {
                continue;
            }
            let meta = entry.metadata()?; // (of the entry itself: DirEntry::metadata does not follow)
            if meta.is_dir() {
                if meta.dev() == dev {
                    stack.push(entry.path());
                }
            } else {
                usage.files += 1;
                if meta.is_file() {
                    usage.bytes += meta.len();
                }
            }
        }
    }
    Ok(usage)
}

/// Whether a source looks wiped next to its DR copy: the source is empty while the copy is not, or it
/// holds less than 1 % of the copy's files (of a copy of at least 100 files) or of its bytes (of a copy
/// of at least 1 MiB).
pub fn looks_wiped(source: Usage, copy: Usage) -> bool {
    if copy.files == 0 {
        return false;
    }
    source.files == 0
        || (copy.files >= 100 && source.files * 100 < copy.files)
        || (copy.bytes >= 1 << 20 && source.bytes * 100 < copy.bytes)
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn u(files: u64, bytes: u64) -> Usage {
        Usage { files, bytes }
    }

    #[rstest]
    #[case::both_empty(u(0, 0), u(0, 0), false)]
    #[case::first_copy(u(10, 100), u(0, 0), false)]
    #[case::emptied(u(0, 0), u(3, 10), true)]
    #[case::a_few_left_of_many(u(5, 500), u(1000, 100_000), true)]
    #[case::truncated(u(1000, 10), u(1000, 50 << 20), true)]
    #[case::ordinary_deletions(u(600, 60_000), u(1000, 100_000), false)]
    #[case::small_copy_few_left(u(1, 10), u(50, 500), false)]
    fn wiped(#[case] source: Usage, #[case] copy: Usage, #[case] want: bool) {
        assert_eq!(looks_wiped(source, copy), want);
    }

    #[test]
    fn counting_skips_lost_and_found_and_symlinked_dirs_and_the_reply_round_trips() {
        let tmp = tempfile::tempdir().unwrap();
        let d = tmp.path();
        std::fs::create_dir_all(d.join("lost+found")).unwrap();
        std::fs::write(d.join("lost+found/x"), "ignored").unwrap();
        std::fs::create_dir_all(d.join("a/b")).unwrap();
        std::fs::write(d.join("a/b/f"), "12345").unwrap();
        std::fs::write(d.join("g"), "12").unwrap();
        std::os::unix::fs::symlink("/", d.join("root-link")).unwrap();
        let usage = count(d).unwrap();
        assert_eq!(usage, u(3, 7));
        assert_eq!(Usage::parse(&usage.to_reply()), Some(usage));
        assert_eq!(Usage::parse("dr-syncer-agent ok"), None);
    }
}
