// Drives Herald's Novu-compatible API (/v1) with Novu's official Node SDK, `@novu/node@2`.
//
//   HERALD_URL=http://127.0.0.1:8080 HERALD_KEY=<admin token or api key> node smoke.mjs
//
// HERALD_URL is the server root WITHOUT "/v1": the SDK appends "/v1" itself.
// Run by crates/herald/tests/novu_sdk.rs, which installs the SDK next to a copy of this file,
// parses the output and checks Herald's state afterwards; it also works by hand against a
// server whose project has the workflows `order-shipped` (payloadSchema requiring `orderId`,
// one in_app step) and `order-delayed` (a 1-hour delay, then an in_app step).
//
// Prints one JSON line per step: {step, ok, status, data, ...}. `data` is the HTTP body (the
// SDK returns the raw axios response, so Novu users read `res.data.data`); `problems` lists
// every way the answer differed from Novu's. The last line is {step: "summary", failures}, and
// the exit code is 1 if any step was unexpected.
import { Novu } from '@novu/node';

const rawUrl = process.env.HERALD_URL || 'http://127.0.0.1:8080';
const key = process.env.HERALD_KEY || 'sk_test';
const backendUrl = rawUrl.replace(/\/+$/, '').replace(/\/v1$/, '');

const novu = new Novu(key, { backendUrl });
// retryConfig turns on axios-retry and an Idempotency-Key header on every POST/PATCH. Short
// waits (in seconds) so that a retried 422 does not slow the test down.
const retrying = new Novu(key, {
  backendUrl,
  retryConfig: { retryMax: 1, waitMin: 0.05, waitMax: 0.2, initialDelay: 0.05 },
});
// Record the Idempotency-Key each attempt went out with. axios runs request interceptors newest
// first, so ours is moved to the front of the list to run after the SDK's, which adds the key.
// (Request transforms would not do: axios-retry skips them when it re-sends.)
const sentKeys = [];
const interceptors = retrying.http.interceptors.request;
interceptors.use((config) => {
  sentKeys.push(config.headers?.['Idempotency-Key'] ?? null);
  return config;
});
interceptors.handlers.unshift(interceptors.handlers.pop());

const run = Date.now().toString(36);
const alice = `sdk-alice-${run}`;
const bob = `sdk-bob-${run}`;
const carol = `sdk-carol-${run}`;
const inline = `sdk-inline-${run}`;
const dave = `sdk-dave-${run}`;
const missing = `sdk-missing-${run}`;
const topicKey = `sdk-topic-${run}`;
const workflow = 'order-shipped';
const payload = { orderId: 'A1' };
const firstTx = `sdk-tx-${run}`;
const delayedTx = `sdk-delayed-${run}`;
const bulkTx = `sdk-bulk-${run}`;

let failures = 0;

function out(line) {
  console.log(JSON.stringify(line));
}

/** Runs an SDK call that should succeed; `check(res)` returns a list of problems. */
async function ok(name, fn, status, check = () => []) {
  let res;
  try {
    res = await fn();
  } catch (err) {
    failures += 1;
    out({
      step: name,
      ok: false,
      status: err?.response?.status ?? null,
      data: err?.response?.data ?? String(err?.message ?? err),
      problems: [`threw, expected ${status}`],
    });
    return undefined;
  }
  const problems = [];
  if (res.status !== status) problems.push(`status ${res.status}, expected ${status}`);
  try {
    problems.push(...check(res));
  } catch (e) {
    problems.push(`check failed: ${e?.message ?? e}`);
  }
  if (problems.length) failures += 1;
  out({ step: name, ok: problems.length === 0, status: res.status, data: res.data, headers: pick(res.headers), problems });
  return res;
}

