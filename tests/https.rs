//! The production loop over https: a TLS-terminating proxy (rustls, with a CA and a server
//! certificate made by the `openssl` command) in front of the emulator, and the `echo` example
//! pointed at `https://localhost:…`, trusting only what `SSL_CERT_FILE` names. The worker reads
//! its trust store on the first handshake (not at start-up), so these check that the lazy
//! verifier really verifies: the right CA works; a wrong CA, a certificate for another host
//! name and an expired certificate are each refused with the reason; and a missing store says
//! what to install.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::json;
use support::{Platform, WorkerProcess, example};
use tokio::net::{TcpListener, TcpStream};

/// The server certificate the proxy presents; each is signed by `test-ca`.
#[derive(Debug, Clone, Copy)]
enum Server {
    /// For `localhost` and 127.0.0.1, valid now.
    Localhost,
    /// For `other.example` only: valid, but not for the host the worker connects to.
    OtherHost,
    /// For `localhost` and 127.0.0.1, but only in the first days of 2020.
    Expired,
}

/// A CA and a server certificate it signed (`server.pem`, `server.key`), plus a second,
/// unrelated CA.
struct Certificates {
    dir: PathBuf,
}

impl Certificates {
    fn make(server: Server) -> Certificates {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "worker-https-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        for ca in ["test-ca", "other-ca"] {
            openssl(
                &dir,
                &format!(
                    "req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
                     -subj /CN={ca} -addext basicConstraints=critical,CA:TRUE \
                     -addext keyUsage=critical,keyCertSign,cRLSign -keyout {ca}.key -out {ca}.pem"
                ),
            );
        }
        let (name, alt_names) = match server {
            Server::Localhost | Server::Expired => ("localhost", "DNS:localhost,IP:127.0.0.1"),
            Server::OtherHost => ("other.example", "DNS:other.example"),
        };
        openssl(
            &dir,
            &format!(
                "req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN={name} \
                 -keyout server.key -out server.csr"
            ),
        );
        std::fs::write(
            dir.join("server.ext"),
            format!(
                "subjectAltName={alt_names}\nbasicConstraints=CA:FALSE\n\
                 keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
            ),
        )
        .unwrap();
        match server {
            Server::Localhost | Server::OtherHost => openssl(
                &dir,
                "x509 -req -in server.csr -CA test-ca.pem -CAkey test-ca.key -CAcreateserial \
                 -days 2 -extfile server.ext -out server.pem",
            ),
            // `openssl x509` only starts a certificate now (until OpenSSL 3.4's -not_before);
            // `openssl ca` takes any start and end date, from a minimal CA configuration.
            Server::Expired => {
                std::fs::write(
                    dir.join("ca.cnf"),
                    "[ca]\ndefault_ca = test_ca\n\
                     [test_ca]\ndatabase = index.txt\nnew_certs_dir = .\nserial = serial\n\
                     certificate = test-ca.pem\nprivate_key = test-ca.key\ndefault_md = sha256\n\
                     policy = any_name\nunique_subject = no\n\
                     [any_name]\ncommonName = supplied\n",
                )
                .unwrap();
                std::fs::write(dir.join("index.txt"), "").unwrap();
                std::fs::write(dir.join("serial"), "1000\n").unwrap();
                openssl(
                    &dir,
                    "ca -batch -config ca.cnf -in server.csr -startdate 200101000000Z \
                     -enddate 200103000000Z -extfile server.ext -notext -out server.pem",
                );
            }
        }
        Certificates { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).display().to_string()
    }
}

