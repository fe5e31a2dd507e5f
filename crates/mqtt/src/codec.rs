//! Reading and writing packets. The decoder checks the announced size against
//! the limit before it buffers a packet, and validates every field strictly.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::packet::*;
use crate::properties::Place;
use crate::{Properties, QoS, ReasonCode, Version};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("packet of {size} bytes exceeds the limit of {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("unsupported protocol level {0}")]
    UnsupportedVersion(u8),
}

impl DecodeError {
    /// The MQTT 5 reason code for this failure.
    pub fn reason_code(&self) -> ReasonCode {
        match self {
            Self::Malformed(_) => ReasonCode::MalformedPacket,
            Self::Protocol(_) => ReasonCode::ProtocolError,
            Self::TooLarge { .. } => ReasonCode::PacketTooLarge,
            Self::UnsupportedVersion(_) => ReasonCode::UnsupportedProtocolVersion,
        }
    }
}

/// A cursor over one packet's bytes; payloads are zero-copy slices.
pub(crate) struct Reader {
    data: Bytes,
}

const TRUNCATED: DecodeError = DecodeError::Malformed("the packet ends early");

impl Reader {
    fn new(data: Bytes) -> Self {
        Self { data }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        if self.data.is_empty() {
            return Err(TRUNCATED);
        }
        Ok(self.data.get_u8())
    }

    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        if self.data.len() < 2 {
            return Err(TRUNCATED);
        }
        Ok(self.data.get_u16())
    }

    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        if self.data.len() < 4 {
            return Err(TRUNCATED);
        }
        Ok(self.data.get_u32())
    }

    pub(crate) fn varint(&mut self) -> Result<u32, DecodeError> {
        let mut value = 0u32;
        for i in 0..4 {
            let byte = self.u8()?;
            value |= u32::from(byte & 0x7F) << (7 * i);
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Malformed("a variable byte integer is longer than 4 bytes"))
    }

    pub(crate) fn bytes(&mut self, length: usize) -> Result<Bytes, DecodeError> {
        if self.data.len() < length {
            return Err(TRUNCATED);
        }
        Ok(self.data.split_to(length))
    }

    pub(crate) fn sub(&mut self, length: usize) -> Result<Reader, DecodeError> {
        Ok(Reader::new(self.bytes(length)?))
    }

    pub(crate) fn binary(&mut self) -> Result<Bytes, DecodeError> {
        let length = self.u16()? as usize;
        self.bytes(length)
    }

    pub(crate) fn string(&mut self) -> Result<String, DecodeError> {
        let raw = self.binary()?;
        let text = std::str::from_utf8(&raw).map_err(|_| DecodeError::Malformed("a string is not valid UTF-8"))?;
        if text.contains('\u{0}') {
            return Err(DecodeError::Malformed("a string contains U+0000"));
        }
        Ok(text.to_string())
    }

    fn rest(&mut self) -> Bytes {
        std::mem::take(&mut self.data)
    }
}

pub(crate) fn put_varint(out: &mut BytesMut, mut value: u32) {
    loop {
        let mut byte = (value & 0x7F) as u8;
        value >>= 7;
        if value > 0 {
            byte |= 0x80;
        }
        out.put_u8(byte);
        if value == 0 {
            return;
        }
    }
}

pub(crate) fn put_binary(out: &mut BytesMut, data: &[u8]) {
    out.put_u16(data.len() as u16);
    out.put_slice(data);
}

pub(crate) fn put_string(out: &mut BytesMut, text: &str) {
    put_binary(out, text.as_bytes());
}

/// Reads the fixed header: (first byte, remaining length, header length), or
/// `None` while more bytes are needed.
fn fixed_header(buf: &[u8]) -> Result<Option<(u8, usize, usize)>, DecodeError> {
    let Some(&first) = buf.first() else {
        return Ok(None);
    };
    let mut value = 0usize;
    for i in 0..4 {
        let Some(&byte) = buf.get(1 + i) else {
            return Ok(None);
        };
        value |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Ok(Some((first, value, 2 + i)));
        }
    }
    Err(DecodeError::Malformed("the remaining length is longer than 4 bytes"))
}

fn reason(byte: u8) -> Result<ReasonCode, DecodeError> {
    ReasonCode::from_u8(byte).ok_or(DecodeError::Malformed("unknown reason code"))
}

fn packet_id(reader: &mut Reader) -> Result<u16, DecodeError> {
    match reader.u16()? {
        0 => Err(DecodeError::Protocol("packet identifier 0")),
        id => Ok(id),
    }
}

