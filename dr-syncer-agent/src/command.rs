//! `dr-syncer-agent ssh-command`: the forced command every login to the reader runs.
//!
//! It reads the allowed volumes — those a transfer's grant binds to the key this login used (sshd's
//! `ExposeAuthInfo` file, `SSH_USER_AUTH`), before the grant's expiry, from the grant's addresses
//! (`SSH_CONNECTION`), and any entry kept by hand without a binding — checks `SSH_ORIGINAL_COMMAND`
//! ([`crate::forced`]), opens the volume and
//! the requested paths without following symlinks ([`crate::beneath`]), makes the opened volume its
//! working directory and replaces itself with `rsync --server --sender` on paths relative to it (with
//! `--confine-root` when the installed rsync has it), with a clean environment. Refusals go to the
//! client's standard error and exit with [`REFUSED_EXIT_CODE`]; every decision is appended to the audit
//! log as one JSON line.

use std::{
    io::Write,
    os::{
        fd::AsRawFd,
        unix::{ffi::OsStrExt, process::CommandExt},
    },
    path::{Path, PathBuf},
    time::SystemTime,
};

use dr_syncer_core::{data::REFUSED_EXIT_CODE, keys::PublicKey};

use crate::{
    allow::{AllowEntry, AllowList},
    beneath::{Leaf, open_beneath, open_root},
    forced::{self, Refusal, Request},
};

/// Settings of the forced command (the agent's `serve` writes them into the sshd configuration).
#[derive(Debug, Clone, clap::Args)]
pub struct CommandArgs {
    /// Directory of allowed volumes.
    #[arg(long)]
    pub allow_dir: PathBuf,
    /// Only volumes under this directory are ever served (the kubelet root), whatever the allow-list says.
    #[arg(long)]
    pub volume_root: PathBuf,
    /// A directory below which hostPath volumes are served too (a mounted `--host-path-prefix` of the
    /// agent; repeatable).
    #[arg(long = "host-path-root")]
    pub host_path_roots: Vec<PathBuf>,
    /// rsync binary.
    #[arg(long, default_value = "/usr/bin/rsync")]
    pub rsync: PathBuf,
    /// Pass `--confine-root=VOLUME` to rsync (rsync ≥ 3.5.0).
    #[arg(long)]
    pub confine_root: bool,
    /// Run rsync as this `UID:GID` instead of the login user.
    #[arg(long, value_parser = parse_run_as)]
    pub run_as: Option<(u32, u32)>,
    /// Append one JSON line per request to this file.
    #[arg(long)]
    pub audit_log: Option<PathBuf>,
    /// Serve only allow-list entries bound to a transfer's key (the agent keeps its allow-list from
    /// grants): an entry written some other way is served to no one.
    #[arg(long)]
    pub require_binding: bool,
}

/// Parse `UID:GID`.
pub fn parse_run_as(s: &str) -> Result<(u32, u32), String> {
    let (u, g) = s.split_once(':').ok_or("expected UID:GID")?;
    Ok((
        u.parse().map_err(|_| format!("invalid uid {u:?}"))?,
        g.parse().map_err(|_| format!("invalid gid {g:?}"))?,
    ))
}

/// Who logged in: the key sshd accepted and the client's address.
#[derive(Debug, Clone, Default)]
pub struct Login {
    /// The public key of the login (`None` when sshd did not say, or named more than one key).
    pub key: Option<PublicKey>,
    /// The client's IP address.
    pub client: Option<String>,
}

impl Login {
    /// From sshd's environment: `SSH_USER_AUTH` (the file `ExposeAuthInfo yes` writes) and
    /// `SSH_CONNECTION`.
    pub fn from_env() -> Self {
        let key = std::env::var_os("SSH_USER_AUTH")
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|text| Self::key_of(&text));
        let client = std::env::var("SSH_CONNECTION")
            .ok()
            .and_then(|c| c.split_whitespace().next().map(str::to_string));
        Login { key, client }
    }

    /// The key named by an `ExposeAuthInfo` file (`publickey <type> <base64>` lines): `None` unless
    /// every `publickey` line names the same key.
    pub fn key_of(auth_info: &str) -> Option<PublicKey> {
        let mut found: Option<PublicKey> = None;
        for line in auth_info.lines() {
            let Some(rest) = line.strip_prefix("publickey ") else {
                continue;
            };
            let key = PublicKey::parse(rest.trim()).ok()?;
            match &found {
                Some(k) if k.blob() != key.blob() => return None,
                Some(_) => {}
                None => found = Some(key),
            }
        }
        found
    }

    /// Whether this login may read `entry`: an entry without a binding is served to every accepted key
    /// (unless `require_binding`); a transfer's entry only to its key, before its expiry, from its
    /// addresses.
    pub fn may_read(&self, entry: &AllowEntry, now: SystemTime, require_binding: bool) -> bool {
        match &entry.binding {
            None => !require_binding,
            Some(b) => self
                .key
                .as_ref()
                .is_some_and(|k| b.admits(k, self.client.as_deref(), now)),
        }
    }
}

