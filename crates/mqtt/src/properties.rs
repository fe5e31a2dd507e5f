//! MQTT 5 properties: one struct for every packet, checked on decode against the
//! properties each packet may carry.

use bytes::{BufMut, Bytes, BytesMut};

use crate::codec::{DecodeError, Reader, put_binary, put_string, put_varint};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Properties {
    pub payload_format_indicator: Option<u8>,
    pub message_expiry_interval: Option<u32>,
    pub content_type: Option<String>,
    pub response_topic: Option<String>,
    pub correlation_data: Option<Bytes>,
    pub subscription_identifiers: Vec<u32>,
    pub session_expiry_interval: Option<u32>,
    pub assigned_client_identifier: Option<String>,
    pub server_keep_alive: Option<u16>,
    pub authentication_method: Option<String>,
    pub authentication_data: Option<Bytes>,
    pub request_problem_information: Option<u8>,
    pub will_delay_interval: Option<u32>,
    pub request_response_information: Option<u8>,
    pub response_information: Option<String>,
    pub server_reference: Option<String>,
    pub reason_string: Option<String>,
    pub receive_maximum: Option<u16>,
    pub topic_alias_maximum: Option<u16>,
    pub topic_alias: Option<u16>,
    pub maximum_qos: Option<u8>,
    pub retain_available: Option<u8>,
    pub user_properties: Vec<(String, String)>,
    pub maximum_packet_size: Option<u32>,
    pub wildcard_subscription_available: Option<u8>,
    pub subscription_identifier_available: Option<u8>,
    pub shared_subscription_available: Option<u8>,
}

/// Where a property list appears; each place allows its own properties.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Place {
    Connect,
    ConnAck,
    Publish,
    Will,
    Ack,
    Subscribe,
    SubAck,
    Unsubscribe,
    UnsubAck,
    Disconnect,
    Auth,
}

fn allowed(place: Place, id: u8) -> bool {
    use Place::*;
    match id {
        0x26 => true,
        0x01 | 0x02 | 0x03 | 0x08 | 0x09 => matches!(place, Publish | Will),
        0x0B => matches!(place, Publish | Subscribe),
        0x11 => matches!(place, Connect | ConnAck | Disconnect),
        0x12 | 0x13 | 0x1A | 0x24 | 0x25 | 0x28 | 0x29 | 0x2A => place == ConnAck,
        0x15 | 0x16 => matches!(place, Connect | ConnAck | Auth),
        0x17 | 0x19 => place == Connect,
        0x18 => place == Will,
        0x1C => matches!(place, ConnAck | Disconnect),
        0x1F => matches!(place, ConnAck | Ack | SubAck | UnsubAck | Disconnect | Auth),
        0x21 | 0x22 | 0x27 => matches!(place, Connect | ConnAck),
        0x23 => place == Publish,
        _ => false,
    }
}

fn set_once<T>(slot: &mut Option<T>, value: T) -> Result<(), DecodeError> {
    if slot.is_some() {
        return Err(DecodeError::Protocol("a property appears twice"));
    }
    *slot = Some(value);
    Ok(())
}

fn byte_flag(value: u8) -> Result<u8, DecodeError> {
    if value > 1 { Err(DecodeError::Protocol("a byte property must be 0 or 1")) } else { Ok(value) }
}

