// TC strings encoded by the IAB Tech Lab's own TCF library (@iabtechlabtcf/core), the
// reference tests/e2e/test_tcf.py checks tracker.consent's decoding against.
//
// stdin: a JSON list of cases {purposes: [ids consented], vendors: [ids consented],
// policyVersion?: n}; stdout: a JSON list of their TC strings, in the same order.
//
// TCString.encode refuses a TCModel without a GVL, and the library fetches a GVL over
// HTTP unless it is given one; so each case gets a vendor list built here, in memory,
// as the library's GVL constructor takes one. Its tcfPolicyVersion is the one the
// string states; every vendor in it declares purposes 1 to 11 by consent, or the
// encoder would drop its consent as declaring nothing.
"use strict";

const { GVL, TCModel, TCString } = require("@iabtechlabtcf/core");

const PURPOSES = Array.from({ length: 11 }, (_, i) => i + 1); // TCF v2.2's 11 purposes

function named(ids) {
  return Object.fromEntries(
    ids.map((id) => [id, { id, name: `Purpose ${id}`, description: "", illustrations: [] }]),
  );
}

function vendorList(vendors, policyVersion) {
  return {
    gvlSpecificationVersion: 3,
    vendorListVersion: 1,
    tcfPolicyVersion: policyVersion,
    lastUpdated: "2024-05-01T00:00:00Z",
    purposes: named(PURPOSES),
    specialPurposes: named([1, 2]),
    features: named([1, 2, 3]),
    specialFeatures: named([1, 2]),
    stacks: {},
    vendors: Object.fromEntries(
      vendors.map((id) => [
        id,
        {
          id,
          name: `Vendor ${id}`,
          purposes: PURPOSES,
          legIntPurposes: [],
          flexiblePurposes: [],
          specialPurposes: [],
          features: [],
          specialFeatures: [],
          policyUrl: "https://vendor.example/privacy",
        },
      ]),
    ),
  };
}

function encode({ purposes, vendors, policyVersion = 5 }) {
  const model = new TCModel(new GVL(vendorList(vendors, policyVersion)));
  model.cmpId = 12; // any registered-looking id: the library refuses 0 and 1
  model.cmpVersion = 1;
  model.purposeConsents.set(purposes);
  model.vendorConsents.set(vendors);
  return TCString.encode(model);
}

let input = "";
process.stdin.setEncoding("utf8");
process.stdin.on("data", (chunk) => {
  input += chunk;
});
process.stdin.on("end", () => {
  process.stdout.write(JSON.stringify(JSON.parse(input).map(encode)));
});