/// The allowed volumes `login` may read.
#[cfg(test)]
fn allowed_roots(args: &CommandArgs, login: &Login) -> Result<Vec<PathBuf>, Refusal> {
    Ok(readable(args, login, servable_entries(args)?)
        .into_iter()
        .map(|e| e.path)
        .collect())
}

/// The allow-list entries whose volumes lie under the volume root and may be served at all.
fn servable_entries(args: &CommandArgs) -> Result<Vec<AllowEntry>, Refusal> {
    let base = std::fs::canonicalize(&args.volume_root)
        .map_err(|e| Refusal(format!("volume root {}: {e}", args.volume_root.display())))?;
    let entries = AllowList::new(&args.allow_dir)
        .entries()
        .map_err(|e| Refusal(format!("reading the allow-list: {e}")))?;
    // hostPath prefixes that exist (a missing one serves nothing).
    let host_roots: Vec<PathBuf> = args
        .host_path_roots
        .iter()
        .filter_map(|r| std::fs::canonicalize(r).ok())
        .collect();
    let below = |path: &Path, root: &Path| path.starts_with(root) && path != root;
    Ok(entries
        .into_iter()
        .filter(|e| below(&e.path, &base) || host_roots.iter().any(|r| below(&e.path, r)))
        // (Secrets, tokens and configuration are never served, even when granted.)
        .filter(|e| !crate::kubelet::is_never_served(&e.path))
        .collect())
}

/// Of `entries`, those `login` may read.
fn readable(args: &CommandArgs, login: &Login, entries: Vec<AllowEntry>) -> Vec<AllowEntry> {
    let now = SystemTime::now();
    entries
        .into_iter()
        .filter(|e| login.may_read(e, now, args.require_binding))
        .collect()
}

fn audit(args: &CommandArgs, login: &Login, command: Option<&str>, outcome: Result<&Request, &Refusal>) {
    let Some(path) = &args.audit_log else {
        return;
    };
    let mut shown = command.unwrap_or("").to_string();
    shown.truncate(2000);
    let line = serde_json::json!({
        "time": SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "client": login.client.as_deref().unwrap_or(""),
        "key": login.key.as_ref().map(PublicKey::fingerprint),
        "command": shown,
        "accepted": outcome.is_ok(),
        "reason": outcome.err().map(|r| r.0.clone()),
    });
    let file = std::fs::OpenOptions::new().append(true).create(true).open(path);
    if let Ok(mut f) = file {
        let _ = writeln!(f, "{line}");
    }
}

/// Run the forced command; returns the exit code (when it does not replace itself with rsync).
pub fn run(args: &CommandArgs) -> i32 {
    let original = std::env::var("SSH_ORIGINAL_COMMAND").ok();
    let login = Login::from_env();
    let prepared = check(args, &login, original.as_deref()).and_then(prepare);
    audit(
        args,
        &login,
        original.as_deref(),
        prepared.as_ref().map(|p| &p.request),
    );
    match prepared {
        Ok(p) => execute(args, p),
        Err(refusal) => {
            eprintln!("dr-syncer-agent: refused: {refusal}");
            REFUSED_EXIT_CODE
        }
    }
}

/// Check the request against the allow-list (by path, or by grant name for `dr-syncer-resolve`).
fn check(args: &CommandArgs, login: &Login, command: Option<&str>) -> Result<Request, Refusal> {
    let entries = servable_entries(args)?;
    if login.key.is_none()
        && command.is_some_and(|c| c.split(' ').nth(1).is_some())
        && entries.iter().any(|e| e.binding.is_some())
    {
        // (A probe without a path still answers.)
        return Err(Refusal(
            "sshd did not say which key logged in (SSH_USER_AUTH: ExposeAuthInfo needs a writable /tmp), so \
             no transfer's volume can be served"
                .into(),
        ));
    }
    let mine = readable(args, login, entries);
    if let Some(name) = forced::resolve_name(command)? {
        return mine
            .into_iter()
            .find(|e| e.name == name)
            .map(|e| Request::Resolve { root: e.path })
            .ok_or_else(|| {
                Refusal(format!(
                    "grant {name} is not served to this key by this node (not granted yet, its volume is not \
                     mounted here, or it is granted to another key)"
                ))
            });
    }
    let roots: Vec<PathBuf> = mine.into_iter().map(|e| e.path).collect();
    forced::check(command, &roots)
}