impl Properties {
    pub(crate) fn decode(reader: &mut Reader, place: Place) -> Result<Self, DecodeError> {
        let length = reader.varint()? as usize;
        let mut inner = reader.sub(length)?;
        let mut p = Self::default();
        while !inner.is_empty() {
            let id = inner.varint()?;
            let id = u8::try_from(id).map_err(|_| DecodeError::Malformed("unknown property identifier"))?;
            if !allowed(place, id) {
                return Err(DecodeError::Protocol("a property not allowed in this packet"));
            }
            match id {
                0x01 => set_once(&mut p.payload_format_indicator, byte_flag(inner.u8()?)?)?,
                0x02 => set_once(&mut p.message_expiry_interval, inner.u32()?)?,
                0x03 => set_once(&mut p.content_type, inner.string()?)?,
                0x08 => set_once(&mut p.response_topic, inner.string()?)?,
                0x09 => set_once(&mut p.correlation_data, inner.binary()?)?,
                0x0B => {
                    let id = inner.varint()?;
                    if id == 0 {
                        return Err(DecodeError::Protocol("subscription identifier 0"));
                    }
                    if place == Place::Subscribe && !p.subscription_identifiers.is_empty() {
                        return Err(DecodeError::Protocol("a property appears twice"));
                    }
                    p.subscription_identifiers.push(id);
                }
                0x11 => set_once(&mut p.session_expiry_interval, inner.u32()?)?,
                0x12 => set_once(&mut p.assigned_client_identifier, inner.string()?)?,
                0x13 => set_once(&mut p.server_keep_alive, inner.u16()?)?,
                0x15 => set_once(&mut p.authentication_method, inner.string()?)?,
                0x16 => set_once(&mut p.authentication_data, inner.binary()?)?,
                0x17 => set_once(&mut p.request_problem_information, byte_flag(inner.u8()?)?)?,
                0x18 => set_once(&mut p.will_delay_interval, inner.u32()?)?,
                0x19 => set_once(&mut p.request_response_information, byte_flag(inner.u8()?)?)?,
                0x1A => set_once(&mut p.response_information, inner.string()?)?,
                0x1C => set_once(&mut p.server_reference, inner.string()?)?,
                0x1F => set_once(&mut p.reason_string, inner.string()?)?,
                0x21 => {
                    let value = inner.u16()?;
                    if value == 0 {
                        return Err(DecodeError::Protocol("receive maximum 0"));
                    }
                    set_once(&mut p.receive_maximum, value)?
                }
                0x22 => set_once(&mut p.topic_alias_maximum, inner.u16()?)?,
                0x23 => set_once(&mut p.topic_alias, inner.u16()?)?,
                0x24 => set_once(&mut p.maximum_qos, byte_flag(inner.u8()?)?)?,
                0x25 => set_once(&mut p.retain_available, byte_flag(inner.u8()?)?)?,
                0x26 => {
                    let pair = (inner.string()?, inner.string()?);
                    p.user_properties.push(pair);
                }
                0x27 => {
                    let value = inner.u32()?;
                    if value == 0 {
                        return Err(DecodeError::Protocol("maximum packet size 0"));
                    }
                    set_once(&mut p.maximum_packet_size, value)?
                }
                0x28 => set_once(&mut p.wildcard_subscription_available, byte_flag(inner.u8()?)?)?,
                0x29 => set_once(&mut p.subscription_identifier_available, byte_flag(inner.u8()?)?)?,
                0x2A => set_once(&mut p.shared_subscription_available, byte_flag(inner.u8()?)?)?,
                _ => return Err(DecodeError::Malformed("unknown property identifier")),
            }
        }
        Ok(p)
    }

    fn encode_body(&self, out: &mut BytesMut) {
        let byte = |out: &mut BytesMut, id: u8, v: Option<u8>| {
            if let Some(v) = v {
                out.put_u8(id);
                out.put_u8(v);
            }
        };
        let u16p = |out: &mut BytesMut, id: u8, v: Option<u16>| {
            if let Some(v) = v {
                out.put_u8(id);
                out.put_u16(v);
            }
        };
        let u32p = |out: &mut BytesMut, id: u8, v: Option<u32>| {
            if let Some(v) = v {
                out.put_u8(id);
                out.put_u32(v);
            }
        };
        let string = |out: &mut BytesMut, id: u8, v: &Option<String>| {
            if let Some(v) = v {
                out.put_u8(id);
                put_string(out, v);
            }
        };
        let binary = |out: &mut BytesMut, id: u8, v: &Option<Bytes>| {
            if let Some(v) = v {
                out.put_u8(id);
                put_binary(out, v);
            }
        };
        byte(out, 0x01, self.payload_format_indicator);
        u32p(out, 0x02, self.message_expiry_interval);
        string(out, 0x03, &self.content_type);
        string(out, 0x08, &self.response_topic);
        binary(out, 0x09, &self.correlation_data);
        for id in &self.subscription_identifiers {
            out.put_u8(0x0B);
            put_varint(out, *id);
        }
        u32p(out, 0x11, self.session_expiry_interval);
        string(out, 0x12, &self.assigned_client_identifier);
        u16p(out, 0x13, self.server_keep_alive);
        string(out, 0x15, &self.authentication_method);
        binary(out, 0x16, &self.authentication_data);
        byte(out, 0x17, self.request_problem_information);
        u32p(out, 0x18, self.will_delay_interval);
        byte(out, 0x19, self.request_response_information);
        string(out, 0x1A, &self.response_information);
        string(out, 0x1C, &self.server_reference);
        string(out, 0x1F, &self.reason_string);
        u16p(out, 0x21, self.receive_maximum);
        u16p(out, 0x22, self.topic_alias_maximum);
        u16p(out, 0x23, self.topic_alias);
        byte(out, 0x24, self.maximum_qos);
        byte(out, 0x25, self.retain_available);
        for (key, value) in &self.user_properties {
            out.put_u8(0x26);
            put_string(out, key);
            put_string(out, value);
        }
        u32p(out, 0x27, self.maximum_packet_size);
        byte(out, 0x28, self.wildcard_subscription_available);
        byte(out, 0x29, self.subscription_identifier_available);
        byte(out, 0x2A, self.shared_subscription_available);
    }

    /// Writes the property length and the properties.
    pub(crate) fn encode(&self, out: &mut BytesMut) {
        let mut body = BytesMut::new();
        self.encode_body(&mut body);
        put_varint(out, body.len() as u32);
        out.put_slice(&body);
    }

    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}
