/*
 * Herald chat page client (served as /chat/assets/chat.js, loaded by GET /chat/{botId}).
 * Plain ES2020, no dependencies, no build step. Only global: window.HeraldChat (debug helpers).
 *
 * Protocol (SPEC §9 "chatwidget"), one JSON object per WebSocket text frame:
 *   connect   ws(s)://{host}/chat/{botId}/ws[?chatId=...]   (chatId omitted on the very first visit)
 *   server -> {"type":"hello","chatId":"..."}               always the first frame; the chatId is stored
 *                                                           in localStorage "herald.chat.<botId>.chatId"
 *                                                           and sent on every later connection
 *   server -> {"type":"message","id":"...","text":"...","buttons":[{"id","text"}],"form":null|{...},"ts":"RFC3339"}
 *             delivered at least once and in order; unacked messages are replayed on reconnect,
 *             so a message whose id was already rendered is ignored (but still acknowledged)
 *   server -> {"type":"error","message":"..."}               shown in a discreet banner
 *   client -> {"type":"ack","upTo":"<id>"}                   the latest rendered id (debounced 50 ms)
 *   client -> {"type":"text","text":"..."}                   the user typed and pressed Enter / Send
 *   client -> {"type":"button","id":"...","text":"..."}     the user pressed a reply button
 *   client -> {"type":"form","messageKey":"<message id>","value":...}
 *             the user submitted a form shown under a bot message; value is the widget's value
 *             (string, string[], number, {low, high}) or null for the form's negative button
 *
 * Reconnects with exponential backoff (0.5 s doubling up to 10 s, small jitter). While disconnected,
 * outgoing frames are queued in memory and flushed, in order, right after the next hello.
 * The transcript (bubbles, ids, button state; at most 200 entries) is kept in localStorage
 * "herald.chat.<botId>.transcript" and re-rendered on load.
 *
 * Embedded by /chat/widget.js as an iframe with "?embed=1": then a close button is shown that asks the
 * parent page to close the panel (postMessage {source:"herald-chat", type:"close"}), and the parent is
 * told about new bot messages ({source:"herald-chat", type:"message"}) so it can badge its launcher.
 */