impl Drop for Certificates {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Run `openssl` with whitespace-separated `args` in `dir`.
fn openssl(dir: &Path, args: &str) {
    let out = Command::new("openssl")
        .args(args.split_whitespace())
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("these tests make certificates with the `openssl` command: {e} (apt-get install openssl)")
        });
    assert!(
        out.status.success(),
        "openssl {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Terminate TLS on a loopback port and pass the bytes to `upstream`; returns the port.
async fn tls_proxy(certs: &Certificates, upstream: SocketAddr) -> u16 {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(certs.path("server.pem"))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    let key = PrivateKeyDer::from_pem_file(certs.path("server.key")).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                // A refused handshake is what some tests expect: just drop the connection.
                let Ok(mut tls) = acceptor.accept(client).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(upstream).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    port
}

/// The emulator behind the TLS proxy (presenting `server`'s certificate), and the `echo`
/// example pointed at `https://localhost:…`, trusting only the PEM file `ca` of the certificate
/// directory.
struct OverHttps {
    platform: Platform,
    worker: WorkerProcess,
    _certs: Certificates,
}

async fn echo_over_https(ca: &str, server: Server) -> OverHttps {
    let certs = Certificates::make(server);
    let platform = Platform::start().await;
    let port = tls_proxy(&certs, platform.handle.local_addr()).await;
    let plain = format!("http://{}", platform.handle.local_addr());
    let mut env: Vec<(String, String)> = platform
        .env()
        .into_iter()
        .map(|(k, v)| (k, v.replace(&plain, &format!("https://localhost:{port}"))))
        .collect();
    assert!(env.iter().any(|(_, v)| v.starts_with("https://localhost")));
    env.push(("SSL_CERT_FILE".into(), certs.path(ca)));
    env.push(("SSL_CERT_DIR".into(), certs.path("no-such-dir")));
    let worker = WorkerProcess::spawn(&example("echo"), &env, &[]);
    OverHttps {
        platform,
        worker,
        _certs: certs,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_and_pings_go_over_https_to_a_trusted_platform() {
    let https = echo_over_https("test-ca.pem", Server::Localhost).await;
    let (platform, worker) = (&https.platform, &https.worker);

    let id = platform.submit(json!({"input": {"over": "tls"}})).await;
    let status = platform.finished(&id, Duration::from_secs(20)).await;
    assert_eq!(
        status["output"],
        json!({"over": "tls"}),
        "{status}\nstdout:\n{}\nstderr:\n{}",
        worker.stdout(),
        worker.stderr()
    );
    let ping = platform.path("ping");
    platform
        .wait_for(Duration::from_secs(10), "a ping over https", |reqs| {
            reqs.iter().find(|r| r.path == ping).cloned()
        })
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_certificate_is_refused_and_named() {
    let https = echo_over_https("other-ca.pem", Server::Localhost).await;
    assert_refused(&https, &["UnknownIssuer"]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_certificate_for_another_host_is_refused_and_named() {
    let https = echo_over_https("test-ca.pem", Server::OtherHost).await;
    // rustls: certificate not valid for name "localhost"; certificate is only valid for …
    assert_refused(
        &https,
        &["not valid for name \"localhost\"", "other.example"],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_certificate_is_refused_and_named() {
    let https = echo_over_https("test-ca.pem", Server::Expired).await;
    // rustls: certificate expired: verification time … (UNIX), but certificate is not valid
    // after 1578009600 (… seconds ago); 1578009600 is 2020-01-03T00:00:00Z.
    assert_refused(
        &https,
        &["certificate expired", "not valid after 1578009600"],
    )
    .await;
}

/// With a job queued, the worker logs its failed job-take with rustls's reason for refusing
/// the certificate (each of `reasons` is in the log), nothing reaches the platform, and the job
/// stays queued.
async fn assert_refused(https: &OverHttps, reasons: &[&str]) {
    let (platform, worker) = (&https.platform, &https.worker);
    let id = platform.submit(json!({"input": {}})).await;

    let logs = wait_for_log(worker, "Failed to get job").await;
    assert!(
        logs.contains("invalid peer certificate") && reasons.iter().all(|r| logs.contains(r)),
        "the log names the certificate problem ({reasons:?}):\n{logs}"
    );
    assert!(
        platform.requests().is_empty(),
        "nothing reached the platform"
    );
    assert_eq!(platform.status(&id).await["status"], "IN_QUEUE");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_trust_store_says_what_to_install() {
    let https = echo_over_https("no-such-file.pem", Server::Localhost).await;

    let logs = wait_for_log(&https.worker, "Failed to get job").await;
    assert!(
        logs.contains("could not load the CA certificates for https from SSL_CERT_FILE=")
            && logs.contains("ca-certificates"),
        "the log says what to install:\n{logs}"
    );
}

/// The worker's stdout and stderr once `needle` shows in either (panics after 20 s).
async fn wait_for_log(worker: &WorkerProcess, needle: &str) -> String {
    for _ in 0..1000 {
        let logs = format!("{}{}", worker.stdout(), worker.stderr());
        if logs.contains(needle) {
            return logs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!(
        "no {needle:?} in the worker's logs:\n{}{}",
        worker.stdout(),
        worker.stderr()
    );
}
