//! The allow-list: which volume paths the reader serves right now.
//!
//! A directory with one file per allowed volume. The file's name is an identifier chosen by whoever
//! grants access (part 2: the agent itself, from the pods and PVCs on its node; e.g.
//! `<pod-uid>_<volume>`), its content the volume's absolute, canonical host path on one line, followed
//! for a transfer's grant by the [`KeyBinding`] lines (`key …`, `not-after …`, `from …`): such an entry
//! is served only to that key, before that time, from those addresses. An entry without a binding (an
//! allow-list kept by hand, without `--grants-dir`) is served to every accepted key. The forced command
//! reads the directory at every login, so a grant or a revocation applies to the next connection; a
//! transfer already running is not interrupted.
//!
//! Writes are atomic (a hidden temporary file renamed into place), and files whose names start with `.`
//! are ignored, so a reader never sees half an entry.

use std::{
    io::Write,
    path::{Path, PathBuf},
};

pub use dr_syncer_core::pvc::KeyBinding;

/// Errors of the allow-list.
#[derive(Debug, thiserror::Error)]
pub enum AllowError {
    /// An entry name is not `[A-Za-z0-9_.-]{1,200}` or starts with `.`.
    #[error("invalid allow-list entry name {0:?}")]
    InvalidName(String),
    /// A path cannot be granted.
    #[error("cannot allow {path}: {message}")]
    InvalidPath {
        /// The path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Reading or writing the directory failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> AllowError {
    move |source| AllowError::Io { context, source }
}

/// One allowed volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowEntry {
    /// The entry's name (its file name).
    pub name: String,
    /// The volume's canonical host path.
    pub path: PathBuf,
    /// Who may read it (a transfer's grant); `None`: every accepted key.
    pub binding: Option<KeyBinding>,
}

/// The allow-list directory.
#[derive(Debug, Clone)]
pub struct AllowList {
    dir: PathBuf,
}

fn check_name(name: &str) -> Result<(), AllowError> {
    let ok = !name.is_empty()
        && name.len() <= 200
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(AllowError::InvalidName(name.to_string()))
    }
}

impl AllowList {
    /// The allow-list kept in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        AllowList { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Allow `path` under `name` to every accepted key (replacing an entry of that name). The path is
    /// resolved to its canonical form and must be a directory.
    ///
    /// # Errors
    /// [`AllowError`].
    pub fn grant(&self, name: &str, path: &Path) -> Result<AllowEntry, AllowError> {
        self.grant_bound(name, path, None)
    }

    /// Allow `path` under `name`, to the key of `binding` only when given (see [`Self::grant`]).
    ///
    /// # Errors
    /// [`AllowError`].
    pub fn grant_bound(
        &self,
        name: &str,
        path: &Path,
        binding: Option<&KeyBinding>,
    ) -> Result<AllowEntry, AllowError> {
        check_name(name)?;
        let canonical = std::fs::canonicalize(path).map_err(|e| AllowError::InvalidPath {
            path: path.into(),
            message: e.to_string(),
        })?;
        if !canonical.is_dir() {
            return Err(AllowError::InvalidPath {
                path: path.into(),
                message: "not a directory".into(),
            });
        }
        let text = canonical.to_str().ok_or_else(|| AllowError::InvalidPath {
            path: path.into(),
            message: "not UTF-8".into(),
        })?;
        if text.contains('\n') {
            return Err(AllowError::InvalidPath {
                path: path.into(),
                message: "contains a newline".into(),
            });
        }
        std::fs::create_dir_all(&self.dir).map_err(io(format!("creating {}", self.dir.display())))?;
        let tmp = self.dir.join(format!(".{name}.{}.tmp", std::process::id()));
        let mut f = std::fs::File::create(&tmp).map_err(io(format!("writing {}", tmp.display())))?;
        let bound = binding.map(KeyBinding::to_lines).unwrap_or_default();
        f.write_all(format!("{text}\n{bound}").as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(io(format!("writing {}", tmp.display())))?;
        std::fs::rename(&tmp, self.dir.join(name))
            .map_err(io(format!("renaming {} into place", tmp.display())))?;
        Ok(AllowEntry {
            name: name.into(),
            path: canonical,
            binding: binding.cloned(),
        })
    }

    /// Remove the entry `name`; whether there was one.
    ///
    /// # Errors
    /// [`AllowError`].
    pub fn revoke(&self, name: &str) -> Result<bool, AllowError> {
        check_name(name)?;
        match std::fs::remove_file(self.dir.join(name)) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(AllowError::Io {
                context: format!("removing {name}"),
                source: e,
            }),
        }
    }

