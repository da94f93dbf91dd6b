// A device whose clock is `offset` ms wrong, for the SDK scripts: require() it before
// the SDK loads, so every time the SDK stamps (created, sent) reads this clock.
'use strict';

module.exports = function skewClock(offset) {
  const skew = Number(offset);
  const RealDate = Date;
  globalThis.Date = class extends RealDate {
    constructor(...args) {
      if (args.length === 0) {
        super(RealDate.now() + skew);
      } else {
        super(...args);
      }
    }

    static now() {
      return RealDate.now() + skew;
    }
  };
};
