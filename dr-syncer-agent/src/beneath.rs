//! Opening paths without following symlinks: the reader's defence against a volume (or the path to it)
//! whose components were replaced by symlinks pointing elsewhere.
//!
//! Every component is opened relative to the directory opened before it with `O_NOFOLLOW`, so a
//! symlink anywhere on the way is an error rather than a detour, and what was checked is what is used:
//! the forced command hands rsync the opened volume directory as its working directory.

use std::{
    ffi::OsStr,
    fs::File,
    os::{fd::OwnedFd, unix::ffi::OsStrExt},
    path::Path,
};

use nix::{
    errno::Errno,
    fcntl::{OFlag, openat},
    sys::stat::Mode,
};

use crate::forced::Refusal;

const DIR_FLAGS: OFlag = OFlag::O_PATH
    .union(OFlag::O_DIRECTORY)
    .union(OFlag::O_NOFOLLOW)
    .union(OFlag::O_CLOEXEC);

fn explain(errno: Errno, shown: &str) -> Refusal {
    Refusal(match errno {
        Errno::ENOENT => format!("{shown} does not exist"),
        Errno::ENOTDIR | Errno::ELOOP => format!("{shown} is a symlink or not a directory"),
        other => format!("{shown}: {}", other.desc()),
    })
}

fn components(rel: &[u8]) -> impl Iterator<Item = &[u8]> {
    rel.split(|&b| b == b'/').filter(|c| !c.is_empty() && *c != b".")
}

/// Open an absolute directory path, refusing a symlink at any of its components.
///
/// # Errors
/// [`Refusal`] naming the first component that is missing, a symlink or not a directory.
pub fn open_root(path: &Path) -> Result<OwnedFd, Refusal> {
    if !path.is_absolute() {
        return Err(Refusal(format!("{} is not absolute", path.display())));
    }
    let mut dir = File::open("/")
        .map(OwnedFd::from)
        .map_err(|e| Refusal(format!("/: {e}")))?;
    let mut shown = String::new();
    for comp in components(path.as_os_str().as_bytes()) {
        if comp == b".." {
            return Err(Refusal(format!("{} contains ..", path.display())));
        }
        shown.push('/');
        shown.push_str(&OsStr::from_bytes(comp).to_string_lossy());
        dir = openat(&dir, comp, DIR_FLAGS, Mode::empty()).map_err(|e| explain(e, &shown))?;
    }
    Ok(dir)
}

/// What [`open_beneath`] opens last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    /// Anything but a symlink (a path handle; `O_PATH`).
    Any,
    /// A directory.
    Directory,
    /// A regular file, opened for reading.
    ReadFile,
}

/// Open `rel` (relative, `/`-separated, no `..`) beneath the directory `root`, following no symlink.
///
/// # Errors
/// [`Refusal`] for a missing component, a symlink, `..`, or a leaf of the wrong kind.
pub fn open_beneath(root: &OwnedFd, rel: &[u8], leaf: Leaf) -> Result<OwnedFd, Refusal> {
    let shown = String::from_utf8_lossy(rel).into_owned();
    let comps: Vec<&[u8]> = components(rel).collect();
    if comps.contains(&&b".."[..]) {
        return Err(Refusal(format!("{shown} contains ..")));
    }
    let Some((last, dirs)) = comps.split_last() else {
        // The root itself.
        return match leaf {
            Leaf::ReadFile => Err(Refusal(format!("{shown} is not a regular file"))),
            _ => openat(root, ".", DIR_FLAGS, Mode::empty()).map_err(|e| explain(e, &shown)),
        };
    };
    let mut dir: Option<OwnedFd> = None;
    for comp in dirs {
        let parent = dir.as_ref().unwrap_or(root);
        dir = Some(openat(parent, *comp, DIR_FLAGS, Mode::empty()).map_err(|e| explain(e, &shown))?);
    }
    let parent = dir.as_ref().unwrap_or(root);
    let flags = match leaf {
        Leaf::Any => OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Leaf::Directory => DIR_FLAGS,
        Leaf::ReadFile => OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
    };
    let fd = openat(parent, *last, flags, Mode::empty()).map_err(|e| explain(e, &shown))?;
    let file = File::from(fd);
    let meta = file.metadata().map_err(|e| Refusal(format!("{shown}: {e}")))?;
    let kind_ok = match leaf {
        Leaf::Any => !meta.file_type().is_symlink(),
        Leaf::Directory => meta.is_dir(),
        Leaf::ReadFile => meta.is_file(),
    };
    if !kind_ok {
        return Err(Refusal(match leaf {
            Leaf::ReadFile => format!("{shown} is not a regular file"),
            _ => format!("{shown} is a symlink or not a directory"),
        }));
    }
    Ok(OwnedFd::from(file))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::symlink;

    use super::*;

    #[test]
    fn symlinks_are_never_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let vol = base.join("vol");
        std::fs::create_dir_all(vol.join("dir/sub")).unwrap();
        std::fs::write(vol.join("dir/file"), "x").unwrap();
        std::fs::create_dir(base.join("outside")).unwrap();
        std::fs::write(base.join("outside/secret"), "s").unwrap();
        symlink(base.join("outside"), vol.join("escape")).unwrap();
        symlink("dir", vol.join("inner-link")).unwrap();
        symlink("file", vol.join("dir/file-link")).unwrap();
        symlink(&vol, base.join("vol-link")).unwrap();

        let root = open_root(&vol).unwrap();
        assert!(
            open_root(&base.join("vol-link"))
                .unwrap_err()
                .0
                .contains("symlink")
        );
        assert!(
            open_root(&base.join("vol-link/dir"))
                .unwrap_err()
                .0
                .contains("vol-link")
        );
        assert!(
            open_root(&base.join("missing"))
                .unwrap_err()
                .0
                .contains("does not exist")
        );
        assert!(open_root(Path::new("relative")).is_err());
        assert!(open_root(&vol.join("dir/file")).is_err(), "a file is not a root");

        assert!(open_beneath(&root, b"dir/sub/", Leaf::Directory).is_ok());
        assert!(open_beneath(&root, b"", Leaf::Directory).is_ok());
        assert!(open_beneath(&root, b"./", Leaf::Any).is_ok());
        assert!(open_beneath(&root, b"dir/file", Leaf::Any).is_ok());
        let mut content = String::new();
        std::io::Read::read_to_string(
            &mut File::from(open_beneath(&root, b"dir/file", Leaf::ReadFile).unwrap()),
            &mut content,
        )
        .unwrap();
        assert_eq!(content, "x");

        for (rel, leaf) in [
            (&b"escape/secret"[..], Leaf::ReadFile),
            (b"escape/", Leaf::Directory),
            (b"escape", Leaf::Any),
            (b"inner-link/file", Leaf::ReadFile),
            (b"dir/file-link", Leaf::ReadFile),
            (b"dir/file-link", Leaf::Any),
            (b"../vol/dir/file", Leaf::ReadFile),
            (b"dir/../dir/file", Leaf::ReadFile),
            (b"dir", Leaf::ReadFile),
            (b"dir/file", Leaf::Directory),
            (b"missing", Leaf::Any),
            (b"", Leaf::ReadFile),
        ] {
            assert!(
                open_beneath(&root, rel, leaf).is_err(),
                "{} ({leaf:?}) must be refused",
                String::from_utf8_lossy(rel)
            );
        }
    }
}
