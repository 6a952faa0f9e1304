//! `dr-syncer-agent mover` (the writer: pull a volume from a reader) and `dr-syncer-agent probe` (check
//! that a reader is reachable, is the pinned one, accepts the key and serves a volume).
//!
//! Both write JSON lines on standard output so that a controller following the mover pod's log can read
//! them:
//! - `{"event":"progress","attempt":1,"bytes":…,"percent":…,"bytesPerSecond":…,"remainingSeconds":…,
//!   "filesTransferred":…,"filesToCheck":…,"filesTotal":…}` (at most once a second, and at the end);
//! - `{"event":"completed","stats":{"bytesSent":…,"bytesReceived":…,"literalBytes":…,"totalBytes":…,
//!   "filesTransferred":…,"filesDeleted":…,"filesTotal":…,"filesVerified":…,"durationSeconds":…,
//!   "bytesPerSecond":…,"attempts":…}}`;
//! - `{"event":"failed","kind":"HostKeyMismatch","transient":false,"message":"…"}`;
//! - for `probe`: `{"event":"probe","ok":true,"hostKeyFingerprint":"SHA256:…","reply":"…"}`.
//!
//! The exit code tells the failure's kind too: see [`exit_code`].

use std::{
    path::PathBuf,
    sync::Mutex,
    time::{Duration, Instant},
};

use dr_syncer_core::{
    api::VerificationMode,
    data::{
        DataMover, DataMoverError, DataSource, RetryPolicy, RsyncSsh, SshEndpoint, TransferOptions,
        TransferProgress, TransferRequest, TransferStats, bridge::BridgeConfig,
    },
};
use serde_json::json;

use crate::usage::{self, Usage};

/// Where the reader is and how to log in (shared by `mover` and `probe`).
#[derive(Debug, Clone, clap::Args)]
pub struct ReaderArgs {
    /// The reader's host (the source node's IP).
    #[arg(long)]
    pub host: String,
    /// The reader's port.
    #[arg(long, default_value_t = 2222)]
    pub port: u16,
    /// Login user.
    #[arg(long, default_value = "root")]
    pub user: String,
    /// File with the pinned host key(s) of the reader (OpenSSH public key lines).
    #[arg(long)]
    pub host_key_file: PathBuf,
    /// The client's private key.
    #[arg(long)]
    pub identity: PathBuf,
    /// Limit of connecting and logging in, in seconds.
    #[arg(long, default_value_t = 30)]
    pub connect_timeout_secs: u64,
    /// More addresses of the same reader (`host:port`, repeatable), tried in order when `--host` does
    /// not accept a connection (the addresses of the source cluster's exposure modes).
    #[arg(long = "fallback-address")]
    pub fallbacks: Vec<String>,
}

/// The first of `--host:--port` and the `--fallback-address`es that accepts a TCP connection (within
/// the connect timeout, at most 10 s each): the reader is then dialled there. With none answering, the
/// first is kept (its SSH error is the one reported).
fn select_reader(reader: &mut ReaderArgs) {
    if reader.fallbacks.is_empty() {
        return;
    }
    let limit = Duration::from_secs(reader.connect_timeout_secs.clamp(1, 10));
    let first = dr_syncer_core::pvc::exposure::Endpoint {
        host: reader.host.clone(),
        port: reader.port,
    };
    let mut tried = Vec::new();
    let all = std::iter::once(Ok(first.clone())).chain(
        reader
            .fallbacks
            .iter()
            .map(|f| dr_syncer_core::pvc::exposure::Endpoint::parse(f, reader.port)),
    );
    for candidate in all {
        let endpoint = match candidate {
            Ok(e) => e,
            Err(e) => {
                tried.push(e);
                continue;
            }
        };
        match tcp_reachable(&endpoint, limit) {
            Ok(()) => {
                if endpoint != first || !tried.is_empty() {
                    emit(json!({"event": "reader", "address": endpoint.to_string(),
                                "message": format!("the reader answers at {endpoint} (not at: {})", tried.join("; "))}));
                }
                reader.host = endpoint.host;
                reader.port = endpoint.port;
                return;
            }
            Err(e) => tried.push(format!("{endpoint}: {e}")),
        }
    }
    emit(
        json!({"event": "warning", "message": format!("no address of the reader accepts a connection: {}", tried.join("; "))}),
    );
}

