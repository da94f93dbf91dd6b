/* tracker: pageviews and conversions with the landing URL's UTM parameters and
   click ids, sent to the collector this script comes from. <script src=".../t.js">
   (data-auto="false": no automatic pageview); tracker.conversion({value: "49.90"}) */
(() => {
  "use strict";
  const script = document.currentScript || document.querySelector('script[src*="/t.js"]');
  if (!script || !script.src) return;
  const EVENTS = new URL("v1/events", script.src).href;
  const PIXEL = new URL("p.gif", script.src).href;
  const KEPT = ["utm_campaign", "utm_source", "utm_medium", "utm_content",
    "click_id", "gclid", "fbclid", "msclkid", "tclid"];
  const STORE = "tracker.landing";
  const crypto = window.crypto;

  const uuid = () => crypto.randomUUID ? crypto.randomUUID() :
    "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (d) =>
      (d ^ (crypto.getRandomValues(new Uint8Array(1))[0] & (15 >> (d / 4)))).toString(16));

  // The visitor: first-party cookie "tid", as the collector's pixel names it; one year.
  const found = document.cookie.match(/(?:^|;\s*)tid=([^;]{1,64})/);
  const visitor = found ? decodeURIComponent(found[1]) : uuid();
  document.cookie = `tid=${encodeURIComponent(visitor)}; Max-Age=31536000; Path=/; ` +
    `SameSite=Lax${location.protocol === "https:" ? "; Secure" : ""}`;

  // Campaign parameters of the landing URL, kept for the session's later pages.
  let landing = {};
  try { landing = JSON.parse(sessionStorage.getItem(STORE)) || {}; } catch (e) { /* none */ }
  const params = new URLSearchParams(location.search);
  const fresh = {};
  for (const name of KEPT) if (params.get(name)) fresh[name] = params.get(name).slice(0, 256);
  if (Object.keys(fresh).length) {
    landing = fresh; // a new campaign landing replaces the last one
    try { sessionStorage.setItem(STORE, JSON.stringify(fresh)); } catch (e) { /* private */ }
  }

  const send = (type, props) => {
    const event = Object.assign({}, landing, {
      type, event_id: uuid(), ts: Date.now(), anonymous_id: visitor,
      url: location.href.slice(0, 2048), referrer: document.referrer.slice(0, 2048),
    }, props);
    for (const key of Object.keys(event)) {
      if (event[key] == null || event[key] === "") delete event[key];
    }
    // text/plain: no CORS preflight. sent_at corrects ts for a wrong clock.
    const body = new Blob([JSON.stringify({ sent_at: Date.now(), events: [event] })],
      { type: "text/plain" });
    if (!(navigator.sendBeacon && navigator.sendBeacon(EVENTS, body))) {
      delete event.ts; // sent now: its arrival is its time
      new Image().src = `${PIXEL}?${new URLSearchParams(event)}`;
    }
    return event.event_id;
  };

  const api = {
    pageview: (props) => send("pageview", props),
    conversion: (props) => send("conversion", props),
  };
  const queued = Array.isArray(window.tracker) ? window.tracker : []; // calls made before load
  window.tracker = api;
  if (script.dataset.auto !== "false") api.pageview();
  for (const [method, props] of queued) if (api[method]) api[method](props);
})();
