//! The verified SSH connection of the PVC data path (feature `ssh`; libssh2 through the `ssh2` crate).
//!
//! [`connect`] opens a connection to a reader agent in a fixed order: TCP connection, key exchange
//! restricted to the pinned host key algorithms, **host key check against the pins**, and only then
//! public key authentication with the client key — so a server that is not the pinned reader never
//! sees the client's signature, let alone a request. [`VerifiedSession::exec_stdio`] runs one command
//! on the reader and pipes this process's standard streams to it: that is the SSH bridge rsync uses as
//! its remote shell ([`run_bridge`], `dr-syncer-agent ssh-bridge`).

use std::{
    io::{ErrorKind, Read, Write},
    net::{TcpStream, ToSocketAddrs},
    os::fd::{AsFd, BorrowedFd},
    path::Path,
    time::{Duration, Instant},
};

use nix::{
    fcntl::{FcntlArg, OFlag, fcntl},
    poll::{PollFd, PollFlags, PollTimeout, poll},
};
use ssh2::{BlockDirections, MethodType, Session};

use crate::{
    data::bridge::{BRIDGE_FAILED_EXIT_CODE, BridgeConfig, BridgeStatus},
    keys::{HostKeyPins, KeyPair},
};

/// Receive window of the data channel (OpenSSH's default). Measured: larger windows make libssh2 slower,
/// as it queues every packet that arrived and walks that queue on each read.
const WINDOW: u32 = 2 * 1024 * 1024;
/// Largest SSH packet of the channel (libssh2 refuses packets over about 35,000 bytes).
const PACKET: u32 = 32 * 1024;
/// Copy buffer.
const BUF: usize = 256 * 1024;
/// Ciphers, cheapest for the mover first (measured), on a CPU with AES instructions: AES-GCM, one OpenSSL
/// call per packet with the libssh2 this workspace builds (see `vendor/libssh2-sys/PATCHED.md`; stock
/// libssh2 calls OpenSSL per 16-byte block).
const CIPHERS_AES_HW: &str =
    "aes128-gcm@openssh.com,aes256-gcm@openssh.com,chacha20-poly1305@openssh.com,aes128-ctr,aes256-ctr";
/// Without AES instructions, libssh2's ChaCha20-Poly1305 (portable C) beats software AES.
const CIPHERS_NO_AES_HW: &str =
    "chacha20-poly1305@openssh.com,aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr";

/// The cipher preference for a CPU with (`true`) or without AES instructions.
fn ciphers(aes_hw: bool) -> &'static str {
    if aes_hw { CIPHERS_AES_HW } else { CIPHERS_NO_AES_HW }
}

/// The cipher the mover asks for first on this CPU (what it negotiates with a stock sshd).
pub fn preferred_cipher() -> &'static str {
    let list = ciphers(has_aes_hw());
    list.split(',').next().unwrap_or(list)
}

/// Whether this CPU has AES (and, on x86, carry-less multiply for GCM) instructions.
fn has_aes_hw() -> bool {
    #[cfg(any(target_arch = "x86", target_arch = "x86_64"))]
    {
        std::arch::is_x86_feature_detected!("aes") && std::arch::is_x86_feature_detected!("pclmulqdq")
    }
    #[cfg(target_arch = "aarch64")]
    {
        std::arch::is_aarch64_feature_detected!("aes") && std::arch::is_aarch64_feature_detected!("pmull")
    }
    #[cfg(not(any(target_arch = "x86", target_arch = "x86_64", target_arch = "aarch64")))]
    {
        false
    }
}

/// MACs for the CTR ciphers (the AEAD ciphers above bring their own): encrypt-then-MAC first.
const MACS: &str = "hmac-sha2-256-etm@openssh.com,hmac-sha2-512-etm@openssh.com,hmac-sha2-256,hmac-sha2-512";

