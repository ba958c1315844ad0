// Runs once per bot context, after `$injector` and the host bridge `__host(op, argsJson)` are
// set. It builds the documented globals, locks them, freezes the built-in prototypes (so one
// dialog cannot poison what another dialog's scripts see), removes the bridge from the global
// scope, and returns the engine's private helpers: `render` (template values), `contact` (builds
// `$contact`), `noLead` (the globals of a bot-level run) and `reset` (deletes the globals of an
// earlier turn).
(function () {
  const g = globalThis;
  const bridge = g.__host;
  delete g.__host;
  const invoke = (op, args) => {
    const r = bridge(op, JSON.stringify(args));
    return r === undefined || r === null ? undefined : JSON.parse(r);
  };
  const deepFreeze = (o) => {
    if (o && typeof o === "object" && !Object.isFrozen(o)) {
      Object.freeze(o);
      for (const k of Object.keys(o)) deepFreeze(o[k]);
    }
    return o;
  };
  const show = (x) => {
    if (typeof x === "string") return x;
    try {
      return JSON.stringify(x);
    } catch (e) {
      return String(x);
    }
  };
  const fixed = {
    $injector: deepFreeze(g.$injector),
    $reactions: Object.freeze({
      answer: (text) => invoke("answer", [text === undefined || text === null ? "" : String(text)]),
      buttons: (list) => invoke("buttons", [Array.isArray(list) ? list : [list]]),
      transition: (state) => invoke("transition", [String(state)]),
    }),
    $pushgate: Object.freeze({
      createPushback: (channelType, botId, chatId, event, eventData) =>
        invoke("createPushback", [channelType, botId, chatId, event, eventData === undefined ? {} : eventData]),
      deletePushback: (id) => invoke("deletePushback", [String(id)]),
    }),
    $http: Object.freeze(
      Object.fromEntries(
        ["GET", "POST", "PUT", "PATCH", "DELETE"].map((m) => [
          m.toLowerCase(),
          (url, opts) => invoke("http", [m, String(url), opts || {}]),
        ]),
      ),
    ),
    $jobs: Object.freeze({
      schedule: (job) => invoke("scheduleJob", [job === undefined || job === null ? {} : job]),
      cancel: (id) => invoke("cancelJob", [Number(id)]),
    }),
    log: (...args) => {
      invoke("log", [args.map(show).join(" ")]);
    },
  };
  for (const [name, value] of Object.entries(fixed)) {
    Object.defineProperty(g, name, { value, writable: false, enumerable: false, configurable: false });
  }
  const intrinsics = [
    Object, Array, Function, String, Number, Boolean, Symbol, BigInt, Date, RegExp, Map, Set, WeakMap,
    WeakSet, Promise, ArrayBuffer, DataView, Uint8Array, Int32Array, Float64Array,
  ];
  for (const c of intrinsics) {
    if (typeof c !== "function") continue;
    Object.freeze(c);
    if (c.prototype) Object.freeze(c.prototype);
  }
  // Error prototypes: instances get `message`/`name` by assignment (also from native code), which
  // a frozen prototype would forbid; everything else is locked.
  for (const c of [Error, TypeError, RangeError, SyntaxError, ReferenceError, EvalError, URIError]) {
    Object.freeze(c);
    for (const k of Object.getOwnPropertyNames(c.prototype)) {
      if (k === "message" || k === "name") continue;
      Object.defineProperty(c.prototype, k, { writable: false, configurable: false });
    }
    Object.preventExtensions(c.prototype);
  }
  Object.freeze(Object.getPrototypeOf(Uint8Array));
  Object.freeze(Object.getPrototypeOf(Uint8Array.prototype));
  Object.freeze(JSON);
  Object.freeze(Math);
  Object.freeze(Reflect);
  // Per-turn globals (`$request`, `$session`, `$client`, `$temp`, `$contact`) are deleted and set
  // again by every turn; anything else not here now is a leftover.
  const baseline = new Set(Object.getOwnPropertyNames(g));
  const tagList = (list) =>
    (Array.isArray(list) ? list : [list])
      .map((t) => (t === undefined || t === null ? "" : String(t).trim()))
      .filter((t) => t !== "");
  return {
    render: (v) => (v === undefined || v === null ? "" : typeof v === "string" ? v : typeof v === "object" ? show(v) : String(v)),
    // `$contact` for one turn: tags change through addTags/removeTags, attributes are read-only.
    contact: (c) => {
      const tags = Array.isArray(c.tags) ? c.tags.slice() : [];
      return Object.freeze({
        id: c.id === undefined ? null : c.id,
        attributes: deepFreeze(c.attributes || {}),
        get tags() {
          return tags.slice();
        },
        addTags: (list) => {
          for (const t of tagList(list)) if (!tags.includes(t)) tags.push(t);
        },
        removeTags: (list) => {
          for (const t of tagList(list)) {
            const i = tags.indexOf(t);
            if (i >= 0) tags.splice(i, 1);
          }
        },
      });
    },
    // A bot-level trigger run has no lead: these globals throw when touched.
    noLead: () => {
      for (const name of ["$session", "$client", "$contact"]) {
        const fail = () => {
          throw new Error("this trigger runs without a lead (no lead_id): " + name + " is not available");
        };
        Object.defineProperty(g, name, { get: fail, set: fail, enumerable: false, configurable: true });
      }
    },
    reset: () => {
      for (const name of Object.getOwnPropertyNames(g)) {
        if (!baseline.has(name)) delete g[name];
      }
    },
  };
})()
