// Installed once per bot context. The host bridge `__host(op, argsJson)` is removed from the
// global scope here, so user scripts only see the documented globals.
(function () {
  const g = globalThis;
  const bridge = g.__host;
  delete g.__host;
  const invoke = (op, args) => {
    const r = bridge(op, JSON.stringify(args));
    return r === undefined || r === null ? undefined : JSON.parse(r);
  };
  const freeze = (o) => {
    if (o && typeof o === "object" && !Object.isFrozen(o)) {
      Object.freeze(o);
      for (const k of Object.keys(o)) freeze(o[k]);
    }
    return o;
  };
  g.__freeze = freeze;
  g.$reactions = Object.freeze({
    answer: (text) => invoke("answer", [text === undefined || text === null ? "" : String(text)]),
    buttons: (list) => invoke("buttons", [Array.isArray(list) ? list : [list]]),
    transition: (state) => invoke("transition", [String(state)]),
  });
  g.$pushgate = Object.freeze({
    createPushback: (channelType, botId, chatId, event, eventData) =>
      invoke("createPushback", [channelType, botId, chatId, event, eventData === undefined ? {} : eventData]),
    deletePushback: (id) => invoke("deletePushback", [String(id)]),
  });
  const http = (method) => (url, opts) => invoke("http", [method, String(url), opts || {}]);
  g.$http = Object.freeze({
    get: http("GET"),
    post: http("POST"),
    put: http("PUT"),
    patch: http("PATCH"),
    delete: http("DELETE"),
  });
  const show = (x) => (typeof x === "string" ? x : (() => { try { return JSON.stringify(x); } catch (e) { return String(x); } })());
  g.log = (...args) => { invoke("log", [args.map(show).join(" ")]); };
  g.__render = (v) => (v === undefined || v === null ? "" : typeof v === "string" ? v : typeof v === "object" ? show(v) : String(v));
})();
