#!/usr/bin/env node
/*
 * Headless-browser end-to-end test of the Herald chat widget: the newsletter story from the README.
 *
 *   node chat.e2e.mjs <baseUrl> <botId>
 *
 * env: CHROMIUM        browser executable (default /usr/bin/chromium; browsers are never downloaded)
 *      SCREENSHOT_DIR  if set, the final page is saved as $SCREENSHOT_DIR/chat.png
 *                      (and $SCREENSHOT_DIR/chat-failure.png on failure)
 *      E2E_TIMEOUT_MS  overall timeout (default 60000)
 *
 * stdout/stdin contract with the driving (Rust) test:
 *   1. the script chats ("hi", then the "Yes" button), then closes the tab and prints one line
 *      `CHAT_ID=<chatId>` on stdout;
 *   2. the driver activates the pushback (event newNotification, data {"text":"20% off"}) while the
 *      tab is closed, then writes a line `continue` on the script's stdin;
 *   3. the script reopens the chat in the same browser context (localStorage kept) and expects the
 *      offer to be delivered on reconnect, with the earlier messages restored from the transcript;
 *   4. on success it prints `E2E_OK` on stdout and exits 0; on failure it prints a diagnosis (the
 *      expectation, the messages on the page, the status, recent WebSocket frames and browser console)
 *      on stderr and exits 1. Progress lines go to stderr.
 */
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import path from 'node:path';

const Q_OFFER = 'Do you want to subscribe to our newsletter?';
const HOORAY_PREFIX = 'Hooray!';
const PUSH_TEXT = 'We have a unique offer just for you! 20% off';

const [baseArg, botId] = process.argv.slice(2);
if (!baseArg || !botId) {
  process.stderr.write('usage: node chat.e2e.mjs <baseUrl> <botId>\n');
  process.exit(2);
}
const base = baseArg.replace(/\/+$/, '');
const chatUrl = `${base}/chat/${encodeURIComponent(botId)}`;
const executablePath = process.env.CHROMIUM || '/usr/bin/chromium';
const screenshotDir = process.env.SCREENSHOT_DIR || '';
const TOTAL_MS = Number(process.env.E2E_TIMEOUT_MS) || 60000;
const STEP_MS = 15000;
const started = Date.now();

class Failure extends Error {}

let browser = null;
let context = null;
let page = null;
let step = 'start';
let lastSnapshot = null;
let finished = false;
const consoleLines = [];
const frames = [];

const log = (msg) => process.stderr.write(`[e2e ${((Date.now() - started) / 1000).toFixed(1)}s] ${msg}\n`);
const remaining = () => Math.max(1000, TOTAL_MS - (Date.now() - started) - 2000);
const stepTimeout = () => Math.min(STEP_MS, remaining());
const keep = (arr, item, max = 40) => { arr.push(item); if (arr.length > max) arr.shift(); };
const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ---- stdin: lines are buffered from the start so a fast driver cannot be missed ----
const stdinLines = [];
let stdinClosed = false;
let stdinWaiter = null;
const rl = createInterface({ input: process.stdin });
rl.on('line', (line) => { stdinLines.push(line.trim()); if (stdinWaiter) stdinWaiter(); });
rl.on('close', () => { stdinClosed = true; if (stdinWaiter) stdinWaiter(); });

function waitForStdinLine(expected, timeoutMs) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stdinWaiter = null;
      reject(new Failure(`expected a line "${expected}" on stdin within ${Math.round(timeoutMs / 1000)}s, got none`));
    }, timeoutMs);
    const check = () => {
      while (stdinLines.length) {
        const line = stdinLines.shift();
        if (line === expected) { clearTimeout(timer); stdinWaiter = null; resolve(); return; }
        if (line) log(`ignoring stdin line ${JSON.stringify(line)}`);
      }
      if (stdinClosed) {
        clearTimeout(timer);
        stdinWaiter = null;
        reject(new Failure(`expected a line "${expected}" on stdin, but stdin was closed`));
      }
    };
    stdinWaiter = check;
    check();
  });
}

