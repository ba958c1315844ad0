//! Hostile clients against the real server: malformed JSON of every kind on every route that
//! reads a body (the table comes from the router itself, so a new route is covered without
//! being listed here), error answers that are always JSON, identifiers with paths and NULs,
//! slow and oversized requests on raw sockets, a connection flood under a small open-file
//! limit, and WebSocket frames that are too large or binary.

mod common;

use std::time::Duration;

use common::process::ChildServer;
use common::*;
use herald_server::{RouteInfo, Takes};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BOT: &str = r#"
name: Shop
channels:
  chatwidget: {}
states:
  Hello:
    q!: hi
    a: hello
"#;

struct Lab {
    server: TestServer,
    _project: tempfile::TempDir,
    _data: tempfile::TempDir,
}

async fn lab(tune: impl FnOnce(&mut herald::Settings)) -> Lab {
    let project = project_with_bot("shop", BOT);
    let data = tempfile::tempdir().expect("tempdir");
    let mut s = settings(data.path());
    tune(&mut s);
    let server = TestServer::start_with(project.path(), s).await;
    Lab {
        server,
        _project: project,
        _data: data,
    }
}

/// The router's own table of routes.
fn table(lab: &Lab) -> Vec<RouteInfo> {
    let running = lab.server.running.as_ref().expect("running");
    herald_server::route_table(running.state())
}

/// A path of the table with its parameters filled in.
fn concrete(path: &str) -> String {
    path.replace("{bot_id}", "shop")
        .replace("{chat_id}", "c1")
        .replace("{id}", "1")
        .replace("{transaction_id}", "tx-1")
        .replace("{subscriber_id}", "s1")
        .replace("{key}", "k1")
        .replace("{file}", "chat.js")
        .replace("{segment}", "push_00000000000000000000000000000000")
}

fn method(m: &axum::http::Method) -> reqwest::Method {
    reqwest::Method::from_bytes(m.as_str().as_bytes()).expect("method")
}

/// Sends `body` as JSON to `method path` with the admin token; status and parsed body.
async fn send(lab: &Lab, m: reqwest::Method, path: &str, ct: &str, body: Vec<u8>) -> (u16, Value) {
    let r = lab
        .server
        .http
        .request(m, lab.server.url(path))
        .bearer_auth(ADMIN)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .expect("send");
    let json = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/json"));
    let (s, v) = status_json(r).await;
    assert!(
        s < 400 || json,
        "{path}: an error answer must be JSON: {s} {v}"
    );
    (s, v)
}

