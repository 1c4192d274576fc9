"""Adapters: the concrete things behind ``processor.ports`` (Kafka, HTTP, Prometheus, logs)."""
