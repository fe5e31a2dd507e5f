//! Session upkeep: loading persistent sessions at start, expiring them while running.

use std::sync::Arc;
use std::time::Duration;

use crate::{Shared, now_ms, router};

/// Loads the persistent sessions of disconnected clients, with their permissions
/// (in a cluster, those this node parked).
pub(crate) async fn load_sessions(shared: &Shared) -> Result<(), ferrocore_store::StoreError> {
    let loaded = with_permissions(shared, shared.sessions.load_all().await?).await;
    let queued: usize = loaded.iter().map(|l| l.queue.len()).sum();
    tracing::info!(sessions = loaded.len(), queued, "loaded persistent sessions");
    shared.router.load(loaded);
    Ok(())
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
    shared.router.load(with_permissions(shared, [(client_id.to_string(), session)]).await);
    Ok(())
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