/** Runs an SDK call that should throw an HTTP error with `status`. */
async function fails(name, fn, status, check = () => []) {
  let res;
  try {
    res = await fn();
  } catch (err) {
    const problems = [];
    if (!err?.response) {
      problems.push(`threw without an HTTP response: ${err?.message ?? err}`);
    } else if (err.response.status !== status) {
      problems.push(`status ${err.response.status}, expected ${status}`);
    }
    try {
      if (err?.response) problems.push(...check(err));
    } catch (e) {
      problems.push(`check failed: ${e?.message ?? e}`);
    }
    if (problems.length) failures += 1;
    out({
      step: name,
      ok: problems.length === 0,
      status: err?.response?.status ?? null,
      data: err?.response?.data ?? String(err?.message ?? err),
      retries: err?.config?.['axios-retry']?.retryCount ?? 0,
      problems,
    });
    return err;
  }
  failures += 1;
  out({ step: name, ok: false, status: res.status, data: res.data, problems: [`succeeded, expected ${status}`] });
  return undefined;
}

function pick(headers) {
  const h = {};
  for (const k of ['idempotency-replay', 'idempotency-key']) {
    if (headers?.[k] !== undefined) h[k] = headers[k];
  }
  return h;
}

const eq = (what, got, want) =>
  JSON.stringify(got) === JSON.stringify(want) ? [] : [`${what} = ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`];
const sorted = (a) => [...(a ?? [])].sort();

/** A trigger's `res.data.data` as Novu sends it. */
const processed = (tx) => (res) => {
  const d = res.data?.data;
  const p = [...eq('data.acknowledged', d?.acknowledged, true), ...eq('data.status', d?.status, 'processed')];
  if (typeof d?.transactionId !== 'string' || !d.transactionId) p.push('data.transactionId is missing');
  if (tx) p.push(...eq('data.transactionId', d?.transactionId, tx));
  return p;
};

const notFound = (err) => eq('message is a string', typeof err.response.data?.message, 'string');

// --- subscribers -----------------------------------------------------------
await ok(
  'subscribers.identify',
  () =>
    novu.subscribers.identify(alice, {
      email: 'alice@example.com',
      firstName: 'Alice',
      lastName: 'Smoke',
      locale: 'en',
      data: { plan: 'pro' },
    }),
  201,
  (r) => [
    ...eq('data.subscriberId', r.data.data?.subscriberId, alice),
    ...eq('data.email', r.data.data?.email, 'alice@example.com'),
    ...eq('data.data', r.data.data?.data, { plan: 'pro' }),
    ...(typeof r.data.data?._id === 'string' ? [] : ['data._id is not a string']),
  ],
);
await ok(
  'subscribers.identify.again',
  () => novu.subscribers.identify(alice, { firstName: 'Alice' }),
  201,
  (r) => [...eq('data.subscriberId', r.data.data?.subscriberId, alice), ...eq('data.email', r.data.data?.email, 'alice@example.com')],
);
await ok(
  'subscribers.update',
  () => novu.subscribers.update(alice, { lastName: 'Updated', phone: '+15555550100' }),
  200,
  (r) => [...eq('data.lastName', r.data.data?.lastName, 'Updated'), ...eq('data.phone', r.data.data?.phone, '+15555550100')],
);
await ok('subscribers.get', () => novu.subscribers.get(alice), 200, (r) => [
  ...eq('data.subscriberId', r.data.data?.subscriberId, alice),
  ...eq('data.firstName', r.data.data?.firstName, 'Alice'),
  ...eq('data.lastName', r.data.data?.lastName, 'Updated'),
  ...eq('data.locale', r.data.data?.locale, 'en'),
]);
await fails('subscribers.get.unknown', () => novu.subscribers.get(missing), 404, notFound);
await ok('subscribers.list', () => novu.subscribers.list(0, 10), 200, (r) => [
  ...(Array.isArray(r.data.data) ? [] : ['data is not a list']),
  ...eq('page', r.data.page, 0),
  ...eq('pageSize', r.data.pageSize, 10),
  ...(r.data.data?.some((s) => s.subscriberId === alice) ? [] : ['alice is not listed']),
]);
await ok(
  'subscribers.bulkCreate',
  () =>
    novu.subscribers.bulkCreate([
      { subscriberId: bob, email: 'bob@example.com', firstName: 'Bob' },
      { subscriberId: carol, email: 'carol@example.com', firstName: 'Carol' },
    ]),
  201,
  (r) => [
    ...eq('data.created', sorted(r.data.data?.created?.map((c) => c.subscriberId)), sorted([bob, carol])),
    ...eq('data.updated', r.data.data?.updated, []),
  ],
);

