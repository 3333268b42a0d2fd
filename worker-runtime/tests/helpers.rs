//! The opt-in helpers against real servers on loopback: `worker::download` against an HTTP
//! server in this process, `worker::storage` against moto's S3 server (see `support/moto.rs`).
//!
//! `cargo test -p worker-runtime --features storage,download --test helpers`

#![cfg(unix)]

#[path = "support/moto.rs"]
mod moto;

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect};
use axum::routing::get;
use worker::Job;
use worker::download::{DownloadErrorKind, Downloads};
use worker::storage::{Bucket, BucketConfig, StorageErrorKind};

const PAYLOAD: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";

/// HTTP servers on 127.0.0.1: files, redirects, errors, and a body of unknown length.
async fn file_server() -> Server {
    let app = Router::new()
        .route("/files/data.bin", get(|| async { PAYLOAD }))
        .route("/redirect/{n}", get(redirect))
        .route(
            "/forever",
            get(|| async { Redirect::temporary("/forever") }),
        )
        .route("/missing", get(|| async { StatusCode::NOT_FOUND }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    // 8000 bytes with no Content-Length: the body ends when the connection closes.
    let raw = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let raw_addr = raw.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
        while let Ok((mut socket, _)) = raw.accept().await {
            tokio::spawn(async move {
                let mut request = [0u8; 4096];
                let _ = socket.read(&mut request).await;
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")
                    .await;
                for _ in 0..8 {
                    let _ = socket.write_all(&[7u8; 1000]).await;
                }
                let _ = socket.shutdown().await;
            });
        }
    });
    Server {
        base: format!("http://{addr}"),
        stream: format!("http://{raw_addr}/stream.bin"),
    }
}

struct Server {
    base: String,
    /// 8000 bytes without a Content-Length.
    stream: String,
}

impl std::fmt::Display for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.base)
    }
}

async fn redirect(axum::extract::Path(n): axum::extract::Path<u32>) -> impl IntoResponse {
    if n == 0 {
        Redirect::temporary("/files/data.bin")
    } else {
        Redirect::temporary(&format!("/redirect/{}", n - 1))
    }
}

fn downloads(job: &str) -> Downloads {
    Downloads::new(job).unwrap().allow_private(true)
}

#[tokio::test]
async fn downloads_into_a_job_directory_removed_on_drop() {
    let server = file_server().await;
    let downloads = downloads("job-dl-1");
    let path = downloads
        .fetch(&format!("{server}/files/data.bin?token=1"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), PAYLOAD);
    assert_eq!(path.file_name().unwrap(), "0-data.bin");
    let dir = downloads.dir().unwrap().to_owned();
    assert!(path.starts_with(&dir));
    assert!(
        dir.file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .contains("job-dl-1")
    );
    // A second download of the same name gets its own file.
    let second = downloads
        .fetch(&format!("{server}/files/data.bin"))
        .await
        .unwrap();
    assert_ne!(second, path);
    drop(downloads);
    assert!(!dir.exists(), "{} was not removed", dir.display());
}

#[tokio::test]
async fn loopback_is_refused_by_default() {
    let server = file_server().await;
    let url = format!("{server}/files/data.bin");
    let err = Downloads::new("job-ssrf")
        .unwrap()
        .allow_private(false)
        .fetch(&url)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), DownloadErrorKind::Refused, "{err}");
    let text = err.to_string();
    assert!(
        text.contains("127.0.0.1") && text.contains("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS"),
        "{text}"
    );
    // `localhost` is resolved and refused the same way, and so is the metadata address.
    for url in [
        url.replace("127.0.0.1", "localhost"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[::1]:9/x".to_owned(),
        "http://10.0.0.1/x".to_owned(),
    ] {
        let err = Downloads::new("job-ssrf")
            .unwrap()
            .allow_private(false)
            .fetch(&url)
            .await
            .unwrap_err();
        assert_eq!(err.kind(), DownloadErrorKind::Refused, "{url}: {err}");
    }
    // Job::download follows the environment, where nothing allows private addresses here.
    if std::env::var_os("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS").is_none() {
        let job = Job::new("job-ssrf-2", serde_json::json!({}));
        let err = job.download(&url).await.unwrap_err();
        assert_eq!(err.kind(), DownloadErrorKind::Refused, "{err}");
    }
}

#[tokio::test]
async fn only_http_and_https() {
    for url in ["file:///etc/passwd", "ftp://example.com/x", "not a url"] {
        let err = downloads("job-scheme").fetch(url).await.unwrap_err();
        assert_eq!(err.kind(), DownloadErrorKind::InvalidUrl, "{url}: {err}");
    }
}

#[tokio::test]
async fn follows_up_to_five_redirects() {
    let server = file_server().await;
    let downloads = downloads("job-redirect");
    let path = downloads
        .fetch(&format!("{server}/redirect/4"))
        .await
        .unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), PAYLOAD);
    let err = downloads
        .fetch(&format!("{server}/redirect/5"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), DownloadErrorKind::TooManyRedirects, "{err}");
    let err = downloads
        .fetch(&format!("{server}/forever"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), DownloadErrorKind::TooManyRedirects, "{err}");
}

