//! Re-checks of live certificate connections when the registry changes a record
//! their permissions were computed from: its certificate, CA, things, thing type,
//! groups or policies. Unrelated writes re-check nobody; a revocation re-checks
//! the connections of that certificate only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use ferrocore_registry::{Dependency, DependencyIndex, Permissions};
use tokio::sync::broadcast::error::RecvError;

use ferrocore_model::ResourceKind;

use crate::router::{self, ClientEntry};
use crate::{Identity, Shared};

/// A live connection, as the index knows it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Watched {
    connection: u64,
    client_id: Arc<str>,
}

/// Live certificate connections by the registry records their permissions depend on.
#[derive(Default)]
pub(crate) struct Rechecks {
    index: Mutex<DependencyIndex<Watched>>,
    /// Connections re-checked since the start.
    done: AtomicU64,
}

impl Rechecks {
    fn lock(&self) -> std::sync::MutexGuard<'_, DependencyIndex<Watched>> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(&self, client: &ClientEntry, permissions: &Permissions) {
        let key = Watched { connection: client.connection, client_id: client.client_id.as_str().into() };
        self.lock().insert(key, permissions.dependencies());
    }

    /// Forgets a connection that ended.
    pub(crate) fn unwatch(&self, connection: u64, client_id: &str) {
        self.lock().remove(&Watched { connection, client_id: client_id.into() });
    }

    fn affected(&self, changed: &[Dependency]) -> Vec<Watched> {
        self.lock().affected(changed)
    }

    pub(crate) fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }
}

/// Starts watching a connection the router has just made live. Its permissions
/// were read (from the registry's cache or fresh) when the registry's permission
/// generation was `seen`: if a write committed since, its announcement may have
/// missed the connection, so it is re-checked now. (The entry is taken by value:
/// its delivery sender must not outlive this call.)
pub(crate) async fn watch(shared: &Shared, client: ClientEntry, seen: u64) {
    let Identity::Certificate(_) = &client.identity else {
        return;
    };
    shared.rechecks.insert(&client, &router::current(&client.permissions));
    if seen != shared.registry.permission_generation() {
        revalidate(shared, &client).await;
    }
}

/// Re-checks the connections each registry change can affect; one that fell behind
/// the announcements re-checks every live certificate connection.
pub(crate) async fn run(shared: Arc<Shared>) {
    let mut changes = shared.registry.permission_changes();
    let mut resyncs = shared.registry.resyncs();
    loop {
        let changed = tokio::select! {
            change = changes.recv() => match change {
                Ok(changed) => Some(changed),
                Err(RecvError::Lagged(missed)) => {
                    tracing::warn!(missed, "registry changes came faster than re-checks: re-checking every connection");
                    None
                }
                Err(RecvError::Closed) => return,
            },
            resynced = resyncs.changed() => {
                if resynced.is_err() {
                    return;
                }
                tracing::info!("the registry was read again: re-checking every connection");
                None
            }
        };
        let clients: Vec<ClientEntry> = match changed {
            Some(changed) => shared
                .rechecks
                .affected(&changed)
                .into_iter()
                .filter_map(|watched| shared.router.client(&watched.client_id, watched.connection))
                .collect(),
            None => shared.router.clients(),
        };
        for client in &clients {
            revalidate(&shared, client).await;
        }
    }
}

/// Re-checks one certificate connection: its certificate must still be trusted and
/// its policies must still allow iot:Connect. The connection keeps the new
/// permissions, or loses every permission at once and is told to close. A re-check
/// that cannot read the registry fails closed. (An access key's policy is in the
/// configuration, which does not change while the server runs.)
async fn revalidate(shared: &Shared, client: &ClientEntry) {
    let Identity::Certificate(certificate_id) = &client.identity else {
        return;
    };
    shared.rechecks.done.fetch_add(1, Ordering::Relaxed);
    metrics::counter!("ferrocore_mqtt_permission_rechecks_total").increment(1);
    let client_id = &client.client_id;
    let permissions = if shared.trust.still_trusted(certificate_id) {
        match shared
            .registry
            .connection_permissions(&shared.arn(ResourceKind::Certificate, certificate_id), client_id)
            .await
        {
            Ok(permissions) => {
                Some(permissions).filter(|p| p.allows("iot:Connect", &shared.arn(ResourceKind::Client, client_id)))
            }
            Err(err) => {
                tracing::warn!(client_id = %client_id, error = %err, "cannot re-check permissions: closing the connection");
                None
            }
        }
    } else {
        None
    };
    match permissions {
        Some(permissions) => {
            shared.rechecks.insert(client, &permissions);
            router::replace(&client.permissions, permissions);
            // The connection may have ended meanwhile, and its entry with it.
            if shared.router.client(client_id, client.connection).is_none() {
                shared.rechecks.unwatch(client.connection, client_id);
            }
        }
        None => {
            router::replace(&client.permissions, Arc::new(Permissions::from_policies(Vec::new(), Default::default())));
            client.control.signal(router::Signal::Revoked);
        }
    }
}
