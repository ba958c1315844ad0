//! Raw HTTP/1.1 keep-alive connections for the load phases, and a JSON GET for the bookkeeping
//! calls.
//!
//! The load generator shares the machine's cores with the server it measures, so every
//! microsecond it spends per request is taken from the server. A load connection is therefore
//! a bare socket: the request is written with one `write` from a buffer reused for every
//! request (its fixed header lines formatted once per endpoint), and the response is parsed in
//! place (`httparse`). One task per connection, no pool, no separate connection task: the
//! measured latency is the server's. Bodies framed by `Content-Length` and `chunked` are both
//! read; a response without either (read to the end) or with `Connection: close` closes the
//! connection, and the caller reconnects.

use std::io::{Error, ErrorKind, Write as _};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::{Bytes, BytesMut};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::server::ADMIN_TOKEN;

/// Header lines the response may have; more is an error.
const MAX_HEADERS: usize = 32;
/// Bytes read per `read` call at least.
const READ_CHUNK: usize = 8 * 1024;

/// One keep-alive HTTP/1.1 connection sending requests one after the other.
pub struct Conn {
    tcp: TcpStream,
    /// The request being written (reused).
    out: Vec<u8>,
    /// Bytes read and not yet consumed.
    buf: BytesMut,
    /// The server closes the connection after the last response (or it broke).
    closed: bool,
}

/// A whole response.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Bytes,
}

/// How the response's body ends.
enum Framing {
    Length(usize),
    Chunked,
    /// Until the server closes the connection.
    Close,
}

pub async fn connect(addr: SocketAddr) -> Result<Conn> {
    let tcp = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    tcp.set_nodelay(true)?;
    Ok(Conn {
        tcp,
        out: Vec::with_capacity(512),
        buf: BytesMut::with_capacity(READ_CHUNK),
        closed: false,
    })
}