#[tokio::test]
async fn size_cap_with_and_without_content_length() {
    let server = file_server().await;
    let downloads = downloads("job-cap").max_bytes(10);
    let err = downloads
        .fetch(&format!("{server}/files/data.bin"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), DownloadErrorKind::TooLarge, "{err}");
    let err = downloads.fetch(&server.stream.clone()).await.unwrap_err();
    assert_eq!(err.kind(), DownloadErrorKind::TooLarge, "{err}");
    assert!(
        err.to_string().contains("RUNPOD_MAX_DOWNLOAD_BYTES"),
        "{err}"
    );
    // Nothing partial is left behind.
    let left: Vec<PathBuf> = std::fs::read_dir(downloads.dir().unwrap())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert!(left.is_empty(), "{left:?}");
    // Under the cap, the streamed body arrives whole.
    let big = Downloads::new("job-cap-ok")
        .unwrap()
        .allow_private(true)
        .max_bytes(8000);
    let path = big.fetch(&server.stream.clone()).await.unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().len(), 8000);
}

#[tokio::test]
async fn error_statuses_are_reported() {
    let server = file_server().await;
    let err = downloads("job-404")
        .fetch(&format!("{server}/missing"))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), DownloadErrorKind::Status, "{err}");
    assert!(err.to_string().contains("404"), "{err}");
}

macro_rules! moto_or_skip {
    () => {
        match moto::moto_server() {
            Ok(server) => server,
            Err(why) => {
                eprintln!("skipping the S3 test: {why}");
                return;
            }
        }
    };
}

fn config(moto: &moto::Moto, bucket: &str) -> BucketConfig {
    BucketConfig {
        endpoint_url: moto.url.clone(),
        access_key_id: "AKIDTESTWORKER".into(),
        secret_access_key: "test-secret".into(),
        bucket_name: Some(bucket.into()),
        region: None,
    }
}

#[tokio::test]
async fn s3_upload_and_presigned_get() {
    let server = moto_or_skip!();
    let moto = moto::Moto::start(&server, false);
    moto.create_bucket("worker-outputs").await;
    let bucket = Bucket::new(config(&moto, "worker-outputs")).unwrap();

    // Bytes.
    let url = bucket
        .upload_bytes("job-s3-1", "result.json", b"{\"big\": true}".to_vec())
        .await
        .unwrap();
    assert!(
        url.path().ends_with("/worker-outputs/job-s3-1/result.json"),
        "{url}"
    );
    let query = url.query().unwrap_or_default();
    assert!(query.contains("X-Amz-Expires=604800"), "{url}");
    assert!(query.contains("X-Amz-Signature="), "{url}");
    let got = reqwest::get(url.clone()).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().await.unwrap().as_ref(), b"{\"big\": true}");

    // A file (12 MB: more than object_store's 10 MB buffer, so a multipart upload).
    let path = std::env::temp_dir().join(format!("worker-upload-{}.bin", std::process::id()));
    let data: Vec<u8> = (0..12_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &data).unwrap();
    let url = bucket.upload_file("job-s3-1", &path).await.unwrap();
    let _ = std::fs::remove_file(&path);
    let got = reqwest::get(url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert!(got.bytes().await.unwrap().as_ref() == data.as_slice());

    // Shorter expiry.
    let url = bucket
        .clone()
        .url_expiry(Duration::from_secs(60))
        .upload_bytes("job-s3-1", "short.txt", "x")
        .await
        .unwrap();
    assert!(url.query().unwrap().contains("X-Amz-Expires=60"), "{url}");

    // The job's s3Config.
    moto.create_bucket("per-job-bucket").await;
    let job = Job::from_json(serde_json::json!({
        "id": "job-s3-2",
        "input": {},
        "s3Config": {
            "endpointUrl": moto.url,
            "accessId": "AKIDJOB",
            "accessSecret": "job-secret",
            "bucketName": "per-job-bucket"
        }
    }))
    .unwrap();
    let bucket = Bucket::from_job(&job)
        .unwrap()
        .expect("s3Config names a bucket");
    assert_eq!(bucket.name(), "per-job-bucket");
    let url = bucket
        .upload_bytes(job.id(), "out.txt", "per job")
        .await
        .unwrap();
    assert!(
        url.path().ends_with("/per-job-bucket/job-s3-2/out.txt"),
        "{url}"
    );
    assert_eq!(
        reqwest::get(url).await.unwrap().text().await.unwrap(),
        "per job"
    );

    // A bucket that does not exist.
    let missing = Bucket::new(config(&moto, "no-such-bucket")).unwrap();
    let err = missing
        .upload_bytes("job-s3-3", "x", "x")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::NoSuchBucket, "{err}");
    assert!(err.to_string().contains("no-such-bucket"), "{err}");
}

#[tokio::test]
async fn s3_credential_errors_are_clear() {
    let server = moto_or_skip!();
    let moto = moto::Moto::start(&server, true);
    let bucket = Bucket::new(config(&moto, "worker-outputs")).unwrap();
    let err = bucket
        .upload_bytes("job-cred", "x.txt", "x")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), StorageErrorKind::Credentials, "{err}");
    let text = err.to_string();
    assert!(text.contains("refused the credentials"), "{text}");
    assert!(text.contains("InvalidAccessKeyId"), "{text}");
    assert!(!text.contains("test-secret"), "the secret leaked: {text}");
}