fn properties(reader: &mut Reader, version: Version, place: Place) -> Result<Properties, DecodeError> {
    match version {
        Version::V5 => Properties::decode(reader, place),
        Version::V311 => Ok(Properties::default()),
    }
}

/// Decodes one packet from the front of `buf`, or answers `None` until a whole
/// packet has arrived. `version` is `None` before CONNECT, whose protocol level
/// decides it. Packets larger than `max_size` are refused from their header alone.
pub fn decode(buf: &mut BytesMut, version: Option<Version>, max_size: usize) -> Result<Option<Packet>, DecodeError> {
    let Some((first, remaining, header)) = fixed_header(buf)? else {
        return Ok(None);
    };
    let size = header + remaining;
    if size > max_size {
        return Err(DecodeError::TooLarge { size, limit: max_size });
    }
    if buf.len() < size {
        buf.reserve(size - buf.len());
        return Ok(None);
    }
    let mut frame = buf.split_to(size).freeze();
    frame.advance(header);
    let mut reader = Reader::new(frame);
    let (kind, flags) = (first >> 4, first & 0x0F);
    let packet = match version {
        None if kind == 1 => decode_connect(&mut reader, flags)?,
        None => return Err(DecodeError::Protocol("the first packet must be CONNECT")),
        Some(version) => decode_after_connect(&mut reader, kind, flags, version)?,
    };
    if !reader.is_empty() {
        return Err(DecodeError::Malformed("the packet has trailing bytes"));
    }
    Ok(Some(packet))
}

fn require_flags(flags: u8, expected: u8) -> Result<(), DecodeError> {
    if flags == expected { Ok(()) } else { Err(DecodeError::Malformed("reserved fixed-header flags are wrong")) }
}

fn decode_connect(reader: &mut Reader, flags: u8) -> Result<Packet, DecodeError> {
    require_flags(flags, 0)?;
    let name = reader.string()?;
    let level = reader.u8()?;
    let version = match (name.as_str(), level) {
        ("MQTT", 4) => Version::V311,
        ("MQTT", 5) => Version::V5,
        ("MQTT" | "MQIsdp", other) => return Err(DecodeError::UnsupportedVersion(other)),
        _ => return Err(DecodeError::Protocol("unknown protocol name")),
    };
    let connect_flags = reader.u8()?;
    if connect_flags & 0x01 != 0 {
        return Err(DecodeError::Malformed("the reserved CONNECT flag is set"));
    }
    let clean_start = connect_flags & 0x02 != 0;
    let has_will = connect_flags & 0x04 != 0;
    let will_qos = QoS::from_bits((connect_flags >> 3) & 0x03).ok_or(DecodeError::Malformed("will QoS 3"))?;
    let will_retain = connect_flags & 0x20 != 0;
    let has_password = connect_flags & 0x40 != 0;
    let has_username = connect_flags & 0x80 != 0;
    if !has_will && (will_qos != QoS::AtMostOnce || will_retain) {
        return Err(DecodeError::Malformed("will QoS or retain without a will"));
    }
    if version == Version::V311 && has_password && !has_username {
        return Err(DecodeError::Malformed("a password without a user name"));
    }
    let keep_alive = reader.u16()?;
    let properties = properties(reader, version, Place::Connect)?;
    let client_id = reader.string()?;
    let will = if has_will {
        let will_properties = match version {
            Version::V5 => Properties::decode(reader, Place::Will)?,
            Version::V311 => Properties::default(),
        };
        let topic = reader.string()?;
        let payload = reader.binary()?;
        Some(Will { topic, payload, qos: will_qos, retain: will_retain, properties: will_properties })
    } else {
        None
    };
    let username = if has_username { Some(reader.string()?) } else { None };
    let password = if has_password { Some(reader.binary()?) } else { None };
    Ok(Packet::Connect(Box::new(Connect {
        version,
        client_id,
        clean_start,
        keep_alive,
        username,
        password,
        will,
        properties,
    })))
}

fn decode_ack(reader: &mut Reader, version: Version) -> Result<Ack, DecodeError> {
    let packet_id = packet_id(reader)?;
    let (mut reason_code, mut props) = (ReasonCode::Success, Properties::default());
    if version == Version::V5 && !reader.is_empty() {
        reason_code = reason(reader.u8()?)?;
        if !reader.is_empty() {
            props = Properties::decode(reader, Place::Ack)?;
        }
    }
    Ok(Ack { packet_id, reason: reason_code, properties: props })
}