// ---- page helpers ----

function watch(p) {
  p.on('console', (m) => {
    if (m.type() === 'error' || m.type() === 'warning') keep(consoleLines, `console.${m.type()}: ${m.text()}`);
  });
  p.on('pageerror', (e) => keep(consoleLines, `pageerror: ${e.message}`));
  p.on('requestfailed', (r) => keep(consoleLines, `requestfailed: ${r.url()} ${r.failure()?.errorText || ''}`));
  p.on('websocket', (ws) => {
    keep(frames, `open ${ws.url()}`);
    ws.on('framesent', (f) => keep(frames, `>> ${String(f.payload).slice(0, 300)}`));
    ws.on('framereceived', (f) => keep(frames, `<< ${String(f.payload).slice(0, 300)}`));
    ws.on('socketerror', (e) => keep(frames, `socketerror ${e}`));
    ws.on('close', () => keep(frames, 'close'));
  });
}

async function snapshot(p) {
  if (!p || p.isClosed()) return lastSnapshot;
  try {
    lastSnapshot = await p.evaluate(() => {
      const list = document.querySelector('[data-testid="messages"]');
      const status = document.querySelector('[data-testid="status"]');
      const err = document.querySelector('[data-testid="error"]');
      const items = list ? [...list.children].map((li) => {
        const kind = li.getAttribute('data-testid') || li.className;
        const text = li.querySelector('[data-testid="message-text"]')?.textContent ?? li.textContent;
        const buttons = [...li.querySelectorAll('[data-testid="reply-button"]')]
          .map((b) => `[${b.textContent}${b.disabled ? ' (disabled)' : ''}]`).join(' ');
        const id = li.getAttribute('data-id');
        return `  ${kind}${id ? ` #${id}` : ''}: ${JSON.stringify(text)}${buttons ? ` ${buttons}` : ''}`;
      }) : ['  (no [data-testid=messages] element on the page)'];
      return {
        url: location.href,
        status: status ? `${status.getAttribute('data-state')} "${status.textContent.trim()}"` : '(no status element)',
        error: err && !err.hidden ? err.textContent : '',
        items,
      };
    });
  } catch (e) {
    lastSnapshot = { url: p.url(), status: '?', error: '', items: [`  (could not read the page: ${e.message})`] };
  }
  return lastSnapshot;
}

async function waitConnected(p) {
  try {
    await p.waitForSelector('[data-testid="status"][data-state="connected"]', { timeout: stepTimeout() });
  } catch (_) {
    const s = await snapshot(p);
    throw new Failure(`expected the status indicator to show connected, it shows ${s?.status}`);
  }
}

function botMessage(p, matcher) {
  return p.locator('[data-testid="bot-message"]', {
    has: p.locator('[data-testid="message-text"]', { hasText: matcher }),
  });
}

async function expectBot(p, matcher, description) {
  const loc = botMessage(p, matcher);
  try {
    await loc.first().waitFor({ state: 'visible', timeout: stepTimeout() });
  } catch (_) {
    throw new Failure(`expected a bot message ${description}`);
  }
  return loc;
}

async function expectUser(p, text) {
  const loc = p.locator('[data-testid="user-message"]', {
    has: p.locator('[data-testid="message-text"]', { hasText: new RegExp(`^${escapeRe(text)}$`) }),
  });
  try {
    await loc.first().waitFor({ state: 'visible', timeout: stepTimeout() });
  } catch (_) {
    throw new Failure(`expected a user message "${text}"`);
  }
  return loc;
}

async function openChat() {
  const p = await context.newPage();
  watch(p);
  page = p;
  try {
    const resp = await p.goto(chatUrl, { waitUntil: 'domcontentloaded', timeout: stepTimeout() });
    if (!resp || !resp.ok()) throw new Failure(`GET ${chatUrl} answered ${resp ? resp.status() : 'nothing'}`);
  } catch (e) {
    if (e instanceof Failure) throw e;
    throw new Failure(`could not open ${chatUrl}: ${e.message.split('\n')[0]}`);
  }
  return p;
}

