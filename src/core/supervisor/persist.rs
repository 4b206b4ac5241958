//! Writing the persisted state off the actor's thread.
//!
//! The actor hands every new version of its [`PersistedState`] to one writer task and goes on at once;
//! the task writes the latest version it has (older ones it has not reached yet are skipped: each
//! version contains everything before it) through [`StateStore::save`] on the blocking pool. Owns the
//! state file's writes; it never reads or changes service state.
//!
//! Durability: a change is on disk a few milliseconds after the actor made it, in order; a crash of tend
//! in that window loses at most the latest changes (the services' processes are found again by their
//! records of the version before). Before tend leaves its services to another tend (hand-over, reexec)
//! and before it exits, [`Persister::flush`] waits until the latest version is written.

use super::*;

/// The actor's end of the writer task.
#[derive(Debug)]
pub(super) struct Persister {
    latest: watch::Sender<Version>,
    flushed: mpsc::UnboundedSender<oneshot::Sender<()>>,
}

/// One version of the state, numbered so the writer knows what it has written.
#[derive(Debug, Clone, Default)]
struct Version {
    number: u64,
    state: Option<Arc<PersistedState>>,
}

impl Persister {
    /// Starts the writer task.
    pub(super) fn spawn(store: StateStore) -> Persister {
        let (latest, versions) = watch::channel(Version::default());
        let (flushed, flushes) = mpsc::unbounded_channel();
        tokio::spawn(write_versions(store, versions, flushes));
        Persister { latest, flushed }
    }

    /// Queues `state` as the newest version; returns at once.
    pub(super) fn save(&self, state: &PersistedState) {
        let state = Arc::new(state.clone());
        self.latest.send_modify(|v| {
            v.number += 1;
            v.state = Some(state);
        });
    }

    /// Waits until every version queued so far is written (or failed and was logged).
    pub(super) async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.flushed.send(done).is_ok() {
            let _ = written.await;
        }
    }
}

async fn write_versions(
    store: StateStore,
    mut versions: watch::Receiver<Version>,
    mut flushes: mpsc::UnboundedReceiver<oneshot::Sender<()>>,
) {
    let store = Arc::new(store);
    let mut written = 0u64;
    loop {
        let flush = tokio::select! {
            changed = versions.changed() => {
                if changed.is_err() {
                    // The actor is gone; what it queued last is written below.
                    write_latest(&store, &mut versions, &mut written).await;
                    return;
                }
                None
            }
            Some(done) = flushes.recv() => Some(done),
        };
        write_latest(&store, &mut versions, &mut written).await;
        if let Some(done) = flush {
            let _ = done.send(());
        }
    }
}

/// Writes the newest version if it is newer than the last one written.
async fn write_latest(
    store: &Arc<StateStore>,
    versions: &mut watch::Receiver<Version>,
    written: &mut u64,
) {
    let version = versions.borrow_and_update().clone();
    let Some(state) = version.state.filter(|_| version.number > *written) else {
        return;
    };
    let store = store.clone();
    let result = tokio::task::spawn_blocking(move || store.save(&state)).await;
    match result {
        Ok(Ok(())) => {}
        Ok(Err(err)) => tracing::error!("cannot save state (start history, sticky stops): {err}"),
        Err(err) => tracing::error!("the state writer failed: {err}"),
    }
    *written = version.number;
}
