//! Every verification preset against requests signed by code Herald did not write
//! (`tests/integrations/sign.mjs`: the platforms' own libraries — standardwebhooks,
//! @octokit/webhooks-methods, stripe, twilio, tweetnacl — and Node's crypto for the plain HMAC
//! and ECDSA recipes). For each: the valid request is accepted, a repeat of it is a duplicate
//! where the platform has a delivery id, and a wrong secret, a tampered body, a missing
//! signature, and a stale or future timestamp are 401. The platforms' handshakes are answered
//! once verified.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::{Value, json};

const PUBLIC_URL: &str = "https://herald.example.com";

/// Runs the signer; panics with how to install it when its packages are missing.
fn fixtures() -> Value {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/integrations");
    assert!(
        dir.join("node_modules/stripe").is_dir(),
        "this test needs the signing libraries: run `npm ci` in tests/integrations \
         (scripts/test.sh does)"
    );
    let out = Command::new("node")
        .arg("sign.mjs")
        .arg(PUBLIC_URL)
        .current_dir(&dir)
        .output()
        .expect("this test needs Node.js (scripts/test.sh installs it)");
    assert!(
        out.status.success(),
        "sign.mjs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("sign.mjs prints JSON")
}

/// The integration file of one preset: its scheme and secret, the extra keys some need, and
/// one event for the bot `inbox`, routed by the body's `who`.
fn integration_yaml(name: &str, scheme: &str, secret: &str) -> String {
    let extra = match scheme {
        "hmac" => {
            "  algorithm: sha512\n  encoding: base64url\n  header: X-Sig\n  prefix: \"v1=\"\n  content: \"{id}.{timestamp}.{body}\"\n  idHeader: X-Id\n  timestampHeader: X-Ts\n"
        }
        "basic" => "  username: shop\n",
        "meta" => "  verifyToken: meta-verify-token\n",
        _ => "",
    };
    let who = if scheme == "sendgrid" {
        "/0/who"
    } else {
        "/who"
    };
    format!(
        "secret: \"{secret}\"\nverify:\n  scheme: {scheme}\n{extra}events:\n  any:\n    route: {{bot: inbox, contact: {who}}}\n"
    )
    .replace("integrations/NAME", name)
}

const INBOX: &str =
    "name: Inbox\nchannels:\n  chatwidget: {}\nstates:\n  Hello:\n    q!: hi\n    a: hello\n";

/// The header a preset's signature (or token) is in; `None` where it is in the body.
fn signature_header(preset: &str) -> Option<&'static str> {
    Some(match preset {
        "standard-webhooks" => "webhook-signature",
        "github" | "meta" => "x-hub-signature-256",
        "stripe" => "stripe-signature",
        "shopify" => "x-shopify-hmac-sha256",
        "slack" => "x-slack-signature",
        "twilio" | "twilio-json" => "x-twilio-signature",
        "linear" => "linear-signature",
        "telegram" => "x-telegram-bot-api-secret-token",
        "discord" => "x-signature-ed25519",
        "paddle" => "paddle-signature",
        "square" => "x-square-hmacsha256-signature",
        "sendgrid" => "x-twilio-email-event-webhook-signature",
        "zoom" => "x-zm-signature",
        "hmac" => "x-sig",
        "bearer" | "basic" => "authorization",
        _ => return None,
    })
}

/// Presets whose proof covers the body (a token, or Mailgun's timestamp + token, does not).
fn signs_body(preset: &str) -> bool {
    !matches!(preset, "telegram" | "bearer" | "basic" | "mailgun")
}

/// Presets with a delivery id by default.
fn dedupes(preset: &str) -> bool {
    !matches!(
        preset,
        "meta" | "sendgrid" | "zoom" | "hmac" | "bearer" | "basic" | "twilio-json"
    )
}

async fn send(
    server: &TestServer,
    name: &str,
    req: &Value,
    edit: impl FnOnce(&mut BTreeMap<String, String>, &mut String),
) -> (u16, Value) {
    let mut headers: BTreeMap<String, String> = req["headers"]
        .as_object()
        .expect("headers")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
        .collect();
    let mut body = req["body"].as_str().expect("body").to_owned();
    edit(&mut headers, &mut body);
    let path = format!(
        "/integrations/{name}/webhook{}",
        req["path"].as_str().unwrap_or_default()
    );
    let mut r = server.http.post(server.url(&path)).body(body);
    for (k, v) in &headers {
        r = r.header(k.as_str(), v.as_str());
    }
    status_json(r.send().await.expect("send")).await
}

