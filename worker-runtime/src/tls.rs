//! TLS for every HTTP client the runtime builds: rustls with the system's trust store, read once
//! per process and only when it is first needed.
//!
//! reqwest's own rustls set-up reads the trust store (a bundle and ~150 hashed files in
//! `/etc/ssl/certs`) when a client is *built*, which put several milliseconds of file I/O
//! between process start and the first job-take, even against an `http://` platform, and did it
//! again for the heartbeat's client and for every download. Here the certificate verifier reads
//! the store on the first certificate it checks; [`load_roots_in_background`] starts that read
//! as soon as the worker knows an `https://` request is coming, so it overlaps DNS and the TCP
//! connect instead of preceding them.

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

/// Install the TLS crypto provider (ring) as the process default, once; reqwest and rustls
/// configurations built elsewhere (object_store's client) use it too.
pub(crate) fn install_crypto_provider() {
    // Once per process, not per caller: a second `install_default` builds a provider only to
    // drop it, running rustls code that start-up otherwise never touches.
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// The rustls configuration for our reqwest clients: TLS 1.2 and 1.3, ALPN http/1.1 (the
/// runtime speaks HTTP/1.1, as the Python SDK's aiohttp does; see the workspace Cargo.toml),
/// and the process's shared system-roots verifier.
pub(crate) fn client_config() -> Result<rustls::ClientConfig, rustls::Error> {
    let verifier = system_roots();
    let mut config = rustls::ClientConfig::builder_with_provider(verifier.provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// Start reading the system trust store on a background thread, if nothing has yet; the first
/// handshake waits for it only if it has not finished by then.
pub(crate) fn load_roots_in_background() {
    let verifier = system_roots();
    if verifier.platform.get().is_some() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("worker-tls-roots".into())
        .spawn(move || {
            // A failure is kept and reported by the handshake that needs the roots.
            let _ = verifier.platform();
        });
    // Without the thread, the first handshake reads the store itself.
    drop(spawned);
}

/// The one verifier of the process.
fn system_roots() -> Arc<SystemRoots> {
    static SHARED: OnceLock<Arc<SystemRoots>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            install_crypto_provider();
            let provider = CryptoProvider::get_default()
                .cloned()
                .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
            Arc::new(SystemRoots {
                algorithms: provider.signature_verification_algorithms,
                provider,
                platform: OnceLock::new(),
            })
        })
        .clone()
}

/// Verifies server certificates against the system's roots (rustls-platform-verifier, as
/// reqwest does), loading them on first use. Handshake signatures need no roots, so they are
/// checked with the provider's algorithms directly, exactly as the platform verifier's inner
/// WebPKI verifier checks them.
#[derive(Debug)]
struct SystemRoots {
    provider: Arc<CryptoProvider>,
    algorithms: WebPkiSupportedAlgorithms,
    platform: OnceLock<Result<rustls_platform_verifier::Verifier, rustls::Error>>,
}

impl SystemRoots {
    fn platform(&self) -> Result<&rustls_platform_verifier::Verifier, rustls::Error> {
        self.platform
            .get_or_init(|| {
                rustls_platform_verifier::Verifier::new(self.provider.clone()).map_err(|e| {
                    let why = match e {
                        rustls::Error::General(why) => why,
                        other => other.to_string(),
                    };
                    let from = match std::env::var_os("SSL_CERT_FILE") {
                        Some(file) => format!("SSL_CERT_FILE={}", file.to_string_lossy()),
                        None => "the system's trust store".to_owned(),
                    };
                    rustls::Error::General(format!(
                        "could not load the CA certificates for https from {from} ({why}); \
                         install the ca-certificates package in the image"
                    ))
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for SystemRoots {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.platform()?.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
