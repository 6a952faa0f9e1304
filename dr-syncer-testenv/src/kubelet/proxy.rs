//! TCP forwarding inside a node's network namespace: the simulated kube-proxy's NodePort and
//! load-balancer listeners. A listener thread entered the namespace (`setns`), so the listening socket,
//! the upstream connections and the copy threads it starts all live there.

use std::{
    fmt, io,
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
        mpsc,
    },
    thread,
    time::Duration,
};

/// How often a listener checks whether it must stop.
const POLL: Duration = Duration::from_millis(50);
/// Upper bound for connecting to an endpoint.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// A running forwarder; dropping it closes the listener (within [`POLL`]). Connections already
/// forwarded continue until either side closes, as conntrack entries outlive a kube-proxy rule.
pub(crate) struct Proxy {
    stop: Arc<AtomicBool>,
}

impl fmt::Debug for Proxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Proxy")
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Listen on `listen` inside namespace `netns` and forward every connection to `target`.
pub(crate) fn start(netns: &str, listen: SocketAddr, target: SocketAddr) -> io::Result<Proxy> {
    let file = std::fs::File::open(format!("/run/netns/{netns}"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = mpsc::channel();
    let flag = stop.clone();
    thread::Builder::new()
        .name(format!("proxy-{listen}"))
        .spawn(move || {
            let listener = nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(io::Error::from)
                .and_then(|()| TcpListener::bind(listen))
                .and_then(|l| l.set_nonblocking(true).map(|()| l));
            let listener = match listener {
                Ok(l) => {
                    let _ = tx.send(Ok(()));
                    l
                }
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
            };
            drop(file);
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let _ = thread::Builder::new()
                            .name(format!("proxy-conn-{listen}"))
                            .spawn(move || forward(client, target));
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => thread::sleep(POLL),
                    Err(e) => {
                        tracing::debug!(%listen, error = %e, "simulated kube-proxy: accept");
                        thread::sleep(POLL);
                    }
                }
            }
        })?;
    rx.recv()
        .map_err(|_| io::Error::other("the listener thread ended"))??;
    Ok(Proxy { stop })
}

/// Connect to `target` and copy both ways until both sides are done.
fn forward(client: TcpStream, target: SocketAddr) {
    let _ = client.set_nonblocking(false);
    let upstream = match TcpStream::connect_timeout(&target, CONNECT_TIMEOUT) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!(%target, error = %e, "simulated kube-proxy: endpoint unreachable");
            return;
        }
    };
    let (Ok(client2), Ok(upstream2)) = (client.try_clone(), upstream.try_clone()) else {
        return;
    };
    let back = thread::spawn(move || pump(upstream2, client2));
    pump(client, upstream);
    let _ = back.join();
}

fn pump(mut from: TcpStream, mut to: TcpStream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}
