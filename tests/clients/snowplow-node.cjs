// @snowplow/node-tracker sending to the collector, for tests/integration/test_snowplow.py.
//
// usage: node snowplow-node.cjs <collector port> <device clock offset ms> <domain user id>
//
// Tracks, in one POST to /com.snowplowanalytics.snowplow/tp2 (base64url contexts and
// self-describing events, the tracker's defaults): a campaign page view, a transaction
// (e=tr) with one item (e=ti), an e-commerce refund as the browser e-commerce plugin
// builds it, a structured event and a page ping. Prints {name: eid} of what it tracked
// and exits 1 if the collector did not answer 2xx.
'use strict';

const [port, offset, domainUserId] = process.argv.slice(2);

// The device's clock, set `offset` ms wrong before the tracker loads: it stamps both
// dtm (created) and stm (sent) with this clock, as a phone whose clock is off would.
require('./clock.cjs')(offset);

const {
  newTracker,
  buildPageView,
  buildPagePing,
  buildEcommerceTransaction,
  buildEcommerceTransactionItem,
  buildSelfDescribingEvent,
  buildStructEvent,
} = require('@snowplow/node-tracker');

const { ACTION, REFUND, PRODUCT } = require('./ecommerce.cjs');

let failed = false;
const tracker = newTracker(
  { namespace: 'node-test', appId: 'shop' },
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
tracker.setDomainUserId(domainUserId);
tracker.setUserId('bob');

const eid = (payload) => payload.eid;
const sent = {
  pageview: eid(
    tracker.track(
      buildPageView({
        pageUrl: 'https://shop.example/autumn?utm_campaign=autumn&utm_source=newsletter&utm_medium=email',
        pageTitle: 'Autumn sale',
        referrer: 'https://mail.example/',
      }),
    ),
  ),
  transaction: eid(
    tracker.track(buildEcommerceTransaction({ orderId: 'N-1', total: 99.9, currency: 'EUR' })),
  ),
  item: eid(
    tracker.track(
      buildEcommerceTransactionItem({ orderId: 'N-1', sku: 'SKU-1', price: 99.9, quantity: 1 }),
    ),
  ),
  refund: eid(
    tracker.track(buildSelfDescribingEvent({ event: { schema: ACTION, data: { type: 'refund' } } }), [
      { schema: PRODUCT, data: { id: 'SKU-0', price: 20, currency: 'EUR' } },
      { schema: REFUND, data: { transaction_id: 'N-0', currency: 'EUR', refund_amount: 20 } },
    ]),
  ),
  struct: eid(tracker.track(buildStructEvent({ category: 'video', action: 'play' }))),
  ping: eid(tracker.track(buildPagePing({ pageUrl: 'https://shop.example/autumn' }))),
};

tracker.flush().then(() => {
  process.stdout.write(JSON.stringify(sent));
  process.exitCode = failed ? 1 : 0;
});
