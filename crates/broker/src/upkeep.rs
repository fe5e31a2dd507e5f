//! Session upkeep: loading persistent sessions at start, expiring them while running.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use crate::sessions::SessionWrite;
use crate::{Shared, now_ms, router};

/// Loads the persistent sessions of disconnected clients, with their permissions
/// (in a cluster, those this node parked).
pub(crate) async fn load_sessions(shared: &Shared) -> Result<usize, ferrocore_store::StoreError> {
    shared.sessions.build_node_index().await?;
    let loaded = with_permissions(shared, shared.sessions.load_all().await?).await;
    let queued: usize = loaded.iter().map(|l| l.queue.len()).sum();
    tracing::info!(sessions = loaded.len(), queued, "loaded persistent sessions");
    Ok(shared.router.load(loaded).len())
}

/// Loads the stored session of a client id this node does not hold (in a cluster,
/// one another node let go of, or parked before it died).
pub(crate) async fn load_session(shared: &Shared, client_id: &str) -> Result<(), ferrocore_store::StoreError> {
    if shared.router.holds(client_id) {
        return Ok(());
    }
    let Some(session) = shared.sessions.load_one(client_id).await? else {
        return Ok(());
    };
    take(shared, vec![(client_id.to_string(), session)]).await?;
    Ok(())
}

/// Takes the sessions a node that died had parked, so their messages are queued
/// here until their clients come back (through whichever node).
pub(crate) async fn adopt_sessions(shared: &Shared, node: &str) -> Result<usize, ferrocore_store::StoreError> {
    let parked = shared.sessions.parked_by(node).await?;
    let unheld: Vec<_> = parked.into_iter().filter(|(client_id, _)| !shared.router.holds(client_id)).collect();
    take(shared, unheld).await
}

/// Loads stored sessions into the router and stores them again as this node's.
async fn take(
    shared: &Shared,
    stored: Vec<(String, crate::sessions::StoredSession)>,
) -> Result<usize, ferrocore_store::StoreError> {
    // Stored as this node's from now on: the index entry of the node that stored it goes.
    let own = shared.sessions.node();
    let mut disowned: HashMap<String, String> = stored
        .iter()
        .filter_map(|(client_id, session)| Some((client_id.clone(), session.node.clone()?)))
        .filter(|(_, node)| Some(node.as_str()) != own)
        .collect();
    let loaded = with_permissions(shared, stored).await;
    let mut writes: HashMap<String, SessionWrite> = loaded
        .iter()
        .map(|l| (l.client_id.clone(), SessionWrite::Save { client_id: l.client_id.clone(), record: l.record.clone() }))
        .collect();
    let taken = shared.router.load(loaded);
    let mut kept = Vec::with_capacity(taken.len() * 2);
    for client_id in &taken {
        kept.extend(writes.remove(client_id));
        if let Some(node) = disowned.remove(client_id) {
            kept.push(SessionWrite::Disown { client_id: client_id.clone(), node });
        }
    }
    shared.sessions.apply(kept).await?;
    Ok(taken.len())
}

async fn with_permissions(
    shared: &Shared,
    stored: impl IntoIterator<Item = (String, crate::sessions::StoredSession)>,
) -> Vec<router::Loaded> {
    let mut loaded = Vec::new();
    for (client_id, session) in stored {
        match shared.permissions_of(&session.record.identity, &client_id).await {
            Ok(permissions) => loaded.push(router::Loaded {
                client_id,
                record: session.record,
                permissions: Arc::new(std::sync::RwLock::new(permissions)),
                queue: session.queue,
            }),
            Err(err) => {
                tracing::warn!(client_id = %client_id, error = %err, "dropping a session whose principal is gone")
            }
        }
    }
    loaded
}

/// Removes persistent sessions whose expiry passed.
pub(crate) async fn expire_sessions(shared: Arc<Shared>) {
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let writes = shared.router.expire(now_ms());
        if let Err(err) = shared.sessions.apply(writes).await {
            tracing::warn!(error = %err, "cannot delete expired sessions");
        }
    }
}
