from __future__ import annotations

import pytest

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


@pytest.mark.parametrize(
    "user_agent",
    [
        "Googlebot/2.1 (+http://www.google.com/bot.html)",
        "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
        "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
        "Slackbot-LinkExpanding 1.0 (+https://api.slack.com/robots)",
        "Mozilla/5.0 (compatible; Yahoo! Slurp; http://help.yahoo.com/help/us/ysearch/slurp)",
        "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 HeadlessChrome/124.0.0.0",
        "facebookexternalhit/1.1 (+http://www.facebook.com/externalhit_uatext.php)",
        "curl/8.4.0",
        "Wget/1.21.4",  # matched regardless of case
        "python-requests/2.31.0",
        "python-httpx/0.27.0",
        "Go-http-client/1.1",
        "Java/17.0.2",
        "okhttp/4.12.0",
        "Scrapy/2.11 (+https://scrapy.org)",
        "Mozilla/5.0 (compatible; Pingdom.com_bot_version_1.4)",
        "Mozilla/5.0 Chrome-Lighthouse",
        "SomeCrawler/1.0",
        "Baiduspider/2.0",
    ],
)
def test_known_automation_is_a_bot(user_agent: str) -> None:
    assert is_bot(user_agent) is True


@pytest.mark.parametrize(
    "user_agent",
    [
        CHROME,
        IPHONE,
        FIREFOX,
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/124.0 Mobile",
        "Mozilla/5.0 (Linux; Android 12; Robotics-Tab)",  # "bot" inside a word is not a bot
        "",
    ],
)
def test_browsers_are_not_bots(user_agent: str) -> None:
    assert is_bot(user_agent) is False


def test_absent_user_agent_is_not_judged() -> None:
    assert is_bot(None) is False


def test_decision_is_stable_when_cached() -> None:
    assert [is_bot("curl/8.4.0") for _ in range(3)] == [True] * 3
    assert [is_bot(CHROME) for _ in range(3)] == [False] * 3