fn tcp_reachable(endpoint: &dr_syncer_core::pvc::exposure::Endpoint, limit: Duration) -> std::io::Result<()> {
    use std::net::ToSocketAddrs;
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    for addr in (endpoint.host.as_str(), endpoint.port).to_socket_addrs()? {
        match std::net::TcpStream::connect_timeout(&addr, limit) {
            Ok(_) => return Ok(()),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Settings of the writer.
#[derive(Debug, Clone, clap::Args)]
pub struct MoverArgs {
    #[command(flatten)]
    pub reader: ReaderArgs,
    /// The volume's path on the reader's node (its contents are copied).
    #[arg(long, required_unless_present = "grant", conflicts_with = "grant")]
    pub source_path: Option<String>,
    /// Name of the grant that allows the volume on the reader (the reader resolves it to the path;
    /// see `grants`); waits up to `--grant-wait-secs` for the reader to serve it.
    #[arg(long)]
    pub grant: Option<String>,
    /// How long to wait for the reader to serve the grant, in seconds (the kubelet may take a minute to
    /// update the agent's mounted grants).
    #[arg(long, default_value_t = 180)]
    pub grant_wait_secs: u64,
    /// File that receives the final JSON line too (the pod's termination message).
    #[arg(long)]
    pub termination_log: Option<PathBuf>,
    /// The destination directory (the mounted DR volume).
    #[arg(long)]
    pub destination: PathBuf,
    /// Bandwidth limit in KiB/s.
    #[arg(long)]
    pub bwlimit_kib: Option<u32>,
    /// rsync pattern not to copy (repeatable).
    #[arg(long)]
    pub exclude: Vec<String>,
    /// Time limit of the whole transfer in seconds.
    #[arg(long)]
    pub timeout_secs: Option<u64>,
    /// Fail (and retry) when no data moves for this many seconds; 0 for no limit.
    #[arg(long, default_value_t = 300)]
    pub io_timeout_secs: u64,
    /// Extra rsync option from the allow-list (repeatable; one word each, e.g. `--compress`).
    #[arg(long = "rsync-option", allow_hyphen_values = true)]
    pub rsync_options: Vec<String>,
    /// Keep partial files so that an interrupted transfer resumes.
    #[arg(long)]
    pub resumable: bool,
    /// Copy extended attributes too.
    #[arg(long)]
    pub xattrs: bool,
    /// Do not delete destination files the source lacks.
    #[arg(long)]
    pub no_delete: bool,
    /// Mirror the source even when it looks wiped (empty or nearly empty while the destination is not;
    /// by default such a source is not copied and the destination is left untouched).
    #[arg(long)]
    pub allow_wiped_source: bool,
    /// Accept a transfer in which some files could not be copied or vanished (rsync 23/24).
    #[arg(long)]
    pub allow_incomplete: bool,
    /// Verification after copying: none, sample or full.
    #[arg(long, default_value = "none", value_parser = parse_verification)]
    pub verification: VerificationMode,
    /// Percentage of files checked by sample verification.
    #[arg(long, default_value_t = 10)]
    pub sample_percent: u8,
    /// Retries of transient failures.
    #[arg(long, default_value_t = 5)]
    pub retries: u32,
    /// First retry delay in milliseconds (doubling, ±15 % jitter).
    #[arg(long, default_value_t = 5000)]
    pub retry_initial_ms: u64,
    /// Longest retry delay in milliseconds.
    #[arg(long, default_value_t = 300_000)]
    pub retry_max_ms: u64,
    /// rsync binary.
    #[arg(long, default_value = "rsync")]
    pub rsync: PathBuf,
}

fn parse_verification(s: &str) -> Result<VerificationMode, String> {
    match s.to_ascii_lowercase().as_str() {
        "none" => Ok(VerificationMode::None),
        "sample" => Ok(VerificationMode::Sample),
        "full" => Ok(VerificationMode::Full),
        _ => Err(format!("{s:?} is not none, sample or full")),
    }
}

/// The exit code of a failed transfer or probe, by kind: 2 invalid request, 3 host key mismatch,
/// 4 authentication failed, 5 refused by the reader, 6 incomplete (rsync 23/24), 7 verification failed,
/// 8 timed out, 9 other transfer failures.
pub fn exit_code(err: &DataMoverError) -> u8 {
    match err {
        DataMoverError::InvalidRequest(_) => 2,
        DataMoverError::HostKeyMismatch { .. } => 3,
        DataMoverError::AuthenticationFailed { .. } => 4,
        DataMoverError::Refused(_) => 5,
        DataMoverError::Incomplete { .. } => 6,
        DataMoverError::Verification(_) => 7,
        DataMoverError::TimedOut(_) => 8,
        DataMoverError::SourceLooksWiped(_) => 10,
        DataMoverError::Failed { .. } | DataMoverError::Io { .. } | DataMoverError::Reported { .. } => 9,
    }
}

fn emit(value: serde_json::Value) {
    println!("{value}");
}

fn progress_json(p: &TransferProgress) -> serde_json::Value {
    json!({
        "event": "progress",
        "attempt": p.attempt,
        "bytes": p.bytes,
        "percent": p.percent,
        "bytesPerSecond": p.bytes_per_second,
        "remainingSeconds": p.remaining.map(|d| d.as_secs()),
        "filesTransferred": p.files_transferred,
        "filesToCheck": p.files_to_check,
        "filesTotal": p.files_total,
    })
}

/// The `completed` line's statistics.
pub fn stats_json(s: &TransferStats) -> serde_json::Value {
    json!({
        "bytesSent": s.bytes_sent,
        "bytesReceived": s.bytes_received,
        "literalBytes": s.literal_bytes,
        "totalBytes": s.total_bytes,
        "filesTransferred": s.files_transferred,
        "filesDeleted": s.files_deleted,
        "filesTotal": s.files_total,
        "filesVerified": s.files_verified,
        "durationSeconds": s.duration.as_secs_f64(),
        "bytesPerSecond": s.bytes_per_second(),
        "attempts": s.attempts,
    })
}

fn failed_json(err: &DataMoverError) -> serde_json::Value {
    json!({"event": "failed", "kind": err.kind(), "transient": err.is_transient(), "message": err.to_string()})
}

fn read_pins(reader: &ReaderArgs) -> Result<String, DataMoverError> {
    std::fs::read_to_string(&reader.host_key_file).map_err(|e| {
        DataMoverError::InvalidRequest(format!("reading {}: {e}", reader.host_key_file.display()))
    })
}

/// Write the final line to the termination log too (best effort: the log line is the record).
fn finish(args: &MoverArgs, value: serde_json::Value) {
    if let Some(path) = &args.termination_log {
        let mut text = value.to_string();
        // The kubelet keeps at most 4096 bytes of a termination message.
        if text.len() > 4096 {
            text =
                json!({"event": value["event"], "kind": value["kind"], "message": "(truncated)"}).to_string();
        }
        if let Err(e) = std::fs::write(path, &text) {
            eprintln!("writing {}: {e}", path.display());
        }
    }
    emit(value);
}

/// The volume path: `--source-path`, or the path the reader gives for `--grant` (waiting for it).
async fn source_path(args: &MoverArgs) -> Result<String, DataMoverError> {
    if let Some(path) = &args.source_path {
        return Ok(path.clone());
    }
    let Some(grant) = args.grant.clone() else {
        return Err(DataMoverError::InvalidRequest(
            "--source-path or --grant is required".into(),
        ));
    };
    let deadline = Instant::now() + Duration::from_secs(args.grant_wait_secs);
    let mut told = false;
    loop {
        let reader = args.reader.clone();
        let command = format!("{} {grant}", crate::forced::RESOLVE_COMMAND);
        let result = tokio::task::spawn_blocking(move || exec_on_reader(&reader, &command))
            .await
            .map_err(|e| DataMoverError::Failed {
                message: format!("resolving the grant: {e}"),
                transient: true,
            })?;
        let err = match result {
            Ok(answer) if answer.reply.starts_with('/') => return Ok(answer.reply),
            Ok(ReaderAnswer { reply, .. }) => DataMoverError::Failed {
                message: format!("unexpected reply to the grant's resolution: {reply:?}"),
                transient: false,
            },
            Err(e) => e,
        };
        // The grant and the client key reach the reader through mounted volumes that the kubelet
        // updates with a delay: a refusal or a rejected key is waited out too, within the limit.
        let retry = matches!(
            err,
            DataMoverError::Refused(_) | DataMoverError::AuthenticationFailed { .. }
        ) || err.is_transient();
        if !retry || Instant::now() >= deadline {
            return Err(err);
        }
        if !told {
            emit(
                json!({"event": "waiting", "message": format!("waiting for the reader to serve grant {grant}: {err}")}),
            );
            told = true;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// The wiped-source brake ([`crate::usage`]): the source's usage (asked of the reader) next to the
/// destination's. A reader that does not know the request (an older agent) cannot tell: the copy goes on.
async fn check_not_wiped(args: &MoverArgs, path: &str) -> Result<(), DataMoverError> {
    if args.allow_wiped_source || args.no_delete {
        return Ok(());
    }
    let reader = args.reader.clone();
    let command = format!("{} {path}", crate::usage::USAGE_COMMAND);
    let answer = tokio::task::spawn_blocking(move || exec_on_reader(&reader, &command))
        .await
        .map_err(|e| DataMoverError::Failed {
            message: format!("asking the reader for the volume's usage: {e}"),
            transient: true,
        })?;
    let source = match answer {
        Ok(a) => Usage::parse(&a.reply).ok_or_else(|| DataMoverError::Failed {
            message: format!("unexpected reply to the usage request: {:?}", a.reply),
            transient: false,
        })?,
        Err(DataMoverError::Refused(why)) => {
            emit(
                json!({"event": "warning", "message": format!("the reader cannot tell the source's usage ({why}): copying without the wiped-source check")}),
            );
            return Ok(());
        }
        Err(e) => return Err(e),
    };
    let destination = args.destination.clone();
    let copy = tokio::task::spawn_blocking(move || {
        if destination.exists() {
            usage::count(&destination)
        } else {
            Ok(Usage::default())
        }
    })
    .await
    .map_err(|e| DataMoverError::Failed {
        message: format!("counting the destination: {e}"),
        transient: true,
    })?
    .map_err(|e| DataMoverError::Io {
        context: format!("counting {}", args.destination.display()),
        source: e,
    })?;
    if usage::looks_wiped(source, copy) {
        return Err(DataMoverError::SourceLooksWiped(format!(
            "the source has {} file(s), {} byte(s); the DR copy has {} file(s), {} byte(s). If the source was \
             emptied on purpose, allow it (operator: annotate the NamespaceMapping with \
             dr-syncer.io/allow-wiped-source=true; CLI: --allow-wiped-source)",
            source.files, source.bytes, copy.files, copy.bytes
        )));
    }
    Ok(())
}

/// Run the writer; the process exit code.
pub async fn run_mover(mut args: MoverArgs) -> u8 {
    let mut reader = args.reader.clone();
    args.reader = tokio::task::spawn_blocking(move || {
        select_reader(&mut reader);
        reader
    })
    .await
    .unwrap_or_else(|_| args.reader.clone());
    let request = match source_path(&args).await {
        Ok(path) => match check_not_wiped(&args, &path).await {
            Ok(()) => build_request(&args, path),
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let request = match request {
        Ok(r) => r,
        Err(err) => {
            finish(&args, failed_json(&err));
            return exit_code(&err);
        }
    };
    let bridge = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => {
            let err = DataMoverError::Io {
                context: "locating the agent binary".into(),
                source: e,
            };
            finish(&args, failed_json(&err));
            return exit_code(&err);
        }
    };
    let mover = RsyncSsh::new(bridge)
        .with_rsync(&args.rsync)
        .with_connect_timeout(Duration::from_secs(args.reader.connect_timeout_secs.max(1)));
    // At most one progress line a second (rsync reports far more often); the last one always.
    let last: Mutex<(Option<Instant>, Option<TransferProgress>)> = Mutex::new((None, None));
    let report = |p: TransferProgress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        if last.0.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
            emit(progress_json(&p));
            *last = (Some(Instant::now()), None);
        } else {
            last.1 = Some(p);
        }
    };
    let result = mover.transfer(&request, &report).await;
    if let Some(p) = last.lock().unwrap_or_else(|e| e.into_inner()).1.take() {
        emit(progress_json(&p));
    }
    match result {
        Ok(stats) => {
            finish(&args, json!({"event": "completed", "stats": stats_json(&stats)}));
            0
        }
        Err(err) => {
            finish(&args, failed_json(&err));
            exit_code(&err)
        }
    }
}

fn build_request(args: &MoverArgs, path: String) -> Result<TransferRequest, DataMoverError> {
    Ok(TransferRequest {
        source: DataSource::Ssh(SshEndpoint {
            host: args.reader.host.clone(),
            port: args.reader.port,
            user: args.reader.user.clone(),
            path,
            pinned_host_key: read_pins(&args.reader)?,
            client_key: args.reader.identity.clone(),
        }),
        destination: args.destination.clone(),
        options: TransferOptions {
            delete: !args.no_delete,
            exclude: args.exclude.clone(),
            bandwidth_limit_kib: args.bwlimit_kib,
            timeout: args.timeout_secs.map(Duration::from_secs),
            io_timeout: (args.io_timeout_secs > 0).then(|| Duration::from_secs(args.io_timeout_secs)),
            extra_options: args.rsync_options.clone(),
            resumable: args.resumable,
            xattrs: args.xattrs,
            allow_incomplete: args.allow_incomplete,
            retry: RetryPolicy {
                max_retries: args.retries,
                initial_delay: Duration::from_millis(args.retry_initial_ms),
                max_delay: Duration::from_millis(args.retry_max_ms),
                jitter_percent: 15,
            },
            verification: args.verification,
            sample_percent: args.sample_percent,
        },
    })
}

/// Settings of the probe.
#[derive(Debug, Clone, clap::Args)]
pub struct ProbeArgs {
    #[command(flatten)]
    pub reader: ReaderArgs,
    /// Also check that this volume path is served.
    #[arg(long)]
    pub volume_path: Option<String>,
    /// More readers to probe the same way (repeatable); one JSON line per reader, exit 0 only when
    /// every one answered.
    #[arg(long = "extra-host")]
    pub extra_hosts: Vec<String>,
    /// File that receives the JSON lines too (the pod's termination message).
    #[arg(long)]
    pub termination_log: Option<PathBuf>,
}

/// Probe the reader(s); the process exit code (of the first failure).
pub fn run_probe(args: ProbeArgs) -> u8 {
    let mut code = 0;
    let mut lines = Vec::new();
    let hosts: Vec<String> = std::iter::once(args.reader.host.clone())
        .chain(args.extra_hosts.iter().cloned())
        .collect();
    for host in hosts {
        let mut one = args.clone();
        // `host` or `host:port` (an exposure mode's address).
        match dr_syncer_core::pvc::exposure::Endpoint::parse(&host, args.reader.port) {
            Ok(e) => {
                one.reader.host = e.host;
                one.reader.port = e.port;
            }
            Err(_) => one.reader.host = host.clone(),
        }
        let line = match probe(&one) {
            Ok(a) => json!({
                "event": "probe",
                "ok": true,
                "host": host,
                "hostKeyFingerprint": a.fingerprint,
                "cipher": a.cipher,
                "reply": a.reply,
            }),
            Err(err) => {
                if code == 0 {
                    code = exit_code(&err);
                }
                let mut v = failed_json(&err);
                v["event"] = json!("probe");
                v["ok"] = json!(false);
                v["host"] = json!(host);
                v
            }
        };
        emit(line.clone());
        lines.push(line.to_string());
    }
    if let Some(path) = &args.termination_log {
        let mut text = lines.join("\n");
        text.truncate(4096);
        if let Err(e) = std::fs::write(path, text) {
            eprintln!("writing {}: {e}", path.display());
        }
    }
    code
}

fn probe(args: &ProbeArgs) -> Result<ReaderAnswer, DataMoverError> {
    let command = match &args.volume_path {
        Some(p) => format!("{} {p}", crate::forced::PROBE_COMMAND),
        None => crate::forced::PROBE_COMMAND.to_string(),
    };
    exec_on_reader(&args.reader, &command)
}

/// A reader's answer to one request.
struct ReaderAnswer {
    /// Fingerprint of its (pinned) host key.
    fingerprint: String,
    /// The cipher the connection negotiated.
    cipher: String,
    /// Its reply: standard output, trimmed.
    reply: String,
}

/// Run one request on the reader.
fn exec_on_reader(r: &ReaderArgs, command: &str) -> Result<ReaderAnswer, DataMoverError> {
    let config = BridgeConfig {
        host: r.host.clone(),
        port: r.port,
        user: r.user.clone(),
        pinned_host_keys: read_pins(r)?,
        identity: r.identity.clone(),
        connect_timeout_ms: r.connect_timeout_secs.max(1) * 1000,
        keepalive_secs: 0,
        idle_timeout_secs: 0,
    };
    let mut seen = None;
    let session = dr_syncer_core::ssh::connect(&config, &mut seen).map_err(|e| ssh_error(e, &r.host))?;
    let (code, out, err) = session
        .exec_capture(command, b"")
        .map_err(|e| ssh_error(e, &r.host))?;
    let reply = String::from_utf8_lossy(&out).trim().to_string();
    match code {
        0 => Ok(ReaderAnswer {
            fingerprint: session.host_key_fingerprint().to_string(),
            cipher: session.cipher(),
            reply,
        }),
        dr_syncer_core::data::REFUSED_EXIT_CODE => Err(DataMoverError::Refused(
            String::from_utf8_lossy(&err).trim().to_string(),
        )),
        _ => Err(DataMoverError::Failed {
            message: format!(
                "the reader's {} exited with {code}: {}",
                command.split(' ').next().unwrap_or_default(),
                String::from_utf8_lossy(&err).trim()
            ),
            transient: true,
        }),
    }
}

fn ssh_error(e: dr_syncer_core::ssh::SshError, host: &str) -> DataMoverError {
    use dr_syncer_core::ssh::SshError;
    match e {
        SshError::HostKeyMismatch { .. } => DataMoverError::HostKeyMismatch { host: host.into() },
        SshError::Authentication { message, .. } => DataMoverError::AuthenticationFailed {
            host: host.into(),
            message,
        },
        SshError::InvalidConfig(m) => DataMoverError::InvalidRequest(m),
        other => DataMoverError::Failed {
            message: other.to_string(),
            transient: true,
        },
    }
}
