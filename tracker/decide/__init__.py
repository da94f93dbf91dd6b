"""Decision support over the KPI store: trends, attribution comparison, budget allocation.

The math modules (:mod:`periods`, :mod:`trends`, :mod:`comparison`, :mod:`curves`,
:mod:`limits`, :mod:`budget`, :mod:`explain`) are pure functions over the bucket sums that
``/v1/kpis`` reads, through :func:`tracker.rows.totals` and
:func:`tracker.rows.row`; :mod:`queries` is their only door to Redis, and
:mod:`command` is ``tracker budget``.
"""