/// Every kind of broken JSON body.
fn malformed() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        (
            "trailing bytes",
            br#"{"channelType": "chatwidget"} garbage!!"#.to_vec(),
        ),
        ("a second value", br#"{"a": 1} {"b": 2}"#.to_vec()),
        ("truncated", br#"{"a":"#.to_vec()),
        ("truncated string", br#"{"a": "b"#.to_vec()),
        (
            "invalid UTF-8 in a string",
            b"{\"a\": \"\xff\xfe\"}".to_vec(),
        ),
        ("invalid UTF-8 in a key", b"{\"\xc3\x28\": 1}".to_vec()),
        ("a duplicate key", br#"{"a": 1, "a": 2}"#.to_vec()),
        (
            "a nested duplicate key",
            br#"{"x": {"k": 1, "k": 2}}"#.to_vec(),
        ),
        ("a trailing comma", br#"{"a": 1,}"#.to_vec()),
        ("single quotes", br#"{'a': 1}"#.to_vec()),
        (
            "too deep",
            ("[".repeat(300) + &"]".repeat(300)).into_bytes(),
        ),
        ("a lone brace", b"}".to_vec()),
        ("a NUL byte", b"{\"a\": 1}\0".to_vec()),
    ]
}

/// Every route that reads a JSON body answers every broken body with `400 malformed_json`, in
/// its API family's shape, and stores nothing.
#[tokio::test]
async fn every_json_route_answers_malformed_json_with_400_and_stores_nothing() {
    let lab = lab(|_| {}).await;
    let routes = table(&lab);
    // Integration webhooks (`Takes::Raw`) verify a signature before they read the body: their
    // malformed bodies are tested with signatures in tests/integrations.rs.
    let json_routes: Vec<&RouteInfo> = routes
        .iter()
        .filter(|r| matches!(r.takes, Takes::Json | Takes::JsonOrForm))
        .collect();
    assert!(
        json_routes.len() >= 15,
        "the table lists the JSON routes: {json_routes:?}"
    );
    let mut checked = 0;
    for r in &json_routes {
        let path = concrete(r.path);
        for (what, body) in malformed() {
            let (s, v) = send(&lab, method(&r.method), &path, "application/json", body).await;
            assert_eq!(s, 400, "{} {path} with {what}: {v}", r.method);
            let code = v["error"]["code"].as_str().or(v["code"].as_str());
            assert_eq!(
                code,
                Some("malformed_json"),
                "{} {path} with {what}: {v}",
                r.method
            );
            checked += 1;
        }
    }
    println!("{checked} malformed bodies on {} routes", json_routes.len());
    let (_, stats) = lab.server.get("/api/v1/admin/stats").await;
    assert_eq!(stats["events"]["accepted"], 0, "{stats}");
    assert_eq!(stats["notifications"]["triggers"], 0, "{stats}");
    let (_, p) = lab.server.get("/api/v1/pushbacks").await;
    assert_eq!(p["pushbacks"], json!([]), "{p}");
}

/// Every path of the table, with every method and a body that is garbage of an unknown type,
/// answers without a 5xx, and every error it gives is JSON.
#[tokio::test]
async fn every_route_and_method_answers_errors_as_json_and_never_a_5xx() {
    let lab = lab(|_| {}).await;
    let mut paths: Vec<&'static str> = table(&lab).iter().map(|r| r.path).collect();
    paths.dedup();
    for path in paths {
        let path = concrete(path);
        for m in ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            let m = reqwest::Method::from_bytes(m.as_bytes()).expect("method");
            let (s, v) = send(
                &lab,
                m.clone(),
                &path,
                "text/x-garbage",
                b"\x00\xff{".to_vec(),
            )
            .await;
            assert!(s < 500, "{m} {path}: {s} {v}");
        }
    }
}

/// What the HTTP layer rejects itself is JSON too: a duplicated query key, a path segment that
/// is not UTF-8, a missing content type, a plain request to the WebSocket route.
#[tokio::test]
async fn the_http_layers_own_rejections_are_json() {
    let lab = lab(|_| {}).await;
    for path in [
        "/bots/shop/jobs?limit=1&limit=2",
        "/api/v1/pushbacks?limit=1&limit=2",
        "/api/v1/bots/shop/dialogs/c1/messages?limit=1&limit=2",
        "/v1/subscribers?page=1&page=2",
        "/api/v1/bots/shop/dialogs/%FF%FE",
        "/chat/shop/ws",
    ] {
        let (s, v) = lab.server.get(path).await;
        assert_eq!(s, 400, "{path}: {v}");
        assert!(v.is_object(), "{path}: {v}");
    }
    let (s, v) = send(
        &lab,
        reqwest::Method::POST,
        "/api/v1/pushbacks",
        "ap plication/json;;;",
        b"{}".to_vec(),
    )
    .await;
    assert_eq!(s, 415, "{v}");
}

/// A chat id, event name, subscriber id, topic key or transaction id that breaks the one
/// identifier rule is refused everywhere, and nothing is created.
#[tokio::test]
async fn identifiers_with_paths_nuls_or_200_kb_are_refused_everywhere() {
    let lab = lab(|_| {}).await;
    let long = format!("../{}\u{0}", "x".repeat(200_000));
    for bad in [long.as_str(), "a/b", "a b", "..", "\u{0}"] {
        let (s, v) = lab
            .server
            .post(
                "/api/v1/pushbacks",
                json!({"channelType": "chatwidget", "botId": "shop", "chatId": bad, "event": "ping"}),
            )
            .await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["details"]["field"], "chatId", "{v}");
        let (s, v) = lab
            .server
            .post(
                "/api/v1/pushbacks",
                json!({"channelType": "chatwidget", "botId": "shop", "chatId": "c1", "event": bad}),
            )
            .await;
        assert_eq!(s, 400, "{v}");
        assert_eq!(v["error"]["details"]["field"], "event", "{v}");
        let (s, v) = lab
            .server
            .post(
                "/api/v1/bots/shop/dialogs/c1/messages",
                json!({"event": bad}),
            )
            .await;
        assert_eq!(s, 400, "{v}");
        for (path, body, field) in [
            (
                "/v1/subscribers",
                json!({"subscriberId": bad}),
                "subscriberId",
            ),
            ("/v1/topics", json!({"key": bad}), "key"),
            ("/v1/events/trigger", json!({"name": "w", "to": bad}), "to"),
        ] {
            let (s, v) = lab.server.post(path, body).await;
            assert!(s == 422 || s == 400, "{path} {field}: {s} {v}");
        }
    }
    let (_, p) = lab.server.get("/api/v1/pushbacks").await;
    assert_eq!(p["pushbacks"], json!([]), "{p}");
    let (_, stats) = lab.server.get("/api/v1/admin/stats").await;
    assert_eq!(stats["dialogs"], 0, "{stats}");
}

/// The address of a test server, for raw sockets.
fn addr(lab: &Lab) -> String {
    lab.server.base.trim_start_matches("http://").to_owned()
}

/// Reads what the server sends until it closes the connection (or 20 s pass).
async fn read_to_close(tcp: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let read = async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(20), read).await;
    String::from_utf8_lossy(&got).into_owned()
}

/// A body declared larger than the limit is refused with 413 before any of it is sent; a
/// body that trickles in gets 408 after the body timeout; headers that trickle in are cut off
/// after the header timeout.
#[tokio::test]
async fn oversized_and_slow_requests_are_cut_off() {
    let lab = lab(|s| {
        s.header_timeout_secs = 1;
        s.body_timeout_secs = 1;
    })
    .await;
    let head = |len: usize| {
        format!(
            "POST /api/v1/pushbacks HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN}\r\n\
             content-type: application/json\r\ncontent-length: {len}\r\n\r\n"
        )
    };
    let mut tcp = TcpStream::connect(addr(&lab)).await.expect("connect");
    tcp.write_all(head(10_000_000).as_bytes())
        .await
        .expect("write");
    let answer = read_to_close(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("payload_too_large"), "{answer}");

    let mut tcp = TcpStream::connect(addr(&lab)).await.expect("connect");
    tcp.write_all(head(100).as_bytes()).await.expect("write");
    tcp.write_all(b"{\"chatId\":").await.expect("write");
    let answer = read_to_close(&mut tcp).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");

    let mut tcp = TcpStream::connect(addr(&lab)).await.expect("connect");
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost:")
        .await
        .expect("write");
    let started = std::time::Instant::now();
    read_to_close(&mut tcp).await;
    println!(
        "a connection trickling its headers was closed after {:?}",
        started.elapsed()
    );
    let (s, _) = lab.server.get("/healthz").await;
    assert_eq!(s, 200);
}

/// 300 connections that send nothing but the start of their headers, against a server limited
/// to 256 open files: `/healthz` still answers (the oldest idle connections make room), and the
/// server does not run out of file descriptors.
#[tokio::test]
async fn healthz_answers_while_300_slow_connections_are_open_under_a_256_file_limit() {
    let project = project_with_bot("shop", BOT);
    let data = tempfile::tempdir().expect("tempdir");
    let logs = tempfile::tempdir().expect("tempdir");
    let log = logs.path().join("herald.log");
    let mut server =
        ChildServer::spawn_with_open_files(256, project.path(), data.path(), &log, &[]);
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    server.wait_ready(&http).await;
    let addr = server.base.trim_start_matches("http://").to_owned();
    let mut slow = Vec::new();
    for _ in 0..300 {
        match TcpStream::connect(&addr).await {
            Ok(mut tcp) => {
                let _ = tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost:").await;
                slow.push(tcp);
            }
            Err(e) => panic!("the listener stopped accepting: {e}"),
        }
    }
    for i in 0..5 {
        let r = http.get(format!("{}/healthz", server.base)).send().await;
        let ok = r.as_ref().is_ok_and(|r| r.status().is_success());
        assert!(ok, "healthz #{i} with 300 slow connections open: {r:?}");
    }
    let log_text = server.log_text();
    assert!(
        !log_text.contains("Too many open files"),
        "the server ran out of file descriptors:\n{log_text}"
    );
    drop(slow);
}

/// Reads one WebSocket frame the server sent (unmasked): opcode and payload.
async fn ws_frame(tcp: &mut TcpStream) -> (u8, Vec<u8>) {
    let mut head = [0u8; 2];
    tcp.read_exact(&mut head).await.expect("frame head");
    let mut len = u64::from(head[1] & 0x7f);
    if len == 126 {
        let mut b = [0u8; 2];
        tcp.read_exact(&mut b).await.expect("len");
        len = u64::from(u16::from_be_bytes(b));
    } else if len == 127 {
        let mut b = [0u8; 8];
        tcp.read_exact(&mut b).await.expect("len");
        len = u64::from_be_bytes(b);
    }
    let mut payload = vec![0u8; len as usize];
    tcp.read_exact(&mut payload).await.expect("payload");
    (head[0] & 0x0f, payload)
}

/// Opens a chat socket by hand and reads the `hello` frame.
async fn raw_socket(lab: &Lab) -> TcpStream {
    let mut tcp = TcpStream::connect(addr(lab)).await.expect("connect");
    let req = "GET /chat/shop/ws?chatId=raw HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\n\
               connection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
               sec-websocket-version: 13\r\n\r\n";
    tcp.write_all(req.as_bytes()).await.expect("handshake");
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        tcp.read_exact(&mut b).await.expect("handshake answer");
        head.push(b[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    let (op, payload) = ws_frame(&mut tcp).await;
    assert_eq!(op, 1, "hello is a text frame");
    assert!(String::from_utf8_lossy(&payload).contains("hello"));
    tcp
}

/// A close frame's code.
fn close_code(payload: &[u8]) -> u16 {
    u16::from_be_bytes([payload[0], payload[1]])
}

/// A WebSocket frame that announces 16 MB is answered with close 1009 after its header, before
/// its payload is read (so 20 of them cost the server no memory); a binary frame with 1003.
#[tokio::test]
async fn oversized_and_binary_websocket_frames_get_a_close_frame_with_a_code() {
    let lab = lab(|_| {}).await;
    for _ in 0..20 {
        let mut tcp = raw_socket(&lab).await;
        // FIN + text, masked, 64-bit length of 16 MiB, a mask key, then a little payload.
        let mut frame = vec![0x81, 0x80 | 127];
        frame.extend_from_slice(&(16u64 << 20).to_be_bytes());
        frame.extend_from_slice(&[1, 2, 3, 4]);
        frame.extend_from_slice(&[0u8; 1024]);
        tcp.write_all(&frame).await.expect("frame");
        let (op, payload) = ws_frame(&mut tcp).await;
        assert_eq!(op, 8, "a close frame");
        assert_eq!(
            close_code(&payload),
            1009,
            "{}",
            String::from_utf8_lossy(&payload)
        );
    }
    let mut tcp = raw_socket(&lab).await;
    tcp.write_all(&[0x82, 0x83, 1, 2, 3, 4, 9, 9, 9])
        .await
        .expect("binary frame");
    let (op, payload) = ws_frame(&mut tcp).await;
    assert_eq!(op, 8, "a close frame");
    assert_eq!(
        close_code(&payload),
        1003,
        "{}",
        String::from_utf8_lossy(&payload)
    );
}