/// Errors of the verified connection.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The bridge configuration is unusable.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// No TCP connection.
    #[error("connecting to {address}: {source}")]
    Connect {
        /// host:port.
        address: String,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The SSH key exchange failed.
    #[error("SSH handshake with {address}: {message}")]
    Handshake {
        /// host:port.
        address: String,
        /// libssh2's message.
        message: String,
    },
    /// The server presented a host key that is not pinned.
    #[error("host key mismatch: {address} presented {presented}, pinned {pinned}")]
    HostKeyMismatch {
        /// host:port.
        address: String,
        /// Fingerprint of the presented key.
        presented: String,
        /// Fingerprints of the pinned keys.
        pinned: String,
    },
    /// The server did not accept the client key.
    #[error("authentication as {user} failed: {message}")]
    Authentication {
        /// Login user.
        user: String,
        /// What went wrong.
        message: String,
    },
    /// Opening the channel or running the command failed.
    #[error("channel: {0}")]
    Channel(String),
    /// Local IO while piping.
    #[error("io: {0}")]
    Io(#[from] std::io::Error),
}

impl SshError {
    /// A short, stable name of the error's category (the bridge status' `errorKind`).
    pub fn kind(&self) -> &'static str {
        match self {
            SshError::InvalidConfig(_) => "InvalidConfig",
            SshError::Connect { .. } => "Connect",
            SshError::Handshake { .. } => "Handshake",
            SshError::HostKeyMismatch { .. } => "HostKeyMismatch",
            SshError::Authentication { .. } => "Authentication",
            SshError::Channel(_) => "Channel",
            SshError::Io(_) => "Io",
        }
    }
}

fn ssh_io(e: ssh2::Error) -> std::io::Error {
    std::io::Error::from(e)
}

/// An authenticated session with a reader whose host key matched a pin.
pub struct VerifiedSession {
    session: Session,
    socket: TcpStream,
    fingerprint: String,
    keepalive: Option<Duration>,
    idle: Option<Duration>,
}

