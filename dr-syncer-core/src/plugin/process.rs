//! Running plugin processes: once per request (metadata, Crane's protocol) or as a session of JSON lines.

use std::{collections::BTreeMap, path::Path, process::Stdio, time::Duration};

use kube::core::DynamicObject;
use tokio::{
    io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader},
    process::{Child, ChildStdin, ChildStdout, Command},
};
use tracing::{info, warn};

use super::{
    JSON_LINES_PROTOCOL, MAX_OUTPUT, MAX_STDERR, PROTOCOL_ENV, Plugin, StageContext, Verdict, apply_response,
    request,
};
use crate::object::TransformError;

/// A JSON-lines plugin that failed this many times in one run is not started again for the rest.
const MAX_RESTARTS: usize = 3;

/// The plugin's command: its executable, with an environment of `PATH` only (plus the protocol variable
/// in the streaming mode); stdin, stdout and stderr piped; killed when dropped.
fn command(path: &Path) -> Command {
    let mut cmd = Command::new(path);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// Read `r` to its end, keeping at most `cap` bytes (the rest is read and dropped, so that the writer
/// never blocks on a full pipe); whether anything was dropped.
async fn read_capped(mut r: impl AsyncRead + Unpin, cap: usize) -> (Vec<u8>, bool) {
    let (mut out, mut buf, mut over) = (Vec::new(), [0u8; 8192], false);
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return (out, over),
            Ok(n) => {
                let room = cap.saturating_sub(out.len());
                out.extend_from_slice(&buf[..n.min(room)]);
                over |= n > room;
            }
        }
    }
}

/// Log a plugin's stderr, line by line.
fn log_stderr(plugin: &str, stderr: &[u8], cut: bool) {
    for line in String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        info!(plugin, "plugin stderr: {line}");
    }
    if cut {
        info!(
            plugin,
            "plugin stderr: (more than {MAX_STDERR} bytes; the rest not logged)"
        );
    }
}

/// Run `path` with `input` on stdin; its stdout when it exits with 0 within `timeout`.
pub(super) async fn run_once(
    name: &str,
    path: &Path,
    input: &[u8],
    timeout: Duration,
) -> Result<Vec<u8>, String> {
    let mut child = command(path)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", path.display()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let stdout = child.stdout.take().expect("piped stdout");
    let stderr = child.stderr.take().expect("piped stderr");
    let input = input.to_vec();
    let work = async move {
        // Written while the output is read: a plugin may print before it has read all of its input.
        let write = async move {
            let _ = stdin.write_all(&input).await;
            drop(stdin);
        };
        let ((), out, err, status) = tokio::join!(
            write,
            read_capped(stdout, MAX_OUTPUT),
            read_capped(stderr, MAX_STDERR),
            child.wait()
        );
        (out, err, status)
    };
    let ((out, too_long), (err, cut), status) = tokio::time::timeout(timeout, work)
        .await
        .map_err(|_| format!("timed out after {timeout:?} (killed)"))?;
    log_stderr(name, &err, cut);
    let status = status.map_err(|e| format!("cannot wait for the plugin: {e}"))?;
    if !status.success() {
        return Err(match status.code() {
            Some(code) => format!("exited with status {code}"),
            None => "killed by a signal".to_owned(),
        });
    }
    if too_long {
        return Err(format!("the answer is larger than {MAX_OUTPUT} bytes"));
    }
    Ok(out)
}

/// Crane's protocol: one process for `obj`.
pub(super) async fn crane(
    plugin: &Plugin,
    extras: &BTreeMap<String, String>,
    obj: DynamicObject,
    ctx: &StageContext,
) -> Result<Verdict, TransformError> {
    let who = format!("plugin {}", plugin.name);
    let input = request(&obj, extras)
        .and_then(|v| serde_json::to_vec(&v).map_err(|e| e.to_string()))
        .map_err(|m| TransformError::new(&who, &obj, m))?;
    match run_once(&plugin.name, &plugin.path, &input, plugin.timeout).await {
        Ok(out) => apply_response(&plugin.name, obj, &out, ctx),
        Err(m) => Err(TransformError::new(&who, &obj, m)),
    }
}

