"""What an event's consent lets tracker send to an ad platform.

Google Consent Mode's signals, as :mod:`tracker.consent` resolved them (Global Privacy
Control has already denied the advertising ones; an event that stated nothing grants
everything):

- without ``ad_user_data``, no personal data: the hashed email and phone, the IP
  address, the user agent;
- without ``ad_storage``, no id that advertising stored or read in the browser: a
  platform's click id (the gclid, the ttclid, the fbclid within ``fbc``) and Meta's
  browser id (``fbp``).

Every destination builds its requests from :func:`permitted`'s event, so no destination
can send what consent withholds, whatever fields its payload names.
"""

from __future__ import annotations

from typing import Any, Final

import msgspec

from tracker.events import Event

USER_DATA: Final = ("email_sha256", "phone_sha256", "phone_e164_sha256", "ip", "user_agent")
"""The fields ``ad_user_data`` governs."""
IDS: Final = ("ad_click_id", "fbc", "fbp")
"""The fields ``ad_storage`` governs. ``click_source`` stays: it names no one, and says
why a destination skipped the event."""


def user_data_allowed(event: Event) -> bool:
    """Whether the event's personal data (hashed) may be sent (``ad_user_data``)."""
    return event.consent is None or event.consent.ad_user_data


def ids_allowed(event: Event) -> bool:
    """Whether the event's click and browser ids may be sent (``ad_storage``)."""
    return event.consent is None or event.consent.ad_storage


def permitted(event: Event) -> Event:
    """``event`` with what its consent withholds from ad platforms set to None."""
    withheld: dict[str, Any] = {}
    if not user_data_allowed(event):
        withheld.update(dict.fromkeys(USER_DATA))
    if not ids_allowed(event):
        withheld.update(dict.fromkeys(IDS))
    return msgspec.structs.replace(event, **withheld) if withheld else event


__all__ = ["IDS", "USER_DATA", "ids_allowed", "permitted", "user_data_allowed"]
