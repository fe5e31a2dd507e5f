//! Round trips for every packet in both versions, known wire bytes, and hostile input.

use bytes::{Bytes, BytesMut};
use ferrocore_mqtt::*;
use proptest::prelude::*;

const LIMIT: usize = 1 << 20;

fn round_trip(packet: &Packet, version: Version) -> Packet {
    let mut buf = BytesMut::new();
    encode(packet, version, &mut buf);
    let session = if matches!(packet, Packet::Connect(_)) { None } else { Some(version) };
    let decoded = decode(&mut buf, session, LIMIT).expect("decodes").expect("complete");
    assert!(buf.is_empty(), "one packet, fully consumed");
    decoded
}

fn text() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9/_$-]{0,20}"
}

fn topic_name() -> impl Strategy<Value = String> {
    "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,3}"
}

fn qos() -> impl Strategy<Value = QoS> {
    prop::sample::select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

fn properties(v5: bool) -> impl Strategy<Value = Properties> {
    (prop::option::of(any::<u32>()), prop::option::of(text()), prop::collection::vec((text(), text()), 0..3)).prop_map(
        move |(expiry, content_type, user)| {
            if !v5 {
                return Properties::default();
            }
            Properties { message_expiry_interval: expiry, content_type, user_properties: user, ..Properties::default() }
        },
    )
}

fn publish(v5: bool) -> impl Strategy<Value = Packet> {
    (
        topic_name(),
        qos(),
        any::<bool>(),
        any::<bool>(),
        1..=u16::MAX,
        prop::collection::vec(any::<u8>(), 0..64),
        properties(v5),
    )
        .prop_map(|(topic, qos, retain, dup, id, payload, properties)| {
            let qos0 = qos == QoS::AtMostOnce;
            Packet::Publish(Publish {
                dup: dup && !qos0,
                qos,
                retain,
                topic,
                packet_id: (!qos0).then_some(id),
                payload: Bytes::from(payload),
                properties,
            })
        })
}

fn connect(version: Version) -> impl Strategy<Value = Packet> {
    let v5 = version == Version::V5;
    (
        text(),
        any::<bool>(),
        any::<u16>(),
        prop::option::of(text()),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..16)),
        prop::option::of((topic_name(), qos(), any::<bool>(), prop::collection::vec(any::<u8>(), 0..16))),
    )
        .prop_map(move |(client_id, clean_start, keep_alive, username, password, will)| {
            let username = if password.is_some() && !v5 { Some(username.unwrap_or_default()) } else { username };
            Packet::Connect(Box::new(Connect {
                version,
                client_id,
                clean_start,
                keep_alive,
                username,
                password: password.map(Bytes::from),
                will: will.map(|(topic, qos, retain, payload)| Will {
                    topic,
                    payload: Bytes::from(payload),
                    qos,
                    retain,
                    properties: Properties::default(),
                }),
                properties: if v5 {
                    Properties { session_expiry_interval: Some(3600), receive_maximum: Some(10), ..Default::default() }
                } else {
                    Properties::default()
                },
            }))
        })
}

fn acks(v5: bool) -> impl Strategy<Value = Packet> {
    let reasons = if v5 {
        vec![ReasonCode::Success, ReasonCode::NoMatchingSubscribers, ReasonCode::NotAuthorized]
    } else {
        vec![ReasonCode::Success]
    };
    (1..=u16::MAX, prop::sample::select(reasons), 0..4u8).prop_map(|(packet_id, reason, kind)| {
        let ack = Ack { packet_id, reason, properties: Properties::default() };
        match kind {
            0 => Packet::PubAck(ack),
            1 => Packet::PubRec(ack),
            2 => Packet::PubRel(ack),
            _ => Packet::PubComp(ack),
        }
    })
}

fn subscribe(v5: bool) -> impl Strategy<Value = Packet> {
    (1..=u16::MAX, prop::collection::vec((topic_name(), qos(), any::<bool>(), 0..3u8), 1..5)).prop_map(
        move |(packet_id, filters)| {
            Packet::Subscribe(Subscribe {
                packet_id,
                filters: filters
                    .into_iter()
                    .map(|(f, qos, flag, handling)| {
                        let options = SubscriptionOptions {
                            qos,
                            no_local: v5 && flag,
                            retain_as_published: v5 && flag,
                            retain_handling: if v5 { handling } else { 0 },
                        };
                        (f, options)
                    })
                    .collect(),
                properties: Properties::default(),
            })
        },
    )
}

