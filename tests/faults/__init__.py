"""The fault battery (``make faults``): tracker on a three-broker Kafka cluster and a Redis
Cluster of its own, under HTTP load through the real collector, while brokers, workers and
the store's Redis primary are killed, paused, cut off and brought back.

Each scenario has its own topics, consumer group and Redis keys. The load sends every
event with an id and a cost of our choosing and retries what was not acknowledged, so
the ground truth is exact: every acknowledged id must be in Kafka and counted once in
the store, whose sums must equal the acknowledged ones (:mod:`tests.faults.truth`).
``python -m tests.faults`` prints a table and exits non-zero unless nothing was lost,
nothing counted twice and every scenario's own checks held.
"""
