//! A minimal MQTT 3.1.1 client over mutual TLS, on ferrocore's own codec: just
//! what load generation needs, with writes batched so the generator stays cheap.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::{Bytes, BytesMut};
use ferrocore_mqtt::{
    Ack, Connect, Packet, Properties, Publish, QoS, ReasonCode, Subscribe, SubscriptionOptions, Version, decode, encode,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

const MAX_PACKET: usize = 256 * 1024;

/// How to reach and authenticate to the broker.
#[derive(Clone)]
pub struct Target {
    pub addr: SocketAddr,
    pub connector: TlsConnector,
    pub server_name: ServerName<'static>,
}

impl Target {
    pub fn new(addr: SocketAddr, ca_pem: &[u8], cert_pem: &[u8], key_pem: &[u8]) -> anyhow::Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem) {
            roots.add(cert.context("reading the CA")?)?;
        }
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .context("reading the client certificate")?;
        let key = PrivateKeyDer::from_pem_slice(key_pem).context("reading the client key")?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)?;
        // Every connection is a full handshake (certificates exchanged and verified).
        config.resumption = rustls::client::Resumption::disabled();
        let server_name = ServerName::try_from(addr.ip().to_string())?;
        Ok(Self { addr, connector: TlsConnector::from(Arc::new(config)), server_name })
    }

    /// TCP, TLS, CONNECT and a successful CONNACK.
    pub async fn connect(&self, client_id: &str) -> anyhow::Result<Connection> {
        let tcp = TcpStream::connect(self.addr).await.with_context(|| format!("connecting to {}", self.addr))?;
        tcp.set_nodelay(true)?;
        let tls = self.connector.connect(self.server_name.clone(), tcp).await.context("TLS handshake")?;
        let (reader, writer) = tokio::io::split(tls);
        let mut connection = Connection {
            reader: Reader { reader, buffer: BytesMut::with_capacity(16 * 1024) },
            writer: Writer { writer, out: BytesMut::new() },
        };
        let connect = Connect {
            version: Version::V311,
            client_id: client_id.to_string(),
            clean_start: true,
            keep_alive: 1200,
            username: None,
            password: None,
            will: None,
            properties: Properties::default(),
        };
        connection.queue(&Packet::Connect(Box::new(connect)));
        connection.flush().await?;
        match connection.next().await? {
            Packet::ConnAck(ack) if ack.reason == ReasonCode::Success => Ok(connection),
            other => bail!("{client_id}: connection refused: {other:?}"),
        }
    }
}

/// A connected client: its two halves, used together until [`Connection::split`].
pub struct Connection {
    reader: Reader,
    writer: Writer,
}

impl Connection {
    pub fn queue(&mut self, packet: &Packet) {
        self.writer.queue(packet);
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        self.writer.flush().await
    }

    /// Subscribes and waits for a granted SUBACK.
    pub async fn subscribe(&mut self, filter: &str, qos: QoS) -> anyhow::Result<()> {
        let options = SubscriptionOptions { qos, no_local: false, retain_as_published: false, retain_handling: 0 };
        let subscribe =
            Subscribe { packet_id: 1, filters: vec![(filter.to_string(), options)], properties: Properties::default() };
        self.queue(&Packet::Subscribe(subscribe));
        self.flush().await?;
        loop {
            match self.next().await? {
                Packet::SubAck(ack) if ack.reasons.iter().all(|r| (*r as u8) < 0x80) => {
                    return Ok(());
                }
                Packet::SubAck(ack) => bail!("subscription to {filter} refused: {:?}", ack.reasons),
                _ => continue,
            }
        }
    }

    /// The next packet, reading as needed.
    async fn next(&mut self) -> anyhow::Result<Packet> {
        let mut packets = Vec::with_capacity(1);
        self.reader.read_one(&mut packets).await?;
        Ok(packets.remove(0))
    }

    pub fn split(self) -> (Reader, Writer) {
        (self.reader, self.writer)
    }
}

/// The reading half of a connection, for tasks that only receive.
pub struct Reader {
    reader: ReadHalf<TlsStream<TcpStream>>,
    buffer: BytesMut,
}

impl Reader {
    /// Every packet the next read brings (at least one).
    pub async fn read_batch(&mut self, packets: &mut Vec<Packet>) -> anyhow::Result<()> {
        self.read_until(packets, usize::MAX).await
    }

    /// Exactly one packet (others stay buffered for the next read).
    async fn read_one(&mut self, packets: &mut Vec<Packet>) -> anyhow::Result<()> {
        self.read_until(packets, 1).await
    }

    async fn read_until(&mut self, packets: &mut Vec<Packet>, most: usize) -> anyhow::Result<()> {
        loop {
            while packets.len() < most
                && let Some(packet) = decode(&mut self.buffer, Some(Version::V311), MAX_PACKET)?
            {
                packets.push(packet);
            }
            if !packets.is_empty() {
                return Ok(());
            }
            if self.reader.read_buf(&mut self.buffer).await? == 0 {
                bail!("the broker closed the connection");
            }
        }
    }
}

/// The writing half of a connection: packets are encoded into a buffer and
/// written (and flushed through TLS) together.
pub struct Writer {
    writer: WriteHalf<TlsStream<TcpStream>>,
    out: BytesMut,
}

impl Writer {
    pub fn queue(&mut self, packet: &Packet) {
        encode(packet, Version::V311, &mut self.out);
    }

    pub fn queue_publish(&mut self, topic: &str, payload: Bytes, packet_id: Option<u16>) {
        let qos = if packet_id.is_some() { QoS::AtLeastOnce } else { QoS::AtMostOnce };
        let publish = Publish {
            dup: false,
            qos,
            retain: false,
            topic: topic.to_string(),
            packet_id,
            payload,
            properties: Properties::default(),
        };
        self.queue(&Packet::Publish(publish));
    }

    pub fn queue_puback(&mut self, packet_id: u16) {
        self.queue(&Packet::PubAck(Ack { packet_id, reason: ReasonCode::Success, properties: Properties::default() }));
    }

    pub async fn flush(&mut self) -> anyhow::Result<()> {
        if !self.out.is_empty() {
            self.writer.write_all(&self.out).await?;
            self.writer.flush().await?;
            self.out.clear();
        }
        Ok(())
    }
}
