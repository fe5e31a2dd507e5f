//! Group commit, shared by the backends: callers queue batches, and each writer
//! task commits every batch waiting when it becomes free in one transaction.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{StoreError, Write};

/// A batch waiting for a writer, with where to send its outcome.
pub(crate) struct Pending {
    pub writes: Vec<Write>,
    done: oneshot::Sender<Result<i64, StoreError>>,
}

/// Most batches committed in one transaction.
const GROUP_LIMIT: usize = 512;

/// Commits a group of batches in one transaction: each batch succeeds or fails
/// alone on its expectations, and none is answered before the group is durable.
#[async_trait::async_trait]
pub(crate) trait CommitGroup: Send + Sync + 'static {
    /// One outcome per batch, in order: the batch's revision, or why it failed.
    async fn commit_group(&self, group: &[Pending]) -> Vec<Result<i64, StoreError>>;
}

pub(crate) struct WriteQueue {
    sender: mpsc::Sender<Pending>,
}

impl WriteQueue {
    /// Starts `writers` writer tasks on `backend`. One keeps a single-writer
    /// database (SQLite) free of lock waits; a server database takes several, so
    /// a group commits while the next one gathers.
    pub fn start(backend: Arc<dyn CommitGroup>, writers: usize) -> Self {
        let (sender, receiver) = mpsc::channel(4 * GROUP_LIMIT);
        let receiver = Arc::new(Mutex::new(receiver));
        for _ in 0..writers.max(1) {
            tokio::spawn(write_groups(backend.clone(), receiver.clone()));
        }
        Self { sender }
    }

    pub async fn commit(&self, writes: Vec<Write>) -> Result<i64, StoreError> {
        let (done, outcome) = oneshot::channel();
        let stopped = || StoreError::Backend("the store's writer has stopped".into());
        self.sender.send(Pending { writes, done }).await.map_err(|_| stopped())?;
        outcome.await.map_err(|_| stopped())?
    }
}

async fn write_groups(backend: Arc<dyn CommitGroup>, receiver: Arc<Mutex<mpsc::Receiver<Pending>>>) {
    let mut group = Vec::with_capacity(GROUP_LIMIT);
    loop {
        let taken = receiver.lock().await.recv_many(&mut group, GROUP_LIMIT).await;
        if taken == 0 {
            return;
        }
        let outcomes = backend.commit_group(&group).await;
        for (batch, outcome) in group.drain(..).zip(outcomes) {
            let _ = batch.done.send(outcome);
        }
    }
}
