//! Recipes against published vectors and each scheme's failure modes. Requests signed by the
//! platforms' own libraries are tested through the server (`crates/herald/tests/ingest_*`).

use std::collections::BTreeMap;
use std::path::Path;

use herald_core::integration::parse_integration;
use jiff::Timestamp;

use super::*;

fn def(yaml: &str) -> IntegrationDef {
    parse_integration("t", Path::new("t.yaml"), yaml, &|_| None).expect("integration loads")
}

/// Whether `req` verifies, whichever secret did it.
fn verify(def: &IntegrationDef, req: &Request<'_>) -> Result<(), Rejection> {
    super::verify(def, req).map(drop)
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).expect("time")
}

fn request<'a>(
    headers: &'a BTreeMap<String, String>,
    body: &'a [u8],
    url: &'a str,
    now: Timestamp,
) -> Request<'a> {
    Request {
        method: "POST",
        url,
        headers,
        query: &[],
        body,
        now,
    }
}

fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
        .collect()
}

const EVENTS: &str = "events:\n  any:\n    route: {subscriber: /x}\n";

/// Slack's own example ("Verifying requests from Slack", api.slack.com/authentication/verifying-requests-from-slack).
#[test]
fn slacks_published_example_verifies_and_its_tampered_variants_do_not() {
    let d = def(&format!(
        "secret: 8f742231b10e8888abcd99yyyzzz85a5\nverify: {{scheme: slack}}\n{EVENTS}"
    ));
    let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    let h = headers(&[
        ("X-Slack-Request-Timestamp", "1531420618"),
        (
            "X-Slack-Signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
    ]);
    let now = at(1531420618 + 10);
    assert_eq!(verify(&d, &request(&h, body.as_bytes(), "", now)), Ok(()));
    let tampered = body.replace("roadrunner", "wile");
    assert_eq!(
        verify(&d, &request(&h, tampered.as_bytes(), "", now))
            .expect_err("tampered")
            .reason,
        "signature"
    );
    let stale = verify(&d, &request(&h, body.as_bytes(), "", at(1531420618 + 301)));
    assert_eq!(stale.expect_err("stale").reason, "stale");
    let future = verify(&d, &request(&h, body.as_bytes(), "", at(1531420618 - 301)));
    assert_eq!(future.expect_err("future").reason, "stale");
    let none = headers(&[("X-Slack-Request-Timestamp", "1531420618")]);
    assert_eq!(
        verify(&d, &request(&none, body.as_bytes(), "", now))
            .expect_err("missing")
            .reason,
        "missing_header"
    );
}

/// Every secret of a list verifies; a wrong one does not.
#[test]
fn any_active_secret_verifies() {
    let body = br#"{"id": 1}"#;
    let sig = |key: &str| {
        format!(
            "sha256={}",
            encode_hex(&mac(HmacAlgorithm::Sha256, key.as_bytes(), &[body]))
        )
    };
    let d = def(&format!(
        "secret: [old-secret, new-secret]\nverify: {{scheme: github}}\n{EVENTS}"
    ));
    for key in ["old-secret", "new-secret"] {
        let h = headers(&[("X-Hub-Signature-256", &sig(key))]);
        let verified = super::verify(&d, &request(&h, body, "", at(0)));
        assert_eq!(verified.map(|s| s.map(|s| s.0.as_str())), Ok(Some(key)));
    }
    let h = headers(&[("X-Hub-Signature-256", &sig("wrong"))]);
    assert!(verify(&d, &request(&h, body, "", at(0))).is_err());
    let h = headers(&[("X-Hub-Signature-256", "md5=00")]);
    assert_eq!(
        verify(&d, &request(&h, body, "", at(0)))
            .expect_err("prefix")
            .reason,
        "malformed_header"
    );
}

/// The generic `hmac` with a signed-content template, a timestamp header and base64url.
#[test]
fn the_generic_hmac_signs_its_content_template() {
    let d = def(&format!(
        "secret: k\nverify:\n  scheme: hmac\n  algorithm: sha512\n  encoding: base64url\n  header: X-Sig\n  prefix: \"v1=\"\n  content: \"{{id}}.{{timestamp}}.{{body}}\"\n  idHeader: X-Id\n  timestampHeader: X-Ts\n  tolerance: 60s\n{EVENTS}"
    ));
    let body = b"{}";
    let raw = mac(HmacAlgorithm::Sha512, b"k", &[b"abc.1000.", body]);
    let sig = format!(
        "v1={}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    );
    let h = headers(&[("X-Sig", &sig), ("X-Id", "abc"), ("X-Ts", "1000")]);
    assert_eq!(verify(&d, &request(&h, body, "", at(1030))), Ok(()));
    assert_eq!(
        verify(&d, &request(&h, body, "", at(1100)))
            .expect_err("stale")
            .reason,
        "stale"
    );
}

/// Bearer, basic and Telegram's token compare the whole value.
#[test]
fn tokens_compare_whole_values() {
    let d = def(&format!(
        "secret: t0ken\nverify: {{scheme: bearer}}\n{EVENTS}"
    ));
    let ok = headers(&[("Authorization", "Bearer t0ken")]);
    assert_eq!(verify(&d, &request(&ok, b"", "", at(0))), Ok(()));
    for bad in ["Bearer t0ke", "Bearer t0kenn", "Basic t0ken"] {
        let h = headers(&[("Authorization", bad)]);
        assert!(verify(&d, &request(&h, b"", "", at(0))).is_err(), "{bad}");
    }
    let d = def(&format!(
        "secret: pw\nverify: {{scheme: basic, username: shop}}\n{EVENTS}"
    ));
    let h = headers(&[("Authorization", "Basic c2hvcDpwdw==")]);
    assert_eq!(verify(&d, &request(&h, b"", "", at(0))), Ok(()));
    let d = def(&format!(
        "secret: s3\nverify: {{scheme: telegram}}\n{EVENTS}"
    ));
    let h = headers(&[("X-Telegram-Bot-Api-Secret-Token", "s3")]);
    assert_eq!(verify(&d, &request(&h, b"{}", "", at(0))), Ok(()));
}

/// `none` lets everything in.
#[test]
fn none_verifies_nothing() {
    let d = def(&format!("verify: {{scheme: none}}\n{EVENTS}"));
    let h = BTreeMap::new();
    assert_eq!(verify(&d, &request(&h, b"x", "", at(0))), Ok(()));
}