fn server_packets(v5: bool) -> impl Strategy<Value = Packet> {
    let suback_reasons = if v5 {
        vec![ReasonCode::Success, ReasonCode::GrantedQoS1, ReasonCode::NotAuthorized]
    } else {
        vec![ReasonCode::Success, ReasonCode::GrantedQoS1, ReasonCode::UnspecifiedError]
    };
    prop_oneof![
        (any::<bool>(), prop::sample::select(vec![ReasonCode::Success, ReasonCode::NotAuthorized])).prop_map(
            |(present, reason)| {
                Packet::ConnAck(ConnAck { session_present: present, reason, properties: Properties::default() })
            }
        ),
        (1..=u16::MAX, prop::collection::vec(prop::sample::select(suback_reasons), 1..5)).prop_map(
            |(packet_id, reasons)| Packet::SubAck(SubAck { packet_id, reasons, properties: Properties::default() })
        ),
        (1..=u16::MAX, prop::collection::vec(topic_name(), 1..4)).prop_map(|(packet_id, filters)| Packet::Unsubscribe(
            Unsubscribe { packet_id, filters, properties: Properties::default() }
        )),
        Just(Packet::PingReq),
        Just(Packet::PingResp),
        Just(Packet::Disconnect(Disconnect { reason: ReasonCode::Success, properties: Properties::default() })),
    ]
}

proptest! {
    #[test]
    fn v311_round_trips(packet in prop_oneof![connect(Version::V311), publish(false), acks(false), subscribe(false), server_packets(false)]) {
        prop_assert_eq!(round_trip(&packet, Version::V311), packet);
    }

    #[test]
    fn v5_round_trips(packet in prop_oneof![connect(Version::V5), publish(true), acks(true), subscribe(true), server_packets(true)]) {
        prop_assert_eq!(round_trip(&packet, Version::V5), packet);
    }

    /// Arbitrary bytes never panic the decoder, before or after CONNECT.
    #[test]
    fn hostile_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..256), v5 in any::<bool>(), connected in any::<bool>()) {
        let version = connected.then_some(if v5 { Version::V5 } else { Version::V311 });
        let mut buf = BytesMut::from(&bytes[..]);
        while let Ok(Some(_)) = decode(&mut buf, version, 1024) {}
    }

    /// A packet split at any point decodes once the rest arrives.
    #[test]
    fn partial_input_waits(packet in publish(true), split in 0usize..80) {
        let mut whole = BytesMut::new();
        encode(&packet, Version::V5, &mut whole);
        let split = split.min(whole.len() - 1);
        let mut buf = BytesMut::from(&whole[..split]);
        prop_assert_eq!(decode(&mut buf, Some(Version::V5), LIMIT), Ok(None));
        buf.extend_from_slice(&whole[split..]);
        prop_assert_eq!(decode(&mut buf, Some(Version::V5), LIMIT).unwrap(), Some(packet));
    }
}

#[test]
fn known_connect_bytes() {
    // CONNECT, MQTT 3.1.1, clean session, keep-alive 60, client id "dev1".
    let mut buf =
        BytesMut::from(&[0x10, 16, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 4, b'd', b'e', b'v', b'1'][..]);
    let Some(Packet::Connect(connect)) = decode(&mut buf, None, LIMIT).unwrap() else { panic!("not a CONNECT") };
    assert_eq!(
        (connect.version, connect.client_id.as_str(), connect.keep_alive, connect.clean_start),
        (Version::V311, "dev1", 60, true)
    );
}

#[test]
fn oversize_packets_are_refused_from_the_header() {
    // PUBLISH announcing 200 MB: refused before any body byte arrives.
    let mut buf = BytesMut::from(&[0x30, 0x80, 0x80, 0x80, 0x60][..]);
    let err = decode(&mut buf, Some(Version::V311), 128 * 1024).unwrap_err();
    assert!(matches!(err, DecodeError::TooLarge { .. }));
    assert_eq!(err.reason_code(), ReasonCode::PacketTooLarge);
}

#[test]
fn malformed_and_protocol_errors_have_reason_codes() {
    let cases: Vec<(Vec<u8>, Option<Version>, ReasonCode)> = vec![
        // PUBLISH with QoS 3
        (vec![0x36, 3, 0, 1, b'a'], Some(Version::V311), ReasonCode::MalformedPacket),
        // SUBSCRIBE with wrong reserved flags
        (vec![0x80, 6, 0, 1, 0, 1, b'a', 0], Some(Version::V311), ReasonCode::MalformedPacket),
        // SUBSCRIBE without filters
        (vec![0x82, 2, 0, 1], Some(Version::V311), ReasonCode::ProtocolError),
        // CONNECT with protocol level 3 (MQTT 3.1)
        (
            vec![0x10, 14, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 2, 0, 60, 0, 0],
            None,
            ReasonCode::UnsupportedProtocolVersion,
        ),
        // a first packet that is not CONNECT
        (vec![0xC0, 0], None, ReasonCode::ProtocolError),
        // PUBLISH with a topic that is not UTF-8
        (vec![0x30, 4, 0, 2, 0xFF, 0xFE], Some(Version::V311), ReasonCode::MalformedPacket),
        // a remaining length longer than four bytes
        (vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01], Some(Version::V311), ReasonCode::MalformedPacket),
        // PUBACK with packet id 0
        (vec![0x40, 2, 0, 0], Some(Version::V311), ReasonCode::ProtocolError),
    ];
    for (bytes, version, expected) in cases {
        let mut buf = BytesMut::from(&bytes[..]);
        let err = decode(&mut buf, version, LIMIT).expect_err(&format!("{bytes:02x?}"));
        assert_eq!(err.reason_code(), expected, "{bytes:02x?}: {err}");
    }
}
