from __future__ import annotations

import pytest
from crawlerdetect import CrawlerDetect

from collector.bots import is_bot

CHROME = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
IPHONE = (
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1"
)
FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0"
ANDROID_CHROME = "AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36"

BROWSERS = [
    CHROME,
    IPHONE,
    FIREFOX,
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36 Edg/124.0.2478.67",
    "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) CriOS/124.0.6367.88 Mobile/15E148 Safari/604.1",
    f"Mozilla/5.0 (Linux; Android 10; K) {ANDROID_CHROME}",
    f"Mozilla/5.0 (Linux; Android 14; Pixel 8) {ANDROID_CHROME}",
    # CUBOT phones: the old hand-written `bot\b` flagged these.
    f"Mozilla/5.0 (Linux; Android 12; CUBOT NOTE 20 PRO) {ANDROID_CHROME}",
    f"Mozilla/5.0 (Linux; Android 11; CUBOT KINGKONG 7 Build/RP1A.200720.011) {ANDROID_CHROME}",
    f"Mozilla/5.0 (Linux; Android 13; Infinix X6833B) {ANDROID_CHROME}",
    f"Mozilla/5.0 (Linux; Android 10; ELS-NX9; HMSCore 6.13.0.302) {ANDROID_CHROME}",
    "Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 "
    "(KHTML, like Gecko) SamsungBrowser/24.0 Chrome/117.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Linux; Android 13; SM-A536B Build/TP1A.220624.014; wv) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Version/4.0 Chrome/124.0.6367.82 Mobile Safari/537.36",  # WebView
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/459.0.0.38.115;FBDV/iPhone15,2]",
    "Mozilla/5.0 (Android 14; Mobile; rv:125.0) Gecko/125.0 Firefox/125.0",
    "Mozilla/5.0",
    "",
    "   ",
]

BOTS = [
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/124.0.6367.82 Mobile Safari/537.36 "
    "(compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mediapartners-Google",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "Mozilla/5.0 (compatible; SemrushBot/7~bl; +http://www.semrush.com/bot.html)",
    "Mozilla/5.0 (compatible; YandexBot/3.0; +http://yandex.com/bots)",
    "Baiduspider/2.0",
    "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
    "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; GPTBot/1.0; "
    "+https://openai.com/gptbot)",
    "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
    "Twitterbot/1.0",
    "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
    "Mozilla/5.0 (compatible; Discordbot/2.0; +https://discordapp.com)",
    "WhatsApp/2.23.20.0 A",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "HeadlessChrome/124.0.6367.60 Safari/537.36",
    "Mozilla/5.0 (Unknown; Linux x86_64) AppleWebKit/538.1 (KHTML, like Gecko) "
    "PhantomJS/2.1.1 Safari/538.1",
    "Mozilla/5.0 (Linux; Android 11; moto g power (2022)) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/119.0.0.0 Mobile Safari/537.36 Chrome-Lighthouse",
    "Mozilla/5.0+(compatible; UptimeRobot/2.0; http://www.uptimerobot.com/)",
    "Pingdom.com_bot_version_1.4_(http://www.pingdom.com/)",
    "Mozilla/5.0 (compatible; StatusCake)",
    "curl/8.4.0",
    "Wget/1.21.4",
    "python-requests/2.31.0",
    "python-httpx/0.27.0",
    "Python/3.11 aiohttp/3.9.5",
    "Go-http-client/1.1",
    "okhttp/4.12.0",
    "Java/17.0.2",
    "Apache-HttpClient/4.5.14 (Java/17.0.8)",
    "Scrapy/2.11 (+https://scrapy.org)",
    "SomeCrawler/1.0",
]

# Missed by crawlerdetect itself: collector/bots.py supplements these.
SUPPLEMENTED = [
    f"{CHROME} Puppeteer",
    f"{CHROME} Playwright/1.43.0",
    f"{FIREFOX} (Selenium)",
    "Java-http-client/17.0.8",
    "node",
    "Blackbox Exporter/0.25.0",
]

# Where RE2 reads crawlerdetect's patterns differently from Python's re, which
# crawlerdetect compiles them with, and isCrawler's own steps.
EDGE_CASES = [
    # isCrawler strips the agent, then matches "^b0t$".
    (" b0t ", True),
    # "Yandex(?!Search)": RE2 has no lookahead.
    ("Yandex", True),
    ("YandexSearch/1.0", False),
    ("YandexSearc", True),
    # "DebugBear$": Python's $ also matches before a final newline (here one left when
    # the exclusions cut "Linux").
    ("x DebugBear\nLinux", True),
    ("x DebugBear Linux", False),
    # The exclusion "Safari.[\d\.]*": Python's \d is any decimal digit, here Arabic-Indic.
    ("DebugBearSafari/\u0661", True),
    ("DebugBearSafari/\u0661x", False),
    # Python's case-insensitive "i" matches the dotless i.
    ("sp\u0131der", True),
    # A lone surrogate, which JSON can carry and UTF-8 cannot.
    ("\ud800 Googlebot/2.1", True),
    ("\ud800", False),
]

# 512 characters (the most an event's agent keeps) that crawlerdetect's own regex
# backtracks on, for up to ~30 ms each.
HOSTILE = [
    ("a" * 512, False),
    ("a" * 509 + "bot", True),
    ("1" * 512, False),
    ("Safari/" + "1." * 252 + "1", False),
    # Nothing but tokens the exclusions cut out, one by one.
    ("x64 " * 128, False),
    ("x64 " * 127 + "bot", True),
]


@pytest.mark.parametrize("user_agent", BOTS + SUPPLEMENTED)
def test_known_automation_is_a_bot(user_agent: str) -> None:
    assert is_bot(user_agent) is True


@pytest.mark.parametrize("user_agent", BROWSERS)
def test_browsers_are_not_bots(user_agent: str) -> None:
    assert is_bot(user_agent) is False


@pytest.mark.parametrize(("user_agent", "expected"), EDGE_CASES + HOSTILE)
def test_verdict_is_crawlerdetects(user_agent: str, expected: bool) -> None:
    assert len(user_agent) <= 512
    assert CrawlerDetect().isCrawler(user_agent) is expected
    assert is_bot(user_agent) is expected


def test_node_is_judged_only_as_the_whole_agent() -> None:
    # "node" alone is Node's fetch; a browser agent merely containing it is not.
    assert is_bot(f"{CHROME} nodejs-app-shell") is False


def test_absent_user_agent_is_not_judged() -> None:
    assert is_bot(None) is False


def test_decision_is_stable_when_cached() -> None:
    assert [is_bot("curl/8.4.0") for _ in range(3)] == [True] * 3
    assert [is_bot(CHROME) for _ in range(3)] == [False] * 3
