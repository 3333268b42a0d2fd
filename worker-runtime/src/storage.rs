//! Large outputs and files to S3-compatible storage, returned as presigned URLs (feature
//! `storage`).
//!
//! A job's result must stay within RunPod's payload limits; anything larger goes to a bucket and
//! the job returns a link. Configured as RunPod workers already are: the environment variables
//! `BUCKET_ENDPOINT_URL`, `BUCKET_ACCESS_KEY_ID` and `BUCKET_SECRET_ACCESS_KEY`, or the job's own
//! `s3Config` (`endpointUrl`, `accessId`, `accessSecret`, `bucketName`) that the platform passes
//! through from the request.
//!
//! ```no_run
//! # async fn handler(job: &worker::Job, png: Vec<u8>) -> Result<String, worker::storage::StorageError> {
//! use worker::storage::Bucket;
//!
//! match Bucket::from_job(job)? {
//!     Some(bucket) => Ok(bucket.upload_bytes(job.id(), "thumb.png", png).await?.to_string()),
//!     None => Ok("no bucket configured: return the bytes inline".into()),
//! }
//! # }
//! ```
//!
//! Objects are stored at `<job id>/<name>` in the bucket named by `s3Config.bucketName`, else
//! `BUCKET_NAME`, else, as the Python SDK's `rp_upload`, the current month and year (`MM-YY`).
//! The region comes from the endpoint URL as the Python SDK reads it (`….s3.<region>.…`,
//! `<region>.digitaloceanspaces.com`), else `BUCKET_REGION`, else `us-east-1`. Requests use
//! path-style addressing (`<endpoint>/<bucket>/<key>`), which S3-compatible stores expect.
//!
//! Uploads and signing are done by the [`object_store`] crate (its Amazon S3 client).
//!
//! Over 400 lines with its tests: settings resolution (job `s3Config`, then the environment),
//! the client, uploads and presigned URLs, and the classification of S3 errors into messages
//! that say what to fix are one concept a handler sees as `Bucket`.

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::signer::{Method, Signer as _};
use object_store::{ClientOptions, ObjectStoreExt as _, PutPayload, RetryConfig};
use reqwest::Url;
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use crate::Job;
use crate::error::chain;

/// How long presigned URLs stay valid by default: 7 days (604 800 s), as the Python SDK, and the
/// longest S3's signature version 4 allows.
pub const DEFAULT_URL_EXPIRY: Duration = Duration::from_secs(604_800);

/// Where to upload: an S3-compatible endpoint, credentials and a bucket.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct BucketConfig {
    /// The S3 endpoint, e.g. `https://s3.us-east-1.amazonaws.com` or
    /// `https://<account>.r2.cloudflarestorage.com`.
    pub endpoint_url: String,
    /// The access key id.
    pub access_key_id: String,
    /// The secret access key.
    pub secret_access_key: String,
    /// The bucket; `None`: `MM-YY` of the current month, as the Python SDK.
    pub bucket_name: Option<String>,
    /// The region; `None`: read from the endpoint URL, else `us-east-1`.
    pub region: Option<String>,
}

impl fmt::Debug for BucketConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BucketConfig")
            .field("endpoint_url", &self.endpoint_url)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"<redacted>")
            .field("bucket_name", &self.bucket_name)
            .field("region", &self.region)
            .finish()
    }
}

/// Why an upload failed.
#[derive(Debug)]
pub struct StorageError {
    kind: StorageErrorKind,
    message: String,
    source: crate::error::Source,
}

/// What kind of [`StorageError`] this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum StorageErrorKind {
    /// The configuration is incomplete or malformed.
    Config,
    /// The server refused the credentials (unknown key, wrong secret, no permission).
    Credentials,
    /// The bucket does not exist.
    NoSuchBucket,
    /// The file to upload could not be read.
    Io,
    /// Any other failure: connection, server error, signing.
    Upload,
}

crate::error::kinded_error!(StorageError, StorageErrorKind);

/// An S3-compatible bucket to upload job outputs to.
#[derive(Debug, Clone)]
pub struct Bucket {
    store: Arc<AmazonS3>,
    endpoint: String,
    bucket: String,
    /// Which settings the credentials came from, for error messages.
    source: &'static str,
    url_expiry: Duration,
}

