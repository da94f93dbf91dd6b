// @snowplow/node-tracker playing the story of tests/e2e/test_sdks.py against the collector.
//
// usage: node snowplow-node-scenario.cjs <collector port> <device clock offset ms> <story>
//
// <story> is a JSON object naming the visitors, pages and orders (see Story.wire() in
// test_sdks.py). Two trackers, one per visitor, each posting one request to
// /com.snowplowanalytics.snowplow/tp2 on flush():
//   visitor A: a page view of the campaign landing, one of the checkout page, a
//     transaction (e=tr), a sign-up (a structured event) sent twice with the same eid,
//     a second transaction and the e-commerce plugin's refund of it;
//   visitor B: a page view of the other campaign's landing, then signed in (setUserId)
//     a transaction carrying both their domain user id and the user id.
// Prints {"events": n} (events sent, the repeat included) and exits 1 if the collector
// did not answer 2xx.
'use strict';

const [port, offset, storyJson] = process.argv.slice(2);

// The device's clock, set `offset` ms wrong before the tracker loads: it stamps both
// dtm (created) and stm (sent) with this clock, as a server whose clock is off would.
require('./clock.cjs')(offset);

const {
  newTracker,
  buildPageView,
  buildEcommerceTransaction,
  buildSelfDescribingEvent,
  buildStructEvent,
} = require('@snowplow/node-tracker');

const { ACTION, REFUND } = require('./ecommerce.cjs');

const story = JSON.parse(storyJson);
let failed = false;
let events = 0;

function tracker(namespace, domainUserId) {
  const made = newTracker(
    { namespace, appId: 'shop' },
    {
      endpoint: `http://127.0.0.1:${port}`,
      bufferSize: 100, // all in one request, sent by flush()
      retryFailedRequests: false,
      onRequestFailure: (failure) => {
        failed = true;
        console.error('collector refused the request:', JSON.stringify(failure));
      },
    },
  );
  made.setDomainUserId(domainUserId);
  // A retry of a request whose answer was lost carries the same eid again: pinned here
  // for the event sent twice.
  let pinned;
  made.addPlugin({
    plugin: {
      beforeTrack: (payload) => {
        if (pinned) {
          payload.add('eid', pinned);
        }
      },
    },
  });
  const track = (event, context) => {
    events += 1;
    return made.track(event, context);
  };
  const twice = (build) => {
    pinned = track(build()).eid;
    track(build());
    pinned = undefined;
  };
  return { made, track, twice };
}

const transaction = (order) =>
  buildEcommerceTransaction({ orderId: order.id, total: order.amount, currency: order.currency });

const a = tracker('visitor-a', story.visitor_a);
a.track(buildPageView({ pageUrl: story.landing_a, pageTitle: 'Spring sale' }));
a.track(buildPageView({ pageUrl: story.checkout, pageTitle: 'Checkout', referrer: story.landing_a }));
a.track(transaction(story.order_a));
a.twice(() =>
  buildStructEvent({ category: 'account', action: story.signup.action, value: story.signup.amount }),
);
a.track(transaction(story.refunded));
a.track(buildSelfDescribingEvent({ event: { schema: ACTION, data: { type: 'refund' } } }), [
  {
    schema: REFUND,
    data: {
      transaction_id: story.refunded.id,
      currency: story.refunded.currency,
      refund_amount: story.refunded.amount,
    },
  },
]);

const b = tracker('visitor-b', story.visitor_b);
b.track(buildPageView({ pageUrl: story.landing_b, pageTitle: 'Autumn sale' }));
b.made.setUserId(story.user);
b.track(transaction(story.order_u));

Promise.all([a.made.flush(), b.made.flush()]).then(() => {
  process.stdout.write(JSON.stringify({ events }));
  process.exitCode = failed ? 1 : 0;
});
