"""Adapters: the concrete things behind the runtime's ports (Kafka, HTTP, Prometheus, logs)."""
