//! What the server grants a CONNECT, and what is left of a session when its
//! connection ends, decided without I/O: client identifier rules, keep-alive and
//! session-expiry clamping, the MQTT 5 CONNACK properties, the client's limits.

use ferrocore_mqtt::{Connect, Properties, ReasonCode, Version};

/// AWS clamps keep-alive to this range; 0 means the maximum.
const KEEP_ALIVE_RANGE: (u16, u16) = (30, 1200);
/// The longest session expiry an MQTT 5 client may ask for (AWS: 7 days).
const MAX_SESSION_EXPIRY_SECS: u64 = 7 * 24 * 3600;
/// QoS 1 messages AWS lets a client leave unacknowledged (outbound, for MQTT 3.1.1),
/// and that it takes from a client before acknowledging (the CONNACK's Receive Maximum).
const V311_RECEIVE_MAXIMUM: u16 = 100;
const RECEIVE_MAXIMUM: u16 = 100;
/// The topic aliases AWS accepts from an MQTT 5 client.
const TOPIC_ALIAS_MAXIMUM: u16 = 8;

/// The server's side of the negotiation.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerLimits {
    pub max_client_id_len: usize,
    pub max_packet_size: usize,
    /// Expiry of MQTT 3.1.1 persistent sessions (AWS: 1 hour), in seconds.
    pub session_expiry_secs: u64,
}

/// What a CONNECT was granted.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Terms {
    /// As sent, or assigned by the server (an empty one with a clean start).
    pub client_id: String,
    pub keep_alive: u16,
    /// How long the session outlives the connection; `None`: it ends with it.
    pub expiry_secs: Option<u64>,
    /// The MQTT 5 CONNACK's properties (empty for 3.1.1).
    pub connack: Properties,
    /// QoS 1 messages the client takes unacknowledged.
    pub receive_maximum: u16,
    /// The largest packet the client takes.
    pub client_max_packet: usize,
    /// Inbound topic aliases allowed.
    pub topic_alias_maximum: u16,
}

fn clamp_keep_alive(requested: u16) -> u16 {
    if requested == 0 { KEEP_ALIVE_RANGE.1 } else { requested.clamp(KEEP_ALIVE_RANGE.0, KEEP_ALIVE_RANGE.1) }
}

/// Grants a CONNECT, or refuses it with CONNACK's reason. `new_id` names a client
/// that sent none (MQTT 5 tells it in CONNACK); `$` starts AWS's reserved ids.
pub(crate) fn negotiate(
    connect: &Connect,
    limits: ServerLimits,
    new_id: impl FnOnce() -> String,
) -> Result<Terms, ReasonCode> {
    let assigned = connect.client_id.is_empty() && connect.clean_start;
    let client_id = if assigned { format!("${}", new_id()) } else { connect.client_id.clone() };
    let reserved = client_id.starts_with('$') && !assigned;
    if client_id.is_empty() || reserved || client_id.len() > limits.max_client_id_len {
        return Err(ReasonCode::ClientIdentifierNotValid);
    }
    let v5 = connect.version == Version::V5;
    let keep_alive = clamp_keep_alive(connect.keep_alive);
    let requested_expiry = connect.properties.session_expiry_interval;
    // MQTT 3.1.1: cleanSession=0 makes the session persistent for AWS's default expiry;
    // MQTT 5: a Session Expiry Interval above 0 (capped at 7 days).
    let expiry_secs = match connect.version {
        Version::V311 => (!connect.clean_start).then_some(limits.session_expiry_secs),
        Version::V5 => {
            requested_expiry.filter(|secs| *secs > 0).map(|secs| u64::from(secs).min(MAX_SESSION_EXPIRY_SECS))
        }
    };
    let mut connack = Properties::default();
    if v5 {
        connack.maximum_qos = Some(1);
        connack.retain_available = Some(1);
        connack.shared_subscription_available = Some(1);
        connack.subscription_identifier_available = Some(0);
        connack.wildcard_subscription_available = Some(1);
        connack.topic_alias_maximum = Some(TOPIC_ALIAS_MAXIMUM);
        connack.receive_maximum = Some(RECEIVE_MAXIMUM);
        connack.maximum_packet_size = u32::try_from(limits.max_packet_size).ok();
        if keep_alive != connect.keep_alive {
            connack.server_keep_alive = Some(keep_alive);
        }
        if assigned {
            connack.assigned_client_identifier = Some(client_id.clone());
        }
        if requested_expiry.is_some_and(|secs| u64::from(secs) > MAX_SESSION_EXPIRY_SECS) {
            connack.session_expiry_interval = u32::try_from(MAX_SESSION_EXPIRY_SECS).ok();
        }
    }
    Ok(Terms {
        client_id,
        keep_alive,
        expiry_secs,
        connack,
        receive_maximum: match connect.version {
            Version::V5 => connect.properties.receive_maximum.unwrap_or(u16::MAX),
            Version::V311 => V311_RECEIVE_MAXIMUM,
        },
        client_max_packet: connect
            .properties
            .maximum_packet_size
            .and_then(|max| usize::try_from(max).ok())
            .unwrap_or(usize::MAX),
        topic_alias_maximum: if v5 { TOPIC_ALIAS_MAXIMUM } else { 0 },
    })
}

