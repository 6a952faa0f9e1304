//! A test tree with everything a volume may hold, and an exact comparison of two trees.

use std::{
    collections::BTreeMap,
    ffi::OsString,
    fs::File,
    io::{Seek, SeekFrom, Write},
    os::unix::{
        ffi::OsStrExt,
        fs::{MetadataExt, PermissionsExt, symlink},
    },
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use sha2::{Digest, Sha256};

use super::random_bytes;

/// Size of the fixture's large file.
pub const LARGE: usize = 24 * 1024 * 1024;
/// Apparent size of the sparse file.
pub const SPARSE: u64 = 64 * 1024 * 1024;

/// Set an entry's modification time (any file type: a FIFO is not opened, a symlink not followed).
pub fn set_mtime(path: &Path, secs: u64, nanos: u32) {
    use nix::sys::{
        stat::{UtimensatFlags, utimensat},
        time::TimeSpec,
    };
    let t = TimeSpec::from_duration(Duration::new(secs, nanos));
    utimensat(
        nix::fcntl::AT_FDCWD,
        path,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .unwrap();
}

fn chown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

fn run(cmd: &str, args: &[&str]) {
    let out = Command::new(cmd).args(args).output().expect(cmd);
    assert!(
        out.status.success(),
        "{cmd} {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Fill `root` with: nested directories with their own modes and owners (numeric ids that exist on no
/// system), a setgid directory, files with modes 0600/0640/0755/04755 and chosen mtimes (with
/// nanoseconds), an empty file and an empty directory, hard links (a group of three and one of two,
/// across directories), relative, absolute, dangling and directory symlinks (owned by another user),
/// a FIFO, a sparse file (64 MiB apparent, 2 MiB of data), a large random file, a hundred small files,
/// a file with a POSIX ACL, a file with an extended attribute, and a name with spaces and UTF-8.
pub fn build(root: &Path) {
    let p = |rel: &str| root.join(rel);
    for (dir, mode) in [
        ("docs", 0o750),
        ("docs/deep/deeper", 0o700),
        ("shared", 0o2775),
        ("empty", 0o755),
    ] {
        std::fs::create_dir_all(p(dir)).unwrap();
        std::fs::set_permissions(p(dir), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::create_dir_all(p("small")).unwrap();
    for (file, mode, uid, gid) in [
        ("docs/private.txt", 0o600, 1234, 5678),
        ("docs/readable.txt", 0o640, 1000, 1000),
        ("docs/deep/deeper/tool.sh", 0o755, 0, 0),
        ("setuid-bin", 0o4755, 0, 0),
        ("shared/group-file", 0o664, 2000, 3000),
    ] {
        std::fs::write(p(file), format!("content of {file}\n").repeat(50)).unwrap();
        chown(&p(file), uid, gid);
        // chown clears the setuid bit: set the mode afterwards.
        std::fs::set_permissions(p(file), std::fs::Permissions::from_mode(mode)).unwrap();
    }
    std::fs::write(p("empty-file"), "").unwrap();
    std::fs::write(p("naïve name with spaces.txt"), "ünïcödé\n").unwrap();
    for i in 0..100 {
        std::fs::write(
            p(&format!("small/f{i:03}")),
            random_bytes(i, 100 + (i as usize * 37) % 4000),
        )
        .unwrap();
    }
    // Hard links.
    std::fs::write(p("docs/linked-a"), "one inode, three names\n").unwrap();
    std::fs::hard_link(p("docs/linked-a"), p("shared/linked-b")).unwrap();
    std::fs::hard_link(p("docs/linked-a"), p("linked-c")).unwrap();
    std::fs::write(p("pair-1"), "two names\n").unwrap();
    std::fs::hard_link(p("pair-1"), p("small/pair-2")).unwrap();
    // Symlinks.
    symlink("docs/readable.txt", p("rel-link")).unwrap();
    symlink("/etc/hostname-that-does-not-exist", p("abs-dangling")).unwrap();
    symlink("docs/deep", p("dir-link")).unwrap();
    symlink("../../outside", p("docs/deep/up-link")).unwrap();
    chown(&p("rel-link"), 4321, 8765);
    // A FIFO.
    nix::unistd::mkfifo(&p("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o640)).unwrap();
    // Made long before the copy, as in a live volume. rsync compares a special file's time to the
    // second: a copy made within the same second as the source's time would keep its own sub-second
    // part (unless `--modify-window=-1` is given, which the transfer tests cover separately).
    set_mtime(&p("fifo"), 1_550_000_000, 246_813_579);
    // Sparse: 64 MiB apparent, data at 0 and in the middle.
    let mut f = File::create(p("sparse.img")).unwrap();
    f.write_all(&random_bytes(7, 1 << 20)).unwrap();
    f.seek(SeekFrom::Start(SPARSE / 2)).unwrap();
    f.write_all(&random_bytes(8, 1 << 20)).unwrap();
    f.set_len(SPARSE).unwrap();
    drop(f);
    // Large and incompressible.
    std::fs::write(p("large.bin"), random_bytes(9, LARGE)).unwrap();
    // ACL and xattr.
    std::fs::write(p("acl-file"), "acl\n").unwrap();
    run(
        "setfacl",
        &["-m", "u:1234:rw,g:5678:r", &p("acl-file").display().to_string()],
    );
    std::fs::write(p("xattr-file"), "xattr\n").unwrap();
    run(
        "setfattr",
        &[
            "-n",
            "user.dr-syncer",
            "-v",
            "kept",
            &p("xattr-file").display().to_string(),
        ],
    );
    // Times, with nanoseconds; directories last (writing into them changes theirs).
    let mut files: Vec<PathBuf> = Vec::new();
    walk(root, Path::new(""), &mut |rel, meta| {
        if meta.is_file() {
            files.push(rel.to_path_buf());
        }
    });
    for (i, rel) in files.iter().enumerate() {
        set_mtime(&root.join(rel), 1_600_000_000 + i as u64 * 1000, 123_456_789);
    }
    for (i, dir) in [
        "docs/deep/deeper",
        "docs/deep",
        "docs",
        "shared",
        "empty",
        "small",
        "",
    ]
    .iter()
    .enumerate()
    {
        set_mtime(&p(dir), 1_500_000_000 + i as u64, 987_654_321);
    }
}

fn walk(root: &Path, rel: &Path, f: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    let dir = root.join(rel);
    let mut entries: Vec<OsString> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    entries.sort();
    for name in entries {
        let rel_path = rel.join(&name);
        let meta = std::fs::symlink_metadata(root.join(&rel_path)).unwrap();
        f(&rel_path, &meta);
        if meta.is_dir() {
            walk(root, &rel_path, f);
        }
    }
}

/// What is compared of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: (i64, i64),
    pub size: u64,
    pub sha256: Option<String>,
    pub target: Option<PathBuf>,
    /// First path (in walk order) of the entry's hard-link group.
    pub hardlink_group: Option<PathBuf>,
    pub acl: Option<String>,
    pub xattr: Option<String>,
}

/// A tree's entries by relative path, and the allocated blocks of its files.
pub struct Snapshot {
    pub entries: BTreeMap<PathBuf, Entry>,
    pub blocks: BTreeMap<PathBuf, u64>,
}

/// Extended ACL entries (`getfacl --skip-base`) of every file and directory, by relative path.
fn acls(root: &Path) -> BTreeMap<PathBuf, String> {
    let out = Command::new("getfacl")
        .args(["-R", "-P", "--numeric", "--skip-base", "--absolute-names", "."])
        .current_dir(root)
        .output()
        .expect("getfacl");
    parse_dump(&out.stdout, "# file: ")
}

/// `user.` extended attributes (`getfattr -d`) of every entry, by relative path.
fn xattrs(root: &Path) -> BTreeMap<PathBuf, String> {
    let out = Command::new("getfattr")
        .args(["-R", "-P", "-d", "-m", "^user\\.", "--absolute-names", "."])
        .current_dir(root)
        .output()
        .expect("getfattr");
    parse_dump(&out.stdout, "# file: ")
}

/// Blocks of `# file: PATH` followed by lines, as the attr tools print them.
fn parse_dump(text: &[u8], header: &str) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    for block in String::from_utf8_lossy(text).split("\n\n") {
        let mut lines = block.lines().filter(|l| !l.is_empty());
        let Some(path) = lines.next().and_then(|l| l.strip_prefix(header)) else {
            continue;
        };
        let rest: Vec<&str> = lines.filter(|l| !l.starts_with('#')).collect();
        if !rest.is_empty() {
            let rel = path.strip_prefix("./").unwrap_or(path);
            out.insert(
                PathBuf::from(if rel.is_empty() { "." } else { rel }),
                rest.join("\n"),
            );
        }
    }
    out
}

/// Snapshot a tree (the root directory's own attributes under `.`).
pub fn snapshot(root: &Path, with_attrs: bool) -> Snapshot {
    let mut entries = BTreeMap::new();
    let mut blocks = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    let (acl_map, xattr_map) = if with_attrs {
        (acls(root), xattrs(root))
    } else {
        Default::default()
    };
    let mut add = |rel: &Path, meta: &std::fs::Metadata| {
        let path = root.join(rel);
        let ft = meta.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_file() {
            "file"
        } else {
            "special"
        };
        let sha256 = ft.is_file().then(|| {
            let mut h = Sha256::new();
            h.update(std::fs::read(&path).unwrap());
            h.finalize().iter().map(|b| format!("{b:02x}")).collect()
        });
        let hardlink_group = (ft.is_file() && meta.nlink() > 1).then(|| {
            inodes
                .entry((meta.dev(), meta.ino()))
                .or_insert_with(|| rel.to_path_buf())
                .clone()
        });
        if ft.is_file() {
            blocks.insert(rel.to_path_buf(), meta.blocks());
        }
        let plain = ft.is_file() || ft.is_dir();
        entries.insert(
            rel.to_path_buf(),
            Entry {
                kind,
                mode: meta.mode(),
                uid: meta.uid(),
                gid: meta.gid(),
                // rsync compares times to the second (`--modify-window=0`). When it deletes entries of a
                // directory in the same second as that directory changed on the source, the copy keeps
                // the deletion's sub-second time (and later runs see the same second): directories are
                // compared to the second, files and everything else exactly.
                mtime: match kind {
                    "symlink" => (0, 0),
                    "dir" => (meta.mtime(), 0),
                    _ => (meta.mtime(), meta.mtime_nsec()),
                },
                size: if ft.is_dir() { 0 } else { meta.size() },
                sha256,
                target: ft.is_symlink().then(|| std::fs::read_link(&path).unwrap()),
                hardlink_group,
                acl: plain.then(|| acl_map.get(rel).cloned()).flatten(),
                xattr: plain.then(|| xattr_map.get(rel).cloned()).flatten(),
            },
        );
    };
    add(Path::new("."), &std::fs::symlink_metadata(root).unwrap());
    walk(root, Path::new(""), &mut add);
    Snapshot { entries, blocks }
}

/// Assert that two trees are identical in everything [`Entry`] holds.
pub fn assert_same(source: &Path, dest: &Path, with_attrs: bool) {
    let (a, b) = (snapshot(source, with_attrs), snapshot(dest, with_attrs));
    let mut problems = Vec::new();
    for (path, entry) in &a.entries {
        match b.entries.get(path) {
            None => problems.push(format!("missing: {}", path.display())),
            Some(other) if other != entry => problems.push(format!(
                "differs: {}\n  source {entry:?}\n  dest   {other:?}",
                path.display()
            )),
            Some(_) => {}
        }
    }
    for path in b.entries.keys() {
        if !a.entries.contains_key(path) {
            problems.push(format!("extra: {}", path.display()));
        }
    }
    assert!(problems.is_empty(), "trees differ:\n{}", problems.join("\n"));
}

/// Bytes the file occupies on disk.
pub fn allocated(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

/// A name from bytes (test helper).
pub fn name(bytes: &[u8]) -> PathBuf {
    PathBuf::from(std::ffi::OsStr::from_bytes(bytes))
}
