"""Known bots, crawlers and headless browsers, recognised by user agent.

Flagged, never dropped: the stream keeps them out of KPIs and reports their share.
The list is crawlerdetect's (a port of JayBizzle's maintained CrawlerDetect patterns,
with its exclusions for real devices such as CUBOT phones), plus a few agents it
misses. Decisions are cached per user agent, since a site sees the same few agents
again and again.

The verdict is crawlerdetect's isCrawler, matched with RE2 rather than Python's re:
joined into one backtracking regex, its ~1,500 patterns take up to ~30 ms on a hostile
512-character agent, and a batch carries 1,000 agents that need not repeat, so the
cache is no defence. RE2 takes time linear in the agent's length, whatever it holds.
"""

from __future__ import annotations

import re
from functools import lru_cache

import re2
from crawlerdetect.providers.crawlers import data as _CRAWLER_PATTERNS
from crawlerdetect.providers.exclusions import data as _EXCLUSION_PATTERNS

# What RE2 reads differently from Python's re, of the syntax the lists use: \d (each
# escape is read whole, so "\$" stays a dollar sign), "$" (Python's also matches
# before a final newline) and a trailing negative lookahead on a word (RE2 has none;
# crawlerdetect 0.4.2 has one, "Yandex(?!Search)"). A pattern with anything else RE2
# lacks fails to compile, at import.
_SYNTAX = re.compile(r"\\.|\$|\(\?!([A-Za-z0-9]+)\)$")


def _not_followed_by(word: str) -> str:
    """RE2 for `(?!word)`: the text ends, or departs from word, before word is whole."""
    rest = ""
    for char in reversed(word):
        rest = f"(?:$|[^{char}]|{char}{rest})" if rest else f"(?:$|[^{char}])"
    return rest


def _for_re2(token: re.Match[str]) -> str:
    if token[1]:
        return _not_followed_by(token[1])
    if token[0] == "$":
        return r"(?:\n?$)"
    # Python's \d is any Unicode decimal digit, RE2's only 0-9.
    return r"\p{Nd}" if token[0] == r"\d" else token[0]


def _compile(patterns: list[str]) -> re2._Regexp:
    options = re2.Options()
    options.case_sensitive = False  # crawlerdetect's are re.IGNORECASE
    options.never_capture = True  # where a pattern matched is all that is used
    return re2.compile("|".join(_SYNTAX.sub(_for_re2, p) for p in patterns), options)


_EXCLUSIONS = _compile(_EXCLUSION_PATTERNS)
_CRAWLERS = _compile(_CRAWLER_PATTERNS)

# Agents crawlerdetect 0.4.2 does not flag, each checked against it.
_MISSED = _compile(
    [
        # Automation frameworks, when their name is in the agent (their default
        # headless agents say "HeadlessChrome", which the list already has).
        r"puppeteer|playwright|selenium",
        # java.net.http.HttpClient's default agent ("Java/" is in the list).
        r"java-http-client/",
        # Node's built-in fetch sends just "node" (older Node: "undici", listed).
        r"^node$",
        # Prometheus blackbox_exporter, an uptime probe.
        r"blackbox exporter/",
    ]
)

# RE2 reads UTF-8, which cannot carry a lone surrogate (JSON's "\ud800" decodes to
# one); U+FFFD matches wherever it would, as no pattern names either.
_SURROGATE = re.compile("[\ud800-\udfff]")
# Python's case-insensitive "i" also matches the Turkish dotted capital I and dotless
# small i, RE2's does not.
_DOTTED_I = str.maketrans("\u0130\u0131", "ii")


def _is_crawler(agent: bytes) -> bool:
    """crawlerdetect's CrawlerDetect().isCrawler, for an agent already stripped."""
    # Browser and device tokens ("Safari/537.36", "CUBOT") are cut out first; no
    # pattern matches an empty string, so any match left is a crawler. Each cut is a
    # call into RE2 (~1-2 us); 512 characters hold at most ~128 ("x64 x64 ...").
    kept, end = [], 0
    for token in _EXCLUSIONS.finditer(agent):
        kept.append(agent[end : token.start()])
        end = token.end()
    kept.append(agent[end:])
    return _CRAWLERS.search(b"".join(kept)) is not None


@lru_cache(maxsize=4096)
def is_bot(user_agent: str | None) -> bool:
    """True for known automated agents; an absent agent is not judged."""
    if user_agent is None:
        return False
    if not user_agent.isascii():
        user_agent = _SURROGATE.sub("\ufffd", user_agent).translate(_DOTTED_I)
    # Matched as UTF-8 bytes: RE2's str interface maps every offset back to characters.
    return (
        _is_crawler(user_agent.strip().encode()) or _MISSED.search(user_agent.encode()) is not None
    )