(() => {
  'use strict';

  const root = document.getElementById('herald-chat');
  if (!root) return;

  const $ = (id) => document.getElementById(id);
  const listEl = $('hc-messages');
  const statusEl = $('hc-status');
  const statusTextEl = statusEl.querySelector('.hc-status-text');
  const errorEl = $('hc-error');
  const formEl = $('hc-composer');
  const inputEl = $('hc-input');
  const closeEl = $('hc-close');

  const PLACEHOLDER = '__HERALD_' + 'BOT_ID__'; // split so no server-side substitution can touch it
  const MAX_ENTRIES = 200;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const ACK_DEBOUNCE_MS = 50;
  const HELLO_TIMEOUT_MS = 10000;

  const botId = (() => {
    const attr = root.getAttribute('data-bot-id');
    if (attr && attr !== PLACEHOLDER) return attr;
    const m = location.pathname.match(/\/chat\/([^/]+)\/?$/);
    return m ? decodeURIComponent(m[1]) : 'default';
  })();
  const KEY_CHAT = `herald.chat.${botId}.chatId`;
  const KEY_TRANSCRIPT = `herald.chat.${botId}.transcript`;

  const params = new URLSearchParams(location.search);
  const embedded = params.get('embed') === '1' && window.parent !== window;
  if (embedded) {
    document.documentElement.classList.add('hc-embedded');
    closeEl.hidden = false;
  }
  const titleOverride = params.get('title');
  if (titleOverride) {
    $('hc-title').textContent = titleOverride;
    document.title = titleOverride;
  }

  // ---- storage (falls back to memory when localStorage is blocked, e.g. third-party iframes) ----

  const memory = new Map();
  const storage = (() => {
    try {
      const k = '__herald_probe__';
      window.localStorage.setItem(k, k);
      window.localStorage.removeItem(k);
      return window.localStorage;
    } catch (_) {
      return null;
    }
  })();
  function load(key) {
    if (storage) {
      try { return storage.getItem(key); } catch (_) { /* fall through */ }
    }
    return memory.has(key) ? memory.get(key) : null;
  }
  function save(key, value) {
    memory.set(key, value);
    if (storage) {
      try { storage.setItem(key, value); } catch (_) { /* quota or blocked: memory only */ }
    }
  }
  function remove(key) {
    memory.delete(key);
    if (storage) {
      try { storage.removeItem(key); } catch (_) { /* ignore */ }
    }
  }

  // ---- state ----

  let chatId = load(KEY_CHAT) || null;
  let transcript = loadTranscript();
  const seen = new Set();            // bot message ids already rendered
  const nodes = new Map();           // entry key -> <li>
  const outbox = [];                 // {frame, entry} waiting for a connected socket
  let ws = null;
  let ready = false;                 // hello received on the current socket
  let attempt = 0;                   // consecutive failed connection attempts
  let reconnectTimer = null;
  let helloTimer = null;
  let ackTimer = null;
  let pendingAck = null;             // latest message id not yet acknowledged
  let lastAckSent = null;
  let state = 'connecting';
  let errorTimer = null;
  let seq = 0;

  function loadTranscript() {
    try {
      const raw = load(KEY_TRANSCRIPT);
      const list = raw ? JSON.parse(raw) : [];
      return Array.isArray(list) ? list.filter((e) => e && typeof e === 'object' && e.kind) : [];
    } catch (_) {
      return [];
    }
  }
  function persist() {
    if (transcript.length > MAX_ENTRIES) transcript.splice(0, transcript.length - MAX_ENTRIES);
    save(KEY_TRANSCRIPT, JSON.stringify(transcript));
  }
  function newKey(prefix) {
    seq += 1;
    return `${prefix}-${Date.now().toString(36)}-${seq}-${Math.random().toString(36).slice(2, 7)}`;
  }

  // ---- rendering ----

  function el(tag, className, attrs) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (attrs) for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
    return node;
  }

  // RFC 3339 with more than millisecond precision (Rust's default) is not parsed by every engine.
  function parseTs(ts) {
    return new Date(String(ts).replace(/(\.\d{3})\d+/, '$1'));
  }

  function formatTime(ts) {
    const d = parseTs(ts);
    if (Number.isNaN(d.getTime())) return '';
    const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
    if (d.toDateString() === new Date().toDateString()) return time;
    return `${d.toLocaleDateString([], { month: 'short', day: 'numeric' })} ${time}`;
  }

  function timeEl(ts, suffix) {
    const meta = el('div', 'hc-meta');
    const t = el('time');
    const d = parseTs(ts);
    if (!Number.isNaN(d.getTime())) {
      t.dateTime = d.toISOString();
      t.title = d.toLocaleString();
    }
    t.textContent = formatTime(ts);
    meta.append(t);
    if (suffix) meta.append(suffix);
    return meta;
  }

  // The list follows new messages while the reader is at (or near) the bottom; scrolling up to read
  // older messages unpins it until the reader scrolls back down or sends something.
  let pinned = true;
  function nearBottom() {
    return listEl.scrollHeight - listEl.scrollTop - listEl.clientHeight < 80;
  }
  function scrollToBottom() {
    listEl.scrollTop = listEl.scrollHeight;
    pinned = true;
  }

  function updateEmpty() {
    const empty = listEl.querySelector('.hc-empty');
    if (transcript.length === 0 && !empty) {
      const li = el('li', 'hc-empty', { role: 'presentation' });
      li.textContent = 'Say hi to start the conversation.';
      listEl.append(li);
    } else if (transcript.length > 0 && empty) {
      empty.remove();
    }
  }

  function renderEntry(entry) {
    let li;
    if (entry.kind === 'bot') li = renderBot(entry);
    else if (entry.kind === 'user') li = renderUser(entry);
    else li = renderSystem(entry);
    nodes.set(entry.key, li);
    listEl.append(li);
    return li;
  }

  function renderBot(entry) {
    const li = el('li', 'hc-msg hc-msg-bot', { 'data-testid': 'bot-message', 'data-id': entry.id });
    const bubble = el('div', 'hc-bubble', { 'data-testid': 'message-text' });
    bubble.textContent = entry.text;
    li.append(bubble);
    if (entry.buttons && entry.buttons.length) {
      const group = el('div', 'hc-buttons', { role: 'group', 'aria-label': 'Reply options' });
      for (const b of entry.buttons) {
        const btn = el('button', 'hc-pill', { type: 'button', 'data-testid': 'reply-button', 'data-id': b.id });
        btn.textContent = b.text;
        btn.addEventListener('click', () => onButton(entry, b));
        group.append(btn);
      }
      li.append(group);
      applyButtonState(entry, li);
    }
    if (entry.form && typeof entry.form === 'object') renderForm(entry, li);
    li.append(timeEl(entry.ts));
    return li;
  }

  function applyButtonState(entry, li) {
    for (const btn of li.querySelectorAll('.hc-pill')) {
      btn.disabled = !!entry.answered;
      const chosen = entry.answered && btn.getAttribute('data-id') === entry.chosen;
      btn.classList.toggle('is-chosen', !!chosen);
      if (entry.answered) btn.setAttribute('aria-pressed', chosen ? 'true' : 'false');
    }
  }

  function renderUser(entry) {
    const li = el('li', 'hc-msg hc-msg-user', { 'data-testid': 'user-message' });
    const bubble = el('div', 'hc-bubble', { 'data-testid': 'message-text' });
    bubble.textContent = entry.text;
    li.append(bubble);
    li.append(timeEl(entry.ts, el('span', 'hc-delivery')));
    applyUserState(entry, li);
    return li;
  }

  function applyUserState(entry, li) {
    li.classList.toggle('is-pending', !!entry.pending && !entry.unsent);
    li.classList.toggle('is-unsent', !!entry.unsent);
    const slot = li.querySelector('.hc-delivery');
    if (!slot) return;
    slot.textContent = '';
    if (entry.unsent) {
      slot.append(' · Not sent · ');
      const retry = el('button', 'hc-retry', { type: 'button' });
      retry.textContent = 'Retry';
      retry.style.cssText = 'font:inherit;color:inherit;text-decoration:underline;background:none;border:0;padding:0;cursor:pointer';
      retry.addEventListener('click', () => {
        entry.unsent = false;
        persist();
        sendFrame(entry.frame, entry);
      });
      slot.append(retry);
    } else if (entry.pending) {
      slot.append(' · Waiting for connection…');
    }
  }

  function renderSystem(entry) {
    const li = el('li', 'hc-system', { role: 'note' });
    li.textContent = entry.text;
    return li;
  }

  // Best-effort rendering of Rogerthat-style forms (SPEC §8): {type, widget:{...}, positive_button,
  // negative_button, negative_confirmation}. Unknown shapes get just the action buttons.
  function renderForm(entry, li) {
    const spec = entry.form;
    const w = (spec.widget && typeof spec.widget === 'object') ? spec.widget : spec;
    const form = el('form', 'hc-form', { 'data-testid': 'message-form', novalidate: '' });
    const uid = `f-${String(entry.key).replace(/[^A-Za-z0-9_-]/g, '')}`;
    const choices = (w.choices || []).map((c) => (c && typeof c === 'object')
      ? { label: String(c.label ?? c.text ?? c.value ?? ''), value: String(c.value ?? c.id ?? c.label ?? '') }
      : { label: String(c), value: String(c) });
    let getValue = () => null;
    let describe = (v) => (v == null ? '' : String(v));

    const addInput = (attrs, tag = 'input') => {
      const input = el(tag, '', attrs);
      form.append(input);
      return input;
    };
    switch (spec.type) {
      case 'text_line':
      case 'text_block': {
        const attrs = { 'aria-label': spec.label || 'Your answer' };
        if (spec.type === 'text_line') attrs.type = 'text';
        else attrs.rows = '3';
        const input = addInput(attrs, spec.type === 'text_line' ? 'input' : 'textarea');
        input.value = w.value ?? '';
        if (w.place_holder || w.placeholder) input.placeholder = w.place_holder || w.placeholder;
        if (w.max_chars) input.maxLength = Number(w.max_chars);
        getValue = () => input.value;
        break;
      }
      case 'single_select':
      case 'multi_select': {
        const multi = spec.type === 'multi_select';
        const fs = el('fieldset');
        const selected = new Set(multi ? (w.values || []).map(String) : [String(w.value ?? '')]);
        choices.forEach((c, i) => {
          const label = el('label');
          const input = el('input', '', { type: multi ? 'checkbox' : 'radio', name: uid, value: c.value, id: `${uid}-${i}` });
          input.checked = selected.has(c.value);
          label.append(input, document.createTextNode(c.label));
          fs.append(label);
        });
        form.append(fs);
        const picked = () => [...fs.querySelectorAll('input:checked')].map((i) => i.value);
        getValue = () => (multi ? picked() : (picked()[0] ?? null));
        describe = (v) => {
          const vals = Array.isArray(v) ? v : [v];
          return vals.map((x) => (choices.find((c) => c.value === x) || { label: x }).label).join(', ');
        };
        break;
      }
      case 'date_select': {
        const mode = w.mode === 'time' ? 'time' : w.mode === 'date_time' ? 'datetime-local' : 'date';
        const input = addInput({ type: mode, 'aria-label': 'Date' });
        getValue = () => input.value;
        break;
      }
      case 'single_slider': {
        const out = el('output');
        const input = addInput({ type: 'range', min: w.min ?? 0, max: w.max ?? 100, step: w.step ?? 1, 'aria-label': 'Value' });
        input.value = w.value ?? w.min ?? 0;
        const show = () => { out.textContent = `${input.value}${w.unit ? ` ${w.unit}` : ''}`; };
        input.addEventListener('input', show);
        show();
        form.append(out);
        getValue = () => Number(input.value);
        describe = (v) => `${v}${w.unit ? ` ${w.unit}` : ''}`;
        break;
      }
      case 'range_slider': {
        const out = el('output');
        const common = { type: 'range', min: w.min ?? 0, max: w.max ?? 100, step: w.step ?? 1 };
        const low = addInput({ ...common, 'aria-label': 'From' });
        const high = addInput({ ...common, 'aria-label': 'To' });
        low.value = w.low_value ?? w.min ?? 0;
        high.value = w.high_value ?? w.max ?? 100;
        const show = () => { out.textContent = `${low.value} – ${high.value}${w.unit ? ` ${w.unit}` : ''}`; };
        low.addEventListener('input', show);
        high.addEventListener('input', show);
        show();
        form.append(out);
        getValue = () => {
          const a = Number(low.value);
          const b = Number(high.value);
          return { low: Math.min(a, b), high: Math.max(a, b) };
        };
        describe = (v) => `${v.low} – ${v.high}${w.unit ? ` ${w.unit}` : ''}`;
        break;
      }
      default:
        break;
    }

    const actions = el('div', 'hc-form-actions');
    const positive = el('button', 'hc-pill', { type: 'submit', 'data-testid': 'form-submit' });
    positive.textContent = spec.positive_button || 'Submit';
    actions.append(positive);
    let negative = null;
    if (spec.negative_button) {
      negative = el('button', 'hc-pill', { type: 'button', 'data-testid': 'form-cancel' });
      negative.textContent = spec.negative_button;
      actions.append(negative);
    }
    form.append(actions);

    const finish = (value, caption) => {
      entry.formDone = true;
      disableForm(form);
      persist();
      addUser(caption, { type: 'form', messageKey: entry.id, value });
    };
    form.addEventListener('submit', (e) => {
      e.preventDefault();
      if (entry.formDone) return;
      const value = getValue();
      finish(value, describe(value) || positive.textContent);
    });
    if (negative) {
      negative.addEventListener('click', () => {
        if (entry.formDone) return;
        if (spec.negative_confirmation && !window.confirm(String(spec.negative_confirmation))) return;
        finish(null, negative.textContent);
      });
    }
    if (entry.formDone) disableForm(form);
    li.append(form);
  }

  function disableForm(form) {
    form.setAttribute('aria-disabled', 'true');
    for (const c of form.querySelectorAll('input, textarea, button')) c.disabled = true;
  }

  // ---- transcript mutations ----

  function addEntry(entry, { scroll = 'auto' } = {}) {
    const stick = scroll === 'force' || pinned;
    transcript.push(entry);
    persist();
    updateEmpty();
    renderEntry(entry);
    if (stick) scrollToBottom();
  }

  function addUser(text, frame) {
    const entry = { kind: 'user', key: newKey('u'), text, ts: new Date().toISOString(), pending: true, frame };
    addEntry(entry, { scroll: 'force' });
    sendFrame(frame, entry);
  }

  function addSystem(text) {
    addEntry({ kind: 'system', key: newKey('s'), text, ts: new Date().toISOString() });
  }

  function normalizeButtons(buttons) {
    if (!Array.isArray(buttons)) return [];
    return buttons.map((b) => {
      if (b && typeof b === 'object') {
        const text = String(b.text ?? b.caption ?? b.id ?? '');
        return { id: String(b.id ?? text), text };
      }
      return { id: String(b), text: String(b) };
    }).filter((b) => b.text !== '');
  }

  // ---- user actions ----

  function onButton(entry, b) {
    if (entry.answered) return;
    entry.answered = true;
    entry.chosen = b.id;
    persist();
    const li = nodes.get(entry.key);
    if (li) applyButtonState(entry, li);
    addUser(b.text, { type: 'button', id: b.id, text: b.text });
  }

  function submitText() {
    const text = inputEl.value.trim();
    if (!text) return;
    inputEl.value = '';
    autosize();
    addUser(text, { type: 'text', text });
    inputEl.focus();
  }

  function autosize() {
    inputEl.style.height = 'auto';
    inputEl.style.height = `${Math.min(inputEl.scrollHeight + 2, 140)}px`;
  }

  // ---- socket ----

  function isOpen() {
    return ready && ws && ws.readyState === WebSocket.OPEN;
  }

  function markSent(entry) {
    if (!entry) return;
    entry.pending = false;
    entry.unsent = false;
    delete entry.frame;
    persist();
    const li = nodes.get(entry.key);
    if (li) applyUserState(entry, li);
  }

  function sendFrame(frame, entry) {
    if (outbox.length === 0 && isOpen()) {
      try {
        ws.send(JSON.stringify(frame));
        markSent(entry);
        return;
      } catch (_) { /* queue below */ }
    }
    outbox.push({ frame, entry });
    if (entry) {
      const li = nodes.get(entry.key);
      if (li) applyUserState(entry, li);
    }
  }

  function flush() {
    while (outbox.length && isOpen()) {
      const item = outbox[0];
      try {
        ws.send(JSON.stringify(item.frame));
      } catch (_) {
        return;
      }
      outbox.shift();
      markSent(item.entry);
    }
  }

  function scheduleAck(id) {
    pendingAck = id;
    if (ackTimer) return;
    ackTimer = setTimeout(() => {
      ackTimer = null;
      sendAck();
    }, ACK_DEBOUNCE_MS);
  }

  function sendAck() {
    if (!pendingAck || !isOpen()) return;
    try {
      ws.send(JSON.stringify({ type: 'ack', upTo: pendingAck }));
      lastAckSent = pendingAck;
      pendingAck = null;
    } catch (_) { /* acked again after the replay on reconnect */ }
  }

  function setStatus(next) {
    if (next === state) return;
    state = next;
    statusEl.setAttribute('data-state', next);
    statusTextEl.textContent = {
      connecting: 'Connecting…',
      connected: 'Connected',
      reconnecting: 'Reconnecting…',
      offline: 'Offline — waiting for network…',
    }[next] || next;
  }

  function showError(message) {
    errorEl.textContent = message;
    errorEl.hidden = false;
    clearTimeout(errorTimer);
    errorTimer = setTimeout(() => { errorEl.hidden = true; }, 8000);
  }

  function wsUrl() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    let url = `${proto}//${location.host}/chat/${encodeURIComponent(botId)}/ws`;
    if (chatId) url += `?chatId=${encodeURIComponent(chatId)}`;
    return url;
  }

  function connect() {
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    if (ws && (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN)) return;
    if (state !== 'connecting') setStatus('reconnecting');
    let sock;
    try {
      sock = new WebSocket(wsUrl());
    } catch (_) {
      scheduleReconnect();
      return;
    }
    ws = sock;
    ready = false;
    sock.addEventListener('open', () => {
      if (sock !== ws) return;
      clearTimeout(helloTimer);
      helloTimer = setTimeout(() => { if (sock === ws && !ready) sock.close(4000, 'no hello'); }, HELLO_TIMEOUT_MS);
    });
    sock.addEventListener('message', (ev) => {
      if (sock === ws) onFrame(ev.data);
    });
    sock.addEventListener('close', () => {
      if (sock !== ws) return;
      clearTimeout(helloTimer);
      ws = null;
      ready = false;
      scheduleReconnect();
    });
  }

  function scheduleReconnect() {
    if (reconnectTimer) return;
    if (navigator.onLine === false) {
      setStatus('offline');
      return; // the 'online' event reconnects
    }
    setStatus('reconnecting');
    const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** attempt);
    const delay = Math.max(BACKOFF_MIN_MS, Math.min(BACKOFF_MAX_MS, Math.round(base * (0.85 + Math.random() * 0.3))));
    attempt += 1;
    reconnectTimer = setTimeout(connect, delay);
  }

  function reconnectNow() {
    if (ws && (ws.readyState === WebSocket.CONNECTING || ws.readyState === WebSocket.OPEN)) return;
    clearTimeout(reconnectTimer);
    reconnectTimer = null;
    connect();
  }

  function onFrame(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch (_) {
      console.warn('[herald] ignoring a frame that is not JSON');
      return;
    }
    if (!frame || typeof frame !== 'object') return;
    switch (frame.type) {
      case 'hello': onHello(frame); break;
      case 'message': onMessage(frame); break;
      case 'error':
        console.warn('[herald] server error:', frame.message);
        showError(String(frame.message || 'Something went wrong.'));
        break;
      default: break; // unknown frame types are ignored for forward compatibility
    }
  }

  function onHello(frame) {
    clearTimeout(helloTimer);
    const id = frame.chatId == null ? '' : String(frame.chatId);
    if (id) {
      if (chatId && chatId !== id && transcript.length) addSystem('A new conversation has started.');
      chatId = id;
      save(KEY_CHAT, id);
    }
    ready = true;
    attempt = 0;
    setStatus('connected');
    flush();
    sendAck();
  }

  function onMessage(frame) {
    if (frame.id == null || frame.id === '') return;
    const id = String(frame.id);
    if (!seen.has(id)) {
      seen.add(id);
      const ts = typeof frame.ts === 'string' && frame.ts ? frame.ts : new Date().toISOString();
      addEntry({
        kind: 'bot',
        key: `b-${id}`,
        id,
        text: frame.text == null ? '' : String(frame.text),
        buttons: normalizeButtons(frame.buttons),
        form: frame.form && typeof frame.form === 'object' ? frame.form : null,
        ts,
      });
      if (embedded) {
        try { window.parent.postMessage({ source: 'herald-chat', type: 'message', botId }, '*'); } catch (_) { /* ignore */ }
      }
    }
    scheduleAck(id);
  }

  // ---- startup ----

  function renderAll() {
    listEl.textContent = '';
    nodes.clear();
    for (const entry of transcript) {
      if (!entry.key) entry.key = entry.kind === 'bot' ? `b-${entry.id}` : newKey(entry.kind[0]);
      if (entry.kind === 'bot') {
        entry.id = String(entry.id);
        seen.add(entry.id);
      }
      // A frame that was still queued when the page went away was never sent: offer a retry.
      if (entry.kind === 'user' && entry.pending) {
        entry.unsent = !!entry.frame;
        if (!entry.frame) entry.pending = false;
      }
      renderEntry(entry);
    }
    updateEmpty();
    scrollToBottom();
  }

  formEl.addEventListener('submit', (e) => {
    e.preventDefault();
    submitText();
  });
  inputEl.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submitText();
    }
  });
  inputEl.addEventListener('input', autosize);
  listEl.addEventListener('scroll', () => { pinned = nearBottom(); }, { passive: true });
  // Keep the newest message in view when the list shrinks (error banner, growing input, keyboard).
  if (typeof ResizeObserver === 'function') {
    new ResizeObserver(() => { if (pinned) listEl.scrollTop = listEl.scrollHeight; }).observe(listEl);
  }

  const askClose = () => {
    try { window.parent.postMessage({ source: 'herald-chat', type: 'close', botId }, '*'); } catch (_) { /* ignore */ }
  };
  closeEl.addEventListener('click', askClose);
  if (embedded) {
    document.addEventListener('keydown', (e) => { if (e.key === 'Escape') askClose(); });
  }

  window.addEventListener('online', () => { attempt = 0; reconnectNow(); });
  window.addEventListener('offline', () => { if (!isOpen()) setStatus('offline'); });
  document.addEventListener('visibilitychange', () => {
    if (document.visibilityState === 'visible' && reconnectTimer) reconnectNow();
  });
  window.addEventListener('pagehide', () => {
    if (ackTimer) {
      clearTimeout(ackTimer);
      ackTimer = null;
      sendAck();
    }
  });

  window.HeraldChat = Object.freeze({
    get botId() { return botId; },
    get chatId() { return chatId; },
    get state() { return state; },
    get lastAck() { return lastAckSent; },
    get pendingAck() { return pendingAck; },
    get queued() { return outbox.length; },
    transcript() { return JSON.parse(JSON.stringify(transcript)); },
    reconnect() { attempt = 0; if (ws) ws.close(); else reconnectNow(); },
    /** Forget this chat (chatId and transcript) and start a new conversation. */
    reset() {
      remove(KEY_CHAT);
      remove(KEY_TRANSCRIPT);
      chatId = null;
      transcript = [];
      seen.clear();
      outbox.length = 0;
      pendingAck = null;
      lastAckSent = null;
      renderAll();
      attempt = 0;
      if (ws) ws.close(); else reconnectNow();
    },
  });

  renderAll();
  persist();
  connect();
})();
