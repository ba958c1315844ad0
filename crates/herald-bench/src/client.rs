//! Raw HTTP/1.1 keep-alive connections for the load phases (hyper, no pooling: one connection per
//! client task, so the measured latency is the server's, not a pool's), and a JSON GET for the
//! bookkeeping calls.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::server::ADMIN_TOKEN;

pub type Sender = http1::SendRequest<Full<Bytes>>;

pub async fn connect(addr: SocketAddr) -> Result<Sender> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    let (sender, conn) = http1::handshake(TokioIo::new(tcp))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// Replaces a broken connection, retrying until it works or `deadline` passes.
pub async fn reconnect(addr: SocketAddr, deadline: Instant) -> Option<Sender> {
    while Instant::now() < deadline {
        if let Ok(s) = connect(addr).await {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// `GET url` with the admin token; the body as JSON, or an error naming the URL and status.
pub async fn get_json(client: &reqwest::Client, url: &str) -> Result<Value> {
    let resp = client
        .get(url)
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if !status.is_success() {
        bail!("GET {url} -> {status}: {body}");
    }
    serde_json::from_str(&body).with_context(|| format!("GET {url}: {body}"))
}
