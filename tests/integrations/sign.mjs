// Signs one test request per Herald verification preset with code Herald did not write: the
// platforms' own libraries where the registry has them (standardwebhooks, @octokit/
// webhooks-methods, stripe, twilio, tweetnacl) and Node's crypto for the recipes that are plain
// HMACs or ECDSA. Prints JSON: the keys Herald needs (public keys, secrets) and, per preset,
// requests that must verify (`valid`) and that must not (`wrong`, `stale`, `future`).
//
// Usage: node sign.mjs <public base URL>    (e.g. https://herald.example.com)

import crypto from "node:crypto";
import { Webhook } from "standardwebhooks";
import { sign as githubSign } from "@octokit/webhooks-methods";
import Stripe from "stripe";
import twilio from "twilio";
import nacl from "tweetnacl";

const base = process.argv[2] ?? "https://herald.example.com";
const SECRET = "test-signing-secret";
const WRONG = "not-the-secret";
const now = Math.floor(Date.now() / 1000);
const STALE = now - 1000;
const FUTURE = now + 1000;
const url = (name, query = "") => `${base}/integrations/${name}/webhook${query}`;
const hmac = (alg, key, ...parts) => {
  const h = crypto.createHmac(alg, key);
  for (const p of parts) h.update(p);
  return h.digest();
};
let n = 0;
const body = (extra = {}) => JSON.stringify({ id: `evt_${++n}`, who: `u${n}`, ...extra });
const json = { "content-type": "application/json" };

// Deterministic keys, so that a run can be repeated: Discord's Ed25519 and SendGrid's P-256.
const seed = crypto.createHash("sha256").update("herald discord test key").digest();
const discordKeys = nacl.sign.keyPair.fromSeed(new Uint8Array(seed));
const ecdh = crypto.createECDH("prime256v1");
ecdh.setPrivateKey(crypto.createHash("sha256").update("herald sendgrid test key").digest());
const pub = ecdh.getPublicKey();
const jwk = {
  kty: "EC",
  crv: "P-256",
  d: ecdh.getPrivateKey().toString("base64url"),
  x: pub.subarray(1, 33).toString("base64url"),
  y: pub.subarray(33, 65).toString("base64url"),
};
const sendgridPrivate = crypto.createPrivateKey({ key: jwk, format: "jwk" });
const sendgridPublic = crypto
  .createPublicKey({ key: { kty: "EC", crv: "P-256", x: jwk.x, y: jwk.y }, format: "jwk" })
  .export({ type: "spki", format: "der" })
  .toString("base64");

const stripe = new Stripe("sk_test_herald");
const b64 = (s) => Buffer.from(s).toString("base64");
const whsec = "whsec_" + b64("herald standard webhooks key!");