async function count(loc) {
  return loc.count();
}

// ---- the story ----

async function run() {
  step = 'launch chromium';
  log(`launching ${executablePath}`);
  try {
    browser = await chromium.launch({
      executablePath,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync'],
      timeout: stepTimeout(),
    });
  } catch (e) {
    throw new Failure(`could not launch Chromium at ${executablePath} (set CHROMIUM): ${e.message.split('\n')[0]}`);
  }
  context = await browser.newContext({ viewport: { width: 1024, height: 768 } });

  step = '1. open the chat page';
  log(`${step}: ${chatUrl}`);
  let p = await openChat();
  await waitConnected(p);

  step = '2. say hi';
  log(step);
  await p.getByTestId('chat-input').fill('hi');
  await p.getByTestId('chat-input').press('Enter');
  await expectUser(p, 'hi');
  const offer = await expectBot(p, new RegExp(`^${escapeRe(Q_OFFER)}$`), `"${Q_OFFER}"`);
  const captions = (await offer.last().getByTestId('reply-button').allTextContents()).map((t) => t.trim());
  if (JSON.stringify(captions) !== JSON.stringify(['Yes', 'No'])) {
    throw new Failure(`expected buttons ["Yes","No"] under "${Q_OFFER}", got ${JSON.stringify(captions)}`);
  }
  if ((await p.getByTestId('chat-input').inputValue()) !== '') {
    throw new Failure('expected the input box to be cleared after sending');
  }

  step = '3. click Yes';
  log(step);
  await offer.last().getByTestId('reply-button').filter({ hasText: /^Yes$/ }).click({ timeout: stepTimeout() });
  await expectUser(p, 'Yes');
  await expectBot(p, new RegExp(`^${escapeRe(HOORAY_PREFIX)}`), `starting "${HOORAY_PREFIX}"`);
  const disabled = await offer.last().getByTestId('reply-button').evaluateAll((bs) => bs.map((b) => b.disabled));
  if (!disabled.every(Boolean)) {
    throw new Failure(`expected the Yes/No buttons to be disabled after the click, got disabled=${JSON.stringify(disabled)}`);
  }

  step = '4. remember the chat and close the tab';
  log(step);
  const chatId = await p.evaluate((k) => window.localStorage.getItem(k), `herald.chat.${botId}.chatId`);
  if (!chatId) throw new Failure(`expected localStorage "herald.chat.${botId}.chatId" to hold the chatId from the hello frame, it is empty`);
  // Let the (debounced) ack of the last message go out before the tab closes; a missing ack only
  // means the server replays that message, which the page must then ignore (checked below).
  const lastId = await p.locator('[data-testid="bot-message"]').last().getAttribute('data-id');
  try {
    await p.waitForFunction((id) => window.HeraldChat && window.HeraldChat.lastAck === id && !window.HeraldChat.pendingAck,
      lastId, { timeout: 3000 });
  } catch (_) {
    log(`warning: no ack for message ${lastId} seen before closing the tab`);
  }
  await snapshot(p);
  await p.close();
  page = null;
  process.stdout.write(`CHAT_ID=${chatId}\n`);
  log('tab closed; waiting for "continue" on stdin');
  step = '4. wait for the driver to activate the pushback';
  await waitForStdinLine('continue', remaining());

  step = '4. reopen the chat';
  log(step);
  p = await openChat();
  // The transcript is rendered from localStorage before any network traffic.
  await expectBot(p, new RegExp(`^${escapeRe(Q_OFFER)}$`), `"${Q_OFFER}" restored from the transcript after reopening`);
  await waitConnected(p);
  await expectBot(p, new RegExp(`^${escapeRe(PUSH_TEXT)}$`), `"${PUSH_TEXT}" delivered on reconnect`);
  await expectUser(p, 'hi');
  await expectUser(p, 'Yes');
  await expectBot(p, new RegExp(`^${escapeRe(HOORAY_PREFIX)}`), `starting "${HOORAY_PREFIX}" restored from the transcript`);

  // Give possible replayed duplicates a moment to arrive, then check each message is shown once, in order.
  await p.waitForTimeout(600);
  const bots = await p.locator('[data-testid="bot-message"] [data-testid="message-text"]').allTextContents();
  const ids = await p.locator('[data-testid="bot-message"]').evaluateAll((ls) => ls.map((l) => l.getAttribute('data-id')));
  const dupIds = ids.filter((id, i) => ids.indexOf(id) !== i);
  const iOffer = bots.indexOf(Q_OFFER);
  const iHooray = bots.findIndex((t) => t.startsWith(HOORAY_PREFIX));
  const iPush = bots.indexOf(PUSH_TEXT);
  if (dupIds.length) throw new Failure(`expected every bot message once, ids shown twice: ${JSON.stringify(dupIds)}`);
  for (const [what, n] of [[Q_OFFER, await count(botMessage(p, new RegExp(`^${escapeRe(Q_OFFER)}$`)))],
    [PUSH_TEXT, await count(botMessage(p, new RegExp(`^${escapeRe(PUSH_TEXT)}$`)))]]) {
    if (n !== 1) throw new Failure(`expected "${what}" exactly once, shown ${n} times`);
  }
  if (!(iOffer < iHooray && iHooray < iPush)) {
    throw new Failure(`expected the order offer question < Hooray < pushed offer, got ${JSON.stringify(bots)}`);
  }
  const restoredDisabled = await botMessage(p, new RegExp(`^${escapeRe(Q_OFFER)}$`)).getByTestId('reply-button')
    .evaluateAll((bs) => bs.map((b) => b.disabled));
  if (!restoredDisabled.length || !restoredDisabled.every(Boolean)) {
    throw new Failure(`expected the answered Yes/No buttons to stay disabled after reopening, got disabled=${JSON.stringify(restoredDisabled)}`);
  }

  step = '5. screenshot';
  if (screenshotDir) {
    mkdirSync(screenshotDir, { recursive: true });
    const file = path.join(screenshotDir, 'chat.png');
    await p.screenshot({ path: file });
    log(`screenshot saved to ${file}`);
  }
}

