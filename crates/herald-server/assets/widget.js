/*
 * Herald embeddable chat widget (served as GET /chat/widget.js). Plain ES2020, no dependencies.
 *
 * Embed it in any page:
 *   <script src="https://herald.example/chat/widget.js" data-bot="newsletter" async></script>
 *
 * Attributes on the script tag:
 *   data-bot       (required) the bot id; the chat page is {herald}/chat/{bot}
 *   data-position  "right" (default) or "left": which bottom corner the launcher sits in
 *   data-title     label of the launcher and of the chat frame, and the chat header title
 *                  (default: the bot's name in the header, "Chat" for the launcher)
 *   data-origin    optional Herald base URL when widget.js is not served from {herald}/chat/widget.js
 *
 * The Herald base URL is derived from the script's own src ({base}/chat/widget.js; a path prefix
 * such as https://example.com/herald/chat/widget.js is kept). A round launcher button is added to the
 * bottom corner; it toggles a 380×560 panel (full screen on small screens) holding an iframe of
 * {base}/chat/{bot}?embed=1. The iframe is created on first open, then kept so the conversation stays
 * connected. The chat page may ask the panel to close and report new bot messages (a dot on the
 * launcher while closed) with window.postMessage({source: "herald-chat", type: "close"|"message"}).
 * Everything lives in a shadow root, so page styles and widget styles do not leak into each other.
 *
 * The only global is window.HeraldWidget: {open(), close(), toggle(), isOpen, botId}.
 */
