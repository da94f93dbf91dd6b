/* tracker: pageviews and conversions with the landing URL's UTM parameters and click ids.
   <script src=".../t.js"> (data-auto="false": no pageview); tracker.conversion({value:
   "49.90"}), tracker.identify(userId) at sign-in, tracker.reset() at sign-out. */
(() => {
  "use strict";
  const script = document.currentScript || document.querySelector('script[src*="/t.js"]');
  if (!script?.src) return;
  const EVENTS = new URL("v1/events", script.src), PIXEL = new URL("p.gif", script.src);
  const KEPT = "utm_campaign utm_source utm_medium utm_content click_id gclid fbclid msclkid tclid";

  const uuid = () => crypto.randomUUID ? crypto.randomUUID() :
    "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (d) =>
      (d ^ crypto.getRandomValues(new Uint8Array(1))[0] & 15 >> d / 4).toString(16));

  // The visitor: first-party cookie "tid", as the pixel names it; one year.
  let visitor;
  const visit = (id) => document.cookie = `tid=${encodeURIComponent(visitor = id)}; ` +
    `Max-Age=31536000; Path=/; SameSite=Lax${location.protocol === "https:" ? "; Secure" : ""}`;
  const found = document.cookie.match(/(?:^|;\s*)tid=([^;]{1,64})/);
  visit(found ? decodeURIComponent(found[1]) : uuid());

  // Landing parameters and user, kept for the session's later pages.
  let session = {};
  try { session = JSON.parse(sessionStorage.tracker) || {}; } catch {}
  const keep = () => { try { sessionStorage.tracker = JSON.stringify(session); } catch {} };
  const query = new URLSearchParams(location.search), fresh = {};
  for (const name of KEPT.split(" ")) if (query.get(name)) fresh[name] = query.get(name).slice(0, 256);
  if (Object.keys(fresh).length) { session.landing = fresh; keep(); } // a new landing wins

  const send = (type, props) => {
    const event = {
      ...session.landing, type, event_id: uuid(), ts: Date.now(), anonymous_id: visitor,
      user_id: session.user, url: location.href.slice(0, 2048),
      referrer: document.referrer.slice(0, 2048), ...props,
    };
    for (const key in event) if ((event[key] ?? "") === "") delete event[key];
    // A string is text/plain: no CORS preflight. sent_at corrects a wrong clock's ts.
    const body = JSON.stringify({ sent_at: Date.now(), events: [event] });
    if (!navigator.sendBeacon?.(EVENTS, body)) {
      delete event.ts; // sent now: its arrival is its time
      new Image().src = `${PIXEL}?${new URLSearchParams(event)}`;
    }
    return event.event_id;
  };

  const api = {
    identify: (id) => { session.user = id; keep(); return send("identify"); },
    // A new visitor, as Segment's reset: the next user gets no past.
    reset: () => { delete session.user; keep(); send("reset"); visit(uuid()); },
  };
  for (const type of ["pageview", "conversion"]) api[type] = (props) => send(type, props);
  const queued = Array.isArray(window.tracker) ? window.tracker : []; // calls made before load
  window.tracker = api;
  if (script.dataset.auto !== "false") api.pageview();
  for (const [method, props] of queued) if (api[method]) api[method](props);
})();
