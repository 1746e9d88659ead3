//! Media scenarios:
//! - `media`: for each `--file-mb` size, uploads files one after another
//!   (enough to move about 200 MB, at least two) and downloads each back;
//!   upload and download throughput in MB/s. Every download must return the
//!   uploaded bytes (length and checksum).
//! - `big-upload`: one `--big-upload-mb` upload, generated as it is sent so
//!   the client holds no file; with `--pause-on-stdin` it waits for a line
//!   after registering (`phase=registered`) so a script can read the server's
//!   idle memory first.
//!
//! Bodies are generated from a seed, so each upload is new content (the
//! server deduplicates identical content) and checks need no copy.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use bytes::Bytes;
use futures_util::StreamExt;
use reqwest::{Client, StatusCode};

use super::{Run, User};

/// Chunks of a generated body.
const CHUNK: usize = 64 * 1024;
/// About this much is uploaded per size in `media`.
const BYTES_PER_SIZE: u64 = 200 * 1024 * 1024;
const MB: f64 = 1024.0 * 1024.0;

pub struct Settings {
    pub file_mb: Vec<u64>,
    pub big_upload_mb: u64,
    pub pause_on_stdin: bool,
}

/// The byte at `offset` of the body made from `seed`.
fn byte_at(seed: u64, offset: u64) -> u8 {
    (offset.wrapping_mul(31).wrapping_add(seed.wrapping_mul(131)) % 251) as u8
}

/// A body of `size` bytes made from `seed`, produced chunk by chunk.
fn generated(seed: u64, size: u64) -> reqwest::Body {
    let chunks = (0..size.div_ceil(CHUNK as u64)).map(move |n| {
        let start = n * CHUNK as u64;
        let end = (start + CHUNK as u64).min(size);
        let chunk: Vec<u8> = (start..end).map(|offset| byte_at(seed, offset)).collect();
        Ok::<_, std::io::Error>(Bytes::from(chunk))
    });
    reqwest::Body::wrap_stream(futures_util::stream::iter(chunks))
}

/// Media transfers take longer than the room client's 60 s.
fn media_client() -> Result<Client> {
    Ok(Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(600))
        .build()?)
}

async fn upload(http: &Client, user: &User, seed: u64, size: u64) -> Result<String> {
    let response = http
        .post(format!("{}/_matrix/media/v3/upload", user.base))
        .bearer_auth(&user.token)
        .header("content-type", "application/octet-stream")
        .header("content-length", size.to_string())
        .body(generated(seed, size))
        .send()
        .await?;
    let status = response.status();
    let reply: serde_json::Value = response.json().await.unwrap_or_default();
    ensure!(status == StatusCode::OK, "upload: {status} {reply}");
    Ok(reply["content_uri"]
        .as_str()
        .context("no content_uri")?
        .to_owned())
}

/// Downloads `content_uri` and checks it is the body made from `seed`.
async fn download(
    http: &Client,
    user: &User,
    content_uri: &str,
    seed: u64,
    size: u64,
) -> Result<()> {
    let path = content_uri
        .strip_prefix("mxc://")
        .context("not an mxc URI")?;
    let response = http
        .get(format!(
            "{}/_matrix/client/v1/media/download/{path}",
            user.base
        ))
        .bearer_auth(&user.token)
        .send()
        .await?;
    ensure!(
        response.status() == StatusCode::OK,
        "download: {}",
        response.status()
    );
    let mut body = response.bytes_stream();
    let mut offset = 0u64;
    while let Some(chunk) = body.next().await {
        for byte in chunk? {
            ensure!(
                byte == byte_at(seed, offset),
                "download differs at byte {offset}"
            );
            offset += 1;
        }
    }
    ensure!(offset == size, "download has {offset} bytes, not {size}");
    Ok(())
}

/// `media`: upload and download throughput per file size.
pub async fn throughput(run: &Run, settings: &Settings) -> Result<bool> {
    let user = User::register(&run.base, &format!("{}-media", run.prefix)).await?;
    let http = media_client()?;
    let mut ok = true;
    for (n, &mb) in settings.file_mb.iter().enumerate() {
        let size = mb * 1024 * 1024;
        let files = (BYTES_PER_SIZE / size.max(1)).max(2);
        let seeds: Vec<u64> = (0..files).map(|i| (n as u64) << 32 | i).collect();
        let mut uris = Vec::new();
        let mut errors = Vec::new();
        let started = Instant::now();
        for &seed in &seeds {
            match upload(&http, &user, seed, size).await {
                Ok(uri) => uris.push((uri, seed)),
                Err(e) => errors.push(e.to_string()),
            }
        }
        let upload_secs = started.elapsed().as_secs_f64();
        let started = Instant::now();
        for (uri, seed) in &uris {
            if let Err(e) = download(&http, &user, uri, *seed, size).await {
                errors.push(e.to_string());
            }
        }
        let download_secs = started.elapsed().as_secs_f64();
        let moved = uris.len() as f64 * size as f64 / MB;
        println!(
            "media size_mb={mb} files={} errors={} upload_secs={upload_secs:.2} upload_mbps={:.1} \
             download_secs={download_secs:.2} download_mbps={:.1}",
            uris.len(),
            errors.len(),
            moved / upload_secs.max(f64::EPSILON),
            moved / download_secs.max(f64::EPSILON),
        );
        for error in errors.iter().take(5) {
            eprintln!("  media {mb} MB: {error}");
        }
        ok &= errors.is_empty();
    }
    Ok(ok)
}

/// `big-upload`: one large upload, for the server's peak memory.
pub async fn big_upload(run: &Run, settings: &Settings) -> Result<bool> {
    let user = User::register(&run.base, &format!("{}-big", run.prefix)).await?;
    println!("big-upload phase=registered");
    if settings.pause_on_stdin {
        let mut line = String::new();
        // EOF or a line: either way, go on.
        let _ = tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut line)).await;
    }
    let http = media_client()?;
    let size = settings.big_upload_mb * 1024 * 1024;
    let started = Instant::now();
    let outcome = upload(&http, &user, 7, size).await;
    let secs = started.elapsed().as_secs_f64();
    let (ok, error) = match &outcome {
        Ok(_) => (true, String::new()),
        Err(e) => (false, format!(" error={e:?}")),
    };
    println!(
        "big-upload phase=done size_mb={} secs={secs:.2} upload_mbps={:.1} ok={ok}{error}",
        settings.big_upload_mb,
        size as f64 / MB / secs.max(f64::EPSILON),
    );
    Ok(ok)
}
