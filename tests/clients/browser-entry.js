// The Snowplow browser tracker and its e-commerce plugin as a site bundles them from
// npm, for the pages of tests/e2e/test_sdks.py.
//
// usage: esbuild browser-entry.js --bundle --format=iife --outfile=<bundle>
//
// The pages load the bundle with a <script> tag and call the SDK through
// window.snowplow, as a site's own code would call what it imported.
import {
  addPlugin,
  newTracker,
  setUserId,
  trackPageView,
  trackStructEvent,
} from '@snowplow/browser-tracker';
import {
  SnowplowEcommercePlugin,
  trackRefund,
  trackTransaction,
} from '@snowplow/browser-plugin-snowplow-ecommerce';

window.snowplow = {
  addPlugin,
  newTracker,
  setUserId,
  trackPageView,
  trackStructEvent,
  SnowplowEcommercePlugin,
  trackRefund,
  trackTransaction,
};
