"""The read side: Prometheus metrics and the JSON query API over the Redis store."""