(() => {
  'use strict';

  if (window.HeraldWidget && window.HeraldWidget.botId) {
    console.warn('[herald] widget.js is already loaded on this page; ignoring the second copy');
    return;
  }

  const script = document.currentScript
    || Array.from(document.querySelectorAll('script[src*="widget.js"]')).reverse()
      .find((s) => s.hasAttribute('data-bot'))
    || Array.from(document.querySelectorAll('script[src*="widget.js"]')).pop();
  if (!script) {
    console.warn('[herald] widget.js: cannot find its own <script> tag');
    return;
  }
  const botId = (script.getAttribute('data-bot') || script.getAttribute('data-bot-id') || '').trim();
  if (!botId) {
    console.warn('[herald] widget.js: add data-bot="<botId>" to the <script> tag');
    return;
  }

  const base = (() => {
    const explicit = script.getAttribute('data-origin');
    if (explicit) return new URL(explicit.replace(/\/?$/, '/'), location.href);
    const src = new URL(script.src, location.href);
    const m = src.pathname.match(/^(.*\/)chat\/widget\.js$/);
    return new URL(m ? m[1] : '/', src.origin);
  })();
  const heraldOrigin = base.origin;
  const position = (script.getAttribute('data-position') || '').toLowerCase() === 'left' ? 'left' : 'right';
  const customTitle = (script.getAttribute('data-title') || '').trim();
  const label = customTitle || 'Chat';

  const chatUrl = new URL(`chat/${encodeURIComponent(botId)}`, base);
  chatUrl.searchParams.set('embed', '1');
  if (customTitle) chatUrl.searchParams.set('title', customTitle);

  const CSS = `
:host { all: initial; }
.root { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
.launcher {
  position: fixed; bottom: 20px; right: 20px; z-index: 2147483000;
  width: 58px; height: 58px; border-radius: 50%; border: 0; padding: 0; margin: 0;
  display: grid; place-items: center; cursor: pointer;
  background: linear-gradient(135deg, #4f46e5, #4338ca); color: #fff;
  box-shadow: 0 8px 24px rgba(24, 28, 48, 0.28), 0 2px 6px rgba(24, 28, 48, 0.16);
  transition: transform 0.15s ease, box-shadow 0.15s ease;
}
.launcher:hover { transform: scale(1.06); }
.launcher:focus-visible { outline: 3px solid #a5b4fc; outline-offset: 3px; }
.left .launcher { left: 20px; right: auto; }
.launcher svg { width: 26px; height: 26px; display: block; }
.launcher .icon-close { display: none; }
.open .launcher .icon-chat { display: none; }
.open .launcher .icon-close { display: block; }
.badge {
  position: absolute; top: 3px; right: 3px; width: 12px; height: 12px; border-radius: 50%;
  background: #ef4444; border: 2px solid #fff; display: none;
}
.unread .badge { display: block; }
.panel {
  position: fixed; bottom: 92px; right: 20px; z-index: 2147483000;
  width: 380px; height: 560px;
  max-width: calc(100vw - 40px); max-height: calc(100vh - 112px);
  border-radius: 16px; overflow: hidden; background: #fff;
  box-shadow: 0 16px 48px rgba(24, 28, 48, 0.26), 0 2px 8px rgba(24, 28, 48, 0.12);
  transform-origin: bottom right;
  animation: herald-pop 0.16s ease-out;
}
.left .panel { left: 20px; right: auto; transform-origin: bottom left; }
.panel[hidden] { display: none; }
.panel iframe { display: block; width: 100%; height: 100%; border: 0; }
@keyframes herald-pop { from { opacity: 0; transform: translateY(8px) scale(0.98); } }
@media (prefers-reduced-motion: reduce) { .panel { animation: none; } .launcher { transition: none; } }
@media (max-width: 480px), (max-height: 600px) {
  .panel, .left .panel {
    inset: 0; width: 100%; height: 100%; max-width: none; max-height: none; border-radius: 0;
  }
  .open .launcher { display: none; }
}`;

  const ICON_CHAT = '<svg class="icon-chat" viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path fill="currentColor" d="M4 4h16a2 2 0 0 1 2 2v10a2 2 0 0 1-2 2H9l-4.3 3.4A.75.75 0 0 1 3.5 20.8V18H4a2 2 0 0 1-2-2V6a2 2 0 0 1 2-2zm3 6.25a1.25 1.25 0 1 0 0 2.5 1.25 1.25 0 0 0 0-2.5zm5 0a1.25 1.25 0 1 0 0 2.5 1.25 1.25 0 0 0 0-2.5zm5 0a1.25 1.25 0 1 0 0 2.5 1.25 1.25 0 0 0 0-2.5z"/></svg>';
  const ICON_CLOSE = '<svg class="icon-close" viewBox="0 0 24 24" aria-hidden="true" focusable="false"><path fill="currentColor" d="M6.7 5.3 12 10.6l5.3-5.3a1 1 0 1 1 1.4 1.4L13.4 12l5.3 5.3a1 1 0 0 1-1.4 1.4L12 13.4l-5.3 5.3a1 1 0 0 1-1.4-1.4l5.3-5.3-5.3-5.3a1 1 0 0 1 1.4-1.4z"/></svg>';

  let rootEl = null;
  let panel = null;
  let launcher = null;
  let iframe = null;
  let isOpen = false;

  function mount() {
    const host = document.createElement('div');
    host.id = `herald-widget-${botId.replace(/[^A-Za-z0-9_-]/g, '_')}`;
    host.setAttribute('data-herald-widget', botId);
    const shadow = host.attachShadow({ mode: 'open' });

    let styled = false;
    try {
      if ('adoptedStyleSheets' in shadow && typeof CSSStyleSheet === 'function') {
        const sheet = new CSSStyleSheet();
        sheet.replaceSync(CSS);
        shadow.adoptedStyleSheets = [sheet];
        styled = true;
      }
    } catch (_) { /* fall back to a <style> element */ }
    if (!styled) {
      const style = document.createElement('style');
      style.textContent = CSS;
      shadow.append(style);
    }

    rootEl = document.createElement('div');
    rootEl.className = `root ${position}`;

    panel = document.createElement('div');
    panel.className = 'panel';
    panel.id = 'herald-panel';
    panel.hidden = true;
    panel.setAttribute('role', 'dialog');
    panel.setAttribute('aria-label', label);

    launcher = document.createElement('button');
    launcher.type = 'button';
    launcher.className = 'launcher';
    launcher.setAttribute('aria-controls', 'herald-panel');
    launcher.setAttribute('aria-expanded', 'false');
    launcher.innerHTML = `${ICON_CHAT}${ICON_CLOSE}<span class="badge" aria-hidden="true"></span>`; // static markup only
    launcher.addEventListener('click', toggle);
    updateLauncherLabel();

    rootEl.append(panel, launcher);
    shadow.append(rootEl);
    document.body.append(host);

    window.addEventListener('message', onMessage);
    document.addEventListener('keydown', (e) => {
      if (e.key === 'Escape' && isOpen) close();
    });
  }

  function updateLauncherLabel() {
    const text = isOpen ? 'Close chat' : (customTitle || 'Open chat');
    launcher.setAttribute('aria-label', text);
    launcher.title = text;
  }

  function ensureFrame() {
    if (iframe) return;
    iframe = document.createElement('iframe');
    iframe.src = chatUrl.href;
    iframe.title = label;
    iframe.setAttribute('allow', 'clipboard-write');
    panel.append(iframe);
  }

  function open() {
    if (!rootEl) return;
    ensureFrame();
    isOpen = true;
    panel.hidden = false;
    rootEl.classList.add('open');
    rootEl.classList.remove('unread');
    launcher.setAttribute('aria-expanded', 'true');
    updateLauncherLabel();
    try { iframe.focus(); } catch (_) { /* ignore */ }
  }

  function close() {
    if (!rootEl) return;
    const wasOpen = isOpen;
    isOpen = false;
    panel.hidden = true;
    rootEl.classList.remove('open');
    launcher.setAttribute('aria-expanded', 'false');
    updateLauncherLabel();
    if (wasOpen) launcher.focus();
  }

  function toggle() {
    if (isOpen) close();
    else open();
  }

  function onMessage(e) {
    if (!iframe || e.source !== iframe.contentWindow || e.origin !== heraldOrigin) return;
    const data = e.data;
    if (!data || typeof data !== 'object' || data.source !== 'herald-chat') return;
    if (data.type === 'close') close();
    else if (data.type === 'message' && !isOpen) rootEl.classList.add('unread');
  }

  window.HeraldWidget = Object.freeze({
    open,
    close,
    toggle,
    get isOpen() { return isOpen; },
    botId,
  });

  if (document.body) mount();
  else document.addEventListener('DOMContentLoaded', mount, { once: true });
})();
