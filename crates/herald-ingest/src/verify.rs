//! Verification: each scheme's recipe — which headers, what is signed, which algorithm and
//! encoding, which timestamp and how much skew — checked against every active secret, in
//! constant time. The first secret that verifies wins; the error of the last one is reported.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE, URL_SAFE_NO_PAD};
use herald_core::integration::{Encoding, HmacAlgorithm, IntegrationDef, Scheme, Secret, Verify};
use hmac::{Hmac, KeyInit, Mac};
use jiff::Timestamp;
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha512};
use subtle::ConstantTimeEq;

use crate::{Rejection, Request};

/// Checks `req` against `def`'s verification.
pub fn verify<'d>(
    def: &'d IntegrationDef,
    req: &Request<'_>,
) -> Result<Option<&'d Secret>, Rejection> {
    let v = &def.verify;
    if v.scheme == Scheme::None {
        return Ok(None);
    }
    let mut last = Rejection::signature();
    for secret in &def.secrets {
        match verify_one(v, secret, req) {
            Ok(()) => return Ok(Some(secret)),
            // A missing or malformed header, or a stale timestamp, fails for every secret.
            Err(e) if e.reason != "signature" && e.reason != "token" => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn verify_one(v: &Verify, secret: &Secret, req: &Request<'_>) -> Result<(), Rejection> {
    let key = secret.0.as_bytes();
    match v.scheme {
        Scheme::None => Ok(()),
        Scheme::Hmac => generic(v, key, req),
        Scheme::Bearer => bearer(v, key, req),
        Scheme::Basic => basic(v, key, req),
        Scheme::StandardWebhooks => standard_webhooks(v, &secret.0, req),
        Scheme::Github | Scheme::Meta => {
            let h = v.header.as_deref().unwrap_or("x-hub-signature-256");
            let sig = prefixed(req, h, "sha256=")?;
            check_mac(HmacAlgorithm::Sha256, key, &[req.body], &hex(h, sig)?)
        }
        Scheme::Shopify => {
            let h = v.header.as_deref().unwrap_or("x-shopify-hmac-sha256");
            let sig = b64(h, header(req, h)?)?;
            check_mac(HmacAlgorithm::Sha256, key, &[req.body], &sig)
        }
        Scheme::Stripe => stripe(v, key, req),
        Scheme::Slack => versioned(
            v,
            key,
            req,
            "x-slack-signature",
            "x-slack-request-timestamp",
        ),
        Scheme::Zoom => versioned(v, key, req, "x-zm-signature", "x-zm-request-timestamp"),
        Scheme::Twilio => twilio(v, key, req),
        Scheme::Linear => linear(v, key, req),
        Scheme::Telegram => {
            let h = v
                .header
                .as_deref()
                .unwrap_or("x-telegram-bot-api-secret-token");
            same_token(header(req, h)?.as_bytes(), key)
        }
        Scheme::Discord => discord(v, &secret.0, req),
        Scheme::Paddle => paddle(v, key, req),
        Scheme::Square => {
            let h = v
                .header
                .as_deref()
                .unwrap_or("x-square-hmacsha256-signature");
            let sig = b64(h, header(req, h)?)?;
            check_mac(
                HmacAlgorithm::Sha256,
                key,
                &[req.url.as_bytes(), req.body],
                &sig,
            )
        }
        Scheme::Sendgrid => sendgrid(v, &secret.0, req),
        Scheme::Mailgun => mailgun(v, key, req),
    }
}

/// A required header.
fn header<'r>(req: &'r Request<'_>, name: &str) -> Result<&'r str, Rejection> {
    req.header(name).ok_or_else(|| Rejection::missing(name))
}

/// A required header that must start with `prefix`; what follows it.
fn prefixed<'r>(req: &'r Request<'_>, name: &str, prefix: &str) -> Result<&'r str, Rejection> {
    header(req, name)?
        .strip_prefix(prefix)
        .ok_or_else(|| Rejection::malformed(name, &format!("it must start with `{prefix}`")))
}

fn hex(name: &str, s: &str) -> Result<Vec<u8>, Rejection> {
    decode_hex(s.trim()).ok_or_else(|| Rejection::malformed(name, "not hexadecimal"))
}

fn b64(name: &str, s: &str) -> Result<Vec<u8>, Rejection> {
    STANDARD
        .decode(s.trim())
        .map_err(|_| Rejection::malformed(name, "not base64"))
}

pub fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub fn encode_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The MAC of `parts` (concatenated) under `key`.
pub fn mac(alg: HmacAlgorithm, key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    fn run<M: Mac + KeyInit>(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
        // HMAC takes keys of any length, so this cannot fail.
        let Ok(mut m) = <M as KeyInit>::new_from_slice(key) else {
            return Vec::new();
        };
        for p in parts {
            m.update(p);
        }
        m.finalize().into_bytes().to_vec()
    }
    match alg {
        HmacAlgorithm::Sha1 => run::<Hmac<Sha1>>(key, parts),
        HmacAlgorithm::Sha256 => run::<Hmac<Sha256>>(key, parts),
        HmacAlgorithm::Sha512 => run::<Hmac<Sha512>>(key, parts),
    }
}

/// Compares the MAC of `parts` with `expected` in constant time.
fn check_mac(
    alg: HmacAlgorithm,
    key: &[u8],
    parts: &[&[u8]],
    given: &[u8],
) -> Result<(), Rejection> {
    // An empty key is no secret: anyone could compute the MAC.
    let want = mac(alg, key, parts);
    if !key.is_empty() && !want.is_empty() && bool::from(want.ct_eq(given)) {
        Ok(())
    } else {
        Err(Rejection::signature())
    }
}

/// Any of `given` matches.
fn check_any(
    alg: HmacAlgorithm,
    key: &[u8],
    parts: &[&[u8]],
    given: &[Vec<u8>],
) -> Result<(), Rejection> {
    let want = mac(alg, key, parts);
    let mut any = false;
    for g in given {
        any |= bool::from(want.ct_eq(g));
    }
    // An empty key is no secret: anyone could compute the MAC.
    if any && !key.is_empty() {
        Ok(())
    } else {
        Err(Rejection::signature())
    }
}

fn same_token(given: &[u8], secret: &[u8]) -> Result<(), Rejection> {
    if given.len() == secret.len() && bool::from(given.ct_eq(secret)) {
        Ok(())
    } else {
        Err(Rejection::new("token", "the token does not match"))
    }
}

/// A Unix timestamp (seconds, or milliseconds when it is that large) within `tolerance` of now.
fn fresh(v: &Verify, name: &str, raw: &str, now: Timestamp) -> Result<i64, Rejection> {
    let n: i64 = raw
        .trim()
        .parse()
        .map_err(|_| Rejection::malformed(name, "not a Unix timestamp"))?;
    let secs = if n > 100_000_000_000 { n / 1000 } else { n };
    // A timestamp so far off that the difference overflows is as stale as any.
    let skew = now
        .as_second()
        .checked_sub(secs)
        .map_or(u64::MAX, i64::unsigned_abs);
    if skew > v.tolerance.as_secs() {
        return Err(Rejection::new(
            "stale",
            format!(
                "the timestamp is {skew} s from now; at most {} s are accepted",
                v.tolerance.as_secs()
            ),
        ));
    }
    Ok(n)
}

fn decode(encoding: Encoding, name: &str, s: &str) -> Result<Vec<u8>, Rejection> {
    let s = s.trim();
    match encoding {
        Encoding::Hex => hex(name, s),
        Encoding::Base64 => b64(name, s),
        Encoding::Base64Url => URL_SAFE_NO_PAD
            .decode(s.trim_end_matches('='))
            .or_else(|_| URL_SAFE.decode(s))
            .map_err(|_| Rejection::malformed(name, "not base64url")),
    }
}

/// Generic `hmac`: the header holds `prefix` + the encoded MAC of `content` (the body unless
/// said otherwise), optionally with a timestamp header checked for freshness.
fn generic(v: &Verify, key: &[u8], req: &Request<'_>) -> Result<(), Rejection> {
    let name = v.header.as_deref().unwrap_or("x-signature");
    let raw = prefixed(req, name, &v.prefix)?;
    let given = decode(v.encoding, name, raw)?;
    let timestamp = match &v.timestamp_header {
        Some(h) => {
            let raw = header(req, h)?;
            fresh(v, h, raw, req.now)?;
            Some(raw)
        }
        None => None,
    };
    match &v.content {
        None => check_mac(v.algorithm, key, &[req.body], &given),
        Some(template) => {
            let id = match &v.id_header {
                Some(h) => header(req, h)?,
                None => "",
            };
            let mut parts: Vec<&[u8]> = Vec::new();
            let mut rest = template.as_str();
            while let Some(open) = rest.find('{') {
                parts.push(&rest.as_bytes()[..open]);
                let after = &rest[open + 1..];
                let Some(close) = after.find('}') else {
                    parts.push(&rest.as_bytes()[open..]);
                    rest = "";
                    break;
                };
                parts.push(match &after[..close] {
                    "body" => req.body,
                    "timestamp" => timestamp.unwrap_or("").as_bytes(),
                    "url" => req.url.as_bytes(),
                    "id" => id.as_bytes(),
                    other => other.as_bytes(),
                });
                rest = &after[close + 1..];
            }
            parts.push(rest.as_bytes());
            check_mac(v.algorithm, key, &parts, &given)
        }
    }
}

fn bearer(v: &Verify, key: &[u8], req: &Request<'_>) -> Result<(), Rejection> {
    match &v.header {
        Some(h) => same_token(header(req, h)?.trim().as_bytes(), key),
        None => {
            let auth = header(req, "authorization")?;
            let token = auth
                .strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
                .ok_or_else(|| Rejection::malformed("authorization", "not `Bearer <token>`"))?;
            same_token(token.trim().as_bytes(), key)
        }
    }
}

fn basic(v: &Verify, key: &[u8], req: &Request<'_>) -> Result<(), Rejection> {
    let auth = header(req, "authorization")?;
    let encoded = auth
        .strip_prefix("Basic ")
        .or_else(|| auth.strip_prefix("basic "))
        .ok_or_else(|| Rejection::malformed("authorization", "not `Basic <credentials>`"))?;
    let decoded = b64("authorization", encoded)?;
    let mut want = v.username.clone().unwrap_or_default().into_bytes();
    want.push(b':');
    want.extend_from_slice(key);
    same_token(&decoded, &want)
}

/// Standard Webhooks (and Svix): `webhook-id`, `webhook-timestamp`, `webhook-signature` (a
/// space-separated list of `v1,<base64>`) over `{id}.{timestamp}.{body}`, keyed by the
/// base64 secret after `whsec_`.
fn standard_webhooks(v: &Verify, secret: &str, req: &Request<'_>) -> Result<(), Rejection> {
    let pick = |std: &str, svix: &str| -> Result<(&str, String), Rejection> {
        match (req.header(std), req.header(svix)) {
            (Some(x), _) => Ok((x, std.to_owned())),
            (None, Some(x)) => Ok((x, svix.to_owned())),
            (None, None) => Err(Rejection::missing(std)),
        }
    };
    let (id, _) = pick("webhook-id", "svix-id")?;
    let (ts, ts_name) = pick("webhook-timestamp", "svix-timestamp")?;
    let (sigs, sig_name) = pick("webhook-signature", "svix-signature")?;
    fresh(v, &ts_name, ts, req.now)?;
    let key = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| Rejection::new("signature", "the secret is not base64 (whsec_…)"))?;
    let given: Vec<Vec<u8>> = sigs
        .split_whitespace()
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        .collect();
    if given.is_empty() {
        return Err(Rejection::malformed(&sig_name, "no `v1,` signature"));
    }
    check_any(
        HmacAlgorithm::Sha256,
        &key,
        &[id.as_bytes(), b".", ts.as_bytes(), b".", req.body],
        &given,
    )
}

/// The `k=v` pairs of a signature header (Stripe's `,`, Paddle's `;`).
fn pairs(s: &str, sep: char) -> Vec<(&str, &str)> {
    s.split(sep)
        .filter_map(|p| p.trim().split_once('='))
        .collect()
}

/// Stripe: `Stripe-Signature: t=<ts>,v1=<hex>[,v1=…]` over `{t}.{body}`.
fn stripe(v: &Verify, key: &[u8], req: &Request<'_>) -> Result<(), Rejection> {
    let name = v.header.as_deref().unwrap_or("stripe-signature");
    let kv = pairs(header(req, name)?, ',');
    let t = kv
        .iter()
        .find(|(k, _)| *k == "t")
        .map(|(_, v)| *v)
        .ok_or_else(|| Rejection::malformed(name, "no `t=` timestamp"))?;
    let given: Vec<Vec<u8>> = kv
        .iter()
        .filter(|(k, _)| *k == "v1")
        .filter_map(|(_, v)| decode_hex(v))
        .collect();
    if given.is_empty() {
        return Err(Rejection::malformed(name, "no `v1=` signature"));
    }
    fresh(v, name, t, req.now)?;
    check_any(
        HmacAlgorithm::Sha256,
        key,
        &[t.as_bytes(), b".", req.body],
        &given,
    )
}

/// Slack and Zoom: `v0=<hex>` over `v0:{timestamp}:{body}`.
fn versioned(
    v: &Verify,
    key: &[u8],
    req: &Request<'_>,
    sig_header: &str,
    ts_header: &str,
) -> Result<(), Rejection> {
    let sig_name = v.header.as_deref().unwrap_or(sig_header);
    let sig = hex(sig_name, prefixed(req, sig_name, "v0=")?)?;
    let ts = header(req, ts_header)?;
    fresh(v, ts_header, ts, req.now)?;
    check_mac(
        HmacAlgorithm::Sha256,
        key,
        &[b"v0:", ts.as_bytes(), b":", req.body],
        &sig,
    )
}

/// Twilio: base64 HMAC-SHA1 of the URL followed, for a form, by its parameters sorted by name
/// (each name and value concatenated); for a JSON body the URL carries `bodySHA256`, the hex
/// SHA-256 of the body, and is signed alone.
fn twilio(v: &Verify, key: &[u8], req: &Request<'_>) -> Result<(), Rejection> {
    let name = v.header.as_deref().unwrap_or("x-twilio-signature");
    let given = b64(name, header(req, name)?)?;
    let mut signed = req.url.as_bytes().to_vec();
    if req.is_form() {
        let mut params: Vec<(String, String)> = serde_urlencoded::from_bytes(req.body)
            .map_err(|_| Rejection::new("malformed_body", "the form body cannot be read"))?;
        params.sort();
        for (k, val) in params {
            signed.extend_from_slice(k.as_bytes());
            signed.extend_from_slice(val.as_bytes());
        }
    } else if let Some(claimed) = req.query_param("bodySHA256") {
        let actual = encode_hex(&Sha256::digest(req.body));
        if !bool::from(
            actual
                .as_bytes()
                .ct_eq(claimed.to_ascii_lowercase().as_bytes()),
        ) {
            return Err(Rejection::signature());
        }
    } else if !req.body.iter().all(u8::is_ascii_whitespace) {
        // The URL alone is signed: without its hash the body could be anything.
        return Err(Rejection::new(
            "signature",
            "a body that is not a form is signed through `bodySHA256` in the URL, which is missing",
        ));
    }
    check_mac(HmacAlgorithm::Sha1, key, &[&signed], &given)
}

/// Linear: `Linear-Signature: <hex>` of the body; the body's `webhookTimestamp` (ms) must be
/// fresh.
fn linear(v: &Verify, key: &[u8], req: &Request<'_>) -> Result<(), Rejection> {
    let name = v.header.as_deref().unwrap_or("linear-signature");
    let sig = hex(name, header(req, name)?)?;
    check_mac(HmacAlgorithm::Sha256, key, &[req.body], &sig)?;
    let body: serde_json::Value = serde_json::from_slice(req.body)
        .map_err(|_| Rejection::new("malformed_body", "the body is not JSON"))?;
    match body.get("webhookTimestamp") {
        Some(t) => fresh(v, "webhookTimestamp", &t.to_string(), req.now).map(drop),
        None => Err(Rejection::new(
            "malformed_body",
            "the body has no `webhookTimestamp`",
        )),
    }
}

/// Paddle: `Paddle-Signature: ts=<ts>;h1=<hex>` over `{ts}:{body}`.
fn paddle(v: &Verify, key: &[u8], req: &Request<'_>) -> Result<(), Rejection> {
    let name = v.header.as_deref().unwrap_or("paddle-signature");
    let kv = pairs(header(req, name)?, ';');
    let ts = kv
        .iter()
        .find(|(k, _)| *k == "ts")
        .map(|(_, v)| *v)
        .ok_or_else(|| Rejection::malformed(name, "no `ts=` timestamp"))?;
    let given: Vec<Vec<u8>> = kv
        .iter()
        .filter(|(k, _)| *k == "h1")
        .filter_map(|(_, v)| decode_hex(v))
        .collect();
    if given.is_empty() {
        return Err(Rejection::malformed(name, "no `h1=` signature"));
    }
    fresh(v, name, ts, req.now)?;
    check_any(
        HmacAlgorithm::Sha256,
        key,
        &[ts.as_bytes(), b":", req.body],
        &given,
    )
}

/// Discord: Ed25519 over `{timestamp}{body}` with the application's public key (hex).
fn discord(v: &Verify, public_key: &str, req: &Request<'_>) -> Result<(), Rejection> {
    use ed25519_dalek::{Signature, VerifyingKey};
    let name = v.header.as_deref().unwrap_or("x-signature-ed25519");
    let sig = hex(name, header(req, name)?)?;
    let ts = header(req, "x-signature-timestamp")?;
    fresh(v, "x-signature-timestamp", ts, req.now)?;
    let key: [u8; 32] = decode_hex(public_key.trim())
        .and_then(|k| k.try_into().ok())
        .ok_or_else(|| Rejection::new("signature", "the public key is not 32 bytes of hex"))?;
    let key = VerifyingKey::from_bytes(&key)
        .map_err(|_| Rejection::new("signature", "the public key is not an Ed25519 key"))?;
    let sig: [u8; 64] = sig
        .try_into()
        .map_err(|_| Rejection::malformed(name, "not 64 bytes"))?;
    let mut msg = ts.as_bytes().to_vec();
    msg.extend_from_slice(req.body);
    key.verify_strict(&msg, &Signature::from_bytes(&sig))
        .map_err(|_| Rejection::signature())
}

/// SendGrid: ECDSA P-256 / SHA-256 (DER, base64) over `{timestamp}{body}`, with the
/// verification key (base64 DER, as SendGrid shows it).
fn sendgrid(v: &Verify, public_key: &str, req: &Request<'_>) -> Result<(), Rejection> {
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};
    use p256::pkcs8::DecodePublicKey;
    let name = v
        .header
        .as_deref()
        .unwrap_or("x-twilio-email-event-webhook-signature");
    let sig = b64(name, header(req, name)?)?;
    let ts_name = "x-twilio-email-event-webhook-timestamp";
    let ts = header(req, ts_name)?;
    fresh(v, ts_name, ts, req.now)?;
    let der = STANDARD
        .decode(public_key.trim())
        .map_err(|_| Rejection::new("signature", "the verification key is not base64"))?;
    let key = VerifyingKey::from_public_key_der(&der)
        .map_err(|_| Rejection::new("signature", "the verification key is not a P-256 key"))?;
    let sig = Signature::from_der(&sig).map_err(|_| Rejection::malformed(name, "not DER"))?;
    let mut msg = ts.as_bytes().to_vec();
    msg.extend_from_slice(req.body);
    key.verify(&msg, &sig).map_err(|_| Rejection::signature())
}

/// Mailgun: the body's `signature: {timestamp, token, signature}`, hex HMAC-SHA256 of
/// `{timestamp}{token}`.
fn mailgun(v: &Verify, key: &[u8], req: &Request<'_>) -> Result<(), Rejection> {
    let body: serde_json::Value = serde_json::from_slice(req.body)
        .map_err(|_| Rejection::new("malformed_body", "the body is not JSON"))?;
    let field = |k: &str| -> Result<String, Rejection> {
        match body.pointer(&format!("/signature/{k}")) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
            _ => Err(Rejection::new(
                "missing_header",
                format!("the body has no `signature.{k}`"),
            )),
        }
    };
    let (ts, token, sig) = (field("timestamp")?, field("token")?, field("signature")?);
    fresh(v, "signature.timestamp", &ts, req.now)?;
    let sig = hex("signature.signature", &sig)?;
    check_mac(
        HmacAlgorithm::Sha256,
        key,
        &[ts.as_bytes(), token.as_bytes()],
        &sig,
    )
}

#[cfg(test)]
mod tests;
