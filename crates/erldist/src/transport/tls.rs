//! TLS with rustls (ring provider), interoperable with OTP's
//! `inet_tls_dist`.
//!
//! - Mutual authentication: both sides present a certificate signed by the
//!   configured CA, and both verify the other's. A server without a client
//!   certificate, or a certificate that does not verify, is a hard error.
//! - The client checks the server's certificate against the host part of
//!   the node name it dials (a DNS name or an IP address in the SAN), as
//!   OTP's client does with `server_name_indication`.
//! - TLS 1.3 and 1.2 are both enabled: OTP enables only 1.2 when its TLS
//!   options omit `versions`.
//! - Inside TLS the distribution handshake uses `u32` framing (see
//!   [`super::Proto::framing`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use super::{BoxStream, TransportError};

/// Certificate files, in PEM: the node's certificate chain and key, and the
/// CA that signs every node's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// This node's certificate (chain), PEM.
    pub cert: PathBuf,
    /// This node's private key (PKCS#8, PKCS#1 or SEC1), PEM.
    pub key: PathBuf,
    /// The CA certificate(s) peers must chain to, PEM.
    pub ca: PathBuf,
}

/// Ready-to-use client and server configurations.
#[derive(Clone)]
pub(crate) struct Tls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| TransportError::tls_config(path.display().to_string(), e))?
        .collect::<Result<_, _>>()
        .map_err(|e| TransportError::tls_config(path.display().to_string(), e))?;
    if certs.is_empty() {
        return Err(TransportError::TlsConfig {
            what: format!("{}: no certificate", path.display()),
            source: None,
        });
    }
    Ok(certs)
}

/// The rustls configurations a node uses for its TLS transports: the
/// server side (which must require and verify client certificates for
/// mutual authentication, as `inet_tls_dist` peers expect) and the client
/// side (which presents this node's certificate).
#[derive(Clone)]
pub struct TlsConfig {
    server: Arc<ServerConfig>,
    client: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TlsConfig")
    }
}

impl TlsConfig {
    /// Configurations built by the caller (their own verifiers, key
    /// stores, cipher suites).
    pub fn new(server: Arc<ServerConfig>, client: Arc<ClientConfig>) -> Self {
        Self { server, client }
    }

    /// Loads PEM files and builds both configurations: mutual
    /// authentication against the CA, TLS 1.2 and 1.3, AES-128-GCM first.
    pub fn from_files(files: &TlsFiles) -> Result<Self, TransportError> {
        let cfg_err = |e: rustls::Error| TransportError::tls_config("rustls", e);
        let certs = load_certs(&files.cert)?;
        let key = PrivateKeyDer::from_pem_file(&files.key)
            .map_err(|e| TransportError::tls_config(files.key.display().to_string(), e))?;
        let mut roots = RootCertStore::empty();
        for ca in load_certs(&files.ca)? {
            roots.add(ca).map_err(cfg_err)?;
        }
        let roots = Arc::new(roots);
        // AES-128-GCM first: it costs about a quarter less CPU than
        // AES-256-GCM (rustls's default first choice) on bulk distribution
        // traffic, and OTP accepts either.
        let mut provider = rustls::crypto::ring::default_provider();
        provider.cipher_suites.sort_by_key(|cs| match cs.suite() {
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
            | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
            | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
            _ => 1,
        });
        let provider = Arc::new(provider);
        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TransportError::tls_config("client certificate verifier", e))?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(cfg_err)?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs.clone(), key.clone_key())
            .map_err(cfg_err)?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(rustls::ALL_VERSIONS)
            .map_err(cfg_err)?
            .with_root_certificates(roots)
            .with_client_auth_cert(certs, key)
            .map_err(cfg_err)?;
        Ok(Self::new(Arc::new(server), Arc::new(client)))
    }
}

impl Tls {
    /// Loads the files and builds both configurations.
    pub(crate) fn load(files: &TlsFiles) -> Result<Self, TransportError> {
        TlsConfig::from_files(files).map(|c| Self::from_config(&c))
    }

    /// Uses ready configurations.
    pub(crate) fn from_config(c: &TlsConfig) -> Self {
        Self {
            acceptor: TlsAcceptor::from(c.server.clone()),
            connector: TlsConnector::from(c.client.clone()),
        }
    }

    /// Server side of the TLS handshake.
    pub(crate) async fn accept<S>(&self, stream: S, peer: &str) -> Result<BoxStream, TransportError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        self.acceptor
            .accept(stream)
            .await
            .map(|s| Box::new(s) as BoxStream)
            .map_err(|e| TransportError::TlsHandshake {
                peer: peer.to_owned(),
                reason: e.to_string(),
            })
    }

    /// Client side: verifies the server against `host`, the host part of
    /// the dialled node name.
    pub(crate) async fn connect<S>(
        &self,
        stream: S,
        host: &str,
    ) -> Result<BoxStream, TransportError>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let name =
            ServerName::try_from(host.to_owned()).map_err(|e| TransportError::TlsHandshake {
                peer: host.to_owned(),
                reason: format!("not a valid server name: {e}"),
            })?;
        self.connector
            .connect(name, stream)
            .await
            .map(|s| Box::new(s) as BoxStream)
            .map_err(|e| TransportError::TlsHandshake {
                peer: host.to_owned(),
                reason: e.to_string(),
            })
    }
}

/// Writes a development CA and a certificate for each node name into `dir`
/// (`ca.pem`, `ca-key.pem`, `<name>.pem`, `<name>-key.pem`). Each node
/// certificate carries `hosts` as SANs (DNS names or IP addresses) and can
/// serve as client and server. For trying TLS distribution in a minute,
/// not for production.
pub fn generate_dev_certs(
    dir: &Path,
    names: &[String],
    hosts: &[String],
) -> Result<Vec<PathBuf>, TransportError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let err = |e: rcgen::Error| TransportError::tls_config("certificate generation", e);
    let io = |p: &Path, e| TransportError::io(format!("write {}", p.display()), e);
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let mut written = Vec::new();
    let mut write = |name: &str, text: String, private: bool| -> Result<(), TransportError> {
        let p = dir.join(name);
        std::fs::write(&p, text).map_err(|e| io(&p, e))?;
        if private {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600))
                .map_err(|e| io(&p, e))?;
        }
        written.push(p);
        Ok(())
    };
    let ca_key = KeyPair::generate().map_err(err)?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
    // A distinct name per CA, so a certificate from another run is reported
    // as an unknown issuer rather than a bad signature.
    let mut nonce = [0u8; 4];
    let _ = getrandom::fill(&mut nonce);
    ca_params.distinguished_name.push(
        DnType::CommonName,
        format!("erldist development CA {:08x}", u32::from_be_bytes(nonce)),
    );
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_cert = ca_params.self_signed(&ca_key).map_err(err)?;
    write("ca.pem", ca_cert.pem(), false)?;
    write("ca-key.pem", ca_key.serialize_pem(), true)?;
    let issuer = Issuer::from_params(&ca_params, &ca_key);
    for name in names {
        let key = KeyPair::generate().map_err(err)?;
        let mut params = CertificateParams::new(hosts.to_vec()).map_err(err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, name.as_str());
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        let cert = params.signed_by(&key, &issuer).map_err(err)?;
        write(&format!("{name}.pem"), cert.pem(), false)?;
        write(&format!("{name}-key.pem"), key.serialize_pem(), true)?;
    }
    Ok(written)
}
