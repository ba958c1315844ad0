//! Webhook signatures in the Standard Webhooks scheme
//! (<https://www.standardwebhooks.com/>): the `webhook-id`,
//! `webhook-timestamp` and `webhook-signature` headers, signing outgoing
//! payloads and verifying signatures (the latter mostly so tests — and
//! receivers written in Rust — can check what we send).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// Header carrying the unique message id (stable across retries, so
/// receivers can deduplicate).
pub const HEADER_ID: &str = "webhook-id";
/// Header carrying the send time in unix seconds (receivers use it to
/// reject replays).
pub const HEADER_TIMESTAMP: &str = "webhook-timestamp";
/// Header carrying one or more space-separated `v1,<base64>` signatures.
pub const HEADER_SIGNATURE: &str = "webhook-signature";

/// Prefix marking a secret whose remainder is the base64-encoded key.
const SECRET_PREFIX: &str = "whsec_";

/// Why a payload could not be signed.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    /// The part after `whsec_` is not valid base64.
    #[error("webhook secret after `whsec_` is not valid base64: {0}")]
    BadSecret(#[from] base64::DecodeError),
    /// The decoded key is empty; an empty HMAC key authenticates nothing.
    #[error("webhook secret is empty")]
    EmptySecret,
}

/// Signs a payload and returns the full `webhook-signature` header value
/// (`v1,<base64>`).
pub fn sign(secret: &str, msg_id: &str, ts: i64, body: &[u8]) -> Result<String, SigningError> {
    let mac = compute(&decode_secret(secret)?, msg_id, ts, body);
    Ok(format!("v1,{}", STANDARD.encode(mac)))
}

/// Checks a `webhook-signature` header against the payload. The header may
/// list several signatures (during key rotation); one match is enough.
/// Does not check the timestamp's freshness — that policy is the receiver's.
pub fn verify(secret: &str, msg_id: &str, ts: i64, body: &[u8], header: &str) -> bool {
    let Ok(key) = decode_secret(secret) else {
        return false;
    };
    let expected = compute(&key, msg_id, ts, body);
    header
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|sig| STANDARD.decode(sig).ok())
        // Non-short-circuiting fold so the time taken does not reveal which
        // (or whether an early) candidate matched.
        .fold(subtle::Choice::from(0), |found, sig| {
            found | expected.as_slice().ct_eq(sig.as_slice())
        })
        .into()
}

fn decode_secret(secret: &str) -> Result<Vec<u8>, SigningError> {
    let key = match secret.strip_prefix(SECRET_PREFIX) {
        Some(encoded) => STANDARD.decode(encoded)?,
        // Secrets without the prefix are used verbatim, which keeps
        // hand-written shared secrets working.
        None => secret.as_bytes().to_vec(),
    };
    if key.is_empty() {
        return Err(SigningError::EmptySecret);
    }
    Ok(key)
}

fn compute(key: &[u8], msg_id: &str, ts: i64, body: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length, so this cannot fail for a non-empty
    // key; falling back to an empty tag keeps the function total and such
    // a tag never verifies.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key) else {
        return Vec::new();
    };
    mac.update(msg_id.as_bytes());
    mac.update(b".");
    mac.update(ts.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac.finalize().into_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The official test vector from the Standard Webhooks specification.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1_614_265_330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const EXPECTED: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    #[test]
    fn matches_the_official_vector() -> Result<(), SigningError> {
        assert_eq!(sign(SECRET, MSG_ID, TS, BODY)?, EXPECTED);
        assert!(verify(SECRET, MSG_ID, TS, BODY, EXPECTED));
        Ok(())
    }

    #[test]
    fn verify_accepts_any_of_several_signatures() {
        let other = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
        let header = format!("v1a,notours {other} {EXPECTED}");
        assert!(verify(SECRET, MSG_ID, TS, BODY, &header));
        let header = format!("{EXPECTED} {other}");
        assert!(verify(SECRET, MSG_ID, TS, BODY, &header));
        assert!(!verify(SECRET, MSG_ID, TS, BODY, other));
        assert!(!verify(SECRET, MSG_ID, TS, BODY, ""));
    }

    #[test]
    fn verify_rejects_wrong_secret_or_tampering() {
        let wrong = "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";
        assert!(!verify(wrong, MSG_ID, TS, BODY, EXPECTED));
        assert!(!verify(SECRET, "msg_other", TS, BODY, EXPECTED));
        assert!(!verify(SECRET, MSG_ID, TS + 1, BODY, EXPECTED));
        assert!(!verify(SECRET, MSG_ID, TS, br#"{"test": 1}"#, EXPECTED));
        // Without the version prefix the entry is not a v1 signature.
        let bare = EXPECTED.trim_start_matches("v1,");
        assert!(!verify(SECRET, MSG_ID, TS, BODY, bare));
    }

    #[test]
    fn raw_secret_without_prefix_is_used_verbatim() -> Result<(), SigningError> {
        let raw = "my shared secret";
        let sig = sign(raw, MSG_ID, TS, BODY)?;
        assert!(sig.starts_with("v1,"));
        assert!(verify(raw, MSG_ID, TS, BODY, &sig));
        // `whsec_` + base64 of the same bytes is the same key, and a
        // different key gives a different signature.
        let encoded = format!("whsec_{}", STANDARD.encode(raw));
        assert_eq!(sign(&encoded, MSG_ID, TS, BODY)?, sig);
        assert_ne!(sign(SECRET, MSG_ID, TS, BODY)?, sig);
        Ok(())
    }

    #[test]
    fn rejects_bad_secrets() {
        assert!(matches!(
            sign("whsec_not*base64", MSG_ID, TS, BODY),
            Err(SigningError::BadSecret(_))
        ));
        assert!(matches!(
            sign("whsec_", MSG_ID, TS, BODY),
            Err(SigningError::EmptySecret)
        ));
        assert!(matches!(
            sign("", MSG_ID, TS, BODY),
            Err(SigningError::EmptySecret)
        ));
        assert!(!verify("whsec_not*base64", MSG_ID, TS, BODY, EXPECTED));
    }
}
