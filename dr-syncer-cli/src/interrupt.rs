//! SIGINT/SIGTERM: the first asks the running step to stop at its next safe point (the drill returns
//! `Interrupted`, the CLI removes what this run created and exits 130); a second one exits at once.

use tokio::sync::watch;

/// Start listening; the receiver turns true on the first signal.
pub(crate) fn install() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM: {e}");
                return;
            }
        };
        let mut first = true;
        loop {
            tokio::select! {
                r = tokio::signal::ctrl_c() => {
                    if r.is_err() {
                        return;
                    }
                }
                _ = term.recv() => {}
            }
            if !first {
                eprintln!(
                    "dr-syncer-cli: interrupted again: exiting now (run `dr-syncer-cli cleanup` for leftovers)"
                );
                std::process::exit(130);
            }
            first = false;
            eprintln!(
                "dr-syncer-cli: interrupted: stopping at the next safe point and removing what this run created \
                 (interrupt again to exit at once)"
            );
            let _ = tx.send(true);
        }
    });
    rx
}
