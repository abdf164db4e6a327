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
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
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

impl TlsFiles {
    /// Loads the files as a node would at start, to report an unusable one
    /// ([`TransportError::TlsFile`] names `cert`, `key` or `ca`) before
    /// anything else happens.
    pub fn validate(&self) -> Result<(), TransportError> {
        Tls::load(self).map(|_| ())
    }
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

fn file_err(
    setting: &'static str,
    path: &Path,
    source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> TransportError {
    TransportError::TlsFile {
        setting,
        path: path.to_owned(),
        source: source.into(),
    }
}

fn load_certs(
    setting: &'static str,
    path: &Path,
) -> Result<Vec<CertificateDer<'static>>, TransportError> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_err(setting, path, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(setting, path, e))?;
    if certs.is_empty() {
        return Err(file_err(setting, path, "no PEM certificate in the file"));
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
        let certs = load_certs("cert", &files.cert)?;
        let key =
            PrivateKeyDer::from_pem_file(&files.key).map_err(|e| file_err("key", &files.key, e))?;
        let mut roots = RootCertStore::empty();
        for ca in load_certs("ca", &files.ca)? {
            roots.add(ca).map_err(|e| file_err("ca", &files.ca, e))?;
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
            .map_err(|e| {
                file_err(
                    "key",
                    &files.key,
                    format!("does not fit certificate {}: {e}", files.cert.display()),
                )
            })?;
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
            .map(|s| Box::new(EofAsClose(s)) as BoxStream)
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
            .map(|s| Box::new(EofAsClose(s)) as BoxStream)
            .map_err(|e| TransportError::TlsHandshake {
                peer: host.to_owned(),
                reason: e.to_string(),
            })
    }
}

/// A TLS stream whose unclean end (the peer closed TCP without sending
/// `close_notify`, as OTP does when it rejects a cookie) reads as a plain end
/// of stream. The distribution protocol frames every message with its
/// length, so truncation is detected by it; and the handshake then reports
/// the stage it was in ("closed while waiting for challenge_ack", which is
/// how a cookie mismatch looks to the initiator) instead of a TLS error.
struct EofAsClose<S>(S);

impl<S: AsyncRead + Unpin> AsyncRead for EofAsClose<S> {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        match std::pin::Pin::new(&mut self.0).poll_read(cx, buf) {
            std::task::Poll::Ready(Err(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                std::task::Poll::Ready(Ok(()))
            }
            other => other,
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for EofAsClose<S> {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

/// Which CA signs the certificates [`generate_certs`] writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaSource {
    /// A new CA (`ca.pem`, `ca-key.pem` in the directory). An existing
    /// `ca.pem` or `ca-key.pem` there is replaced only with `force`: every
    /// certificate the old CA signed would stop verifying.
    New {
        /// Replace existing files.
        force: bool,
    },
    /// An existing CA: node certificates are added, signed by it.
    Existing {
        /// The CA certificate, PEM.
        cert: PathBuf,
        /// Its private key, PEM.
        key: PathBuf,
        /// Replace existing node certificate files.
        force: bool,
    },
}

/// Writes a new development CA and a certificate for each node name into
/// `dir`, refusing to replace existing files (see [`generate_certs`]).
pub fn generate_dev_certs(
    dir: &Path,
    names: &[String],
    hosts: &[String],
) -> Result<Vec<PathBuf>, TransportError> {
    generate_certs(dir, names, hosts, &CaSource::New { force: false })
}

/// Writes a development CA and a certificate for each node name into `dir`
/// (`ca.pem`, `ca-key.pem`, `<name>.pem`, `<name>-key.pem`). Each node
/// certificate carries `hosts` as SANs (DNS names or IP addresses) and can
/// serve as client and server. With [`CaSource::Existing`] only the node
/// files are written, signed by that CA (whose key must match its
/// certificate). No file is written if any would replace an existing one
/// without `force`. For trying TLS distribution in a minute, not for
/// production.
pub fn generate_certs(
    dir: &Path,
    names: &[String],
    hosts: &[String],
    ca: &CaSource,
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
    let force = match ca {
        CaSource::New { force } | CaSource::Existing { force, .. } => *force,
    };
    let mut outputs: Vec<PathBuf> = Vec::new();
    if matches!(ca, CaSource::New { .. }) {
        outputs.push(dir.join("ca.pem"));
        outputs.push(dir.join("ca-key.pem"));
    }
    for name in names {
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(TransportError::tls_message(format!(
                "node name {name:?} cannot be a certificate file name"
            )));
        }
        outputs.push(dir.join(format!("{name}.pem")));
        outputs.push(dir.join(format!("{name}-key.pem")));
    }
    if !force {
        let existing: Vec<String> = outputs
            .iter()
            .filter(|p| p.exists())
            .map(|p| p.display().to_string())
            .collect();
        if !existing.is_empty() {
            return Err(TransportError::WouldOverwrite(existing.join(", ")));
        }
    }
    let ca_params;
    let ca_key;
    let issuer = match ca {
        CaSource::New { .. } => {
            ca_key = KeyPair::generate().map_err(err)?;
            let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
            // A distinct name per CA, so a certificate from another run is
            // reported as an unknown issuer rather than a bad signature.
            let mut nonce = [0u8; 4];
            let _ = getrandom::fill(&mut nonce);
            params.distinguished_name.push(
                DnType::CommonName,
                format!("erldist development CA {:08x}", u32::from_be_bytes(nonce)),
            );
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
            let ca_cert = params.self_signed(&ca_key).map_err(err)?;
            ca_params = params;
            write("ca.pem", ca_cert.pem(), false)?;
            write("ca-key.pem", ca_key.serialize_pem(), true)?;
            Issuer::from_params(&ca_params, &ca_key)
        }
        CaSource::Existing { cert, key, .. } => {
            let read = |p: &Path| {
                std::fs::read_to_string(p)
                    .map_err(|e| TransportError::io(format!("read {}", p.display()), e))
            };
            let cert_pem = read(cert)?;
            ca_key = KeyPair::from_pem(&read(key)?).map_err(|e| {
                TransportError::tls_message(format!("CA key {}: {e}", key.display()))
            })?;
            check_ca_key(&cert_pem, &ca_key, cert, key)?;
            Issuer::from_ca_cert_pem(&cert_pem, &ca_key).map_err(|e| {
                TransportError::tls_message(format!("CA certificate {}: {e}", cert.display()))
            })?
        }
    };
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

/// Checks that `key` is the key of the CA certificate in `cert_pem` (else
/// every certificate signed with it would fail to verify, and only later).
fn check_ca_key(
    cert_pem: &str,
    key: &rcgen::KeyPair,
    cert_path: &Path,
    key_path: &Path,
) -> Result<(), TransportError> {
    let ca = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| {
        TransportError::tls_message(format!("CA certificate {}: {e}", cert_path.display()))
    })?;
    // The certificate's SubjectPublicKeyInfo must hold exactly this key:
    // look for the key's bits in the certificate.
    let spki = key.public_key_raw();
    if !ca.as_ref().windows(spki.len()).any(|w| w == spki) {
        return Err(TransportError::tls_message(format!(
            "CA key {} does not belong to CA certificate {}",
            key_path.display(),
            cert_path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmpdir(tag: &str) -> PathBuf {
        let mut b = [0u8; 4];
        getrandom::fill(&mut b).unwrap();
        let d = std::env::temp_dir().join(format!(
            "erldist-tls-unit-{tag}-{}-{:08x}",
            std::process::id(),
            u32::from_ne_bytes(b)
        ));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn names(n: &[&str]) -> Vec<String> {
        n.iter().map(|s| (*s).to_owned()).collect()
    }

    fn files(dir: &Path, node: &str) -> TlsFiles {
        TlsFiles {
            cert: dir.join(format!("{node}.pem")),
            key: dir.join(format!("{node}-key.pem")),
            ca: dir.join("ca.pem"),
        }
    }

    #[test]
    fn unusable_tls_files_name_the_setting() {
        let d = tmpdir("files");
        generate_certs(
            &d,
            &names(&["a", "b"]),
            &names(&["localhost"]),
            &CaSource::New { force: false },
        )
        .unwrap();
        let setting = |f: TlsFiles| match Tls::load(&f) {
            Err(TransportError::TlsFile { setting, .. }) => setting,
            other => panic!("{other:?}"),
        };
        let good = files(&d, "a");
        let missing = d.join("missing.pem");
        let empty = d.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        assert_eq!(
            setting(TlsFiles {
                cert: missing.clone(),
                ..good.clone()
            }),
            "cert"
        );
        assert_eq!(
            setting(TlsFiles {
                key: missing.clone(),
                ..good.clone()
            }),
            "key"
        );
        assert_eq!(
            setting(TlsFiles {
                ca: missing,
                ..good.clone()
            }),
            "ca"
        );
        assert_eq!(
            setting(TlsFiles {
                ca: empty.clone(),
                ..good.clone()
            }),
            "ca"
        );
        // A certificate where the key should be.
        assert_eq!(
            setting(TlsFiles {
                key: good.cert.clone(),
                ..good.clone()
            }),
            "key"
        );
        // Another node's key.
        assert_eq!(
            setting(TlsFiles {
                key: d.join("b-key.pem"),
                ..good.clone()
            }),
            "key"
        );
        let e = Tls::load(&TlsFiles {
            cert: empty,
            ..good
        })
        .unwrap_err();
        assert!(e.to_string().contains("TLS cert"), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn gen_certs_refuses_to_replace_a_ca_without_force() {
        let d = tmpdir("force");
        let hosts = names(&["localhost"]);
        generate_certs(&d, &names(&["a"]), &hosts, &CaSource::New { force: false }).unwrap();
        let ca_before = std::fs::read(d.join("ca.pem")).unwrap();
        let e = generate_certs(&d, &names(&["b"]), &hosts, &CaSource::New { force: false })
            .unwrap_err();
        assert!(matches!(e, TransportError::WouldOverwrite(_)), "{e}");
        assert!(e.to_string().contains("ca.pem"), "{e}");
        assert!(e.to_string().contains("--force"), "{e}");
        // Nothing was written, not even b's files.
        assert_eq!(std::fs::read(d.join("ca.pem")).unwrap(), ca_before);
        assert!(!d.join("b.pem").exists());
        // With force the CA is replaced.
        generate_certs(&d, &names(&["b"]), &hosts, &CaSource::New { force: true }).unwrap();
        assert_ne!(std::fs::read(d.join("ca.pem")).unwrap(), ca_before);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn gen_certs_adds_node_certificates_signed_by_an_existing_ca() {
        let d = tmpdir("existing");
        let hosts = names(&["localhost"]);
        generate_certs(&d, &names(&["a"]), &hosts, &CaSource::New { force: false }).unwrap();
        let ca_before = std::fs::read(d.join("ca.pem")).unwrap();
        let existing = CaSource::Existing {
            cert: d.join("ca.pem"),
            key: d.join("ca-key.pem"),
            force: false,
        };
        let written = generate_certs(&d, &names(&["b"]), &hosts, &existing).unwrap();
        assert_eq!(written, vec![d.join("b.pem"), d.join("b-key.pem")]);
        assert_eq!(std::fs::read(d.join("ca.pem")).unwrap(), ca_before);
        // b's certificate chains to the CA that signed a's: a TLS
        // handshake between them succeeds.
        let a = Tls::load(&files(&d, "a")).unwrap();
        let b = Tls::load(&files(&d, "b")).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (x, y) = tokio::io::duplex(64 * 1024);
            let (c, s) = tokio::join!(a.connect(x, "localhost"), b.accept(y, "a"));
            c.unwrap();
            s.unwrap();
        });
        // Adding b again needs force.
        let e = generate_certs(&d, &names(&["b"]), &hosts, &existing).unwrap_err();
        assert!(matches!(e, TransportError::WouldOverwrite(_)), "{e}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn gen_certs_rejects_a_ca_key_that_is_not_the_certificates() {
        let d1 = tmpdir("k1");
        let d2 = tmpdir("k2");
        let hosts = names(&["localhost"]);
        generate_certs(&d1, &names(&["a"]), &hosts, &CaSource::New { force: false }).unwrap();
        generate_certs(&d2, &names(&["a"]), &hosts, &CaSource::New { force: false }).unwrap();
        let out = tmpdir("k3");
        let e = generate_certs(
            &out,
            &names(&["c"]),
            &hosts,
            &CaSource::Existing {
                cert: d1.join("ca.pem"),
                key: d2.join("ca-key.pem"),
                force: false,
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("does not belong"), "{e}");
        assert!(!out.join("c.pem").exists());
        for d in [d1, d2, out] {
            std::fs::remove_dir_all(&d).unwrap();
        }
    }
}
