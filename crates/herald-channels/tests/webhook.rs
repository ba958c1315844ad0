//! Webhook delivery against a real local HTTP sink whose answer can be
//! switched mid-test, so classification is checked on the wire rather than
//! against mocks of reqwest.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::routing::post;
use herald_channels::{Attempt, WebhookRequest, send_webhook, verify};
use jiff::Timestamp;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

/// What the sink answers next.
#[derive(Clone)]
struct Reply {
    status: StatusCode,
    headers: Vec<(&'static str, &'static str)>,
    body: &'static str,
}

#[derive(Clone)]
struct Received {
    headers: HeaderMap,
    body: Bytes,
}

#[derive(Clone)]
struct Sink {
    reply: Arc<Mutex<Reply>>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    async fn start() -> Result<(Self, String), std::io::Error> {
        let sink = Sink {
            reply: Arc::new(Mutex::new(Reply {
                status: StatusCode::OK,
                headers: Vec::new(),
                body: "ok",
            })),
            received: Arc::new(Mutex::new(Vec::new())),
        };
        let app = Router::new()
            .route("/hook", post(record))
            .with_state(sink.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/hook", listener.local_addr()?);
        // The server task ends with the test's runtime.
        tokio::spawn(async move { axum::serve(listener, app).await });
        Ok((sink, url))
    }

    fn answer(&self, status: u16, headers: Vec<(&'static str, &'static str)>, body: &'static str) {
        let mut reply = self.reply.lock().unwrap_or_else(|e| e.into_inner());
        *reply = Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
            headers,
            body,
        };
    }

    fn received(&self) -> Vec<Received> {
        self.received
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

async fn record(
    State(sink): State<Sink>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap, &'static str) {
    sink.received
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Received { headers, body });
    let reply = sink.reply.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let mut out = HeaderMap::new();
    for (name, value) in reply.headers {
        out.insert(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    (reply.status, out, reply.body)
}

fn client() -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
}

fn request(url: &str, secret: Option<&str>) -> WebhookRequest {
    WebhookRequest {
        url: url.to_owned(),
        secret: secret.map(str::to_owned),
        body: r#"{"event":"signup","user":42}"#.to_owned(),
        content_type: "application/json".to_owned(),
    }
}

fn header<'a>(r: &'a Received, name: &str) -> &'a str {
    r.headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_else(|| panic!("request lacks header {name}"))
}

#[tokio::test]
async fn signed_delivery_carries_verifiable_standard_webhook_headers() -> TestResult {
    let (sink, url) = Sink::start().await?;
    let now: Timestamp = "2025-03-01T12:00:00Z".parse()?;
    let req = request(&url, Some(SECRET));

    let outcome = send_webhook(&client()?, &req, "msg_1", now).await;
    assert_eq!(outcome, Attempt::Delivered);

    let got = sink.received();
    assert_eq!(got.len(), 1);
    let r = &got[0];
    assert_eq!(r.body, req.body.as_bytes());
    assert_eq!(header(r, "webhook-id"), "msg_1");
    assert_eq!(header(r, "webhook-timestamp"), now.as_second().to_string());
    let signature = header(r, "webhook-signature");
    assert!(signature.starts_with("v1,"), "{signature}");
    let ts: i64 = header(r, "webhook-timestamp").parse()?;
    assert!(verify(SECRET, "msg_1", ts, &r.body, signature));
    assert!(!verify("whsec_AAAA", "msg_1", ts, &r.body, signature));
    assert_eq!(header(r, "content-type"), "application/json");
    assert_eq!(header(r, "user-agent"), "herald");
    Ok(())
}

#[tokio::test]
async fn unsigned_delivery_has_no_signature_and_keeps_content_type() -> TestResult {
    let (sink, url) = Sink::start().await?;
    let mut req = request(&url, None);
    req.content_type = "text/plain; charset=utf-8".to_owned();

    let outcome = send_webhook(&client()?, &req, "msg_2", Timestamp::now()).await;
    assert_eq!(outcome, Attempt::Delivered);

    let got = sink.received();
    assert_eq!(got.len(), 1);
    assert!(got[0].headers.get("webhook-signature").is_none());
    assert_eq!(header(&got[0], "webhook-id"), "msg_2");
    assert_eq!(header(&got[0], "content-type"), "text/plain; charset=utf-8");
    Ok(())
}

