//! WebSocket (RFC 6455) for MQTT over WebSocket: the handshake's accept key, the
//! frame codec (pure), and a bridge that turns a WebSocket into the byte stream the
//! MQTT connection code reads, so both transports share one connection path.

use base64::Engine;
use bytes::{Buf, BufMut, Bytes, BytesMut};
use sha1::{Digest, Sha1};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

const GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`.
pub fn accept_key(key: &str) -> String {
    let digest = Sha1::new().chain_update(key.trim().as_bytes()).chain_update(GUID.as_bytes()).finalize();
    base64::engine::general_purpose::STANDARD.encode(digest)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl Opcode {
    fn from_bits(bits: u8) -> Option<Self> {
        Some(match bits {
            0x0 => Self::Continuation,
            0x1 => Self::Text,
            0x2 => Self::Binary,
            0x8 => Self::Close,
            0x9 => Self::Ping,
            0xA => Self::Pong,
            _ => return None,
        })
    }

    fn bits(self) -> u8 {
        match self {
            Self::Continuation => 0x0,
            Self::Text => 0x1,
            Self::Binary => 0x2,
            Self::Close => 0x8,
            Self::Ping => 0x9,
            Self::Pong => 0xA,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub opcode: Opcode,
    pub payload: Bytes,
}

/// Why a client's frames were refused, with the close code sent back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("unknown opcode or reserved bits set")]
    Protocol,
    #[error("client frames must be masked")]
    Unmasked,
    #[error("frame larger than {0} bytes")]
    TooLarge(usize),
}

impl FrameError {
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Protocol | Self::Unmasked => 1002,
            Self::TooLarge(_) => 1009,
        }
    }
}

/// Takes one client frame off the front of `buffer` (unmasked), or `None` while
/// the frame is incomplete. Frames larger than `max_payload` are refused before
/// they are buffered.
pub fn decode_frame(buffer: &mut BytesMut, max_payload: usize) -> Result<Option<Frame>, FrameError> {
    if buffer.len() < 2 {
        return Ok(None);
    }
    let (first, second) = (buffer[0], buffer[1]);
    if first & 0x70 != 0 {
        return Err(FrameError::Protocol);
    }
    let opcode = Opcode::from_bits(first & 0x0F).ok_or(FrameError::Protocol)?;
    if second & 0x80 == 0 {
        return Err(FrameError::Unmasked);
    }
    let (length, header) = match second & 0x7F {
        126 if buffer.len() >= 4 => (u64::from(u16::from_be_bytes([buffer[2], buffer[3]])), 4),
        127 if buffer.len() >= 10 => (u64::from_be_bytes(buffer[2..10].try_into().expect("8 bytes")), 10),
        126 | 127 => return Ok(None),
        short => (u64::from(short), 2),
    };
    let length = usize::try_from(length).ok().filter(|l| *l <= max_payload).ok_or(FrameError::TooLarge(max_payload))?;
    if buffer.len() < header + 4 + length {
        buffer.reserve(header + 4 + length - buffer.len());
        return Ok(None);
    }
    buffer.advance(header);
    let mask: [u8; 4] = buffer[..4].try_into().expect("4 bytes");
    buffer.advance(4);
    let mut payload = buffer.split_to(length);
    for (index, byte) in payload.iter_mut().enumerate() {
        *byte ^= mask[index % 4];
    }
    Ok(Some(Frame { opcode, payload: payload.freeze() }))
}

/// Appends one final, unmasked server frame.
pub fn encode_frame(opcode: Opcode, payload: &[u8], out: &mut BytesMut) {
    out.put_u8(0x80 | opcode.bits());
    match payload.len() {
        len if len < 126 => out.put_u8(len as u8),
        len if len <= usize::from(u16::MAX) => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        len => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
    out.extend_from_slice(payload);
}

fn close_frame(code: u16, out: &mut BytesMut) {
    encode_frame(Opcode::Close, &code.to_be_bytes(), out);
}

/// Relays between a WebSocket and `mqtt` (the connection code's end of a duplex
/// pipe) until either side ends: binary frames in become bytes, bytes out become
/// binary frames; pings are answered. Two tasks, so neither direction can block the other.
pub async fn bridge<W, M>(websocket: W, mqtt: M, max_payload: usize)
where
    W: AsyncRead + AsyncWrite + Send + 'static,
    M: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut ws_in, mut ws_out) = tokio::io::split(websocket);
    let (mut mqtt_in, mut mqtt_out) = tokio::io::split(mqtt);
    let (control, mut controls) = tokio::sync::mpsc::channel::<BytesMut>(8);
    let inbound = tokio::spawn(async move {
        let mut buffer = BytesMut::with_capacity(4096);
        loop {
            loop {
                let frame = match decode_frame(&mut buffer, max_payload) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break,
                    Err(err) => {
                        tracing::debug!(error = %err, "WebSocket frame refused");
                        let mut out = BytesMut::new();
                        close_frame(err.close_code(), &mut out);
                        let _ = control.send(out).await;
                        return;
                    }
                };
                match frame.opcode {
                    Opcode::Binary | Opcode::Continuation => {
                        if mqtt_out.write_all(&frame.payload).await.is_err() {
                            return;
                        }
                    }
                    Opcode::Ping => {
                        let mut out = BytesMut::new();
                        encode_frame(Opcode::Pong, &frame.payload, &mut out);
                        let _ = control.send(out).await;
                    }
                    Opcode::Pong => {}
                    // MQTT over WebSocket is binary only (MQTT 5 §6).
                    Opcode::Text => {
                        let mut out = BytesMut::new();
                        close_frame(1003, &mut out);
                        let _ = control.send(out).await;
                        return;
                    }
                    Opcode::Close => {
                        let mut out = BytesMut::new();
                        close_frame(1000, &mut out);
                        let _ = control.send(out).await;
                        return;
                    }
                }
            }
            match ws_in.read_buf(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
        // Dropping `mqtt_out` tells the connection code the client is gone.
    });
    let mut from_mqtt = BytesMut::with_capacity(16 * 1024);
    let mut out = BytesMut::with_capacity(16 * 1024);
    loop {
        tokio::select! {
            read = mqtt_in.read_buf(&mut from_mqtt) => match read {
                Ok(0) | Err(_) => {
                    out.clear();
                    close_frame(1000, &mut out);
                    let _ = ws_out.write_all(&out).await;
                    break;
                }
                Ok(_) => {
                    out.clear();
                    encode_frame(Opcode::Binary, &from_mqtt, &mut out);
                    from_mqtt.clear();
                    if ws_out.write_all(&out).await.is_err() || ws_out.flush().await.is_err() {
                        break;
                    }
                }
            },
            frame = controls.recv() => match frame {
                Some(frame) => {
                    let closing = frame.first().is_some_and(|b| b & 0x0F == Opcode::Close.bits());
                    if ws_out.write_all(&frame).await.is_err() || ws_out.flush().await.is_err() || closing {
                        break;
                    }
                }
                // The client went away: the connection code sees its input end.
                None => break,
            },
        }
    }
    let _ = ws_out.shutdown().await;
    inbound.abort();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(opcode: u8, payload: &[u8]) -> BytesMut {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut out = BytesMut::new();
        out.put_u8(0x80 | opcode);
        match payload.len() {
            len if len < 126 => out.put_u8(0x80 | len as u8),
            len => {
                out.put_u8(0x80 | 126);
                out.put_u16(len as u16);
            }
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    #[test]
    fn the_accept_key_of_rfc_6455() {
        assert_eq!(accept_key("dGhlIHNhbXBsZSBub25jZQ=="), "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
    }

    #[test]
    fn frames_are_unmasked_and_may_arrive_in_pieces() {
        let payload: Vec<u8> = (0..300u16).map(|i| i as u8).collect();
        let whole = masked(0x2, &payload);
        let mut buffer = BytesMut::new();
        for byte in &whole[..whole.len() - 1] {
            buffer.put_u8(*byte);
            assert_eq!(decode_frame(&mut buffer, 1024), Ok(None));
        }
        buffer.put_u8(whole[whole.len() - 1]);
        let frame = decode_frame(&mut buffer, 1024).unwrap().unwrap();
        assert_eq!((frame.opcode, frame.payload.as_ref()), (Opcode::Binary, &payload[..]));
        assert!(buffer.is_empty());
    }

    #[test]
    fn hostile_frames_are_refused() {
        let mut unmasked = BytesMut::from(&[0x82u8, 0x01, 0x00][..]);
        assert_eq!(decode_frame(&mut unmasked, 10), Err(FrameError::Unmasked));
        let mut reserved = masked(0x2, b"x");
        reserved[0] |= 0x40;
        assert_eq!(decode_frame(&mut reserved, 10), Err(FrameError::Protocol));
        let mut huge = BytesMut::from(&[0x82u8, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF][..]);
        assert_eq!(decode_frame(&mut huge, 1 << 20), Err(FrameError::TooLarge(1 << 20)));
        let mut unknown = masked(0x3, b"");
        assert_eq!(decode_frame(&mut unknown, 10), Err(FrameError::Protocol));
    }

    #[test]
    fn server_frames_use_the_shortest_length() {
        for (len, header) in [(10usize, 2usize), (200, 4), (70_000, 10)] {
            let mut out = BytesMut::new();
            encode_frame(Opcode::Binary, &vec![7; len], &mut out);
            assert_eq!(out.len(), header + len);
            assert_eq!(out[0], 0x82);
        }
    }

    #[tokio::test]
    async fn the_bridge_relays_both_ways_and_answers_pings() {
        let (client, server_side) = tokio::io::duplex(64 * 1024);
        let (mqtt_side, mut connection) = tokio::io::duplex(64 * 1024);
        let bridge = tokio::spawn(bridge(server_side, mqtt_side, 1024));
        let (mut client_in, mut client_out) = tokio::io::split(client);
        client_out.write_all(&masked(0x2, b"\x10\x02")).await.unwrap();
        client_out.write_all(&masked(0x9, b"hi")).await.unwrap();
        let mut got = [0u8; 2];
        connection.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"\x10\x02");
        let mut pong = [0u8; 4];
        client_in.read_exact(&mut pong).await.unwrap();
        assert_eq!(&pong, b"\x8a\x02hi");
        connection.write_all(b"\x20\x02\x00\x00").await.unwrap();
        let mut frame = [0u8; 6];
        client_in.read_exact(&mut frame).await.unwrap();
        assert_eq!(&frame, b"\x82\x04\x20\x02\x00\x00");
        drop(connection);
        let mut close = [0u8; 4];
        client_in.read_exact(&mut close).await.unwrap();
        assert_eq!(close, [0x88, 0x02, 0x03, 0xe8], "{close:x?}");
        bridge.await.unwrap();
    }
}