    /// The current entries (a missing directory is an empty list). Hidden files, invalid names and
    /// entries whose content is not one absolute path are skipped.
    ///
    /// # Errors
    /// [`AllowError::Io`] when the directory cannot be read.
    pub fn entries(&self) -> Result<Vec<AllowEntry>, AllowError> {
        let dir = match std::fs::read_dir(&self.dir) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(AllowError::Io {
                    context: format!("listing {}", self.dir.display()),
                    source: e,
                });
            }
        };
        let mut out = Vec::new();
        for entry in dir {
            let entry = entry.map_err(io(format!("listing {}", self.dir.display())))?;
            let Some(name) = entry.file_name().to_str().map(String::from) else {
                continue;
            };
            if check_name(&name).is_err() || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let mut lines = text.lines().filter(|l| !l.trim().is_empty());
            let Some(line) = lines.next() else {
                continue;
            };
            let rest: Vec<&str> = lines.collect();
            // A binding that does not parse leaves the entry out: never served to anyone.
            let binding = if rest.is_empty() {
                None
            } else {
                match KeyBinding::parse_lines(rest) {
                    Ok(b) => Some(b),
                    Err(_) => continue,
                }
            };
            let path = PathBuf::from(line.trim_end_matches('/'));
            if path.is_absolute() && path != Path::new("/") {
                out.push(AllowEntry { name, path, binding });
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_and_revocations_are_seen_by_the_next_reader() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        std::os::unix::fs::symlink(&vol, tmp.path().join("link")).unwrap();
        let list = AllowList::new(tmp.path().join("allow"));
        assert_eq!(list.entries().unwrap(), vec![]);

        let entry = list.grant("uid_data", &tmp.path().join("link")).unwrap();
        assert_eq!(entry.path, vol.canonicalize().unwrap(), "stored canonical");
        assert_eq!(list.entries().unwrap(), vec![entry.clone()]);
        assert_eq!(
            std::fs::read_to_string(list.dir().join("uid_data")).unwrap(),
            format!("{}\n", entry.path.display())
        );

        // Junk next to the entries is ignored.
        std::fs::write(list.dir().join(".half-written"), "/x\n").unwrap();
        std::fs::write(list.dir().join("relative"), "x/y\n").unwrap();
        std::fs::write(list.dir().join("two-lines"), "/a\n/b\n").unwrap();
        std::fs::write(list.dir().join("root"), "/\n").unwrap();
        std::fs::create_dir(list.dir().join("subdir")).unwrap();
        assert_eq!(list.entries().unwrap(), vec![entry]);

        assert!(list.revoke("uid_data").unwrap());
        assert!(!list.revoke("uid_data").unwrap());
        assert!(list.entries().unwrap().is_empty());

        for bad in ["", ".hidden", "a/b", "..", "a b"] {
            assert!(
                matches!(list.grant(bad, &vol), Err(AllowError::InvalidName(_))),
                "{bad:?}"
            );
        }
        let file = tmp.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(matches!(
            list.grant("f", &file),
            Err(AllowError::InvalidPath { .. })
        ));
        assert!(matches!(
            list.grant("m", &tmp.path().join("missing")),
            Err(AllowError::InvalidPath { .. })
        ));
    }

    #[test]
    fn a_bound_entry_keeps_its_binding_and_a_broken_one_is_never_served() {
        let tmp = tempfile::tempdir().unwrap();
        let vol = tmp.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        let list = AllowList::new(tmp.path().join("allow"));
        let binding = KeyBinding {
            key: dr_syncer_core::keys::KeyPair::generate_ed25519("t")
                .unwrap()
                .public_key(),
            not_after: std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000),
            from: vec!["10.0.0.21".into()],
        };
        let entry = list.grant_bound("ns.data", &vol, Some(&binding)).unwrap();
        assert_eq!(entry.binding.as_ref(), Some(&binding));
        assert_eq!(list.entries().unwrap(), vec![entry]);
        let text = std::fs::read_to_string(list.dir().join("ns.data")).unwrap();
        std::fs::write(list.dir().join("ns.data"), text.replace("not-after", "until")).unwrap();
        assert_eq!(
            list.entries().unwrap(),
            vec![],
            "an entry whose binding does not parse"
        );
    }
}