impl Bucket {
    /// The bucket configured by `BUCKET_ENDPOINT_URL`, `BUCKET_ACCESS_KEY_ID`,
    /// `BUCKET_SECRET_ACCESS_KEY` (and optionally `BUCKET_NAME`, `BUCKET_REGION`).
    ///
    /// `Ok(None)` when `BUCKET_ENDPOINT_URL` is unset or empty; an error when it is set but the
    /// credentials are missing.
    pub fn from_env() -> Result<Option<Bucket>, StorageError> {
        Bucket::from_parts(None, "BUCKET_* environment variables")
    }

    /// The bucket of a job: the job's `s3Config` (`endpointUrl`, `accessId`, `accessSecret`,
    /// `bucketName`), each field falling back to the environment as in [`Bucket::from_env`].
    /// `Ok(None)` when neither names an endpoint.
    pub fn from_job(job: &Job) -> Result<Option<Bucket>, StorageError> {
        match job.raw().get("s3Config") {
            Some(config @ Value::Object(_)) => {
                Bucket::from_parts(Some(config), "the job's s3Config")
            }
            _ => Bucket::from_env(),
        }
    }

    fn from_parts(
        s3: Option<&Value>,
        source: &'static str,
    ) -> Result<Option<Bucket>, StorageError> {
        let field = |key: &str, var: &str| -> Option<String> {
            s3.and_then(|c| c.get(key))
                .and_then(Value::as_str)
                .map(str::to_owned)
                .or_else(|| std::env::var(var).ok())
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(endpoint_url) = field("endpointUrl", "BUCKET_ENDPOINT_URL") else {
            return Ok(None);
        };
        let missing = |what: &str, key: &str, var: &str| {
            StorageError::new(
                StorageErrorKind::Config,
                format!(
                    "an S3 endpoint is configured ({endpoint_url}) but no {what}: set {var} or the job's s3Config.{key}"
                ),
            )
        };
        let access_key_id = field("accessId", "BUCKET_ACCESS_KEY_ID")
            .ok_or_else(|| missing("access key id", "accessId", "BUCKET_ACCESS_KEY_ID"))?;
        let secret_access_key =
            field("accessSecret", "BUCKET_SECRET_ACCESS_KEY").ok_or_else(|| {
                missing(
                    "secret access key",
                    "accessSecret",
                    "BUCKET_SECRET_ACCESS_KEY",
                )
            })?;
        let config = BucketConfig {
            endpoint_url,
            access_key_id,
            secret_access_key,
            bucket_name: field("bucketName", "BUCKET_NAME"),
            region: std::env::var("BUCKET_REGION")
                .ok()
                .filter(|r| !r.is_empty()),
        };
        let mut bucket = Bucket::new(config)?;
        bucket.source = source;
        Ok(Some(bucket))
    }

    /// A bucket from explicit settings.
    pub fn new(config: BucketConfig) -> Result<Bucket, StorageError> {
        crate::tls::install_crypto_provider();
        let endpoint = Url::parse(&config.endpoint_url).map_err(|e| {
            StorageError::new(
                StorageErrorKind::Config,
                format!(
                    "the S3 endpoint {:?} is not a URL: {e}",
                    config.endpoint_url
                ),
            )
        })?;
        if !matches!(endpoint.scheme(), "http" | "https") {
            return Err(StorageError::new(
                StorageErrorKind::Config,
                format!("the S3 endpoint {endpoint} must be an http or https URL"),
            ));
        }
        let bucket = config.bucket_name.clone().unwrap_or_else(month_year);
        let region = config
            .region
            .clone()
            .or_else(|| region_from_url(&config.endpoint_url))
            .unwrap_or_else(|| "us-east-1".into());
        let endpoint_text = config.endpoint_url.trim_end_matches('/').to_owned();
        let store = AmazonS3Builder::new()
            .with_endpoint(&endpoint_text)
            .with_virtual_hosted_style_request(false)
            .with_access_key_id(&config.access_key_id)
            .with_secret_access_key(&config.secret_access_key)
            .with_bucket_name(&bucket)
            .with_region(region)
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(60),
                ..RetryConfig::default()
            })
            .with_client_options(
                // Set here: `with_client_options` replaces what `with_allow_http` would set.
                ClientOptions::new()
                    .with_allow_http(endpoint.scheme() == "http")
                    .with_connect_timeout(Duration::from_secs(10))
                    .with_user_agent(
                        crate::wire::user_agent()
                            .parse()
                            .unwrap_or(reqwest::header::HeaderValue::from_static("worker")),
                    ),
            )
            .build()
            .map_err(|e| {
                StorageError::new(
                    StorageErrorKind::Config,
                    format!("the S3 settings for {endpoint_text} are not usable: {e}"),
                )
            })?;
        Ok(Bucket {
            store: Arc::new(store),
            endpoint: endpoint_text,
            bucket,
            source: "the bucket settings",
            url_expiry: DEFAULT_URL_EXPIRY,
        })
    }

    /// How long the returned URLs stay valid (default 7 days, the most S3 allows).
    pub fn url_expiry(mut self, expiry: Duration) -> Bucket {
        self.url_expiry = expiry;
        self
    }

    /// The bucket's name.
    pub fn name(&self) -> &str {
        &self.bucket
    }

    /// Upload `bytes` as `<job_id>/<name>` and return a presigned GET URL for it.
    pub async fn upload_bytes(
        &self,
        job_id: &str,
        name: &str,
        bytes: impl Into<Vec<u8>>,
    ) -> Result<Url, StorageError> {
        let key = self.key(job_id, name)?;
        self.store
            .put(&key, PutPayload::from(bytes.into()))
            .await
            .map_err(|e| self.error(&key, e))?;
        self.presign(&key).await
    }

    /// Upload the file at `path` as `<job_id>/<file name>`, streamed (multipart for large
    /// files), and return a presigned GET URL for it.
    pub async fn upload_file(&self, job_id: &str, path: &Path) -> Result<Url, StorageError> {
        let name = path.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
            StorageError::new(
                StorageErrorKind::Io,
                format!("{} has no usable file name", path.display()),
            )
        })?;
        let key = self.key(job_id, name)?;
        let io = |e: std::io::Error| {
            StorageError::new(
                StorageErrorKind::Io,
                format!("uploading {}: {e}", path.display()),
            )
        };
        let mut file = tokio::fs::File::open(path).await.map_err(io)?;
        let mut writer = object_store::buffered::BufWriter::new(self.store.clone(), key.clone());
        let copied = tokio::io::copy(&mut file, &mut writer).await;
        let finished = match copied {
            Ok(_) => writer.shutdown().await,
            Err(e) => {
                let _ = writer.abort().await;
                Err(e)
            }
        };
        if let Err(e) = finished {
            // BufWriter reports store errors as io::Error wrapping the object_store::Error.
            return Err(match e.into_inner() {
                Some(inner) => match inner.downcast::<object_store::Error>() {
                    Ok(store_error) => self.error(&key, *store_error),
                    Err(other) => io(std::io::Error::other(other)),
                },
                None => io(std::io::Error::other("the upload failed")),
            });
        }
        self.presign(&key).await
    }

    fn key(&self, job_id: &str, name: &str) -> Result<ObjectPath, StorageError> {
        let bad = |what: &str| {
            StorageError::new(
                StorageErrorKind::Config,
                format!("cannot upload {job_id:?}/{name:?}: {what}"),
            )
        };
        if job_id.is_empty() || name.is_empty() {
            return Err(bad("the job id and the name must not be empty"));
        }
        let job = ObjectPath::parse(job_id).map_err(|e| bad(&e.to_string()))?;
        Ok(job.join(name))
    }

    async fn presign(&self, key: &ObjectPath) -> Result<Url, StorageError> {
        self.store
            .signed_url(Method::GET, key, self.url_expiry)
            .await
            .map_err(|e| self.error(key, e))
    }

    fn error(&self, key: &ObjectPath, e: object_store::Error) -> StorageError {
        let place = format!("{}/{}/{key}", self.endpoint, self.bucket);
        match e {
            object_store::Error::Unauthenticated { .. }
            | object_store::Error::PermissionDenied { .. } => StorageError::new(
                StorageErrorKind::Credentials,
                format!(
                    "uploading to {place}: the S3 server refused the credentials from {} \
                     (check the access key id, the secret and the key's permissions on bucket {:?}): {e}",
                    self.source, self.bucket
                ),
            ),
            other => {
                let text = chain(&other);
                let kind = if text.contains("NoSuchBucket") {
                    StorageErrorKind::NoSuchBucket
                } else if [
                    "InvalidAccessKeyId",
                    "SignatureDoesNotMatch",
                    "AccessDenied",
                ]
                .iter()
                .any(|code| text.contains(code))
                {
                    StorageErrorKind::Credentials
                } else {
                    StorageErrorKind::Upload
                };
                let what = match kind {
                    StorageErrorKind::NoSuchBucket => {
                        format!("the bucket {:?} does not exist", self.bucket)
                    }
                    StorageErrorKind::Credentials => format!(
                        "the S3 server refused the credentials from {} (check the access key id, the secret and the key's permissions on bucket {:?})",
                        self.source, self.bucket
                    ),
                    _ => "the upload failed".into(),
                };
                StorageError::new(kind, format!("uploading to {place}: {what}: {text}"))
            }
        }
    }
}