// Each builder: (secret, unix seconds) -> {method, path, headers, body}.
const presets = {
  "standard-webhooks": {
    secret: whsec,
    wrongSecret: "whsec_" + b64("some other standard key"),
    timed: true,
    build: (secret, ts) => {
      const b = body();
      const id = `msg_${n}`;
      const sig = new Webhook(secret).sign(id, new Date(ts * 1000), b);
      return { path: "", headers: { ...json, "webhook-id": id, "webhook-timestamp": String(ts), "webhook-signature": sig }, body: b };
    },
  },
  github: {
    build: async (secret) => {
      const b = body({ action: "opened" });
      return {
        path: "",
        headers: { ...json, "x-github-event": "issues", "x-github-delivery": crypto.randomUUID(), "x-hub-signature-256": await githubSign(secret, b) },
        body: b,
      };
    },
  },
  stripe: {
    timed: true,
    build: (secret, ts) => {
      const b = body({ type: "payment_intent.succeeded" });
      const header = stripe.webhooks.generateTestHeaderString({ payload: b, secret, timestamp: ts });
      return { path: "", headers: { ...json, "stripe-signature": header }, body: b };
    },
  },
  shopify: {
    build: (secret) => {
      const b = body();
      return {
        path: "",
        headers: { ...json, "x-shopify-topic": "orders/create", "x-shopify-event-id": crypto.randomUUID(), "x-shopify-hmac-sha256": hmac("sha256", secret, b).toString("base64") },
        body: b,
      };
    },
  },
  slack: {
    timed: true,
    build: (secret, ts) => {
      const b = body({ event_id: `Ev${n}` });
      const sig = "v0=" + hmac("sha256", secret, `v0:${ts}:`, b).toString("hex");
      return { path: "", headers: { ...json, "x-slack-request-timestamp": String(ts), "x-slack-signature": sig }, body: b };
    },
  },
  twilio: {
    build: (secret) => {
      const params = { From: "+15005550006", Body: "hello", MessageSid: `SM${++n}`, who: `u${n}` };
      const sig = twilio.getExpectedTwilioSignature(secret, url("twilio"), params);
      return {
        path: "",
        headers: { "content-type": "application/x-www-form-urlencoded", "x-twilio-signature": sig, "i-twilio-idempotency-token": crypto.randomUUID() },
        body: new URLSearchParams(params).toString(),
      };
    },
  },
  "twilio-json": {
    scheme: "twilio",
    build: (secret) => {
      const b = body();
      const sha = crypto.createHash("sha256").update(b).digest("hex");
      const query = `?bodySHA256=${sha}`;
      const sig = twilio.getExpectedTwilioSignature(secret, url("twilio-json", query), {});
      return { path: query, headers: { ...json, "x-twilio-signature": sig }, body: b };
    },
  },
  linear: {
    timed: true,
    build: (secret, ts) => {
      const b = body({ webhookTimestamp: ts * 1000, action: "create" });
      return {
        path: "",
        headers: { ...json, "linear-delivery": crypto.randomUUID(), "linear-signature": hmac("sha256", secret, b).toString("hex") },
        body: b,
      };
    },
  },
  telegram: {
    build: (secret) => {
      const b = JSON.stringify({ update_id: ++n, who: `u${n}`, message: { text: "hi" } });
      return { path: "", headers: { ...json, "x-telegram-bot-api-secret-token": secret }, body: b };
    },
  },
  meta: {
    build: (secret) => {
      const b = body({ object: "page" });
      return { path: "", headers: { ...json, "x-hub-signature-256": "sha256=" + hmac("sha256", secret, b).toString("hex") }, body: b };
    },
  },
  discord: {
    secret: Buffer.from(discordKeys.publicKey).toString("hex"),
    timed: true,
    // The "wrong" request is signed by another key; the integration knows only the right one.
    wrongSign: nacl.sign.keyPair.fromSeed(new Uint8Array(32).fill(7)).secretKey,
    build: (_secret, ts, key = discordKeys.secretKey) => {
      const b = body({ type: 2 });
      const sig = nacl.sign.detached(Buffer.from(String(ts) + b), key);
      return {
        path: "",
        headers: { ...json, "x-signature-timestamp": String(ts), "x-signature-ed25519": Buffer.from(sig).toString("hex") },
        body: b,
      };
    },
  },
  paddle: {
    timed: true,
    build: (secret, ts) => {
      const b = body({ event_id: `evt_p${n}` });
      return { path: "", headers: { ...json, "paddle-signature": `ts=${ts};h1=${hmac("sha256", secret, `${ts}:`, b).toString("hex")}` }, body: b };
    },
  },
  square: {
    build: (secret) => {
      const b = body({ event_id: crypto.randomUUID() });
      return { path: "", headers: { ...json, "x-square-hmacsha256-signature": hmac("sha256", secret, url("square"), b).toString("base64") }, body: b };
    },
  },
  sendgrid: {
    secret: sendgridPublic,
    timed: true,
    wrongSign: crypto.generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey,
    build: (_secret, ts, key = sendgridPrivate) => {
      const b = JSON.stringify([{ email: "ann@example.com", event: "delivered", who: `u${++n}` }]);
      const sig = crypto.sign("sha256", Buffer.from(String(ts) + b), { key, dsaEncoding: "der" }).toString("base64");
      return {
        path: "",
        headers: { ...json, "x-twilio-email-event-webhook-timestamp": String(ts), "x-twilio-email-event-webhook-signature": sig },
        body: b,
      };
    },
  },
  mailgun: {
    timed: true,
    build: (secret, ts) => {
      const token = crypto.randomBytes(25).toString("hex");
      const signature = hmac("sha256", secret, String(ts), token).toString("hex");
      const b = JSON.stringify({ signature: { timestamp: String(ts), token, signature }, "event-data": { id: `mg${++n}`, event: "delivered" }, who: `u${n}` });
      return { path: "", headers: json, body: b };
    },
  },
  zoom: {
    timed: true,
    build: (secret, ts) => {
      const b = body({ event: "meeting.started" });
      const sig = "v0=" + hmac("sha256", secret, `v0:${ts}:`, b).toString("hex");
      return { path: "", headers: { ...json, "x-zm-request-timestamp": String(ts), "x-zm-signature": sig }, body: b };
    },
  },
  hmac: {
    timed: true,
    build: (secret, ts) => {
      const b = body();
      const id = `d${n}`;
      const sig = hmac("sha512", secret, `${id}.${ts}.`, b).toString("base64url");
      return { path: "", headers: { ...json, "x-id": id, "x-ts": String(ts), "x-sig": `v1=${sig}` }, body: b };
    },
  },
  bearer: {
    build: (secret) => ({ path: "", headers: { ...json, authorization: `Bearer ${secret}` }, body: body() }),
  },
  basic: {
    build: (secret) => ({ path: "", headers: { ...json, authorization: "Basic " + b64(`shop:${secret}`) }, body: body() }),
  },
};