/// Replaces a broken connection, retrying until it works or `deadline` passes.
pub async fn reconnect(addr: SocketAddr, deadline: Instant) -> Option<Conn> {
    while Instant::now() < deadline {
        if let Ok(s) = connect(addr).await {
            return Some(s);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// The fixed header lines of requests to `host`: `Host`, `Content-Type: application/json` and
/// an optional `Authorization`, each ending in CRLF (see [`Conn::post`]).
pub fn request_head(host: &str, authorization: Option<&str>) -> Result<String> {
    let mut head = String::new();
    for (name, value) in [
        ("Host", Some(host)),
        ("Content-Type", Some("application/json")),
        ("Authorization", authorization),
    ] {
        let Some(value) = value else { continue };
        if value.bytes().any(|b| b == b'\r' || b == b'\n') {
            bail!("the {name} header value contains a line break");
        }
        head.push_str(name);
        head.push_str(": ");
        head.push_str(value);
        head.push_str("\r\n");
    }
    Ok(head)
}

impl Conn {
    /// Sends `POST path` with `head` (from [`request_head`]) and `body`, and reads the whole
    /// response.
    pub async fn post(&mut self, path: &str, head: &str, body: &[u8]) -> std::io::Result<Response> {
        if self.closed {
            return Err(Error::new(ErrorKind::NotConnected, "connection closed"));
        }
        self.out.clear();
        self.out.extend_from_slice(b"POST ");
        self.out.extend_from_slice(path.as_bytes());
        self.out.extend_from_slice(b" HTTP/1.1\r\n");
        self.out.extend_from_slice(head.as_bytes());
        write!(self.out, "Content-Length: {}\r\n\r\n", body.len())?;
        self.out.extend_from_slice(body);
        let result = self.exchange().await;
        if result.is_err() {
            self.closed = true;
        }
        result
    }

    async fn exchange(&mut self) -> std::io::Result<Response> {
        self.tcp.write_all(&self.out).await?;
        let (head_len, status, framing, close) = loop {
            if let Some(parsed) = parse_head(&self.buf)? {
                break parsed;
            }
            self.read_more().await?;
        };
        let _ = self.buf.split_to(head_len);
        let body = match framing {
            Framing::Length(n) => {
                while self.buf.len() < n {
                    self.read_more().await?;
                }
                self.buf.split_to(n).freeze()
            }
            Framing::Chunked => self.read_chunked().await?,
            Framing::Close => {
                while self.read_some().await? > 0 {}
                self.closed = true;
                self.buf.split().freeze()
            }
        };
        if close {
            self.closed = true;
        }
        Ok(Response { status, body })
    }

    async fn read_chunked(&mut self) -> std::io::Result<Bytes> {
        let mut body = BytesMut::new();
        loop {
            let (skip, size) = loop {
                match httparse::parse_chunk_size(&self.buf) {
                    Ok(httparse::Status::Complete(found)) => break found,
                    Ok(httparse::Status::Partial) => self.read_more().await?,
                    Err(_) => return Err(invalid("bad chunk size line")),
                }
            };
            let size = usize::try_from(size).map_err(|_| invalid("chunk too large"))?;
            // The chunk's data and its CRLF; the last (empty) chunk is followed by a CRLF
            // (trailer fields are not expected from the server and are refused).
            while self.buf.len() < skip + size + 2 {
                self.read_more().await?;
            }
            let mut chunk = self.buf.split_to(skip + size + 2);
            if &chunk[skip + size..] != b"\r\n" {
                return Err(invalid("chunk not followed by CRLF"));
            }
            if size == 0 {
                return Ok(body.freeze());
            }
            body.extend_from_slice(&chunk.split_to(skip + size)[skip..]);
        }
    }

    /// Reads at least one byte more, or fails at the end of the stream.
    async fn read_more(&mut self) -> std::io::Result<()> {
        if self.read_some().await? == 0 {
            return Err(Error::new(
                ErrorKind::UnexpectedEof,
                "connection closed mid-response",
            ));
        }
        Ok(())
    }

    async fn read_some(&mut self) -> std::io::Result<usize> {
        self.buf.reserve(READ_CHUNK);
        self.tcp.read_buf(&mut self.buf).await
    }
}

fn invalid(what: &str) -> Error {
    Error::new(ErrorKind::InvalidData, what.to_owned())
}

/// Parses a response head: `(its length, status, framing, connection closes)`, or `None` if
/// more bytes are needed.
fn parse_head(buf: &[u8]) -> std::io::Result<Option<(usize, u16, Framing, bool)>> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut resp = httparse::Response::new(&mut headers);
    let len = match resp.parse(buf) {
        Ok(httparse::Status::Complete(len)) => len,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(invalid(&format!("bad response head: {e}"))),
    };
    let status = resp.code.unwrap_or_default();
    let mut framing = Framing::Close;
    let mut close = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| invalid("bad Content-Length"))?;
            framing = Framing::Length(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            if h.value.eq_ignore_ascii_case(b"chunked") {
                framing = Framing::Chunked;
            } else {
                return Err(invalid("unsupported Transfer-Encoding"));
            }
        } else if h.name.eq_ignore_ascii_case("connection")
            && h.value.eq_ignore_ascii_case(b"close")
        {
            close = true;
        }
    }
    if status == 204 || status == 304 || (100..200).contains(&status) {
        framing = Framing::Length(0);
    }
    Ok(Some((len, status, framing, close)))
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

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// Serves `answers` in turn on one connection, each after reading one request head and its
    /// `Content-Length` body; returns the requests as received.
    async fn serve(listener: TcpListener, answers: Vec<&'static [u8]>) -> Vec<String> {
        let (mut s, _) = listener.accept().await.expect("test I/O");
        let mut seen = Vec::new();
        let mut buf = Vec::new();
        for answer in answers {
            let request = loop {
                let mut headers = [httparse::EMPTY_HEADER; 16];
                let mut req = httparse::Request::new(&mut headers);
                if let Ok(httparse::Status::Complete(n)) = req.parse(&buf) {
                    let len: usize = req
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                        .map(|h| {
                            std::str::from_utf8(h.value)
                                .expect("test I/O")
                                .parse()
                                .expect("test I/O")
                        })
                        .expect("test I/O");
                    if buf.len() >= n + len {
                        break buf.drain(..n + len).collect::<Vec<u8>>();
                    }
                }
                let mut chunk = [0u8; 1024];
                let got = s.read(&mut chunk).await.expect("test I/O");
                assert!(got > 0, "client closed early");
                buf.extend_from_slice(&chunk[..got]);
            };
            seen.push(String::from_utf8(request).expect("test I/O"));
            // Written in two parts, so the client must reassemble.
            let (a, b) = answer.split_at(answer.len() / 2);
            s.write_all(a).await.expect("test I/O");
            s.flush().await.expect("test I/O");
            tokio::time::sleep(Duration::from_millis(5)).await;
            s.write_all(b).await.expect("test I/O");
        }
        seen
    }

    #[tokio::test]
    async fn reads_length_and_chunked_bodies_on_one_connection() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("test I/O");
        let addr = listener.local_addr().expect("test I/O");
        let server = tokio::spawn(serve(
            listener,
            vec![
                b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello",
                b"HTTP/1.1 429 Too Many Requests\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
                b"HTTP/1.1 204 No Content\r\n\r\n",
                b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            ],
        ));
        let head = request_head(&addr.to_string(), Some("Bearer t")).expect("test I/O");
        let mut conn = connect(addr).await.expect("test I/O");
        let r = conn
            .post("/a", &head, b"{\"n\":1}")
            .await
            .expect("test I/O");
        assert_eq!((r.status, &r.body[..]), (200, &b"hello"[..]));
        let r = conn.post("/b?x=1", &head, b"{}").await.expect("test I/O");
        assert_eq!((r.status, &r.body[..]), (429, &b"abcde"[..]));
        let r = conn.post("/c", &head, b"").await.expect("test I/O");
        assert_eq!((r.status, r.body.len()), (204, 0));
        let r = conn.post("/d", &head, b"x").await.expect("test I/O");
        assert_eq!((r.status, &r.body[..]), (200, &b"ok"[..]));
        let err = conn.post("/e", &head, b"x").await.expect_err("must fail");
        assert_eq!(err.kind(), ErrorKind::NotConnected);
        let seen = server.await.expect("test I/O");
        assert_eq!(
            seen[0],
            format!(
                "POST /a HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nAuthorization: Bearer t\r\nContent-Length: 7\r\n\r\n{{\"n\":1}}"
            )
        );
        assert!(seen[1].starts_with("POST /b?x=1 HTTP/1.1\r\n"));
    }

    #[tokio::test]
    async fn a_response_cut_short_is_an_error() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("test I/O");
        let addr = listener.local_addr().expect("test I/O");
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.expect("test I/O");
            let mut chunk = [0u8; 1024];
            let _ = s.read(&mut chunk).await.expect("test I/O");
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                .await
                .expect("test I/O");
        });
        let head = request_head(&addr.to_string(), None).expect("test I/O");
        let mut conn = connect(addr).await.expect("test I/O");
        let err = conn.post("/a", &head, b"{}").await.expect_err("must fail");
        assert_eq!(err.kind(), ErrorKind::UnexpectedEof);
        server.await.expect("test I/O");
        assert!(request_head("h\r\nX: y", None).is_err());
    }
}