/// A checked request with its volume opened (and its paths checked) without following symlinks.
struct Prepared {
    request: Request,
    dir: Option<std::os::fd::OwnedFd>,
}

fn prepare(request: Request) -> Result<Prepared, Refusal> {
    let dir = match &request {
        Request::Probe => None,
        Request::ProbePath { root }
        | Request::Resolve { root }
        | Request::Checksum { root }
        | Request::Usage { root } => Some(open_root(root)?),
        Request::Rsync { root, paths, .. } => {
            let dir = open_root(root)?;
            for path in paths {
                let leaf = if path.ends_with('/') {
                    Leaf::Directory
                } else {
                    Leaf::Any
                };
                open_beneath(&dir, path.as_bytes(), leaf)?;
            }
            Some(dir)
        }
    };
    Ok(Prepared { request, dir })
}

fn execute(args: &CommandArgs, prepared: Prepared) -> i32 {
    match (prepared.request, prepared.dir) {
        (Request::Probe, _) => {
            println!("dr-syncer-agent ok version={}", env!("CARGO_PKG_VERSION"));
            0
        }
        (Request::ProbePath { root }, _) => {
            println!("dr-syncer-agent ok volume={}", root.display());
            0
        }
        (Request::Resolve { root }, _) => {
            println!("{}", root.display());
            0
        }
        (Request::Checksum { .. }, Some(dir)) => {
            let stdout = std::io::stdout();
            match crate::checksum::serve(&dir, std::io::stdin(), stdout.lock()) {
                Ok(()) => 0,
                Err(e) => {
                    eprintln!("dr-syncer-agent: checksum: {e}");
                    1
                }
            }
        }
        (Request::Usage { .. }, Some(dir)) => {
            // The opened directory (no symlink followed on the way), walked through its descriptor.
            let path = std::path::PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
            match crate::usage::count(&path) {
                Ok(u) => {
                    println!("{}", u.to_reply());
                    0
                }
                Err(e) => {
                    eprintln!("dr-syncer-agent: counting the volume: {e}");
                    1
                }
            }
        }
        (Request::Rsync { options, root, paths }, Some(dir)) => {
            if let Err(e) = nix::unistd::fchdir(&dir) {
                eprintln!("dr-syncer-agent: entering the volume: {e}");
                return 1;
            }
            let err = rsync_command(args, &root, &options, &paths).exec();
            eprintln!("dr-syncer-agent: starting {}: {err}", args.rsync.display());
            126
        }
        (_, None) => 1,
    }
}

