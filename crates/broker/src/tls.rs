//! TLS for the device listeners: the server configuration (certificates by SNI,
//! client certificates checked by the registry's verifier, ALPN) and the handshake.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use tokio_rustls::TlsAcceptor;

use crate::verifier::{RegistryVerifier, TrustSnapshot};
use crate::{GatewayConfig, GatewayError};

const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS configuration of a device listener. On 8883 a client certificate is
/// required; on the HTTPS listener it is optional (WebSocket and SigV4 callers
/// have none) and ALPN picks the protocol.
pub(crate) fn tls_config(
    config: &GatewayConfig,
    snapshot: Arc<TrustSnapshot>,
    client_certificate_required: bool,
    alpn: &[&[u8]],
) -> Result<rustls::ServerConfig, GatewayError> {
    let tls = |e: &dyn std::fmt::Display| GatewayError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certified = |certificate_pem: &str, key_pem: &str| -> Result<Arc<CertifiedKey>, GatewayError> {
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(certificate_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| tls(&e))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| tls(&e))?;
        let signing_key = provider.key_provider.load_private_key(key).map_err(|e| tls(&e))?;
        Ok(Arc::new(CertifiedKey::new(chain, signing_key)))
    };
    let mut resolver =
        SniResolver { default: certified(&config.certificate_pem, &config.key_pem)?, by_name: Vec::new() };
    for sni in &config.sni_certificates {
        let key = certified(&sni.certificate_pem, &sni.key_pem)?;
        resolver.by_name.extend(sni.names.iter().map(|name| (name.to_ascii_lowercase(), key.clone())));
    }
    let verifier = Arc::new(RegistryVerifier::new(snapshot, provider.clone(), client_certificate_required));
    let mut server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls(&e))?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(resolver));
    server.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(server)
}

/// Picks the server certificate by SNI: an exact name, then a `*.` wildcard one
/// level up, else the default certificate.
#[derive(Debug)]
struct SniResolver {
    default: Arc<CertifiedKey>,
    by_name: Vec<(String, Arc<CertifiedKey>)>,
}

impl SniResolver {
    fn for_name(&self, name: &str) -> &Arc<CertifiedKey> {
        let name = name.to_ascii_lowercase();
        let wildcard = name.split_once('.').map(|(_, parent)| format!("*.{parent}"));
        let exact = self.by_name.iter().find(|(n, _)| *n == name);
        let wild = || self.by_name.iter().find(|(n, _)| Some(n) == wildcard.as_ref());
        exact.or_else(wild).map_or(&self.default, |(_, key)| key)
    }
}

impl rustls::server::ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(hello.server_name().map_or(&self.default, |name| self.for_name(name)).clone())
    }
}

/// The TLS handshake of a device listener: the stream and the client certificate's id, if one was sent.
pub(crate) async fn handshake(
    acceptor: &TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
) -> Option<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, Option<String>)> {
    // Small MQTT packets must not wait for Nagle's algorithm (40 ms with delayed ACKs).
    if let Err(err) = tcp.set_nodelay(true) {
        tracing::debug!(error = %err, "cannot disable Nagle's algorithm");
    }
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(err)) => {
            metrics::counter!("ferrocore_mqtt_tls_handshake_failures_total").increment(1);
            tracing::info!(peer = %peer, error = %err, "TLS handshake refused");
            return None;
        }
        Err(_) => return None,
    };
    let certificate_id = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).map(|c| TrustSnapshot::id_of(c));
    Some((tls, certificate_id))
}
