"""Conversions forwarded to ad platforms: Meta's Conversions API, Google Ads, TikTok's Events API.

The data part, pure and without I/O: the keys a platform matches a person by
(:mod:`~tracker.forward.identity`, applied by the collector on arrival), what an event's
consent lets leave tracker (:mod:`~tracker.forward.allowed`), and one module per
platform building its requests and reading its answers (:mod:`~tracker.forward.meta`,
:mod:`~tracker.forward.google`, :mod:`~tracker.forward.tiktok`), all of the shape
:class:`~tracker.forward.destinations.Destination` states.

Nothing is imported here: :mod:`tracker.events` imports the identity module, and the
platforms' modules import :mod:`tracker.events`.
"""