/// A running JSON-lines plugin.
struct Session {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Session {
    fn start(plugin: &Plugin) -> Result<Session, String> {
        let mut child = command(&plugin.path)
            .env(PROTOCOL_ENV, JSON_LINES_PROTOCOL)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", plugin.path.display()))?;
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        let stderr = child.stderr.take().expect("piped stderr");
        let name = plugin.name.clone();
        // Logged up to MAX_STDERR per process, then read and dropped (the plugin never blocks on it).
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr);
            let (mut logged, mut line) = (0usize, Vec::new());
            loop {
                line.clear();
                match (&mut lines)
                    .take(MAX_STDERR as u64)
                    .read_until(b'\n', &mut line)
                    .await
                {
                    Ok(0) | Err(_) => return,
                    Ok(n) if logged < MAX_STDERR => {
                        logged += n;
                        let text = String::from_utf8_lossy(&line);
                        if !text.trim().is_empty() {
                            info!(plugin = %name, "plugin stderr: {}", text.trim_end());
                        }
                        if logged >= MAX_STDERR {
                            info!(plugin = %name, "plugin stderr: (more than {MAX_STDERR} bytes; the rest not logged)");
                        }
                    }
                    Ok(_) => {}
                }
            }
        });
        Ok(Session { child, stdin, stdout })
    }

    /// Send one request line and read one response line.
    async fn exchange(&mut self, line: &[u8], timeout: Duration) -> Result<Vec<u8>, String> {
        // Anything already waiting on stdout was written without a request: the answers would no longer
        // match the requests.
        if !self.stdout.buffer().is_empty() {
            return Err("the plugin wrote output nobody asked for (a second answer?)".into());
        }
        let work = async {
            self.stdin
                .write_all(line)
                .await
                .map_err(|e| format!("the plugin stopped reading: {e}"))?;
            self.stdin
                .flush()
                .await
                .map_err(|e| format!("the plugin stopped reading: {e}"))?;
            let mut out = Vec::new();
            let n = (&mut self.stdout)
                .take(MAX_OUTPUT as u64 + 1)
                .read_until(b'\n', &mut out)
                .await
                .map_err(|e| format!("cannot read the plugin's answer: {e}"))?;
            if n == 0 {
                return Err(match self.child.try_wait() {
                    Ok(Some(status)) => format!("the plugin exited ({status}) before answering"),
                    _ => "the plugin closed its output before answering".to_owned(),
                });
            }
            if out.len() > MAX_OUTPUT {
                return Err(format!("the answer is larger than {MAX_OUTPUT} bytes"));
            }
            Ok(out)
        };
        tokio::time::timeout(timeout, work)
            .await
            .map_err(|_| format!("no answer within {timeout:?} (the plugin was stopped)"))?
    }

    /// Close stdin and give the plugin a moment to exit; kill it otherwise.
    async fn finish(mut self) {
        drop(self.stdin);
        if tokio::time::timeout(Duration::from_secs(2), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

/// The streaming protocol: one process for all of `objects` (restarted after a failure, at most
/// [`MAX_RESTARTS`] times). Each request carries a number the answer must echo.
pub(super) async fn json_lines(
    plugin: &Plugin,
    extras: &BTreeMap<String, String>,
    objects: Vec<(StageContext, DynamicObject)>,
) -> Vec<Result<Verdict, TransformError>> {
    let who = format!("plugin {}", plugin.name);
    let mut session: Option<Session> = None;
    let mut failures = 0;
    let mut results = Vec::with_capacity(objects.len());
    for (id, (ctx, obj)) in (1u64..).zip(objects) {
        // `id` first, so that even a line-oriented script finds it at the start.
        let line = serde_json::to_string(&obj).and_then(|object| {
            serde_json::to_string(extras).map(|extras| {
                format!("{{\"id\":{id},\"object\":{object},\"extras\":{extras}}}\n").into_bytes()
            })
        });
        let line = match line {
            Ok(l) => l,
            Err(e) => {
                results.push(Err(TransformError::new(&who, &obj, e.to_string())));
                continue;
            }
        };
        if session.is_none() {
            if failures > MAX_RESTARTS {
                results.push(Err(TransformError::new(
                    &who,
                    &obj,
                    format!("not run: the plugin failed {failures} times in this sync"),
                )));
                continue;
            }
            match Session::start(plugin) {
                Ok(s) => session = Some(s),
                Err(m) => {
                    failures += 1;
                    results.push(Err(TransformError::new(&who, &obj, m)));
                    continue;
                }
            }
        }
        let s = session.as_mut().expect("started above");
        // A session whose answers may no longer match its requests (no answer, or one that is not for
        // this request) is not used again: `broken`.
        let answer = match s.exchange(&line, plugin.timeout).await {
            Ok(out) if echoed_id(&out) == Some(id) => {
                apply_response(&plugin.name, obj, &out, &ctx).map_err(|e| (e, false))
            }
            Ok(_) => Err((
                TransformError::new(
                    &who,
                    &obj,
                    format!("the answer is not for request {id} (no \"id\", another id, or not JSON)"),
                ),
                true,
            )),
            Err(m) => Err((TransformError::new(&who, &obj, m), true)),
        };
        match answer {
            Ok(v) => results.push(Ok(v)),
            Err((e, broken)) => {
                if broken {
                    failures += 1;
                    warn!(plugin = %plugin.name, "{}; the plugin is restarted for the next object", e.message);
                    if let Some(s) = session.take() {
                        let mut child = s.child;
                        let _ = child.kill().await;
                    }
                }
                results.push(Err(e));
            }
        }
    }
    if let Some(s) = session {
        s.finish().await;
    }
    results
}

/// The `id` an answer line echoes, if it is JSON with one.
fn echoed_id(out: &[u8]) -> Option<u64> {
    #[derive(serde::Deserialize)]
    struct Id {
        id: Option<u64>,
    }
    serde_json::from_slice::<Id>(out).ok().and_then(|i| i.id)
}