fn decode_after_connect(reader: &mut Reader, kind: u8, flags: u8, version: Version) -> Result<Packet, DecodeError> {
    Ok(match kind {
        1 => return Err(DecodeError::Protocol("a second CONNECT")),
        2 => {
            require_flags(flags, 0)?;
            let ack_flags = reader.u8()?;
            if ack_flags & 0xFE != 0 {
                return Err(DecodeError::Malformed("reserved CONNACK flags are set"));
            }
            let code = reader.u8()?;
            let reason_code = match version {
                Version::V5 => reason(code)?,
                Version::V311 => v311_connack_reason(code)?,
            };
            let properties = properties(reader, version, Place::ConnAck)?;
            Packet::ConnAck(ConnAck { session_present: ack_flags & 1 == 1, reason: reason_code, properties })
        }
        3 => {
            let qos = QoS::from_bits((flags >> 1) & 0x03).ok_or(DecodeError::Malformed("PUBLISH with QoS 3"))?;
            let dup = flags & 0x08 != 0;
            if dup && qos == QoS::AtMostOnce {
                return Err(DecodeError::Malformed("DUP set on a QoS 0 PUBLISH"));
            }
            let topic = reader.string()?;
            let packet_id = if qos == QoS::AtMostOnce { None } else { Some(packet_id(reader)?) };
            let properties = properties(reader, version, Place::Publish)?;
            let payload = reader.rest();
            Packet::Publish(Publish { dup, qos, retain: flags & 1 == 1, topic, packet_id, payload, properties })
        }
        4 | 5 | 7 => {
            require_flags(flags, 0)?;
            let ack = decode_ack(reader, version)?;
            match kind {
                4 => Packet::PubAck(ack),
                5 => Packet::PubRec(ack),
                _ => Packet::PubComp(ack),
            }
        }
        6 => {
            require_flags(flags, 0b0010)?;
            Packet::PubRel(decode_ack(reader, version)?)
        }
        8 => {
            require_flags(flags, 0b0010)?;
            let packet_id = packet_id(reader)?;
            let properties = properties(reader, version, Place::Subscribe)?;
            let mut filters = Vec::new();
            while !reader.is_empty() {
                let filter = reader.string()?;
                let options = reader.u8()?;
                let reserved = match version {
                    Version::V311 => 0xFC,
                    Version::V5 => 0xC0,
                };
                if options & reserved != 0 {
                    return Err(DecodeError::Malformed("reserved subscription option bits are set"));
                }
                let qos = QoS::from_bits(options & 0x03).ok_or(DecodeError::Malformed("subscription QoS 3"))?;
                let retain_handling = (options >> 4) & 0x03;
                if retain_handling == 3 {
                    return Err(DecodeError::Malformed("retain handling 3"));
                }
                filters.push((
                    filter,
                    SubscriptionOptions {
                        qos,
                        no_local: options & 0x04 != 0,
                        retain_as_published: options & 0x08 != 0,
                        retain_handling,
                    },
                ));
            }
            if filters.is_empty() {
                return Err(DecodeError::Protocol("SUBSCRIBE without topic filters"));
            }
            Packet::Subscribe(Subscribe { packet_id, filters, properties })
        }
        9 => {
            require_flags(flags, 0)?;
            let packet_id = packet_id(reader)?;
            let properties = properties(reader, version, Place::SubAck)?;
            let mut reasons = Vec::new();
            while !reader.is_empty() {
                reasons.push(reason(reader.u8()?)?);
            }
            Packet::SubAck(SubAck { packet_id, reasons, properties })
        }
        10 => {
            require_flags(flags, 0b0010)?;
            let packet_id = packet_id(reader)?;
            let properties = properties(reader, version, Place::Unsubscribe)?;
            let mut filters = Vec::new();
            while !reader.is_empty() {
                filters.push(reader.string()?);
            }
            if filters.is_empty() {
                return Err(DecodeError::Protocol("UNSUBSCRIBE without topic filters"));
            }
            Packet::Unsubscribe(Unsubscribe { packet_id, filters, properties })
        }
        11 => {
            require_flags(flags, 0)?;
            let packet_id = packet_id(reader)?;
            let properties = properties(reader, version, Place::UnsubAck)?;
            let mut reasons = Vec::new();
            while version == Version::V5 && !reader.is_empty() {
                reasons.push(reason(reader.u8()?)?);
            }
            Packet::UnsubAck(UnsubAck { packet_id, reasons, properties })
        }
        12 => {
            require_flags(flags, 0)?;
            Packet::PingReq
        }
        13 => {
            require_flags(flags, 0)?;
            Packet::PingResp
        }
        14 => {
            require_flags(flags, 0)?;
            let (mut reason_code, mut props) = (ReasonCode::Success, Properties::default());
            if version == Version::V5 && !reader.is_empty() {
                reason_code = reason(reader.u8()?)?;
                if !reader.is_empty() {
                    props = Properties::decode(reader, Place::Disconnect)?;
                }
            }
            Packet::Disconnect(Disconnect { reason: reason_code, properties: props })
        }
        15 if version == Version::V5 => {
            require_flags(flags, 0)?;
            let (mut reason_code, mut props) = (ReasonCode::Success, Properties::default());
            if !reader.is_empty() {
                reason_code = reason(reader.u8()?)?;
                props = Properties::decode(reader, Place::Auth)?;
            }
            Packet::Auth(Auth { reason: reason_code, properties: props })
        }
        _ => return Err(DecodeError::Malformed("reserved packet type")),
    })
}

