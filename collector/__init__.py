"""The HTTP edge: validates tracking hits and writes them to Kafka."""