// --- topics ----------------------------------------------------------------
await ok('topics.create', () => novu.topics.create({ key: topicKey, name: 'SDK topic' }), 201, (r) => [
  ...eq('data.key', r.data.data?.key, topicKey),
  ...(typeof r.data.data?._id === 'string' ? [] : ['data._id is not a string']),
]);
await fails('topics.create.duplicate', () => novu.topics.create({ key: topicKey, name: 'again' }), 409);
await ok(
  'topics.addSubscribers',
  () => novu.topics.addSubscribers(topicKey, { subscribers: [alice, bob, missing] }),
  200,
  (r) => [
    ...eq('data.succeeded', sorted(r.data.data?.succeeded), sorted([alice, bob])),
    ...eq('data.failed.notFound', r.data.data?.failed?.notFound, [missing]),
  ],
);
await ok('topics.get', () => novu.topics.get(topicKey), 200, (r) => [
  ...eq('data.key', r.data.data?.key, topicKey),
  ...eq('data.name', r.data.data?.name, 'SDK topic'),
  ...eq('data.subscribers', sorted(r.data.data?.subscribers), sorted([alice, bob])),
]);
await ok('topics.list', () => novu.topics.list({ page: 0, pageSize: 10, key: topicKey }), 200, (r) => [
  ...eq('data keys', r.data.data?.map((t) => t.key), [topicKey]),
  ...eq('totalCount', r.data.totalCount, 1),
]);
await ok('topics.removeSubscribers', () => novu.topics.removeSubscribers(topicKey, { subscribers: [bob] }), 204, (r) =>
  eq('body', r.data, ''),
);

// --- triggers --------------------------------------------------------------
const tx = {};
const keep = (name) => (res) => {
  tx[name] = res?.data?.data?.transactionId;
  return res;
};
await ok(
  'trigger.subscriberId',
  () => novu.trigger(workflow, { to: alice, payload, transactionId: firstTx }),
  201,
  processed(firstTx),
).then(keep('subscriberId'));
await ok(
  'trigger.subscriberObject',
  () =>
    novu.trigger(workflow, {
      to: { subscriberId: inline, email: 'inline@example.com', firstName: 'Inline' },
      payload,
      actor: alice,
      overrides: { email: { subject: 'override subject' } },
    }),
  201,
  processed(),
).then(keep('subscriberObject'));
await ok('subscribers.get.inline', () => novu.subscribers.get(inline), 200, (r) => [
  ...eq('data.email', r.data.data?.email, 'inline@example.com'),
  ...eq('data.firstName', r.data.data?.firstName, 'Inline'),
]);
await ok('trigger.topic', () => novu.trigger(workflow, { to: [{ type: 'Topic', topicKey }], payload }), 201, processed()).then(
  keep('topic'),
);
await ok(
  'trigger.array',
  () =>
    novu.trigger(workflow, {
      to: [alice, { subscriberId: carol, email: 'carol@example.com' }, { type: 'Topic', topicKey }],
      payload,
    }),
  201,
  processed(),
).then(keep('array'));
await ok(
  'bulkTrigger',
  () =>
    novu.bulkTrigger([
      { name: workflow, to: alice, payload },
      { name: workflow, to: { subscriberId: bob }, payload, transactionId: bulkTx },
    ]),
  201,
  (r) => {
    const d = r.data.data;
    if (!Array.isArray(d) || d.length !== 2) return [`data = ${JSON.stringify(d)}, expected 2 results`];
    return [...processed()({ data: { data: d[0] } }), ...processed(bulkTx)({ data: { data: d[1] } })];
  },
).then((res) => {
  tx.bulk = res?.data?.data?.map((d) => d.transactionId);
});
await ok('broadcast', () => novu.broadcast(workflow, { payload }), 201, processed()).then(keep('broadcast'));

