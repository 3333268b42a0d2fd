//! A thumbnail worker: downloads an image from a URL, resizes it to `width` pixels wide (keeping
//! its aspect ratio), and returns it as PNG: inline as base64, or, when a bucket is configured
//! (`BUCKET_*` variables or the job's `s3Config`), as a presigned URL.
//!
//! ```text
//! cargo run --features thumbnail --example thumbnail -- \
//!     --test_input '{"input": {"image_url": "https://example.com/cat.jpg", "width": 128}}'
//! ```
//!
//! It uses the runtime's opt-in features `download` (`job.download`: a per-job temporary
//! directory, size cap, no private addresses unless `RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS=1`)
//! and `storage` (`worker::storage::Bucket`), and the `image` crate with PNG and JPEG only.

use std::io::Cursor;

use anyhow::{Context as _, ensure};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use worker::Job;
use worker::storage::Bucket;

#[derive(Deserialize)]
struct Input {
    image_url: String,
    width: u32,
}

#[derive(Serialize)]
struct Thumbnail {
    width: u32,
    height: u32,
    format: &'static str,
    /// The PNG, base64-encoded, when no bucket is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    image_base64: Option<String>,
    /// A presigned URL of the PNG, when a bucket is configured.
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<String>,
}

#[worker::handler]
async fn thumbnail(input: Input, job: &Job) -> anyhow::Result<Thumbnail> {
    ensure!(
        (1..=4096).contains(&input.width),
        "width must be between 1 and 4096, not {}",
        input.width
    );
    // Removed with the job's temporary directory when the job ends.
    let path = job.download(&input.image_url).await?;
    // Decoding and resizing are quick for the sizes a thumbnail worker sees; a worker doing
    // heavier work would move it to `tokio::task::spawn_blocking` or use a plain `fn` handler.
    let image = image::ImageReader::open(&path)
        .context("reading the downloaded image")?
        .with_guessed_format()
        .context("reading the downloaded image")?
        .decode()
        .context("the URL is not a PNG or JPEG image")?;
    let height = ((u64::from(image.height()) * u64::from(input.width))
        / u64::from(image.width().max(1)))
    .max(1) as u32;
    let small = image.resize_exact(input.width, height, image::imageops::FilterType::Triangle);
    let mut png = Vec::new();
    small
        .write_to(&mut Cursor::new(&mut png), image::ImageFormat::Png)
        .context("encoding the thumbnail")?;

    let (image_base64, url) = match Bucket::from_job(job)? {
        Some(bucket) => {
            let url = bucket.upload_bytes(job.id(), "thumbnail.png", png).await?;
            (None, Some(url.to_string()))
        }
        None => (
            Some(base64::engine::general_purpose::STANDARD.encode(&png)),
            None,
        ),
    };
    Ok(Thumbnail {
        width: input.width,
        height,
        format: "png",
        image_base64,
        url,
    })
}
