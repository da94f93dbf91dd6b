"""Known bots, crawlers and headless browsers, recognised by user agent.

Flagged, never dropped: the stream keeps them out of KPIs and reports their share.
Decisions are cached per user agent, since a site sees the same few agents again
and again.
"""

from __future__ import annotations

import re
from functools import lru_cache

_PATTERN = re.compile(
    r"bot\b|bot/|crawl|spider|slurp|headless|phantomjs|puppeteer|playwright|selenium|"
    r"lighthouse|pingdom|uptime|monitor|curl/|wget/|python-requests|python-httpx|aiohttp|"
    r"go-http-client|java/|okhttp|libwww|scrapy|facebookexternalhit|mediapartners|"
    r"preview|fetcher|httpclient",
    re.IGNORECASE,
)


@lru_cache(maxsize=4096)
def is_bot(user_agent: str | None) -> bool:
    """True for known automated agents; an absent agent is not judged."""
    return user_agent is not None and _PATTERN.search(user_agent) is not None