const out = { now, presets: {} };
for (const [name, p] of Object.entries(presets)) {
  const secret = p.secret ?? SECRET;
  const cases = { valid: await p.build(secret, now) };
  cases.wrong = p.wrongSign
    ? await p.build(secret, now, p.wrongSign)
    : await p.build(p.wrongSecret ?? WRONG, now);
  if (p.timed) {
    cases.stale = await p.build(secret, STALE);
    cases.future = await p.build(secret, FUTURE);
  }
  out.presets[name] = { scheme: p.scheme ?? name, secret, cases };
}

// Handshakes: Slack's url_verification, Zoom's url_validation, Discord's PING, signed.
const slackChallenge = JSON.stringify({ type: "url_verification", challenge: "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" });
const zoomValidation = JSON.stringify({ event: "endpoint.url_validation", payload: { plainToken: "qgg8vlvZRS6UYooatFL8Aw" } });
const ping = JSON.stringify({ type: 1, id: "ping" });
out.handshakes = {
  slack: { headers: { ...json, "x-slack-request-timestamp": String(now), "x-slack-signature": "v0=" + hmac("sha256", SECRET, `v0:${now}:`, slackChallenge).toString("hex") }, body: slackChallenge },
  zoom: {
    headers: { ...json, "x-zm-request-timestamp": String(now), "x-zm-signature": "v0=" + hmac("sha256", SECRET, `v0:${now}:`, zoomValidation).toString("hex") },
    body: zoomValidation,
    encryptedToken: hmac("sha256", SECRET, "qgg8vlvZRS6UYooatFL8Aw").toString("hex"),
  },
  discord: {
    headers: { ...json, "x-signature-timestamp": String(now), "x-signature-ed25519": Buffer.from(nacl.sign.detached(Buffer.from(String(now) + ping), discordKeys.secretKey)).toString("hex") },
    body: ping,
  },
};
process.stdout.write(JSON.stringify(out));