#[tokio::test]
async fn every_preset_verifies_its_platforms_signature_and_refuses_the_rest() {
    let fx = fixtures();
    let presets = fx["presets"].as_object().expect("presets");
    assert!(presets.len() >= 18, "{}", presets.len());
    let project = project_with_bot("inbox", INBOX);
    let dir = project.path().join("integrations");
    std::fs::create_dir_all(&dir).expect("mkdir");
    for (name, p) in presets {
        let yaml = integration_yaml(
            name,
            p["scheme"].as_str().expect("scheme"),
            p["secret"].as_str().expect("secret"),
        );
        std::fs::write(dir.join(format!("{name}.yaml")), yaml).expect("write");
    }
    let data = tempfile::tempdir().expect("tempdir");
    let mut s = settings(data.path());
    s.public_url = Some(PUBLIC_URL.into());
    let server = TestServer::start_with(project.path(), s).await;

    let mut report = Vec::new();
    for (name, p) in presets {
        let cases = &p["cases"];
        let (st, v) = send(&server, name, &cases["valid"], |_, _| {}).await;
        assert_eq!(st, 200, "{name}: the platform-signed request: {v}");
        assert_eq!(v["status"], "accepted", "{name}: {v}");
        let (st, v) = send(&server, name, &cases["valid"], |_, _| {}).await;
        assert_eq!(st, 200, "{name}: the same request again: {v}");
        let again = if dedupes(name) {
            "duplicate"
        } else {
            "accepted"
        };
        assert_eq!(v["status"], again, "{name}: {v}");

        let (st, v) = send(&server, name, &cases["wrong"], |_, _| {}).await;
        assert_eq!(st, 401, "{name}: a wrong secret or key: {v}");
        if signs_body(name) {
            let (st, v) = send(&server, name, &cases["valid"], |_, b| {
                *b = b.replacen("\"u", "\"x", 1).replacen("who=u", "who=x", 1);
            })
            .await;
            assert_eq!(st, 401, "{name}: a tampered body: {v}");
        }
        if name == "mailgun" {
            // Mailgun signs the timestamp and token only: its signature reused under another
            // body is a duplicate of the delivery that first used the token, not a new event.
            let (st, v) = send(&server, name, &cases["valid"], |_, b| {
                *b = b.replacen("\"u", "\"x", 1).replacen("mg", "forged", 1);
            })
            .await;
            assert_eq!(
                (st, &v["status"]),
                (200, &serde_json::json!("duplicate")),
                "{name}: a seen token under another body: {v}"
            );
        }
        match signature_header(name) {
            Some(h) => {
                let (st, v) = send(&server, name, &cases["valid"], |hs, _| {
                    hs.remove(h);
                })
                .await;
                assert_eq!(st, 401, "{name}: no `{h}`: {v}");
                assert_eq!(
                    v["error"]["details"]["reason"], "missing_header",
                    "{name}: {v}"
                );
            }
            None => {
                let (st, v) = send(&server, name, &cases["valid"], |_, b| {
                    let mut j: Value = serde_json::from_str(b).expect("json");
                    j.as_object_mut().expect("object").remove("signature");
                    *b = j.to_string();
                })
                .await;
                assert_eq!(st, 401, "{name}: no signature in the body: {v}");
            }
        }
        for when in ["stale", "future"] {
            if cases.get(when).is_some() {
                let (st, v) = send(&server, name, &cases[when], |_, _| {}).await;
                assert_eq!(st, 401, "{name}: a {when} timestamp: {v}");
                assert_eq!(v["error"]["details"]["reason"], "stale", "{name}: {v}");
            }
        }
        report.push(name.clone());
    }
    println!(
        "verified with the platforms' signers: {}",
        report.join(", ")
    );

    // Handshakes, answered only once verified.
    let hs = &fx["handshakes"];
    let (st, v) = send(&server, "slack", &hs["slack"], |_, _| {}).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["challenge"],
        "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"
    );
    let (st, v) = send(&server, "zoom", &hs["zoom"], |_, _| {}).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["plainToken"], "qgg8vlvZRS6UYooatFL8Aw");
    assert_eq!(v["encryptedToken"], hs["zoom"]["encryptedToken"]);
    let (st, v) = send(&server, "zoom", &hs["zoom"], |h, _| {
        h.insert("x-zm-signature".into(), "v0=00".into());
    })
    .await;
    assert_eq!(st, 401, "an unsigned validation is refused: {v}");
    let (st, v) = send(&server, "discord", &hs["discord"], |_, _| {}).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v, json!({"type": 1}));
    let meta = |token: &str| {
        server.url(&format!(
            "/integrations/meta/webhook?hub.mode=subscribe&hub.verify_token={token}&hub.challenge=1158201444"
        ))
    };
    let r = server
        .http
        .get(meta("meta-verify-token"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("text"), "1158201444");
    let r = server.http.get(meta("guess")).send().await.expect("get");
    assert_eq!(r.status(), 401);
}
