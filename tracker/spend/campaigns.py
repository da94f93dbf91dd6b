"""The campaign map: an ad platform's campaign (by its id, else its name) -> tracker's campaign.

A platform names a campaign its own way ("Brand | DE - Exact", id 1234567890); tracker's
campaign is the ``utm_campaign`` its links carry (``brand_de``). Without a map, or for a
campaign the map does not name, the platform's name is the campaign.

A map is a CSV file with the columns ``campaign_id`` and ``campaign``, and optionally
``platform`` (``google``, ``meta`` or ``microsoft``; empty: any), or a JSON object
``{"<id or name>": "<campaign>"}``, whose values may instead be such objects under a
platform's name: ``{"google": {"1234567890": "brand_de"}, "Spring Sale": "spring"}``.
A key is matched against a row's campaign id first, then its campaign name; a
platform's own entries before the entries for any platform.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from tracker.spend.formats import PLATFORMS
from tracker.spend.values import decode

MAPPED_BY_ID = "id"
MAPPED_BY_NAME = "name"
AS_NAMED = "as named"
"""How a row's campaign was found: by the map's entry for its id, for its name, or not."""
_MAX_CAMPAIGN_CHARS = 256
"""As long as an event's ``campaign`` may be."""


@dataclass(frozen=True, slots=True)
class CampaignMap:
    """Entries ``(platform or None, id or name) -> campaign``."""

    entries: Mapping[tuple[str | None, str], str] = field(default_factory=dict)

    def campaign(self, platform: str, campaign_id: str | None, name: str) -> tuple[str, str]:
        """Tracker's campaign for a platform's row, and how it was found (``MAPPED_BY_*``)."""
        for key, how in ((campaign_id, MAPPED_BY_ID), (name, MAPPED_BY_NAME)):
            if key is None:
                continue
            for scope in (platform, None):
                found = self.entries.get((scope, key))
                if found is not None:
                    return found, how
        return name, AS_NAMED


def load(path: str) -> CampaignMap:
    """The map in the file at ``path``; an empty map for an empty path.

    Raises OSError when the file cannot be read, ValueError naming it when it is no map.
    """
    if not path:
        return CampaignMap()
    return parse(Path(path).read_bytes(), path)


def parse(data: bytes, name: str) -> CampaignMap:
    """A map from a file's content (JSON when it starts with ``{``, else CSV); ValueError
    naming ``name`` and what is wrong."""
    text, _ = decode(data, name)
    entries: dict[tuple[str | None, str], str] = {}
    pairs = _json(text, name) if text.lstrip().startswith("{") else _csv(text, name)
    for platform, key, campaign in pairs:
        where = f"{name}: {key!r}" + (f" ({platform})" if platform else "")
        if not key:
            raise ValueError(f"{name}: an entry has no campaign id or name")
        if not campaign or len(campaign) > _MAX_CAMPAIGN_CHARS or not campaign.isprintable():
            raise ValueError(
                f"{where}: the campaign must be 1 to {_MAX_CAMPAIGN_CHARS} printable characters"
            )
        previous = entries.setdefault((platform, key), campaign)
        if previous != campaign:
            raise ValueError(f"{where} is mapped twice: to {previous!r} and to {campaign!r}")
    return CampaignMap(entries)


def _json(text: str, name: str) -> list[tuple[str | None, str, str]]:
    try:
        document: Any = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{name}: not JSON: {exc}") from None
    pairs: list[tuple[str | None, str, str]] = []
    for key, value in document.items():
        if key in PLATFORMS and isinstance(value, dict):
            pairs += [(key, _text(k, name), _text(v, name)) for k, v in value.items()]
        else:
            pairs.append((None, key, _text(value, name)))
    return pairs


def _text(value: object, name: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{name}: {value!r} is not a string (a campaign, id or name)")
    return value.strip()


def _csv(text: str, name: str) -> list[tuple[str | None, str, str]]:
    lines = text.splitlines()
    header = lines[0] if lines else ""
    delimiter = max("\t;,", key=header.count)
    reader = csv.DictReader(io.StringIO(text), delimiter=delimiter)
    columns = {c.strip() for c in reader.fieldnames or ()}
    if not {"campaign_id", "campaign"} <= columns:
        raise ValueError(
            f"{name}: a campaign map's header needs the columns campaign_id and campaign "
            f"(and may have platform), not {sorted(columns)}"
        )
    pairs: list[tuple[str | None, str, str]] = []
    for row in reader:
        cells = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
        platform = cells.get("platform") or None
        if platform is not None and platform not in PLATFORMS:
            raise ValueError(
                f"{name}: line {reader.line_num}: platform {platform!r} is none of "
                f"{', '.join(PLATFORMS)}"
            )
        if any(cells.values()):
            pairs.append((platform, cells["campaign_id"], cells["campaign"]))
    return pairs


__all__ = ["AS_NAMED", "MAPPED_BY_ID", "MAPPED_BY_NAME", "CampaignMap", "load", "parse"]
