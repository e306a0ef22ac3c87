//! TLS for SMTP, done here rather than inside lettre so the negotiated version can be
//! recorded on the attempt (SPEC §12) and every socket gets TCP_NODELAY.
//!
//! Two client configurations: *verified* (the web PKI roots plus `MAILTRAIL_SMTP_CA`),
//! for a smarthost; and *opportunistic*, for direct delivery to an MX, which encrypts
//! without checking the certificate, as MTAs do (RFC 7435; Postfix's
//! `smtp_tls_security_level = may`): most MX certificates do not name the MX host, and
//! refusing them would only push the mail back to plain text.

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Why a TLS configuration or handshake failed. The handshake's text is kept on the
/// attempt (a try that could not secure its connection).
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// `MAILTRAIL_SMTP_CA` holds a certificate that does not parse or load.
    #[error("bad CA certificate: {0}")]
    BadCa(String),
    /// `MAILTRAIL_SMTP_CA` holds no certificate at all.
    #[error("the CA file holds no PEM certificate")]
    NoCa,
    /// rustls refused the configuration.
    #[error("TLS setup failed: {0}")]
    Setup(rustls::Error),
    /// The host is not a DNS name or an IP address.
    #[error("`{0}` is not a name TLS can check")]
    Name(String),
    /// The handshake failed (a bad certificate, no common version, the peer hung up).
    #[error("TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A configuration that checks the server's certificate against the web PKI roots and
/// `extra_ca` (PEM).
pub fn verified(extra_ca: Option<&[u8]>) -> Result<Arc<ClientConfig>, TlsError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(pem) = extra_ca {
        let mut added = 0;
        for cert in CertificateDer::pem_slice_iter(pem) {
            let cert = cert.map_err(|e| TlsError::BadCa(e.to_string()))?;
            roots
                .add(cert)
                .map_err(|e| TlsError::BadCa(e.to_string()))?;
            added += 1;
        }
        if added == 0 {
            return Err(TlsError::NoCa);
        }
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// A configuration that encrypts whatever certificate the server shows (its handshake
/// signature is still checked, so the session is with the holder of that key).
pub fn opportunistic() -> Result<Arc<ClientConfig>, TlsError> {
    let provider = provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Setup)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Runs the TLS handshake on `tcp` for `host`; returns the stream and its version
/// (`TLSv1.3`).
pub async fn handshake(
    config: Arc<ClientConfig>,
    host: &str,
    tcp: TcpStream,
) -> Result<(TlsStream<TcpStream>, String), TlsError> {
    let name =
        ServerName::try_from(host.to_owned()).map_err(|_| TlsError::Name(host.to_owned()))?;
    let stream = TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(TlsError::Handshake)?;
    let version = stream
        .get_ref()
        .1
        .protocol_version()
        .map(version_name)
        .unwrap_or_else(|| "TLS".to_owned());
    Ok((stream, version))
}

/// `TLSv1.3`, as OpenSSL and Postfix's logs name versions.
fn version_name(v: rustls::ProtocolVersion) -> String {
    match v {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3".into(),
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2".into(),
        rustls::ProtocolVersion::TLSv1_1 => "TLSv1.1".into(),
        rustls::ProtocolVersion::TLSv1_0 => "TLSv1".into(),
        other => format!("{other:?}"),
    }
}

/// A stream whose first bytes read are `prefix`, then the stream's own. lettre's
/// connection starts by reading a greeting; after a STARTTLS done here the server
/// sends none, so the greeting it already sent is given again.
#[derive(Debug)]
pub struct Replayed<S> {
    prefix: Vec<u8>,
    at: usize,
    inner: S,
    peer: std::io::Result<std::net::SocketAddr>,
}

impl<S> Replayed<S> {
    pub fn new(prefix: Vec<u8>, inner: S, peer: std::io::Result<std::net::SocketAddr>) -> Self {
        Replayed {
            prefix,
            at: 0,
            inner,
            peer,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replayed<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.at < self.prefix.len() {
            let n = (self.prefix.len() - self.at).min(buf.remaining());
            let at = self.at;
            buf.put_slice(&self.prefix[at..at + n]);
            self.at += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replayed<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

impl<S> lettre::transport::smtp::client::AsyncTokioStream for Replayed<S>
where
    S: AsyncRead + AsyncWrite + Send + Sync + Unpin + std::fmt::Debug,
{
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        match &self.peer {
            Ok(a) => Ok(*a),
            Err(e) => Err(std::io::Error::new(e.kind(), e.to_string())),
        }
    }
}