/// `MM-YY` of the current month (UTC): the Python SDK's default bucket name.
fn month_year() -> String {
    bucket_name_for(chrono::Utc::now())
}

/// `MM-YY` of `date`'s month.
fn bucket_name_for(date: impl chrono::Datelike) -> String {
    format!("{:02}-{:02}", date.month(), date.year().rem_euclid(100))
}

/// The region in an endpoint URL, as the Python SDK's `extract_region_from_url` reads it.
fn region_from_url(endpoint: &str) -> Option<String> {
    if let Some((_, rest)) = endpoint.split_once(".s3.") {
        return rest
            .split('.')
            .next()
            .map(str::to_owned)
            .filter(|r| !r.is_empty());
    }
    let host = Url::parse(endpoint).ok()?.host_str()?.to_owned();
    host.strip_suffix(".digitaloceanspaces.com")
        .map(|r| r.rsplit('.').next().unwrap_or(r).to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn month_year_dates() {
        let date = |y, m, d| chrono::NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(bucket_name_for(date(2024, 2, 29)), "02-24");
        assert_eq!(bucket_name_for(date(1970, 1, 1)), "01-70");
        assert_eq!(bucket_name_for(date(2026, 1, 1)), "01-26");
        assert_eq!(bucket_name_for(date(2000, 12, 31)), "12-00");
        let now = month_year();
        assert_eq!(now.len(), 5, "{now}");
    }

    #[test]
    fn regions_from_endpoints() {
        assert_eq!(
            region_from_url("https://bucket.s3.eu-west-2.amazonaws.com").as_deref(),
            Some("eu-west-2")
        );
        assert_eq!(
            region_from_url("https://nyc3.digitaloceanspaces.com").as_deref(),
            Some("nyc3")
        );
        assert_eq!(region_from_url("http://127.0.0.1:9000"), None);
    }

    #[test]
    fn s3_config_fields_and_missing_secret() {
        let job = Job::from_json(serde_json::json!({
            "id": "j1", "input": {},
            "s3Config": {"endpointUrl": "http://127.0.0.1:1", "accessId": "AK", "accessSecret": "S", "bucketName": "b-1"}
        }))
        .unwrap();
        let bucket = Bucket::from_job(&job).unwrap().unwrap();
        assert_eq!(bucket.name(), "b-1");
        let job = Job::from_json(serde_json::json!({
            "id": "j1", "input": {},
            "s3Config": {"endpointUrl": "http://127.0.0.1:1", "accessId": "AK"}
        }))
        .unwrap();
        if std::env::var_os("BUCKET_SECRET_ACCESS_KEY").is_none() {
            let err = Bucket::from_job(&job).unwrap_err();
            assert_eq!(err.kind(), StorageErrorKind::Config);
            assert!(
                err.to_string().contains("BUCKET_SECRET_ACCESS_KEY"),
                "{err}"
            );
        }
    }

    #[test]
    fn config_debug_hides_the_secret() {
        let config = BucketConfig {
            secret_access_key: "hunter2".into(),
            ..BucketConfig::default()
        };
        assert!(!format!("{config:?}").contains("hunter2"));
    }
}
