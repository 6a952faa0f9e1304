//! The reader's health endpoint: `GET /healthz` and `GET /readyz` answer 200 while sshd runs and
//! greets on its port with an SSH banner, 503 otherwise. A minimal HTTP/1.1 responder (one request per
//! connection), enough for kubelet probes and curl.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// Whether the SSH service works.
#[derive(Debug, Clone)]
pub struct SshCheck {
    /// Where sshd listens (an address to connect to).
    pub address: SocketAddr,
    /// Whether the sshd process is alive.
    pub alive: Arc<std::sync::atomic::AtomicBool>,
}

impl SshCheck {
    /// sshd is alive and answers with an `SSH-2.0-` banner within two seconds.
    pub async fn healthy(&self) -> bool {
        if !self.alive.load(std::sync::atomic::Ordering::SeqCst) {
            return false;
        }
        let banner = async {
            let mut stream = TcpStream::connect(self.address).await.ok()?;
            let mut buf = [0u8; 8];
            stream.read_exact(&mut buf).await.ok()?;
            Some(buf.starts_with(b"SSH-2.0-"))
        };
        matches!(
            tokio::time::timeout(Duration::from_secs(2), banner).await,
            Ok(Some(true))
        )
    }
}

/// Serve health requests on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, check: SshCheck) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            continue;
        };
        let check = check.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 2048];
            let mut len = 0;
            // Read the request head (bounded in size and time).
            let head = tokio::time::timeout(Duration::from_secs(5), async {
                while len < buf.len() {
                    match stream.read(&mut buf[len..]).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => len += n,
                    }
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || buf[..len].contains(&b'\n') {
                        break;
                    }
                }
            })
            .await;
            if head.is_err() {
                return;
            }
            let request = String::from_utf8_lossy(&buf[..len]);
            let path = request.split_whitespace().nth(1).unwrap_or("");
            let (status, body) = match (request.split_whitespace().next(), path) {
                (Some("GET"), "/healthz" | "/readyz") if check.healthy().await => ("200 OK", "ok\n"),
                (Some("GET"), "/healthz" | "/readyz") => ("503 Service Unavailable", "sshd is not serving\n"),
                _ => ("404 Not Found", "not found\n"),
            };
            let response = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(response.as_bytes()).await;
            let _ = stream.shutdown().await;
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicBool;

    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn answers_by_the_ssh_banner() {
        // A fake sshd that greets.
        let ssh = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let ssh_addr = ssh.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                if let Ok((mut s, _)) = ssh.accept().await {
                    let _ = s.write_all(b"SSH-2.0-OpenSSH_9.2\r\n").await;
                }
            }
        });
        let alive = Arc::new(AtomicBool::new(true));
        let health = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = health.local_addr().unwrap();
        tokio::spawn(serve(
            health,
            SshCheck {
                address: ssh_addr,
                alive: alive.clone(),
            },
        ));
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200 OK"));
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200 OK"));
        assert!(get(addr, "/other").await.starts_with("HTTP/1.1 404"));
        alive.store(false, std::sync::atomic::Ordering::SeqCst);
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 503"));

        // Alive but nothing listening.
        alive.store(true, std::sync::atomic::Ordering::SeqCst);
        let free = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap()
            .local_addr()
            .unwrap();
        let check = SshCheck { address: free, alive };
        assert!(!check.healthy().await);
    }
}