/// How long a session outlives its connection: as agreed at CONNECT, changed by an
/// MQTT 5 DISCONNECT's Session Expiry Interval (0 ends it), or not at all when
/// DeleteConnection discarded it.
pub(crate) fn expiry_at_end(agreed: Option<u64>, at_disconnect: Option<u32>, discarded: bool) -> Option<u64> {
    match at_disconnect {
        _ if discarded => None,
        Some(0) => None,
        Some(secs) if agreed.is_some() => Some(u64::from(secs).min(MAX_SESSION_EXPIRY_SECS)),
        _ => agreed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: ServerLimits =
        ServerLimits { max_client_id_len: 128, max_packet_size: 131_072, session_expiry_secs: 3600 };

    fn connect(version: Version, client_id: &str, clean_start: bool, keep_alive: u16) -> Connect {
        Connect {
            version,
            client_id: client_id.into(),
            clean_start,
            keep_alive,
            username: None,
            password: None,
            will: None,
            properties: Properties::default(),
        }
    }

    fn terms(connect: &Connect) -> Result<Terms, ReasonCode> {
        negotiate(connect, LIMITS, || "0123abcd".into())
    }

    #[test]
    fn client_ids_follow_aws_rules() {
        let assigned = terms(&connect(Version::V5, "", true, 60)).unwrap();
        assert_eq!(assigned.client_id, "$0123abcd");
        assert_eq!(assigned.connack.assigned_client_identifier.as_deref(), Some("$0123abcd"));
        assert_eq!(terms(&connect(Version::V311, "", false, 60)), Err(ReasonCode::ClientIdentifierNotValid));
        assert_eq!(terms(&connect(Version::V5, "$aws-reserved", true, 60)), Err(ReasonCode::ClientIdentifierNotValid));
        assert_eq!(terms(&connect(Version::V5, &"x".repeat(129), true, 60)), Err(ReasonCode::ClientIdentifierNotValid));
        let named = terms(&connect(Version::V5, &"x".repeat(128), true, 60)).unwrap();
        assert!(named.connack.assigned_client_identifier.is_none());
    }

    #[test]
    fn keep_alive_is_clamped_and_an_mqtt5_client_is_told() {
        for (asked, granted) in [(0, 1200), (10, 30), (60, 60), (5000, 1200)] {
            let v5 = terms(&connect(Version::V5, "c", true, asked)).unwrap();
            assert_eq!(v5.keep_alive, granted);
            assert_eq!(v5.connack.server_keep_alive, (asked != granted).then_some(granted));
            let v311 = terms(&connect(Version::V311, "c", true, asked)).unwrap();
            assert_eq!(v311.keep_alive, granted);
            assert!(v311.connack.is_empty(), "3.1.1 CONNACKs carry no properties");
        }
    }

    #[test]
    fn session_expiry_follows_the_version_and_is_capped_at_seven_days() {
        assert_eq!(terms(&connect(Version::V311, "c", false, 60)).unwrap().expiry_secs, Some(3600));
        assert_eq!(terms(&connect(Version::V311, "c", true, 60)).unwrap().expiry_secs, None);
        let mut v5 = connect(Version::V5, "c", false, 60);
        assert_eq!(terms(&v5).unwrap().expiry_secs, None, "MQTT 5 without an interval: none");
        v5.properties.session_expiry_interval = Some(600);
        let granted = terms(&v5).unwrap();
        assert_eq!((granted.expiry_secs, granted.connack.session_expiry_interval), (Some(600), None));
        v5.properties.session_expiry_interval = Some(u32::MAX);
        let capped = terms(&v5).unwrap();
        assert_eq!(capped.expiry_secs, Some(MAX_SESSION_EXPIRY_SECS));
        assert_eq!(capped.connack.session_expiry_interval, Some(604_800), "the cap is echoed");
    }

    #[test]
    fn an_mqtt5_connack_announces_what_aws_supports_and_the_client_limits_are_kept() {
        let mut v5 = connect(Version::V5, "c", true, 60);
        v5.properties.receive_maximum = Some(5);
        v5.properties.maximum_packet_size = Some(2048);
        let granted = terms(&v5).unwrap();
        let p = &granted.connack;
        assert_eq!(
            (p.maximum_qos, p.retain_available, p.wildcard_subscription_available, p.shared_subscription_available),
            (Some(1), Some(1), Some(1), Some(1))
        );
        assert_eq!(p.subscription_identifier_available, Some(0));
        assert_eq!(
            (p.topic_alias_maximum, p.receive_maximum, p.maximum_packet_size),
            (Some(8), Some(100), Some(131_072))
        );
        assert_eq!((granted.receive_maximum, granted.client_max_packet, granted.topic_alias_maximum), (5, 2048, 8));
        let v311 = terms(&connect(Version::V311, "c", true, 60)).unwrap();
        assert_eq!((v311.receive_maximum, v311.client_max_packet, v311.topic_alias_maximum), (100, usize::MAX, 0));
    }

    #[test]
    fn a_session_outlives_its_connection_as_agreed_or_as_the_disconnect_says() {
        assert_eq!(expiry_at_end(Some(3600), None, false), Some(3600));
        assert_eq!(expiry_at_end(Some(3600), Some(60), false), Some(60));
        assert_eq!(expiry_at_end(Some(3600), Some(0), false), None);
        assert_eq!(expiry_at_end(Some(3600), Some(u32::MAX), false), Some(MAX_SESSION_EXPIRY_SECS));
        assert_eq!(expiry_at_end(None, Some(60), false), None, "a zero expiry is not raised at DISCONNECT");
        assert_eq!(expiry_at_end(Some(3600), None, true), None, "DeleteConnection with cleanSession");
    }
}
