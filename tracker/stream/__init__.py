"""Stream processing: Kafka records of events -> deduplicated windowed sums in Redis."""
