//! Shadow requests over MQTT: a publish to `.../shadow/{get,update,delete}` (already
//! authorized by iot:Publish) is answered on `.../accepted` or `.../rejected`, and an
//! accepted update also publishes `delta` and `documents`. Subscribers need
//! iot:Receive on those topics, as for any message.

use ferrocore_registry::shadow_notification;
use ferrocore_shadow::topic::{Operation, ShadowRequest};
use ferrocore_shadow::{ShadowError, error_document, request_token};

use crate::Shared;

/// `hops`: rule actions that led to the request, carried to the answers.
pub(crate) async fn serve(shared: &Shared, request: ShadowRequest<'_>, payload: &[u8], hops: u8) {
    let (thing, shadow, operation) = (request.thing, request.shadow, request.operation);
    let registry = &shared.registry;
    let token = request_token(payload);
    let answered = match (operation, &token) {
        (Operation::Update, _) => {
            registry.update_shadow(thing, shadow, payload).await.map(|updated| updated.notifications)
        }
        (_, Err(invalid)) => Err(invalid.clone()),
        (Operation::Get, Ok(token)) => registry
            .get_shadow(thing, shadow, token.as_deref())
            .await
            .map(|document| vec![shadow_notification(thing, shadow, "get/accepted", &document)]),
        (Operation::Delete, Ok(token)) => {
            registry.delete_shadow(thing, shadow, token.as_deref()).await.map(|deleted| vec![deleted.notification])
        }
    };
    let outcome = if answered.is_ok() { "accepted" } else { "rejected" };
    metrics::counter!("ferrocore_shadow_requests_total", "operation" => operation.as_str(), "outcome" => outcome)
        .increment(1);
    let notifications = answered.unwrap_or_else(|error: ShadowError| {
        let token = token.ok().flatten();
        let suffix = format!("{}/rejected", operation.as_str());
        vec![shadow_notification(thing, shadow, &suffix, &error_document(&error, token.as_deref()))]
    });
    for mut notification in notifications {
        notification.hops = hops;
        shared.publish_from_service(notification).await;
    }
}
