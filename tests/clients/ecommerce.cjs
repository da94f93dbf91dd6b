// The schemas @snowplow/browser-plugin-snowplow-ecommerce tracks a refund with, for the
// Node scripts: its trackRefund() needs a browser tracker, so they build the same
// event by hand.
'use strict';

const ECOMMERCE = 'iglu:com.snowplowanalytics.snowplow.ecommerce';

module.exports = {
  ACTION: `${ECOMMERCE}/snowplow_ecommerce_action/jsonschema/1-0-2`,
  REFUND: `${ECOMMERCE}/refund/jsonschema/1-0-0`,
  PRODUCT: `${ECOMMERCE}/product/jsonschema/1-0-0`,
};
