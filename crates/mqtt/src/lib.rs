//! MQTT 3.1.1 and 5 for ferrocore's device gateway.
//!
//! One packet model serves both versions ([`Packet`]); [`decode`] reads one packet
//! from a buffer, refusing oversize packets before allocating and malformed input
//! with the reason code MQTT 5 assigns (never a panic); [`encode`] writes one.
//! [`topic`] validates topic names and filters and matches them; [`FilterIndex`] finds
//! the filters matching a topic level by level. Pure: no I/O.

mod codec;
mod filters;
mod packet;
mod properties;
mod state;
pub mod topic;

pub use codec::{DecodeError, PublishRef, decode, encode, encode_publish};
pub use filters::FilterIndex;
pub use packet::*;
pub use properties::Properties;
pub use state::{ConnectionState, InFlight};

/// The protocol level of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    V311,
    V5,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl QoS {
    pub fn from_bits(bits: u8) -> Option<Self> {
        match bits {
            0 => Some(Self::AtMostOnce),
            1 => Some(Self::AtLeastOnce),
            2 => Some(Self::ExactlyOnce),
            _ => None,
        }
    }
}

/// MQTT 5 reason codes (also used internally to describe 3.1.1 failures).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ReasonCode {
    Success = 0x00,
    GrantedQoS1 = 0x01,
    GrantedQoS2 = 0x02,
    /// DISCONNECT: the client leaves and asks for its will to be sent.
    DisconnectWithWill = 0x04,
    NoMatchingSubscribers = 0x10,
    NoSubscriptionExisted = 0x11,
    UnspecifiedError = 0x80,
    MalformedPacket = 0x81,
    ProtocolError = 0x82,
    ImplementationSpecificError = 0x83,
    UnsupportedProtocolVersion = 0x84,
    ClientIdentifierNotValid = 0x85,
    BadUserNameOrPassword = 0x86,
    NotAuthorized = 0x87,
    ServerUnavailable = 0x88,
    ServerBusy = 0x89,
    Banned = 0x8A,
    ServerShuttingDown = 0x8B,
    BadAuthenticationMethod = 0x8C,
    KeepAliveTimeout = 0x8D,
    SessionTakenOver = 0x8E,
    TopicFilterInvalid = 0x8F,
    TopicNameInvalid = 0x90,
    PacketIdentifierInUse = 0x91,
    PacketIdentifierNotFound = 0x92,
    ReceiveMaximumExceeded = 0x93,
    TopicAliasInvalid = 0x94,
    PacketTooLarge = 0x95,
    MessageRateTooHigh = 0x96,
    QuotaExceeded = 0x97,
    AdministrativeAction = 0x98,
    PayloadFormatInvalid = 0x99,
    RetainNotSupported = 0x9A,
    QoSNotSupported = 0x9B,
    UseAnotherServer = 0x9C,
    ServerMoved = 0x9D,
    SharedSubscriptionsNotSupported = 0x9E,
    ConnectionRateExceeded = 0x9F,
    MaximumConnectTime = 0xA0,
    SubscriptionIdentifiersNotSupported = 0xA1,
    WildcardSubscriptionsNotSupported = 0xA2,
}

impl ReasonCode {
    const ALL: [Self; 41] = [
        Self::Success,
        Self::GrantedQoS1,
        Self::GrantedQoS2,
        Self::DisconnectWithWill,
        Self::NoMatchingSubscribers,
        Self::NoSubscriptionExisted,
        Self::UnspecifiedError,
        Self::MalformedPacket,
        Self::ProtocolError,
        Self::ImplementationSpecificError,
        Self::UnsupportedProtocolVersion,
        Self::ClientIdentifierNotValid,
        Self::BadUserNameOrPassword,
        Self::NotAuthorized,
        Self::ServerUnavailable,
        Self::ServerBusy,
        Self::Banned,
        Self::ServerShuttingDown,
        Self::BadAuthenticationMethod,
        Self::KeepAliveTimeout,
        Self::SessionTakenOver,
        Self::TopicFilterInvalid,
        Self::TopicNameInvalid,
        Self::PacketIdentifierInUse,
        Self::PacketIdentifierNotFound,
        Self::ReceiveMaximumExceeded,
        Self::TopicAliasInvalid,
        Self::PacketTooLarge,
        Self::MessageRateTooHigh,
        Self::QuotaExceeded,
        Self::AdministrativeAction,
        Self::PayloadFormatInvalid,
        Self::RetainNotSupported,
        Self::QoSNotSupported,
        Self::UseAnotherServer,
        Self::ServerMoved,
        Self::SharedSubscriptionsNotSupported,
        Self::ConnectionRateExceeded,
        Self::MaximumConnectTime,
        Self::SubscriptionIdentifiersNotSupported,
        Self::WildcardSubscriptionsNotSupported,
    ];

    pub fn from_u8(value: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|code| *code as u8 == value)
    }
}