impl std::fmt::Debug for VerifiedSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedSession")
            .field("host_key", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Connect, verify the host key, authenticate.
///
/// # Errors
/// [`SshError`]; `HostKeyMismatch` is returned before the client key is used.
pub fn connect(
    config: &BridgeConfig,
    host_key_seen: &mut Option<String>,
) -> Result<VerifiedSession, SshError> {
    let pins = HostKeyPins::parse(&config.pinned_host_keys)
        .map_err(|e| SshError::InvalidConfig(format!("pinned host keys: {e}")))?;
    let identity = std::fs::read_to_string(&config.identity)
        .map_err(|e| SshError::InvalidConfig(format!("reading {}: {e}", config.identity.display())))?;
    let identity = KeyPair::parse(&identity)
        .map_err(|e| SshError::InvalidConfig(format!("client key {}: {e}", config.identity.display())))?;
    let address = if config.host.contains(':') {
        format!("[{}]:{}", config.host, config.port)
    } else {
        format!("{}:{}", config.host, config.port)
    };
    let timeout = Duration::from_millis(config.connect_timeout_ms.max(1));
    let connect_err = |source| SshError::Connect {
        address: address.clone(),
        source,
    };
    let addrs: Vec<_> = (config.host.as_str(), config.port)
        .to_socket_addrs()
        .map_err(connect_err)?
        .collect();
    let mut last = std::io::Error::new(ErrorKind::NotFound, "no address");
    let mut tcp = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let tcp = tcp.ok_or_else(|| connect_err(last))?;
    tcp.set_nodelay(true).map_err(connect_err)?;
    let socket = tcp.try_clone().map_err(connect_err)?;

    let handshake = |message: String| SshError::Handshake {
        address: address.clone(),
        message,
    };
    let mut session = Session::new().map_err(|e| handshake(e.to_string()))?;
    session.set_tcp_stream(tcp);
    session.set_timeout(u32::try_from(timeout.as_millis()).unwrap_or(u32::MAX));
    session
        .method_pref(MethodType::HostKey, &pins.algorithms().join(","))
        .map_err(|e| handshake(e.to_string()))?;
    let ciphers = ciphers(has_aes_hw());
    for (method, prefs) in [
        (MethodType::CryptCs, ciphers),
        (MethodType::CryptSc, ciphers),
        (MethodType::MacCs, MACS),
        (MethodType::MacSc, MACS),
    ] {
        session
            .method_pref(method, prefs)
            .map_err(|e| handshake(e.to_string()))?;
    }
    session.handshake().map_err(|e| handshake(e.to_string()))?;

    // The host key check comes before anything else: no authentication attempt towards an impostor.
    let (blob, _) = session
        .host_key()
        .ok_or_else(|| handshake("the server presented no host key".into()))?;
    let presented = ssh_key::PublicKey::from_bytes(blob)
        .map(|k| k.fingerprint(ssh_key::HashAlg::Sha256).to_string())
        .unwrap_or_else(|_| "an unreadable key".into());
    *host_key_seen = Some(presented.clone());
    if pins.find(blob).is_none() {
        let _ = session.disconnect(None, "host key not pinned", None);
        return Err(SshError::HostKeyMismatch {
            address,
            presented,
            pinned: pins
                .keys()
                .iter()
                .map(|k| k.fingerprint())
                .collect::<Vec<_>>()
                .join(", "),
        });
    }

    session
        .userauth_pubkey_memory(
            &config.user,
            Some(&identity.public_key().to_openssh()),
            &identity.private_key_openssh(),
            None,
        )
        .map_err(|e| SshError::Authentication {
            user: config.user.clone(),
            message: e.message().to_string(),
        })?;
    if !session.authenticated() {
        return Err(SshError::Authentication {
            user: config.user.clone(),
            message: "the server did not accept the key".into(),
        });
    }
    let keepalive =
        (config.keepalive_secs > 0).then(|| Duration::from_secs(u64::from(config.keepalive_secs)));
    if let Some(k) = keepalive {
        session.set_keepalive(false, u32::try_from(k.as_secs()).unwrap_or(u32::MAX));
    }
    Ok(VerifiedSession {
        session,
        socket,
        fingerprint: presented,
        keepalive,
        idle: (config.idle_timeout_secs > 0).then(|| Duration::from_secs(config.idle_timeout_secs)),
    })
}

/// How a remote command ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteExit {
    /// Exit status (255 when it was ended by a signal).
    pub code: i32,
    /// The first non-empty line it wrote to standard error.
    pub first_error_line: Option<String>,
}

impl VerifiedSession {
    /// Fingerprint of the reader's (pinned) host key.
    pub fn host_key_fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// The cipher negotiated for data from the reader (e.g. `aes128-gcm@openssh.com`).
    pub fn cipher(&self) -> String {
        self.session
            .methods(MethodType::CryptSc)
            .unwrap_or_default()
            .to_string()
    }

