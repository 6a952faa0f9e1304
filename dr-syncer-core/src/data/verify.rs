//! Verification after a copy: reading the itemized differences of a `--checksum --dry-run` pass (full), and
//! choosing, hashing and comparing a random sample of files (sample).
//!
//! The sample's source checksums come from the reader's restricted checksum command
//! ([`CHECKSUM_COMMAND`]): it reads NUL-terminated paths relative to the volume on standard input and
//! answers one line per path, in order: 64 lowercase hex digits (SHA-256), or `!` and a reason.

use std::{
    hash::{BuildHasher, Hasher},
    io::Read,
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
};

use sha2::{Digest, Sha256};

use super::{DataMoverError, io, local::excluded};

/// Prefix of the itemized lines of a verification run.
pub(crate) const VERIFY_PREFIX: &str = "drs-verify:";

/// The reader's checksum command (`dr-syncer-checksum VOLUME_PATH`).
pub const CHECKSUM_COMMAND: &str = "dr-syncer-checksum";

/// Most differences named in an error.
const NAMED: usize = 10;

/// Fail when a verification pass itemized any difference.
pub(crate) fn check_itemized(lines: &[String]) -> Result<(), DataMoverError> {
    let diffs: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix(VERIFY_PREFIX))
        .collect();
    if diffs.is_empty() {
        return Ok(());
    }
    Err(DataMoverError::Verification(format!(
        "{} difference(s) between source and destination by checksum: {}{}",
        diffs.len(),
        diffs[..diffs.len().min(NAMED)].join(", "),
        if diffs.len() > NAMED { ", …" } else { "" }
    )))
}

/// A random sample of `percent` % (at least one) of the regular files under `root`, as relative paths.
pub(crate) fn local_sample(
    root: &Path,
    exclude: &[String],
    percent: u8,
) -> Result<Vec<PathBuf>, DataMoverError> {
    let mut files = Vec::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        let dir = root.join(&rel);
        for entry in std::fs::read_dir(&dir).map_err(io(format!("listing {}", dir.display())))? {
            let entry = entry.map_err(io(format!("listing {}", dir.display())))?;
            let rel_path = rel.join(entry.file_name());
            if excluded(&rel_path, exclude) {
                continue;
            }
            let ty = entry
                .file_type()
                .map_err(io(format!("reading {}", rel_path.display())))?;
            if ty.is_dir() {
                stack.push(rel_path);
            } else if ty.is_file() && !rel_path.as_os_str().as_bytes().contains(&0) {
                files.push(rel_path);
            }
        }
    }
    if files.is_empty() {
        return Ok(files);
    }
    let want = (files.len() * usize::from(percent))
        .div_ceil(100)
        .clamp(1, files.len());
    // A random order: sort by a hash under a random key.
    let state = std::collections::hash_map::RandomState::new();
    let key = |p: &PathBuf| {
        let mut h = state.build_hasher();
        h.write(p.as_os_str().as_bytes());
        h.finish()
    };
    files.sort_by_cached_key(key);
    files.truncate(want);
    Ok(files)
}

/// The checksum command's input: NUL-terminated paths.
pub(crate) fn encode_paths(paths: &[PathBuf]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in paths {
        out.extend_from_slice(p.as_os_str().as_bytes());
        out.push(0);
    }
    out
}

/// SHA-256 of a file, as 64 lowercase hex digits.
pub(crate) fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Compare the reader's answer with the local files; the number of files verified.
pub(crate) fn compare_sample(root: &Path, sample: &[PathBuf], remote: &[u8]) -> Result<u64, DataMoverError> {
    let answers: Vec<&[u8]> = remote.split(|&b| b == b'\n').filter(|l| !l.is_empty()).collect();
    if answers.len() != sample.len() {
        return Err(DataMoverError::Failed {
            message: format!(
                "the reader's checksum command answered {} of {} files",
                answers.len(),
                sample.len()
            ),
            transient: true,
        });
    }
    let mut diffs = Vec::new();
    for (path, answer) in sample.iter().zip(answers) {
        let local = sha256_file(&root.join(path)).map_err(io(format!("hashing {}", path.display())))?;
        match answer.strip_prefix(b"!") {
            Some(reason) => diffs.push(format!(
                "{} ({})",
                path.display(),
                String::from_utf8_lossy(reason).trim()
            )),
            None if answer != local.as_bytes() => diffs.push(path.display().to_string()),
            None => {}
        }
    }
    if diffs.is_empty() {
        return Ok(sample.len() as u64);
    }
    Err(DataMoverError::Verification(format!(
        "{} of {} sampled file(s) differ: {}{}",
        diffs.len(),
        sample.len(),
        diffs[..diffs.len().min(NAMED)].join(", "),
        if diffs.len() > NAMED { ", …" } else { "" }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_random_subsets_of_regular_files() {
        let dir = tempfile::tempdir().unwrap();
        for i in 0..40 {
            let p = dir.path().join(format!("d{}/f{i}", i % 4));
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, format!("{i}")).unwrap();
        }
        std::fs::create_dir_all(dir.path().join("cache")).unwrap();
        std::fs::write(dir.path().join("cache/x"), "x").unwrap();
        std::os::unix::fs::symlink("d0/f0", dir.path().join("link")).unwrap();
        let exclude = vec!["cache/".to_string()];
        let all = local_sample(dir.path(), &exclude, 100).unwrap();
        assert_eq!(all.len(), 40);
        assert!(
            all.iter()
                .all(|p| !p.starts_with("cache") && p != Path::new("link"))
        );
        let some = local_sample(dir.path(), &exclude, 10).unwrap();
        assert_eq!(some.len(), 4);
        let other = local_sample(dir.path(), &exclude, 10).unwrap();
        let third = local_sample(dir.path(), &exclude, 10).unwrap();
        assert!(
            some != other || other != third,
            "three samples of 4 in 40 were identical"
        );
        assert_eq!(local_sample(dir.path(), &exclude, 1).unwrap().len(), 1);

        let hashes: String = all
            .iter()
            .map(|p| format!("{}\n", sha256_file(&dir.path().join(p)).unwrap()))
            .collect();
        assert_eq!(compare_sample(dir.path(), &all, hashes.as_bytes()).unwrap(), 40);
        let mut wrong = hashes.clone().into_bytes();
        wrong[0] = if wrong[0] == b'0' { b'1' } else { b'0' };
        let err = compare_sample(dir.path(), &all, &wrong).unwrap_err();
        assert_eq!(err.kind(), "VerificationFailed");
        assert!(err.to_string().contains(&all[0].display().to_string()), "{err}");
        let err = compare_sample(dir.path(), &all[..1], b"!missing on the reader\n").unwrap_err();
        assert!(err.to_string().contains("missing on the reader"), "{err}");
        assert_eq!(
            compare_sample(dir.path(), &all, b"").unwrap_err().kind(),
            "TransferFailed"
        );
        assert_eq!(
            encode_paths(&all[..1]),
            [all[0].as_os_str().as_bytes(), b"\0"].concat()
        );
    }

    #[test]
    fn itemized_differences_fail_verification() {
        assert!(check_itemized(&["Number of files: 3".into()]).is_ok());
        let lines = vec![
            format!("{VERIFY_PREFIX}>fc.T...... a.txt"),
            format!("{VERIFY_PREFIX}*deleting   extra"),
        ];
        let err = check_itemized(&lines).unwrap_err();
        assert!(
            err.to_string().contains("2 difference(s)") && err.to_string().contains("a.txt"),
            "{err}"
        );
    }
}