/// 3.1.1 CONNACK return codes and the MQTT 5 reason codes they correspond to.
const V311_CONNACK: [(u8, ReasonCode); 6] = [
    (0, ReasonCode::Success),
    (1, ReasonCode::UnsupportedProtocolVersion),
    (2, ReasonCode::ClientIdentifierNotValid),
    (3, ReasonCode::ServerUnavailable),
    (4, ReasonCode::BadUserNameOrPassword),
    (5, ReasonCode::NotAuthorized),
];

fn v311_connack_reason(code: u8) -> Result<ReasonCode, DecodeError> {
    V311_CONNACK
        .iter()
        .find(|(c, _)| *c == code)
        .map(|(_, r)| *r)
        .ok_or(DecodeError::Malformed("unknown CONNACK return code"))
}

fn v311_connack_code(reason: ReasonCode) -> u8 {
    V311_CONNACK.iter().find(|(_, r)| *r == reason).map_or(3, |(c, _)| *c)
}

fn v311_suback_code(reason: ReasonCode) -> u8 {
    match reason {
        ReasonCode::Success => 0,
        ReasonCode::GrantedQoS1 => 1,
        ReasonCode::GrantedQoS2 => 2,
        _ => 0x80,
    }
}

fn encode_ack(body: &mut BytesMut, ack: &Ack, version: Version) {
    body.put_u16(ack.packet_id);
    if version == Version::V5 && (ack.reason != ReasonCode::Success || !ack.properties.is_empty()) {
        body.put_u8(ack.reason as u8);
        if !ack.properties.is_empty() {
            ack.properties.encode(body);
        }
    }
}

/// The parts of a PUBLISH, borrowed: the broker writes one per delivery from a
/// message shared by every subscriber, without copying it into a [`Publish`].
#[derive(Debug, Clone, Copy)]
pub struct PublishRef<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    pub qos: QoS,
    pub retain: bool,
    pub dup: bool,
    pub packet_id: Option<u16>,
    pub properties: &'a Properties,
}

impl<'a> From<&'a Publish> for PublishRef<'a> {
    fn from(publish: &'a Publish) -> Self {
        Self {
            topic: &publish.topic,
            payload: &publish.payload,
            qos: publish.qos,
            retain: publish.retain,
            dup: publish.dup,
            packet_id: publish.packet_id,
            properties: &publish.properties,
        }
    }
}

/// Encodes a PUBLISH straight into `out` (no intermediate body).
pub fn encode_publish(publish: PublishRef<'_>, version: Version, out: &mut BytesMut) {
    let properties = match version {
        Version::V5 if !publish.properties.is_empty() => {
            let mut encoded = BytesMut::new();
            publish.properties.encode(&mut encoded);
            Some(encoded)
        }
        _ => None,
    };
    let properties_len = match (version, &properties) {
        (Version::V311, _) => 0,
        (Version::V5, None) => 1,
        (Version::V5, Some(encoded)) => encoded.len(),
    };
    let remaining =
        2 + publish.topic.len() + 2 * usize::from(publish.packet_id.is_some()) + properties_len + publish.payload.len();
    let flags = (u8::from(publish.dup) << 3) | ((publish.qos as u8) << 1) | u8::from(publish.retain);
    out.reserve(5 + remaining);
    out.put_u8((3 << 4) | flags);
    put_varint(out, remaining as u32);
    put_string(out, publish.topic);
    if let Some(id) = publish.packet_id {
        out.put_u16(id);
    }
    match (version, properties) {
        (Version::V311, _) => {}
        (Version::V5, None) => out.put_u8(0),
        (Version::V5, Some(encoded)) => out.put_slice(&encoded),
    }
    out.put_slice(publish.payload);
}

