"""Spend from the ad platforms: their exports in, one spend figure per campaign and day out.

:mod:`formats` reads an export as Google Ads, Meta and Microsoft Advertising write it,
:mod:`values` its text, amounts and days; :mod:`campaigns` maps their campaigns to
tracker's; :mod:`days` places an account's day in the reporting calendar;
:mod:`importer` sums rows into spend events and :mod:`summary` says what an import
holds (all pure, no I/O); :mod:`delivery` sends the events to Kafka as the collector
sends its own; :mod:`command` is ``tracker import-spend``, and ``POST /v1/spend``
(:mod:`tracker.export.spend`) is the same over HTTP.
"""
