//! Differential tests against an established codec (mqttbytes, from the rumqtt
//! project): what one encodes, the other decodes to the same packet.

use bytes::{Bytes, BytesMut};
use ferrocore_mqtt::{Packet, Properties, Publish, QoS, Subscribe, SubscriptionOptions, Version, decode, encode};
use mqttbytes::v4;
use proptest::prelude::*;

fn their_qos(qos: QoS) -> mqttbytes::QoS {
    match qos {
        QoS::AtMostOnce => mqttbytes::QoS::AtMostOnce,
        QoS::AtLeastOnce => mqttbytes::QoS::AtLeastOnce,
        QoS::ExactlyOnce => mqttbytes::QoS::ExactlyOnce,
    }
}

fn qos() -> impl Strategy<Value = QoS> {
    prop::sample::select(vec![QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce])
}

proptest! {
    #[test]
    fn publish_agrees(topic in "[a-z0-9]{1,8}(/[a-z0-9]{1,8}){0,3}", qos in qos(), retain in any::<bool>(), id in 1..=u16::MAX, payload in prop::collection::vec(any::<u8>(), 0..200)) {
        let ours = Publish {
            dup: false,
            qos,
            retain,
            topic: topic.clone(),
            packet_id: (qos != QoS::AtMostOnce).then_some(id),
            payload: Bytes::from(payload.clone()),
            properties: Properties::default(),
        };
        let mut theirs = v4::Publish::new(topic, their_qos(qos), payload);
        theirs.retain = retain;
        theirs.pkid = if qos == QoS::AtMostOnce { 0 } else { id };

        let mut buf = BytesMut::new();
        encode(&Packet::Publish(ours.clone()), Version::V311, &mut buf);
        prop_assert_eq!(v4::read(&mut buf, 1 << 20).unwrap(), v4::Packet::Publish(theirs.clone()));

        let mut buf = BytesMut::new();
        theirs.write(&mut buf).unwrap();
        prop_assert_eq!(decode(&mut buf, Some(Version::V311), 1 << 20).unwrap(), Some(Packet::Publish(ours)));
    }

    #[test]
    fn subscribe_agrees(id in 1..=u16::MAX, filters in prop::collection::vec(("[a-z+]{1,6}(/[a-z+#]{1,6}){0,2}", qos()), 1..6)) {
        let ours = Subscribe {
            packet_id: id,
            filters: filters
                .iter()
                .map(|(f, q)| (f.clone(), SubscriptionOptions { qos: *q, no_local: false, retain_as_published: false, retain_handling: 0 }))
                .collect(),
            properties: Properties::default(),
        };
        let theirs = v4::Subscribe {
            pkid: id,
            filters: filters.iter().map(|(f, q)| v4::SubscribeFilter::new(f.clone(), their_qos(*q))).collect(),
        };
        let mut buf = BytesMut::new();
        encode(&Packet::Subscribe(ours.clone()), Version::V311, &mut buf);
        prop_assert_eq!(v4::read(&mut buf, 1 << 20).unwrap(), v4::Packet::Subscribe(theirs.clone()));

        let mut buf = BytesMut::new();
        theirs.write(&mut buf).unwrap();
        prop_assert_eq!(decode(&mut buf, Some(Version::V311), 1 << 20).unwrap(), Some(Packet::Subscribe(ours)));
    }
}