#[tokio::test]
async fn answers_switched_mid_test_are_classified() -> TestResult {
    let (sink, url) = Sink::start().await?;
    let client = client()?;
    let req = request(&url, Some(SECRET));
    let now = Timestamp::now();

    sink.answer(503, vec![("retry-after", "7")], "down for maintenance");
    match send_webhook(&client, &req, "msg_3", now).await {
        Attempt::Failed {
            error,
            retry_after,
            permanent,
        } => {
            assert!(!permanent, "503 must be retryable");
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(error.contains("503"), "{error}");
            assert!(error.contains("down for maintenance"), "{error}");
        }
        Attempt::Delivered => panic!("503 reported as delivered"),
    }

    sink.answer(400, Vec::new(), "missing field `user`");
    match send_webhook(&client, &req, "msg_3", now).await {
        Attempt::Failed {
            error, permanent, ..
        } => {
            assert!(permanent, "400 must be permanent");
            assert!(error.contains("400"), "{error}");
            assert!(error.contains("missing field"), "{error}");
        }
        Attempt::Delivered => panic!("400 reported as delivered"),
    }

    sink.answer(410, Vec::new(), "");
    let gone = send_webhook(&client, &req, "msg_3", now).await;
    assert!(!gone.is_delivered() && !gone.is_retryable(), "{gone:?}");

    sink.answer(429, vec![("retry-after", "120")], "slow down");
    match send_webhook(&client, &req, "msg_3", now).await {
        Attempt::Failed {
            retry_after,
            permanent,
            ..
        } => {
            assert!(!permanent, "429 must be retryable");
            assert_eq!(retry_after, Some(Duration::from_secs(120)));
        }
        Attempt::Delivered => panic!("429 reported as delivered"),
    }

    sink.answer(204, Vec::new(), "");
    assert_eq!(
        send_webhook(&client, &req, "msg_3", now).await,
        Attempt::Delivered
    );
    // Every attempt reached the sink, each with the same message id.
    let got = sink.received();
    assert_eq!(got.len(), 5);
    assert!(got.iter().all(|r| header(r, "webhook-id") == "msg_3"));
    Ok(())
}

#[tokio::test]
async fn long_error_bodies_are_cut_to_an_excerpt() -> TestResult {
    let (sink, url) = Sink::start().await?;
    let page: &'static str = "x".repeat(10_000).leak();
    sink.answer(500, Vec::new(), page);
    match send_webhook(&client()?, &request(&url, None), "m", Timestamp::now()).await {
        Attempt::Failed { error, .. } => {
            assert!(error.len() < 400, "error too long: {} bytes", error.len());
            assert!(error.contains("xxxxxxxx"), "{error}");
        }
        Attempt::Delivered => panic!("500 reported as delivered"),
    }
    Ok(())
}

#[tokio::test]
async fn closed_port_is_retryable() -> TestResult {
    // Bind and drop to find a port that nothing is listening on.
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    drop(listener);
    let req = request(&format!("http://{addr}/hook"), Some(SECRET));

    match send_webhook(&client()?, &req, "msg_4", Timestamp::now()).await {
        Attempt::Failed {
            error,
            retry_after,
            permanent,
        } => {
            assert!(!permanent, "connection refused must be retryable: {error}");
            assert_eq!(retry_after, None);
            assert!(error.contains(&addr.to_string()), "{error}");
        }
        Attempt::Delivered => panic!("delivered to a closed port"),
    }
    Ok(())
}

#[tokio::test]
async fn malformed_url_and_secret_are_permanent() -> TestResult {
    let client = client()?;
    let bad_url = send_webhook(&client, &request("not a url", None), "m", Timestamp::now()).await;
    assert!(
        !bad_url.is_delivered() && !bad_url.is_retryable(),
        "{bad_url:?}"
    );

    let (sink, url) = Sink::start().await?;
    let bad_secret = request(&url, Some("whsec_***"));
    let outcome = send_webhook(&client, &bad_secret, "m", Timestamp::now()).await;
    assert!(
        !outcome.is_delivered() && !outcome.is_retryable(),
        "{outcome:?}"
    );
    // Nothing unsigned leaked out when signing failed.
    assert!(sink.received().is_empty());
    Ok(())
}
