// @segment/analytics-node sending to the collector, for tests/e2e/test_sdks.py.
//
// usage: node segment-node.cjs <collector port> <device clock offset ms> <write key> <calls>
//
// <calls> is a JSON array of {"call": "page" | "track" | "identify" | ..., "params": {...}},
// each made in order as analytics[call](params), with the SDK's own parameter names
// (anonymousId, userId, messageId, ...). Then closeAndFlush(): the SDK posts one batch to
// http://127.0.0.1:<port>/v1/batch (its host, plus its path /v1/batch). Prints
// {"delivered": n} and exits 1 if the delivery of any call failed (a refused or
// unanswered request: the SDK reports it to the call's callback).
'use strict';

const [port, offset, writeKey, calls] = process.argv.slice(2);

// The device's clock, set `offset` ms wrong before the SDK loads: it stamps each
// message's timestamp and the batch's sentAt with this clock.
require('./clock.cjs')(offset);

const { Analytics } = require('@segment/analytics-node');

const scenario = JSON.parse(calls);
const analytics = new Analytics({
  writeKey,
  host: `http://127.0.0.1:${port}`,
  flushAt: scenario.length, // one batch, sent by closeAndFlush()
  maxRetries: 0, // a refusal is reported at once, not retried for minutes
});

let failed = 0;
analytics.on('error', (error) => {
  failed += 1;
  console.error('delivery failed:', error.code, String(error.reason));
});

let delivered = 0;
for (const { call, params } of scenario) {
  analytics[call](params, (err) => {
    if (err === undefined) {
      delivered += 1;
    }
  });
}

analytics.closeAndFlush({ timeout: 30000 }).then(() => {
  process.stdout.write(JSON.stringify({ delivered }));
  process.exitCode = failed || delivered !== scenario.length ? 1 : 0;
});
