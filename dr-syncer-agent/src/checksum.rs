//! The reader's checksum command (`dr-syncer-checksum VOLUME`), used by sample verification: reads
//! NUL-terminated paths relative to the volume from standard input and answers, in order, one line per
//! path: the file's SHA-256 as 64 lowercase hex digits, or `!` and a reason. Files are opened with
//! [`crate::beneath`], so no symlink is followed; the volume is only read.

use std::{
    fs::File,
    io::{Read, Write},
    os::fd::OwnedFd,
};

use sha2::{Digest, Sha256};

use crate::beneath::{Leaf, open_beneath};

/// Most input read (paths).
const MAX_INPUT: u64 = 64 * 1024 * 1024;
/// Longest path accepted.
const MAX_PATH: usize = 4096;

fn check(rel: &[u8]) -> Result<(), &'static str> {
    if rel.is_empty() || rel.len() > MAX_PATH {
        return Err("invalid path length");
    }
    if rel.starts_with(b"/") {
        return Err("absolute path");
    }
    if rel
        .split(|&b| b == b'/')
        .any(|c| c.is_empty() || c == b"." || c == b"..")
    {
        return Err("empty, . or .. component");
    }
    Ok(())
}

fn hash(root: &OwnedFd, rel: &[u8]) -> Result<String, String> {
    check(rel).map_err(String::from)?;
    let mut file = File::from(open_beneath(root, rel, Leaf::ReadFile).map_err(|r| r.0)?);
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(hasher.finalize().iter().map(|b| format!("{b:02x}")).collect())
}

/// Answer the checksum requests on `input` into `output`.
///
/// # Errors
/// IO errors of `input` and `output` (a file that cannot be read is an answer, not an error).
pub fn serve(root: &OwnedFd, input: impl Read, mut output: impl Write) -> std::io::Result<()> {
    let mut data = Vec::new();
    input.take(MAX_INPUT).read_to_end(&mut data)?;
    for rel in data.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        match hash(root, rel) {
            Ok(hex) => writeln!(output, "{hex}")?,
            Err(reason) => writeln!(output, "!{}", reason.replace('\n', " "))?,
        }
    }
    output.flush()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::beneath::open_root;

    #[test]
    fn answers_one_line_per_path_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().canonicalize().unwrap().join("vol");
        std::fs::create_dir_all(vol.join("d")).unwrap();
        std::fs::write(vol.join("d/a"), "hello").unwrap();
        std::fs::write(tmp.path().join("secret"), "s").unwrap();
        std::os::unix::fs::symlink(tmp.path().join("secret"), vol.join("link")).unwrap();
        let root = open_root(&vol).unwrap();
        let input = b"d/a\0link\0../secret\0/etc/passwd\0missing\0d\0d//a\0";
        let mut out = Vec::new();
        serve(&root, &input[..], &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 7, "{out}");
        assert_eq!(
            lines[0],
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert!(lines[1..].iter().all(|l| l.starts_with('!')), "{out}");
        assert!(
            lines[1].contains("not a regular file") || lines[1].contains("symlink"),
            "{out}"
        );
        assert!(!out.contains("s\n"));
    }
}