// --- errors ----------------------------------------------------------------
await fails('trigger.unknownWorkflow', () => novu.trigger('does-not-exist', { to: alice, payload }), 422, (err) => [
  ...eq('statusCode', err.response.data?.statusCode, 422),
  ...eq('message', err.response.data?.message, 'workflow_not_found'),
  ...eq('error', err.response.data?.error, 'Unprocessable Entity'),
]);
// Herald validates every event of a bulk before storing any: one unknown workflow refuses the
// whole bulk with 422 (Novu answers 201 with a per-event `status: "error"` instead).
await fails(
  'bulkTrigger.unknownWorkflow',
  () =>
    novu.bulkTrigger([
      { name: workflow, to: carol, payload },
      { name: 'does-not-exist', to: alice, payload },
    ]),
  422,
  (err) => eq('message', err.response.data?.message, 'workflow_not_found'),
);
await fails('trigger.payloadInvalid', () => novu.trigger(workflow, { to: alice, payload: {} }), 422);

// --- retryConfig: the SDK adds an Idempotency-Key to every POST -------------
await ok(
  'retry.identify',
  () => retrying.subscribers.identify(dave, { email: 'dave@example.com', firstName: 'Dave' }),
  201,
  (r) => [
    ...eq('data.subscriberId', r.data.data?.subscriberId, dave),
    ...(typeof r.config.headers['Idempotency-Key'] === 'string' ? [] : ['no Idempotency-Key was sent']),
  ],
);
await ok('retry.trigger', () => retrying.trigger(workflow, { to: dave, payload }), 201, (r) => [
  ...processed()(r),
  ...(typeof r.config.headers['Idempotency-Key'] === 'string' ? [] : ['no Idempotency-Key was sent']),
]).then(keep('retry'));
// The same Idempotency-Key twice: the second answer replays the first.
const replayKey = `sdk-idem-${run}`;
const replayBody = { name: workflow, to: dave, payload: { orderId: 'A2' }, overrides: {} };
const first = await ok(
  'retry.idempotencyKey.first',
  () => retrying.http.post('/events/trigger', replayBody, { headers: { 'Idempotency-Key': replayKey } }),
  201,
  processed(),
);
await ok(
  'retry.idempotencyKey.replay',
  () => retrying.http.post('/events/trigger', replayBody, { headers: { 'Idempotency-Key': replayKey } }),
  201,
  (r) => [
    ...eq('data', r.data.data, first?.data?.data),
    ...eq('Idempotency-Replay header', r.headers['idempotency-replay'], 'true'),
  ],
);
tx.replay = first?.data?.data?.transactionId;
// A 422 is retryable for the SDK: it re-sends once (retryMax 1) with a new key, then throws.
const keysBefore = sentKeys.length;
await fails('retry.unknownWorkflow', () => retrying.trigger('does-not-exist', { to: dave, payload }), 422, (err) => {
  const keys = sentKeys.slice(keysBefore);
  return [
    ...eq('message', err.response.data?.message, 'workflow_not_found'),
    ...eq('requests sent', keys.length, 2),
    ...(keys.length === 2 && keys[0] && keys[1] && keys[0] !== keys[1] ? [] : [`keys ${JSON.stringify(keys)} are not two different keys`]),
  ];
});

// --- delay + cancel --------------------------------------------------------
await ok(
  'trigger.delayed',
  () => novu.trigger('order-delayed', { to: alice, payload, transactionId: delayedTx }),
  201,
  processed(delayedTx),
);