    /// Run `command` on the reader with this process's standard input, output and error connected to
    /// it, until the command has ended and its output is delivered.
    ///
    /// # Errors
    /// [`SshError::Channel`] when the command cannot be started, [`SshError::Io`] when piping fails.
    pub fn exec_stdio(&self, command: &str) -> Result<RemoteExit, SshError> {
        let mut channel = self
            .session
            .channel_open("session", WINDOW, PACKET, None)
            .map_err(|e| SshError::Channel(e.to_string()))?;
        channel
            .exec(command)
            .map_err(|e| SshError::Channel(e.to_string()))?;
        self.session.set_blocking(false);

        let stdin = std::io::stdin();
        let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
        let stdin_fd = stdin.as_fd();
        let flags =
            OFlag::from_bits_truncate(fcntl(stdin_fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?);
        fcntl(stdin_fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;

        let mut buf = vec![0u8; BUF];
        let mut pending: Vec<u8> = Vec::new();
        let mut offset = 0;
        let (mut stdin_eof, mut eof_sent) = (false, false);
        let mut first_error: Vec<u8> = Vec::new();
        let mut first_error_done = false;
        let mut last_keepalive = Instant::now();
        let mut last_heard = Instant::now();
        // Whether standard input may have data (a read said so, or poll did): no read syscall otherwise.
        let mut stdin_ready = true;
        loop {
            let mut progressed = false;
            // Reader → our standard output. A short read means libssh2's queue is empty.
            loop {
                match channel.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        write_all(stdout.as_fd(), &buf[..n])?;
                        progressed = true;
                        last_heard = Instant::now();
                        if n < buf.len() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => return Err(e.into()),
                }
            }
            // Our standard input → reader.
            if offset == pending.len() && !stdin_eof && stdin_ready {
                match nix::unistd::read(stdin_fd, &mut buf) {
                    Ok(0) => stdin_eof = true,
                    Ok(n) => {
                        pending.clear();
                        pending.extend_from_slice(&buf[..n]);
                        offset = 0;
                        progressed = true;
                    }
                    Err(nix::errno::Errno::EAGAIN) => stdin_ready = false,
                    Err(nix::errno::Errno::EINTR) => {}
                    Err(e) => return Err(std::io::Error::from(e).into()),
                }
            }
            if offset < pending.len() {
                match channel.write(&pending[offset..]) {
                    Ok(n) => {
                        offset += n;
                        progressed |= n > 0;
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                    // The reader closed its input: nothing more to send.
                    Err(_) if channel.eof() => {
                        offset = pending.len();
                        stdin_eof = true;
                    }
                    Err(e) => return Err(e.into()),
                }
            }
            if stdin_eof && offset == pending.len() && !eof_sent {
                match channel.send_eof() {
                    Ok(()) => eof_sent = true,
                    Err(e) => eof_sent = ssh_io(e).kind() != ErrorKind::WouldBlock,
                }
            }
            // Standard error is rare (warnings, a refusal): read it when the data stream pauses.
            if !progressed || channel.eof() {
                loop {
                    match channel.stderr().read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            if !first_error_done {
                                first_error.extend_from_slice(&buf[..n]);
                                first_error_done = first_error.contains(&b'\n') || first_error.len() > 4096;
                            }
                            write_all(stderr.as_fd(), &buf[..n])?;
                            progressed = true;
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            if channel.eof() {
                break;
            }
            if let Some(idle) = self.idle
                && last_heard.elapsed() >= idle
            {
                let _ = fcntl(stdin_fd, FcntlArg::F_SETFL(flags));
                return Err(SshError::Io(std::io::Error::new(
                    ErrorKind::TimedOut,
                    format!(
                        "nothing from the reader for {} s: the link is down",
                        idle.as_secs()
                    ),
                )));
            }
            if let Some(interval) = self.keepalive
                && last_keepalive.elapsed() >= interval
            {
                let _ = self.session.keepalive_send();
                last_keepalive = Instant::now();
            }
            if !progressed {
                stdin_ready |= self.wait(stdin_fd, !stdin_eof && offset == pending.len())?;
            }
        }
        // Drain what is left of standard error, then collect the exit status.
        self.session.set_blocking(true);
        self.session.set_timeout(10_000);
        let mut rest = Vec::new();
        let _ = channel.stderr().read_to_end(&mut rest);
        if !rest.is_empty() {
            if !first_error_done {
                first_error.extend_from_slice(&rest);
            }
            write_all(stderr.as_fd(), &rest)?;
        }
        let _ = fcntl(stdin_fd, FcntlArg::F_SETFL(flags));
        let _ = channel.close();
        let _ = channel.wait_close();
        let code = match channel.exit_signal() {
            Ok(sig) if sig.exit_signal.is_some() => 255,
            _ => channel.exit_status().unwrap_or(255),
        };
        let first_error_line = String::from_utf8_lossy(&first_error)
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(String::from);
        Ok(RemoteExit {
            code,
            first_error_line,
        })
    }

    /// Wait until the socket (in the direction libssh2 needs) or standard input is ready, or a second
    /// has passed; whether standard input is ready.
    fn wait(&self, stdin: BorrowedFd<'_>, want_stdin: bool) -> Result<bool, SshError> {
        let mut events = PollFlags::POLLIN;
        if matches!(
            self.session.block_directions(),
            BlockDirections::Outbound | BlockDirections::Both
        ) {
            events |= PollFlags::POLLOUT;
        }
        let mut fds = vec![PollFd::new(self.socket.as_fd(), events)];
        if want_stdin {
            fds.push(PollFd::new(stdin, PollFlags::POLLIN));
        }
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Ok(_) => Ok(fds
                .get(1)
                .and_then(PollFd::revents)
                .is_some_and(|r| !r.is_empty())),
            Err(nix::errno::Errno::EINTR) => Ok(false),
            Err(e) => Err(std::io::Error::from(e).into()),
        }
    }

    /// Run `command` with `input` as its standard input; returns its exit status and standard output
    /// and error (for short commands such as the connectivity probe).
    ///
    /// # Errors
    /// [`SshError::Channel`] or [`SshError::Io`].
    pub fn exec_capture(&self, command: &str, input: &[u8]) -> Result<(i32, Vec<u8>, Vec<u8>), SshError> {
        let mut channel = self
            .session
            .channel_session()
            .map_err(|e| SshError::Channel(e.to_string()))?;
        channel
            .exec(command)
            .map_err(|e| SshError::Channel(e.to_string()))?;
        channel.write_all(input)?;
        channel.send_eof().map_err(|e| SshError::Channel(e.to_string()))?;
        let (mut out, mut err) = (Vec::new(), Vec::new());
        channel.read_to_end(&mut out)?;
        channel.stderr().read_to_end(&mut err)?;
        channel
            .wait_close()
            .map_err(|e| SshError::Channel(e.to_string()))?;
        let code = channel.exit_status().unwrap_or(255);
        Ok((code, out, err))
    }
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) -> std::io::Result<()> {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(nix::errno::Errno::EINTR) => {}
            Err(nix::errno::Errno::EAGAIN) => {
                let mut fds = [PollFd::new(fd, PollFlags::POLLOUT)];
                let _ = poll(&mut fds, PollTimeout::from(1000u16));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// The SSH bridge: read the configuration, connect (host key first), run `command` on the reader with
/// this process's standard streams, record a [`BridgeStatus`] in `status_file`, and return the exit code
/// to end the process with (the remote command's, or [`BRIDGE_FAILED_EXIT_CODE`]).
pub fn run_bridge(config_file: &Path, status_file: Option<&Path>, command: &str) -> i32 {
    let mut status = BridgeStatus::default();
    let result = (|| {
        let text = std::fs::read(config_file)
            .map_err(|e| SshError::InvalidConfig(format!("reading {}: {e}", config_file.display())))?;
        let config: BridgeConfig = serde_json::from_slice(&text)
            .map_err(|e| SshError::InvalidConfig(format!("{}: {e}", config_file.display())))?;
        if command.trim().is_empty() {
            return Err(SshError::InvalidConfig("no remote command".into()));
        }
        let session = connect(&config, &mut status.host_key_fingerprint)?;
        session.exec_stdio(command)
    })();
    let code = match result {
        Ok(exit) => {
            status.remote_exit = Some(exit.code);
            status.remote_error = exit.first_error_line;
            exit.code
        }
        Err(err) => {
            eprintln!("dr-syncer-agent ssh-bridge: {err}");
            status.error_kind = Some(err.kind().to_string());
            status.message = Some(err.to_string());
            BRIDGE_FAILED_EXIT_CODE
        }
    };
    if let Some(path) = status_file
        && let Err(e) = status.write(path)
    {
        eprintln!("dr-syncer-agent ssh-bridge: writing {}: {e}", path.display());
    }
    code
}

#[cfg(test)]
mod cipher_tests {
    use super::*;

    #[test]
    fn aes_gcm_leads_only_with_aes_instructions_and_both_lists_hold_the_same_ciphers() {
        assert!(ciphers(true).starts_with("aes128-gcm@openssh.com,"));
        assert!(ciphers(false).starts_with("chacha20-poly1305@openssh.com,"));
        let mut a: Vec<&str> = ciphers(true).split(',').collect();
        let mut b: Vec<&str> = ciphers(false).split(',').collect();
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!(a, b);
    }
}
