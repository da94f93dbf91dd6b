"""tracker.consent's TCF decoding against TC strings the IAB Tech Lab's library encodes.

@iabtechlabtcf/core is the library CMPs build their strings with; tests/clients/tcf.cjs
encodes each case with it, in one node run for the module. tracker.consent decodes
with ``iab-tcf``, another author's decoder: agreeing on many purpose sets, vendor
encodings (bitfield and range) and policy versions is what says both read the same
bits. End to end because it needs node, not because it needs a server.
"""

from __future__ import annotations

import base64
import json
import random
from dataclasses import dataclass

import pytest

from tests.e2e.clients import CLIENTS, run_node
from tracker.consent import SIGNALS, TCF_PURPOSES, tcf_signals

PURPOSES = tuple(range(1, 12))
"""TCF v2.2's purposes."""
MIN_CORE_BITS = 259
"""A core segment's fixed fields (213 bits), two empty vendor sections (17 each) and
NumPubRestrictions (12), from the spec's table."""
LCM_BITS = 24
"""The library pads a segment's bits with zeros to a multiple of 24 (its Base64Url):
a segment cut by 4 characters or more has lost bits it needs."""


@dataclass(frozen=True)
class Case:
    purposes: tuple[int, ...]
    vendors: tuple[int, ...] = ()
    policy: int = 5  # the library's own default: TCF v2.2

    @property
    def id(self) -> str:
        purposes = "-".join(map(str, self.purposes)) or "none"
        return f"purposes {purposes}, {len(self.vendors)} vendors, policy {self.policy}"


_rng = random.Random(20240501)
RANDOM = [tuple(sorted(_rng.sample(PURPOSES, _rng.randint(0, 11)))) for _ in range(24)]
FEW = (3, 40)  # a bitfield: shorter than ranges for so few ids below 46
SPREAD = (1, 2, 3, 755, 756, 3000)  # ranges: a bitfield would take 3,000 bits
CASES = list(
    dict.fromkeys(
        [
            Case(()),
            Case(PURPOSES),
            Case((1,)),
            Case((1, 7)),
            Case((1, 8)),
            Case((3, 4)),
            Case((1, 2, 3, 4)),
            Case(PURPOSES, FEW),
            Case((1, 8), SPREAD),
            Case((), SPREAD),
            *(Case(p, (FEW, SPREAD, ())[i % 3]) for i, p in enumerate(RANDOM)),
            *(Case(p, FEW, policy) for policy in (2, 4) for p in [(), PURPOSES, (1, 7), (3, 4, 8)]),
        ]
    )
)  # a random set may repeat another: each case once


@pytest.fixture(scope="module")
def encoded() -> dict[Case, str]:
    """Each case's TC string, as the IAB's library encodes it."""
    cases = [
        {"purposes": list(c.purposes), "vendors": list(c.vendors), "policyVersion": c.policy}
        for c in CASES
    ]
    strings = json.loads(run_node(CLIENTS / "tcf.cjs", stdin=json.dumps(cases)))
    assert len(strings) == len(CASES)
    return dict(zip(CASES, strings, strict=True))


def expected(purposes: tuple[int, ...]) -> dict[str, bool]:
    return {signal: set(needed) <= set(purposes) for signal, needed in TCF_PURPOSES.items()}


def core_bits(text: str) -> str:
    """The core segment's bits, read here apart from either library."""
    core = text.split(".")[0]
    raw = base64.urlsafe_b64decode(core + "=" * (-len(core) % 4))
    return "".join(format(byte, "08b") for byte in raw)


def test_the_reference_encodes_what_it_was_asked(encoded: dict[Case, str]) -> None:
    # Else agreement below could be two readers agreeing on an empty string.
    assert len(set(encoded.values())) == len(CASES)
    for case, text in encoded.items():
        bits = core_bits(text)
        assert int(bits[:6], 2) == 2  # version
        assert int(bits[132:138], 2) == case.policy  # TcfPolicyVersion
        consented = {i + 1 for i, bit in enumerate(bits[152:176]) if bit == "1"}
        assert consented == set(case.purposes)  # PurposesConsent
        assert int(bits[213:229], 2) == max(case.vendors, default=0)  # MaxVendorId
        if case.vendors:  # IsRangeEncoding: both of the vendor encodings are read below
            assert bits[229] == ("1" if case.vendors == SPREAD else "0")


def test_signals_match_the_purposes(encoded: dict[Case, str]) -> None:
    assert set(TCF_PURPOSES) == set(SIGNALS)
    wrong = {
        case.id: (got, want)
        for case, text in encoded.items()
        if (got := tcf_signals(text)) != (want := expected(case.purposes))
    }
    assert wrong == {}


@pytest.mark.parametrize("policy", [2, 4, 5])
def test_every_policy_version_is_read(encoded: dict[Case, str], policy: int) -> None:
    # TCF v2.0's strings (policy 2) and v2.2's (4, then 5) differ only in that field.
    cases = [case for case in encoded if case.policy == policy]
    assert len(cases) >= 4
    for case in cases:
        assert tcf_signals(encoded[case]) == expected(case.purposes)


def test_a_core_cut_short_is_refused(encoded: dict[Case, str]) -> None:
    """Every cut of the core below its minimum, or losing a whole 24-bit group, raises."""
    decoded_anyway: list[tuple[str, int]] = []
    for case, text in encoded.items():
        core, dot, rest = text.partition(".")
        for length in range(1, len(core)):
            needed = 6 * length < MIN_CORE_BITS or length <= len(core) - LCM_BITS // 6
            for cut in (core[:length], core[:length] + dot + rest):
                try:
                    got = tcf_signals(cut)
                except ValueError:
                    continue
                # Only the zeros that pad the last group may go without a refusal.
                if needed or got != expected(case.purposes):
                    decoded_anyway.append((case.id, length))
    assert decoded_anyway == []