/// Encodes `packet` for a connection speaking `version`.
pub fn encode(packet: &Packet, version: Version, out: &mut BytesMut) {
    if let Packet::Publish(publish) = packet {
        return encode_publish(publish.into(), version, out);
    }
    let v5 = version == Version::V5;
    let mut body = BytesMut::new();
    let flags = match packet {
        Packet::Connect(connect) => {
            put_string(&mut body, "MQTT");
            body.put_u8(if connect.version == Version::V5 { 5 } else { 4 });
            let mut connect_flags = 0u8;
            if connect.clean_start {
                connect_flags |= 0x02;
            }
            if let Some(will) = &connect.will {
                connect_flags |= 0x04 | ((will.qos as u8) << 3) | if will.retain { 0x20 } else { 0 };
            }
            if connect.password.is_some() {
                connect_flags |= 0x40;
            }
            if connect.username.is_some() {
                connect_flags |= 0x80;
            }
            body.put_u8(connect_flags);
            body.put_u16(connect.keep_alive);
            let connect_v5 = connect.version == Version::V5;
            if connect_v5 {
                connect.properties.encode(&mut body);
            }
            put_string(&mut body, &connect.client_id);
            if let Some(will) = &connect.will {
                if connect_v5 {
                    will.properties.encode(&mut body);
                }
                put_string(&mut body, &will.topic);
                put_binary(&mut body, &will.payload);
            }
            if let Some(username) = &connect.username {
                put_string(&mut body, username);
            }
            if let Some(password) = &connect.password {
                put_binary(&mut body, password);
            }
            0
        }
        Packet::ConnAck(ack) => {
            body.put_u8(u8::from(ack.session_present));
            if v5 {
                body.put_u8(ack.reason as u8);
                ack.properties.encode(&mut body);
            } else {
                body.put_u8(v311_connack_code(ack.reason));
            }
            0
        }
        Packet::Publish(_) => unreachable!("encoded by encode_publish"),
        Packet::PubAck(ack) | Packet::PubRec(ack) | Packet::PubComp(ack) => {
            encode_ack(&mut body, ack, version);
            0
        }
        Packet::PubRel(ack) => {
            encode_ack(&mut body, ack, version);
            0b0010
        }
        Packet::Subscribe(subscribe) => {
            body.put_u16(subscribe.packet_id);
            if v5 {
                subscribe.properties.encode(&mut body);
            }
            for (filter, options) in &subscribe.filters {
                put_string(&mut body, filter);
                let mut byte = options.qos as u8;
                if v5 {
                    byte |= (u8::from(options.no_local) << 2)
                        | (u8::from(options.retain_as_published) << 3)
                        | (options.retain_handling << 4);
                }
                body.put_u8(byte);
            }
            0b0010
        }
        Packet::SubAck(ack) => {
            body.put_u16(ack.packet_id);
            if v5 {
                ack.properties.encode(&mut body);
            }
            for reason in &ack.reasons {
                body.put_u8(if v5 { *reason as u8 } else { v311_suback_code(*reason) });
            }
            0
        }
        Packet::Unsubscribe(unsubscribe) => {
            body.put_u16(unsubscribe.packet_id);
            if v5 {
                unsubscribe.properties.encode(&mut body);
            }
            for filter in &unsubscribe.filters {
                put_string(&mut body, filter);
            }
            0b0010
        }
        Packet::UnsubAck(ack) => {
            body.put_u16(ack.packet_id);
            if v5 {
                ack.properties.encode(&mut body);
                for reason in &ack.reasons {
                    body.put_u8(*reason as u8);
                }
            }
            0
        }
        Packet::PingReq | Packet::PingResp => 0,
        Packet::Disconnect(disconnect) => {
            if v5 && (disconnect.reason != ReasonCode::Success || !disconnect.properties.is_empty()) {
                body.put_u8(disconnect.reason as u8);
                disconnect.properties.encode(&mut body);
            }
            0
        }
        Packet::Auth(auth) => {
            body.put_u8(auth.reason as u8);
            auth.properties.encode(&mut body);
            0
        }
    };
    out.put_u8((packet.kind() << 4) | flags);
    put_varint(out, body.len() as u32);
    out.put_slice(&body);
}
