//! One run of a child process (rsync, or the bridge for a checksum probe): its own process group, output
//! parsed as it comes, a deadline after which the whole group is stopped (SIGTERM, so that rsync keeps a
//! partial file, then SIGKILL), and the same when the caller drops the future.

use std::{
    ffi::OsString,
    path::Path,
    process::Stdio,
    time::{Duration, Instant},
};

use nix::{sys::signal::Signal, unistd::Pid};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

use crate::data::{
    DataMoverError, TransferProgress, io,
    progress::{OutputLine, OutputParser},
};

/// Longest standard error kept (its end).
const STDERR_TAIL: usize = 16 * 1024;
/// Most non-progress output lines kept.
const MAX_TEXT_LINES: usize = 100_000;

/// What a finished run left.
#[derive(Debug, Default)]
pub(crate) struct RunOutput {
    /// Exit code (`None`: ended by a signal).
    pub(crate) code: Option<i32>,
    /// Standard output lines that were not progress updates.
    pub(crate) text: Vec<String>,
    /// Raw standard output when asked to keep it.
    pub(crate) raw_stdout: Vec<u8>,
    /// The end of standard error.
    pub(crate) stderr: String,
}

/// Signals a process group when dropped (the caller gave up on the run).
struct GroupGuard(Option<Pid>);

impl GroupGuard {
    fn signal(&self, sig: Signal) {
        if let Some(pgid) = self.0 {
            // The group may already be gone.
            let _ = nix::sys::signal::killpg(pgid, sig);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.signal(Signal::SIGTERM);
    }
}

/// A child process to run.
pub(crate) struct Run<'a> {
    pub(crate) program: &'a Path,
    pub(crate) args: Vec<OsString>,
    pub(crate) stdin: Option<Vec<u8>>,
    /// Keep standard output as bytes instead of parsing it.
    pub(crate) raw_stdout: bool,
    pub(crate) deadline: Option<Instant>,
    pub(crate) stop_grace: Duration,
}

impl Run<'_> {
    /// Run to the end (or the deadline), reporting progress lines as they come.
    pub(crate) async fn run(
        self,
        progress: &(dyn Fn(TransferProgress) + Send + Sync),
    ) -> Result<RunOutput, DataMoverError> {
        let mut cmd = tokio::process::Command::new(self.program);
        cmd.args(&self.args)
            .env("LC_ALL", "C")
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .map_err(io(format!("starting {}", self.program.display())))?;
        let mut guard = GroupGuard(
            child
                .id()
                .and_then(|id| i32::try_from(id).ok())
                .map(Pid::from_raw),
        );
        let stdin = child.stdin.take();
        let stdout = child.stdout.take();
        let stderr = child.stderr.take();
        let input = self.stdin;
        let raw = self.raw_stdout;

        let feed = async move {
            if let (Some(mut pipe), Some(data)) = (stdin, input) {
                // The reader may stop reading early (an error); that shows in its exit status.
                let _ = pipe.write_all(&data).await;
            }
        };
        let work = async {
            let (out, err, status, ()) = tokio::join!(
                read_stdout(stdout, raw, progress),
                read_tail(stderr),
                child.wait(),
                feed
            );
            (out, err, status)
        };
        let finished = match self.deadline {
            Some(deadline) => tokio::time::timeout_at(deadline.into(), work).await.ok(),
            None => Some(work.await),
        };
        let Some(((text, raw_stdout), stderr, status)) = finished else {
            // Out of time: let rsync save what it has, then make sure the whole group is gone.
            guard.signal(Signal::SIGTERM);
            if tokio::time::timeout(self.stop_grace, child.wait()).await.is_err() {
                guard.signal(Signal::SIGKILL);
                let _ = child.wait().await;
            }
            guard.signal(Signal::SIGKILL);
            return Err(DataMoverError::TimedOut(Duration::ZERO));
        };
        let status = status.map_err(io(format!("waiting for {}", self.program.display())))?;
        // The run is over (rsync waits for its remote-shell child, so the group is empty).
        guard.0 = None;
        Ok(RunOutput {
            code: status.code(),
            text,
            raw_stdout,
            stderr,
        })
    }
}

async fn read_stdout(
    pipe: Option<impl AsyncRead + Unpin>,
    raw: bool,
    progress: &(dyn Fn(TransferProgress) + Send + Sync),
) -> (Vec<String>, Vec<u8>) {
    let (mut text, mut bytes) = (Vec::new(), Vec::new());
    let Some(mut pipe) = pipe else {
        return (text, bytes);
    };
    let mut parser = OutputParser::new();
    let mut buf = vec![0u8; 64 * 1024];
    let handle = |lines: Vec<OutputLine>, text: &mut Vec<String>| {
        for line in lines {
            match line {
                OutputLine::Progress(p) => progress(p),
                OutputLine::Text(t) if text.len() < MAX_TEXT_LINES => text.push(t),
                OutputLine::Text(_) => {}
            }
        }
    };
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) if raw => bytes.extend_from_slice(&buf[..n]),
            Ok(n) => handle(parser.feed(&buf[..n]), &mut text),
        }
    }
    handle(parser.finish(), &mut text);
    (text, bytes)
}

async fn read_tail(pipe: Option<impl AsyncRead + Unpin>) -> String {
    let Some(mut pipe) = pipe else {
        return String::new();
    };
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 8 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                if kept.len() > 2 * STDERR_TAIL {
                    kept.drain(..kept.len() - STDERR_TAIL);
                }
            }
        }
    }
    if kept.len() > STDERR_TAIL {
        kept.drain(..kept.len() - STDERR_TAIL);
    }
    String::from_utf8_lossy(&kept).into_owned()
}
