//! Group commit, shared by the backends: callers queue batches, and each writer
//! task commits every batch waiting when it becomes free in one transaction.

use std::sync::Arc;

use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{StoreError, Write, WriteOp};

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

/// The order to apply a batch's writes in, and whether it needs a savepoint. None is
/// needed when every expectation can be checked before the first change: writes of
/// distinct records, no prefix check (it depends on the writes before it), and at most
/// one change with an expectation; then the holds go first, that change next (its
/// statement checks its expectation) and the unconditional changes last. Saving
/// statements matters: each is a round trip (to sqlx's SQLite worker thread, or to
/// the PostgreSQL server).
pub(crate) fn application_order(writes: &[Write]) -> (Vec<&Write>, bool) {
    let conditional = writes.iter().any(Write::is_conditional);
    let checked_changes = writes.iter().filter(|w| w.is_conditional() && w.changes()).count();
    let mut records = std::collections::HashSet::with_capacity(writes.len());
    let distinct = writes.iter().all(|w| records.insert((w.collection, w.key.as_str())));
    let prefix_check = writes.iter().any(|w| w.op == WriteOp::NoneWithPrefix);
    let mut ordered: Vec<&Write> = writes.iter().collect();
    if !conditional {
        return (ordered, false);
    }
    if checked_changes > 1 || !distinct || prefix_check {
        return (ordered, true);
    }
    ordered.sort_by_key(|w| match (w.changes(), w.is_conditional()) {
        (false, _) => 0,
        (true, true) => 1,
        (true, false) => 2,
    });
    (ordered, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Collection, Expect};

    fn keys(order: &[&Write]) -> Vec<String> {
        order.iter().map(|w| w.key.clone()).collect()
    }

    #[test]
    fn a_batch_checked_before_its_first_change_needs_no_savepoint() {
        let c = Collection::Thing;
        let create = [
            Write::put(c, "entry", Expect::Anything, Vec::new()),
            Write::put(c, "thing", Expect::Absent, Vec::new()),
            Write::hold(c, "type", Expect::Revision(3)),
        ];
        let (order, guarded) = application_order(&create);
        assert!(!guarded);
        assert_eq!(keys(&order), ["type", "thing", "entry"], "holds, then the checked change, then the rest");
        let unconditional = [Write::put(c, "b", Expect::Anything, Vec::new()), Write::delete(c, "a", Expect::Anything)];
        assert_eq!(application_order(&unconditional), (unconditional.iter().collect(), false));
    }

    #[test]
    fn batches_that_could_fail_after_a_change_keep_their_order_and_a_savepoint() {
        let c = Collection::Thing;
        let two_checked =
            [Write::put(c, "a", Expect::Absent, Vec::new()), Write::put(c, "b", Expect::Revision(1), Vec::new())];
        let same_record = [Write::delete(c, "a", Expect::Anything), Write::put(c, "a", Expect::Absent, Vec::new())];
        let prefix = [Write::delete(c, "g", Expect::Revision(1)), Write::none_with_prefix(c, "g/")];
        for batch in [&two_checked[..], &same_record[..], &prefix[..]] {
            assert_eq!(application_order(batch), (batch.iter().collect(), true));
        }
    }
}
