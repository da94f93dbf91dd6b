/* tracker: pageviews and conversions with the landing URL's UTM parameters and click ids.
   <script src=".../t.js"> (data-auto="false": no pageview); tracker.conversion({value:
   "49.90"}), tracker.identify(userId) at sign-in, tracker.reset() at sign-out.
   tracker.consent({analytics_storage: "granted"}) (and the other Consent Mode v2 signals, gdpr,
   gdpr_consent) goes with every event. No cookie nor sessionStorage while analytics_storage is
   denied, not yet granted with data-consent="required", or under Global Privacy Control. */
(() => {
  "use strict";
  const script = document.currentScript || document.querySelector('script[src*="/t.js"]');
  if (!script?.src) return;
  const EVENTS = new URL("v1/events", script.src), PIXEL = new URL("p.gif", script.src);
  const KEPT = "utm_campaign utm_source utm_medium utm_content click_id gclid fbclid msclkid ttclid tclid";
  const SIGNALS = ["analytics_storage", "ad_storage", "ad_user_data", "ad_personalization"];

  const uuid = () => crypto.randomUUID ? crypto.randomUUID() :
    "10000000-1000-4000-8000-100000000000".replace(/[018]/g, (d) =>
      (d ^ crypto.getRandomValues(new Uint8Array(1))[0] & 15 >> d / 4).toString(16));

  // The page's consent, sent as stated with every event: the collector judges the values,
  // and counts a visitor denied analytics storage by a daily hash of its own, not a cookie.
  const consent = script.dataset.consent === "required" ?
    Object.fromEntries(SIGNALS.map((signal) => [signal, "denied"])) : {}, stated = new Set();
  const mayStore = () => navigator.globalPrivacyControl !== true &&
    (consent.analytics_storage ?? "granted") === "granted";

  // The visitor: first-party cookie "tid", as the pixel names it; one year. Landing
  // parameters and user, kept for the session's later pages. Both in memory only while !mayStore().
  let visitor, session = {};
  const cookie = (value, age) => document.cookie = `tid=${value}; Max-Age=${age}; Path=/; ` +
    `SameSite=Lax${location.protocol === "https:" ? "; Secure" : ""}`;
  const visit = (id) => mayStore() && cookie(encodeURIComponent(visitor = id), 31536000);
  const keep = () => {
    try { if (mayStore()) sessionStorage.tracker = JSON.stringify(session); } catch {}
  };
  const remember = () => {
    const found = document.cookie.match(/(?:^|;\s*)tid=([^;]{1,64})/);
    visit(found ? decodeURIComponent(found[1]) : uuid());
    // What this page learned before consent wins over what earlier pages kept.
    try { session = { ...JSON.parse(sessionStorage.tracker), ...session }; } catch {}
    keep();
  };
  const forget = () => {
    visitor = undefined; cookie("", 0);
    try { delete sessionStorage.tracker; } catch {}
  };
  const query = new URLSearchParams(location.search), fresh = {};
  for (const name of KEPT.split(" ")) if (query.get(name)) fresh[name] = query.get(name).slice(0, 256);
  if (Object.keys(fresh).length) session.landing = fresh; // a new landing wins

  const send = (type, props) => {
    const event = {
      ...session.landing, type, event_id: uuid(), ts: Date.now(), anonymous_id: visitor,
      user_id: mayStore() ? session.user : undefined, url: location.href.slice(0, 2048),
      referrer: document.referrer.slice(0, 2048), ...props, ...consent,
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
    consent: (given) => {
      given = Object(given);
      // A TC string speaks for every signal the page has not stated itself.
      if ("gdpr_consent" in given) for (const key of SIGNALS) if (!stated.has(key)) delete consent[key];
      for (const key of [...SIGNALS, "gdpr", "gdpr_consent"])
        if (key in given) { consent[key] = given[key]; stated.add(key); }
      if ("analytics_storage" in given) mayStore() ? remember() : forget(); // granted or withdrawn
    },
    // Without storage there is no visitor to link (the collector would refuse it).
    identify: (id) => { session.user = id; keep(); return mayStore() ? send("identify") : undefined; },
    // A new visitor, as Segment's reset: the next user gets no past.
    reset: () => { delete session.user; keep(); if (mayStore()) { send("reset"); visit(uuid()); } },
  };
  for (const type of ["pageview", "conversion"]) api[type] = (props) => send(type, props);
  const queued = Array.isArray(window.tracker) ? window.tracker : []; // calls made before load
  window.tracker = api;
  // A consent stated before load holds from the first event on; the other calls follow.
  for (const [method, props] of queued) if (method === "consent") api.consent(props);
  if (mayStore()) remember();
  if (script.dataset.auto !== "false") api.pageview();
  for (const [method, props] of queued) if (method !== "consent") api[method]?.(props);
})();
