//! Shutdown: one trigger, many listeners, and the events that pull it.
//!
//! The server and every connection handler hold a [`Shutdown`]; whoever owns
//! the [`Trigger`] (main: stdin EOF or SIGTERM; tests: the test) fires it once.
//! A dropped trigger counts as fired, so a handler can never outlive its
//! server by waiting on a signal nobody can send.

use std::io::Read;
use tokio::sync::{oneshot, watch};

/// Sends the shutdown signal.
#[derive(Debug)]
pub struct Trigger(watch::Sender<bool>);

/// Receives the shutdown signal.
#[derive(Debug, Clone)]
pub struct Shutdown(watch::Receiver<bool>);

/// A connected trigger and listener.
pub fn channel() -> (Trigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (Trigger(tx), Shutdown(rx))
}

impl Trigger {
    /// Signals every listener. Idempotent.
    pub fn fire(&self) {
        self.0.send_replace(true);
    }

    /// A new listener.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(self.0.subscribe())
    }
}

impl Shutdown {
    /// Whether shutdown has been signalled (or the trigger dropped).
    pub fn is_shutdown(&self) -> bool {
        *self.0.borrow() || self.0.has_changed().is_err()
    }

    /// Waits until shutdown is signalled. Cancel-safe.
    pub async fn recv(&mut self) {
        // `wait_for` errors only when the trigger is gone: shut down too.
        let _ = self.0.wait_for(|fired| *fired).await;
    }
}

/// Starts watching stdin now; the returned future resolves when stdin
/// reaches end-of-file (or fails).
///
/// The relay runs as a child of a BEAM Port: when the Port closes or its
/// owner's VM dies, the pipe closes and the relay must not linger. Reading is
/// done on a plain thread, so a blocked read never holds up runtime shutdown.
pub fn stdin_eof() -> impl std::future::Future<Output = ()> {
    let (tx, rx) = oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("stdin-watch".into())
        .spawn(move || {
            let mut stdin = std::io::stdin().lock();
            let mut buf = [0u8; 512];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) => break,
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = tx.send(());
        });
    if let Err(e) = &spawned {
        tracing::error!(cause = %e, "cannot watch stdin; exiting rather than risk an orphan");
    }
    // Resolves on EOF, and at once if the thread could not start (its
    // sender is dropped with the closure).
    async move {
        let _ = rx.await;
    }
}

/// Resolves on SIGTERM or SIGINT, naming the signal.
pub async fn terminate_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    let term = signal(SignalKind::terminate());
    let int = signal(SignalKind::interrupt());
    match (term, int) {
        (Ok(mut term), Ok(mut int)) => tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        },
        (Err(e), _) | (_, Err(e)) => {
            tracing::warn!(cause = %e, "cannot install signal handlers; relying on stdin EOF");
            std::future::pending().await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn fire_reaches_every_listener() {
        let (trigger, mut a) = channel();
        let mut b = trigger.subscribe();
        assert!(!a.is_shutdown());
        trigger.fire();
        trigger.fire();
        tokio::time::timeout(Duration::from_secs(1), a.recv())
            .await
            .unwrap();
        tokio::time::timeout(Duration::from_secs(1), b.recv())
            .await
            .unwrap();
        assert!(a.is_shutdown() && b.is_shutdown());
        // A listener cloned after firing sees it at once.
        let mut c = a.clone();
        tokio::time::timeout(Duration::from_secs(1), c.recv())
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn dropped_trigger_counts_as_fired() {
        let (trigger, mut a) = channel();
        drop(trigger);
        assert!(a.is_shutdown());
        tokio::time::timeout(Duration::from_secs(1), a.recv())
            .await
            .unwrap();
    }
}