async function closeBrowser() {
  if (!browser) return;
  const b = browser;
  browser = null;
  await Promise.race([b.close().catch(() => {}), new Promise((r) => setTimeout(r, 5000))]);
}

async function fail(err) {
  if (finished) return;
  finished = true;
  const out = [];
  out.push(`E2E FAILED at step "${step}" (${((Date.now() - started) / 1000).toFixed(1)}s):`);
  out.push(err instanceof Failure ? err.message : (err && err.stack) || String(err));
  const s = await snapshot(page);
  if (s) {
    out.push(`--- page ${s.url}`);
    out.push(`--- status: ${s.status}${s.error ? `; error banner: ${s.error}` : ''}`);
    out.push('--- messages on the page:');
    out.push(...(s.items.length ? s.items : ['  (none)']));
  }
  if (frames.length) out.push('--- last WebSocket frames:', ...frames.map((f) => `  ${f}`));
  if (consoleLines.length) out.push('--- browser console:', ...consoleLines.map((l) => `  ${l}`));
  process.stderr.write(`${out.join('\n')}\n`);
  if (screenshotDir && page && !page.isClosed()) {
    try {
      mkdirSync(screenshotDir, { recursive: true });
      await page.screenshot({ path: path.join(screenshotDir, 'chat-failure.png'), timeout: 3000 });
    } catch (_) { /* best effort */ }
  }
  await closeBrowser();
  process.exit(1);
}

const overall = setTimeout(() => {
  fail(new Failure(`overall timeout of ${TOTAL_MS / 1000}s exceeded`));
}, TOTAL_MS);

try {
  await run();
  if (!finished) {
    finished = true;
    clearTimeout(overall);
    await closeBrowser();
    process.stdout.write('E2E_OK\n');
    log('passed');
    process.exit(0);
  }
} catch (err) {
  await fail(err);
}
