//! The thumbnail example end to end, in local test mode: a PNG and a JPEG served on loopback,
//! the thumbnail inline as base64, and uploaded to moto's S3 server (a presigned URL).
//!
//! `cargo test --features thumbnail --test thumbnail`

#![cfg(unix)]

#[path = "../worker-runtime/tests/support/moto.rs"]
mod moto;
mod support;

use std::io::Cursor;

use axum::Router;
use axum::http::header;
use axum::routing::get;
use base64::Engine as _;
use serde_json::Value;
use support::{example, run_local};

fn picture(format: image::ImageFormat) -> Vec<u8> {
    let img = image::RgbImage::from_fn(200, 100, |x, y| image::Rgb([x as u8, y as u8, 128]));
    let mut out = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut Cursor::new(&mut out), format)
        .unwrap();
    out
}

async fn image_server() -> String {
    let png = picture(image::ImageFormat::Png);
    let jpeg = picture(image::ImageFormat::Jpeg);
    let app = Router::new()
        .route(
            "/cat.png",
            get(move || async move { ([(header::CONTENT_TYPE, "image/png")], png) }),
        )
        .route(
            "/cat.jpg",
            get(move || async move { ([(header::CONTENT_TYPE, "image/jpeg")], jpeg) }),
        )
        .route("/not-an-image", get(|| async { "hello" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

/// Run the example on one job in local test mode; check that its download directory is gone.
fn run(env: &[(&str, &str)], input: Value) -> (i32, Value, String) {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let id = format!("thumb-job-{}-{n}", std::process::id());
    let job = serde_json::json!({ "id": id, "input": input }).to_string();
    // TMPDIR: the worker's temp dir, to look for leftovers in.
    let tmp = std::env::temp_dir().join(format!("thumb-tmp-{id}"));
    std::fs::create_dir_all(&tmp).unwrap();
    let tmp_text = tmp.to_str().unwrap().to_owned();
    let mut env = env.to_vec();
    env.push(("TMPDIR", &tmp_text));
    let (code, stdout, stderr) =
        run_local(&example("thumbnail"), &env, &["--test_input", &job], &[]);
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(
        left.is_empty(),
        "the job's downloads were not removed: {left:?}"
    );
    let _ = std::fs::remove_dir(&tmp);
    let out = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (code, out, stderr)
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let img = image::load_from_memory_with_format(bytes, image::ImageFormat::Png).unwrap();
    (img.width(), img.height())
}

const ALLOW: (&str, &str) = ("RUNPOD_ALLOW_PRIVATE_DOWNLOAD_URLS", "1");

#[tokio::test(flavor = "multi_thread")]
async fn png_and_jpeg_to_inline_base64() {
    let server = image_server().await;
    for name in ["cat.png", "cat.jpg"] {
        let (code, out, stderr) = run(
            &[ALLOW],
            serde_json::json!({"image_url": format!("{server}/{name}"), "width": 50}),
        );
        assert_eq!(code, 0, "{out}\n{stderr}");
        let output = &out["output"];
        assert_eq!(output["width"], 50);
        assert_eq!(output["height"], 25);
        assert!(output.get("url").is_none());
        let png = base64::engine::general_purpose::STANDARD
            .decode(output["image_base64"].as_str().unwrap())
            .unwrap();
        assert_eq!(png_size(&png), (50, 25));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn refuses_loopback_urls_by_default_and_bad_images() {
    let server = image_server().await;
    let (code, out, _) = run(
        &[],
        serde_json::json!({"image_url": format!("{server}/cat.png"), "width": 50}),
    );
    assert_eq!(code, 1);
    let error = out["error"].as_str().unwrap();
    assert!(error.contains("refusing to download"), "{error}");

    let (code, out, _) = run(
        &[ALLOW],
        serde_json::json!({"image_url": format!("{server}/not-an-image"), "width": 50}),
    );
    assert_eq!(code, 1);
    assert!(
        out["error"].as_str().unwrap().contains("not a PNG or JPEG"),
        "{out}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_to_the_bucket_when_configured() {
    let moto_server = match moto::moto_server() {
        Ok(server) => server,
        Err(why) => {
            eprintln!("skipping the S3 test: {why}");
            return;
        }
    };
    let moto = moto::Moto::start(&moto_server, false);
    moto.create_bucket("thumbnails").await;
    let server = image_server().await;
    let (code, out, stderr) = run(
        &[
            ALLOW,
            ("BUCKET_ENDPOINT_URL", &moto.url),
            ("BUCKET_ACCESS_KEY_ID", "AKIDTHUMB"),
            ("BUCKET_SECRET_ACCESS_KEY", "thumb-secret"),
            ("BUCKET_NAME", "thumbnails"),
        ],
        serde_json::json!({"image_url": format!("{server}/cat.jpg"), "width": 40}),
    );
    assert_eq!(code, 0, "{out}\n{stderr}");
    let output = &out["output"];
    assert!(output.get("image_base64").is_none());
    let url = output["url"].as_str().unwrap();
    assert!(url.contains("/thumbnails/thumb-job-"), "{url}");
    assert!(url.contains("/thumbnail.png?"), "{url}");
    let got = reqwest::get(url).await.unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(png_size(&got.bytes().await.unwrap()), (40, 20));
}