/// The rsync server command for a checked request (its working directory is the volume).
fn rsync_command(
    args: &CommandArgs,
    root: &Path,
    options: &[String],
    paths: &[String],
) -> std::process::Command {
    let mut cmd = std::process::Command::new(&args.rsync);
    cmd.args(["--server", "--sender"]).args(options);
    if args.confine_root {
        let mut opt = std::ffi::OsString::from("--confine-root=");
        opt.push(std::ffi::OsStr::from_bytes(root.as_os_str().as_bytes()));
        cmd.arg(opt);
    }
    cmd.arg(".").args(paths);
    cmd.env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .env("LC_ALL", "C");
    if let Some((uid, gid)) = args.run_as {
        cmd.gid(gid).uid(uid);
    }
    cmd
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The forced command's settings for an allow-list and volume root under `base`.
    fn args_for(allow_dir: PathBuf, volume_root: PathBuf) -> CommandArgs {
        CommandArgs {
            allow_dir,
            volume_root,
            host_path_roots: Vec::new(),
            rsync: "/usr/bin/rsync".into(),
            confine_root: true,
            run_as: None,
            audit_log: None,
            require_binding: false,
        }
    }

    #[test]
    fn rsync_runs_on_relative_paths_with_confinement() {
        let args = CommandArgs {
            allow_dir: "/a".into(),
            volume_root: "/v".into(),
            host_path_roots: Vec::new(),
            rsync: "/usr/bin/rsync".into(),
            confine_root: true,
            run_as: Some((65534, 65534)),
            audit_log: None,
            require_binding: false,
        };
        let cmd = rsync_command(
            &args,
            Path::new("/v/pods/u/volumes/x/pv"),
            &["-logDtpre.iLsfxCIvu".into()],
            &["./".into()],
        );
        let argv: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(
            argv,
            [
                "--server",
                "--sender",
                "-logDtpre.iLsfxCIvu",
                "--confine-root=/v/pods/u/volumes/x/pv",
                ".",
                "./"
            ]
        );
        let envs: Vec<_> = cmd.get_envs().collect();
        assert!(
            envs.iter().all(|(k, _)| *k == "PATH" || *k == "LC_ALL"),
            "{envs:?}"
        );
        assert_eq!(parse_run_as("1:2"), Ok((1, 2)));
        assert!(parse_run_as("1").is_err() && parse_run_as("a:b").is_err());
    }

    #[test]
    fn only_allowed_volumes_under_the_volume_root_are_served() {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().canonicalize().unwrap();
        let kubelet = base.join("kubelet");
        std::fs::create_dir_all(kubelet.join("pods/u/vol")).unwrap();
        std::fs::create_dir_all(base.join("elsewhere")).unwrap();
        let list = AllowList::new(base.join("allow"));
        list.grant("inside", &kubelet.join("pods/u/vol")).unwrap();
        list.grant("outside", &base.join("elsewhere")).unwrap();
        list.grant("root", &kubelet).unwrap();
        let args = CommandArgs {
            allow_dir: base.join("allow"),
            volume_root: kubelet.clone(),
            host_path_roots: Vec::new(),
            rsync: "rsync".into(),
            confine_root: false,
            run_as: None,
            audit_log: Some(base.join("audit.log")),
            require_binding: false,
        };
        let login = Login::default();
        assert_eq!(
            allowed_roots(&args, &login).unwrap(),
            vec![kubelet.join("pods/u/vol")]
        );
        // hostPath roots: a volume strictly below one is served, the root itself never.
        let host = base.join("host-paths/0");
        std::fs::create_dir_all(host.join("pvc-1")).unwrap();
        list.grant("hostpath", &host.join("pvc-1")).unwrap();
        list.grant("hostpath-root", &host).unwrap();
        let with_host = CommandArgs {
            host_path_roots: vec![host.clone()],
            ..args.clone()
        };
        let mut served = allowed_roots(&with_host, &login).unwrap();
        served.sort();
        assert_eq!(served, vec![host.join("pvc-1"), kubelet.join("pods/u/vol")]);
        assert!(
            !allowed_roots(&args, &login)
                .unwrap()
                .contains(&host.join("pvc-1"))
        );
        audit(&args, &login, Some("sh"), Err(&Refusal("no".into())));
        let log = std::fs::read_to_string(base.join("audit.log")).unwrap();
        let line: serde_json::Value = serde_json::from_str(log.trim()).unwrap();
        assert_eq!(line["accepted"], false);
        assert_eq!(line["command"], "sh");
    }

    /// A granted Secret, projected token, ConfigMap or downward-API volume is never served: it is not
    /// among the allowed roots, whatever the allow-list says.
    #[test]
    fn credential_volumes_are_never_allowed() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("kubelet");
        let list = crate::allow::AllowList::new(tmp.path().join("allow"));
        for (name, plugin) in [
            ("data", "kubernetes.io~csi/pv-1/mount"),
            ("creds", "kubernetes.io~secret/creds"),
            ("token", "kubernetes.io~projected/kube-api-access"),
            ("config", "kubernetes.io~configmap/settings"),
            ("labels", "kubernetes.io~downward-api/podinfo"),
        ] {
            let dir = root.join("pods/u1/volumes").join(plugin);
            std::fs::create_dir_all(&dir).unwrap();
            list.grant(name, &dir).unwrap();
        }
        let args = args_for(tmp.path().join("allow"), root.clone());
        let roots = allowed_roots(&args, &Login::default()).unwrap();
        assert_eq!(
            roots,
            [root
                .canonicalize()
                .unwrap()
                .join("pods/u1/volumes/kubernetes.io~csi/pv-1/mount")]
        );
    }

    /// A transfer's volume is served to its own key only, before its expiry, from its addresses; the
    /// other keys the agent accepts (the cluster's probe key, another transfer's key) read nothing.
    #[test]
    fn a_bound_volume_is_served_to_its_key_only() {
        use std::time::Duration;

        use dr_syncer_core::{keys::KeyPair, pvc::KeyBinding};

        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().canonicalize().unwrap().join("kubelet");
        let (a, b) = (root.join("pods/u1/vol-a"), root.join("pods/u2/vol-b"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let key_a = KeyPair::generate_ed25519("a").unwrap().public_key();
        let key_b = KeyPair::generate_ed25519("b").unwrap().public_key();
        let probe = KeyPair::generate_ed25519("probe").unwrap().public_key();
        let list = AllowList::new(tmp.path().join("allow"));
        let bind = |key: &PublicKey, secs: i64| KeyBinding {
            key: key.clone(),
            not_after: if secs >= 0 {
                SystemTime::now() + Duration::from_secs(secs as u64)
            } else {
                SystemTime::now() - Duration::from_secs((-secs) as u64)
            },
            from: vec!["10.0.0.21".into()],
        };
        list.grant_bound("ns-a.data", &a, Some(&bind(&key_a, 600)))
            .unwrap();
        list.grant_bound("ns-b.data", &b, Some(&bind(&key_b, 600)))
            .unwrap();
        let args = args_for(tmp.path().join("allow"), root.clone());
        let login = |key: &PublicKey, client: &str| Login {
            key: Some(key.clone()),
            client: Some(client.into()),
        };
        assert_eq!(
            allowed_roots(&args, &login(&key_a, "10.0.0.21")).unwrap(),
            vec![a.clone()]
        );
        assert_eq!(
            allowed_roots(&args, &login(&key_b, "10.0.0.21")).unwrap(),
            vec![b.clone()]
        );
        assert!(
            allowed_roots(&args, &login(&probe, "10.0.0.21"))
                .unwrap()
                .is_empty()
        );
        assert!(
            allowed_roots(&args, &login(&key_a, "10.9.9.9"))
                .unwrap()
                .is_empty()
        );
        assert!(allowed_roots(&args, &Login::default()).unwrap().is_empty());
        // Key A asks for B's grant and B's path: refused, and so is a probe of B's volume.
        let stolen = login(&key_a, "10.0.0.21");
        let by_name = check(&args, &stolen, Some("dr-syncer-resolve ns-b.data")).unwrap_err();
        assert!(by_name.0.contains("not served to this key"), "{by_name}");
        let rsync = format!("rsync --server --sender -logDtpre.iLsfxCIvu . {}/", b.display());
        let by_path = check(&args, &stolen, Some(&rsync)).unwrap_err();
        assert!(by_path.0.contains("not a volume served"), "{by_path}");
        assert!(check(&args, &stolen, Some("dr-syncer-resolve ns-a.data")).is_ok());
        // When sshd cannot say which key logged in (no writable /tmp for ExposeAuthInfo), the refusal
        // says so; a bare probe still answers.
        let unknown = check(&args, &Login::default(), Some("dr-syncer-resolve ns-a.data")).unwrap_err();
        assert!(unknown.0.contains("did not say which key"), "{unknown}");
        assert!(check(&args, &Login::default(), Some("dr-syncer-probe")).is_ok());
        // An entry without a binding (written by hand) is served to every accepted key — unless the
        // allow-list comes from grants (`--require-binding`), where it is served to no one.
        let by_hand = root.join("pods/u3/vol-c");
        std::fs::create_dir_all(&by_hand).unwrap();
        list.grant("by-hand", &by_hand).unwrap();
        assert!(
            allowed_roots(&args, &login(&probe, "10.0.0.21"))
                .unwrap()
                .contains(&by_hand)
        );
        let strict = CommandArgs {
            require_binding: true,
            ..args.clone()
        };
        assert!(
            !allowed_roots(&strict, &login(&probe, "10.0.0.21"))
                .unwrap()
                .contains(&by_hand)
        );
        assert_eq!(
            allowed_roots(&strict, &login(&key_b, "10.0.0.21")).unwrap(),
            vec![b.clone()]
        );
        list.revoke("by-hand").unwrap();
        // Once expired, not even its own key reads it.
        list.grant_bound("ns-a.data", &a, Some(&bind(&key_a, -1)))
            .unwrap();
        assert!(
            allowed_roots(&args, &login(&key_a, "10.0.0.21"))
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn the_login_key_is_read_from_the_auth_info() {
        let key = dr_syncer_core::keys::KeyPair::generate_ed25519("k")
            .unwrap()
            .public_key();
        let other = dr_syncer_core::keys::KeyPair::generate_ed25519("o")
            .unwrap()
            .public_key();
        let line = |k: &PublicKey| format!("publickey {}\n", k.to_openssh());
        let found = Login::key_of(&line(&key)).unwrap();
        assert_eq!(found.blob(), key.blob());
        assert!(Login::key_of("").is_none());
        assert!(Login::key_of("password\n").is_none());
        assert!(
            Login::key_of(&format!("{}{}", line(&key), line(&other))).is_none(),
            "two keys"
        );
        assert!(Login::key_of("publickey ssh-ed25519 garbage\n").is_none());
    }
}