// --- in-app feed -----------------------------------------------------------
// Delivery is asynchronous: wait until alice's feed holds her five entries of `order-shipped`
// (to her id, the topic, the array, the bulk, the broadcast; not the one where she was actor).
const aliceTx = [tx.subscriberId, tx.topic, tx.array, tx.bulk?.[0], tx.broadcast];
let feed;
for (let i = 0; i < 200; i++) {
  feed = await novu.subscribers.getNotificationsFeed(alice, { page: 0, limit: 10 }).catch((e) => e.response);
  if (feed?.status !== 200 || (feed.data?.data?.length ?? 0) >= aliceTx.length) break;
  await new Promise((r) => setTimeout(r, 50));
}
await ok('subscribers.getNotificationsFeed', async () => feed, 200, (r) => [
  ...eq('transactionIds', sorted(r.data.data?.map((m) => m.transactionId)), sorted(aliceTx)),
  ...eq('channels', [...new Set(r.data.data?.map((m) => m.channel))], ['in_app']),
  ...eq('contents', [...new Set(r.data.data?.map((m) => m.content))], ['Hi Alice, your order A1 is on its way.']),
  ...eq('seen', r.data.data?.some((m) => m.seen), false),
  ...eq('page', r.data.page, 0),
  ...eq('pageSize', r.data.pageSize, 10),
  ...eq('hasMore', r.data.hasMore, false),
]);
await ok(
  'subscribers.getNotificationsFeed.payload',
  () => novu.subscribers.getNotificationsFeed(alice, { page: 0, limit: 10, payload: { orderId: 'nope' } }),
  200,
  (r) => eq('data', r.data.data, []),
);
await ok('subscribers.getUnseenCount', () => novu.subscribers.getUnseenCount(alice, false), 200, (r) =>
  eq('data.count', r.data.data?.count, aliceTx.length),
);
const firstMessageId = feed?.data?.data?.[0]?._id;
await ok('subscribers.markMessageSeen', () => novu.subscribers.markMessageSeen(alice, firstMessageId), 201, (r) => [
  ...eq('data ids', r.data.data?.map((m) => m._id), [firstMessageId]),
  ...eq('data.seen', r.data.data?.[0]?.seen, true),
]);
await ok(
  'subscribers.markMessageAs',
  () => novu.subscribers.markMessageAs(alice, firstMessageId, { seen: true, read: true }),
  201,
  (r) => eq('data.read', r.data.data?.[0]?.read, true),
);
await ok('subscribers.getUnseenCount.after', () => novu.subscribers.getUnseenCount(alice, false), 200, (r) =>
  eq('data.count', r.data.data?.count, aliceTx.length - 1),
);
await ok('subscribers.markAllMessagesAs', () => novu.subscribers.markAllMessagesAs(alice, 'read'), 201, (r) =>
  eq('data', r.data.data, aliceTx.length - 1),
);

// --- cancel ----------------------------------------------------------------
await ok('events.cancel.delayed', () => novu.events.cancel(delayedTx), 200, (r) => eq('data', r.data.data, true));
await ok('events.cancel.delayed.again', () => novu.events.cancel(delayedTx), 200, (r) => eq('data', r.data.data, false));
await ok('events.cancel.delivered', () => novu.events.cancel(firstTx), 200, (r) => eq('data', r.data.data, false));
await ok('events.cancel.unknown', () => novu.events.cancel(`sdk-never-${run}`), 200, (r) => eq('data', r.data.data, false));

// --- cleanup ---------------------------------------------------------------
await fails('topics.delete.notEmpty', () => novu.topics.delete(topicKey), 409);
await ok('topics.removeSubscribers.rest', () => novu.topics.removeSubscribers(topicKey, { subscribers: [alice] }), 204);
await ok('topics.delete', () => novu.topics.delete(topicKey), 204, (r) => eq('body', r.data, ''));
await fails('topics.get.deleted', () => novu.topics.get(topicKey), 404, notFound);
await ok('subscribers.delete', () => novu.subscribers.delete(bob), 200, (r) =>
  eq('data', r.data.data, { acknowledged: true, status: 'deleted' }),
);
await fails('subscribers.get.deleted', () => novu.subscribers.get(bob), 404, notFound);
await fails('subscribers.delete.unknown', () => novu.subscribers.delete(bob), 404);

// Everything the caller needs to check Herald's state afterwards.
out({
  step: 'summary',
  ok: failures === 0,
  failures,
  subscribers: { alice, bob, carol, inline, dave },
  transactions: { ...tx, first: firstTx, delayed: delayedTx, bulkTx },
});
process.exitCode = failures ? 1 : 0;
